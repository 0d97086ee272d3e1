//go:build unix

package checkpoint

import (
	"os"
	"syscall"
)

// signalServer asks the server's process group to end (SIGTERM), or makes it end (SIGKILL), so
// that a wrapper's children go too.
func signalServer(p *os.Process, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-p.Pid, sig)
}
