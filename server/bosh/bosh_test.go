package bosh

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/wire"
)

// fakeStream plays the c2s core: it opens the stream, sends features,
// records what the client sends and echoes messages addressed to "echo".
type fakeStream struct {
	mu       sync.Mutex
	sessions []*Session
	got      chan *wire.Element
	ends     chan error
	restarts chan struct{}
}

func newFakeStream() *fakeStream {
	return &fakeStream{got: make(chan *wire.Element, 100), ends: make(chan error, 10), restarts: make(chan struct{}, 10)}
}

func (f *fakeStream) onSession(s *Session) {
	f.mu.Lock()
	f.sessions = append(f.sessions, s)
	f.mu.Unlock()
	go f.run(s)
}

func (f *fakeStream) last() *Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[len(f.sessions)-1]
}

func (f *fakeStream) run(s *Session) {
	n := 1
	s.Open("stream-" + strconv.Itoa(n))
	s.Send(wire.New("stream:features").Append(wire.NewNS("mechanisms", wire.NSSASL)))
	for {
		el, err := s.Recv(context.Background())
		if err == ErrRestart {
			n++
			s.Open("stream-" + strconv.Itoa(n))
			s.Send(wire.New("stream:features").Append(wire.NewNS("bind", wire.NSBind)))
			f.restarts <- struct{}{}
			continue
		}
		if err != nil {
			f.ends <- err
			return
		}
		f.got <- el
		if el.Name == "message" && el.To() == "echo" {
			s.Send(wire.New("message", "from", "echo", "id", el.ID()).Append(wire.New("body").SetText("re:" + el.ChildText("body", ""))))
		}
	}
}

func (f *fakeStream) next(t *testing.T) *wire.Element {
	t.Helper()
	select {
	case el := <-f.got:
		return el
	case <-time.After(5 * time.Second):
		t.Fatal("no element reached the stream")
		return nil
	}
}

func (f *fakeStream) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.ends:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
		return nil
	}
}

// testOptions: one protocol second lasts 5ms, so wait='1' expires at once
// while wait='6000' (30s) holds for longer than any test runs; inactivity
// is long too unless a test shortens it.
func testOptions(f *fakeStream) Options {
	return Options{
		Domain:      "example.com",
		MaxWait:     100000 * time.Second,
		Inactivity:  100000 * time.Second,
		MaxPause:    120 * time.Second,
		MaxHold:     1,
		MaxRequests: 2,
		Second:      5 * time.Millisecond,
		CORSOrigins: []string{"https://app.example.net"},
		OnSession:   f.onSession,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

type client struct {
	t   testing.TB
	m   *Manager
	sid string
	rid int64
}

func body(sid string, rid int64, attrs, payload string) string {
	s := fmt.Sprintf(`<body xmlns='%s' rid='%d'`, NSHTTPBind, rid)
	if sid != "" {
		s += fmt.Sprintf(` sid='%s'`, sid)
	}
	return s + " " + attrs + ">" + payload + "</body>"
}

func parseResp(t testing.TB, b []byte) *wire.Element {
	t.Helper()
	if b == nil {
		t.Fatal("no response")
	}
	el, err := wire.Parse(b, wire.Limits{})
	if err != nil {
		t.Fatalf("response %q: %v", b, err)
	}
	if el.Name != "body" || el.NS() != NSHTTPBind {
		t.Fatalf("response is not a body: %s", b)
	}
	return el
}

// connect creates a session with extra creation attributes.
func connect(t testing.TB, m *Manager, attrs string) (*client, *wire.Element) {
	t.Helper()
	c := &client{t: t, m: m, rid: 1000}
	resp := parseResp(t, m.Handle(context.Background(), []byte(body("", c.rid,
		"to='example.com' xml:lang='en' ver='1.11' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0' "+attrs, "")), Meta{RemoteAddr: "127.0.0.1:5555", Secure: true}))
	c.sid = resp.Attr("sid")
	if c.sid == "" {
		t.Fatalf("no sid in %s", resp)
	}
	return c, resp
}

// post sends the next request and returns the response.
func (c *client) post(attrs, payload string) *wire.Element {
	c.t.Helper()
	c.rid++
	return c.postRID(c.rid, attrs, payload)
}

func (c *client) postRID(rid int64, attrs, payload string) *wire.Element {
	c.t.Helper()
	return parseResp(c.t, c.m.Handle(context.Background(), []byte(body(c.sid, rid, attrs, payload)), Meta{}))
}

// async sends a request in a goroutine; the response arrives on the channel.
func (c *client) async(rid int64, attrs, payload string) chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		ch <- c.m.Handle(context.Background(), []byte(body(c.sid, rid, attrs, payload)), Meta{})
	}()
	return ch
}

