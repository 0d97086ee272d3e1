//go:build unix && !linux

package checkpoint

import "syscall"

// serverAttrs puts llama-server in a process group of its own, so that a Ctrl-C meant for vtune
// reaches vtune, which stops the server in order. Only Linux can also end it when vtune dies.
func serverAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
