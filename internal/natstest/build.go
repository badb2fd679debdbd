package natstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Binary is cmd/processor built once per test binary (on the first Path), for the tests that
// run it as a child process. Declare one as a package variable and call Remove from TestMain
// once the tests ran.
type Binary struct {
	// Tags are the build tags (none by default).
	Tags []string

	once sync.Once
	path string
	err  error
}

// Path builds the processor the first time and returns the executable's path; a failed
// build fails t (every time).
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "jetfold-processor-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "processor")
		args := []string{"build"}
		if len(b.Tags) > 0 {
			args = append(args, "-tags", strings.Join(b.Tags, ","))
		}
		args = append(args, "-o", b.path, "github.com/jetfold/jetfold/cmd/processor")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove removes the built executable, if any.
func (b *Binary) Remove() {
	if b.path != "" {
		_ = os.RemoveAll(filepath.Dir(b.path))
	}
}
