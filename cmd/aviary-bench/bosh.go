package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// BOSH (XEP-0124 with XEP-0206): the stream travels in <body/> elements of
// HTTP POSTs. The carrier keeps one empty request waiting at the server
// (hold=1) for what it sends, and writes with a second one (requests=2),
// one write at a time. Responses are handed on in rid order. With
// -bosh-pause, once logged in, it waits that long after each answered poll
// before the next: what the server has for it waits in the server's queue
// meanwhile, as for a client on a slow network or saving battery.

const (
	nsHTTPBind = "http://jabber.org/protocol/httpbind"
	nsXBOSH    = "urn:xmpp:xbosh"
	// boshWait is how long the server may hold the waiting request.
	boshWait = 20
	// boshConns is how many HTTP connections a carrier keeps open: one
	// for the waiting request, one for writes (requests=2).
	boshConns = 2
)

var errBOSHTerminated = errors.New("aviary-bench: bosh session terminated")

type boshCarrier struct {
	url     string
	hc      *http.Client
	domain  string
	timeout time.Duration
	pause   atomic.Int64    // nanoseconds to wait after an answered poll (setPause)
	ctx     context.Context // cancelled by abort
	cancel  context.CancelFunc

	mu       sync.Mutex
	sid      string
	rid      int64
	deadline time.Time
	failed   error

	wmu sync.Mutex // one write request at a time

	// Responses go on in rid order: ready holds those that arrived before
	// an older one; nextRID is the oldest not yet handed on.
	dmu     sync.Mutex
	ready   map[int64][]*wire.Element
	nextRID int64
	in      chan *wire.Element
	dead    chan struct{}
}

// dialBOSH creates a BOSH session at o.Addr (an http:// base to which
// /http-bind is added, or the full URL) and reads the first features.
func dialBOSH(ctx context.Context, o dialOptions) (*conn, error) {
	url := httpBase(o.Addr)
	if !strings.HasSuffix(url, "/http-bind") {
		url += "/http-bind"
	}
	b := newBOSHCarrier(url, o.Domain, o.Timeout)
	if dl, has := ctx.Deadline(); has {
		b.setDeadline(dl)
	}
	c := &conn{car: b, transport: transportBOSH}
	rid := b.takeRID()
	body := fmt.Sprintf("<body content='text/xml; charset=utf-8' hold='1' rid='%d' to='%s' ver='1.11' wait='%d' xml:lang='en' xmpp:version='1.0' xmlns='%s' xmlns:xmpp='%s'/>",
		rid, o.Domain, boshWait, nsHTTPBind, nsXBOSH)
	resp, err := b.post(ctx, []byte(body))
	if err != nil {
		b.abort()
		return nil, fmt.Errorf("bosh session: %w", err)
	}
	sid := resp.Attr("sid")
	if sid == "" {
		b.abort()
		return nil, fmt.Errorf("bosh session: no sid in %s", resp.String())
	}
	b.mu.Lock()
	b.sid = sid
	b.mu.Unlock()
	b.deliver(rid, resp, nil)
	go b.pollLoop()
	if err := c.readFeatures(); err != nil {
		b.abort()
		return nil, err
	}
	return c, nil
}

// newBOSHCarrier returns a carrier for url, before its session exists.
//
// Each carrier has its own HTTP connections, as a browser tab keeps its
// own: with the shared default transport (two idle connections per host
// for the whole process) hundreds of carriers on one node closed their
// connection after almost every response. A server cannot tell a client
// that closed right after reading a response from one that vanished
// before, so it counted such responses as lost and sent what they carried
// again (XEP-0124 delivery is at least once): a SASL challenge came
// twice and the login failed.
func newBOSHCarrier(url, domain string, timeout time.Duration) *boshCarrier {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: boshConns,
		IdleConnTimeout:     (boshWait + 15) * time.Second,
	}
	b := &boshCarrier{url: url, domain: domain, timeout: timeout,
		hc:    &http.Client{Timeout: (boshWait + 15) * time.Second, Transport: tr},
		rid:   rand.Int64N(1 << 40),
		ready: map[int64][]*wire.Element{}, in: make(chan *wire.Element, 1024), dead: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.nextRID = b.rid + 1
	return b
}

func (b *boshCarrier) takeRID() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rid++
	return b.rid
}

// post sends one body and returns the response body.
func (b *boshCarrier) post(ctx context.Context, body []byte) (*wire.Element, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bosh: HTTP %s", resp.Status)
	}
	return wire.Parse(data, wire.Limits{MaxStanzaBytes: 16 << 20})
}

