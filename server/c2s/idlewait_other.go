//go:build !unix

package c2s

// peekReady never waits where MSG_PEEK is not available: the reader then
// parks in its normal read.
func peekReady(uintptr) bool { return true }
