package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/aviary-im/aviary/storage"
	"golang.org/x/crypto/acme"
)

// The ACME client side (RFC 8555): one account per directory URL, stored
// with its key so that every node orders as the same account; an order
// per name; the challenge answer put in the shared store before the CA is
// told to validate, so that any node can answer it.

// account is stored under "account/<hash of the directory URL>".
type account struct {
	Directory string `json:"directory"`
	Key       string `json:"key"` // PEM, ECDSA P-256
	URI       string `json:"uri,omitempty"`
	Email     string `json:"email,omitempty"`
}

func accountKey(directory string) string {
	sum := sha256.Sum256([]byte(directory))
	return "account/" + hex.EncodeToString(sum[:8])
}

// httpClient talks to the CA: tls.acme.ca_file's roots when set.
func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("certs: tls.acme.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("certs: tls.acme.ca_file: no PEM certificate in %s", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// acmeClient returns the registered ACME client, loading or creating the
// account on first use. Called with the ordering lock held.
func (m *Manager) acmeClient(ctx context.Context) (*acme.Client, error) {
	m.acmeMu.Lock()
	defer m.acmeMu.Unlock()
	if m.client != nil {
		return m.client, nil
	}
	a := m.o.Config.ACME
	hc, err := httpClient(a.CAFile)
	if err != nil {
		return nil, err
	}
	var acct account
	key := accountKey(a.Directory)
	data, err := m.o.Store.Get(ctx, key)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &acct); err != nil {
			return nil, fmt.Errorf("certs: stored ACME account: %w", err)
		}
	case errors.Is(err, storage.ErrNotFound):
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		pemKey, err := encodeKey(k)
		if err != nil {
			return nil, err
		}
		acct = account{Directory: a.Directory, Key: string(pemKey)}
	default:
		return nil, err
	}
	signer, err := parseKey([]byte(acct.Key))
	if err != nil {
		return nil, fmt.Errorf("certs: stored ACME account key: %w", err)
	}
	c := &acme.Client{Key: signer, DirectoryURL: a.Directory, HTTPClient: hc, UserAgent: "aviary"}
	var contact []string
	if a.Email != "" {
		contact = []string{"mailto:" + a.Email}
	}
	// Registering an existing key is how RFC 8555 finds its account
	// (§7.3.1); it also re-creates an account the CA forgot.
	reg, err := c.Register(ctx, &acme.Account{Contact: contact}, acme.AcceptTOS)
	switch {
	case errors.Is(err, acme.ErrAccountAlreadyExists):
		if acct.Email != a.Email {
			if reg, err = c.UpdateReg(ctx, &acme.Account{URI: string(c.KID), Contact: contact}); err != nil {
				return nil, fmt.Errorf("certs: updating the ACME account's contact: %w", err)
			}
		}
	case err != nil:
		return nil, fmt.Errorf("certs: registering with the ACME server %s: %w", a.Directory, err)
	default:
		m.log.Info("certs: registered an ACME account", "directory", a.Directory, "account", reg.URI, "email", a.Email)
	}
	acct.URI, acct.Email = string(c.KID), a.Email
	b, _ := json.Marshal(acct)
	if err := m.o.Store.Put(ctx, key, b); err != nil {
		return nil, err
	}
	m.client = c
	return c, nil
}

// order gets a certificate for name from the CA, trying the challenge
// types in order, and returns its PEM chain and key.
func (m *Manager) order(ctx context.Context, c *acme.Client, name string, types []string) (chainPEM, keyPEM []byte, err error) {
	o, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		return nil, nil, fmt.Errorf("new order: %w", err)
	}
	defer func() {
		if err != nil {
			m.abandon(c, o.AuthzURLs)
		}
	}()
	for _, u := range o.AuthzURLs {
		if err := m.authorize(ctx, c, u, types); err != nil {
			return nil, nil, err
		}
	}
	if o, err = c.WaitOrder(ctx, o.URI); err != nil {
		return nil, nil, fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		return nil, nil, err
	}
	der, _, err := c.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return nil, nil, fmt.Errorf("finalize: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return encodeChain(der), keyPEM, nil
}

// authorize completes one authorization: nothing to do when the CA
// already trusts us for the name, else the first offered challenge of
// types, answered through the store.
func (m *Manager) authorize(ctx context.Context, c *acme.Client, url string, types []string) error {
	z, err := c.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	switch z.Status {
	case acme.StatusValid:
		return nil
	case acme.StatusPending:
	default:
		return fmt.Errorf("authorization for %s is %s", z.Identifier.Value, z.Status)
	}
	var chal *acme.Challenge
	for _, t := range types {
		if i := slices.IndexFunc(z.Challenges, func(ch *acme.Challenge) bool { return ch.Type == t }); i >= 0 {
			chal = z.Challenges[i]
			break
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers none of the challenges %v for %s", types, z.Identifier.Value)
	}
	keyAuth, err := c.HTTP01ChallengeResponse(chal.Token) // token.thumbprint, the key authorization of every type
	if err != nil {
		return err
	}
	var key string
	switch chal.Type {
	case acmeHTTP01:
		key = http01Key(chal.Token)
	case acmeTLSALPN01:
		key = tlsALPN01Key(z.Identifier.Value)
	}
	if err := m.o.Store.Put(ctx, key, []byte(keyAuth)); err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), challengeTimeout)
		defer cancel()
		if err := m.o.Store.Delete(dctx, key); err != nil {
			m.log.Warn("certs: removing a finished challenge", "key", key, "err", err)
		}
	}()
	m.log.Debug("certs: challenge ready", "name", z.Identifier.Value, "type", chal.Type)
	if _, err := c.Accept(ctx, chal); err != nil {
		return fmt.Errorf("%s challenge: %w", chal.Type, err)
	}
	if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("%s challenge: %w", chal.Type, err)
	}
	return nil
}

// abandon deactivates the pending authorizations of a failed order, so
// that they do not count against the CA's limit of pending ones.
func (m *Manager) abandon(c *acme.Client, urls []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range urls {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil || z.Status != acme.StatusPending {
			continue
		}
		_ = c.RevokeAuthorization(ctx, u)
	}
}
