package c2s

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/server/auth"
	"github.com/aviary-im/aviary/wire"
)

// XEP-0388 (Extensible SASL Profile) with XEP-0386 (Bind 2).
//
// The same mechanisms as RFC 6120 SASL, in another namespace, with two
// round trips fewer per login: no stream restart after <success/>, and
// the resource is bound inside the exchange when <authenticate/> carries a
// Bind 2 request. Conversations, Monal, Gajim and other current clients
// use it when the server offers it; the others keep using RFC 6120 SASL
// and resource binding, which stay offered beside it.
//
// After <success/> the stream goes on: the server sends the features of
// an authenticated stream at once (without bind when Bind 2 bound the
// session), as Prosody's mod_sasl2 does.
//
// Bind 2 also turns on, inside the same exchange, what a client would
// otherwise ask for right after binding: stream management (the
// <enabled/> answer inside <bound/>), message carbons, and the inactive
// state of client state indication. xmpp.js 0.14 enables stream
// management only this way once it logs in with SASL2. A reconnecting
// client can also resume its detached session inside the exchange
// (XEP-0198 <resume/> in <authenticate/>), which is tried before Bind 2.

// sasl2Feature is the <authentication/> stream feature offering mechs'
// mechanisms, with Bind 2 inline and the features Bind 2 can turn on in
// the same exchange: stream management, client state indication, and
// carbons when the carbons plugin runs (XEP-0386 §2.1); and FAST
// (XEP-0484) with the HT mechanisms the stream can use.
func (s *Session) sasl2Feature(mechs *wire.Element, conn auth.Conn) *wire.Element {
	f := wire.NewNS("authentication", wire.NSSASL2)
	for _, m := range mechs.Children {
		f.Append(wire.New("mechanism").SetText(m.AllText()))
	}
	inline := wire.New("inline").Append(wire.New("feature", "var", wire.NSSM), wire.New("feature", "var", wire.NSCSI))
	if s.inlineCarbons() {
		inline.Append(wire.New("feature", "var", wire.NSCarbons))
	}
	in := wire.New("inline").Append(
		wire.NewNS("sm", wire.NSSM), // <resume/> inside <authenticate/>
		wire.NewNS("bind", wire.NSBind2).Append(inline))
	if ht := s.srv.d.Auth.FASTMechanismsOn(conn); len(ht) > 0 {
		// No tls-0rtt: crypto/tls accepts no early data.
		fast := wire.NewNS("fast", wire.NSFAST)
		for _, m := range ht {
			fast.Append(wire.New("mechanism").SetText(m))
		}
		in.Append(fast)
	}
	return f.Append(in)
}

// inlineCarbons reports whether message carbons can be enabled inside
// Bind 2: only when the carbons plugin serves them.
func (s *Session) inlineCarbons() bool {
	return s.srv.d.Plugins != nil && slices.Contains(s.srv.d.Plugins.DiscoFeatures(), wire.NSCarbons)
}

// startAuth2 starts an XEP-0388 exchange, with what it carries: a Bind 2
// request, an inline resumption, the client's user-agent id, and FAST
// (XEP-0484): <fast/> when it logs in with a token, <request-token/> when
// it wants one.
func (s *Session) startAuth2(el *wire.Element) bool {
	s.sasl2 = true
	s.bind2 = el.Child("bind", wire.NSBind2)
	s.sasl2Resume = el.Child("resume", wire.NSSM)
	s.noteUserAgent(el, s.bind2)
	s.userAgent, s.fastUse, s.fastRequest = "", nil, ""
	if ua := el.Child("user-agent", ""); ua != nil {
		s.userAgent = ua.Attr("id")
	}
	if rt := el.Child("request-token", wire.NSFAST); rt != nil {
		s.fastRequest = rt.Attr("mechanism")
	}
	if f := el.Child("fast", wire.NSFAST); f != nil {
		use := &auth.FASTUse{Invalidate: f.Attr("invalidate") == "true" || f.Attr("invalidate") == "1"}
		if c := f.Attr("count"); c != "" {
			n, err := strconv.ParseUint(c, 10, 64)
			if err != nil {
				return s.saslFail(&auth.Failure{Condition: auth.CondMalformedRequest, Err: err})
			}
			use.Count, use.HasCount = n, true
		}
		s.fastUse = use
	}
	return s.beginSASL(el.Attr("mechanism"), el.ChildText("initial-response", ""))
}

// fastToken issues the FAST token the exchange x calls for, if any: the
// one the client asked for with <request-token/>, or a new one for a
// token past half its lifetime (XEP-0484 §4.5; not when the client
// invalidated it). A failure is logged and the client simply gets no
// token: it logged in all the same.
func (s *Session) fastToken(x auth.Exchange) *wire.Element {
	a := s.srv.d.Auth
	mech := s.fastRequest
	if fl, ok := x.(auth.FASTLogin); ok && mech == "" && fl.RotationDue() {
		mech = fl.FASTMechanism()
	}
	if mech == "" {
		return nil
	}
	if !slices.Contains(a.FASTMechanismsOn(s.authConn()), mech) {
		s.logger().Debug("c2s: FAST token asked for a mechanism not offered", "mechanism", mech)
		return nil
	}
	if s.userAgent == "" {
		s.logger().Debug("c2s: FAST token asked without a user-agent id")
		return nil
	}
	tok, expiry, err := a.IssueFASTToken(s.ctx, s.username, s.userAgent, mech)
	if err != nil {
		s.logger().Warn("c2s: no FAST token", "err", err)
		return nil
	}
	return wire.NewNS("token", wire.NSFAST).SetAttr("expiry", expiry.UTC().Format(time.RFC3339)).SetAttr("token", tok)
}

