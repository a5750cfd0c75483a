package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	ws "github.com/coder/websocket"

	"github.com/aviary-im/aviary/wire"
)

// wsCarrier is an XMPP stream over a WebSocket (RFC 7395): <open/> and
// <close/> in the framing namespace, one element per message.
type wsCarrier struct {
	c       *ws.Conn
	domain  string
	timeout time.Duration

	mu       sync.Mutex
	deadline time.Time
	ctx      context.Context // cancelled by abort: ends a blocked read
	cancel   context.CancelFunc
}

func openElement(domain string) []byte {
	return []byte("<open xmlns='" + wire.NSFraming + "' to='" + domain + "' version='1.0'/>")
}

// dialWebSocket connects to o.Addr (a ws:// URL, or an http:// base to
// which /xmpp-websocket is added) and reads the stream's first features.
func dialWebSocket(ctx context.Context, o dialOptions) (*conn, error) {
	url := o.Addr
	if strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://") {
		url = "ws" + strings.TrimPrefix(httpBase(url), "http") + "/xmpp-websocket"
	}
	c, _, err := ws.Dial(ctx, url, &ws.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		return nil, fmt.Errorf("websocket dial: %w", err)
	}
	c.SetReadLimit(1 << 20)
	wc := &wsCarrier{c: c, domain: o.Domain, timeout: o.Timeout}
	wc.ctx, wc.cancel = context.WithCancel(context.Background())
	if dl, has := ctx.Deadline(); has {
		wc.setDeadline(dl)
	}
	cn := &conn{car: wc, transport: transportWebSocket}
	if err := wc.write(openElement(o.Domain)); err != nil {
		wc.abort()
		return nil, err
	}
	if err := cn.readFeatures(); err != nil {
		wc.abort()
		return nil, err
	}
	return cn, nil
}

func (c *wsCarrier) opCtx() (context.Context, context.CancelFunc) {
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	if dl.IsZero() {
		return context.WithCancel(c.ctx)
	}
	return context.WithDeadline(c.ctx, dl)
}

func (c *wsCarrier) read() (*wire.Element, error) {
	ctx, cancel := c.opCtx()
	defer cancel()
	_, data, err := c.c.Read(ctx)
	if err != nil {
		if ws.CloseStatus(err) != -1 {
			return nil, io.EOF
		}
		return nil, err
	}
	return wire.Parse(data, wire.Limits{})
}

func (c *wsCarrier) header() error {
	el, err := c.read()
	if err != nil {
		return fmt.Errorf("websocket open: %w", err)
	}
	if el.Name != "open" {
		if se := c.closeErr(el); se != nil {
			return se
		}
		return fmt.Errorf("websocket: expected <open/>, got %s", el.String())
	}
	return nil
}

// closeErr turns a <close/> into the stream's end (see-other-uri: a
// redirect).
func (c *wsCarrier) closeErr(el *wire.Element) error {
	if el.Name != "close" || el.NS() != wire.NSFraming {
		return nil
	}
	if uri := el.Attr("see-other-uri"); uri != "" {
		return &streamErr{Cond: "see-other-host", Host: uri}
	}
	return io.EOF
}

func (c *wsCarrier) next() (*wire.Element, error) {
	el, err := c.read()
	if err != nil {
		return nil, err
	}
	if err := c.closeErr(el); err != nil {
		return nil, err
	}
	return el, nil
}

func (c *wsCarrier) restart(domain string) error { return c.write(openElement(domain)) }

func (c *wsCarrier) write(b []byte) error {
	parts := [][]byte{b}
	if !strings.HasPrefix(string(b), "<open ") && !strings.HasPrefix(string(b), "<close ") {
		var err error
		if parts, err = splitElements(b); err != nil {
			return err
		}
	}
	ctx, cancel := c.opCtx()
	defer cancel()
	if c.timeout > 0 {
		var cancel2 context.CancelFunc
		ctx, cancel2 = context.WithTimeout(ctx, c.timeout)
		defer cancel2()
	}
	for _, p := range parts {
		if err := c.c.Write(ctx, ws.MessageText, p); err != nil {
			return err
		}
	}
	return nil
}

func (c *wsCarrier) end() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = c.c.Write(ctx, ws.MessageText, []byte("<close xmlns='"+wire.NSFraming+"'/>"))
	cancel()
	c.abort()
}

func (c *wsCarrier) abort() {
	c.cancel()
	_ = c.c.CloseNow()
}

func (c *wsCarrier) setDeadline(t time.Time) {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
}
