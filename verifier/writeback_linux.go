package verifier

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing n bytes of f from off to disk, and returns
// without waiting: sync_file_range(2) with SYNC_FILE_RANGE_WRITE. It is only a head start for
// the fsync that follows, which reports any error, so its own error is ignored (a file system
// that does not support it, for one).
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
