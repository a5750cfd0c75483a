package certs

import (
	"encoding/json"
	"time"
)

// When to order, as pure functions of the certificate and the name's
// history, so that they can be tested without a clock or a CA.

// renewAt is when a certificate valid from notBefore to notAfter is due
// for renewal: renewBefore ahead of expiry, or, when renewBefore is at
// least its whole lifetime (Let's Encrypt's six-day certificates with the
// 30-day default), when a third of its lifetime is left, so that it is
// not renewed again at once.
func renewAt(notBefore, notAfter time.Time, renewBefore time.Duration) time.Time {
	if life := notAfter.Sub(notBefore); renewBefore >= life {
		renewBefore = life / 3
	}
	return notAfter.Add(-renewBefore)
}

// retryDelay is the wait after failures consecutive failed orders of a
// name: base, doubling each time, at most max.
func retryDelay(failures int, base, max time.Duration) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := base
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// nameState is what the cluster remembers about a name's failed orders,
// stored under "state/<name>" and deleted on success.
type nameState struct {
	Failures    int       `json:"failures"`
	LastAttempt time.Time `json:"last_attempt"`
	LastError   string    `json:"last_error"`
	Node        string    `json:"node"`
}

func (st nameState) encode() []byte {
	b, _ := json.Marshal(st)
	return b
}

func stateKey(name string) string { return "state/" + name }

// nextOrder is when name must be ordered: at once (the zero time) when no
// stored certificate serves it, at its renewal time otherwise, and never
// before the retry delay after the last failure has passed.
func nextOrder(cert *Certificate, st nameState, renewBefore, retryBase, retryMax time.Duration) time.Time {
	var at time.Time
	if cert != nil {
		at = renewAt(cert.NotBefore, cert.NotAfter, renewBefore)
	}
	if st.Failures > 0 {
		if retry := st.LastAttempt.Add(retryDelay(st.Failures, retryBase, retryMax)); retry.After(at) {
			at = retry
		}
	}
	return at
}

// challengeOrder is the challenge types to try for an attempt after
// failures failed ones: the configured order, rotated by one per failure,
// so that a method that keeps failing (port 80 not forwarded) does not
// block the other.
func challengeOrder(types []string, failures int) []string {
	if len(types) == 0 {
		return nil
	}
	k := failures % len(types)
	return append(append([]string(nil), types[k:]...), types[:k]...)
}
