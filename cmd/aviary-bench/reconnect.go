package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// The -reconnect mode of the ring: every session behaves like a real
// client going through a rolling restart. It enables stream management
// (XEP-0198), asks for acknowledgements after each batch it writes and
// keeps what the server has not acknowledged. When the stream ends it
// follows a <see-other-host/>; after any other disconnect it asks the
// dispatcher (GET /dispatch) for a node, or tries the next -servers
// address. On the new stream it tries to resume (which only works on the
// same node), else logs in afresh, binds, sends its initial presence (so
// offline messages flow) and resends every unacknowledged message, but
// those a <failed h='N'/> said the server had (XEP-0198: N stanzas of the
// old session handled; Aviary says so when that session's node died). A
// resent message the receiver already had is counted as redelivered
// (a duplicate), never as lost.

const nsSM = "urn:xmpp:sm:3"

// ReconnectStats are the -reconnect figures of a ring run.
type ReconnectStats struct {
	Sent        int `json:"sent"`
	Delivered   int `json:"delivered"`   // unique messages received
	Redelivered int `json:"redelivered"` // duplicates, from resends and re-queues
	// RedeliveredByServer are the duplicates of messages their sender
	// sent once (the rest may come from the senders' resends).
	RedeliveredByServer int `json:"redelivered_by_server"`
	// Bounced counts messages that came back to their sender as an error
	// (the server could neither deliver nor store them) and were never
	// delivered.
	Bounced int `json:"bounced"`
	// Lost counts messages the server acknowledged (XEP-0198) that never
	// arrived: what the server promised and broke. NeverAcked counts the
	// others that never arrived (the client still had them to resend when
	// the run ended).
	Lost        int `json:"lost"`
	NeverAcked  int `json:"never_acked"`
	Redirects   int `json:"redirects"`   // see-other-host followed
	Reconnects  int `json:"reconnects"`  // new streams after a disconnect
	Disconnects int `json:"disconnects"` // streams that ended without a redirect
	Resumed     int `json:"resumed"`     // reconnects that resumed the old session
	Resent      int `json:"resent"`      // messages sent again on a new stream
	// FailedWithH counts failed resumptions whose <failed/> said how many
	// of the old session's stanzas the server had (h); ResendsSaved the
	// messages that count acknowledged, which were not sent again.
	FailedWithH  int `json:"failed_with_h"`
	ResendsSaved int `json:"resends_saved"`
	// FailedHBelowAck counts <failed h/> answers whose h was below an
	// <a h/> the client already had: a server bug (a client taking the
	// difference modulo 2^32 would count everything outstanding as
	// handled); the tool ignores such an h.
	FailedHBelowAck int `json:"failed_h_below_ack"`
	DispatchAsked   int `json:"dispatch_asked"`
	UnackedAtEnd    int `json:"unacked_at_end"` // messages the server never acknowledged
	// Reconnect time: from a stream's loss to the new stream ready for
	// messages (resumed, or bound with initial presence sent), per
	// reconnect: p99 and max are when 99% and 100% were back.
	ReconnectP50 float64 `json:"reconnect_p50_ms"`
	ReconnectP99 float64 `json:"reconnect_p99_ms"`
	ReconnectMax float64 `json:"reconnect_max_ms"`
	// Transports counts the sessions by transport (tcp, websocket, bosh).
	Transports map[string]int `json:"transports,omitempty"`
}

// smItem is one stanza sent on a stream-management stream.
type smItem struct {
	data []byte
	msg  bool // a ring message (resent on a new stream); false: presence
	seq  int  // the ring message's sequence number
}

// smWindow is the sender's half of XEP-0198: what was sent on the current
// stream and not yet acknowledged, in order. Not safe for concurrent use.
type smWindow struct {
	h     uint32 // the server's handled count acknowledged so far
	items []smItem
}

// push records a stanza written (or about to be written) on the stream.
func (w *smWindow) push(it smItem) { w.items = append(w.items, it) }

// ack applies <a h='…'/>: it drops the stanzas the server handled and
// returns how many messages that acknowledged. h counts modulo 2^32; an h
// beyond what was sent is an error and changes nothing.
func (w *smWindow) ack(h uint32) (int, error) {
	n := 0
	_, err := w.ackSeqs(h, func(int) { n++ })
	return n, err
}

