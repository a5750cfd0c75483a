package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// XEP-0045 namespaces the room workload speaks.
const (
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = "http://jabber.org/protocol/muc#user"
	nsMUCOwner = "http://jabber.org/protocol/muc#owner"
	nsXData    = "jabber:x:data"
)

// MUCStats adds the room and its joining to the traffic figures. In the
// embedded Counts a unit is one delivery, (sender, seq, receiver): Sent
// is the deliveries expected (messages sent × occupants, the sender's own
// reflection included), Lost those that never came.
type MUCStats struct {
	TrafficStats
	Room        string  `json:"room"`
	Occupants   int     `json:"occupants"` // sessions that were asked to join
	Joined      int     `json:"joined"`    // got their self-presence (110)
	JoinSeconds float64 `json:"join_seconds"`
	// Messages is what the occupants sent to the room.
	Messages int `json:"messages"`
	// JoinErrors counts join refusals by condition.
	JoinErrors []string `json:"join_errors,omitempty"`
	// BounceErrors counts the room's refusals of messages by condition.
	BounceErrors []string `json:"bounce_errors,omitempty"`
}

// roomJID is the bare JID of the workload's room.
func (c *Config) roomJID() string {
	svc := c.MUCService
	if svc == "" {
		svc = "conference." + c.Domain
	}
	return c.Room + "@" + svc
}

// roomState is what the readers need once the room is full: the tracker
// and each session's occupant index (-1: not in the room).
type roomState struct {
	tr  *RoomTracker
	occ []int
}

// runMUC puts every session in one room, then each occupant sends
// cfg.Messages groupchat messages (at most cfg.InFlight whose reflection
// has not come back, -interval apart, the occupants' first messages
// spread over one interval), and every occupant records every message.
func runMUC(ctx context.Context, cfg *Config, all []*conn) MUCStats {
	var live []*conn
	for _, c := range all {
		if c != nil {
			live = append(live, c)
		}
	}
	room := cfg.roomJID()
	st := MUCStats{Room: room, Occupants: len(live)}
	if len(live) == 0 {
		st.ReadErrs = []string{"no session logged in"}
		return st
	}
	// The first session makes the room (and unlocks it when the service
	// made it locked, status 201) before the others come in.
	if err := joinFirst(ctx, cfg, live[0], room); err != nil {
		st.JoinErrors = []string{err.Error()}
		return st
	}

	joined := make([]atomic.Bool, len(live))
	joined[0].Store(true)
	var njoined atomic.Int64
	njoined.Store(1)
	var joinErrs, bounceErrs errorSet
	var state atomic.Pointer[roomState]
	var wins []window
	var lastRecv atomic.Int64
	done := make(chan struct{})
	var readErrs errorSet
	var rwg sync.WaitGroup
	for ri, c := range live {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			readLoop(c, done, &readErrs, func(el *wire.Element) {
				if wire.BareJID(el.From()) != room {
					return
				}
				if el.LocalName() == "presence" {
					switch {
					case el.Type() == "error":
						joinErrs.add(fmt.Errorf("join refused: %s", stanzaCondition(el)))
					case el.Type() == "" && isSelfPresence(el) && !joined[ri].Swap(true):
						njoined.Add(1)
					}
					return
				}
				s := state.Load()
				if s == nil || el.LocalName() != "message" || s.occ[ri] < 0 {
					return
				}
				p, err := parsePayload(bodyOf(el))
				if err != nil {
					return
				}
				me := s.occ[ri]
				if el.Type() == "error" {
					bounceErrs.add(fmt.Errorf("message refused: %s", stanzaCondition(el)))
					if s.tr.Bounce(me, p) == Bounced {
						wins[me].release()
					}
					return
				}
				t := now()
				if s.tr.Record(me, p, t-p.Sent) == Fresh {
					lastRecv.Store(int64(t))
					if p.Sender == me {
						wins[me].release() // the room reflected it: the next may go
					}
				}
			})
		}()
	}

	joinStart := time.Now()
	forEach(len(live)-1, cfg.Concurrency, func(i int) {
		c := live[i+1]
		c.writeString(joinPresence(room, nickOf(c)))
	})
	deadline := time.Now().Add(cfg.SubscribeTimeout)
	for int(njoined.Load()) < len(live) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	st.JoinSeconds = time.Since(joinStart).Seconds()
	st.JoinErrors = joinErrs.list()

	// Only the occupants that are in the room send and receive.
	occ := make([]int, len(live))
	var occupants []*conn
	for ri := range live {
		occ[ri] = -1
		if joined[ri].Load() {
			occ[ri] = len(occupants)
			occupants = append(occupants, live[ri])
		}
	}
	n := len(occupants)
	st.Joined = n
	slog.Info("room joined", "room", room, "occupants", n, "of", len(live), "seconds", st.JoinSeconds)
	tr := NewRoomTracker(n, cfg.Messages)
	wins = make([]window, n)
	for i := range wins {
		wins[i] = make(window, max(cfg.InFlight, 1))
	}
	state.Store(&roomState{tr: tr, occ: occ})

	start := now()
	var stalled atomic.Int64
	var swg sync.WaitGroup
	for oi, c := range occupants {
		swg.Add(1)
		go func() {
			defer swg.Done()
			// Spread the first messages over one interval, so the room
			// sees a steady rate rather than every occupant at once.
			delay := cfg.Interval * time.Duration(oi) / time.Duration(n)
			plan := sendPlan{to: room, kind: "groupchat", delay: delay, single: true}
			if !sendRing(ctx, cfg, c, nil, oi, plan, wins[oi], tr) {
				stalled.Add(1)
			}
		}()
	}
	swg.Wait()
	waitDrained(ctx, tr, cfg.Drain)
	close(done)

	st.Counts = tr.Counts()
	st.Messages = tr.Messages()
	st.Stalled = int(stalled.Load())
	end := time.Duration(lastRecv.Load())
	if end > start {
		st.Seconds = (end - start).Seconds()
		st.PerSec = float64(st.Received) / st.Seconds
	}
	st.Latency = summarize(tr.Latencies())
	st.LostSample = tr.Missing(20)
	st.UnexpectedSample = tr.UnexpectedSample()
	st.ReadErrs = readErrs.list()
	st.BounceErrors = bounceErrs.list()
	st.Receivers = n
	return st
}

