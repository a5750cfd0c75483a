package s2s

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"os"
	"strings"
	"time"
)

// Object identifiers for the XMPP names in a certificate's
// subjectAltName (RFC 6120 §13.7.1.4, RFC 4985).
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidXMPPAddr       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
	oidSRVName        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
)

// certVerifier checks peer certificates: PKIX validation against its roots,
// then the domain against the XmppAddr, SRV-ID and DNS-ID names.
type certVerifier struct {
	roots *x509.CertPool
	now   func() time.Time
}

// newCertVerifier trusts the system roots plus the PEM certificates in
// caFile (when set).
func newCertVerifier(caFile string) (*certVerifier, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("s2s: reading ca_file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s2s: ca_file %s holds no PEM certificate", caFile)
		}
	}
	return &certVerifier{roots: roots, now: time.Now}, nil
}

// verify reports whether chain (leaf first) authenticates domain: nil when
// it does, else an error wrapping ErrNoCert, ErrCertUntrusted or ErrCertName.
func (v *certVerifier) verify(chain []*x509.Certificate, domain string) error {
	if len(chain) == 0 {
		return ErrNoCert
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   v.now(),
		// Servers present their certificate as a client too; many carry
		// only serverAuth, so no usage is demanded here.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("%w: %v", ErrCertUntrusted, err)
	}
	if !certNamesDomain(chain[0], domain) {
		return fmt.Errorf("%w: %s", ErrCertName, domain)
	}
	return nil
}

// certNamesDomain reports whether the certificate names domain as an XMPP
// server: an XmppAddr equal to the domain, an SRV-ID for _xmpp-server or
// _xmpps-server of the domain, or a DNS-ID (wildcards allowed, RFC 6125).
// The subject common name is never used.
func certNamesDomain(c *x509.Certificate, domain string) bool {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" {
		return false
	}
	xmppAddrs, srvNames := xmppNames(c)
	for _, a := range xmppAddrs {
		if strings.EqualFold(a, domain) {
			return true
		}
	}
	for _, s := range srvNames {
		s = strings.ToLower(s)
		if s == "_xmpp-server."+domain || s == "_xmpps-server."+domain {
			return true
		}
	}
	return c.VerifyHostname(domain) == nil
}

// xmppNames returns the id-on-xmppAddr and id-on-dnsSRV otherNames of the
// certificate's subjectAltName. Malformed entries are skipped.
func xmppNames(c *x509.Certificate) (xmppAddrs, srvNames []string) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) != 0 || !seq.IsCompound {
			continue
		}
		rest := seq.Bytes
		for len(rest) > 0 {
			var gn asn1.RawValue
			var err error
			rest, err = asn1.Unmarshal(rest, &gn)
			if err != nil {
				break
			}
			// otherName [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
			if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
				continue
			}
			oid, val, ok := parseOtherName(gn.Bytes)
			if !ok {
				continue
			}
			switch {
			case oid.Equal(oidXMPPAddr):
				xmppAddrs = append(xmppAddrs, val)
			case oid.Equal(oidSRVName):
				srvNames = append(srvNames, val)
			}
		}
	}
	return xmppAddrs, srvNames
}

func parseOtherName(b []byte) (asn1.ObjectIdentifier, string, bool) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(b, &oid)
	if err != nil {
		return nil, "", false
	}
	var wrapper asn1.RawValue
	if _, err := asn1.Unmarshal(rest, &wrapper); err != nil ||
		wrapper.Class != asn1.ClassContextSpecific || wrapper.Tag != 0 {
		return nil, "", false
	}
	var inner asn1.RawValue
	if _, err := asn1.Unmarshal(wrapper.Bytes, &inner); err != nil {
		return nil, "", false
	}
	switch inner.Tag {
	case asn1.TagUTF8String, asn1.TagIA5String:
		return oid, string(inner.Bytes), true
	}
	return nil, "", false
}
