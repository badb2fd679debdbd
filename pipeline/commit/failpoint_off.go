//go:build !failpoints

package commit

// failpoint is a no-op without -tags failpoints; see failpoint.go.
func failpoint(string, ...func()) {}
