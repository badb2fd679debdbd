package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestShopCases runs the README's test command on the shop example's cases, so that CI keeps
// them passing: every case of the file must pass, each on a line of its own.
func TestShopCases(t *testing.T) {
	file, err := os.ReadFile("../../examples/shop/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := len(regexp.MustCompile(`(?m)^  - name: `).FindAll(file, -1))
	if cases < 5 {
		t.Fatalf("%d cases in examples/shop/cases.yaml, want at least 5", cases)
	}
	var out, errOut bytes.Buffer
	code := Main([]string{"test", "-c", "../../examples/shop/pipelines.yaml", "../../examples/shop/cases.yaml"}, &out, &errOut)
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
