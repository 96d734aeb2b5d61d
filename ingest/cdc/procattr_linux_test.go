package cdc

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child process get SIGKILL should the test
// process die first (a test binary killed on timeout runs no cleanup).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
