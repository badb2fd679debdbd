package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
)

// FuzzLoad checks that Load never panics, and that whatever it rejects it rejects with
// positioned *Errors in the file.
func FuzzLoad(f *testing.F) {
	f.Add(validYAML)
	f.Add("")
	f.Add("~\n")
	f.Add("- a\n")
	f.Add("nats:\n  url: x\n   bad: [\n")
	f.Add("pipeline: []\nstreams: [{name: S, subjects: [s]}]\n")
	f.Add("streams: [{name: S, subjects: [s]}]\npipelines:\n  - name: p\n    source: {stream: S, start: seq:x}\n" +
		"    key: k\n    batch: {size: abc, max_wait: 5 parsecs}\n    operators: [{filter: x, map: y}, z]\n")
	f.Add("base: &b {stream: S}\npipelines: [{name: p, source: {<<: *b}, key: k}, *b]\n")
	f.Add("a: 1\n---\nb: 2\n")
	f.Fuzz(func(t *testing.T, doc string) {
		path := filepath.Join(t.TempDir(), "fuzz.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path, config.LoadOptions{Environ: []string{
			"JETFOLD_PIPELINES_0_BATCH_SIZE=3", "JETFOLD_NATS_URL=nats://x", "JETFOLD_X=1",
		}})
		if c == nil && err == nil {
			t.Fatal("Load returned neither a Config nor an error")
		}
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Errorf("Load accepted what Validate rejects: %v", verr)
			}
			if p := c.Pos("pipelines.0.batch.size"); p.File != path {
				t.Errorf("Pos().File = %q, want %q", p.File, path)
			}
			return
		}
		if !errors.Is(err, diag.ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		for _, e := range leaves(err) {
			var ce *diag.Error
			if !errors.As(e, &ce) {
				t.Errorf("error is not a *diag.Error: %v", e)
				continue
			}
			if ce.Pos.File != path || ce.Pos.Line < 1 || ce.Pos.Col < 1 {
				t.Errorf("error without a position: %+v", ce)
			}
			if !strings.HasPrefix(ce.Error(), path+":") {
				t.Errorf("Error() = %q, want it to start with the file", ce.Error())
			}
		}
	})
}

// leaves returns the errors joined in err.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