// ackSeqs is ack calling seen with the sequence number of each message
// acknowledged.
func (w *smWindow) ackSeqs(h uint32, seen func(seq int)) (int, error) {
	n := h - w.h
	if int64(n) > int64(len(w.items)) {
		return 0, fmt.Errorf("server acknowledged %d stanzas, only %d outstanding", n, len(w.items))
	}
	msgs := 0
	for _, it := range w.items[:n] {
		if it.msg {
			msgs++
			seen(it.seq)
		}
	}
	w.items = append(w.items[:0:0], w.items[n:]...)
	w.h = h
	return msgs, nil
}

// messages counts the unacknowledged messages.
func (w *smWindow) messages() int {
	n := 0
	for _, it := range w.items {
		if it.msg {
			n++
		}
	}
	return n
}

// restart empties the window for a new stream (counters from zero) and
// returns the messages to send again, in order; the caller pushes them
// again as it writes them.
func (w *smWindow) restart() []smItem {
	var out []smItem
	for _, it := range w.items {
		if it.msg {
			out = append(out, it)
		}
	}
	w.items, w.h = nil, 0
	return out
}

// resumed applies a successful resumption with the server's handled count
// h and returns what must be sent again; those stay in the window.
func (w *smWindow) resumed(h uint32) ([]smItem, error) {
	return w.resumedSeqs(h, func(int) {})
}

// resumedSeqs is resumed calling seen for each message acknowledged.
func (w *smWindow) resumedSeqs(h uint32, seen func(seq int)) ([]smItem, error) {
	if _, err := w.ackSeqs(h, seen); err != nil {
		return nil, err
	}
	return append([]smItem(nil), w.items...), nil
}

// reconnectCounters are shared by every ring client.
type reconnectCounters struct {
	redirects, reconnects, disconnects, resumed, resent, dispatch atomic.Int64
	failedWithH, resendsSaved, failedHBelowAck                    atomic.Int64

	mu    sync.Mutex
	times []time.Duration // per reconnect: from the stream's loss to ready
}

func (r *reconnectCounters) reconnected(d time.Duration) {
	r.mu.Lock()
	r.times = append(r.times, d)
	r.mu.Unlock()
}

// ringClient is one ring session in -reconnect mode.
type ringClient struct {
	cfg  *Config
	user int // account index
	ri   int // index in the ring (the tracker's sender number)
	tr   *Tracker
	cnt  *reconnectCounters
	next int // dispatcher to ask first, rotates

	mu   sync.Mutex
	c    *conn // nil while reconnecting
	win  smWindow
	smID string
	addr string // server (TCP) or URL of the current or last stream

	inH     uint32    // stanzas received on the current stream; reader only
	brokeAt time.Time // when the last stream was lost; reader only
	// ackDue is set while an <a/> waits for -ack-delay; the timer sends
	// the count the reader publishes in ackH then.
	ackDue atomic.Bool
	ackH   atomic.Uint32
}

func newRingClient(cfg *Config, user, ri int, tr *Tracker, c *conn, cnt *reconnectCounters) *ringClient {
	cl := &ringClient{cfg: cfg, user: user, ri: ri, tr: tr, cnt: cnt, c: c, smID: c.smID, addr: c.addr, next: user}
	// loginOne enabled stream management, then sent the initial presence.
	cl.win.push(smItem{data: []byte("<presence/>")})
	return cl
}

// acked records that the server acknowledged message seq.
func (cl *ringClient) acked(seq int) { cl.tr.Acked(cl.ri, seq) }

// resent records that a message goes out again on a new stream.
func (cl *ringClient) resent(it smItem) {
	if it.msg {
		cl.tr.Resent(cl.ri, it.seq)
	}
}

// writeLocked writes on the current stream (the carrier bounds it); a
// failure closes the stream so the reader notices and reconnects.
func (cl *ringClient) writeLocked(b []byte) {
	if cl.c == nil {
		return
	}
	if err := cl.c.Write(b); err != nil {
		slog.Debug("ring write failed", "user", cl.user, "err", err)
		cl.c.abort()
	}
}

// send records messages as unacknowledged and writes them with a request
// for an acknowledgement. While reconnecting they are only recorded: the
// new stream sends them.
func (cl *ringClient) send(msgs []smItem) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var b bytes.Buffer
	for _, m := range msgs {
		cl.win.push(m)
		b.Write(m.data)
	}
	b.WriteString("<r xmlns='" + nsSM + "'/>")
	cl.writeLocked(b.Bytes())
}

