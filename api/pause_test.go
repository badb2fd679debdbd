package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/control"
)

// TestPauseRoutes: POST pause and resume need the bearer token (without one configured the
// routes are off), and record the request every process sees (package control).
func TestPauseRoutes(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ps := []*pipeline.Pipeline{{Name: "carts", Projections: []string{"carts"}}}
	off := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps}))
	defer off.Close()
	if resp, _ := do(t, http.MethodPost, off.URL+"/v1/pipelines/carts/pause", "Bearer "+token); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("pause without a token configured = %d, want the route off", resp.StatusCode)
	}
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Token: token}))
	defer h.Close()
	paused := func() bool {
		s, err := control.Get(context.Background(), js, "carts")
		if err != nil {
			t.Fatal(err)
		}
		return s.Paused
	}
	tests := []struct {
		name, path, auth string
		code             int
		body             string
		paused           bool
	}{
		{"no token", "/v1/pipelines/carts/pause", "", 401, "", false},
		{"another token", "/v1/pipelines/carts/pause", "Bearer nope", 401, "", false},
		{"unknown pipeline", "/v1/pipelines/nope/pause", "Bearer " + token, 404, "unknown pipeline", false},
		{"pause", "/v1/pipelines/carts/pause?by=ops", "Bearer " + token, 200, `"paused":true`, true},
		{"resume", "/v1/pipelines/carts/resume", "Bearer " + token, 200, `"paused":false`, false},
	}
	for _, tt := range tests {
		resp, body := do(t, http.MethodPost, h.URL+tt.path, tt.auth)
		if resp.StatusCode != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %d %s, want %d with %q", tt.name, resp.StatusCode, body, tt.code, tt.body)
		}
		if got := paused(); got != tt.paused {
			t.Errorf("%s: paused %v, want %v", tt.name, got, tt.paused)
		}
	}
}
