package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
	"github.com/jetfold/jetfold/pipeline/state"
	"github.com/jetfold/jetfold/pipeline/status"
	"github.com/jetfold/jetfold/streams"
)

// Options configures [New].
type Options struct {
	JS        jetstream.JetStream
	Pipelines []*pipeline.Pipeline
	Gatherer  prometheus.Gatherer
	// Ready reports readiness (NATS connected, pipelines started).
	Ready func() bool
	// Connected reports whether NATS is connected: while it is not, /v1 answers 503 at once
	// instead of waiting for a request that cannot succeed.
	Connected func() bool
	// Board, when set, holds the live health of the process's pipelines: a failing pipeline
	// makes /readyz answer 503, and GET /v1/pipelines reports it.
	Board *status.Board

	// Token is the bearer token that the write routes require (POST and GET
	// /v1/pipelines/{name}/rebuild, POST .../pause and .../resume): "" leaves them out; a
	// nil Rebuild leaves out the rebuild routes.
	Token string
	// Rebuild rebuilds the pipeline that req names (see pipeline/rebuild.Run), calling
	// onProgress as it goes, and returns when it has switched or failed. It runs in the
	// background, on the context of BaseContext, not on the request's: it must build the
	// pipeline afresh, not use the one a runner of the process runs.
	Rebuild func(ctx context.Context, req RebuildRequest, onProgress func(rebuild.Progress)) (rebuild.Result, error)
	// BaseContext returns the context of the work that outlives a request (the rebuilds):
	// the process's, which ends at shutdown. Nil: context.Background().
	BaseContext func() context.Context
	// RebuildHolder, when set, returns the process that runs a rebuild of a pipeline ("":
	// none): POST /v1/pipelines/{name}/rebuild then answers 409 at once.
	RebuildHolder func(ctx context.Context, pipeline string) (string, error)
}

// New returns the handler of every endpoint.
func New(o Options) http.Handler {
	h := &handler{o: o, replays: make(chan struct{}, 1), rebuilds: map[string]*RebuildStatus{}}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", h.ready)
	mux.HandleFunc("GET /v1/pipelines", h.connected(h.pipelines))
	mux.HandleFunc("GET /v1/projections/{name}/{key...}", h.connected(h.projection(h.get)))
	mux.HandleFunc("GET /v1/projections/{name}", h.connected(h.projection(h.list)))
	if o.Token != "" {
		if o.Rebuild != nil {
			mux.HandleFunc("POST /v1/pipelines/{name}/rebuild", h.authorized(h.connected(h.pipeline(h.startRebuild))))
			mux.HandleFunc("GET /v1/pipelines/{name}/rebuild", h.authorized(h.pipeline(h.rebuildStatus)))
		}
		mux.HandleFunc("POST /v1/pipelines/{name}/pause", h.authorized(h.connected(h.pipeline(h.pause(true)))))
		mux.HandleFunc("POST /v1/pipelines/{name}/resume", h.authorized(h.connected(h.pipeline(h.pause(false)))))
	}
	return mux
}

// connected answers 503 while NATS is disconnected.
func (h *handler) connected(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.o.Connected != nil && !h.o.Connected() {
			writeErr(w, http.StatusServiceUnavailable, errors.New("NATS is disconnected: the processor is reconnecting"))
			return
		}
		next(w, r)
	}
}

// projection answers 404 for a projection no pipeline writes, naming those that exist (when
// the pipelines are known).
func (h *handler) projection(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(h.o.Pipelines) == 0 {
			next(w, r)
			return
		}
		var known []string
		for _, p := range h.o.Pipelines {
			known = append(known, p.Projections...)
		}
		if name := r.PathValue("name"); !slices.Contains(known, name) {
			writeErr(w, http.StatusNotFound, fmt.Errorf("unknown projection %q; projections: %s", name, strings.Join(known, ", ")))
			return
		}
		next(w, r)
	}
}

type handler struct {
	o Options
	// replays lets one replay (?at=) run at a time: each reads the source from its start.
	replays chan struct{}

	mu sync.Mutex
	// rebuilds holds the last rebuild this process started of each pipeline, by name.
	rebuilds map[string]*RebuildStatus
}

