// Package bosh is the BOSH connector: XEP-0124 (Bidirectional-streams Over
// Synchronous HTTP) carrying an XMPP stream as XEP-0206 specifies.
//
// A Manager is the http.Handler mounted at /http-bind. Each BOSH session
// is a Session: the HTTP side (request ids, held requests, the response
// cache, acknowledgements, pause, inactivity) lives here, and the XMPP side
// (SASL, binding, stream management, routing) is the c2s core, which sees
// a Session as one more transport: it reads the client's elements with
// Recv, queues its own with Send, and ends the stream with Close.
//
// Implemented from XEP-0124: session creation (wait, hold, requests,
// inactivity, polling, maxpause, ver, ack, from, authid, secure), the rid
// window with out-of-order requests buffered and resends answered from the
// response cache, held requests, request and response acknowledgements
// (ack, report, time), pause, terminate, inactivity, overactivity and
// polling limits (policy-violation), the key sequence of §15, and the
// terminal binding conditions. Not implemented: multiple streams (§16;
// not announced, so clients do not use it), compression (accept) and
// charsets. From XEP-0206: xmpp:version, xmpp:restart and restartlogic,
// stream errors inside remote-stream-error.
//
// # Session ids and clustering
//
// No sticky sessions: a request may reach any node of the cluster. A sid
// names the node that owns the session: it is the base64url (unpadded)
// encoding of the owner's cluster node name, a dot, and 32 hex digits of
// randomness ("bm9kZTE.3f9c..."). A node that receives a request for a sid
// it does not own forwards the raw body over the node-to-node link with
// cluster.Cluster.Call(ctx, owner, "bosh", payload); the owner runs it
// through the same code as a local request and its response travels back.
// A held request is held on the owner, so long polling keeps working when
// consecutive requests of one session land on different nodes. The sid
// needs no shared table, survives any load balancer and costs no cluster
// write per session; a forged prefix only makes the named node answer
// item-not-found. When the owner is gone the session is gone too: the
// client gets item-not-found and starts a new session (and resumes with
// XEP-0198 when it can).
//
// A request whose client went away (a closed tab) holds nothing: what
// the session could not hand to a client known to have it is sent again,
// or handed back to the c2s core when the session ends, which routes it
// to the user's other resources or offline storage (delivery.go). A live
// request never gets an empty HTTP 200: at worst an empty <body/>.
//
// When clustering is switched off the node links stay up, so forwarding
// keeps working behind a balancer without stickiness.
//
// # Lock order
//
// Manager.mu, then Session.mu. Nothing is called out of the package while
// Session.mu is held: HTTP responses are handed over on buffered channels,
// inbound elements on the session's inbox.
package bosh
