package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestReadyzFailingPipeline: a failing pipeline makes /readyz answer 503 and name it, while
// NATS is connected; once it runs again, /readyz answers 200.
func TestReadyzFailingPipeline(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	board := pipeline.NewBoard()
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Ready: func() bool { return true }, Board: board}))
	defer h.Close()
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(h.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name  string
		state string
		code  int
		body  string
	}{
		{"running", pipeline.StateRunning, http.StatusOK, "ready"},
		{"failing", pipeline.StateFailing, http.StatusServiceUnavailable, "failing pipelines: carts"},
		{"running again", pipeline.StateRunning, http.StatusOK, "ready"},
		{"standby", pipeline.StateStandby, http.StatusOK, "ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			board.Set("carts", pipeline.Health{State: tt.state, Error: "boom", Since: time.Now()})
			code, body := get()
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("/readyz = %d %q, want %d with %q", code, body, tt.code, tt.body)
			}
		})
	}
}
