package c2s

// Metrics counts sessions, stanzas and closes.
type Metrics struct{}
