package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/rebuild"
)

// RebuildRequest is what POST /v1/pipelines/{name}/rebuild asks of [Options.Rebuild]: the
// pipeline, and the query parameters `from` (all, seq:N or time:RFC3339; "" is the
// pipeline's source.start) and `drop_old` (a boolean).
type RebuildRequest struct {
	Pipeline string
	From     string
	DropOld  bool
}

// RebuildStarted is the answer (202) of POST /v1/pipelines/{name}/rebuild.
type RebuildStarted struct {
	Pipeline string    `json:"pipeline"`
	Started  time.Time `json:"started"`
}

// Rebuild states, in [RebuildStatus].State.
const (
	RebuildRunning = "running"
	RebuildDone    = "done"
	RebuildFailed  = "failed"
)

// RebuildStatus is the answer of GET /v1/pipelines/{name}/rebuild: the last rebuild of the
// pipeline that this process started, running or ended.
type RebuildStatus struct {
	Pipeline string     `json:"pipeline"`
	From     string     `json:"from,omitempty"`
	DropOld  bool       `json:"drop_old,omitempty"`
	Started  time.Time  `json:"started"`
	Ended    *time.Time `json:"ended,omitempty"`
	// State is running, done (switched) or failed (Error says why).
	State    string           `json:"state"`
	Progress *RebuildProgress `json:"progress,omitempty"`
	// Result is set once the pipeline switched (also when dropping older versions failed
	// after: State is then failed).
	Result *RebuildResult `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// RebuildProgress is how far a rebuild is (see rebuild.Progress).
type RebuildProgress struct {
	// Version is the version being written.
	Version int `json:"version"`
	// Phase is replay, handover, switch or done.
	Phase string `json:"phase"`
	// Done and Total are source positions: how many of those to replay are behind it.
	Done  uint64 `json:"done"`
	Total uint64 `json:"total"`
	// Rate is in positions per second; Left the time left at that rate (0: unknown).
	Rate           float64 `json:"rate"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	LeftSeconds    float64 `json:"left_seconds"`
}

// RebuildResult is what a rebuild did (see rebuild.Result).
type RebuildResult struct {
	// Version is the version switched to; Buckets the bucket of each projection.
	Version int               `json:"version"`
	Buckets map[string]string `json:"buckets"`
	// Checkpoint is the source sequence the pipeline switched at.
	Checkpoint uint64 `json:"checkpoint"`
	Resumed    bool   `json:"resumed"`
	// Dropped are the buckets of older versions deleted (drop_old).
	Dropped []string `json:"dropped,omitempty"`
}

// authorized answers 401 unless the request carries `Authorization: Bearer <Token>`. The
// digests of the two are compared in constant time, so that neither the token nor its
// length shows in the time taken.
func (h *handler) authorized(next http.HandlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(h.o.Token))
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(auth, " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			challenge := `Bearer realm="jetfold"`
			if auth != "" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeErr(w, http.StatusUnauthorized, errors.New("this route needs the bearer token of http.token_file: Authorization: Bearer <token>"))
			return
		}
		next(w, r)
	}
}

// pipeline answers 404 for a pipeline this process does not know, naming those it knows.
func (h *handler) pipeline(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !slices.ContainsFunc(h.o.Pipelines, func(p *pipeline.Pipeline) bool { return p.Name == name }) {
			names := make([]string, len(h.o.Pipelines))
			for i, p := range h.o.Pipelines {
				names[i] = p.Name
			}
			writeErr(w, http.StatusNotFound, fmt.Errorf("unknown pipeline %q; pipelines: %s", name, strings.Join(names, ", ")))
			return
		}
		next(w, r)
	}
}

// startRebuild answers POST /v1/pipelines/{name}/rebuild: it starts the rebuild in the
// background and answers 202, or 409 while this process's last rebuild of the pipeline runs,
// 400 for a bad from or drop_old. A rebuild that another process runs is reported by GET as
// failed (rebuild.ErrRunning).
func (h *handler) startRebuild(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := RebuildRequest{Pipeline: r.PathValue("name"), From: q.Get("from")}
	if req.From != "" {
		if _, err := (config.Source{Start: req.From}).StartPosition(); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("from: %w", err))
			return
		}
	}
	if v := q.Get("drop_old"); v != "" {
		var err error
		if req.DropOld, err = strconv.ParseBool(v); err != nil {
			writeErr(w, http.StatusBadRequest, errors.New("drop_old: want true or false"))
			return
		}
	}
	h.mu.Lock()
	if cur := h.rebuilds[req.Pipeline]; cur != nil && cur.State == RebuildRunning {
		h.mu.Unlock()
		writeErr(w, http.StatusConflict, fmt.Errorf("a rebuild of %s is running since %s: GET this URL for its progress",
			req.Pipeline, cur.Started.Format(time.RFC3339)))
		return
	}
	st := &RebuildStatus{Pipeline: req.Pipeline, From: req.From, DropOld: req.DropOld, Started: time.Now().UTC(), State: RebuildRunning}
	h.rebuilds[req.Pipeline] = st
	h.mu.Unlock()

	ctx := context.Background()
	if h.o.BaseContext != nil {
		ctx = h.o.BaseContext()
	}
	go func() {
		res, err := h.o.Rebuild(ctx, req, func(p rebuild.Progress) {
			h.mu.Lock()
			defer h.mu.Unlock()
			st.Progress = &RebuildProgress{
				Version: p.Version, Phase: p.Phase, Done: p.Done, Total: p.Total, Rate: p.Rate,
				ElapsedSeconds: p.Elapsed.Seconds(), LeftSeconds: p.Left().Seconds(),
			}
		})
		h.mu.Lock()
		defer h.mu.Unlock()
		ended := time.Now().UTC()
		st.Ended, st.State = &ended, RebuildDone
		if res.Version > 0 {
			st.Result = &RebuildResult{Version: res.Version, Buckets: res.Buckets, Checkpoint: res.Seq, Resumed: res.Resumed, Dropped: res.Dropped}
		}
		if err != nil {
			st.State, st.Error = RebuildFailed, err.Error()
		}
	}()
	w.Header().Set("Location", r.URL.Path)
	writeJSON(w, http.StatusAccepted, RebuildStarted{Pipeline: st.Pipeline, Started: st.Started})
}

// rebuildStatus answers GET /v1/pipelines/{name}/rebuild: the last rebuild of the pipeline
// that this process started, or 404.
func (h *handler) rebuildStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	h.mu.Lock()
	st := h.rebuilds[name]
	var out RebuildStatus
	if st != nil {
		out = *st
		if st.Progress != nil {
			p := *st.Progress
			out.Progress = &p
		}
	}
	h.mu.Unlock()
	if st == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("this process started no rebuild of %s", name))
		return
	}
	writeJSON(w, http.StatusOK, out)
}
