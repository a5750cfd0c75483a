package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"hash"

	"github.com/aviary-im/aviary/storage"
	"golang.org/x/text/secure/precis"
)

// saltLen is the length of generated salts, in bytes.
const saltLen = 16

// NewCredentials derives SCRAM-SHA-1 and SCRAM-SHA-256 credentials from a
// password: a fresh salt each, the iteration count, StoredKey and
// ServerKey. Neither the password nor the salted password is kept.
func NewCredentials(password string, iterations int) (storage.Credentials, error) {
	pw, err := preparePassword(password)
	if err != nil {
		return storage.Credentials{}, err
	}
	s1, err := newSCRAM(sha1.New, pw, iterations)
	if err != nil {
		return storage.Credentials{}, err
	}
	s256, err := newSCRAM(sha256.New, pw, iterations)
	if err != nil {
		return storage.Credentials{}, err
	}
	return storage.Credentials{SHA1: s1, SHA256: s256}, nil
}

// preparePassword applies SASLprep's successor, the PRECIS OpaqueString
// profile (RFC 7613), so that a password typed differently but equivalently
// still matches.
func preparePassword(password string) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	pw, err := precis.OpaqueString.String(password)
	if err != nil {
		return "", fail(CondMalformedRequest, err)
	}
	return pw, nil
}

func newSCRAM(h func() hash.Hash, password string, iterations int) (storage.SCRAM, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return storage.SCRAM{}, err
	}
	stored, server, err := deriveKeys(h, password, salt, iterations)
	if err != nil {
		return storage.SCRAM{}, err
	}
	return storage.SCRAM{Salt: salt, Iterations: iterations, StoredKey: stored, ServerKey: server}, nil
}

// deriveKeys computes StoredKey and ServerKey (RFC 5802 §3).
func deriveKeys(h func() hash.Hash, password string, salt []byte, iterations int) (stored, server []byte, err error) {
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return nil, nil, err
	}
	clientKey := hmacSum(h, salted, "Client Key")
	server = hmacSum(h, salted, "Server Key")
	sum := h()
	sum.Write(clientKey)
	return sum.Sum(nil), server, nil
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// checkPassword reports whether password matches a credential, by
// deriving StoredKey again and comparing in constant time.
func checkPassword(h func() hash.Hash, c storage.SCRAM, password string) bool {
	pw, err := preparePassword(password)
	if err != nil || len(c.Salt) == 0 || c.Iterations <= 0 {
		return false
	}
	stored, _, err := deriveKeys(h, pw, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	return hmac.Equal(stored, c.StoredKey)
}