// send posts a body with the session's sid, the next rid and inner XML,
// and hands the response on in order.
func (b *boshCarrier) send(ctx context.Context, attrs string, inner []byte) error {
	b.mu.Lock()
	if b.failed != nil {
		err := b.failed
		b.mu.Unlock()
		return err
	}
	b.rid++
	rid, sid := b.rid, b.sid
	b.mu.Unlock()
	var body bytes.Buffer
	fmt.Fprintf(&body, "<body rid='%d' sid='%s' xmlns='%s' xmlns:xmpp='%s'%s", rid, sid, nsHTTPBind, nsXBOSH, attrs)
	if len(inner) == 0 {
		body.WriteString("/>")
	} else {
		body.WriteString(">")
		body.Write(inner)
		body.WriteString("</body>")
	}
	resp, err := b.post(ctx, body.Bytes())
	b.deliver(rid, resp, err)
	return err
}

// pollLoop keeps one empty request waiting at the server (after a pause,
// with setPause) until the carrier fails.
func (b *boshCarrier) pollLoop() {
	for {
		select {
		case <-b.dead:
			return
		default:
		}
		if err := b.send(b.ctx, "", nil); err != nil {
			return
		}
		if d := time.Duration(b.pause.Load()); d > 0 {
			select {
			case <-b.dead:
				return
			case <-time.After(d):
			}
		}
	}
}

// deliver hands a response's children on once every older response has
// been; an error or a terminating body ends the carrier.
func (b *boshCarrier) deliver(rid int64, resp *wire.Element, err error) {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	if err == nil && resp.Attr("type") == "terminate" {
		// A stream error inside (remote-stream-error) comes first.
		err = errBOSHTerminated
		if c := resp.Attr("condition"); c != "" && c != "remote-stream-error" {
			err = fmt.Errorf("%w: %s", errBOSHTerminated, c)
		}
	}
	if err != nil {
		var kids []*wire.Element
		if resp != nil {
			kids = resp.Children
		}
		b.ready[rid] = append(kids, nil) // nil: the end
		b.fail(err)
	} else {
		b.ready[rid] = resp.Children
	}
	for {
		kids, ok := b.ready[b.nextRID]
		if !ok {
			return
		}
		delete(b.ready, b.nextRID)
		b.nextRID++
		for _, el := range kids {
			if el == nil {
				return
			}
			select {
			case b.in <- el:
			case <-b.ctx.Done():
				return
			}
		}
	}
}

func (b *boshCarrier) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed == nil {
		b.failed = err
		close(b.dead)
	}
}

func (b *boshCarrier) header() error { return nil } // the creation answer is the header

func (b *boshCarrier) next() (*wire.Element, error) {
	b.mu.Lock()
	dl := b.deadline
	b.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case el := <-b.in:
		return el, nil
	default:
	}
	select {
	case el := <-b.in:
		return el, nil
	case <-b.dead:
		// What arrived before the end first.
		select {
		case el := <-b.in:
			return el, nil
		default:
		}
		b.mu.Lock()
		err := b.failed
		b.mu.Unlock()
		return nil, err
	case <-timeout:
		return nil, errors.New("bosh: timed out")
	}
}

func (b *boshCarrier) restart(domain string) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	ctx, cancel := b.writeCtx()
	defer cancel()
	return b.send(ctx, " to='"+domain+"' xml:lang='en' xmpp:restart='true'", nil)
}

// writeCtx bounds a write request by the deadline, if one is set.
func (b *boshCarrier) writeCtx() (context.Context, context.CancelFunc) {
	b.mu.Lock()
	dl := b.deadline
	b.mu.Unlock()
	if dl.IsZero() {
		return context.WithCancel(b.ctx)
	}
	return context.WithDeadline(b.ctx, dl)
}

func (b *boshCarrier) write(p []byte) error {
	parts, err := splitElements(p)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	ctx, cancel := b.writeCtx()
	defer cancel()
	return b.send(ctx, "", bytes.Join(parts, nil))
}

func (b *boshCarrier) end() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.mu.Lock()
	b.rid++
	rid, sid := b.rid, b.sid
	b.mu.Unlock()
	body := "<body rid='" + strconv.FormatInt(rid, 10) + "' sid='" + sid + "' type='terminate' xmlns='" + nsHTTPBind + "'/>"
	if req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, strings.NewReader(body)); err == nil {
		if resp, err := b.hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	b.abort()
}

func (b *boshCarrier) abort() {
	b.fail(io.EOF)
	b.cancel()
	b.hc.CloseIdleConnections()
}

// setPause makes the poller wait d after each answered poll.
func (b *boshCarrier) setPause(d time.Duration) { b.pause.Store(int64(d)) }

func (b *boshCarrier) setDeadline(t time.Time) {
	b.mu.Lock()
	b.deadline = t
	b.mu.Unlock()
}
