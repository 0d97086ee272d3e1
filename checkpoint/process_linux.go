package checkpoint

import "syscall"

// serverAttrs puts llama-server in a process group of its own, so that a Ctrl-C meant for vtune
// reaches vtune, which stops the server in order, and has the kernel end it should vtune die
// without cleaning up.
func serverAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
