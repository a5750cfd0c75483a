package c2s_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/auth/authtest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

const userAgent = "<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>test</software></user-agent>"

// requestToken logs in with the password over SASL2, asking for a FAST
// token for mech, and returns the <token/> (nil when none came).
func requestToken(t *testing.T, c *servertest.Client, user, mech string) *wire.Element {
	t.Helper()
	el := sasl2Login(t, c, user, user+"pw", "<request-token xmlns='urn:xmpp:fast:0' mechanism='"+mech+"'/>")
	if el.Name != "success" {
		t.Fatalf("password login asking for a token: %s", el)
	}
	return el.Child("token", wire.NSFAST)
}

// fastLogin logs in with a token in one round trip: the HT initial
// response, the user-agent, <fast/> (fastAttrs added) and extra. On
// success it checks the server's HT answer.
func fastLogin(t *testing.T, c *servertest.Client, mech string, ht authtest.HT, fastAttrs, extra string) *wire.Element {
	t.Helper()
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='%s'><initial-response>%s</initial-response>%s<fast xmlns='urn:xmpp:fast:0'%s/>%s</authenticate>",
		mech, base64.StdEncoding.EncodeToString(ht.Initial()), userAgent, fastAttrs, extra)
	el := c.MustNext()
	if el.Name == "challenge" {
		t.Fatalf("a FAST login took a second round trip: %s", el)
	}
	if el.Name == "success" {
		add, err := base64.StdEncoding.DecodeString(el.ChildText("additional-data", ""))
		if err != nil || ht.Verify(add) != nil {
			t.Fatalf("server's HT answer in %s does not verify", el)
		}
	}
	return el
}

// XEP-0484: a client exchanges its password for a token once, then logs
// in with it in one round trip, binding its resource in the same
// exchange; an invalidated token no longer works; a count already
// processed is refused; HT is not offered or accepted outside SASL2.
func TestFASTLogin(t *testing.T) {
	n := startServer(t, "alice", "bob")
	tokEl := requestToken(t, servertest.DialTLS(t, n), "alice", "HT-SHA-256-NONE")
	if tokEl == nil || tokEl.Attr("token") == "" {
		t.Fatal("no FAST token in the success")
	}
	exp, err := time.Parse(time.RFC3339, tokEl.Attr("expiry"))
	if err != nil || exp.Before(time.Now().Add(500*time.Hour)) || exp.After(time.Now().Add(505*time.Hour)) {
		t.Errorf("token expiry %q, want about 504h from now", tokEl.Attr("expiry"))
	}
	ht := authtest.HT{User: "alice", Token: tokEl.Attr("token")}

	c := servertest.DialTLS(t, n)
	el := fastLogin(t, c, "HT-SHA-256-NONE", ht, " count='1'", "<bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag></bind>")
	if el.Name != "success" || el.Child("bound", wire.NSBind2) == nil {
		t.Fatalf("FAST login with Bind 2: %s", el)
	}
	if el.Child("token", wire.NSFAST) != nil {
		t.Errorf("a fresh token was rotated: %s", el)
	}
	full := el.ChildText("authorization-identifier", "")
	c.ExpectName("stream:features")
	c.JID = full
	bob := servertest.DialTLS(t, n)
	bob.Login("bob", "bobpw", "desk")
	bob.Send("<message to='%s' type='chat'><body>hi</body></message>", full)
	c.Await("a message to the FAST session", func(el *wire.Element) bool { return el.Name == "message" && el.ChildText("body", "") == "hi" })

	for _, tc := range []struct {
		name, mech, attrs string
		ht                authtest.HT
		want              string
	}{
		{"count already processed", "HT-SHA-256-NONE", " count='1'", ht, "not-authorized"},
		{"wrong token", "HT-SHA-256-NONE", "", authtest.HT{User: "alice", Token: "nope"}, "not-authorized"},
		{"another account", "HT-SHA-256-NONE", "", authtest.HT{User: "bob", Token: ht.Token}, "not-authorized"},
		{"another mechanism", "HT-SHA-256-ENDP", "", ht, "not-authorized"},
		{"bad count", "HT-SHA-256-NONE", " count='many'", ht, "malformed-request"},
		{"invalidate", "HT-SHA-256-NONE", " count='2' invalidate='true'", ht, "success"},
		{"after invalidation", "HT-SHA-256-NONE", " count='3'", ht, "not-authorized"},
	} {
		c := servertest.DialTLS(t, n)
		if tc.mech == "HT-SHA-256-ENDP" {
			ep, err := authtest.ServerEndPoint(c.TLSState())
			if err != nil {
				t.Fatal(err)
			}
			tc.ht.CBData = ep
		}
		el := fastLogin(t, c, tc.mech, tc.ht, tc.attrs, "")
		if got := failureCondition(el); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, el, tc.want)
		}
	}

	// HT belongs to FAST: not in RFC 6120 SASL, not in SASL2 without <fast/>.
	c = servertest.DialTLS(t, n)
	c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='HT-SHA-256-NONE'>%s</auth>", base64.StdEncoding.EncodeToString(ht.Initial()))
	if el := c.ExpectName("failure"); failureCondition(el) != "invalid-mechanism" {
		t.Errorf("HT over RFC 6120 SASL: %s", el)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'><initial-response>%s</initial-response>%s</authenticate>",
		base64.StdEncoding.EncodeToString(ht.Initial()), userAgent)
	if el := c.ExpectName("failure"); failureCondition(el) != "invalid-mechanism" {
		t.Errorf("HT in SASL2 without <fast/>: %s", el)
	}
	// A token for a mechanism this stream does not offer is not issued.
	if tok := requestToken(t, servertest.DialTLS(t, n), "alice", "HT-SHA-256-UNIQ"); tok != nil {
		t.Errorf("a token for tls-unique on TLS 1.3: %s", tok)
	}
}

