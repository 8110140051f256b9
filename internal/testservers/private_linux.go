package testservers

import "syscall"

// sysProcAttr: the broker has its own process group (a Ctrl-C meant for go
// test reaches it only through the test's cleanup) and is killed if the
// test binary dies without cleaning up (a go test timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