func wait(t *testing.T, ch chan []byte) *wire.Element {
	t.Helper()
	select {
	case b := <-ch:
		return parseResp(t, b)
	case <-time.After(5 * time.Second):
		t.Fatal("request was never answered")
		return nil
	}
}

func (s *Session) heldRIDs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, r := range s.held {
		out = append(out, r.rid)
	}
	return out
}

func (s *Session) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func waitHeld(t *testing.T, s *Session, rids ...int64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if got := fmt.Sprint(s.heldRIDs()); got != fmt.Sprint(rids) {
			return fmt.Errorf("held %s, want %v", got, rids)
		}
		return nil
	})
}

func TestCreateResponse(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	_, resp := connect(t, m, "wait='200000' hold='3' ack='1'")
	want := map[string]string{
		"wait":              "100000", // capped by MaxWait
		"hold":              "1",      // capped by MaxHold
		"requests":          "2",
		"inactivity":        "100000",
		"polling":           "",
		"maxpause":          "120",
		"ver":               "1.11",
		"from":              "example.com",
		"authid":            "stream-1",
		"secure":            "true",
		"xmpp:version":      "1.0",
		"xmpp:restartlogic": "true",
		"ack":               "1000",
	}
	for k, v := range want {
		if got := resp.Attr(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.Child("stream:features", "") == nil {
		t.Errorf("creation response lacks stream:features: %s", resp)
	}
	if resp.Attr("xmlns:stream") != wire.NSStream {
		t.Errorf("stream prefix not declared: %s", resp)
	}
	if node, ok := OwnerOf(resp.Attr("sid")); !ok || node != "" {
		t.Errorf("OwnerOf(%q) = %q, %v", resp.Attr("sid"), node, ok)
	}
	s := f.last()
	if h := s.Header(); h.Attr("to") != "example.com" || h.Attr("version") != "1.0" || h.Attr("xml:lang") != "en" {
		t.Errorf("header %s", h)
	}
	if !s.Secure() {
		t.Error("session created with Secure meta is not secure")
	}
}

func TestVersionNegotiation(t *testing.T) {
	for _, tc := range []struct{ client, want string }{
		{"", "1.11"}, {"1.6", "1.6"}, {"1.11", "1.11"}, {"1.12", "1.11"}, {"2.0", "1.11"}, {"junk", "1.11"},
	} {
		if got := negotiateVer(tc.client); got != tc.want {
			t.Errorf("negotiateVer(%q) = %q, want %q", tc.client, got, tc.want)
		}
	}
}

func TestBadRequests(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.MaxBodyBytes = 2048
	m := NewManager(opts)
	for _, tc := range []struct {
		name, raw, cond string
	}{
		{"malformed", `<body xmlns='` + NSHTTPBind + `' rid='1'>`, CondBadRequest},
		{"not xml", `hello`, CondBadRequest},
		{"wrong root", `<bodyx xmlns='` + NSHTTPBind + `' rid='1'/>`, CondBadRequest},
		{"wrong namespace", `<body xmlns='jabber:client' rid='1'/>`, CondBadRequest},
		{"no rid", `<body xmlns='` + NSHTTPBind + `' to='example.com'/>`, CondBadRequest},
		{"rid not a number", `<body xmlns='` + NSHTTPBind + `' rid='x' to='example.com'/>`, CondBadRequest},
		{"rid too big", `<body xmlns='` + NSHTTPBind + `' rid='9007199254740992' to='example.com'/>`, CondBadRequest},
		{"bad wait", `<body xmlns='` + NSHTTPBind + `' rid='1' wait='-1' to='example.com'/>`, CondBadRequest},
		{"unknown host", `<body xmlns='` + NSHTTPBind + `' rid='1' to='other.org'/>`, CondHostUnknown},
		{"unknown sid", `<body xmlns='` + NSHTTPBind + `' rid='1' sid='nope'/>`, CondItemNotFound},
		{"sid of this node", `<body xmlns='` + NSHTTPBind + `' rid='1' sid='.00ff'/>`, CondItemNotFound},
		{"oversized", `<body xmlns='` + NSHTTPBind + `' rid='1' to='example.com'>` + strings.Repeat("<x/>", 600) + `</body>`, CondPolicyViolation},
		{"restricted xml", `<!DOCTYPE body><body xmlns='` + NSHTTPBind + `' rid='1'/>`, CondBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := parseResp(t, m.Handle(context.Background(), []byte(tc.raw), Meta{}))
			if resp.Attr("type") != "terminate" || resp.Attr("condition") != tc.cond {
				t.Errorf("got %s, want terminate %s", resp, tc.cond)
			}
		})
	}
	if n := m.Len(); n != 0 {
		t.Errorf("%d sessions after bad requests", n)
	}
}

// A broken body that names a session ends that session: the client is told
// it is over, and the stream core sees the end.
func TestBadBodyEndsItsSession(t *testing.T) {
	for _, tc := range []struct{ name, payload, cond string }{
		{"malformed", "<message>", CondBadRequest},
		{"oversized", "<message><body>" + strings.Repeat("x", 3000) + "</body></message>", CondPolicyViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStream()
			opts := testOptions(f)
			opts.MaxBodyBytes = 2048
			m := NewManager(opts)
			c, _ := connect(t, m, "wait='6000' hold='1'")
			raw := fmt.Sprintf(`<body xmlns='%s' sid='%s' rid='%d'>%s`, NSHTTPBind, c.sid, c.rid+1, tc.payload)
			resp := parseResp(t, m.Handle(context.Background(), []byte(raw), Meta{}))
			if resp.Attr("condition") != tc.cond {
				t.Fatalf("got %s", resp)
			}
			if err := f.end(t); !errors.Is(err, ErrBinding) {
				t.Errorf("stream ended with %v, want ErrBinding", err)
			}
			testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
				if m.Len() != 0 {
					return errors.New("session still listed")
				}
				return nil
			})
		})
	}
}

