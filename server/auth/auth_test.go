package auth

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/storage"
	"mellium.im/sasl"
)

// memUsers is a tiny in-memory storage.Users.
type memUsers struct {
	mu    sync.Mutex
	users map[string]storage.User
}

func newMemUsers() *memUsers { return &memUsers{users: map[string]storage.User{}} }

func (m *memUsers) CreateUser(ctx context.Context, u storage.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[u.Username]; ok {
		return storage.ErrExists
	}
	m.users[u.Username] = u
	return nil
}

func (m *memUsers) GetUser(ctx context.Context, name string) (storage.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return storage.User{}, storage.ErrNotFound
	}
	return u, nil
}

func (m *memUsers) SetCredentials(ctx context.Context, name string, c storage.Credentials) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return storage.ErrNotFound
	}
	u.Credentials = c
	m.users[name] = u
	return nil
}

func (m *memUsers) SetLocked(ctx context.Context, name string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return storage.ErrNotFound
	}
	if at.IsZero() || !u.Locked() {
		u.LockedAt = at
	}
	m.users[name] = u
	return nil
}

func (m *memUsers) DeleteUser(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.users, name)
	return nil
}

func (m *memUsers) ListUsers(ctx context.Context, contains string, limit, offset int) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.users {
		if strings.Contains(n, contains) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *memUsers) CountUsers(ctx context.Context) (int, error) { return len(m.users), nil }

func setup(t *testing.T) (*Authenticator, *Users) {
	t.Helper()
	store := newMemUsers()
	um := &Users{Store: store, Domain: "example.org", Iterations: 4096}
	if err := um.CreateUser(context.Background(), "Alice", "s3cret pass"); err != nil {
		t.Fatal(err)
	}
	return New(Options{Store: store, Domain: "example.org"}), um
}

