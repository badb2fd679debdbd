// Package embedded starts the in-process nats-server jetfold runs when no NATS URL is set, and connects to it.
package embedded
