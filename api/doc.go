// Package api serves jetfold's HTTP listener: Prometheus metrics, health probes and the
// read API for pipelines and projections. It exposes no write today; writes, when they come,
// require the bearer token of http.token_file.
package api
