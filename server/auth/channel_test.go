package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/aviary-im/aviary/server/auth/authtest"
	"mellium.im/sasl"
)

// testCert makes a self-signed ECDSA certificate signed with alg.
func testCert(t *testing.T, alg x509.SignatureAlgorithm) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: "example.org"},
		DNSNames:           []string{"example.org"},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsPair runs a real TLS handshake over a pipe and returns both ends'
// connection states.
func tlsPair(t *testing.T, cert tls.Certificate, version uint16) (server, client tls.ConnectionState) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version})
	cli := tls.Client(b, &tls.Config{InsecureSkipVerify: true, ServerName: "example.org", MinVersion: version, MaxVersion: version})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return srv.ConnectionState(), cli.ConnectionState()
}

func TestTLSBindings(t *testing.T) {
	cert := testCert(t, x509.ECDSAWithSHA256)
	s13, c13 := tlsPair(t, cert, tls.VersionTLS13)
	b := TLSBindings(&s13, &cert)
	if got := b.Types(); !slices.Equal(got, []string{CBTLSExporter, CBTLSServerEndPoint}) {
		t.Errorf("TLS 1.3 bindings %v, want tls-exporter and tls-server-end-point (tls-unique is not defined for 1.3)", got)
	}
	if string(b[CBTLSExporter]) != string(authtest.Exporter(c13)) {
		t.Error("server and client tls-exporter differ")
	}
	if ep, err := authtest.ServerEndPoint(c13); err != nil || string(ep) != string(b[CBTLSServerEndPoint]) {
		t.Errorf("tls-server-end-point differs from the client's: %v", err)
	}
	s12, c12 := tlsPair(t, cert, tls.VersionTLS12)
	b12 := TLSBindings(&s12, nil)
	if got := b12.Types(); !slices.Equal(got, []string{CBTLSExporter, CBTLSUnique}) {
		t.Errorf("TLS 1.2 bindings without a known certificate %v, want tls-exporter (extended master secret) and tls-unique", got)
	}
	if string(b12[CBTLSUnique]) != string(c12.TLSUnique) {
		t.Error("tls-unique differs from the client's")
	}
	if TLSBindings(nil, &cert) != nil {
		t.Error("bindings without TLS")
	}
}

