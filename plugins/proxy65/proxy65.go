// Package proxy65 is a XEP-0065 SOCKS5 bytestreams proxy: two clients that
// cannot reach each other directly (behind NAT, or, as in the Smack
// integration tests, on loopback only, which Smack refuses to offer as
// its own streamhost) both connect to the proxy, which relays the bytes
// once the initiator activates the stream.
//
// The proxy's JID is the server's domain: the domain lists itself in
// disco#items and reports the identity proxy/bytestreams, so clients find
// it with the usual XEP-0065 §4 discovery. IQs to the domain in the
// bytestreams namespace:
//   - get <query/>: the streamhost (this node's advertised host and port);
//   - set <query sid='S'><activate>TARGET</activate></query> from the
//     initiator: the two connections whose SOCKS5 address is
//     SHA1(S + initiator + TARGET) are joined.
//
// It is off unless configured, since it opens a port:
//
//	plugins:
//	  settings:
//	    xep0065.proxy:
//	      listen: "0.0.0.0:7777"   # where the SOCKS5 listener binds ("" = off)
//	      host: "proxy.example.com" # what clients are told to dial (default: the listen host)
//
// Cluster: each node runs its own listener and advertises it; a streamhost
// query and the activation come from the same initiator session, so both
// are answered by the node that session is on, whose listener both
// clients dialled.
package proxy65

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0065.proxy"

// NS is the bytestreams namespace.
const NS = "http://jabber.org/protocol/bytestreams"

const (
	// handshakeTimeout bounds a client's SOCKS5 greeting and request.
	handshakeTimeout = 10 * time.Second
	// pendingTimeout is how long a connection waits for its peer and the
	// activation before it is closed.
	pendingTimeout = 60 * time.Second
	// maxPending bounds connections waiting for activation.
	maxPending = 1024
)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the proxy.
type Plugin struct {
	host     plugins.Host
	ln       net.Listener
	advHost  string
	advPort  string
	wg       sync.WaitGroup
	mu       sync.Mutex
	pending  map[string]*pair // SOCKS5 address (hex SHA-1) → waiting connections
	relaying map[net.Conn]struct{}
	closed   bool
}

type pair struct {
	conns []net.Conn // target first, then initiator
	timer *time.Timer
}

var (
	_ plugins.IQHandler       = (*Plugin)(nil)
	_ plugins.DiscoFeatures   = (*Plugin)(nil)
	_ plugins.DiscoIdentities = (*Plugin)(nil)
	_ plugins.DiscoItems      = (*Plugin)(nil)
	_ plugins.Configurable    = (*Plugin)(nil)
)

// Settings documents plugins.settings["xep0065.proxy"].
func (p *Plugin) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{
		{Key: "listen", Type: "string", Default: "", Doc: "address the SOCKS5 relay binds, such as 0.0.0.0:7777 (empty: no proxy)"},
		{Key: "host", Type: "string", Default: "the listen host", Doc: "host name or address clients are told to dial"},
	}
}

// New returns the plugin.
func New() *Plugin {
	return &Plugin{pending: map[string]*pair{}, relaying: map[net.Conn]struct{}{}}
}

func (p *Plugin) ID() string { return ID }

// Addr returns the listener's address, or nil when the proxy is off.
func (p *Plugin) Addr() net.Addr {
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

func (p *Plugin) enabled() bool { return p.ln != nil }

func (p *Plugin) DiscoFeatures() []string {
	if !p.enabled() {
		return nil
	}
	return []string{NS}
}

func (p *Plugin) DiscoIdentities() []plugins.Identity {
	if !p.enabled() {
		return nil
	}
	return []plugins.Identity{{Category: "proxy", Type: "bytestreams", Name: "SOCKS5 Bytestreams"}}
}

func (p *Plugin) DiscoItems(ctx context.Context, from string) []plugins.DiscoItem {
	if !p.enabled() {
		return nil
	}
	return []plugins.DiscoItem{{JID: p.host.Domain(), Name: "SOCKS5 Bytestreams"}}
}

// IQNamespaces is asked on every IQ: it returns a shared map.
func (p *Plugin) IQNamespaces() map[string]plugins.Target { return namespaces }

var namespaces = map[string]plugins.Target{NS: plugins.ToServer}

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host = host
	listen := plugins.SettingString(host.Config(), ID, "listen", "")
	if listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	p.ln = ln
	h, port, _ := net.SplitHostPort(ln.Addr().String())
	p.advHost = plugins.SettingString(host.Config(), ID, "host", h)
	p.advPort = port
	host.Logger().Info("SOCKS5 bytestreams proxy listening", "addr", ln.Addr().String(), "advertised", net.JoinHostPort(p.advHost, p.advPort))
	p.wg.Add(1)
	go p.accept()
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	for _, pr := range p.pending {
		pr.timer.Stop()
		for _, c := range pr.conns {
			c.Close()
		}
	}
	p.pending = map[string]*pair{}
	for c := range p.relaying {
		c.Close()
	}
	p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
	p.wg.Wait()
	return nil
}