// saslNS is the namespace of the running exchange's challenges.
func (s *Session) saslNS() string {
	if s.sasl2 {
		return wire.NSSASL2
	}
	return wire.NSSASL
}

// failureElement is a SASL failure in the running exchange's profile.
func (s *Session) failureElement(cond, text string) *wire.Element {
	if s.sasl2 {
		return sasl2Failure(cond, text)
	}
	f := saslFailure(cond)
	if text != "" {
		f.Append(wire.New("text").SetText(text))
	}
	return f
}

// sasl2Failure carries an RFC 6120 condition (XEP-0388 §2.6.2).
func sasl2Failure(cond, text string) *wire.Element {
	f := wire.NewNS("failure", wire.NSSASL2).Append(wire.NewNS(cond, wire.NSSASL))
	if text != "" {
		f.Append(wire.New("text").SetText(text))
	}
	return f
}

// sasl2Success ends a successful XEP-0388 exchange, after
// markAuthenticated: resumes the session the client names when it asked
// (and stops there if that worked), else binds the resource when Bind 2
// asked for it, answers <success/> with the authorization identifier (the
// full JID once bound) and sends the features of the authenticated
// stream, which is not restarted.
func (s *Session) sasl2Success(additional []byte, x auth.Exchange) bool {
	s.state = stateAuthed
	s.sasl2 = false
	success := wire.NewNS("success", wire.NSSASL2)
	if len(additional) > 0 {
		success.Append(wire.New("additional-data").SetText(encodeSASL(additional)))
	}
	token := s.fastToken(x)
	s.fastUse, s.fastRequest = nil, ""
	if r := s.sasl2Resume; r != nil {
		if token != nil {
			success.Append(token)
			token = nil
		}
		// XEP-0198 inside XEP-0388: resume first; <success/> then carries
		// <resumed/> and goes out on the resumed session, or carries
		// <failed/> and the exchange goes on with Bind 2, if asked.
		s.sasl2Resume = nil
		if next, stop := s.resume(r, success); next != nil || stop {
			s.bind2 = nil
			s.resumedInto = next
			return stop
		}
	}
	id := s.username + "@" + s.srv.d.Domain
	var bound, smEnable *wire.Element
	if b := s.bind2; b != nil {
		s.bind2 = nil
		full, se := s.bindResource(bind2Resource(b.ChildText("tag", "")))
		if se == nil {
			id = full.String()
			bound = wire.NewNS("bound", wire.NSBind2)
			smEnable = b.Child("enable", wire.NSSM)
			if b.Child("enable", wire.NSCarbons) != nil {
				s.enableCarbonsInline(full.String())
			}
			if b.Child("inactive", wire.NSCSI) != nil { // a client reconnecting in the background
				s.mu.Lock()
				s.inactive = true
				s.mu.Unlock()
				s.srv.fire(s.ctx, plugins.EventClientInactive, id, "")
			}
		} else {
			// Authenticated all the same: the features offer RFC 6120
			// binding, which the client can use instead.
			s.logger().Info("c2s: Bind 2 failed", "err", se.Condition)
		}
	}
	success.Append(wire.New("authorization-identifier").SetText(id))
	if bound != nil {
		success.Append(bound)
	}
	if token != nil {
		success.Append(token)
	}
	if smEnable != nil && !s.smEnabled {
		s.enableSM(smEnable, success, bound)
	} else {
		s.enqueue(success)
	}
	s.enqueue(s.features())
	return false
}

// enableCarbonsInline enables message carbons for a session Bind 2 just
// bound, as an <iq type='set'><enable/></iq> to the server would, through
// the carbons plugin. A failure leaves carbons off; the client can still
// ask with that IQ (XEP-0386 has no way to report it).
func (s *Session) enableCarbonsInline(full string) {
	if !s.inlineCarbons() {
		return
	}
	iq := wire.New("iq", "type", "set", "id", "bind2-carbons").Append(wire.NewNS("enable", wire.NSCarbons))
	reply, ok := s.srv.d.Plugins.HandleIQ(s.ctx, &plugins.IQ{Stanza: iq, From: full, FromLocal: true, To: s.srv.d.Domain}, plugins.ToServer)
	if !ok || reply.Type() == "error" {
		s.logger().Info("c2s: Bind 2 could not enable carbons", "reply", reply)
	}
}

// bind2Resource is the resource for a Bind 2 request: the server chooses
// it (XEP-0386 §3), from the client's tag when that makes a valid
// resourcepart, with a random suffix.
func bind2Resource(tag string) string {
	tag = strings.TrimSpace(tag)
	if len(tag) > 64 {
		tag = tag[:64]
	}
	if tag == "" {
		return "av-" + randomID(6)
	}
	res := tag + "-" + randomID(6)
	if _, err := wire.NewJID("", "example.org", res); err != nil {
		return "av-" + randomID(6)
	}
	return res
}
