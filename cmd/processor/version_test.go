package main

import (
	"regexp"
	"runtime"
	"testing"
)

// TestVersionLine checks the line with a version set as -ldflags "-X main.version=..." sets it.
func TestVersionLine(t *testing.T) {
	saved := version
	t.Cleanup(func() { version = saved })
	version = "v1.2.3"
	want := regexp.MustCompile(`^jetfold v1\.2\.3 \((unknown|[0-9a-f]{40}(-dirty)?), ` + regexp.QuoteMeta(runtime.Version()) + `\)$`)
	if got := versionLine(); !want.MatchString(got) {
		t.Errorf("versionLine() = %q, want %s", got, want)
	}
}

func TestReleaseVersion(t *testing.T) {
	rows := []struct {
		v    string
		want bool
	}{
		{"v1.2.0", true},
		{"v1.2.0-rc.1", true},
		{"(devel)", false},
		{"", false},
		{"v0.0.0-20260101120000-0123456789ab", false},
		{"v1.2.1-0.20260101120000-0123456789ab", false},
		{"v1.2.0+dirty", false},
	}
	for _, r := range rows {
		if got := isRelease(r.v); got != r.want {
			t.Errorf("%q: release %v, want %v", r.v, got, r.want)
		}
	}
}