// run drives an exchange with a mellium client negotiator.
func run(t *testing.T, a *Authenticator, mech sasl.Mechanism, user, pass string, secure bool) (string, error) {
	t.Helper()
	ctx := context.Background()
	c := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(user), []byte(pass), nil }))
	_, resp, err := c.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := a.Start(mech.Name, secure)
	if err != nil {
		return "", err
	}
	for {
		out, done, err := x.Step(ctx, resp)
		if err != nil {
			return "", err
		}
		if done {
			if len(out) > 0 {
				if _, _, err := c.Step(out); err != nil {
					t.Fatalf("client rejects server signature: %v", err)
				}
			}
			return x.Username(), nil
		}
		if _, resp, err = c.Step(out); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMechanisms(t *testing.T) {
	a, _ := setup(t)
	cases := []struct {
		name   string
		mech   sasl.Mechanism
		user   string
		pass   string
		secure bool
		want   string // username, or failure condition
	}{
		{"scram-sha-256", sasl.ScramSha256, "alice", "s3cret pass", false, "alice"},
		{"scram-sha-1", sasl.ScramSha1, "alice", "s3cret pass", false, "alice"},
		{"scram case-mapped name", sasl.ScramSha256, "ALICE", "s3cret pass", false, "alice"},
		{"plain", sasl.Plain, "alice", "s3cret pass", true, "alice"},
		{"scram wrong password", sasl.ScramSha256, "alice", "nope", false, CondNotAuthorized},
		{"scram unknown user", sasl.ScramSha256, "bob", "s3cret pass", false, CondNotAuthorized},
		{"scram-1 unknown user", sasl.ScramSha1, "bob", "x", false, CondNotAuthorized},
		{"plain wrong password", sasl.Plain, "alice", "nope", true, CondNotAuthorized},
		{"plain unknown user", sasl.Plain, "bob", "nope", true, CondNotAuthorized},
		{"plain unencrypted", sasl.Plain, "alice", "s3cret pass", false, CondEncryptionRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(t, a, tc.mech, tc.user, tc.pass, tc.secure)
			if err != nil {
				var f *Failure
				if !errors.As(err, &f) {
					t.Fatalf("error %v is not a Failure", err)
				}
				got = f.Condition
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLockedAccount: a locked account's right password gets
// account-disabled with every mechanism, a wrong one still not-authorized
// (the lock is told only to whoever knows the password), locking closes
// the account's sessions, and unlocking lets it in again.
func TestLockedAccount(t *testing.T) {
	a, um := setup(t)
	var kicked []string
	um.KickFunc = func(ctx context.Context, bare, reason string) int { kicked = append(kicked, bare+" "+reason); return 2 }
	ctx := context.Background()
	n, err := um.SetLocked(ctx, "ALICE", true)
	if err != nil || n != 2 || len(kicked) != 1 || !strings.HasPrefix(kicked[0], "alice@example.org ") {
		t.Fatalf("SetLocked = %d, %v; kicked %v", n, err, kicked)
	}
	if _, err := um.SetLocked(ctx, "nobody", true); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("locking an unknown account: %v", err)
	}
	for _, tc := range []struct {
		mech sasl.Mechanism
		pass string
		want string
	}{
		{sasl.ScramSha256, "s3cret pass", CondAccountDisabled},
		{sasl.ScramSha1, "s3cret pass", CondAccountDisabled},
		{sasl.Plain, "s3cret pass", CondAccountDisabled},
		{sasl.ScramSha256, "wrong", CondNotAuthorized},
		{sasl.Plain, "wrong", CondNotAuthorized},
	} {
		_, err := run(t, a, tc.mech, "alice", tc.pass, true)
		var f *Failure
		if !errors.As(err, &f) || f.Condition != tc.want {
			t.Errorf("%s with %q: %v, want %s", tc.mech.Name, tc.pass, err, tc.want)
		}
	}
	if ok, err := um.CheckPassword(ctx, "alice", "s3cret pass"); ok || err != nil {
		t.Errorf("CheckPassword of a locked account = %v, %v", ok, err)
	}
	if _, err := um.SetLocked(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if got, err := run(t, a, sasl.ScramSha256, "alice", "s3cret pass", false); err != nil || got != "alice" {
		t.Errorf("after unlocking: %q, %v", got, err)
	}
	if ok, _ := um.CheckPassword(ctx, "alice", "s3cret pass"); !ok {
		t.Error("CheckPassword after unlocking = false")
	}
}

func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	a, _ := setup(t)
	first := func(user string) string {
		x, _ := a.Start(MechSCRAMSHA256, false)
		out, _, err := x.Step(context.Background(), []byte("n,,n="+user+",r=abcdefgh"))
		if err != nil {
			t.Fatal(err)
		}
		// drop the nonce: r=<nonce>,s=...,i=...
		_, rest, _ := strings.Cut(string(out), ",")
		return rest
	}
	known, unknown := first("alice"), first("nobody")
	if !strings.HasPrefix(known, "s=") || !strings.HasPrefix(unknown, "s=") {
		t.Fatalf("bad server-first: %q %q", known, unknown)
	}
	if strings.HasSuffix(known, ",i=4096") != strings.HasSuffix(unknown, ",i=4096") {
		t.Errorf("iteration counts differ: %q vs %q", known, unknown)
	}
	if again := first("nobody"); again != unknown {
		t.Errorf("fake salt not stable: %q then %q", unknown, again)
	}
}

func TestMalformed(t *testing.T) {
	a, _ := setup(t)
	cases := []struct{ name, mech, first string }{
		{"empty", MechSCRAMSHA256, ""},
		{"no gs2", MechSCRAMSHA256, "n=alice,r=abc"},
		{"bad cbflag", MechSCRAMSHA256, "x,,n=alice,r=abc"},
		{"missing nonce", MechSCRAMSHA256, "n,,n=alice"},
		{"bad escape", MechSCRAMSHA256, "n,,n=al=ZZice,r=abc"},
		{"plain one part", MechPLAIN, "alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := a.Start(tc.mech, true)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = x.Step(context.Background(), []byte(tc.first))
			var f *Failure
			if !errors.As(err, &f) || f.Condition != CondMalformedRequest {
				t.Errorf("err = %v, want malformed-request", err)
			}
		})
	}
	if _, err := a.Start("DIGEST-MD5", true); err == nil || err.(*Failure).Condition != CondInvalidMechanism {
		t.Errorf("unknown mechanism: %v", err)
	}
}

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.sleeps = append(c.sleeps, d)
		c.now = c.now.Add(d)
	}
	return nil
}

func TestThrottleDoubles(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	a := New(Options{Store: newMemUsers(), Domain: "example.org", FailureDelay: time.Second, Clock: clk})
	ctx := context.Background()
	var got []time.Duration
	for range 5 {
		if err := a.Wait(ctx, "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
		got = append(got, a.Failed(ctx, "10.0.0.1"))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	// Another address is not affected; success resets.
	if d := a.Failed(ctx, "10.0.0.2"); d != time.Second {
		t.Errorf("other address delay %v", d)
	}
	a.Succeeded("10.0.0.1")
	if d := a.Failed(ctx, "10.0.0.1"); d != time.Second {
		t.Errorf("after success delay %v", d)
	}
	// A new attempt right after a failure waits out the delay.
	clk.sleeps = nil
	a.Failed(ctx, "10.0.0.3") // sleeps 1s itself
	clk.now = clk.now.Add(-500 * time.Millisecond)
	_ = a.Wait(ctx, "10.0.0.3")
	if len(clk.sleeps) != 2 || clk.sleeps[1] != 500*time.Millisecond {
		t.Errorf("wait sleeps = %v", clk.sleeps)
	}
}

func TestUsers(t *testing.T) {
	_, um := setup(t)
	ctx := context.Background()
	if err := um.CreateUser(ctx, "alice", "x"); !errors.Is(err, ErrUserExists) {
		t.Errorf("duplicate: %v", err)
	}
	if err := um.CreateUser(ctx, "a@b", "x"); !errors.Is(err, ErrBadUsername) {
		t.Errorf("bad name: %v", err)
	}
	if ok, _ := um.CheckPassword(ctx, "alice", "s3cret pass"); !ok {
		t.Error("password check failed")
	}
	if err := um.SetPassword(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := um.CheckPassword(ctx, "alice", "s3cret pass"); ok {
		t.Error("old password still works")
	}
	if ok, _ := um.CheckPassword(ctx, "alice", "new"); !ok {
		t.Error("new password fails")
	}
	u, _ := um.Store.GetUser(ctx, "alice")
	if len(u.Credentials.SHA256.StoredKey) != 32 || len(u.Credentials.SHA1.StoredKey) != 20 || u.Credentials.SHA256.Iterations != 4096 {
		t.Errorf("credentials %+v", u.Credentials)
	}
	if err := um.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := um.DeleteUser(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

// Parallel attempts from one address queue: each waits one spacing more
// than the one before it, instead of all waiting out the same deadline
// and then guessing together (300 connections gave 32.8 guesses a second).
func TestThrottleQueuesParallelAttempts(t *testing.T) {
	th := newThrottle(time.Second, 5*time.Second, 0)
	t0 := time.Unix(1000, 0)
	th.fail("10.0.0.1", t0)
	var got []time.Duration
	for range 4 {
		d, again := th.reserve("10.0.0.1", "", t0)
		if again {
			t.Fatal("address gate asked to come again")
		}
		got = append(got, d)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
}

// On an account, addresses take turns: an address holds one future slot
// at a time, so the owner's attempt from another address is queued
// behind one of the attacker's, not behind all of them, and the spacing
// is capped: slowed, never locked out.
func TestAccountThrottleTurns(t *testing.T) {
	th := newThrottle(time.Second, 30*time.Second, 2)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		th.fail("alice", t0.Add(time.Duration(i)*time.Millisecond))
	}
	now := t0.Add(10 * time.Millisecond)
	// The third failure set a spacing of 1s: the attacker's first attempt
	// takes the slot after it, the second must come again later.
	d1, again := th.reserve("alice", "attacker", now)
	if again || d1 <= 0 {
		t.Fatalf("attacker's first: %v %v", d1, again)
	}
	if d, again := th.reserve("alice", "attacker", now); !again || d != d1 {
		t.Fatalf("attacker's second: %v %v; want to come again after %v", d, again, d1)
	}
	owner, again := th.reserve("alice", "owner", now)
	if again || owner != d1+time.Second {
		t.Fatalf("owner waits %v (%v), want %v: right behind the attacker's one slot", owner, again, d1+time.Second)
	}
	// Many failures: the spacing stops at the cap; a quiet account is
	// forgotten.
	for i := range 20 {
		th.fail("alice", now.Add(time.Duration(i)*time.Millisecond))
	}
	if s := th.spacingLocked(th.entries["alice"]); s != 30*time.Second {
		t.Fatalf("spacing after many failures %v, want the 30s cap", s)
	}
	if d, _ := th.reserve("alice", "owner", now.Add(forgetAfter+time.Minute)); d != 0 {
		t.Fatalf("a quiet account still waits %v", d)
	}
}
