//go:build !failpoints

package pipeline

// failpoint is a no-op without -tags failpoints; see failpoint.go.
func failpoint(string, ...func()) {}
