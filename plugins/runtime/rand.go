package runtime

import "crypto/rand"

// randReader gives guests real randomness (Go guests seed maps with it).
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return rand.Read(p) }
