package main

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is the release, set at build time:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/processor
var version = "dev"

// release matches a tagged module version (go install ...@v1.2.0), not a pseudo-version
// (v0.0.0-20260101120000-0123456789ab) nor a build from a modified tree (+dirty).
var release = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

var pseudo = regexp.MustCompile(`\d{14}-[0-9a-f]{12}$`)

// isRelease tells whether v, a module version, is a release: a tag, not a pseudo-version.
func isRelease(v string) bool { return release.MatchString(v) && !pseudo.MatchString(v) }

// versionLine returns "jetfold <version> (<commit>, <go version>)". The version is
// [version], or when that was not set, the module version of a `go install ...@vX.Y.Z`.
// The commit is the VCS revision Go stamped into the binary, with "-dirty" when the tree
// had changes, or "unknown" (go run, go test, -buildvcs=false).
func versionLine() string {
	v, commit := version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if mv := bi.Main.Version; v == "dev" && isRelease(mv) {
			v = mv
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			commit = rev
			if modified == "true" {
				commit += "-dirty"
			}
		}
	}
	return fmt.Sprintf("jetfold %s (%s, %s)", v, commit, runtime.Version())
}

// setVersion makes `processor --version` print [versionLine].
func setVersion(root *cobra.Command) {
	root.Version = versionLine()
	root.SetVersionTemplate("{{.Version}}\n")
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Long: strings.TrimSpace(`
Print "jetfold <version> (<commit>, <go version>)", as --version does. The version is set at
build time with -ldflags "-X main.version=..." (else "dev", or the version of a go install
...@version); the commit is the VCS revision Go stamped into the binary ("-dirty" when the
tree had changes; "unknown" when there is none, as with go run).`),
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(g.stdout, versionLine())
			return err
		},
	}
}
