package checkpoint_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
)

func TestDeadLocal(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	// A process that exited and was not reaped yet (a zombie) is gone too.
	unreaped := exec.Command("true")
	if err := unreaped.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unreaped.Wait() }() // reaped at the end only
	natstest.Eventually(t, 5*time.Second, "the child to exit", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(unreaped.Process.Pid) + "/stat")
		return strings.Contains(string(b), ") Z")
	})
	dead := checkpoint.DeadLocal("host")
	self := checkpoint.LocalHolder("host")
	prefix := strings.TrimSuffix(self, strconv.Itoa(os.Getpid()))
	tests := []struct {
		holder string
		want   bool
	}{
		{prefix + strconv.Itoa(gone.Process.Pid), true},
		{prefix + strconv.Itoa(unreaped.Process.Pid), true},
		{self, false},         // this very process
		{prefix + "1", false}, // init runs
		{"other" + strings.TrimPrefix(prefix, "host") + strconv.Itoa(gone.Process.Pid), false},
		{"host-1234-" + strconv.Itoa(gone.Process.Pid), false}, // another PID namespace
		{"crash-child", false},
		{prefix + "abc", false},
	}
	for _, tt := range tests {
		if got := dead(tt.holder); got != tt.want {
			t.Errorf("DeadLocal(host)(%q) = %v, want %v", tt.holder, got, tt.want)
		}
	}
	if !strings.HasPrefix(self, "host-") || !strings.HasSuffix(self, "-"+strconv.Itoa(os.Getpid())) {
		t.Errorf("LocalHolder = %q", self)
	}
}
