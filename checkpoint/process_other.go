//go:build !unix

package checkpoint

import (
	"os"
	"syscall"
)

// serverAttrs asks nothing of the process: without process groups, a Ctrl-C reaches the server
// too, and vtune still stops it.
func serverAttrs() *syscall.SysProcAttr { return nil }

// signalServer ends the server: without signals, asking and making are the same.
func signalServer(p *os.Process, kill bool) { p.Kill() }
