// Package auth is SASL for client streams (SCRAM-SHA-256, SCRAM-SHA-1,
// their -PLUS variants with TLS channel binding (channel.go), PLAIN, and
// the HT mechanisms of XEP-0484 FAST tokens (fast.go)), credential
// creation and checking, throttling of failed attempts per address and
// per account (throttle.go), and the UserManager plugins use.
//
// Credentials are stored as salt, iteration count, StoredKey and ServerKey
// (RFC 5802), never the password or the salted password. An unknown user
// and a wrong password are indistinguishable to the client: same failure,
// same exchange shape (a fake salt that is the same on every node and
// after restarts, see FakeSaltKey, with the configured iteration count),
// and for PLAIN the same PBKDF2 work.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"log/slog"
	"time"

	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Mechanism names.
const (
	MechSCRAMSHA256     = "SCRAM-SHA-256"
	MechSCRAMSHA1       = "SCRAM-SHA-1"
	MechSCRAMSHA256Plus = "SCRAM-SHA-256-PLUS"
	MechSCRAMSHA1Plus   = "SCRAM-SHA-1-PLUS"
	MechPLAIN           = "PLAIN"
)

// Clock is time as the throttle sees it; tests inject a fake.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Options configure an Authenticator.
type Options struct {
	// Store holds the accounts.
	Store storage.Users
	// Domain is the served domain (for authzid checks).
	Domain string
	// Iterations is the PBKDF2 count used for new credentials and for the
	// fake credentials of unknown users. Default 4096.
	Iterations int
	// FailureDelay is the delay after the first failure from an address;
	// it doubles per further failure up to MaxFailureDelay (default 5s).
	// Zero disables throttling.
	FailureDelay    time.Duration
	MaxFailureDelay time.Duration
	// AccountFailures is how many failures an account may have before
	// attempts on it are spaced out, from FailureDelay doubling up to
	// MaxAccountDelay (default 30s); -1 disables the per-account limit.
	// See throttle.go.
	AccountFailures int
	MaxAccountDelay time.Duration
	// Registerer, when set, receives the throttle's metrics.
	Registerer prometheus.Registerer
	// FakeSaltKey keys the fake salts of unknown users (see FakeSaltKey).
	// Nil makes a random one, which differs between nodes and restarts:
	// for tests only.
	FakeSaltKey []byte
	// Tokens, when set, turns on XEP-0484 FAST: the module store the
	// tokens' records live in (fast.go), shared by every node.
	Tokens storage.KeyValue
	// TokenLifetime is how long a FAST token is valid. Default 504h.
	TokenLifetime time.Duration
	// Clock defaults to the real one.
	Clock  Clock
	Logger *slog.Logger
}

// Authenticator runs SASL exchanges against the user store. It is safe for
// concurrent use; one serves a whole node.
type Authenticator struct {
	store      storage.Users
	domain     string
	iterations int
	clock      Clock
	log        *slog.Logger
	secret     []byte // keys the fake salts of unknown users
	// tokens holds the FAST token records (nil: FAST off); fastKey, which
	// derives the tokens, comes from secret (fast.go).
	tokens        storage.KeyValue
	tokenLifetime time.Duration
	fastKey       []byte
	throttle      *throttle // by client address
	accounts      *throttle // by account; nil when off
	metrics       *throttleMetrics
}

