//go:build !race

package pipeline_test

import "time"

// reconnectEvery paces TestReconnectsLoseNothing's forced reconnects.
const reconnectEvery = 40 * time.Millisecond
