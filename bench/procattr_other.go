//go:build unix && !linux

package bench

import (
	"os/exec"
	"syscall"
)

// childAttr puts the child in a process group of its own (so that killGroup reaches it). Only
// Linux can make the kernel kill it with this process: elsewhere a bench killed by SIGKILL
// leaves its children to exit when their server is gone.
func childAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
