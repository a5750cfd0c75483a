package c2s

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/router"
	"github.com/aviary-im/aviary/wire"
)

// custodyRouter holds the acknowledgement of every stanza it routes until
// release, and records released receipts.
type custodyRouter struct {
	nopRouter
	mu       sync.Mutex
	holds    []func()
	released []*router.Receipt
}

func (r *custodyRouter) FromClient(ctx context.Context, s router.Session, el *wire.Element) {
	if done := s.(router.AckHolder).HoldAck(); done != nil {
		r.mu.Lock()
		r.holds = append(r.holds, done)
		r.mu.Unlock()
	}
}

func (r *custodyRouter) Release(rcs []*router.Receipt) {
	r.mu.Lock()
	r.released = append(r.released, rcs...)
	r.mu.Unlock()
}

// release runs the first n holds.
func (r *custodyRouter) release(n int) {
	r.mu.Lock()
	hs := r.holds[:n]
	r.holds = r.holds[n:]
	r.mu.Unlock()
	for _, h := range hs {
		h()
	}
}

func (r *custodyRouter) releasedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.released)
}

func custodySession(t *testing.T) (*Session, *fakeTransport, *custodyRouter) {
	t.Helper()
	cr := &custodyRouter{}
	srv := NewServer(Deps{Domain: conf.Default().Domain, C2S: conf.Default().C2S, DatabaseTimeout: conf.Default().Database.Timeout, Router: cr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ft := newFakeTransport()
	s := srv.newSession(context.Background(), ft)
	j := wire.JIDOf("alice@localhost/r")
	s.full.Store(&j)
	t.Cleanup(func() { s.closeWith(ReasonShutdown, "", "") })
	return s, ft, cr
}

func waitAcks(t *testing.T, ft *fakeTransport, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		for _, a := range ft.writtenNamed("a") {
			got = append(got, a.Attr("h"))
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("acknowledgements written: h=%v, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAckHeldUntilSafe: <r/> is answered only once every stanza it
// covers is safe (the router released its hold), each request in order
// with the count it was asked at.
func TestAckHeldUntilSafe(t *testing.T) {
	s, ft, cr := custodySession(t)
	s.smEnabled = true
	msg := func() *wire.Element {
		return wire.New("message", "to", "bob@localhost", "type", "chat").Append(wire.New("body").SetText("x"))
	}
	s.inbound(msg())
	s.inbound(msg())
	s.handleSM(wire.NewNS("r", wire.NSSM))
	s.inbound(msg())
	s.handleSM(wire.NewNS("r", wire.NSSM))
	waitAcks(t, ft) // nothing yet
	cr.release(1)
	waitAcks(t, ft) // stanza 2 still held
	cr.release(1)
	waitAcks(t, ft, "2")
	cr.release(1)
	waitAcks(t, ft, "2", "3")
	s.handleSM(wire.NewNS("r", wire.NSSM))
	waitAcks(t, ft, "2", "3", "3")
}

// TestReceiptsReleased: a receipt goes back to the router when the client
// acknowledges its stanza, or without stream management once written.
func TestReceiptsReleased(t *testing.T) {
	msg := wire.New("message", "to", "alice@localhost/r", "type", "chat").Append(wire.New("body").SetText("x"))

	s, ft, cr := custodySession(t)
	if !s.SendReceipted(msg, router.RemoteReceipt("node2", 1)) {
		t.Fatal("refused")
	}
	deadline := time.Now().Add(5 * time.Second)
	for cr.releasedCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("receipt of a written stanza (no stream management) not released")
		}
		time.Sleep(time.Millisecond)
	}

	s, ft, cr = custodySession(t)
	s.enableSM(wire.NewNS("enable", wire.NSSM), nil, nil)
	if !s.SendReceipted(msg, router.RemoteReceipt("node2", 2)) {
		t.Fatal("refused")
	}
	deadline = time.Now().Add(5 * time.Second)
	for len(ft.writtenNamed("message")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("not written")
		}
		time.Sleep(time.Millisecond)
	}
	if n := cr.releasedCount(); n != 0 {
		t.Fatalf("%d receipts released before the client acknowledged", n)
	}
	s.handleSM(wire.NewNS("a", wire.NSSM).SetAttr("h", "1"))
	if n := cr.releasedCount(); n != 1 {
		t.Fatalf("%d receipts released after <a h='1'/>, want 1", n)
	}
	// What is not acknowledged goes back to Unbind with its receipt.
	s.SendReceipted(msg, router.RemoteReceipt("node2", 3))
	s.mu.Lock()
	for len(s.queue) > 0 || s.writing {
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
		s.mu.Lock()
	}
	unsent := s.unsentLocked()
	s.mu.Unlock()
	if len(unsent) != 1 || unsent[0].Receipt == nil || unsent[0].Receipt.Seq() != 3 {
		t.Fatalf("unsent = %+v, want the unacknowledged message with its receipt", unsent)
	}
}

// trackingRouter is a custodyRouter that records what crash safety's
// resume verdicts need (ResumeTracker).
type trackingRouter struct {
	custodyRouter
	positions []string // "sm seq@h"
	verdicts  []string // "sm bare h"
}

func (r *trackingRouter) Positions(sm string, ps []router.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		r.positions = append(r.positions, fmt.Sprintf("%s %d@%d", sm, p.Receipt.Seq(), p.H))
	}
}

func (r *trackingRouter) ResumeFailed(sm, bare string, h uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdicts = append(r.verdicts, fmt.Sprintf("%s %s %d", sm, bare, h))
}

func (r *trackingRouter) recorded() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.positions), slices.Clone(r.verdicts)
}

