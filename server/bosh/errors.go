package bosh

import "errors"

// Errors a Session's Recv returns when the client side of the stream ends.
var (
	// ErrRestart is not a failure: the client asked for an XEP-0206 stream
	// restart (after SASL success). The core sends a new stream header
	// (Open) and features, then keeps reading.
	ErrRestart = errors.New("bosh: stream restart")
	// ErrTerminated means the client ended the session with type='terminate'.
	ErrTerminated = errors.New("bosh: session terminated by client")
	// ErrInactive means no request arrived within the inactivity period.
	ErrInactive = errors.New("bosh: session inactive")
	// ErrBinding means the session ended with a terminal binding error
	// (bad request, rid out of window, overactivity, shutdown...).
	ErrBinding = errors.New("bosh: terminal binding error")
	// ErrClosed means the server side closed the session.
	ErrClosed = errors.New("bosh: session closed")
)

// Terminal binding conditions of XEP-0124 §17.2 the connector sends.
// XEP-0124 once named too many simultaneous requests "overactivity"; the
// current text (1.11) uses policy-violation for it, and so do we.
const (
	CondBadRequest             = "bad-request"
	CondHostGone               = "host-gone"
	CondHostUnknown            = "host-unknown"
	CondImproperAddressing     = "improper-addressing"
	CondInternalServerError    = "internal-server-error"
	CondItemNotFound           = "item-not-found"
	CondOtherRequest           = "other-request"
	CondPolicyViolation        = "policy-violation"
	CondRemoteConnectionFailed = "remote-connection-failed"
	CondRemoteStreamError      = "remote-stream-error"
	CondSeeOtherURI            = "see-other-uri"
	CondSystemShutdown         = "system-shutdown"
	CondUndefinedCondition     = "undefined-condition"
)
