// Package api serves jetfold's HTTP listener: Prometheus metrics, health probes, the read API
// for pipelines and projections, and one write route, behind a bearer token: POST
// /v1/pipelines/{name}/rebuild starts a rebuild of a pipeline in the background (see
// pipeline/rebuild), and GET on the same path reports how far it is. Without a token
// (Options.Token, from http.token_file) that route is not served at all.
package api
