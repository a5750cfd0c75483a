package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/auth/authtest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/storage/sqlite"
)

const phone = "d4565fa7-4d72-4749-b3d3-740edbf87770" // a client's user-agent id

// fastSetup returns an authenticator with FAST tokens in a real (SQLite)
// module store, a fake clock, and the store.
func fastSetup(t *testing.T) (*Authenticator, *fakeClock, storage.KeyValue) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	kv := st.KeyValue(FASTStore)
	a := New(Options{Store: newMemUsers(), Domain: "example.org", Tokens: kv, TokenLifetime: 10 * time.Hour, Clock: clk})
	return a, clk, kv
}

// htLogin runs one HT exchange and returns the exchange on success.
func htLogin(t *testing.T, a *Authenticator, mech string, c Conn, client authtest.HT) (FASTLogin, error) {
	t.Helper()
	x, err := a.StartOn(mech, c)
	if err != nil {
		return nil, err
	}
	out, done, err := x.Step(context.Background(), client.Initial())
	if err != nil {
		return nil, err
	}
	if !done {
		t.Fatal("HT took more than one step")
	}
	if err := client.Verify(out); err != nil {
		t.Fatal(err)
	}
	return x.(FASTLogin), nil
}

func TestFASTTokens(t *testing.T) {
	a, clk, _ := fastSetup(t)
	ctx := context.Background()
	secure := func(use FASTUse) Conn { return Conn{Secure: true, UserAgent: phone, FAST: &use} }
	tok, exp, err := a.IssueFASTToken(ctx, "alice", phone, MechHTSHA256None)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(10 * time.Hour); !exp.Equal(want) {
		t.Errorf("expiry %v, want %v", exp, want)
	}
	alice := authtest.HT{User: "alice", Token: tok}

	x, err := htLogin(t, a, MechHTSHA256None, secure(FASTUse{}), alice)
	if err != nil || x.Username() != "alice" || x.RotationDue() {
		t.Fatalf("login with the token: %v (%v)", err, x)
	}
	for _, tc := range []struct {
		name   string
		mech   string
		c      Conn
		client authtest.HT
		want   string
	}{
		{"wrong token", MechHTSHA256None, secure(FASTUse{}), authtest.HT{User: "alice", Token: tok + "x"}, CondNotAuthorized},
		{"another account", MechHTSHA256None, secure(FASTUse{}), authtest.HT{User: "bob", Token: tok}, CondNotAuthorized},
		{"another client", MechHTSHA256None, Conn{Secure: true, UserAgent: "other", FAST: &FASTUse{}}, alice, CondNotAuthorized},
		{"no user-agent", MechHTSHA256None, Conn{Secure: true, FAST: &FASTUse{}}, alice, CondNotAuthorized},
		{"without <fast/>", MechHTSHA256None, Conn{Secure: true, UserAgent: phone}, alice, CondInvalidMechanism},
		{"unencrypted", MechHTSHA256None, Conn{UserAgent: phone, FAST: &FASTUse{}}, alice, CondEncryptionRequired},
		{"binding mechanism without the binding", MechHTSHA256Expr, secure(FASTUse{}), alice, CondInvalidMechanism},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := htLogin(t, a, tc.mech, tc.c, tc.client)
			if got := condOf(err); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("bound to its mechanism", func(t *testing.T) {
		cert := testCert(t, x509.ECDSAWithSHA256)
		srv, cli := tlsPair(t, cert, tls.VersionTLS13)
		c := Conn{Secure: true, UserAgent: phone, FAST: &FASTUse{}, Bindings: TLSBindings(&srv, &cert)}
		// The -NONE token used with -EXPR and correct binding data.
		_, err := htLogin(t, a, MechHTSHA256Expr, c, authtest.HT{User: "alice", Token: tok, CBData: authtest.Exporter(cli)})
		if got := condOf(err); got != CondNotAuthorized {
			t.Errorf("a -NONE token used with -EXPR: %s, want not-authorized", got)
		}
	})

	t.Run("count", func(t *testing.T) {
		for _, step := range []struct {
			use  FASTUse
			want string
		}{
			{FASTUse{Count: 5, HasCount: true}, "success"},
			{FASTUse{Count: 5, HasCount: true}, CondNotAuthorized}, // replayed
			{FASTUse{Count: 3, HasCount: true}, CondNotAuthorized},
			{FASTUse{Count: 6, HasCount: true}, "success"},
			{FASTUse{}, "success"},
		} {
			if _, err := htLogin(t, a, MechHTSHA256None, secure(step.use), alice); condOf(err) != step.want {
				t.Fatalf("count %d: %s, want %s", step.use.Count, condOf(err), step.want)
			}
		}
	})

	t.Run("rotation due past half the lifetime", func(t *testing.T) {
		clk.mu.Lock()
		clk.now = clk.now.Add(6 * time.Hour)
		clk.mu.Unlock()
		x, err := htLogin(t, a, MechHTSHA256None, secure(FASTUse{}), alice)
		if err != nil || !x.RotationDue() {
			t.Fatalf("login at 6h of 10h: %v, rotation due %v", err, x != nil && x.RotationDue())
		}
	})

	t.Run("expired", func(t *testing.T) {
		clk.mu.Lock()
		clk.now = clk.now.Add(5 * time.Hour)
		clk.mu.Unlock()
		_, err := htLogin(t, a, MechHTSHA256None, secure(FASTUse{}), alice)
		if got := condOf(err); got != CondCredentialsExpired {
			t.Errorf("expired token: %s, want credentials-expired", got)
		}
	})
}

// XEP-0484 §6.1: a new token does not end the one in use until the client
// logs in with it (it may never have received it); then the older ends.
func TestFASTTokenRotationSlots(t *testing.T) {
	a, _, _ := fastSetup(t)
	ctx := context.Background()
	c := func() Conn { return Conn{Secure: true, UserAgent: phone, FAST: &FASTUse{}} }
	issue := func() authtest.HT {
		tok, _, err := a.IssueFASTToken(ctx, "alice", phone, MechHTSHA256None)
		if err != nil {
			t.Fatal(err)
		}
		return authtest.HT{User: "alice", Token: tok}
	}
	login := func(h authtest.HT) string {
		_, err := htLogin(t, a, MechHTSHA256None, c(), h)
		return condOf(err)
	}
	t1 := issue()
	if got := login(t1); got != "success" {
		t.Fatalf("first token: %s", got)
	}
	t2 := issue() // lost on its way to the client
	if got := login(t1); got != "success" {
		t.Fatalf("the token in use after a new one was issued: %s", got)
	}
	t3 := issue() // replaces t2, which was never used
	if got := login(t2); got != CondNotAuthorized {
		t.Errorf("an unused token replaced by a newer one: %s", got)
	}
	if got := login(t3); got != "success" {
		t.Fatalf("the newest token: %s", got)
	}
	if got := login(t1); got != CondNotAuthorized {
		t.Errorf("the old token after the new one was used: %s, want not-authorized", got)
	}
	// Invalidation ends the token at once.
	x, err := htLogin(t, a, MechHTSHA256None, Conn{Secure: true, UserAgent: phone, FAST: &FASTUse{Invalidate: true}}, t3)
	if err != nil || x.RotationDue() {
		t.Fatalf("login that invalidates: %v", err)
	}
	if got := login(t3); got != CondNotAuthorized {
		t.Errorf("an invalidated token: %s", got)
	}
}

func TestFASTMechanismsAndBindings(t *testing.T) {
	a, _, _ := fastSetup(t)
	ctx := context.Background()
	cert := testCert(t, x509.ECDSAWithSHA256)
	srv, cli := tlsPair(t, cert, tls.VersionTLS13)
	_, mitm := tlsPair(t, cert, tls.VersionTLS13)
	b := TLSBindings(&srv, &cert)
	c := Conn{Secure: true, UserAgent: phone, FAST: &FASTUse{}, Bindings: b}
	if got := a.FASTMechanismsOn(c); !slices.Equal(got, []string{MechHTSHA256Expr, MechHTSHA256Endp, MechHTSHA256None}) {
		t.Errorf("FAST mechanisms on TLS 1.3 %v", got)
	}
	if got := a.FASTMechanismsOn(Conn{}); got != nil {
		t.Errorf("FAST mechanisms on a plain stream %v", got)
	}
	if got := New(Options{Store: newMemUsers()}).FASTMechanismsOn(c); got != nil {
		t.Errorf("FAST mechanisms with FAST off %v", got)
	}
	ep, _ := authtest.ServerEndPoint(cli)
	for _, tc := range []struct {
		mech       string
		cb, mitmCB []byte
	}{
		{MechHTSHA256Expr, authtest.Exporter(cli), authtest.Exporter(mitm)},
		{MechHTSHA256Endp, ep, make([]byte, len(ep))},
	} {
		tok, _, err := a.IssueFASTToken(ctx, "alice", phone, tc.mech)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := htLogin(t, a, tc.mech, c, authtest.HT{User: "alice", Token: tok, CBData: tc.cb}); err != nil {
			t.Errorf("%s with the connection's binding: %v", tc.mech, err)
		}
		if _, err := htLogin(t, a, tc.mech, c, authtest.HT{User: "alice", Token: tok, CBData: tc.mitmCB}); condOf(err) != CondNotAuthorized {
			t.Errorf("%s with another connection's binding: %s, want not-authorized", tc.mech, condOf(err))
		}
	}
}

// An account holds tokens for a bounded number of clients; expired ones
// make room; a password change revokes them all.
func TestFASTTokenQuotaAndRevocation(t *testing.T) {
	a, clk, kv := fastSetup(t)
	ctx := context.Background()
	for i := range maxFASTClients {
		if _, _, err := a.IssueFASTToken(ctx, "alice", fmt.Sprint("client-", i), MechHTSHA256None); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.IssueFASTToken(ctx, "alice", "one-more", MechHTSHA256None); !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("a client past the limit got a token: %v", err)
	}
	clk.mu.Lock()
	clk.now = clk.now.Add(11 * time.Hour)
	clk.mu.Unlock()
	tok, _, err := a.IssueFASTToken(ctx, "alice", "one-more", MechHTSHA256None)
	if err != nil {
		t.Fatalf("no room made by expired tokens: %v", err)
	}
	if keys, _ := kv.Keys(ctx, "alice@example.org"); len(keys) != 1 {
		t.Errorf("%d entries left, want the one live client", len(keys))
	}
	// A password change revokes them.
	um := &Users{Store: newMemUsers(), Domain: "example.org", FASTTokens: kv}
	if err := um.CreateUser(ctx, "alice", "old"); err != nil {
		t.Fatal(err)
	}
	if err := um.SetPassword(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	_, err = htLogin(t, a, MechHTSHA256None, Conn{Secure: true, UserAgent: "one-more", FAST: &FASTUse{}}, authtest.HT{User: "alice", Token: tok})
	if condOf(err) != CondNotAuthorized {
		t.Errorf("a revoked token: %s", condOf(err))
	}
}

// TestFASTTokensOfALockedAccount: locking an account revokes its tokens,
// which would otherwise log in without the password check that tells of
// the lock; the client falls back to its password and hears
// account-disabled.
func TestFASTTokensOfALockedAccount(t *testing.T) {
	a, _, kv := fastSetup(t)
	ctx := context.Background()
	tok, _, err := a.IssueFASTToken(ctx, "alice", phone, MechHTSHA256None)
	if err != nil {
		t.Fatal(err)
	}
	um := &Users{Store: newMemUsers(), Domain: "example.org", FASTTokens: kv}
	if err := um.CreateUser(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := um.SetLocked(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	_, err = htLogin(t, a, MechHTSHA256None, Conn{Secure: true, UserAgent: phone, FAST: &FASTUse{}}, authtest.HT{User: "alice", Token: tok})
	if condOf(err) != CondNotAuthorized {
		t.Errorf("a locked account's token: %s", condOf(err))
	}
}

// Two authenticators on one store (two nodes) accept each other's tokens,
// and never the same count twice.
func TestFASTTokensAcrossNodes(t *testing.T) {
	_, _, kv := fastSetup(t)
	secret := []byte("shared fake salt key of the cluster")
	n1 := New(Options{Store: newMemUsers(), Domain: "example.org", Tokens: kv, FakeSaltKey: secret})
	n2 := New(Options{Store: newMemUsers(), Domain: "example.org", Tokens: kv, FakeSaltKey: secret})
	tok, _, err := n1.IssueFASTToken(context.Background(), "alice", phone, MechHTSHA256None)
	if err != nil {
		t.Fatal(err)
	}
	h := authtest.HT{User: "alice", Token: tok}
	use := func(n *Authenticator, count uint64) string {
		_, err := htLogin(t, n, MechHTSHA256None, Conn{Secure: true, UserAgent: phone, FAST: &FASTUse{Count: count, HasCount: true}}, h)
		return condOf(err)
	}
	if got := use(n2, 1); got != "success" {
		t.Fatalf("token of node 1 on node 2: %s", got)
	}
	if got := use(n1, 1); got != CondNotAuthorized {
		t.Errorf("count 1 again on node 1: %s", got)
	}
	other := New(Options{Store: newMemUsers(), Domain: "example.org", Tokens: kv, FakeSaltKey: []byte("another secret")})
	if got := use(other, 2); got != CondNotAuthorized {
		t.Errorf("a node with another secret accepted the token: %s", got)
	}
}
