package c2s_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/auth/authtest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
	"mellium.im/sasl"
)

// dialKind opens a stream to the node (or to addr in front of it) over
// direct TLS or STARTTLS, and returns it with TLS in place.
func dialKind(t *testing.T, addr string, directTLS bool) *servertest.Client {
	t.Helper()
	c := servertest.DialAddr(t, addr, "localhost", directTLS)
	if !directTLS {
		c.StartTLS()
	}
	return c
}

func listenerAddr(n *server.Node, directTLS bool) string {
	if directTLS {
		return n.Addr(server.ListenerC2STLS).String()
	}
	return n.Addr(server.ListenerC2S).String()
}

// sasl2With runs an XEP-0388 exchange with a client of the test's
// making: the initial response, then step's answer to each challenge.
// It returns the <success/> or <failure/>.
func sasl2With(t *testing.T, c *servertest.Client, mech string, initial []byte, extra string, step func([]byte) []byte) *wire.Element {
	t.Helper()
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='%s'><initial-response>%s</initial-response>%s</authenticate>",
		mech, base64.StdEncoding.EncodeToString(initial), extra)
	for {
		el := c.MustNext()
		if el.Name != "challenge" {
			return el
		}
		in, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Text))
		if err != nil {
			t.Fatalf("bad challenge %s", el)
		}
		c.Send("<response xmlns='urn:xmpp:sasl:2'>%s</response>", base64.StdEncoding.EncodeToString(step(in)))
	}
}

func failureCondition(el *wire.Element) string {
	if el.Name != "failure" || len(el.Children) == 0 {
		return el.Name
	}
	return el.Children[0].Name
}

func mechanismTexts(parent *wire.Element) []string {
	var out []string
	if parent == nil {
		return nil
	}
	for _, m := range parent.ChildrenNamed("mechanism", "") {
		out = append(out, m.AllText())
	}
	return out
}

// XEP-0440: on TLS the server terminates, over direct TLS and STARTTLS,
// the -PLUS mechanisms are offered with the binding types they take, in
// RFC 6120 SASL and in SASL2, and FAST offers its HT mechanisms.
func TestChannelBindingOffered(t *testing.T) {
	n := startServer(t, "alice")
	for _, direct := range []bool{true, false} {
		c := dialKind(t, listenerAddr(n, direct), direct)
		wantMechs := []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
		if got := c.Mechanisms(); !slices.Equal(got, wantMechs) {
			t.Errorf("direct TLS %v: mechanisms %v, want %v", direct, got, wantMechs)
		}
		var types []string
		if cb := c.Features.Child("sasl-channel-binding", wire.NSSASLCB); cb != nil {
			for _, b := range cb.ChildrenNamed("channel-binding", "") {
				types = append(types, b.Attr("type"))
			}
		}
		if want := []string{"tls-exporter", "tls-server-end-point"}; !slices.Equal(types, want) {
			t.Errorf("direct TLS %v: XEP-0440 binding types %v, want %v in %s", direct, types, want, c.Features)
		}
		a := c.Features.Child("authentication", wire.NSSASL2)
		if got := mechanismTexts(a); !slices.Equal(got, wantMechs) {
			t.Errorf("direct TLS %v: SASL2 mechanisms %v", direct, got)
		}
		fast := a.Child("inline", "").Child("fast", wire.NSFAST)
		if got, want := mechanismTexts(fast), []string{"HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"}; !slices.Equal(got, want) {
			t.Errorf("direct TLS %v: FAST mechanisms %v, want %v", direct, got, want)
		}
	}
}

