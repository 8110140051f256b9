//go:build !linux

package testservers

import "syscall"

// sysProcAttr: the broker has its own process group (a Ctrl-C meant for go
// test reaches it only through the test's cleanup).
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