func TestPayloadNamespaces(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	resp := c.post("", `<message xmlns='jabber:client' to='echo' id='m1'><body>hi</body></message>`)
	got := f.next(t)
	if got.NS() != "" || got.Name != "message" || got.ChildText("body", "") != "hi" {
		t.Errorf("stream got %s, want a message without the jabber:client declaration", got)
	}
	if len(resp.Children) == 0 {
		// The echo may come on the next poll.
		resp = c.post("", "")
	}
	msg := resp.Child("message", "")
	if msg == nil || msg.NS() != wire.NSClient || msg.ChildText("body", "") != "re:hi" {
		t.Errorf("response %s: want the echo with xmlns='jabber:client'", resp)
	}
}

func TestRIDReordering(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	// rid+2 arrives first and is buffered; rid+1 releases both in order.
	second := c.async(c.rid+2, "", `<message xmlns='jabber:client' id='two'/>`)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if s.pendingCount() != 1 {
			return errors.New("rid+2 not buffered")
		}
		return nil
	})
	select {
	case el := <-f.got:
		t.Fatalf("out-of-order payload %s reached the stream early", el)
	default:
	}
	first := c.async(c.rid+1, "", `<message xmlns='jabber:client' id='one'/>`)
	if id := f.next(t).ID(); id != "one" {
		t.Fatalf("first payload %q, want one", id)
	}
	if id := f.next(t).ID(); id != "two" {
		t.Fatalf("second payload %q, want two", id)
	}
	// hold=1: rid+1 is answered as soon as rid+2 is held.
	wait(t, first)
	waitHeld(t, s, c.rid+2)
	s.Send(wire.New("message", "id", "push"))
	if resp := wait(t, second); resp.Child("message", "") == nil {
		t.Errorf("held rid+2 answered without the pushed message: %s", resp)
	}
}