// A man in the middle that terminates TLS with a certificate of its own
// cannot authenticate with a -PLUS mechanism the client ran through it:
// the client's tls-exporter and tls-server-end-point describe the TLS
// connection to the attacker, the server's its connection to the
// attacker. The same client logging in directly succeeds. Over direct
// TLS and STARTTLS, in RFC 6120 SASL and SASL2.
func TestSCRAMPlusDefeatsMITM(t *testing.T) {
	n := startServer(t, "alice")
	for _, direct := range []bool{true, false} {
		mitm := servertest.StartMITM(t, listenerAddr(n, direct), !direct)
		for _, cbType := range []string{"tls-exporter", "tls-server-end-point"} {
			client := func(c *servertest.Client) *authtest.SCRAM {
				cs := c.TLSState()
				data := authtest.Exporter(cs)
				if cbType == "tls-server-end-point" {
					var err error
					if data, err = authtest.ServerEndPoint(cs); err != nil {
						t.Fatal(err)
					}
				}
				return &authtest.SCRAM{Hash: sha256.New, User: "alice", Password: "alicepw", GS2Flag: "p=" + cbType, CBData: data}
			}
			for _, via := range []struct {
				name string
				addr string
				want string
			}{
				{"direct", listenerAddr(n, direct), "success"},
				{"through the MITM", mitm.Addr(), "not-authorized"},
			} {
				c := dialKind(t, via.addr, direct)
				if got := saslCond(c.AuthSCRAMWith("SCRAM-SHA-256-PLUS", client(c))); got != via.want {
					t.Errorf("direct TLS %v, %s, %s: %s, want %s", direct, cbType, via.name, got, via.want)
				}
				c2 := dialKind(t, via.addr, direct)
				sc := client(c2)
				el := sasl2With(t, c2, "SCRAM-SHA-256-PLUS", sc.First(), "", func(in []byte) []byte {
					out, err := sc.Final(in)
					if err != nil {
						t.Fatal(err)
					}
					return out
				})
				want := via.want
				if want == "success" {
					if add, _ := base64.StdEncoding.DecodeString(el.ChildText("additional-data", "")); el.Name != "success" || sc.Verify(add) != nil {
						t.Errorf("direct TLS %v, %s, SASL2 %s: %s", direct, cbType, via.name, el)
					}
					continue
				}
				if got := failureCondition(el); got != want {
					t.Errorf("direct TLS %v, %s, SASL2 %s: %s, want %s", direct, cbType, via.name, got, want)
				}
			}
		}
	}
}

// mellium's SCRAM-SHA-1-PLUS (another implementation, tls-exporter on
// TLS 1.3) logs in.
func TestSCRAMPlusWithMellium(t *testing.T) {
	n := startServer(t, "alice")
	c := servertest.DialTLS(t, n)
	neg := sasl.NewClient(sasl.ScramSha1Plus, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte("alice"), []byte("alicepw"), nil
	}), sasl.TLSState(c.TLSState()), sasl.RemoteMechanisms(c.Mechanisms()...))
	_, first, err := neg.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(first, []byte("p=tls-exporter,")) {
		t.Fatalf("mellium sent %q, want tls-exporter binding", first)
	}
	el := sasl2With(t, c, "SCRAM-SHA-1-PLUS", first, "", func(in []byte) []byte {
		_, out, err := neg.Step(in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
	add, _ := base64.StdEncoding.DecodeString(el.ChildText("additional-data", ""))
	if el.Name != "success" {
		t.Fatalf("got %s", el)
	}
	if _, _, err := neg.Step(add); err != nil {
		t.Fatalf("mellium rejects the server's signature: %v", err)
	}
}

// Downgrade protection (RFC 5802 §6): a client that can bind but saw no
// -PLUS mechanism says so with the gs2 flag 'y'; the server offered -PLUS,
// so someone removed it on the way, and the login is refused. Here a man
// in the middle strips -PLUS from the features it relays; the client
// (which could bind) sends 'y' and is refused. A client that cannot bind
// ('n') is welcome.
func TestSCRAMDowngradeRefused(t *testing.T) {
	n := startServer(t, "alice")
	scram := func(flag string) *authtest.SCRAM {
		return &authtest.SCRAM{Hash: sha1.New, User: "alice", Password: "alicepw", GS2Flag: flag}
	}
	c := servertest.DialTLS(t, n)
	if got := saslCond(c.AuthSCRAMWith("SCRAM-SHA-1", scram("y"))); got == "success" {
		t.Errorf("gs2 flag y while -PLUS was offered: %s, want a failure", got)
	}
	c = servertest.DialTLS(t, n)
	if got := saslCond(c.AuthSCRAMWith("SCRAM-SHA-1", scram("n"))); got != "success" {
		t.Errorf("gs2 flag n: %s, want success", got)
	}

	mitm := servertest.StartMITM(t, n.Addr(server.ListenerC2STLS).String(), false)
	mitm.ToClient = func(b []byte) []byte {
		for _, m := range []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"} {
			b = bytes.ReplaceAll(b, []byte("<mechanism>"+m+"</mechanism>"), nil)
		}
		return b
	}
	c = servertest.DialAddr(t, mitm.Addr(), "localhost", true)
	if slices.ContainsFunc(c.Mechanisms(), func(m string) bool { return strings.HasSuffix(m, "-PLUS") }) {
		t.Fatalf("the MITM did not strip -PLUS: %v", c.Mechanisms())
	}
	if got := saslCond(c.AuthSCRAMWith("SCRAM-SHA-1", scram("y"))); got == "success" {
		t.Errorf("downgraded login through the MITM: %s, want a failure", got)
	}
}
