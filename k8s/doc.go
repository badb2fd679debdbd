// Package k8s holds no code: its directory holds jetfold's Kubernetes manifests (a kustomize
// base and a production overlay), the values of the NATS Helm chart they expect, and the
// tests that render the manifests and check them against the processor itself: every
// object decodes strictly into its Kubernetes type, the pipelines validate as `processor
// validate` would in the pod, the probes reach the processor's HTTP handler on the port it
// listens on, and every metric the alerts and the dashboard name exists.
package k8s
