//go:build unix

package c2s

import "syscall"

// peekReady is the syscall.RawConn.Read callback of waitReadable: true
// (stop waiting) once a byte, EOF or an error is there to read; false
// makes the runtime park the goroutine on the poller until the socket is
// readable. MSG_PEEK leaves the byte for the real read.
func peekReady(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN && err != syscall.EINTR
}