func trackingSession(t *testing.T) (*Session, *fakeTransport, *trackingRouter) {
	t.Helper()
	tr := &trackingRouter{}
	srv := NewServer(Deps{Domain: conf.Default().Domain, C2S: conf.Default().C2S, DatabaseTimeout: conf.Default().Database.Timeout, Router: tr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ft := newFakeTransport()
	s := srv.newSession(context.Background(), ft)
	s.username = "alice"
	j := wire.JIDOf("alice@localhost/r")
	s.full.Store(&j)
	t.Cleanup(func() { s.closeWith(ReasonShutdown, "", "") })
	return s, ft, tr
}

// TestPositionsOfResumableSession: the writer of a resumable session
// reports the number each receipted stanza got in its outbound count; a
// session that cannot be resumed reports none (no verdict can come).
func TestPositionsOfResumableSession(t *testing.T) {
	msg := func() *wire.Element {
		return wire.New("message", "to", "alice@localhost/r", "type", "chat").Append(wire.New("body").SetText("x"))
	}
	for _, resume := range []bool{true, false} {
		s, ft, tr := trackingSession(t)
		enable := wire.NewNS("enable", wire.NSSM)
		if resume {
			enable.SetAttr("resume", "true")
		}
		s.enableSM(enable, nil, nil)
		s.Send(wire.New("presence", "from", "bob@localhost/b")) // number 1, no receipt
		s.SendReceipted(msg(), router.RemoteReceipt("node2", 7))
		s.SendReceipted(msg(), router.RemoteReceipt("node3", 9))
		deadline := time.Now().Add(5 * time.Second)
		for len(ft.writtenNamed("message")) != 2 {
			if time.Now().After(deadline) {
				t.Fatal("not written")
			}
			time.Sleep(time.Millisecond)
		}
		got, _ := tr.recorded()
		var want []string
		if resume {
			want = []string{s.smID + " 7@2", s.smID + " 9@3"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("resume=%v: positions %q, want %q", resume, got, want)
		}
	}
}

// TestResumeFailedVerdict: a resumption of a session nobody holds is
// answered <failed/> and reported with the client's count and user; one
// with a bad count is not.
func TestResumeFailedVerdict(t *testing.T) {
	s, ft, tr := trackingSession(t)
	s.resume(wire.NewNS("resume", wire.NSSM).SetAttr("previd", "gone-session").SetAttr("h", "5"), nil)
	s.resume(wire.NewNS("resume", wire.NSSM).SetAttr("previd", "other").SetAttr("h", "x"), nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(ft.writtenNamed("failed")) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("no <failed/> answers")
		}
		time.Sleep(time.Millisecond)
	}
	if _, got := tr.recorded(); !slices.Equal(got, []string{"gone-session alice@localhost 5"}) {
		t.Errorf("verdicts %q", got)
	}
}

// inboundRouter is a custodyRouter that records the safe inbound counts
// sessions report and answers failed resumptions from known
// (InboundTracker).
type inboundRouter struct {
	custodyRouter
	reported []string // "sm bare h"
	ended    []string
	known    map[string]uint32 // "sm bare" → count
	asked    []string          // "sm bare skip"
	// gate makes InboundSafe promise a later held call, kept in helds
	// (a buddy that has not yet confirmed the count).
	gate  bool
	helds []func()
}

// FromClient holds the acknowledgement of messages only, as crash
// safety does.
func (r *inboundRouter) FromClient(ctx context.Context, s router.Session, el *wire.Element) {
	if el.Name == "message" {
		r.custodyRouter.FromClient(ctx, s, el)
	}
}

func (r *inboundRouter) InboundSafe(sm, bare string, h uint32, held func(uint32)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reported = append(r.reported, fmt.Sprintf("%s %s %d", sm, bare, h))
	if r.gate {
		r.helds = append(r.helds, func() { held(h) })
	}
	return r.gate
}

// confirm tells the session the first n counts reached the buddy.
func (r *inboundRouter) confirm(n int) {
	r.mu.Lock()
	fs := r.helds[:n]
	r.helds = slices.Clone(r.helds[n:])
	r.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func (r *inboundRouter) InboundEnded(sm string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = append(r.ended, sm)
}

func (r *inboundRouter) SafeInbound(ctx context.Context, sm, bare, skip string) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, sm+" "+bare+" "+skip)
	h, ok := r.known[sm+" "+bare]
	return h, ok
}

func (r *inboundRouter) reports() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reported)
}