func TestResponseCache(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	c.rid++
	rid := c.rid
	first := c.async(rid, "", `<message xmlns='jabber:client' to='echo' id='m1'><body>x</body></message>`)
	f.next(t)
	resp1 := wait(t, first)
	if resp1.Child("message", "") == nil {
		t.Fatalf("first response lacks the echo: %s", resp1)
	}
	// A resend of the same rid gets the same bytes and is not processed again.
	resp2 := c.postRID(rid, "", `<message xmlns='jabber:client' to='echo' id='m1'><body>x</body></message>`)
	if resp1.String() != resp2.String() {
		t.Errorf("resend answered %s, want cached %s", resp2, resp1)
	}
	select {
	case el := <-f.got:
		t.Errorf("resent payload reached the stream twice: %s", el)
	default:
	}
	// The creation response is cached too, until it leaves the window.
	if cr := c.postRID(1000, "", ""); cr.Attr("sid") != c.sid {
		t.Errorf("resent creation request answered %s", cr)
	}
	// Out of the cache: item-not-found.
	for i := 0; i < 3; i++ {
		c.post("", `<message xmlns='jabber:client' to='echo'/>`)
		f.next(t)
	}
	resp := c.postRID(rid, "", "")
	if resp.Attr("condition") != CondItemNotFound {
		t.Errorf("resend of a forgotten rid: %s, want item-not-found", resp)
	}
}

func TestResendWhileHeld(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	c.rid++
	old := c.async(c.rid, "", "")
	waitHeld(t, s, c.rid)
	fresh := c.async(c.rid, "", "")
	if resp := wait(t, old); len(resp.Children) != 0 {
		t.Errorf("replaced request got %s, want an empty body", resp)
	}
	s.Send(wire.New("message", "id", "late"))
	if resp := wait(t, fresh); resp.Child("message", "") == nil {
		t.Errorf("resent request got %s, want the message", resp)
	}
}

func TestRIDOutOfWindow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delta int64
	}{{"far ahead", 3}, {"far behind", -50}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStream()
			m := NewManager(testOptions(f))
			c, _ := connect(t, m, "wait='6000' hold='1'")
			resp := c.postRID(c.rid+tc.delta, "", "")
			if resp.Attr("type") != "terminate" || resp.Attr("condition") != CondItemNotFound {
				t.Fatalf("got %s, want item-not-found", resp)
			}
			if err := f.end(t); !errors.Is(err, ErrBinding) {
				t.Errorf("stream ended with %v", err)
			}
		})
	}
}

func TestHeldUntilDataOrWait(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	c.rid++
	held := c.async(c.rid, "", "")
	waitHeld(t, s, c.rid)
	select {
	case b := <-held:
		t.Fatalf("empty poll answered before data or wait: %s", b)
	default:
	}
	s.Send(wire.New("message", "id", "a"))
	s.Send(wire.New("message", "id", "b"))
	resp := wait(t, held)
	if n := len(resp.ChildrenNamed("message", "")); n < 1 {
		t.Fatalf("held response %s lacks the data", resp)
	}

	// With wait='1' (5ms here) an empty poll comes back empty.
	c2, _ := connect(t, m, "wait='1' hold='1'")
	if resp := c2.post("", ""); len(resp.Children) != 0 || resp.Attr("type") != "" {
		t.Errorf("expired poll got %s, want an empty body", resp)
	}
}