// nickOf is a session's nickname in the room: its account name, unique.
func nickOf(c *conn) string {
	user, _, _ := strings.Cut(c.jid, "@")
	return user
}

// joinPresence asks to enter room as nick without history (history of
// an earlier run would only be counted stale).
func joinPresence(room, nick string) string {
	var b bytes.Buffer
	b.WriteString("<presence")
	writeAttrs(&b, "to", room+"/"+nick)
	b.WriteString("><x xmlns='" + nsMUC + "'><history maxstanzas='0'/></x></presence>")
	return b.String()
}

// joinFirst enters the room from c and waits for its self-presence; a
// room the service made locked (201) is accepted as an instant room
// (XEP-0045 §10.1.2) before the others join.
func joinFirst(ctx context.Context, cfg *Config, c *conn, room string) error {
	if err := c.writeString(joinPresence(room, nickOf(c))); err != nil {
		return err
	}
	deadline := time.Now().Add(cfg.Timeout)
	c.car.setDeadline(deadline)
	defer c.car.setDeadline(time.Time{})
	for ctx.Err() == nil {
		el, err := c.next()
		if err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
		if el.LocalName() == "iq" {
			c.answerIQ(el)
			continue
		}
		if el.LocalName() != "presence" || wire.BareJID(el.From()) != room {
			continue
		}
		if el.Type() == "error" {
			return fmt.Errorf("join %s refused: %s", room, stanzaCondition(el))
		}
		if !isSelfPresence(el) {
			continue
		}
		if !hasStatus(el, 201) {
			return nil
		}
		var b bytes.Buffer
		b.WriteString("<iq type='set' id='instant1'")
		writeAttrs(&b, "to", room)
		b.WriteString("><query xmlns='" + nsMUCOwner + "'><x xmlns='" + nsXData + "' type='submit'/></query></iq>")
		if err := c.Write(b.Bytes()); err != nil {
			return err
		}
		res, err := c.waitIQ("instant1")
		if err != nil {
			return fmt.Errorf("unlock %s: %w", room, err)
		}
		if res.Type() != "result" {
			return fmt.Errorf("unlock %s: %s", room, stanzaCondition(res))
		}
		return nil
	}
	return ctx.Err()
}

// isSelfPresence reports whether a room presence is the receiver's own
// (status 110).
func isSelfPresence(el *wire.Element) bool { return hasStatus(el, 110) }

// hasStatus reports whether a room presence carries a muc#user status code.
func hasStatus(el *wire.Element, code int) bool {
	x := el.Child("x", nsMUCUser)
	if x == nil {
		return false
	}
	want := strconv.Itoa(code)
	for _, s := range x.ChildrenNamed("status", "") {
		if s.Attr("code") == want {
			return true
		}
	}
	return false
}

// stanzaCondition names the defined condition of an error stanza.
func stanzaCondition(el *wire.Element) string {
	if e := el.Child("error", ""); e != nil {
		for _, ch := range e.Children {
			if ch.NS() == nsStanzas && ch.LocalName() != "text" {
				return ch.LocalName()
			}
		}
	}
	return "error without a condition"
}

