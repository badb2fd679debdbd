// Package source reads a pipeline's source stream: it opens the consumer at the checkpoint
// (nats.go's ordered consumer, ephemeral and unacknowledged, on limits retention; a durable
// AckAll one on interest retention), reads each message's JetStream metadata from its
// acknowledgement subject in place, and hands messages to the processing loop through a
// bounded buffer.
package source
