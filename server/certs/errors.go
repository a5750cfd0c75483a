package certs

import "errors"

var (
	// ErrBadCertificate means a certificate or key cannot be used: not
	// PEM, the key is not the certificate's, expired, not for servers.
	ErrBadCertificate = errors.New("certs: unusable certificate")
	// ErrNoCertificate means a directory holds no certificate files that
	// `aviary cert import` knows.
	ErrNoCertificate = errors.New("certs: no certificate found")
	// ErrNoChallenge means no node is waiting for the CA to validate this
	// name or token.
	ErrNoChallenge = errors.New("certs: no pending challenge")
)