func inboundSession(t *testing.T) (*Session, *fakeTransport, *inboundRouter) {
	t.Helper()
	ir := &inboundRouter{known: map[string]uint32{}}
	srv := NewServer(Deps{Domain: conf.Default().Domain, C2S: conf.Default().C2S, DatabaseTimeout: conf.Default().Database.Timeout, Router: ir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ft := newFakeTransport()
	s := srv.newSession(context.Background(), ft)
	s.username = "alice"
	j := wire.JIDOf("alice@localhost/r")
	s.full.Store(&j)
	t.Cleanup(func() { s.closeWith(ReasonShutdown, "", "") })
	return s, ft, ir
}

// TestInboundSafeCount: a resumable session reports the count of its
// client's stanzas that are safe, never above it: while stanza 2 is held
// it says 1 even once 3 is safe, then 3; a session that cannot be
// resumed reports nothing, and one that ends says so.
func TestInboundSafeCount(t *testing.T) {
	msg := func() *wire.Element {
		return wire.New("message", "to", "bob@localhost", "type", "chat").Append(wire.New("body").SetText("x"))
	}
	s, ft, ir := inboundSession(t)
	s.enableSM(wire.NewNS("enable", wire.NSSM).SetAttr("resume", "true"), nil, nil)
	route := func() {
		s.inbound(msg())
		s.inboundRouted()
	}
	route()
	route()
	route()
	if got := ir.reports(); len(got) != 0 {
		t.Fatalf("reported %q while every stanza is held", got)
	}
	sm := s.smID + " alice@localhost "
	ir.release(1) // stanza 1 safe
	// Stanza 3 made safe before 2: still 1.
	ir.mu.Lock()
	h2, h3 := ir.holds[0], ir.holds[1]
	ir.holds = nil
	ir.mu.Unlock()
	h3()
	if got := ir.reports(); !slices.Equal(got, []string{sm + "1"}) {
		t.Fatalf("reported %q, want only 1 while stanza 2 is held", got)
	}
	h2()
	if got := ir.reports(); !slices.Equal(got, []string{sm + "1", sm + "3"}) {
		t.Fatalf("reported %q, want 1 then 3", got)
	}
	// <r/> says the same.
	s.handleSM(wire.NewNS("r", wire.NSSM))
	waitAcks(t, ft, "3")
	// A stanza routed with nothing held is safe at once.
	s.inbound(wire.New("presence"))
	s.inboundRouted()
	if got := ir.reports(); !slices.Equal(got, []string{sm + "1", sm + "3", sm + "4"}) {
		t.Fatalf("reported %q, want 1, 3, 4", got)
	}
	// The session ends with stanza 5 held: its release afterwards
	// reports nothing (the router would keep that count for good).
	route()
	s.srv.addResumable(s)
	s.srv.dropResumable(s)
	ir.release(1)
	ir.mu.Lock()
	ended := slices.Clone(ir.ended)
	ir.mu.Unlock()
	if !slices.Equal(ended, []string{s.smID}) {
		t.Errorf("ended %q, want %q", ended, s.smID)
	}
	if got := ir.reports(); !slices.Equal(got, []string{sm + "1", sm + "3", sm + "4"}) {
		t.Fatalf("reported %q after the session ended, want 1, 3, 4", got)
	}

	// Without resumption nothing is reported: no resumption can fail.
	s, _, ir = inboundSession(t)
	s.enableSM(wire.NewNS("enable", wire.NSSM), nil, nil)
	route()
	ir.release(1)
	if got := ir.reports(); len(got) != 0 {
		t.Errorf("a session without resumption reported %q", got)
	}
}

// TestAckWaitsForBuddyCount: a resumable session's <a h/> goes no
// further than the count another node confirmed holding, since a failed
// resumption after this node's death answers <failed h/> with that
// node's count, and a client that had seen a higher <a h/> would count
// the difference modulo 2^32 as handled. Stanzas confirmed out of order
// by the router still answer in order; a session that cannot be resumed
// waits for nothing.
func TestAckWaitsForBuddyCount(t *testing.T) {
	s, ft, ir := inboundSession(t)
	ir.gate = true
	s.enableSM(wire.NewNS("enable", wire.NSSM).SetAttr("resume", "true"), nil, nil)
	presence := func() {
		s.inbound(wire.New("presence"))
		s.inboundRouted()
	}
	presence()
	presence()
	s.handleSM(wire.NewNS("r", wire.NSSM)) // at 2
	presence()
	s.handleSM(wire.NewNS("r", wire.NSSM)) // at 3
	time.Sleep(20 * time.Millisecond)
	if a := ft.writtenNamed("a"); len(a) != 0 {
		t.Fatalf("<a/> written before another node had the count: %v", a)
	}
	ir.confirm(1) // count 1: still below the first <r/>
	time.Sleep(20 * time.Millisecond)
	if a := ft.writtenNamed("a"); len(a) != 0 {
		t.Fatalf("<a/> written with only count 1 held elsewhere: %v", a)
	}
	ir.confirm(1) // count 2
	waitAcks(t, ft, "2")
	ir.confirm(1) // count 3
	waitAcks(t, ft, "2", "3")

	// Settling a resumption waits for the count too (<resumed h/>).
	presence()
	done := make(chan struct{})
	go func() { s.settleAcks(); close(done) }()
	select {
	case <-done:
		t.Fatal("settleAcks returned before another node had count 4")
	case <-time.After(20 * time.Millisecond):
	}
	ir.confirm(1)
	<-done

	// Without resumption nothing waits.
	s, ft, ir = inboundSession(t)
	ir.gate = true
	s.enableSM(wire.NewNS("enable", wire.NSSM), nil, nil)
	s.inbound(wire.New("presence"))
	s.inboundRouted()
	s.handleSM(wire.NewNS("r", wire.NSSM))
	waitAcks(t, ft, "1")
}

// TestResumeFailedWithCount: a resumption of a session nobody holds is
// answered <failed h/> with the count the cluster knows for this user's
// session, asked without the node the ID names; with none, <failed/>.
func TestResumeFailedWithCount(t *testing.T) {
	s, ft, ir := inboundSession(t)
	ir.known["gone alice@localhost"] = 7
	ir.known["unknown bob@localhost"] = 9 // another user's
	s.resume(wire.NewNS("resume", wire.NSSM).SetAttr("previd", "gone").SetAttr("h", "2"), nil)
	s.resume(wire.NewNS("resume", wire.NSSM).SetAttr("previd", "unknown").SetAttr("h", "2"), nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(ft.writtenNamed("failed")) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("no <failed/> answers")
		}
		time.Sleep(time.Millisecond)
	}
	f := ft.writtenNamed("failed")
	if h := f[0].Attr("h"); h != "7" {
		t.Errorf("first <failed/> has h=%q, want 7: %s", h, f[0])
	}
	if h := f[1].Attr("h"); h != "" {
		t.Errorf("<failed/> for a session with no count of this user has h=%q", h)
	}
	ir.mu.Lock()
	asked := slices.Clone(ir.asked)
	ir.mu.Unlock()
	if !slices.Equal(asked, []string{"gone alice@localhost ", "unknown alice@localhost "}) {
		t.Errorf("asked %q", asked)
	}

	// Inside SASL2 (XEP-0388's <success/>, inline resumption): the same.
	success := wire.NewNS("success", wire.NSSASL2)
	if next, stop := s.resume(wire.NewNS("resume", wire.NSSM).SetAttr("previd", "gone").SetAttr("h", "2"), success); next != nil || stop {
		t.Fatalf("inline resumption of a gone session: %v, %v", next, stop)
	}
	if f := success.Child("failed", wire.NSSM); f == nil || f.Attr("h") != "7" {
		t.Errorf("inline: %s, want <failed h='7'/> inside <success/>", success)
	}
}
