// Package status reports on pipelines: their position and lag, keys and dead letters, read
// from NATS by any process ([Read]), and their health (running, failing, standby, stopped) as
// the process running each keeps it ([Board]) and stores it for the others ([Store]).
package status
