package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/status"
)

// TestReadyzFailingPipeline: a failing pipeline makes /readyz answer 503 and name it, while
// NATS is connected; once it runs again, /readyz answers 200.
func TestReadyzFailingPipeline(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	board := status.NewBoard()
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Ready: func() bool { return true }, Board: board}))
	defer h.Close()
	tests := []struct {
		name  string
		state string
		code  int
		body  string
	}{
		{"running", status.Running, http.StatusOK, "ready"},
		{"failing", status.Failing, http.StatusServiceUnavailable, "failing pipelines: carts"},
		{"running again", status.Running, http.StatusOK, "ready"},
		{"standby", status.Standby, http.StatusOK, "ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			board.Set("carts", status.Health{State: tt.state, Error: "boom", Since: time.Now()})
			code, body := getBody(t, h.URL+"/readyz")
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("/readyz = %d %q, want %d with %q", code, body, tt.code, tt.body)
			}
		})
	}
}

// TestV1Answers: an unknown projection is its own 404, naming the known ones; while NATS is
// disconnected /v1 answers 503 at once rather than after a request timeout.
func TestV1Answers(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	var connected atomic.Bool
	connected.Store(true)
	ps := []*pipeline.Pipeline{{Name: "carts", Projections: []string{"carts"}}}
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Connected: connected.Load}))
	defer h.Close()
	tests := []struct {
		name      string
		path      string
		connected bool
		code      int
		body      string
	}{
		{"unknown projection", "/v1/projections/nope/user-8", true, http.StatusNotFound, `unknown projection \"nope\"; projections: carts`},
		{"unknown projection listed", "/v1/projections/nope", true, http.StatusNotFound, `projections: carts`},
		{"known projection, no key", "/v1/projections/carts/user-8", true, http.StatusNotFound, "no state"},
		{"disconnected", "/v1/projections/carts/user-8", false, http.StatusServiceUnavailable, "NATS is disconnected"},
		{"disconnected pipelines", "/v1/pipelines", false, http.StatusServiceUnavailable, "NATS is disconnected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The server stays up: the 503 shows the request was answered without asking NATS
			// (before, one while NATS was away waited for its 5 s timeout). A bound on the
			// time taken would catch nothing here, and could fail on a loaded machine.
			connected.Store(tt.connected)
			code, body := getBody(t, h.URL+tt.path)
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("GET %s = %d %s, want %d with %q", tt.path, code, body, tt.code, tt.body)
			}
		})
	}
}

// getBody GETs url and returns the status code and the body.
func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
