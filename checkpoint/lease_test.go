package checkpoint_test

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/jetfold/jetfold/checkpoint"
)

func TestDeadLocal(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := checkpoint.DeadLocal("host")
	tests := []struct {
		holder string
		want   bool
	}{
		{"host-" + strconv.Itoa(gone.Process.Pid), true},
		{"host-" + strconv.Itoa(os.Getpid()), false}, // this very process
		{"host-1", false}, // init runs
		{"other-" + strconv.Itoa(gone.Process.Pid), false},
		{"hostx-" + strconv.Itoa(gone.Process.Pid), false},
		{"crash-child", false},
		{"host-abc", false},
	}
	for _, tt := range tests {
		if got := dead(tt.holder); got != tt.want {
			t.Errorf("DeadLocal(host)(%q) = %v, want %v", tt.holder, got, tt.want)
		}
	}
	if h := checkpoint.LocalHolder("host"); h != "host-"+strconv.Itoa(os.Getpid()) {
		t.Errorf("LocalHolder = %q", h)
	}
}