// A token bound to the TLS connection (HT-SHA-256-EXPR, tls-exporter)
// logs in directly, and fails through a man in the middle terminating
// TLS, over direct TLS and STARTTLS.
func TestFASTChannelBindingDefeatsMITM(t *testing.T) {
	n := startServer(t, "alice")
	for _, direct := range []bool{true, false} {
		tokEl := requestToken(t, dialKind(t, listenerAddr(n, direct), direct), "alice", "HT-SHA-256-EXPR")
		if tokEl == nil {
			t.Fatal("no HT-SHA-256-EXPR token")
		}
		mitm := servertest.StartMITM(t, listenerAddr(n, direct), !direct)
		for _, via := range []struct{ name, addr, want string }{
			{"through the MITM", mitm.Addr(), "not-authorized"},
			{"direct", listenerAddr(n, direct), "success"},
		} {
			c := dialKind(t, via.addr, direct)
			ht := authtest.HT{User: "alice", Token: tokEl.Attr("token"), CBData: authtest.Exporter(c.TLSState())}
			if got := failureCondition(fastLogin(t, c, "HT-SHA-256-EXPR", ht, "", "")); got != via.want {
				t.Errorf("direct TLS %v, %s: %s, want %s", direct, via.name, got, via.want)
			}
		}
	}
}

// Past half its lifetime a token is replaced in the success of the login
// that used it, without being asked; the old token keeps working until
// the new one is used, then ends.
func TestFASTTokenRotation(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	cfg := servertest.DefaultConfig(t)
	cfg.C2S.FASTTokenLifetime = 10 * time.Hour
	n := servertest.RunServer(t, cfg, server.WithAuthClock(clk))
	servertest.CreateUser(t, n, "alice", "alicepw")
	tokEl := requestToken(t, servertest.DialTLS(t, n), "alice", "HT-SHA-256-NONE")
	old := authtest.HT{User: "alice", Token: tokEl.Attr("token")}
	if el := fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", old, "", ""); el.Name != "success" || el.Child("token", wire.NSFAST) != nil {
		t.Fatalf("login early in the token's life: %s", el)
	}
	clk.mu.Lock()
	clk.now = clk.now.Add(6 * time.Hour)
	clk.mu.Unlock()
	el := fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", old, "", "")
	rotated := el.Child("token", wire.NSFAST)
	if el.Name != "success" || rotated == nil || rotated.Attr("token") == old.Token {
		t.Fatalf("login past half the lifetime: %s, want a new token", el)
	}
	if exp, _ := time.Parse(time.RFC3339, rotated.Attr("expiry")); !exp.After(clk.Now().Add(9 * time.Hour)) {
		t.Errorf("rotated token expires %s", rotated.Attr("expiry"))
	}
	// The client never got it (say): the old token still logs in.
	if el := fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", old, "", ""); el.Name != "success" {
		t.Fatalf("the old token after rotation: %s", el)
	}
	// A second rotation replaced the unused one; use the newest.
	el = fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", old, "", "")
	if el.Name != "success" {
		t.Fatalf("old token: %s", el)
	}
	var newest authtest.HT
	if tk := el.Child("token", wire.NSFAST); tk != nil {
		newest = authtest.HT{User: "alice", Token: tk.Attr("token")}
	} else {
		newest = authtest.HT{User: "alice", Token: rotated.Attr("token")}
	}
	if el := fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", newest, "", ""); el.Name != "success" {
		t.Fatalf("the new token: %s", el)
	}
	if el := fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", old, "", ""); failureCondition(el) != "not-authorized" {
		t.Errorf("the old token after the new one was used: %s", el)
	}
	// Expired: credentials-expired, and the password still works.
	clk.mu.Lock()
	clk.now = clk.now.Add(11 * time.Hour)
	clk.mu.Unlock()
	if el := fastLogin(t, servertest.DialTLS(t, n), "HT-SHA-256-NONE", newest, "", ""); failureCondition(el) != "credentials-expired" {
		t.Errorf("an expired token: %s", el)
	}
	if el := sasl2Login(t, servertest.DialTLS(t, n), "alice", "alicepw", ""); el.Name != "success" {
		t.Errorf("password after the token expired: %s", el)
	}
}

// A token issued on one node logs in on another node of the cluster: the
// tokens live in the shared database and every node derives them with
// the same key (from cluster.secret).
func TestFASTTokenOnAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Hazelcast")
	}
	a, b := twoNodes(t)
	tokEl := requestToken(t, servertest.DialTLS(t, a), "alice", "HT-SHA-256-NONE")
	ht := authtest.HT{User: "alice", Token: tokEl.Attr("token")}
	el := fastLogin(t, servertest.DialTLS(t, b), "HT-SHA-256-NONE", ht, " count='1'", "<bind xmlns='urn:xmpp:bind:0'/>")
	if el.Name != "success" || !strings.HasPrefix(el.ChildText("authorization-identifier", ""), "alice@localhost/") {
		t.Fatalf("a node-a token on node b: %s", el)
	}
	// The count node b processed is known to node a.
	if el := fastLogin(t, servertest.DialTLS(t, a), "HT-SHA-256-NONE", ht, " count='1'", ""); failureCondition(el) != "not-authorized" {
		t.Errorf("count 1 again on node a: %s", el)
	}
}