func TestHoldLimit(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	a := c.async(c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	b := c.async(c.rid+2, "", `<presence xmlns='jabber:client'/>`)
	// hold=1: the older request is answered so that one stays held.
	wait(t, a)
	waitHeld(t, s, c.rid+2)
	s.Send(wire.New("presence", "from", "x"))
	if resp := wait(t, b); resp.Child("presence", "") == nil {
		t.Errorf("got %s", resp)
	}
}

func TestHoldZeroAnswersAtOnce(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, resp := connect(t, m, "wait='6000' hold='0'")
	if resp.Attr("hold") != "0" {
		t.Fatalf("hold %q", resp.Attr("hold"))
	}
	// The stream's features may still be on their way when the session is
	// created (they then come with the first poll); after them an empty
	// poll is answered at once, empty, instead of being held.
	resp = c.post("", "")
	if len(resp.Children) == 1 && resp.Children[0].Name == "stream:features" {
		resp = c.post("", "")
	}
	if len(resp.Children) != 0 {
		t.Errorf("poll got %s", resp)
	}
}

func TestOveractivity(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	held := c.async(c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	gap := c.async(c.rid+3, "", "<a xmlns='urn:t'/>")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if s.pendingCount() != 1 {
			return errors.New("not buffered")
		}
		return nil
	})
	// A third unanswered request with requests='2'.
	resp := c.postRID(c.rid+2, "", "<b xmlns='urn:t'/>")
	if resp.Attr("type") != "terminate" || resp.Attr("condition") != CondPolicyViolation {
		t.Fatalf("got %s, want policy-violation", resp)
	}
	for _, ch := range []chan []byte{held, gap} {
		if r := wait(t, ch); r.Attr("type") != "terminate" {
			t.Errorf("outstanding request got %s, want terminate", r)
		}
	}
	if err := f.end(t); !errors.Is(err, ErrBinding) {
		t.Errorf("stream ended with %v", err)
	}
}

// TestPollAfterReorderedWrite: a client polling and writing on its two
// requests at once may have its poll (rid n) arrive after its write (n+1);
// its next poll (n+2) then follows a held write, not two empty requests,
// and is no overactivity (XEP-0124 §11: the last two requests in rid
// order). The session used to end with policy-violation: aviary-bench's
// BOSH sessions did, about one in two under the ring.
func TestPollAfterReorderedWrite(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Polling = 2 * time.Second
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	opts.Now = clk.Now
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	write := c.async(c.rid+2, "", "<a xmlns='urn:t'/>")
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s.pendingCount() != 1 {
			return errors.New("the write is not buffered")
		}
		return nil
	})
	poll := c.async(c.rid+1, "", "")
	if r := wait(t, poll); r.Attr("type") == "terminate" {
		t.Fatalf("first poll got %s", r)
	}
	waitHeld(t, s, c.rid+2)
	next := c.async(c.rid+3, "", "")
	if r := wait(t, write); r.Attr("type") == "terminate" {
		t.Fatalf("the write got %s, want it answered when the next poll came", r)
	}
	waitHeld(t, s, c.rid+3)
	select {
	case b := <-next:
		t.Fatalf("the next poll was answered at once: %s", b)
	default:
	}
}

