package auth

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"slices"
)

// Channel binding (RFC 5056) ties a SASL exchange to the TLS connection it
// runs on: the client mixes data only the two ends of that one connection
// share into its proof, so a man in the middle that terminates TLS with a
// certificate of its own (and talks to the server on a second
// connection) cannot complete an exchange relayed from the real client.
// The -PLUS SCRAM mechanisms (RFC 5802) and the FAST HT mechanisms with a
// binding (XEP-0484) use it; the types the server supports on a stream are
// listed in the stream features (XEP-0440).

// Channel binding types.
const (
	// CBTLSExporter is RFC 9266's binding for TLS 1.3 (and TLS 1.2 with
	// the extended master secret): keying material exported under the
	// label "EXPORTER-Channel-Binding". Unique to the connection.
	CBTLSExporter = "tls-exporter"
	// CBTLSUnique is RFC 5929 §3's binding for TLS 1.2: the first
	// Finished message. Not defined for TLS 1.3.
	CBTLSUnique = "tls-unique"
	// CBTLSServerEndPoint is RFC 5929 §4's binding: a hash of the server's
	// certificate. It binds to the certificate, not the connection, but
	// is the one some clients (Smack, web stacks) can compute.
	CBTLSServerEndPoint = "tls-server-end-point"
)

// exporterLabel and exporterLength are RFC 9266 §2's parameters.
const (
	exporterLabel  = "EXPORTER-Channel-Binding"
	exporterLength = 32
)

// Bindings are the channel binding data of one TLS connection that the
// server terminates, by type. A stream that is not encrypted, or whose TLS
// a proxy in front of the server terminates, has none: the server cannot
// know what the client's end of that TLS saw.
type Bindings map[string][]byte

// Types returns the binding types present, strongest first.
func (b Bindings) Types() []string {
	var out []string
	for _, t := range []string{CBTLSExporter, CBTLSUnique, CBTLSServerEndPoint} {
		if len(b[t]) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// Has reports whether the connection offers binding type t.
func (b Bindings) Has(t string) bool { return len(b[t]) > 0 }

// TLSBindings returns the channel bindings of a TLS connection from the
// server's side. served is the certificate the server presented on it
// (nil when unknown, as on a resumed session: then there is no
// tls-server-end-point).
func TLSBindings(cs *tls.ConnectionState, served *tls.Certificate) Bindings {
	if cs == nil || !cs.HandshakeComplete {
		return nil
	}
	b := Bindings{}
	// crypto/tls refuses to export from TLS 1.2 without the extended
	// master secret, where RFC 9266 §3 forbids the binding.
	if ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLength); err == nil {
		b[CBTLSExporter] = ekm
	}
	if cs.Version < tls.VersionTLS13 && len(cs.TLSUnique) > 0 {
		b[CBTLSUnique] = cs.TLSUnique
	}
	if d := ServerEndPoint(served); d != nil {
		b[CBTLSServerEndPoint] = d
	}
	return b
}

// ServerEndPoint returns the tls-server-end-point binding of a server
// certificate (RFC 5929 §4.1): the hash of the DER certificate with the
// hash function of its signature algorithm, SHA-256 in place of MD5 and
// SHA-1; nil when the certificate is unknown or its algorithm names no
// hash (Ed25519), for which the binding is not defined.
func ServerEndPoint(served *tls.Certificate) []byte {
	if served == nil || len(served.Certificate) == 0 {
		return nil
	}
	leaf := served.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(served.Certificate[0]); err != nil {
			return nil
		}
	}
	var h crypto.Hash
	switch leaf.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		h = crypto.SHA256
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = crypto.SHA512
	default:
		return nil
	}
	d := h.New()
	d.Write(leaf.Raw)
	return d.Sum(nil)
}

// Conn describes the stream an exchange runs on.
type Conn struct {
	// Secure is true on an encrypted stream (PLAIN is allowed there).
	Secure bool
	// Addr is the client's address, for the per-account throttle.
	Addr string
	// Bindings are the channel bindings the client may use; when there
	// are any, the -PLUS mechanisms are offered and a client that says
	// it could bind but thinks the server cannot (gs2 flag 'y') is
	// refused: someone removed the -PLUS mechanisms from what it saw.
	Bindings Bindings
	// UserAgent is the client's XEP-0388 <user-agent id=''/>, which FAST
	// tokens are issued to; "" when none.
	UserAgent string
	// FAST is set when the client authenticates with a FAST token
	// (XEP-0484 <fast/> in <authenticate/>).
	FAST *FASTUse
}

// plusMechanisms are the channel-binding variants of the SCRAM
// mechanisms, strongest first.
var plusMechanisms = []string{MechSCRAMSHA256Plus, MechSCRAMSHA1Plus}

// MechanismsOn returns the mechanisms to offer on a stream, strongest
// first: the -PLUS ones when the stream has channel bindings, PLAIN only
// when it is encrypted.
func (a *Authenticator) MechanismsOn(c Conn) []string {
	var out []string
	if len(c.Bindings.Types()) > 0 {
		out = append(out, plusMechanisms...)
	}
	return append(out, a.Mechanisms(c.Secure)...)
}

// isPlus reports whether mech is a SCRAM -PLUS mechanism.
func isPlus(mech string) bool { return slices.Contains(plusMechanisms, mech) }
