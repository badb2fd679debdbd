package api

import (
	"net/http"

	"github.com/jetfold/jetfold/pipeline/control"
)

// Paused is the answer of POST /v1/pipelines/{name}/pause and .../resume.
type Paused struct {
	Pipeline string `json:"pipeline"`
	Paused   bool   `json:"paused"`
}

// pause answers POST /v1/pipelines/{name}/pause (paused true) and .../resume (false): it
// records the request for every process that runs the pipeline (package control); the query
// parameter `by` says who asks (default "http").
func (h *handler) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, by := r.PathValue("name"), r.URL.Query().Get("by")
		if by == "" {
			by = "http"
		}
		if err := control.Set(r.Context(), h.o.JS, name, control.State{Paused: paused, By: by}); err != nil {
			writeErr(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, http.StatusOK, Paused{Pipeline: name, Paused: paused})
	}
}
