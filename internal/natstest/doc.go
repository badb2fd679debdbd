// Package natstest starts real embedded nats-servers with JetStream for tests.
package natstest
