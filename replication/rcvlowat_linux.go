//go:build linux

package replication

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setRcvLowat sets the socket's SO_RCVLOWAT: the bytes that must be queued before a read
// waiting on it wakes.
func setRcvLowat(raw syscall.RawConn, n int) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

// queued is the number of bytes the socket holds unread (SIOCINQ); 0 if it cannot say.
func queued(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}
