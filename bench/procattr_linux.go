package bench

import (
	"os/exec"
	"syscall"
)

// childAttr puts the child in a process group of its own (so that killGroup reaches it and a
// terminal's ^C reaches the bench alone, which then stops the children) and makes the kernel
// SIGKILL it when this process dies first, even by SIGKILL: no child outlives the bench.
func childAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
