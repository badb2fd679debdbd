// Package streams is jetfold's NATS plumbing: the connection (to a cluster, or to an embedded
// nats-server with JetStream started in-process), the streams declared in the configuration,
// and the key-value buckets that hold projections and checkpoints.
//
// Nothing here knows about pipelines: it turns configuration into live NATS objects, retries
// what NATS asks to be retried, and never changes an existing stream silently.
package streams
