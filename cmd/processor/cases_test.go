package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExampleCases runs every example's cases (examples/*/cases.yaml) through the test
// command, so that CI keeps them passing: every case of each file must pass, each on a line
// of its own, and every example has cases.
func TestExampleCases(t *testing.T) {
	dirs, err := filepath.Glob("../../examples/*/pipelines.yaml")
	if err != nil || len(dirs) < 3 {
		t.Fatalf("examples %v (%v), want at least 3", dirs, err)
	}
	for _, cfg := range dirs {
		dir := filepath.Dir(cfg)
		t.Run(filepath.Base(dir), func(t *testing.T) { exampleCases(t, dir, map[string]int{"shop": 5}[filepath.Base(dir)]) })
	}
}

// exampleCases runs the cases of one example, which must hold at least least of them (1 when
// 0).
func exampleCases(t *testing.T, dir string, least int) {
	file, err := os.ReadFile(filepath.Join(dir, "cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := len(regexp.MustCompile(`(?m)^  - name: `).FindAll(file, -1))
	if cases < max(least, 1) {
		t.Fatalf("%d cases in %s/cases.yaml, want at least %d", cases, dir, max(least, 1))
	}
	var out, errOut bytes.Buffer
	code := Main([]string{"test", "-c", filepath.Join(dir, "pipelines.yaml"), filepath.Join(dir, "cases.yaml")}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	passed := regexp.MustCompile(`(?m)^PASS .+ \([0-9.]+s\)$`).FindAllString(out.String(), -1)
	summary := strings.TrimSpace(out.String())
	summary = summary[strings.LastIndexByte(summary, '\n')+1:]
	if len(passed) != cases || summary != fmt.Sprintf("%d passed, 0 failed", cases) {
		t.Errorf("%d cases passed, want %d:\n%s", len(passed), cases, out.String())
	}
}