// RoomTracker keeps a room's bookkeeping: every message a sender sends
// should reach every occupant once, the sender's reflection included
// (XEP-0045 §7.4), so the unit is a delivery (sender, seq, receiver):
// expected = messages sent × occupants, lost = expected − unique
// deliveries − deliveries of messages the room refused. Safe for
// concurrent use.
type RoomTracker struct {
	mu      sync.Mutex
	n       int // occupants, each a sender and a receiver
	perSend int
	run     string
	sent    []int    // highest sequence sent per sender
	got     []int32  // unique deliveries per message (sender*perSend + seq-1)
	seen    []uint64 // bitmap over (message, receiver)
	bounced []bool   // per message: came back to its sender as an error
	fresh   int
	dups    int
	unexp   int
	unexpS  []string // a sample: sender:seq>receiver
	stale   int
	lat     []time.Duration
}

// NewRoomTracker tracks a room of n occupants sending up to perSender
// messages each in this process's run.
func NewRoomTracker(n, perSender int) *RoomTracker {
	msgs := n * perSender
	return &RoomTracker{n: n, perSend: perSender, run: runID, sent: make([]int, n),
		got: make([]int32, msgs), seen: make([]uint64, (msgs*n+63)/64), bounced: make([]bool, msgs),
		lat: make([]time.Duration, 0, msgs*n)}
}

// Sent records that sender sent sequence seq to the room.
func (t *RoomTracker) Sent(sender, seq int) {
	t.mu.Lock()
	if seq > t.sent[sender] {
		t.sent[sender] = seq
	}
	t.mu.Unlock()
}

func (t *RoomTracker) valid(p payload) bool {
	return p.Sender >= 0 && p.Sender < t.n && p.Seq >= 1 && p.Seq <= t.perSend
}

func (t *RoomTracker) unexpected(receiver int, p payload) Outcome {
	t.unexp++
	if len(t.unexpS) < 20 {
		t.unexpS = append(t.unexpS, strconv.Itoa(p.Sender)+":"+strconv.Itoa(p.Seq)+">"+strconv.Itoa(receiver))
	}
	return Unexpected
}

// Record notes that receiver got p from the room with the given latency.
func (t *RoomTracker) Record(receiver int, p payload, latency time.Duration) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Run != t.run {
		t.stale++
		return Stale
	}
	if !t.valid(p) || receiver < 0 || receiver >= t.n {
		return t.unexpected(receiver, p)
	}
	m := p.Sender*t.perSend + p.Seq - 1
	bit := m*t.n + receiver
	if t.seen[bit/64]&(1<<(bit%64)) != 0 {
		t.dups++
		return Duplicate
	}
	t.seen[bit/64] |= 1 << (bit % 64)
	t.got[m]++
	t.fresh++
	t.lat = append(t.lat, latency)
	return Fresh
}

// Bounce notes a message that came back to receiver as an error (the
// room refused it, e.g. past its rate limit): its deliveries that did not
// happen are bounced, not lost. One that reaches another occupant than
// its sender is Unexpected.
func (t *RoomTracker) Bounce(receiver int, p payload) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Run != t.run {
		t.stale++
		return Stale
	}
	if !t.valid(p) || p.Sender != receiver {
		return t.unexpected(receiver, p)
	}
	m := p.Sender*t.perSend + p.Seq - 1
	if t.bounced[m] {
		return Duplicate
	}
	t.bounced[m] = true
	return Bounced
}

// Counts returns the tally so far, in deliveries.
func (t *RoomTracker) Counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := Counts{Received: t.fresh, Duplicates: t.dups, Unexpected: t.unexp, Stale: t.stale}
	for sender, top := range t.sent {
		c.Sent += top * t.n
		for seq := 1; seq <= top; seq++ {
			if m := sender*t.perSend + seq - 1; t.bounced[m] {
				c.Bounced += t.n - int(t.got[m])
			}
		}
	}
	c.Lost = c.Sent - c.Received - c.Bounced
	return c
}

// Messages returns how many messages the occupants sent.
func (t *RoomTracker) Messages() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	total := 0
	for _, s := range t.sent {
		total += s
	}
	return total
}

// Missing returns up to k deliveries that never happened (and were not
// bounced) as "sender:seq>receiver", occupant indexes.
func (t *RoomTracker) Missing(k int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for sender, top := range t.sent {
		for seq := 1; seq <= top; seq++ {
			m := sender*t.perSend + seq - 1
			if t.bounced[m] || int(t.got[m]) == t.n {
				continue
			}
			for r := 0; r < t.n && len(out) < k; r++ {
				if bit := m*t.n + r; t.seen[bit/64]&(1<<(bit%64)) == 0 {
					out = append(out, strconv.Itoa(sender)+":"+strconv.Itoa(seq)+">"+strconv.Itoa(r))
				}
			}
		}
	}
	return out
}

// UnexpectedSample returns up to 20 unexpected receipts as
// "sender:seq>receiver".
func (t *RoomTracker) UnexpectedSample() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.unexpS...)
}

// Latencies returns a copy of the recorded latencies.
func (t *RoomTracker) Latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Duration(nil), t.lat...)
}