func (h *handler) ready(w http.ResponseWriter, _ *http.Request) {
	if h.o.Ready != nil && !h.o.Ready() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	if h.o.Board != nil {
		if failing := h.o.Board.Failing(); len(failing) > 0 {
			http.Error(w, "not ready: failing pipelines: "+strings.Join(failing, ", "), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (h *handler) pipelines(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	out := make([]status.Status, 0, len(h.o.Pipelines))
	for _, p := range h.o.Pipelines {
		st, err := pipeline.ReadStatus(ctx, h.o.JS, p)
		if err != nil {
			writeErr(w, http.StatusBadGateway, err)
			return
		}
		if h.o.Board != nil {
			if live, ok := h.o.Board.Get(p.Name); ok {
				st = st.WithHealth(live)
			}
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("at") {
		h.getAt(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	st, err := state.Read(ctx, h.o.JS, r.PathValue("name"), r.PathValue("key"))
	switch {
	case errors.Is(err, state.ErrNoState):
		writeErr(w, http.StatusNotFound, err)
	case err != nil:
		writeErr(w, http.StatusBadGateway, err)
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// replayTimeout bounds a replay (?at=), waiting for the one before included.
const replayTimeout = 2 * time.Minute

// AtValue is the answer of GET /v1/projections/{name}/{key}?at=: the state of a key just
// after a position of the source, replayed (see pipeline.Replay).
type AtValue struct {
	Projection string          `json:"projection"`
	Key        string          `json:"key"`
	Value      json.RawMessage `json:"state"`
	// Seq is the last source sequence applied to the key, At the position replayed to.
	Seq  uint64     `json:"seq"`
	At   uint64     `json:"at"`
	Time *time.Time `json:"time,omitempty"`
	// Replayed is the number of source events replayed.
	Replayed int `json:"replayed"`
}

// getAt answers ?at=SEQ|RFC3339 (and subject=, repeatable, from=SEQ), as `processor get
// --at` does: 400 for a bad position or a refused subject filter, 404 for no state there,
// 409 when the source no longer holds the history.
func (h *handler) getAt(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	at, err := pipeline.ParseAt(q.Get("at"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("at: %w", err))
		return
	}
	var from uint64
	if v := q.Get("from"); v != "" {
		if from, err = strconv.ParseUint(v, 10, 64); err != nil || from == 0 {
			writeErr(w, http.StatusBadRequest, errors.New("from: want a stream sequence (1 or more)"))
			return
		}
	}
	name, key := r.PathValue("name"), r.PathValue("key")
	i := slices.IndexFunc(h.o.Pipelines, func(p *pipeline.Pipeline) bool { return slices.Contains(p.Projections, name) })
	if i < 0 {
		writeErr(w, http.StatusNotFound, fmt.Errorf("projection %q: no pipeline of this process writes it", name))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), replayTimeout)
	defer cancel()
	select {
	case h.replays <- struct{}{}:
		defer func() { <-h.replays }()
	case <-ctx.Done():
		writeErr(w, http.StatusServiceUnavailable, errors.New("another replay is running: try again later"))
		return
	}
	res, err := pipeline.Replay(ctx, h.o.JS, h.o.Pipelines[i], pipeline.ReplayOptions{
		Projection: name, Key: key, At: at, Subjects: q["subject"], From: from,
	})
	switch {
	case errors.Is(err, pipeline.ErrInvalidAt) || errors.Is(err, pipeline.ErrSubjectsRefused) || err != nil && key == "":
		writeErr(w, http.StatusBadRequest, err)
	case errors.Is(err, pipeline.ErrNoHistory):
		writeErr(w, http.StatusConflict, err)
	case err != nil:
		writeErr(w, http.StatusBadGateway, err)
	case res.State == nil:
		writeErr(w, http.StatusNotFound, fmt.Errorf("%s/%s: no state at %s (sequence %d)", name, key, at, res.UpTo))
	default:
		v := AtValue{Projection: name, Key: key, Value: res.State, Seq: res.Seq, At: res.UpTo, Replayed: res.Read}
		if !res.Time.IsZero() {
			v.Time = &res.Time
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeErr(w, http.StatusBadRequest, errors.New("limit: want 1..10000"))
			return
		}
		limit = n
	}
	prefix := r.URL.Query().Get("prefix")
	bucket, err := checkpoint.CurrentBucket(ctx, h.o.JS, r.PathValue("name")) // the current version's
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	kv, err := h.o.JS.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	keys := []string{}
	if lister != nil {
		defer func() { _ = lister.Stop() }()
		for k := range lister.Keys() {
			key, err := streams.DecodeKey(k)
			if err != nil || !strings.HasPrefix(key, prefix) {
				continue
			}
			if keys = append(keys, key); len(keys) == limit {
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"projection": r.PathValue("name"), "keys": keys})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