// TestTwoEmptyRequestsTooClose: with hold='1' and requests='2', a second
// empty request while the first is still held, within the polling
// interval, is overactivity (XEP-0124 §11).
func TestTwoEmptyRequestsTooClose(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Polling = 2 * time.Second
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	opts.Now = clk.Now
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	held := c.async(c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	if r := c.postRID(c.rid+2, "", ""); r.Attr("condition") != CondPolicyViolation {
		t.Fatalf("second empty request got %s, want policy-violation", r)
	}
	wait(t, held)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestPollingTooFrequent(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Polling = 2 * time.Second
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	opts.Now = clk.Now
	m := NewManager(opts)
	c, resp := connect(t, m, "wait='6000' hold='0'")
	if resp.Attr("polling") != "2" {
		t.Fatalf("polling %q", resp.Attr("polling"))
	}
	// The fake stream sends its features just after the stream opens:
	// whether they ride on the creation response or wait for a later
	// request is a race, and an empty creation response followed at once
	// by an empty poll is rightly two empty requests too close together.
	// Collect the features first, a polling interval apart, so the polls
	// below start from one known state.
	for got := resp.Child("stream:features", ""); got == nil; {
		clk.Add(3 * opts.Second)
		r := c.post("", "")
		if r.Attr("type") == "terminate" {
			t.Fatalf("poll while waiting for the features refused: %s", r)
		}
		got = r.Child("stream:features", "")
	}
	clk.Add(3 * opts.Second)
	if r := c.post("", ""); len(r.Children) != 0 || r.Attr("type") == "terminate" {
		t.Fatalf("empty poll: %s, want an empty answer", r)
	}
	clk.Add(3 * opts.Second)
	if r := c.post("", ""); r.Attr("type") == "terminate" {
		t.Fatalf("poll after the interval refused: %s", r)
	}
	clk.Add(opts.Second) // half the interval
	r := c.post("", "")
	if r.Attr("condition") != CondPolicyViolation {
		t.Fatalf("too frequent poll got %s, want policy-violation", r)
	}
}

func TestPause(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Inactivity = 2 * time.Second // 10ms
	opts.MaxPause = 100000 * time.Second
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	held := c.async(c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	s.Send(wire.New("message", "id", "queued"))
	c.rid++
	// pause='10000' (50s here) answers the held request and itself at once.
	resp := c.post("pause='10000'", "")
	if len(resp.Children) != 0 {
		t.Errorf("pause response carries payloads: %s", resp)
	}
	wait(t, held)
	// The session takes the next request after the pause.
	if r := c.post("", "<message xmlns='jabber:client' to='echo'/>"); r.Attr("type") == "terminate" {
		t.Fatalf("request after pause: %s", r)
	}
	f.next(t)
	// A pause above maxpause is treated as a normal request: held until the
	// echo comes, not answered at once without payloads.
	r := c.post("pause='1000000'", "<message xmlns='jabber:client' to='echo' id='big'/>")
	if r.Attr("type") == "terminate" {
		t.Fatalf("oversized pause: %s", r)
	}
	if r.Child("message", "") == nil {
		r = c.post("", "")
	}
	if m := r.Child("message", ""); m == nil || m.ID() != "big" {
		t.Errorf("oversized pause request got %s, want the echo", r)
	}
}

func TestPauseOutlivesInactivity(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Inactivity = 1 * time.Second // 5ms
	opts.MaxPause = 100000 * time.Second
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='1' hold='1'")
	c.post("pause='100000'", "") // 500s in test seconds: effectively forever
	s := f.last()
	// The inactivity timer runs with the pause period: the session is still
	// there once several inactivity periods would have passed.
	s.mu.Lock()
	paused := s.pauseFor
	s.mu.Unlock()
	if paused != 100000*opts.Second {
		t.Fatalf("pause %v", paused)
	}
	if m.Session(c.sid) == nil {
		t.Fatal("session gone right after pause")
	}
}

func TestTerminate(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	held := c.async(c.rid+1, "", "")
	waitHeld(t, s, c.rid+1)
	c.rid++
	resp := c.post("type='terminate'", `<presence xmlns='jabber:client' type='unavailable'/>`)
	if resp.Attr("type") != "terminate" || resp.Attr("condition") != "" {
		t.Errorf("terminate answered %s", resp)
	}
	if el := f.next(t); el.Name != "presence" || el.Type() != "unavailable" {
		t.Errorf("stream got %s, want the unavailable presence first", el)
	}
	if err := f.end(t); !errors.Is(err, ErrTerminated) {
		t.Errorf("stream ended with %v, want ErrTerminated", err)
	}
	if r := wait(t, held); r.Attr("type") != "terminate" {
		t.Errorf("held request got %s", r)
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if m.Len() != 0 {
			return errors.New("session still listed")
		}
		return nil
	})
	if r := c.post("", ""); r.Attr("condition") != CondItemNotFound {
		t.Errorf("request after terminate: %s", r)
	}
}

func TestInactivityEndsSession(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.Inactivity = 2 * time.Second // 10ms
	m := NewManager(opts)
	connect(t, m, "wait='6000' hold='1'")
	if err := f.end(t); !errors.Is(err, ErrInactive) {
		t.Errorf("stream ended with %v, want ErrInactive", err)
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if m.Len() != 0 {
			return errors.New("session still listed")
		}
		return nil
	})
}

func TestRestart(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, resp := connect(t, m, "wait='6000' hold='1'")
	if resp.Child("stream:features", "").Child("mechanisms", wire.NSSASL) == nil {
		t.Fatalf("first features: %s", resp)
	}
	r := c.post("xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true' xml:lang='en' to='example.com'", "")
	select {
	case <-f.restarts:
	case <-time.After(5 * time.Second):
		t.Fatal("no restart reached the stream")
	}
	if r.Child("stream:features", "") == nil || r.Child("stream:features", "").Child("bind", wire.NSBind) == nil {
		t.Errorf("restart response %s lacks the new features", r)
	}
}

func TestAcknowledgements(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, resp := connect(t, m, "wait='6000' hold='1' ack='1'")
	if resp.Attr("ack") != "1000" {
		t.Fatalf("creation ack %q", resp.Attr("ack"))
	}
	s := f.last()
	// While rid+1 is held, rid+2 arrives: the answer to rid+1 acknowledges rid+2.
	a := c.async(c.rid+1, "ack='1000'", "")
	waitHeld(t, s, c.rid+1)
	b := c.async(c.rid+2, "ack='1000'", "<x xmlns='urn:t'/>")
	if r := wait(t, a); r.Attr("ack") != strconv.FormatInt(c.rid+2, 10) {
		t.Errorf("response to rid+1: %s, want ack=%d", r, c.rid+2)
	}
	s.Send(wire.New("message"))
	if r := wait(t, b); r.Attr("ack") != "" {
		t.Errorf("response to the highest rid carries ack: %s", r)
	}
	c.rid += 2
	// The client acknowledges rid+1: its cached response is dropped.
	c.post("ack='"+strconv.FormatInt(c.rid, 10)+"'", "<message xmlns='jabber:client' to='echo'/>")
	if r := c.postRID(c.rid-1, "", ""); r.Attr("condition") != CondItemNotFound {
		t.Errorf("acknowledged response resent: %s", r)
	}
}

func TestServerClose(t *testing.T) {
	t.Run("held request carries the stream error", func(t *testing.T) {
		f := newFakeStream()
		m := NewManager(testOptions(f))
		c, _ := connect(t, m, "wait='6000' hold='1'")
		s := f.last()
		c.rid++
		held := c.async(c.rid, "", "")
		waitHeld(t, s, c.rid)
		s.Send(wire.New("message", "id", "last"))
		s.Close(wire.StreamError("conflict", ""))
		// The message goes out first, either alone (the flush won the race
		// with Close) or together with the terminate.
		r := wait(t, held)
		msgs := len(r.ChildrenNamed("message", ""))
		if r.Attr("type") != "terminate" {
			r = c.post("", "")
			msgs += len(r.ChildrenNamed("message", ""))
		}
		if r.Attr("type") != "terminate" || r.Attr("condition") != CondRemoteStreamError {
			t.Fatalf("got %s", r)
		}
		if se := r.Child("stream:error", ""); se == nil || se.Child("conflict", wire.NSStreams) == nil {
			t.Errorf("terminate lacks the stream error: %s", r)
		}
		if msgs != 1 {
			t.Errorf("the queued message was delivered %d times", msgs)
		}
	})
	t.Run("next request learns the end", func(t *testing.T) {
		f := newFakeStream()
		m := NewManager(testOptions(f))
		c, _ := connect(t, m, "wait='6000' hold='1'")
		s := f.last()
		s.Send(wire.New("message", "id", "last"))
		s.Close(nil)
		r := c.post("", "")
		if r.Attr("type") != "terminate" || r.Child("message", "") == nil {
			t.Errorf("got %s, want terminate with the queued message", r)
		}
		if s.Send(wire.New("message")) {
			t.Error("Send after Close accepted")
		}
	})
}

func TestManagerClose(t *testing.T) {
	f := newFakeStream()
	m := NewManager(testOptions(f))
	c, _ := connect(t, m, "wait='6000' hold='1'")
	held := c.async(c.rid+1, "", "")
	waitHeld(t, f.last(), c.rid+1)
	m.Close()
	if r := wait(t, held); r.Attr("condition") != CondSystemShutdown {
		t.Errorf("got %s", r)
	}
	r := parseResp(t, m.Handle(context.Background(), []byte(body("", 1, "to='example.com'", "")), Meta{}))
	if r.Attr("condition") != CondSystemShutdown {
		t.Errorf("new session after Close: %s", r)
	}
}

func TestSlowConsumer(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	opts.MaxPendingBytes = 200
	m := NewManager(opts)
	connect(t, m, "wait='6000' hold='1'")
	s := f.last()
	ok := true
	for i := 0; i < 20 && ok; i++ {
		ok = s.Send(wire.New("message").Append(wire.New("body").SetText(strings.Repeat("x", 50))))
	}
	if ok {
		t.Fatal("Send kept accepting past MaxPendingBytes")
	}
	if err := f.end(t); !errors.Is(err, ErrBinding) {
		t.Errorf("stream ended with %v", err)
	}
}

// A client whose ack shows it missed a response gets report and time at
// once (XEP-0124 §9.2), and the missing response from the cache on resend.
func TestAckReport(t *testing.T) {
	f := newFakeStream()
	opts := testOptions(f)
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	opts.Now = clk.Now
	m := NewManager(opts)
	c, _ := connect(t, m, "wait='6000' hold='1' ack='1'")
	lost := c.post("", `<message xmlns='jabber:client' to='echo' id='e1'/>`) // rid 1001
	f.next(t)
	clk.Add(10 * opts.Second)
	c.rid++
	r := c.postRID(c.rid, "ack='1000'", "") // the client never saw 1001's answer
	if r.Attr("report") != "1001" || r.Attr("time") != strconv.FormatInt((10*opts.Second).Milliseconds(), 10) {
		t.Fatalf("got %s, want report='1001' with time", r)
	}
	if again := c.postRID(1001, "", ""); again.String() != lost.String() {
		t.Errorf("resend of 1001 got %s, want %s", again, lost)
	}
}

// keySeq returns K(1)..K(n) of XEP-0124 §15.3: K(1) = hex(SHA-1(seed)).
func keySeq(seed string, n int) []string {
	ks := make([]string, n+1)
	prev := seed
	for i := 1; i <= n; i++ {
		sum := sha1.Sum([]byte(prev))
		ks[i] = hex.EncodeToString(sum[:])
		prev = ks[i]
	}
	return ks
}

func TestKeySequence(t *testing.T) {
	k := keySeq("seed", 4)
	k2 := keySeq("other seed", 3)
	for _, tc := range []struct {
		name  string
		steps []string // key attributes of the requests after creation
		ok    int      // how many succeed before item-not-found (len = all)
	}{
		{"valid sequence", []string{"key='" + k[3] + "'", "key='" + k[2] + "'"}, 2},
		{"switch to a new sequence", []string{"key='" + k[3] + "'", "key='" + k[2] + "'", "key='" + k[1] + "' newkey='" + k2[3] + "'", "key='" + k2[2] + "'"}, 4},
		{"wrong key", []string{"key='" + k[3] + "'", "key='" + k[3] + "'"}, 1},
		{"missing key", []string{""}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStream()
			m := NewManager(testOptions(f))
			c, _ := connect(t, m, "wait='6000' hold='1' newkey='"+k[4]+"'")
			for i, attrs := range tc.steps {
				r := c.post(attrs, "<message xmlns='jabber:client' to='echo'/>")
				failed := r.Attr("condition") == CondItemNotFound
				if failed != (i >= tc.ok) {
					t.Fatalf("request %d (%s): %s", i, attrs, r)
				}
				if failed {
					return
				}
			}
		})
	}
}
