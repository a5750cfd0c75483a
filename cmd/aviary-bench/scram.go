package main

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// scramClient is the client side of SCRAM-SHA-1 (RFC 5802) without channel
// binding.
type scramClient struct {
	user, password  string
	nonce           string
	clientFirstBare string
	authMessage     string
	saltedPassword  []byte
	cacheKey        string
}

// newSCRAM returns a client; an empty nonce draws a random one.
func newSCRAM(user, password, nonce string) *scramClient {
	if nonce == "" {
		var b [18]byte
		rand.Read(b[:])
		nonce = base64.RawStdEncoding.EncodeToString(b[:])
	}
	return &scramClient{user: user, password: password, nonce: nonce}
}

func scramEscape(s string) string {
	s = strings.ReplaceAll(s, "=", "=3D")
	return strings.ReplaceAll(s, ",", "=2C")
}

func (s *scramClient) clientFirst() string {
	s.clientFirstBare = "n=" + scramEscape(s.user) + ",r=" + s.nonce
	return "n,," + s.clientFirstBare
}

// scramAttrs parses "k=v,k=v".
func scramAttrs(msg string) map[string]string {
	out := make(map[string]string)
	for _, part := range strings.Split(msg, ",") {
		if len(part) >= 2 && part[1] == '=' {
			out[part[:1]] = part[2:]
		}
	}
	return out
}

// clientFinal answers the server-first message.
func (s *scramClient) clientFinal(serverFirst string) (string, error) {
	a := scramAttrs(serverFirst)
	nonce, salt64, iter := a["r"], a["s"], a["i"]
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return "", fmt.Errorf("%w: scram: bad server nonce", errAuth)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return "", fmt.Errorf("%w: scram: bad salt: %v", errAuth, err)
	}
	n, err := strconv.Atoi(iter)
	if err != nil || n < 1 {
		return "", fmt.Errorf("%w: scram: bad iteration count %q", errAuth, iter)
	}
	key := scramKey(s.user, salt64, n)
	if s.saltedPassword = cache.get(key); s.saltedPassword == nil {
		s.saltedPassword, err = pbkdf2.Key(sha1.New, s.password, salt, n, sha1.Size)
		if err != nil {
			return "", fmt.Errorf("scram: %w", err)
		}
	}
	s.cacheKey = key
	withoutProof := "c=biws,r=" + nonce
	s.authMessage = s.clientFirstBare + "," + serverFirst + "," + withoutProof
	clientKey := hmacSHA1(s.saltedPassword, "Client Key")
	stored := sha1.Sum(clientKey)
	sig := hmacSHA1(stored[:], s.authMessage)
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

// verifyServer checks the server's signature in server-final ("v=...").
func (s *scramClient) verifyServer(serverFinal string) error {
	a := scramAttrs(serverFinal)
	if e, ok := a["e"]; ok {
		return fmt.Errorf("%w: scram: %s", errAuth, e)
	}
	v, err := base64.StdEncoding.DecodeString(a["v"])
	if err != nil || len(v) == 0 {
		return fmt.Errorf("%w: scram: no server signature", errAuth)
	}
	serverKey := hmacSHA1(s.saltedPassword, "Server Key")
	if !hmac.Equal(v, hmacSHA1(serverKey, s.authMessage)) {
		return errors.New("scram: server signature mismatch")
	}
	cache.put(s.cacheKey, s.saltedPassword) // only keys the server confirmed
	return nil
}

func hmacSHA1(key []byte, msg string) []byte {
	m := hmac.New(sha1.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
