package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sources of a certificate, as the console and the API show them.
const (
	SourceACME       = "acme"        // ordered by this cluster from an ACME CA
	SourceImported   = "imported"    // `aviary cert import`
	SourceFile       = "file"        // tls.cert_file, this node only
	SourceSelfSigned = "self-signed" // generated into data_dir, this node only
)

// record is a certificate as stored under "cert/<id>". Everything else
// (names, expiry, issuer) is read from the certificate itself, so it
// cannot disagree with it.
type record struct {
	Source string    `json:"source"`
	Chain  string    `json:"chain"` // PEM, leaf first
	Key    string    `json:"key"`   // PEM private key
	Node   string    `json:"node,omitempty"`
	Stored time.Time `json:"stored"`
}

// Info describes a certificate for people: the console, the API and
// `aviary cert list`.
type Info struct {
	// ID is the key it is stored under: its first name.
	ID        string    `json:"id"`
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Source    string    `json:"source"`
	// Node is the node that ordered or imported it (for file and
	// self-signed certificates: the node serving it).
	Node   string    `json:"node,omitempty"`
	Stored time.Time `json:"stored,omitzero"`
}

// Certificate is a parsed certificate with its key, ready to serve.
type Certificate struct {
	Info
	tls tls.Certificate
}

// TLS returns the certificate for a tls.Config; Leaf is set.
func (c *Certificate) TLS() *tls.Certificate { return &c.tls }

// ParsePEM reads a certificate chain (leaf first, any other PEM blocks
// ignored) and its private key (PKCS#8, PKCS#1 or SEC 1), and checks that
// they belong together, that the leaf is for a server and that it has not
// expired at now. The ID is the leaf's first name.
func ParsePEM(chainPEM, keyPEM []byte, now time.Time) (*Certificate, error) {
	var chain [][]byte
	rest := chainPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE block", ErrBadCertificate)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !samePublicKey(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%w: the private key is not the certificate's", ErrBadCertificate)
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("%w: the certificate is not for TLS servers (no serverAuth usage)", ErrBadCertificate)
	}
	names := leafNames(leaf)
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: the certificate names no host", ErrBadCertificate)
	}
	if !now.IsZero() && now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: the certificate expired at %s", ErrBadCertificate, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c := &Certificate{
		Info: Info{
			ID:        names[0],
			Names:     names,
			Issuer:    issuerName(leaf),
			Serial:    hex.EncodeToString(leaf.SerialNumber.Bytes()),
			NotBefore: leaf.NotBefore,
			NotAfter:  leaf.NotAfter,
		},
		tls: tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf},
	}
	return c, nil
}

// FromTLS describes an already loaded certificate (tls.cert_file or the
// self-signed one).
func FromTLS(tc tls.Certificate, source, node string) (*Certificate, error) {
	if len(tc.Certificate) == 0 {
		return nil, fmt.Errorf("%w: empty certificate", ErrBadCertificate)
	}
	leaf := tc.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(tc.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
		}
		tc.Leaf = leaf
	}
	names := leafNames(leaf)
	id := ""
	if len(names) > 0 {
		id = names[0]
	}
	return &Certificate{
		Info: Info{
			ID: id, Names: names, Issuer: issuerName(leaf),
			Serial:    hex.EncodeToString(leaf.SerialNumber.Bytes()),
			NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Source: source, Node: node,
		},
		tls: tc,
	}, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	rest := keyPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: no PEM private key block", ErrBadCertificate)
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue // EC PARAMETERS and the like
		}
		if err != nil {
			return nil, fmt.Errorf("%w: private key: %v", ErrBadCertificate, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported private key type %T", ErrBadCertificate, k)
		}
		return s, nil
	}
}

func samePublicKey(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *rsa.PublicKey:
		return a.Equal(b)
	case *ecdsa.PublicKey:
		return a.Equal(b)
	case ed25519.PublicKey:
		return a.Equal(b)
	}
	return false
}

// leafNames returns the certificate's DNS names, lowercased (the common
// name when there are none, as old certificates have).
func leafNames(leaf *x509.Certificate) []string {
	var names []string
	for _, n := range leaf.DNSNames {
		n = strings.ToLower(n)
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, strings.ToLower(leaf.Subject.CommonName))
	}
	return names
}

func issuerName(leaf *x509.Certificate) string {
	if leaf.Issuer.CommonName != "" {
		if len(leaf.Issuer.Organization) > 0 && !strings.Contains(leaf.Issuer.CommonName, leaf.Issuer.Organization[0]) {
			return leaf.Issuer.Organization[0] + " " + leaf.Issuer.CommonName
		}
		return leaf.Issuer.CommonName
	}
	return leaf.Issuer.String()
}

// encodeChain writes DER certificates as PEM.
func encodeChain(der [][]byte) []byte {
	var buf bytes.Buffer
	for _, d := range der {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return buf.Bytes()
}

// encodeKey writes a private key as PKCS#8 PEM.
func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// decodeRecord parses a stored certificate; id is its key without "cert/".
func decodeRecord(id string, data []byte) (*Certificate, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("certs: stored certificate %s: %w", id, err)
	}
	c, err := ParsePEM([]byte(r.Chain), []byte(r.Key), time.Time{})
	if err != nil {
		return nil, fmt.Errorf("certs: stored certificate %s: %w", id, err)
	}
	c.ID, c.Source, c.Node, c.Stored = id, r.Source, r.Node, r.Stored
	return c, nil
}

// Put checks a certificate and its key (ParsePEM at now) and stores it
// for every node under its first name, replacing what was stored there.
func Put(ctx context.Context, st Store, chainPEM, keyPEM []byte, source, node string, now time.Time) (*Certificate, error) {
	c, err := ParsePEM(chainPEM, keyPEM, now)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(record{Source: source, Chain: string(chainPEM), Key: string(keyPEM), Node: node, Stored: now.UTC()})
	if err != nil {
		return nil, err
	}
	if err := st.Put(ctx, certPrefix+c.ID, b); err != nil {
		return nil, err
	}
	c.Source, c.Node, c.Stored = source, node, now.UTC()
	return c, nil
}

// List returns the stored certificates sorted by ID, and a problem for
// each stored entry that cannot be read (they are left out).
func List(ctx context.Context, st Store) ([]*Certificate, []error, error) {
	all, err := st.List(ctx, certPrefix)
	if err != nil {
		return nil, nil, err
	}
	var out []*Certificate
	var bad []error
	for key, v := range all {
		c, err := decodeRecord(strings.TrimPrefix(key, certPrefix), v)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Certificate) int { return strings.Compare(a.ID, b.ID) })
	return out, bad, nil
}

// Delete removes the stored certificate id; an error wrapping
// storage.ErrNotFound when there is none.
func Delete(ctx context.Context, st Store, id string) error {
	if _, err := st.Get(ctx, certPrefix+id); err != nil {
		return err
	}
	return st.Delete(ctx, certPrefix+id)
}
