package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// clockOrigin is the zero of the timestamps carried in payloads; durations
// since it are monotonic.
var clockOrigin = time.Now()

func now() time.Duration { return time.Since(clockOrigin) }

// TrafficStats is the result of a ring or broadcast run.
type TrafficStats struct {
	Counts
	Stalled int     `json:"stalled_senders"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"messages_per_second"`
	Latency Latency `json:"latency"`
	// Undisturbed is the latency of messages between clients that never
	// lost their stream during the run (-reconnect).
	Undisturbed *Latency `json:"undisturbed_latency,omitempty"`
	ReadErrs    []string `json:"read_errors,omitempty"`
	Receivers   int      `json:"receivers,omitempty"`
	// LostSample names up to 20 lost messages as "sender:seq".
	LostSample []string `json:"lost_sample,omitempty"`
	// UnexpectedSample names up to 20 messages that reached another
	// receiver than their sender's as "sender:seq>receiver".
	UnexpectedSample []string `json:"unexpected_sample,omitempty"`
	// Reconnect has the -reconnect figures (ring only).
	Reconnect *ReconnectStats `json:"reconnect,omitempty"`
}

// window bounds the messages one sender has in flight.
type window chan struct{}

func (w window) release() {
	select {
	case <-w:
	default:
	}
}

// readLoop reads stanzas from c until it fails or done is closed, handing
// messages and presences to fn and answering IQs.
func readLoop(c *conn, done <-chan struct{}, errs *errorSet, fn func(el *wire.Element)) {
	for {
		el, err := c.next()
		if err != nil {
			select {
			case <-done:
			default:
				errs.add(err)
			}
			return
		}
		switch el.LocalName() {
		case "iq":
			c.answerIQ(el)
		default:
			fn(el)
		}
	}
}

// bodyOf returns the text of a message's body.
func bodyOf(el *wire.Element) string {
	for _, ch := range el.Children {
		if ch.LocalName() == "body" {
			return ch.AllText()
		}
	}
	return ""
}

// ringNext returns the receiver of sender i in a ring of n.
func ringNext(i, n int) int { return (i + 1) % n }

