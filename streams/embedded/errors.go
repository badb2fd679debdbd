package embedded

import "errors"

var (
	// ErrStart is returned when the embedded nats-server does not become ready.
	ErrStart = errors.New("embedded nats-server did not start")
	// ErrStoreInUse is returned when another process runs an embedded server on the same
	// store directory (nats-server itself does not lock it, and two would corrupt it).
	ErrStoreInUse = errors.New("store directory in use by another process")
	// ErrNoStore is returned with [ConnectOptions.NoCreate] when the embedded store directory
	// does not exist: nothing ever ran there.
	ErrNoStore = errors.New("no embedded store: not started yet")
)
