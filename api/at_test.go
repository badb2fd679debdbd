package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestProjectionAt checks GET /v1/projections/{name}/{key}?at=: the same answers as
// pipeline.Replay, which TestReplayAtSequences checks against the oracle, and its errors.
func TestProjectionAt(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	yaml := fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n", srv.ClientURL()) + shoptest.Streams +
		"\npipelines:" + fmt.Sprintf(shoptest.Pipeline, "all", "end", 100, 1000)
	ps := pipetest.Build(t, js, filepath.Join(t.TempDir(), "p.yaml"), yaml, nil)
	payloads := shoptest.Workload(3, 500, 5)
	natstest.Publish(t, js, shoptest.Subject, payloads)
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps}))
	defer h.Close()

	for _, seq := range []uint64{3, 50, 333, 500} {
		want := shoptest.Oracle(payloads[:seq]).Carts
		for _, user := range []string{"user-0", "user-4"} {
			res, err := pipeline.Replay(context.Background(), js, ps[0], pipeline.ReplayOptions{Projection: "carts", Key: user, At: pipeline.At{Seq: seq}})
			if err != nil {
				t.Fatal(err)
			}
			code, body := getBody(t, fmt.Sprintf("%s/v1/projections/carts/%s?at=%d", h.URL, user, seq))
			if _, ok := want[user]; !ok {
				if code != 404 || !strings.Contains(body, "no state at") {
					t.Errorf("carts/%s?at=%d = %d %s, want 404", user, seq, code, body)
				}
				continue
			}
			var got api.AtValue
			if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
				t.Fatalf("carts/%s?at=%d = %d %s", user, seq, code, body)
			}
			if string(got.Value) != string(res.State) || got.Seq != res.Seq || got.At != seq || got.Replayed != int(seq) {
				t.Errorf("carts/%s?at=%d = %s, replay %s (seq %d)", user, seq, body, res.State, res.Seq)
			}
		}
	}

	// An instant, a subject filter (every event is on one subject here), from.
	code, body := getBody(t, h.URL+"/v1/projections/carts/user-0?at="+url.QueryEscape("2099-01-01T00:00:00+01:00")+"&subject=shop.>&from=1")
	if code != 200 || !strings.Contains(body, `"at":500`) {
		t.Errorf("?at=<future instant> = %d %s, want 200 at 500", code, body)
	}

	for _, tt := range []struct {
		path     string
		code     int
		contains string
	}{
		{"/v1/projections/carts/user-0?at=yesterday", 400, "want a stream sequence"},
		{"/v1/projections/carts/user-0?at=0", 400, "starts at 1"},
		{"/v1/projections/carts/user-0?at=501", 400, "ends at sequence 500"},
		{"/v1/projections/carts/user-0?at=5&from=x", 400, "from: want a stream sequence"},
		{"/v1/projections/carts/user-0?at=" + url.QueryEscape("2000-01-01T00:00:00Z"), 404, "no state at 2000-01-01T00:00:00Z (sequence 0)"},
		{"/v1/projections/nosuch/user-0?at=5", 404, `unknown projection \"nosuch\"`},
	} {
		if code, body := getBody(t, h.URL+tt.path); code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("GET %s = %d %s, want %d containing %s", tt.path, code, body, tt.code, tt.contains)
		}
	}
}
