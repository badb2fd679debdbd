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
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetfold/jetfold/pipeline"
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
}

// New returns the handler of every endpoint.
func New(o Options) http.Handler {
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", h.ready)
	mux.HandleFunc("GET /v1/pipelines", h.connected(h.pipelines))
	mux.HandleFunc("GET /v1/projections/{name}/{key...}", h.connected(h.projection(h.get)))
	mux.HandleFunc("GET /v1/projections/{name}", h.connected(h.projection(h.list)))
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

type handler struct{ o Options }

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
	kv, err := h.o.JS.KeyValue(ctx, r.PathValue("name"))
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
