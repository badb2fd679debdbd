//go:build !failpoints

// Package failpoint lets the crash tests kill the processor at chosen points of its code: built
// with -tags failpoints, [Hit] SIGKILLs the process at the points JETFOLD_FAILPOINTS lists;
// without the tag it does nothing.
package failpoint

// Hit is a no-op without -tags failpoints; see on.go.
func Hit(string, ...func()) {}
