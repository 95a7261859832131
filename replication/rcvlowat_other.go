//go:build !linux

package replication

import (
	"errors"
	"syscall"
)

// setRcvLowat is not supported here: the reader sleeps through its linger (see gather).
func setRcvLowat(syscall.RawConn, int) error { return errors.ErrUnsupported }

func queued(uintptr) int { return 0 }