// HandleIQ answers streamhost queries and activations.
func (p *Plugin) HandleIQ(ctx context.Context, iq *plugins.IQ) (*wire.Element, error) {
	if !p.enabled() {
		return nil, wire.ErrServiceUnavailable
	}
	q := iq.Payload()
	switch iq.Stanza.Type() {
	case "get":
		res := wire.NewNS("query", NS)
		res.Append(wire.New("streamhost", "jid", p.host.Domain(), "host", p.advHost, "port", p.advPort))
		return res, nil
	case "set":
		sid := q.Attr("sid")
		target := wire.JIDOf(q.ChildText("activate", "")).String()
		if sid == "" || target == "" || !iq.FromLocal {
			return nil, wire.ErrBadRequest
		}
		return nil, p.activate(Address(sid, iq.From, target))
	}
	return nil, wire.ErrBadRequest
}

// Address is the SOCKS5 DST.ADDR of a bytestream (XEP-0065 §5.3.2).
func Address(sid, initiator, target string) string {
	sum := sha1.Sum([]byte(sid + initiator + target))
	return hex.EncodeToString(sum[:])
}

// activate joins the two connections of a stream and relays between them.
func (p *Plugin) activate(addr string) error {
	p.mu.Lock()
	pr := p.pending[addr]
	if pr == nil || len(pr.conns) != 2 {
		p.mu.Unlock()
		return wire.ErrItemNotFound.WithText("both parties must be connected before activation")
	}
	delete(p.pending, addr)
	pr.timer.Stop()
	a, b := pr.conns[0], pr.conns[1]
	p.relaying[a], p.relaying[b] = struct{}{}, struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go p.join(a, b)
	return nil
}

// join relays both ways until both directions end, then closes both.
func (p *Plugin) join(a, b net.Conn) {
	defer p.wg.Done()
	done := make(chan struct{})
	go func() {
		copyHalf(a, b)
		close(done)
	}()
	copyHalf(b, a)
	<-done
	a.Close()
	b.Close()
	p.mu.Lock()
	delete(p.relaying, a)
	delete(p.relaying, b)
	p.mu.Unlock()
}

// copyHalf copies src to dst and passes the end of stream on.
func copyHalf(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (p *Plugin) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.host.Logger().Warn("proxy65: accept", "err", err)
			return
		}
		p.wg.Add(1)
		go p.handshake(c)
	}
}

// handshake runs the SOCKS5 greeting and CONNECT request (RFC 1928, as
// XEP-0065 §5.3 restricts it: no authentication, domain-name address, port
// 0) and parks the connection under its address.
func (p *Plugin) handshake(c net.Conn) {
	defer p.wg.Done()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	addr, err := socks5Request(c)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.pending[addr]
	if p.closed || (pr == nil && len(p.pending) >= maxPending) || (pr != nil && len(pr.conns) >= 2) {
		c.Close()
		return
	}
	if pr == nil {
		pr = &pair{}
		pr.timer = time.AfterFunc(pendingTimeout, func() { p.expire(addr, pr) })
		p.pending[addr] = pr
	}
	pr.conns = append(pr.conns, c)
}

func (p *Plugin) expire(addr string, pr *pair) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending[addr] != pr {
		return
	}
	delete(p.pending, addr)
	for _, c := range pr.conns {
		c.Close()
	}
}

// socks5Request reads the greeting and request and answers both; it
// returns the requested address.
func socks5Request(c net.Conn) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return "", err
	}
	if hdr[0] != 5 {
		return "", errSOCKS
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return "", err
	}
	noAuth := false
	for _, m := range methods {
		if m == 0 {
			noAuth = true
		}
	}
	if !noAuth {
		_, _ = c.Write([]byte{5, 0xff})
		return "", errSOCKS
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return "", err
	}
	var req [5]byte // VER CMD RSV ATYP LEN
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return "", err
	}
	if req[0] != 5 || req[1] != 1 || req[3] != 3 {
		_, _ = c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) // command not supported
		return "", errSOCKS
	}
	rest := make([]byte, int(req[4])+2)
	if _, err := io.ReadFull(c, rest); err != nil {
		return "", err
	}
	addr := string(rest[:req[4]])
	reply := append([]byte{5, 0, 0, 3, req[4]}, rest...)
	if _, err := c.Write(reply); err != nil {
		return "", err
	}
	return addr, nil
}

var errSOCKS = errors.New("proxy65: bad SOCKS5 request")

// Streamhost returns the advertised host and port (tests).
func (p *Plugin) Streamhost() (string, int) {
	n, _ := strconv.Atoi(p.advPort)
	return p.advHost, n
}
