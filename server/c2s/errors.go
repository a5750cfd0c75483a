package c2s

import "errors"

// CloseReason says why a session ended. Every close carries exactly one;
// it is logged and counted (metric aviary_c2s_closes_total{reason}).
type CloseReason int

// Close reasons.
const (
	// ReasonNone: the session has not closed.
	ReasonNone CloseReason = iota
	// ReasonClientClosed: the client closed its stream cleanly.
	ReasonClientClosed
	// ReasonReadError: the transport failed while reading (connection reset,
	// EOF without a closing tag).
	ReasonReadError
	// ReasonWriteError: a write failed or passed its deadline.
	ReasonWriteError
	// ReasonProtocol: the client broke the protocol; a stream error went out
	// (not-well-formed, policy-violation, invalid-namespace...).
	ReasonProtocol
	// ReasonAuthTimeout: the client did not authenticate in time.
	ReasonAuthTimeout
	// ReasonIdleTimeout: no answer to our ping in time.
	ReasonIdleTimeout
	// ReasonSlowConsumer: the outbound queue passed its byte cap.
	ReasonSlowConsumer
	// ReasonConflict: another session took over the resource.
	ReasonConflict
	// ReasonShutdown: the node is stopping.
	ReasonShutdown
	// ReasonKicked: the router or an administrator closed the session.
	ReasonKicked
	// ReasonResumed: a stream-management resumption took the session over.
	ReasonResumed
	// ReasonResumeTimeout: a detached session was not resumed in time.
	ReasonResumeTimeout
	// ReasonTooManySessions: the node is at c2s.max_sessions.
	ReasonTooManySessions
	// ReasonRedirected: the node sent the client elsewhere (see-other-host)
	// or refused the stream through its Admission (draining, overloaded).
	ReasonRedirected
	// ReasonTooManyUnauthenticated: the client's address already has
	// c2s.max_unauthenticated_per_address streams that have not
	// authenticated.
	ReasonTooManyUnauthenticated
	// ReasonInactivity: the client stopped coming back (a BOSH session
	// got no request within its inactivity period: a closed tab); the
	// transport reported ErrInactive.
	ReasonInactivity
)

var reasonNames = [...]string{
	ReasonNone:            "none",
	ReasonClientClosed:    "client_closed",
	ReasonReadError:       "read_error",
	ReasonWriteError:      "write_error",
	ReasonProtocol:        "protocol_error",
	ReasonAuthTimeout:     "auth_timeout",
	ReasonIdleTimeout:     "idle_timeout",
	ReasonSlowConsumer:    "slow_consumer",
	ReasonConflict:        "conflict",
	ReasonShutdown:        "shutdown",
	ReasonKicked:          "kicked",
	ReasonResumed:         "resumed_elsewhere",
	ReasonResumeTimeout:   "resume_timeout",
	ReasonTooManySessions: "too_many_sessions",
	ReasonRedirected:      "redirected",

	ReasonTooManyUnauthenticated: "too_many_unauthenticated",
	ReasonInactivity:             "inactivity_timeout",
}

func (r CloseReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

var (
	// ErrInactive is what a transport's ReadElement returns (wrapped or
	// not) when its client stopped coming back within the transport's
	// inactivity period (BOSH): the session closes with ReasonInactivity.
	ErrInactive = errors.New("c2s: the client sent nothing within the inactivity period")
	// ErrBufferedBeforeTLS means the client sent data after <starttls/>
	// before the TLS handshake (RFC 6120 §5.4.3.3 forbids it).
	ErrBufferedBeforeTLS = errors.New("c2s: data after starttls before the handshake")
	// ErrNoTLS means STARTTLS was attempted without a certificate.
	ErrNoTLS = errors.New("c2s: no TLS configuration")
)