// unacked is the number of messages the server has not acknowledged.
func (cl *ringClient) unacked() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.win.messages()
}

// endStream sends </stream:stream> on the current stream; the server
// answers in kind and the reader sees the end.
func (cl *ringClient) endStream() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.c != nil && cl.c.transport != transportTCP {
		cl.c.Close() // <close/> or a terminate body: nothing comes after
		return
	}
	cl.writeLocked([]byte("</stream:stream>"))
}

// close ends the current stream.
func (cl *ringClient) close() {
	cl.mu.Lock()
	c := cl.c
	cl.c = nil
	cl.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// run reads the session's streams one after the other until done is
// closed, handing messages to onMsg, and reconnects after each.
func (cl *ringClient) run(ctx context.Context, done <-chan struct{}, onMsg func(*wire.Element)) {
	for {
		cl.mu.Lock()
		c := cl.c
		cl.mu.Unlock()
		if c == nil {
			return
		}
		redirect, err := cl.read(c, onMsg)
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		default:
		}
		cl.mu.Lock()
		if cl.c == c {
			cl.c = nil
		}
		cl.mu.Unlock()
		c.abort()
		cl.brokeAt = time.Now()
		cl.tr.Disturbed(cl.ri)
		if redirect != "" {
			cl.cnt.redirects.Add(1)
			slog.Debug("ring session redirected", "user", cl.user, "to", redirect)
		} else {
			cl.cnt.disconnects.Add(1)
			slog.Debug("ring session lost", "user", cl.user, "err", err)
		}
		if !cl.reconnect(ctx, done, redirect, onMsg) {
			return
		}
	}
}

// read handles one stream until it fails; it returns the see-other-host
// target when the server sent one.
func (cl *ringClient) read(c *conn, onMsg func(*wire.Element)) (string, error) {
	for {
		el, err := c.next()
		if err != nil {
			var se *streamErr
			if errors.As(err, &se) {
				return se.Host, se
			}
			return "", err
		}
		if se := asStreamErr(el); se != nil {
			return se.Host, se
		}
		switch el.LocalName() {
		case "message", "presence":
			cl.inH++
			cl.ackH.Store(cl.inH)
			onMsg(el)
		case "iq":
			cl.inH++
			cl.ackH.Store(cl.inH)
			if b := iqReply(el); b != nil {
				// A stanza the server counts like the messages (its <a h/>
				// and <failed h/> count it): it takes its place in the window.
				cl.mu.Lock()
				if cl.c == c {
					cl.win.push(smItem{data: b})
				}
				c.Write(b)
				cl.mu.Unlock()
			}
		case "r":
			if d := cl.cfg.AckDelay; d > 0 {
				// A lazy client: the answer goes later, with what was
				// received by then (more stays unacknowledged at the server).
				if cl.ackDue.CompareAndSwap(false, true) {
					time.AfterFunc(d, func() {
						cl.ackDue.Store(false)
						c.Write([]byte("<a xmlns='" + nsSM + "' h='" + strconv.FormatUint(uint64(cl.ackH.Load()), 10) + "'/>"))
					})
				}
				continue
			}
			c.Write([]byte("<a xmlns='" + nsSM + "' h='" + strconv.FormatUint(uint64(cl.inH), 10) + "'/>"))
		case "a":
			h, err := strconv.ParseUint(el.Attr("h"), 10, 32)
			if err != nil {
				return "", fmt.Errorf("bad <a/>: %s", el.String())
			}
			cl.mu.Lock()
			_, err = cl.win.ackSeqs(uint32(h), cl.acked)
			cl.mu.Unlock()
			if err != nil {
				slog.Warn("ring: bad acknowledgement", "user", cl.user, "err", err)
			}
		}
	}
}

