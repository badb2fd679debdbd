// Package state is a pipeline's state store: a bounded LRU cache of per-key states over the
// projections' KV buckets, their reads (on demand, and ahead of the events that need them),
// the sealing of the keys a batch changed for their commit, the format of a projection value
// (the state as plain JSON, its metadata in Jetfold-* headers) and the size check against the
// value limit.
package state
