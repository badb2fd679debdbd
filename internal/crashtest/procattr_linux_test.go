package crashtest

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel SIGKILL the child when the test process dies first (a test
// binary killed by -timeout runs no cleanup): no processor outlives its test.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