// RFC 5929 §4.1: the certificate's signature hash, SHA-256 in place of
// SHA-1; none for an algorithm without a hash.
func TestServerEndPointHash(t *testing.T) {
	for _, tc := range []struct {
		alg  x509.SignatureAlgorithm
		hash func([]byte) []byte
	}{
		{x509.ECDSAWithSHA256, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{x509.ECDSAWithSHA1, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{x509.ECDSAWithSHA384, func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }},
		{x509.ECDSAWithSHA512, func(b []byte) []byte { s := sha512.Sum512(b); return s[:] }},
	} {
		cert := testCert(t, tc.alg)
		if got, want := ServerEndPoint(&cert), tc.hash(cert.Certificate[0]); string(got) != string(want) {
			t.Errorf("%v: tls-server-end-point %x, want %x", tc.alg, got, want)
		}
	}
	if ServerEndPoint(nil) != nil {
		t.Error("a binding for no certificate")
	}
}

// scramPlus runs SCRAM with the authtest client on a stream with bindings.
func scramPlus(t *testing.T, a *Authenticator, mech string, bindings Bindings, client *authtest.SCRAM) error {
	t.Helper()
	ctx := context.Background()
	x, err := a.StartOn(mech, Conn{Secure: true, Bindings: bindings})
	if err != nil {
		return err
	}
	out, _, err := x.Step(ctx, client.First())
	if err != nil {
		return err
	}
	final, err := client.Final(out)
	if err != nil {
		t.Fatal(err)
	}
	out, done, err := x.Step(ctx, final)
	if err != nil {
		return err
	}
	if !done {
		t.Fatal("exchange not done after the final message")
	}
	return client.Verify(out)
}

func condOf(err error) string {
	if err == nil {
		return "success"
	}
	var f *Failure
	if errors.As(err, &f) {
		return f.Condition
	}
	return err.Error()
}

func TestSCRAMPlus(t *testing.T) {
	a, _ := setup(t)
	cert := testCert(t, x509.ECDSAWithSHA256)
	srv, cli := tlsPair(t, cert, tls.VersionTLS13)
	bindings := TLSBindings(&srv, &cert)
	_, other := tlsPair(t, cert, tls.VersionTLS13) // a man in the middle's connection
	ep, err := authtest.ServerEndPoint(cli)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.MechanismsOn(Conn{Secure: true, Bindings: bindings}); !slices.Equal(got, []string{MechSCRAMSHA256Plus, MechSCRAMSHA1Plus, MechSCRAMSHA256, MechSCRAMSHA1, MechPLAIN}) {
		t.Errorf("mechanisms with bindings %v", got)
	}
	if got := a.MechanismsOn(Conn{Secure: true}); slices.Contains(got, MechSCRAMSHA256Plus) {
		t.Errorf("mechanisms without bindings %v offer -PLUS", got)
	}
	scram := func(flag string, cb []byte) *authtest.SCRAM {
		return &authtest.SCRAM{Hash: sha256.New, User: "alice", Password: "s3cret pass", GS2Flag: flag, CBData: cb}
	}
	cases := []struct {
		name     string
		mech     string
		bindings Bindings
		client   *authtest.SCRAM
		want     string
	}{
		{"tls-exporter", MechSCRAMSHA256Plus, bindings, scram("p=tls-exporter", authtest.Exporter(cli)), "success"},
		{"tls-server-end-point", MechSCRAMSHA256Plus, bindings, scram("p=tls-server-end-point", ep), "success"},
		{"exporter of another connection", MechSCRAMSHA256Plus, bindings, scram("p=tls-exporter", authtest.Exporter(other)), CondNotAuthorized},
		{"type not offered", MechSCRAMSHA256Plus, bindings, scram("p=tls-unique", cli.TLSUnique), CondMalformedRequest},
		{"-PLUS without binding", MechSCRAMSHA256Plus, bindings, scram("n", nil), CondMalformedRequest},
		{"binding without -PLUS", MechSCRAMSHA256, bindings, scram("p=tls-exporter", authtest.Exporter(cli)), CondMalformedRequest},
		{"downgrade: y while -PLUS was offered", MechSCRAMSHA256, bindings, scram("y", nil), CondMalformedRequest},
		{"y on a stream without bindings", MechSCRAMSHA256, nil, scram("y", nil), "success"},
		{"n with bindings offered", MechSCRAMSHA256, bindings, scram("n", nil), "success"},
		{"-PLUS on a stream without bindings", MechSCRAMSHA256Plus, nil, scram("p=tls-exporter", nil), CondInvalidMechanism},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := condOf(scramPlus(t, a, tc.mech, tc.bindings, tc.client)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	// mellium's client (another implementation) binds to tls-exporter.
	t.Run("mellium SCRAM-SHA-1-PLUS", func(t *testing.T) {
		c := sasl.NewClient(sasl.ScramSha1Plus, sasl.Credentials(func() ([]byte, []byte, []byte) {
			return []byte("alice"), []byte("s3cret pass"), nil
		}), sasl.TLSState(cli), sasl.RemoteMechanisms(MechSCRAMSHA1Plus))
		x, err := a.StartOn(MechSCRAMSHA1Plus, Conn{Secure: true, Bindings: bindings})
		if err != nil {
			t.Fatal(err)
		}
		_, resp, err := c.Step(nil)
		if err != nil {
			t.Fatal(err)
		}
		for {
			out, done, err := x.Step(context.Background(), resp)
			if err != nil {
				t.Fatalf("server: %v", err)
			}
			if done {
				if _, _, err := c.Step(out); err != nil {
					t.Fatalf("client rejects the server: %v", err)
				}
				return
			}
			if _, resp, err = c.Step(out); err != nil {
				t.Fatal(err)
			}
		}
	})
}