// runRing sends cfg.Messages messages from each session to the next one,
// cfg.InFlight at a time per sender, and counts what arrives.
func runRing(ctx context.Context, cfg *Config, all []*conn) TrafficStats {
	var live []*conn
	var users []int // account index of each live session
	for i, c := range all {
		if c != nil {
			live = append(live, c)
			users = append(users, i)
		}
	}
	n := len(live)
	var st TrafficStats
	if n < 2 {
		st.ReadErrs = []string{"fewer than two sessions logged in"}
		return st
	}
	// expect[i] is the ring index sender i writes to, -1 for none.
	expect := make([]int, n)
	for i := range expect {
		expect[i] = ringNext(i, n)
	}
	if len(cfg.Flows) > 0 {
		index := map[int]int{} // account → ring index
		for ri, u := range users {
			index[u] = ri
		}
		for ri, u := range users {
			expect[ri] = -1
			if to, ok := index[u+1]; ok && u%2 == 0 {
				expect[ri] = to
			}
		}
	}
	tr := NewTracker(n, cfg.Messages, expect)
	wins := make([]window, n)
	for i := range wins {
		wins[i] = make(window, max(cfg.InFlight, 1))
	}
	var lastRecv atomic.Int64
	done := make(chan struct{})
	var readErrs errorSet
	var rwg sync.WaitGroup
	var clients []*ringClient
	var cnt reconnectCounters
	// rctx ends the reconnecting clients' dials and streams at the end.
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	for ri, c := range live {
		onMsg := func(el *wire.Element) {
			if el.LocalName() != "message" {
				return
			}
			p, err := parsePayload(bodyOf(el))
			if err != nil {
				return
			}
			if el.Type() == "error" {
				if tr.Bounce(ri, p) == Bounced {
					wins[p.Sender].release()
				}
				return
			}
			t := now()
			if tr.Record(ri, p, t-p.Sent) == Fresh {
				wins[p.Sender].release()
				lastRecv.Store(int64(t))
			}
		}
		rwg.Add(1)
		if cfg.Reconnect {
			cl := newRingClient(cfg, users[ri], ri, tr, c, &cnt)
			clients = append(clients, cl)
			go func() {
				defer rwg.Done()
				cl.run(rctx, done, onMsg)
			}()
			continue
		}
		go func() {
			defer rwg.Done()
			readLoop(c, done, &readErrs, onMsg)
		}()
	}

	if cfg.StartFile != "" {
		slog.Info("ring waiting", "sessions", n, "for", cfg.StartFile)
	wait:
		for {
			if _, err := os.Stat(cfg.StartFile); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				break wait // the ring ends at once, as at -max-time
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	start := now()
	slog.Info("ring started", "sessions", n)
	var stalled atomic.Int64
	var swg sync.WaitGroup
	for si, c := range live {
		swg.Add(1)
		var cl *ringClient
		if clients != nil {
			cl = clients[si]
		}
		to := expect[si]
		if to < 0 {
			swg.Done() // a receiver only
			continue
		}
		go func() {
			defer swg.Done()
			if !sendRing(ctx, cfg, c, cl, si, sendPlan{to: live[to].jid, kind: "chat"}, wins[si], tr) {
				stalled.Add(1)
			}
		}()
	}
	swg.Wait()
	waitDrained(ctx, tr, cfg.Drain)
	close(done)
	if clients != nil {
		// End the streams in use now (not the first ones, which the caller
		// closes) cleanly: </stream:stream> first, so the server closes the
		// sessions instead of keeping them detached for resumption, then
		// whatever is left (a reconnect under way) at once.
		unacked := 0
		for _, cl := range clients {
			unacked += cl.unacked()
			cl.endStream()
		}
		readers := make(chan struct{})
		go func() { rwg.Wait(); close(readers) }()
		select {
		case <-readers:
		case <-time.After(5 * time.Second):
		}
		rcancel()
		for _, cl := range clients {
			cl.close()
		}
		<-readers
		c := tr.Counts()
		cnt.mu.Lock()
		back := summarize(cnt.times)
		cnt.mu.Unlock()
		st.Reconnect = &ReconnectStats{
			Sent: c.Sent, Delivered: c.Received, Redelivered: c.Duplicates, RedeliveredByServer: c.ServerDuplicates, Bounced: c.Bounced, Lost: c.AckedLost, NeverAcked: c.Lost - c.AckedLost,
			Redirects: int(cnt.redirects.Load()), Reconnects: int(cnt.reconnects.Load()),
			Disconnects: int(cnt.disconnects.Load()), Resumed: int(cnt.resumed.Load()),
			Resent: int(cnt.resent.Load()), DispatchAsked: int(cnt.dispatch.Load()), UnackedAtEnd: unacked,
			FailedWithH: int(cnt.failedWithH.Load()), ResendsSaved: int(cnt.resendsSaved.Load()), FailedHBelowAck: int(cnt.failedHBelowAck.Load()),
			ReconnectP50: back.P50, ReconnectP99: back.P99, ReconnectMax: back.Max,
			Transports: map[string]int{},
		}
		for _, u := range users {
			st.Reconnect.Transports[cfg.transportOf(u)]++
		}
	}
	c := tr.Counts()
	st.Counts = c
	st.Stalled = int(stalled.Load())
	end := time.Duration(lastRecv.Load())
	if end > start {
		st.Seconds = (end - start).Seconds()
		st.PerSec = float64(c.Received) / st.Seconds
	}
	st.Latency = summarize(tr.Latencies())
	if cfg.Reconnect {
		u := summarize(tr.UndisturbedLatencies())
		st.Undisturbed = &u
	}
	st.LostSample = tr.Missing(20)
	st.UnexpectedSample = tr.UnexpectedSample()
	st.ReadErrs = readErrs.list()
	st.Receivers = n
	return st
}

// sendPlan says where and how one sender's messages go.
type sendPlan struct {
	to    string
	kind  string        // message type: chat (ring), groupchat (room)
	delay time.Duration // before the first message
	// single writes one message per -interval (a set rate) instead of
	// every free window slot at once.
	single bool
}

// sendRing sends one sender's messages as plan says; false means it
// stalled (a window slot never came back within the drain time).
//
// With cl (-reconnect) the messages go through the stream-management
// client, which keeps them until the server acknowledges them.
func sendRing(ctx context.Context, cfg *Config, c *conn, cl *ringClient, si int, plan sendPlan, w window, tr sendCounter) bool {
	var b bytes.Buffer
	prefix := "<message type='" + plan.kind + "' to='" + plan.to + "' id='"
	seq := 1
	var pause <-chan time.Time
	if plan.delay > 0 {
		pause = time.After(plan.delay)
	}
	for seq <= cfg.Messages {
		if pause != nil {
			select {
			case <-pause:
			case <-cfg.Stop:
				return true
			case <-ctx.Done():
				return false
			}
		}
		// Block for one slot, then take whatever else is free, and send the
		// batch in one write.
		select {
		case w <- struct{}{}:
		case <-cfg.Stop:
			return true
		case <-ctx.Done():
			return false
		case <-time.After(cfg.Drain):
			return false
		}
		batch := 1
	more:
		for seq+batch <= cfg.Messages && !(plan.single && cfg.Interval > 0) {
			select {
			case w <- struct{}{}:
				batch++
			default:
				break more
			}
		}
		b.Reset()
		var msgs []smItem
		for k := 0; k < batch; k++ {
			p := payload{Run: runID, Sender: si, Seq: seq, Sent: now()}
			tr.Sent(si, seq)
			start := b.Len()
			b.WriteString(prefix)
			b.WriteString(strconv.Itoa(seq))
			b.WriteString("'><body>")
			b.WriteString(p.String())
			b.WriteString("</body>")
			if cl != nil {
				// With -reconnect the message carries a XEP-0359 origin-id,
				// as the clients that resend after a reconnection do
				// (Conversations, Dino, Gajim, Monal): the server drops a
				// resent copy a recipient's session already has by it.
				b.WriteString("<origin-id xmlns='urn:xmpp:sid:0' id='")
				b.WriteString(runID)
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(si))
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(seq))
				b.WriteString("'/>")
			}
			b.WriteString("</message>")
			if cl != nil {
				msgs = append(msgs, smItem{data: bytes.Clone(b.Bytes()[start:]), msg: true, seq: seq})
			}
			seq++
		}
		if cl != nil {
			cl.send(msgs)
		} else if err := c.Write(b.Bytes()); err != nil {
			slog.Debug("ring send failed", "sender", si, "err", err)
			return false
		}
		if cfg.Interval > 0 {
			pause = time.After(cfg.Interval)
		}
	}
	return true
}

// sendCounter is told of every message a sender writes (Tracker,
// RoomTracker).
type sendCounter interface{ Sent(sender, seq int) }

// waitDrained polls until every sent message arrived or the drain time
// passes.
func waitDrained(ctx context.Context, tr interface{ Counts() Counts }, drain time.Duration) {
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c := tr.Counts()
		if c.Received+c.Bounced >= c.Sent {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
