package bosh

import (
	"slices"

	"github.com/aviary-im/aviary/wire"
)

// Delivery: what the session hands to a request is not delivered until the
// client has it. A browser tab that closes while a request is held leaves
// that request behind; an answer written to it is lost. So:
//
//   - A request whose client goes away (its context ends: Go's HTTP server
//     notices the closed connection, or the forwarding node says so with
//     GoneKind) stops holding anything at once (abandonLocked): nothing is
//     written to it, and the session's inactivity period starts then
//     rather than when the request's wait would have run out.
//   - What a response carried is remembered (sent) until the client shows
//     that it has it. A successful write shows nothing: the server notices
//     a closed connection only when it next reads from it, so a message
//     that reaches a held request just after the tab closed is written,
//     without error, into a connection nobody reads (issue 17). The HTTP
//     layer reports only a loss it saw (reply.settle: the write failed or
//     the client's context had ended): what that response carried goes
//     back to the head of the queue for the next request, and the cached
//     response for that rid is replaced by one without it, so a resend
//     cannot bring it twice.
//   - The client shows what it has with its later requests. In ack mode
//     (XEP-0124 §9) it acknowledges a rid explicitly (ack), or implicitly
//     by omitting ack, which says it has every response below the
//     request's rid. Without ack mode, a request with rid N shows that the
//     client has the response to N-requests: it may not have more than
//     'requests' outstanding (§11), so it read that response before it
//     sent N.
//   - When the session ends, every stanza still queued or not shown to be
//     delivered goes back to the c2s core (Undelivered), which re-routes
//     it with the session's other unsent stanzas (router.Unbind): to the
//     user's other resources, or offline storage. A response forwarded
//     from another node is no different: the client's later requests
//     confirm it, whichever node they reach.
//
// At worst a stanza arrives twice (the client read the last responses
// but sent no further request before the session ended), never not at
// all.

// payload is one serialized element for a response body.
type payload struct {
	el  *wire.Element // what the c2s core sent; nil for the session's own (a stream error)
	b   []byte
	rid int64 // the response it was lost from, when queued again; 0 when new
}

// sentResp is what one response carried, kept until the client has it.
type sentResp struct {
	payloads []payload
}

// outcome is what became of a response, as the HTTP layer saw it.
type outcome uint8

const (
	// delivered: written without error. The client may still be gone:
	// only its later requests confirm what the response carried.
	delivered outcome = iota
	// lost: the client went away, or the write failed.
	lost
	// handedOn: passed back to the node that forwarded the request, which
	// reports a loss with GoneKind.
	handedOn
)

// reply is a response body and how to report what became of it.
type reply struct {
	body   []byte
	settle func(outcome) // nil: nothing to report
}

func (r reply) report(o outcome) {
	if r.settle != nil {
		r.settle(o)
	}
}

func (s *Session) reply(body []byte, rid int64) reply {
	return reply{body: body, settle: func(o outcome) { s.settle(rid, o) }}
}

// takeOutLocked empties the queue and returns what was in it.
func (s *Session) takeOutLocked() []payload {
	out := s.out
	s.out, s.outBytes = nil, 0
	if s.outTaken != nil { // wake SendWait
		close(s.outTaken)
		s.outTaken = nil
	}
	return out
}

// recordSentLocked remembers what the response to rid carried.
func (s *Session) recordSentLocked(rid int64, carried []payload) {
	if len(carried) == 0 {
		return
	}
	if s.sent == nil {
		s.sent = map[int64]*sentResp{}
	}
	s.sent[rid] = &sentResp{payloads: carried}
}

// settle records what became of the response to rid. Only a loss
// changes anything: a response written without error stays unconfirmed
// until the client's later requests confirm it (confirmLocked).
func (s *Session) settle(rid int64, o outcome) {
	if o != lost {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.sent[rid]; e != nil {
		s.requeueLocked(rid, e)
	}
}

// confirmLocked forgets what responses up to rid carried: the client has it.
func (s *Session) confirmLocked(upTo int64) {
	for rid := range s.sent {
		if rid <= upTo {
			delete(s.sent, rid)
		}
	}
}

// requeueLocked puts what a lost response carried back in the queue, in
// rid order ahead of anything newer, and makes a resend of that rid get a
// response without it.
func (s *Session) requeueLocked(rid int64, e *sentResp) {
	delete(s.sent, rid)
	if c := s.cache[rid]; c != nil {
		if s.closed {
			c.body = s.terminateBodyLocked(nil, nil)
		} else {
			c.body = s.responseLocked(&request{rid: rid, creation: rid == s.creationRID}, nil)
		}
	}
	i := 0
	for i < len(s.out) && s.out[i].rid != 0 && s.out[i].rid < rid {
		i++
	}
	again := make([]payload, len(e.payloads))
	for j, p := range e.payloads {
		p.rid = rid
		again[j] = p
		s.outBytes += len(p.b)
	}
	s.out = slices.Insert(s.out, i, again...)
	s.m.opts.Logger.Debug("bosh: response lost; sending its payloads again", "sid", s.sid, "rid", rid, "payloads", len(again))
	s.scheduleFlushLocked()
}

// abandonLocked lets go of a request whose client went away: a held one
// is answered without payloads (so whoever still waits on it, such as
// the link handler of a forwarded request, returns) and the answer cached
// for a resend; an out-of-order one is dropped (its client resends it).
// The inactivity period starts when no request is left.
func (s *Session) abandonLocked(r *request) {
	if i := slices.Index(s.held, r); i >= 0 {
		s.held = slices.Delete(s.held, i, i+1)
		s.answerLocked(r, s.responseLocked(r, nil), nil, r.pause == 0)
	} else if s.pending[r.rid] == r {
		delete(s.pending, r.rid)
		s.answerLocked(r, emptyBody(), nil, false)
	} else {
		return
	}
	s.m.opts.Logger.Debug("bosh: client left a request", "sid", s.sid, "rid", r.rid)
	s.idleCheckLocked()
}

// gone handles a forwarding node's report that the client of request rid
// went away or its response could not be written.
func (s *Session) gone(rid int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.sent[rid]; e != nil {
		s.requeueLocked(rid, e)
		return
	}
	for _, h := range s.held {
		if h.rid == rid {
			s.abandonLocked(h)
			return
		}
	}
	if p := s.pending[rid]; p != nil {
		s.abandonLocked(p)
	}
}

// Undelivered returns, once the session has ended, the stanzas it took in
// Send that its client is not known to have: still queued, or carried by
// a response that was lost or that no later request of the client
// confirmed, oldest first. Each stanza is returned once; the c2s core
// routes them again. A response still being written when the session
// ended is not waited for: confirmed it cannot be any more, so what it
// carries is returned whatever the write does.
func (s *Session) Undelivered() []*wire.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	rids := make([]int64, 0, len(s.sent))
	for rid := range s.sent {
		rids = append(rids, rid)
	}
	slices.Sort(rids)
	var els []*wire.Element
	add := func(ps []payload) {
		for _, p := range ps {
			if p.el != nil && p.el.IsStanza() {
				els = append(els, p.el)
			}
		}
	}
	for _, rid := range rids {
		add(s.sent[rid].payloads)
	}
	add(s.takeOutLocked())
	s.sent = nil
	return els
}
