// Package s2s is Aviary's federation: incoming and outgoing
// server-to-server streams (RFC 6120), STARTTLS on every stream, peer
// authentication by SASL EXTERNAL with the peer's certificate or by Server
// Dialback (XEP-0220, keys per XEP-0185), DNS SRV dialling with direct TLS
// (XEP-0368), and one reused outgoing connection per domain pair.
//
// The shape follows NATS's routes and gateways: the Service runs an accept
// loop (acceptLoop), creates a stream per connection (createIn /
// newOutConn + startOutLocked), dials over the DNS targets with a retry
// backoff per domain (dialOut, noteFailure), runs the handshake
// (processInHandshake / processOutHandshake) and removes streams on close
// (removeIn / removeOut), every close carrying a closeReason that is
// logged and counted (Stats).
//
// The router uses a Service as its router.Federation: Send queues a stanza
// and never blocks; stanzas that cannot be delivered come back through the
// deliver callback as error stanzas addressed to the local sender. Stanzas
// arriving from peers go to the same callback after their addresses were
// checked against the domains the peer authenticated.
//
// Lock order: Service.mu before outConn.mu. inStream.mu and inStream.wmu
// are leaves. No lock is held during network I/O except wmu, which only
// serializes writes to one incoming socket.
package s2s
