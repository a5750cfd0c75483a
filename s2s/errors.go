package s2s

import "errors"

// Errors of the s2s package. Each failed outgoing connection maps to one
// stanza error in bounceError.
var (
	// ErrNoTargets means the remote domain has no server to connect to
	// (no SRV, A or AAAA records, or SRV target ".").
	ErrNoTargets = errors.New("s2s: remote domain has no s2s service")
	// ErrNoTLS means the peer did not offer STARTTLS, which we require.
	ErrNoTLS = errors.New("s2s: peer does not offer starttls")
	// ErrCertUntrusted means the peer's certificate chain does not verify.
	ErrCertUntrusted = errors.New("s2s: peer certificate not trusted")
	// ErrCertName means the certificate does not name the peer's domain.
	ErrCertName = errors.New("s2s: peer certificate does not match domain")
	// ErrNoCert means the peer presented no certificate.
	ErrNoCert = errors.New("s2s: peer presented no certificate")
	// ErrAuthFailed means neither SASL EXTERNAL nor dialback authenticated
	// us to the peer.
	ErrAuthFailed = errors.New("s2s: authentication with peer failed")
	// ErrDialbackRefused means dialback was refused by policy
	// (RequireValidCerts) on our side or the peer's.
	ErrDialbackRefused = errors.New("s2s: dialback refused by policy")
	// ErrStreamError means the peer closed the stream with a stream error.
	ErrStreamError = errors.New("s2s: peer sent a stream error")
	// ErrBadStream means the peer's stream header or negotiation was invalid.
	ErrBadStream = errors.New("s2s: invalid stream from peer")
	// ErrStopped means the service is shutting down.
	ErrStopped = errors.New("s2s: service stopped")
	// ErrQueueFull means too many stanzas wait for one remote domain.
	ErrQueueFull = errors.New("s2s: outgoing queue full")
	// ErrIdle means an outgoing connection was closed for inactivity.
	ErrIdle = errors.New("s2s: idle")
)

// closeReason says why a stream ended; it is logged with every close.
type closeReason int

const (
	closeUnknown closeReason = iota
	closePeerClosed
	closeIdle
	closeShutdown
	closeReadError
	closeWriteError
	closeConnectFailed
	closeAuthFailed
	closePolicy
	closeInvalidFrom
	closeHostUnknown
	closeStreamError
	closeBadStream
	closeTimeout
	closeUnsolicited
)

func (r closeReason) String() string {
	switch r {
	case closePeerClosed:
		return "peer closed"
	case closeIdle:
		return "idle"
	case closeShutdown:
		return "shutdown"
	case closeReadError:
		return "read error"
	case closeWriteError:
		return "write error"
	case closeConnectFailed:
		return "connect failed"
	case closeAuthFailed:
		return "authentication failed"
	case closePolicy:
		return "policy violation"
	case closeInvalidFrom:
		return "invalid from"
	case closeHostUnknown:
		return "host unknown"
	case closeStreamError:
		return "peer stream error"
	case closeBadStream:
		return "bad stream"
	case closeTimeout:
		return "timeout"
	case closeUnsolicited:
		return "unsolicited dialback"
	}
	return "unknown"
}