// reconnect opens a new stream, following redirects, until it succeeds or
// the run ends; false when the run ended. Between failed attempts it waits
// a random time between half and all of a bound that doubles from 100 ms
// to 2 s (backoff with jitter, as mobile clients do): clients that failed
// together must not all come back at the same instant.
func (cl *ringClient) reconnect(ctx context.Context, done <-chan struct{}, redirect string, onMsg func(*wire.Element)) bool {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-done:
			return false
		case <-ctx.Done():
			return false
		default:
		}
		addr := redirect
		redirect = ""
		if addr == "" {
			addr = cl.pick(ctx)
		}
		err := cl.connect(ctx, addr, onMsg)
		if err == nil {
			cl.cnt.reconnects.Add(1)
			cl.cnt.reconnected(time.Since(cl.brokeAt))
			return true
		}
		var se *streamErr
		if errors.As(err, &se) && se.Host != "" {
			cl.cnt.redirects.Add(1)
			if cl.transport() != transportBOSH { // BOSH has no redirect to follow: ask again
				redirect = se.Host
			}
			continue
		}
		slog.Debug("ring reconnect failed", "user", cl.user, "addr", addr, "err", err)
		select {
		case <-done:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(jittered(backoff)):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// jittered returns a random wait in [d/2, d): spread out, never none.
func jittered(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2)
}

// transport is the session's transport (fixed for the run).
func (cl *ringClient) transport() string { return cl.cfg.transportOf(cl.user) }

// pick chooses where to connect after a disconnect: the dispatcher's
// answer, else the address after the one that failed (-servers for TCP,
// -http for WebSocket and BOSH).
func (cl *ringClient) pick(ctx context.Context) string {
	cl.mu.Lock()
	last := cl.addr
	cl.mu.Unlock()
	tr := cl.transport()
	for k := range cl.cfg.Dispatch {
		base := cl.cfg.Dispatch[(cl.next+k)%len(cl.cfg.Dispatch)]
		addr, err := askDispatcher(ctx, base, cl.cfg.Timeout, tr)
		if err == nil {
			cl.cnt.dispatch.Add(1)
			cl.next += k + 1
			return addr
		}
		slog.Debug("dispatcher failed", "url", base, "err", err)
	}
	if tr == transportTCP {
		return nextServer(cl.cfg.Servers, last)
	}
	return nextServer(cl.cfg.HTTP, last)
}

// nextServer returns the address after last in servers (the first when
// last is not among them).
func nextServer(servers []string, last string) string {
	for i, s := range servers {
		if s == last {
			return servers[(i+1)%len(servers)]
		}
	}
	return servers[0]
}

// errDispatchBusy means every node was over its limit (503).
var errDispatchBusy = errors.New("aviary-bench: dispatcher: every node is over its limit")

