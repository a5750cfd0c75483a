package bosh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

func msg(body string) *wire.Element {
	return wire.New("message", "to", "carol@example.com").Append(wire.New("body").SetText(body))
}

func bodies(els []*wire.Element) string {
	var out []string
	for _, el := range els {
		out = append(out, el.ChildText("body", ""))
	}
	return strings.Join(out, ",")
}

// handleAsync runs a request through handle (as ServeHTTP does) with ctx.
func (c *client) handleAsync(ctx context.Context, rid int64, attrs, payload string) chan reply {
	ch := make(chan reply, 1)
	go func() { ch <- c.m.handle(ctx, []byte(body(c.sid, rid, attrs, payload)), Meta{}) }()
	return ch
}

// A held request whose client went away takes nothing: what arrives
// afterwards stays queued, the inactivity period starts at once, and the
// session's end hands it back for re-routing.
func TestAbandonedRequestHoldsNothing(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Inactivity = 200 * time.Second // 1s
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	ctx, leave := context.WithCancel(context.Background())
	ch := c.handleAsync(ctx, c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	leave()
	if r := <-ch; r.body != nil {
		t.Fatalf("abandoned request answered %s", r.body)
	}
	waitHeld(t, s)
	s.Send(msg("m1"))
	if err := f.end(t); !errors.Is(err, ErrInactive) {
		t.Fatalf("stream ended with %v, want ErrInactive", err)
	}
	if got := bodies(s.Undelivered()); got != "m1" {
		t.Errorf("undelivered %q, want m1", got)
	}
	if got := s.Undelivered(); len(got) != 0 {
		t.Errorf("undelivered twice: %v", got)
	}
}

// A response that could not be written goes out again with the next
// request, and a resend of its rid no longer carries it.
func TestLostResponseIsSentAgain(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	ch := c.handleAsync(context.Background(), c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	s.Send(msg("m1"))
	r := <-ch
	if !strings.Contains(string(r.body), "m1") {
		t.Fatalf("response %s lacks m1", r.body)
	}
	r.report(lost)
	if resent := c.postRID(c.rid+1, "", ""); resent.Child("message", "") != nil {
		t.Errorf("resend of the lost rid carries it again: %s", resent)
	}
	c.rid++
	if next := c.post("", ""); next.Child("message", "").ChildText("body", "") != "m1" {
		t.Errorf("next response %s, want m1", next)
	}
	c.later(t, s, 2) // shows that it has that response
	s.Close(nil)
	if got := s.Undelivered(); len(got) != 0 {
		t.Errorf("delivered stanza handed back: %s", bodies(got))
	}
}

// later sends n empty requests, each held in turn (hold='1': a new one
// answers the one before). Without ack mode, 'requests' of them show that
// the client has every response before them.
func (c *client) later(t *testing.T, s *Session, n int) {
	t.Helper()
	for range n {
		c.async(c.rid+1, "", "")
		c.rid++
		waitHeld(t, s, c.rid)
	}
}

// A request forwarded from another node whose client went away: that node
// tells the owner, which stops holding it.
func TestForwardedRequestGone(t *testing.T) {
	var net fakeNet
	fa, fb := newFakeStream(), newFakeStream()
	oa, ob := testOptions(fa), testOptions(fb)
	oa.Cluster, ob.Cluster = net.node("node-a"), net.node("node-b")
	ma, mb := NewManager(oa), NewManager(ob)
	c, _ := connect(t, ma, "wait='6000' hold='1'")
	s := fa.last()
	c.m = mb
	ctx, leave := context.WithCancel(context.Background())
	ch := c.handleAsync(ctx, c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	leave()
	if r := <-ch; r.body != nil {
		t.Fatalf("abandoned request answered %s", r.body)
	}
	waitHeld(t, s)
	s.Send(msg("m1"))
	c.rid++
	if next := c.post("", ""); next.Child("message", "").ChildText("body", "") != "m1" {
		t.Errorf("next response %s, want m1", next)
	}
}

// A client that terminates does not read what was queued for it: it is
// handed back for re-routing, not dropped.
func TestTerminateHandsBackTheQueue(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	s.Send(msg("m1"))
	if r := c.post("type='terminate'", ""); r.Attr("type") != "terminate" {
		t.Fatalf("terminate answered %s", r)
	}
	if got := bodies(s.Undelivered()); got != "m1" {
		t.Errorf("undelivered %q, want m1", got)
	}
}

// In ack mode a written response counts only once the client acknowledges
// it (explicitly, or by omitting ack).
func TestAckModeKeepsUntilAcknowledged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ack   func(c *client) string // attributes of the request after the response
		stays bool
	}{
		{"never acknowledged", nil, true},
		{"acknowledged", func(c *client) string { return fmt.Sprintf("ack='%d'", c.rid) }, false},
		{"ack omitted", func(c *client) string { return "" }, false},
		{"older ack", func(c *client) string { return fmt.Sprintf("ack='%d'", c.rid-1) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStream()
			m := NewManager(testOptions(f))
			c, _ := connect(t, m, "wait='6000' hold='1' ack='1'")
			s := f.last()
			ch := c.async(c.rid+1, "", "")
			waitHeld(t, s, c.rid+1)
			s.Send(msg("m1"))
			wait(t, ch)
			c.rid++
			if tc.ack != nil {
				c.async(c.rid+1, tc.ack(c), "")
				waitHeld(t, s, c.rid+1)
			}
			s.Close(nil)
			got := bodies(s.Undelivered())
			if tc.stays && got != "m1" || !tc.stays && got != "" {
				t.Errorf("undelivered %q (want m1: %v)", got, tc.stays)
			}
		})
	}
}

// Issue 17's lost message, as the session sees it: the tab closed while a
// request was held, the server had not noticed yet, and the message went
// out on that request; the write into the dead connection succeeded. A
// write shows nothing about the client, so the message counts as
// delivered only once a later request shows that the client has the
// response (without ack mode: a request 'requests' rids later, §11); a
// session that ends first hands it back.
func TestWrittenResponseCountsOnlyOnceConfirmed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		later int // requests the client sends after the response
		stays bool
	}{
		{"no later request", 0, true},
		{"one later request", 1, true}, // requests='2': it may have been sent before the response arrived
		{"two later requests", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStream()
			m := NewManager(testOptions(f))
			c, _ := connect(t, m, "wait='6000' hold='1'")
			s := f.last()
			ch := c.handleAsync(context.Background(), c.rid+1, "", "")
			waitHeld(t, s, c.rid+1)
			s.Send(msg("m1"))
			r := <-ch
			if !strings.Contains(string(r.body), "m1") {
				t.Fatalf("response %s lacks m1", r.body)
			}
			r.report(delivered) // written without error: the client may be gone all the same
			c.rid++
			c.later(t, s, tc.later)
			s.Close(nil)
			got := bodies(s.Undelivered())
			if tc.stays && got != "m1" || !tc.stays && got != "" {
				t.Errorf("undelivered %q (want m1: %v)", got, tc.stays)
			}
		})
	}
}

// Once the stream acknowledges what it sends itself (XEP-0198), what is
// sent afterwards is the stream's to re-route: Undelivered leaves it out.
func TestStreamAcksLeaveOutWhatFollows(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	s.Send(msg("m1"))
	s.StreamAcks()
	s.Send(msg("m2"))
	s.Close(nil)
	if got := bodies(s.Undelivered()); got != "m1" {
		t.Errorf("undelivered %q, want m1", got)
	}
}
