// Package streams is jetfold's NATS plumbing: the connection (to a cluster by URL, or in-process
// to the embedded nats-server that package [github.com/jetfold/jetfold/streams/embedded]
// starts), the streams declared in the configuration, and the key-value buckets that hold
// projections and checkpoints.
//
// Nothing here knows about pipelines: it turns configuration into live NATS objects, retries
// what NATS asks to be retried, and never changes an existing stream silently. Nothing here
// links nats-server either: a runtime that connects by URL does not carry the server.
package streams
