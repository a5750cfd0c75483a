package s2s

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Namespaces of Server Dialback (XEP-0220).
const (
	nsDialback        = "jabber:server:dialback"
	nsDialbackFeature = "urn:xmpp:features:dialback"
)

// dialbackKey computes a dialback key as XEP-0185 recommends:
// HMAC-SHA256 keyed with the hex SHA-256 of the secret, over
// "receiving originating streamID", hex encoded. Every node of a cluster
// shares the secret, so any of them can verify a key another generated.
func dialbackKey(secret, receiving, originating, streamID string) string {
	sum := sha256.Sum256([]byte(secret))
	mac := hmac.New(sha256.New, []byte(hex.EncodeToString(sum[:])))
	mac.Write([]byte(receiving))
	mac.Write([]byte{' '})
	mac.Write([]byte(originating))
	mac.Write([]byte{' '})
	mac.Write([]byte(streamID))
	return hex.EncodeToString(mac.Sum(nil))
}

// checkDialbackKey compares in constant time.
func checkDialbackKey(secret, receiving, originating, streamID, key string) bool {
	want := dialbackKey(secret, receiving, originating, streamID)
	return hmac.Equal([]byte(want), []byte(key))
}
