// Package router decides where a stanza goes: to a plugin (IQs to the
// server or on a user's behalf), to local or remote sessions of a local user
// by the RFC 6121 delivery rules (through the cluster's routing table), to
// offline storage, or out over s2s. It also keeps the session registry and
// runs the RFC 6121 roster and presence logic (server/router/im.go...).
//
// Entry points: Bind/Unbind for session lifecycle, FromClient for stanzas a
// local session sent (its 'from' already stamped by the stream layer),
// FromRemote for stanzas from s2s, Route for stanzas the server itself sends.
package router
