// Package api serves jetfold's HTTP listener: Prometheus metrics, health probes and the
// read API for pipelines and projections. It exposes no write: there is no route that changes
// state, so there is no token to configure yet (the first write route brings bearer-token
// auth with it).
package api