// askDispatcher asks GET base/dispatch?transport=… for a node and returns
// its host:port (tcp) or the endpoint's URL (websocket, bosh).
func askDispatcher(ctx context.Context, base string, timeout time.Duration, transport string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, 5*time.Second))
	defer cancel()
	q := "c2s"
	if transport == transportWebSocket || transport == transportBOSH {
		q = transport
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/dispatch?transport="+q, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		return "", errDispatchBusy
	default:
		return "", fmt.Errorf("dispatcher: %s", resp.Status)
	}
	var a struct {
		Host string `json:"host"`
		Port int    `json:"port"`
		URL  string `json:"url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return "", fmt.Errorf("dispatcher: %w", err)
	}
	if q != "c2s" {
		if a.URL == "" {
			return "", errors.New("dispatcher: no url in the answer")
		}
		return a.URL, nil
	}
	if a.Host == "" || a.Port == 0 {
		return "", errors.New("dispatcher: no host in the answer")
	}
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)), nil
}

// connect opens a stream to addr, logs in and either resumes the old
// session or binds a new one, then sends what the server never
// acknowledged.
func (cl *ringClient) connect(ctx context.Context, addr string, onMsg func(*wire.Element)) error {
	run := ctx
	ctx, cancel := context.WithTimeout(ctx, cl.cfg.Timeout)
	defer cancel()
	o := cl.cfg.dial(cl.user)
	o.Addr = addr
	c, err := dial(ctx, o)
	if err != nil {
		return err
	}
	// The end of the run closes the stream, wherever it is blocked.
	context.AfterFunc(run, c.abort)
	ok := false
	defer func() {
		if !ok {
			c.abort()
		}
	}()
	cl.mu.Lock()
	cl.addr = addr
	previd := cl.smID
	cl.mu.Unlock()
	if err := c.login(o, cl.cfg.user(cl.user), cl.cfg.Password); err != nil {
		return err
	}
	if previd != "" {
		if err := c.writeString("<resume xmlns='" + nsSM + "' previd='" + previd + "' h='" + strconv.FormatUint(uint64(cl.inH), 10) + "'/>"); err != nil {
			return err
		}
		el, err := c.await(func(el *wire.Element) bool {
			n := el.LocalName()
			return el.NS() == nsSM && (n == "resumed" || n == "failed")
		}, onMsg)
		if err != nil {
			return err
		}
		if el.LocalName() == "resumed" {
			h, err := strconv.ParseUint(el.Attr("h"), 10, 32)
			if err != nil {
				return fmt.Errorf("bad <resumed/>: %s", el.String())
			}
			cl.mu.Lock()
			again, err := cl.win.resumedSeqs(uint32(h), cl.acked)
			if err == nil {
				var b bytes.Buffer
				for _, it := range again {
					b.Write(it.data)
					cl.resent(it)
				}
				b.WriteString("<r xmlns='" + nsSM + "'/>")
				c.car.setDeadline(time.Time{})
				c.ready(cl.cfg)
				cl.c = c
				cl.writeLocked(b.Bytes())
				cl.cnt.resent.Add(int64(len(again)))
			}
			cl.mu.Unlock()
			if err != nil {
				return err
			}
			cl.cnt.resumed.Add(1)
			ok = true
			return nil
		}
		// <failed/>: the session is gone (another node, or it ended).
		// With h the server says how many of its stanzas it had: those
		// are acknowledged, only the rest is sent again.
		if a := el.Attr("h"); a != "" {
			h, err := strconv.ParseUint(a, 10, 32)
			if err != nil {
				return fmt.Errorf("bad <failed/>: %s", el.String())
			}
			cl.mu.Lock()
			below := int32(uint32(h)-cl.win.h) < 0
			n, err := cl.win.ackSeqs(uint32(h), cl.acked)
			cl.mu.Unlock()
			if below {
				cl.cnt.failedHBelowAck.Add(1)
			}
			if err != nil {
				slog.Warn("ring: bad count in <failed/>", "user", cl.user, "err", err)
			} else {
				cl.cnt.failedWithH.Add(1)
				cl.cnt.resendsSaved.Add(int64(n))
			}
		}
	}
	// A message to the bound full JID can come before the bind result.
	c.other = onMsg
	if err := c.bind(o.Resource); err != nil {
		return err
	}
	if err := c.enableSM(onMsg); err != nil {
		return err
	}
	cl.inH = 0
	cl.ackH.Store(0)
	cl.mu.Lock()
	cl.smID = c.smID
	again := cl.win.restart()
	var b bytes.Buffer
	cl.win.push(smItem{data: []byte("<presence/>")})
	b.WriteString("<presence/>")
	for _, it := range again {
		cl.win.push(it)
		b.Write(it.data)
		cl.resent(it)
	}
	b.WriteString("<r xmlns='" + nsSM + "'/>")
	c.car.setDeadline(time.Time{})
	c.ready(cl.cfg)
	cl.c = c
	cl.writeLocked(b.Bytes())
	cl.mu.Unlock()
	cl.cnt.resent.Add(int64(len(again)))
	ok = true
	return nil
}

// enableSM enables resumable stream management and waits for <enabled/>;
// stanzas that arrive first go to other (nil: dropped, IQs answered).
func (c *conn) enableSM(other func(*wire.Element)) error {
	if err := c.writeString("<enable xmlns='" + nsSM + "' resume='true'/>"); err != nil {
		return err
	}
	el, err := c.await(func(el *wire.Element) bool {
		n := el.LocalName()
		return el.NS() == nsSM && (n == "enabled" || n == "failed")
	}, other)
	if err != nil {
		return fmt.Errorf("sm enable: %w", err)
	}
	if el.LocalName() != "enabled" {
		return fmt.Errorf("sm enable: %s", el.String())
	}
	c.smID = el.Attr("id")
	return nil
}

// await reads until match accepts an element. IQ requests are answered,
// messages and presences go to other (nil: dropped), stream errors end
// the wait.
func (c *conn) await(match func(*wire.Element) bool, other func(*wire.Element)) (*wire.Element, error) {
	for {
		el, err := c.next()
		if err != nil {
			return nil, err
		}
		if se := asStreamErr(el); se != nil {
			return nil, se
		}
		if match(el) {
			return el, nil
		}
		switch el.LocalName() {
		case "iq":
			c.answerIQ(el)
		case "message", "presence":
			if other != nil {
				other(el)
			}
		}
	}
}