// New returns an Authenticator.
func New(o Options) *Authenticator {
	if o.Iterations <= 0 {
		o.Iterations = 4096
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxFailureDelay <= 0 {
		o.MaxFailureDelay = 5 * time.Second
	}
	if o.MaxAccountDelay <= 0 {
		o.MaxAccountDelay = 30 * time.Second
	}
	a := &Authenticator{
		store:      o.Store,
		domain:     o.Domain,
		iterations: o.Iterations,
		clock:      o.Clock,
		log:        o.Logger,
		throttle:   newThrottle(o.FailureDelay, o.MaxFailureDelay, 0),
		metrics:    newThrottleMetrics(o.Registerer),
	}
	if o.AccountFailures >= 0 {
		a.accounts = newThrottle(o.FailureDelay, o.MaxAccountDelay, o.AccountFailures)
	}
	a.secret = o.FakeSaltKey
	if len(a.secret) == 0 {
		a.secret = make([]byte, 32)
		_, _ = rand.Read(a.secret)
	}
	a.tokens, a.tokenLifetime = o.Tokens, o.TokenLifetime
	if a.tokenLifetime <= 0 {
		a.tokenLifetime = 504 * time.Hour
	}
	a.fastKey = hmacSum(sha256.New, a.secret, "aviary: FAST tokens")
	return a
}

// Mechanisms returns the mechanisms to offer, strongest first. PLAIN is
// offered only on an encrypted stream.
func (a *Authenticator) Mechanisms(secure bool) []string {
	if secure {
		return []string{MechSCRAMSHA256, MechSCRAMSHA1, MechPLAIN}
	}
	return []string{MechSCRAMSHA256, MechSCRAMSHA1}
}

// Exchange is one SASL exchange in progress.
type Exchange interface {
	// Step consumes the client's (decoded) data: the initial response
	// first, then each response to a challenge. It returns the next
	// challenge (done false) or the additional data of success (done true),
	// or a *Failure.
	Step(ctx context.Context, in []byte) (out []byte, done bool, err error)
	// Username is the authenticated localpart once Step reported done.
	Username() string
}

// Start begins an exchange for mech. It returns a *Failure with
// invalid-mechanism for an unknown mechanism, or encryption-required for
// PLAIN on a plain stream.
func (a *Authenticator) Start(mech string, secure bool) (Exchange, error) {
	return a.StartFrom(mech, secure, "")
}

// StartFrom is Start for a client at addr: the exchange waits its turn on
// an account that has failed too often, taking turns with other
// addresses (see throttle.go).
func (a *Authenticator) StartFrom(mech string, secure bool, addr string) (Exchange, error) {
	return a.StartOn(mech, Conn{Secure: secure, Addr: addr})
}

// StartOn begins an exchange for mech on the stream c describes: its
// channel bindings for the -PLUS mechanisms (and to refuse a downgrade),
// its FAST token use for the HT mechanisms (fast.go).
func (a *Authenticator) StartOn(mech string, c Conn) (Exchange, error) {
	switch mech {
	case MechSCRAMSHA256, MechSCRAMSHA1, MechSCRAMSHA256Plus, MechSCRAMSHA1Plus:
		if isPlus(mech) && len(c.Bindings.Types()) == 0 {
			return nil, fail(CondInvalidMechanism, errors.New("scram: -PLUS without channel binding on this stream"))
		}
		x := newSCRAMExchange(a, mech)
		x.addr, x.bindings = c.Addr, c.Bindings
		return x, nil
	case MechPLAIN:
		if !c.Secure {
			return nil, fail(CondEncryptionRequired, nil)
		}
		return &plainExchange{a: a, addr: c.Addr}, nil
	}
	if m, ok := htMechanisms[mech]; ok {
		return a.startHT(m, c)
	}
	return nil, fail(CondInvalidMechanism, nil)
}

// Wait blocks until addr may try again, when earlier failures from it
// put it on hold: attempts from one address wait their turn, one per
// delay. Call it before running an exchange.
func (a *Authenticator) Wait(ctx context.Context, addr string) error {
	return a.waitTurn(ctx, a.throttle, "address", addr, "")
}

// waitAccount blocks until an attempt on user from addr may go ahead.
func (a *Authenticator) waitAccount(ctx context.Context, user, addr string) error {
	if a.accounts == nil {
		return nil
	}
	if addr == "" {
		addr = "unknown"
	}
	return a.waitTurn(ctx, a.accounts, "account", user, addr)
}

func (a *Authenticator) waitTurn(ctx context.Context, t *throttle, gate, key, addr string) error {
	for {
		d, again := t.reserve(key, addr, a.clock.Now())
		if d > 0 {
			if err := a.metrics.wait(gate, d.Seconds(), func() error { return a.clock.Sleep(ctx, d) }); err != nil {
				return err
			}
		}
		if !again {
			return nil
		}
	}
}

// accountFailed records a wrong password (or unknown user) for user.
func (a *Authenticator) accountFailed(user string) {
	if a.accounts != nil {
		a.accounts.fail(user, a.clock.Now())
		a.metrics.failed("account")
	}
}

// accountSucceeded clears user's failures.
func (a *Authenticator) accountSucceeded(user string) {
	if a.accounts != nil {
		a.accounts.reset(user)
	}
}

// Failed records a failure from addr and sleeps the resulting delay
// (base delay doubled per consecutive failure), so the client hears of the
// failure only then. It returns the delay.
func (a *Authenticator) Failed(ctx context.Context, addr string) time.Duration {
	d := a.throttle.fail(addr, a.clock.Now())
	a.metrics.failed("address")
	_ = a.clock.Sleep(ctx, d)
	return d
}

// Succeeded clears addr's failure record.
func (a *Authenticator) Succeeded(addr string) { a.throttle.reset(addr) }

// normalizeUsername applies the JID localpart profile (PRECIS
// UsernameCaseMapped) so "Alice" and "alice" are one account.
func (a *Authenticator) normalizeUsername(name string) (string, error) {
	return NormalizeUsername(name, a.domain)
}

// NormalizeUsername returns the canonical localpart for name, or
// ErrBadUsername.
func NormalizeUsername(name, domain string) (string, error) {
	if name == "" {
		return "", ErrBadUsername
	}
	j, err := wire.NewJID(name, domain, "")
	if err != nil || j.Local() == "" {
		return "", ErrBadUsername
	}
	return j.Local(), nil
}

// authzidMatches accepts an authzid that names the authenticating user's
// own bare JID (what clients send); we never allow acting as someone else.
func (a *Authenticator) authzidMatches(authzid, user string) bool {
	j, err := wire.ParseJID(authzid)
	if err != nil || j.Resource() != "" {
		return false
	}
	if j.Local() == "" {
		// Some clients send just the username.
		n, err := a.normalizeUsername(authzid)
		return err == nil && n == user
	}
	return j.Domain() == a.domain && j.Local() == user
}

// fakeCredential returns a credential for an unknown user that stays the
// same across attempts (so probing the salt reveals nothing) but can never
// verify: StoredKey is random-looking and nobody knows a preimage.
func (a *Authenticator) fakeCredential(sha1 bool, user string) storage.SCRAM {
	m := hmac.New(sha256.New, a.secret)
	if sha1 {
		m.Write([]byte("sha1\x00"))
	} else {
		m.Write([]byte("sha256\x00"))
	}
	m.Write([]byte(user))
	sum := m.Sum(nil)
	size := 32
	if sha1 {
		size = 20
	}
	key := hmacSum(sha256.New, sum, "stored")[:size]
	return storage.SCRAM{Salt: sum[:saltLen], Iterations: a.iterations, StoredKey: key, ServerKey: key}
}
