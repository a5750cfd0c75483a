package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/server/auth"
)

// Sign-in limits. Guessing an admin's password was unthrottled: 411
// guesses per second from one client. Now, like an XMPP login (and through
// the same failure records, see SignInThrottle):
//   - one address checks one password at a time; a second attempt while
//     the first runs is refused at once with 429;
//   - attempts on one account check their passwords one after another,
//     each failure holding the account for the throttle's delay (1 s
//     doubling to 5 s by default), so many addresses together guess no
//     faster than one; an attempt that cannot get its turn within
//     signInQueueWait, or finds signInQueueMax attempts already waiting,
//     is refused with 429;
//   - each failure is answered only after the throttle's delay for its
//     address and its account.
//
// The right password still works while someone guesses; it may wait its
// turn behind the guesses. Scripts that must not wait use API tokens,
// which do not sign in.
const (
	signInQueueWait = 10 * time.Second
	signInQueueMax  = 32
)

// errTooManySignIns answers an attempt refused by the limits above.
var errTooManySignIns = &APIError{Status: http.StatusTooManyRequests, Message: "too many sign-in attempts: wait a few seconds and try again"}

// signInGate lets one sign-in per key (an address, an account) check its
// password at a time.
type signInGate struct {
	mu      sync.Mutex
	busy    map[string]chan struct{} // closed when the attempt holding the key ends
	waiting map[string]int           // attempts waiting in enter, per key
}

// errQueueFull means signInQueueMax attempts already wait for a key.
var errQueueFull = errors.New("api: too many sign-in attempts waiting")

func newSignInGate() *signInGate {
	return &signInGate{busy: map[string]chan struct{}{}, waiting: map[string]int{}}
}

// waiters is how many attempts wait for key.
func (g *signInGate) waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting[key]
}

// tryEnter takes key if it is free.
func (g *signInGate) tryEnter(key string) (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, held := g.busy[key]; held {
		return nil, false
	}
	return g.takeLocked(key), true
}

// enter waits for key until ctx ends, unless max attempts already wait.
func (g *signInGate) enter(ctx context.Context, key string, max int) (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	queued := false
	defer func() {
		if queued {
			if g.waiting[key]--; g.waiting[key] == 0 {
				delete(g.waiting, key)
			}
		}
	}()
	for {
		done, held := g.busy[key]
		if !held {
			return g.takeLocked(key), nil
		}
		if !queued {
			if g.waiting[key] >= max {
				return nil, errQueueFull
			}
			queued = true
			g.waiting[key]++
		}
		g.mu.Unlock()
		select {
		case <-done:
			g.mu.Lock()
		case <-ctx.Done():
			g.mu.Lock()
			return nil, ctx.Err()
		}
	}
}

func (g *signInGate) takeLocked(key string) func() {
	done := make(chan struct{})
	g.busy[key] = done
	return func() {
		g.mu.Lock()
		delete(g.busy, key)
		g.mu.Unlock()
		close(done)
	}
}

// accountKey names an account in the throttle's records: its bare JID,
// which never collides with the addresses XMPP logins are recorded under.
// It is "" for a name that cannot be an account of this domain (such an
// attempt fails without a password check and counts for its address only).
func (s *Server) accountKey(username string) string {
	user, dom, found := strings.Cut(username, "@")
	if found && !strings.EqualFold(dom, s.backend.Domain()) {
		return ""
	}
	local, err := auth.NormalizeUsername(user, s.backend.Domain())
	if err != nil {
		return ""
	}
	return local + "@" + strings.ToLower(s.backend.Domain())
}

// signInLimited is signIn under the sign-in limits (see signInQueueWait).
// addr is the client's address.
func (s *Server) signInLimited(ctx context.Context, addr, username, password string) (string, *APIError) {
	releaseAddr, ok := s.gate.tryEnter("addr " + addr)
	if !ok {
		return "", errTooManySignIns
	}
	defer releaseAddr()
	account := s.accountKey(username)
	if account != "" {
		qctx, cancel := context.WithTimeout(ctx, signInQueueWait)
		releaseAccount, err := s.gate.enter(qctx, "account "+account, signInQueueMax)
		cancel()
		if err != nil {
			return "", errTooManySignIns
		}
		defer releaseAccount()
	}
	keys := []string{addr}
	if account != "" {
		keys = append(keys, account)
	}
	for _, k := range keys {
		if err := s.throttle.Wait(ctx, k); err != nil {
			return "", errTooManySignIns
		}
	}
	var bare string
	var aerr *APIError
	if account == "" {
		aerr = errSignInFailed
	} else {
		bare, aerr = s.signIn(ctx, username, password)
	}
	if aerr == nil {
		for _, k := range keys {
			s.throttle.Succeeded(k)
		}
		return bare, nil
	}
	if aerr == errSignInFailed {
		if s.signInFailed != nil {
			s.signInFailed()
		}
		// Both delays run at once: the answer waits for the longer.
		var wg sync.WaitGroup
		for _, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.throttle.Failed(ctx, k)
			}()
		}
		wg.Wait()
	}
	return "", aerr
}

// retryAfter sets Retry-After on a 429: the XMPP throttle's longest
// delay (auth.Options.MaxFailureDelay's default).
func retryAfter(w http.ResponseWriter, aerr *APIError) {
	if aerr.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(5))
	}
}

// newDefaultThrottle is the throttle of a Server built without one: the
// XMPP login's own, with c2s.sasl_failure_delay, but not shared with any
// XMPP login (only its Wait, Failed and Succeeded are used, which need no
// store).
func newDefaultThrottle(delay time.Duration) SignInThrottle {
	return auth.New(auth.Options{FailureDelay: delay})
}

var _ SignInThrottle = (*auth.Authenticator)(nil)
