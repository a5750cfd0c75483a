// Package auth is SASL for client streams (SCRAM-SHA-256, SCRAM-SHA-1 and
// PLAIN), credential creation and checking, throttling of failed attempts
// per address, and the UserManager plugins use.
package auth

// Authenticator checks SASL exchanges against the user store.
type Authenticator struct{}
