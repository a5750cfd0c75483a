// Package certs is the one place a node's TLS certificates come from. The
// Manager's tls.Config (Node.TLSConfig) is what every listener uses: c2s
// STARTTLS and direct TLS, HTTPS, s2s. It picks the certificate by SNI
// among the certificates stored for the whole cluster, and falls back to
// tls.cert_file or the self-signed certificate of server/tlsutil. With
// tls.acme.enabled it gets and renews certificates from an ACME CA (RFC
// 8555) for the domain and its service names.
//
// Files:
//
//	manager.go    Options, the Manager, SNI selection over an immutable snapshot, Reload
//	store.go      the Store interface (get/put/delete/list/lock/watch) and DBStore on the node's database
//	record.go     a stored certificate, ParsePEM's checks (key matches, not expired, for servers), Put, List, Delete
//	acme.go       the ACME account (one per directory, shared) and one name's order, authorization and finalization
//	challenge.go  HTTP-01 answers (http.Handler for httpd) and TLS-ALPN-01 answers (GetConfigForClient), both from the store
//	renew.go      Run: the loop that picks up other nodes' certificates and orders what is due, under the lock
//	schedule.go   when to renew and when to retry, as pure functions
//	importdir.go  reading certbot's layout for `aviary cert import`
//	metrics.go    expiry per name (at scrape time), renewals and failures
//
// Where state lives. Everything shared is in the Store: certificates under
// "cert/<first name>", the ACME account and key under "account/<hash of
// the directory URL>", pending challenge answers under "challenge/…"
// (written before the CA is told to validate, deleted after), and the
// failure count of a name under "state/<name>" (so a node that takes over
// respects the retry delay). DBStore keeps them in the key/value module
// store "certs" (owner "aviary/certs", which no account can be) and sets
// the shared property "certs.changed" on every certificate write, which
// is what other nodes listen to. In memory, a Manager holds only the
// snapshot handshakes read (an atomic pointer, swapped by Reload) and the
// ACME client.
//
// Cluster. One node orders at a time: Run takes the Store's lock
// ("acme"; a PostgreSQL advisory lock on a connection of its own, so it
// ends with its holder) and re-reads the store under it before ordering.
// Challenges are answered from the store, so the CA may reach any node.
// The other nodes hear of a new certificate through Store.Watch
// (PostgreSQL LISTEN/NOTIFY) and re-read the store every Options.Poll
// regardless.
//
// Choices:
//   - One certificate per name rather than one for all names: a service
//     whose DNS is not ready fails alone.
//   - A name is due when no stored certificate serves it or the one that
//     does is within tls.acme.renew_before of expiry, whatever its source:
//     an imported certificate is renewed by ACME when due.
//   - After a failure a name waits 5m, doubling to 12h, and tries the
//     next challenge type.
//   - An expired stored certificate is served only when there is no
//     fallback.
package certs
