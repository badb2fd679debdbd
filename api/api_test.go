package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/streams"
)

func TestEndpoints(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	kv, err := streams.EnsureBucket(ctx, js, "carts")
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(streams.KVSubject("carts", streams.EncodeKey("user 1")))
	m.Data = []byte(`{"items":2}`)
	m.Header.Set(state.HeaderSeq, "7")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "user-2", []byte(`{"items":1}`)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := pipeline.NewMetrics(reg)
	metrics.Events.WithLabelValues("carts", "", pipeline.ResultOK).Add(3)
	var ready atomic.Bool
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: reg, Ready: ready.Load}))
	defer h.Close()

	tests := []struct {
		path     string
		code     int
		contains string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "not ready"},
		{"/metrics", 200, `jetfold_events_total{partition="",pipeline="carts",result="ok"} 3`},
		{"/v1/projections/carts/user%201", 200, `"seq":7`},
		{"/v1/projections/carts/nobody", 404, "no state"},
		{"/v1/projections/nosuch/x", 404, "no state"},
		{"/v1/projections/carts?prefix=user", 200, `"keys":["user 1","user-2"]`},
		{"/v1/projections/carts?limit=1", 200, `"keys":["user 1"]`},
		{"/v1/projections/carts?limit=0", 400, "limit"},
		{"/v1/pipelines", 200, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := getBody(t, h.URL+tt.path)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Errorf("GET %s = %d %s, want %d containing %s", tt.path, code, body, tt.code, tt.contains)
			}
		})
	}
	ready.Store(true)
	resp, err := http.Get(h.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz when ready = %d, want 200", resp.StatusCode)
	}
	resp, err = http.Post(h.URL+"/v1/projections/carts/user-2", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405: the API has no writes", resp.StatusCode)
	}
	var st state.Value
	r2, err := http.Get(h.URL + "/v1/projections/carts/user-2")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	if err := json.NewDecoder(r2.Body).Decode(&st); err != nil || string(st.Value) != `{"items":1}` {
		t.Errorf("state = %+v, %v", st, err)
	}
}
