//go:build unix

package runner

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes the command the leader of a new process group so
// a cancel reaches everything it started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// interruptGroup sends SIGINT to the command's process group.
func interruptGroup(cmd *exec.Cmd) error {
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
}

// killGroup sends SIGKILL to the command's process group.
func killGroup(cmd *exec.Cmd) error {
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// signalExit returns 128+signal when the command was killed by a signal.
func signalExit(cmd *exec.Cmd) (code int, sig string, ok bool) {
	ws, isWS := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !isWS || !ws.Signaled() {
		return 0, "", false
	}
	return 128 + int(ws.Signal()), ws.Signal().String(), true
}
