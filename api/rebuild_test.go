package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/internal/shoptest"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
)

// token is the bearer token of the tests.
const token = "s3cret-token"

// do sends a request with the bearer token auth ("": no Authorization header) and returns
// the response, its body read.
func do(t *testing.T, method, url, auth string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// rebuildStatus GETs the rebuild status of carts.
func rebuildStatus(t *testing.T, base string) (int, api.RebuildStatus) {
	t.Helper()
	resp, body := do(t, http.MethodGet, base+"/v1/pipelines/carts/rebuild", "Bearer "+token)
	var st api.RebuildStatus
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("GET rebuild: %v: %s", err, body)
		}
	}
	return resp.StatusCode, st
}

// TestRebuildRouteNeedsToken: without a token (or without a Rebuild), the route does not
// exist; with one, a request without it or with another is 401 with a Bearer challenge.
func TestRebuildRouteNeedsToken(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ps := []*pipeline.Pipeline{{Name: "carts", Projections: []string{"carts"}}}
	instant := func(context.Context, api.RebuildRequest, func(rebuild.Progress)) (rebuild.Result, error) {
		return rebuild.Result{Version: 2, Buckets: map[string]string{"carts": "carts_v2"}, Seq: 9}, nil
	}

	for _, o := range []api.Options{
		{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Rebuild: instant},
		{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Token: token},
	} {
		h := httptest.NewServer(api.New(o))
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			resp, body := do(t, method, h.URL+"/v1/pipelines/carts/rebuild", "Bearer "+token)
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("token %q, Rebuild set %v: %s = %d %s, want 404 or 405", o.Token, o.Rebuild != nil, method, resp.StatusCode, body)
			}
		}
		h.Close()
	}

	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Token: token, Rebuild: instant}))
	defer h.Close()
	tests := []struct {
		name      string
		method    string
		path      string
		auth      string
		code      int
		challenge string
		body      string
	}{
		{"no token", "POST", "/v1/pipelines/carts/rebuild", "", 401, `Bearer realm="jetfold"`, "needs the bearer token"},
		{"another token", "POST", "/v1/pipelines/carts/rebuild", "Bearer wrong", 401, `Bearer realm="jetfold", error="invalid_token"`, "needs the bearer token"},
		{"the token with more", "POST", "/v1/pipelines/carts/rebuild", "Bearer " + token + "x", 401, `error="invalid_token"`, ""},
		{"another scheme", "POST", "/v1/pipelines/carts/rebuild", "Basic " + token, 401, `error="invalid_token"`, ""},
		{"GET, no token", "GET", "/v1/pipelines/carts/rebuild", "", 401, `Bearer realm="jetfold"`, ""},
		{"GET, nothing started", "GET", "/v1/pipelines/carts/rebuild", "Bearer " + token, 404, "", "started no rebuild of carts"},
		{"unknown pipeline", "POST", "/v1/pipelines/nope/rebuild", "Bearer " + token, 404, "", `unknown pipeline \"nope\"; pipelines: carts`},
		{"bad from", "POST", "/v1/pipelines/carts/rebuild?from=soon", "Bearer " + token, 400, "", "from: "},
		{"bad drop_old", "POST", "/v1/pipelines/carts/rebuild?drop_old=maybe", "Bearer " + token, 400, "", "drop_old"},
		{"the token", "POST", "/v1/pipelines/carts/rebuild?from=seq:3&drop_old=true", "bearer " + token, 202, "", `"pipeline":"carts"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, h.URL+tt.path, tt.auth)
			if resp.StatusCode != tt.code || !strings.Contains(body, tt.body) {
				t.Errorf("%s %s = %d %s, want %d with %q", tt.method, tt.path, resp.StatusCode, body, tt.code, tt.body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.challenge) || (tt.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if strings.Contains(body, token) {
				t.Errorf("the answer shows the token: %s", body)
			}
		})
	}
	natstest.Eventually(t, 10*time.Second, "the rebuild to end", func() bool {
		_, st := rebuildStatus(t, h.URL)
		return st.State == api.RebuildDone
	})
	if _, st := rebuildStatus(t, h.URL); st.From != "seq:3" || !st.DropOld || st.Result == nil || st.Result.Buckets["carts"] != "carts_v2" {
		t.Errorf("status = %+v, want from seq:3, drop_old and the result", st)
	}
}

// TestRebuildOneAtATime: while a rebuild of a pipeline runs, a second POST is 409; it runs
// on the process's context, not the request's: it outlives its request, and ends when that
// context does.
func TestRebuildOneAtATime(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Server(t))
	ps := []*pipeline.Pipeline{{Name: "carts", Projections: []string{"carts"}}}
	base, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	release := make(chan struct{})
	blocking := func(ctx context.Context, req api.RebuildRequest, onProgress func(rebuild.Progress)) (rebuild.Result, error) {
		onProgress(rebuild.Progress{Pipeline: req.Pipeline, Version: 2, Phase: "replay", Done: 5, Total: 10, Rate: 5})
		select {
		case <-release:
			return rebuild.Result{Version: 2, Buckets: map[string]string{"carts": "carts_v2"}, Seq: 10}, nil
		case <-ctx.Done():
			return rebuild.Result{}, fmt.Errorf("rebuild %s: %w", req.Pipeline, ctx.Err())
		}
	}
	h := httptest.NewServer(api.New(api.Options{
		JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Token: token, Rebuild: blocking,
		BaseContext: func() context.Context { return base },
	}))
	defer h.Close()
	url := h.URL + "/v1/pipelines/carts/rebuild"

	resp, body := do(t, http.MethodPost, url, "Bearer "+token)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST = %d %s, want 202", resp.StatusCode, body)
	}
	natstest.Eventually(t, 10*time.Second, "the rebuild's progress", func() bool {
		_, st := rebuildStatus(t, h.URL)
		return st.Progress != nil
	})
	code, st := rebuildStatus(t, h.URL)
	if code != 200 || st.State != api.RebuildRunning || st.Progress.Done != 5 || st.Progress.Total != 10 || st.Progress.LeftSeconds != 1 {
		t.Errorf("GET = %d %+v %+v, want running, 5/10, 1 s left", code, st, st.Progress)
	}
	if resp, body := do(t, http.MethodPost, url, "Bearer "+token); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "a rebuild of carts is running") {
		t.Errorf("second POST = %d %s, want 409", resp.StatusCode, body)
	}

	close(release)
	natstest.Eventually(t, 10*time.Second, "the rebuild to end", func() bool {
		_, st := rebuildStatus(t, h.URL)
		return st.State != api.RebuildRunning
	})
	if _, st := rebuildStatus(t, h.URL); st.State != api.RebuildDone || st.Error != "" || st.Result == nil || st.Result.Checkpoint != 10 || st.Ended == nil {
		t.Errorf("after the rebuild: %+v, want done at checkpoint 10", st)
	}

	// Once it ended, another may start; the process's context ending ends it.
	release = make(chan struct{})
	if resp, body := do(t, http.MethodPost, url, "Bearer "+token); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST after the first ended = %d %s, want 202", resp.StatusCode, body)
	}
	shutdown()
	natstest.Eventually(t, 10*time.Second, "the rebuild to stop at shutdown", func() bool {
		_, st := rebuildStatus(t, h.URL)
		return st.State == api.RebuildFailed
	})
	if _, st := rebuildStatus(t, h.URL); !strings.Contains(st.Error, context.Canceled.Error()) || st.Result != nil {
		t.Errorf("after shutdown: %+v, want failed with %v", st, context.Canceled)
	}
}

// TestRebuildThroughAPI rebuilds a pipeline for real through the route: 202, progress until
// done, and readers of the projection (get and the key list) on the new version, with the
// same values.
func TestRebuildThroughAPI(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	yaml := fmt.Sprintf("nats: {url: %q}\nhttp: {listen: none}\n", srv.ClientURL()) + shoptest.Streams +
		"\npipelines:" + fmt.Sprintf(shoptest.Pipeline, "all", "end", 100, 1000)
	path := filepath.Join(t.TempDir(), "p.yaml")
	ps := pipetest.Build(t, js, path, yaml, nil)
	payloads := shoptest.Workload(5, 600, 5)
	natstest.Publish(t, js, shoptest.Subject, payloads)
	if err := pipetest.Run(context.Background(), t, js, ps, pipeline.Options{}); err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps}))
	defer h.Close()
	_, before := getBody(t, h.URL+"/v1/projections/carts/user-0")

	leases, err := checkpoint.OpenLeases(context.Background(), js, checkpoint.LeaseOptions{Holder: "api-test-rebuild"})
	if err != nil {
		t.Fatal(err)
	}
	fresh := pipetest.Build(t, js, path, yaml, nil) // not the pipelines a runner used
	rb := func(ctx context.Context, req api.RebuildRequest, onProgress func(rebuild.Progress)) (rebuild.Result, error) {
		return rebuild.Run(ctx, rebuild.Options{
			JS: js, Pipeline: fresh[0], From: req.From, DropOld: req.DropOld, Leases: leases,
			Instance: "api-test", OutputStreams: []string{"SHOP", "SHOP_DERIVED"}, OnProgress: onProgress,
		})
	}
	h2 := httptest.NewServer(api.New(api.Options{JS: js, Gatherer: prometheus.NewRegistry(), Pipelines: ps, Token: token, Rebuild: rb}))
	defer h2.Close()
	resp, body := do(t, http.MethodPost, h2.URL+"/v1/pipelines/carts/rebuild", "Bearer "+token)
	var started api.RebuildStarted
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal([]byte(body), &started) != nil || started.Pipeline != "carts" || started.Started.IsZero() {
		t.Fatalf("POST = %d %s, want 202 with the pipeline and when it started", resp.StatusCode, body)
	}
	natstest.Eventually(t, 60*time.Second, "the rebuild to end", func() bool {
		_, st := rebuildStatus(t, h2.URL)
		return st.State != api.RebuildRunning
	})
	_, st := rebuildStatus(t, h2.URL)
	if st.State != api.RebuildDone || st.Result == nil || st.Result.Version != 2 || st.Result.Buckets["carts"] != "carts_v2" ||
		st.Result.Checkpoint != uint64(len(payloads)) || st.Progress == nil || st.Progress.Phase != "done" {
		t.Fatalf("rebuild status = %+v (progress %+v, result %+v), want done, version 2 at checkpoint %d", st, st.Progress, st.Result, len(payloads))
	}

	cur, err := checkpoint.CurrentBucket(context.Background(), js, "carts")
	if err != nil || cur != "carts_v2" {
		t.Fatalf("current bucket of carts = %q, %v; want carts_v2", cur, err)
	}
	if code, after := getBody(t, h.URL+"/v1/projections/carts/user-0"); code != 200 || !sameState(t, before, after) {
		t.Errorf("user-0 after the rebuild = %d %s, before %s", code, after, before)
	}
	// The key list reads the current version: with the old bucket gone, it still answers.
	if _, err := rebuild.DropOld(context.Background(), js, ps[0]); err != nil {
		t.Fatal(err)
	}
	if code, body := getBody(t, h.URL+"/v1/projections/carts?prefix=user-0"); code != 200 || !strings.Contains(body, `"user-0"`) {
		t.Errorf("key list after the rebuild = %d %s", code, body)
	}
}

// sameState tells whether two answers of GET /v1/projections/{name}/{key} hold the same value.
func sameState(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb struct {
		Value json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return len(va.Value) > 0 && string(va.Value) == string(vb.Value)
}
