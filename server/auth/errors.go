package auth

import "errors"

// SASL failure conditions (RFC 6120 §6.5).
const (
	CondAborted              = "aborted"
	CondAccountDisabled      = "account-disabled"
	CondEncryptionRequired   = "encryption-required"
	CondIncorrectEncoding    = "incorrect-encoding"
	CondInvalidAuthzid       = "invalid-authzid"
	CondInvalidMechanism     = "invalid-mechanism"
	CondMalformedRequest     = "malformed-request"
	CondNotAuthorized        = "not-authorized"
	CondTemporaryAuthFailure = "temporary-auth-failure"
)

// Failure is a SASL failure with its RFC 6120 condition. Exchanges return
// it; the stream layer sends <failure><condition/></failure>.
type Failure struct {
	Condition string
	// Err is the internal cause, for logs only; never sent to the client.
	Err error
}

func (f *Failure) Error() string {
	if f.Err != nil {
		return "auth: " + f.Condition + ": " + f.Err.Error()
	}
	return "auth: " + f.Condition
}

func (f *Failure) Unwrap() error { return f.Err }

func fail(cond string, err error) *Failure { return &Failure{Condition: cond, Err: err} }

var (
	// ErrUserExists means CreateUser found the name taken.
	ErrUserExists = errors.New("auth: user already exists")
	// ErrBadUsername means a username is not a valid JID localpart.
	ErrBadUsername = errors.New("auth: invalid username")
	// errLocked is the cause of CondAccountDisabled: an administrator
	// locked the account (storage.Users SetLocked).
	errLocked = errors.New("auth: the account is locked")
	// ErrEmptyPassword means a password was empty.
	ErrEmptyPassword = errors.New("auth: empty password")
)
