//go:build !unix

package c2s

func openFileLimit() uint64 { return 0 }
