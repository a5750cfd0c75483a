package bosh

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/wire"
)

// ForwardKind is the cluster message kind that carries a BOSH request to
// the node owning its session.
const ForwardKind = "bosh"

// Meta is what a request carries besides its body.
type Meta struct {
	// RemoteAddr is the client's address (host:port).
	RemoteAddr string
	// Secure says whether the request arrived over an encrypted (or trusted)
	// connection; it decides Session.Secure at creation.
	Secure bool
}

// Manager owns the BOSH sessions of one node and serves /http-bind.
type Manager struct {
	opts   Options
	node   string
	prefix string // sid prefix naming this node

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
}

// NewManager returns a Manager. When opts.Cluster is set it registers the
// forwarding handler with it, which must happen before the cluster starts.
func NewManager(opts Options) *Manager {
	opts.applyDefaults()
	m := &Manager{opts: opts, sessions: map[string]*Session{}}
	if opts.Cluster != nil {
		m.node = opts.Cluster.NodeName()
		opts.Cluster.Handle(ForwardKind, m.handleForward)
	}
	m.prefix = base64.RawURLEncoding.EncodeToString([]byte(m.node))
	return m
}

// Len returns the number of live sessions.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// Session returns a live session by sid, or nil.
func (m *Manager) Session(sid string) *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[sid]
}

// Close ends every session with system-shutdown and refuses new ones.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	all := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		s.closeLocked(CondSystemShutdown, nil, ErrBinding)
		s.mu.Unlock()
	}
}

func (m *Manager) removeAfter(s *Session, d time.Duration) {
	remove := func() {
		m.mu.Lock()
		if m.sessions[s.sid] == s {
			delete(m.sessions, s.sid)
		}
		m.mu.Unlock()
	}
	if d <= 0 {
		go remove()
		return
	}
	time.AfterFunc(d, remove)
}

// newSID returns a session id naming this node (see the package comment).
func (m *Manager) newSID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return m.prefix + "." + hex.EncodeToString(b[:])
}

// OwnerOf returns the node a sid names, and false for a sid we never issue.
func OwnerOf(sid string) (string, bool) {
	i := strings.LastIndexByte(sid, '.')
	if i < 0 {
		return "", false
	}
	node, err := base64.RawURLEncoding.DecodeString(sid[:i])
	if err != nil {
		return "", false
	}
	return string(node), true
}

// ServeHTTP serves /http-bind: POSTed bodies, and CORS preflights.
func (m *Manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.ServeHTTPWithMeta(w, r, Meta{RemoteAddr: r.RemoteAddr, Secure: r.TLS != nil})
}

// ServeHTTPWithMeta is ServeHTTP with the security decision made by the
// caller (httpd trusts loopback or a proxy as configured).
func (m *Manager) ServeHTTPWithMeta(w http.ResponseWriter, r *http.Request, meta Meta) {
	if !m.cors(w, r) {
		return
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet, http.MethodHead:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Aviary BOSH endpoint (XEP-0124, XEP-0206): POST <body/> here.\n")
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(m.opts.MaxBodyBytes)+1))
	if err != nil {
		return // the client went away
	}
	resp := m.Handle(r.Context(), raw, meta)
	if resp == nil {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/xml; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(resp)))
	w.Write(resp)
}

// cors sets the CORS headers (XEP-0124 needs them for pages on another
// origin) and answers preflights. It returns false when the request is done.
func (m *Manager) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	allowed := ""
	if origin != "" {
		allowed = AllowedOrigin(m.opts.CORSOrigins, origin)
	}
	h := w.Header()
	if allowed != "" {
		h.Set("Access-Control-Allow-Origin", allowed)
		if allowed != "*" {
			h.Add("Vary", "Origin")
		}
		h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
	}
	if r.Method != http.MethodOptions {
		return true
	}
	if origin != "" && allowed == "" {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return false
	}
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" && allowed != "" {
		h.Set("Access-Control-Allow-Headers", rh)
	}
	w.WriteHeader(http.StatusNoContent)
	return false
}

// AllowedOrigin returns the Access-Control-Allow-Origin value for origin
// under the configured list ("*" allows any), or "" when it is refused.
func AllowedOrigin(list []string, origin string) string {
	for _, o := range list {
		if o == "*" {
			return "*"
		}
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return origin
		}
	}
	return ""
}

// Handle runs one raw request body and returns the response body; nil
// means ctx ended before there was one. HTTP requests and requests
// forwarded from other nodes both come here.
func (m *Manager) Handle(ctx context.Context, raw []byte, meta Meta) []byte {
	if len(raw) > m.opts.MaxBodyBytes {
		m.failNamed(raw, CondPolicyViolation)
		return terminateBody(CondPolicyViolation)
	}
	body, err := wire.ParseNS(raw, wire.Limits{MaxStanzaBytes: m.opts.MaxBodyBytes})
	if err != nil {
		cond := CondBadRequest
		if errors.Is(err, wire.ErrStanzaTooLarge) || errors.Is(err, wire.ErrTooDeep) {
			cond = CondPolicyViolation
		}
		m.failNamed(raw, cond)
		return terminateBody(cond)
	}
	if body.Name != "body" || body.NS() != NSHTTPBind {
		m.failNamed(raw, CondBadRequest)
		return terminateBody(CondBadRequest)
	}
	sid := body.Attr("sid")
	if sid == "" {
		return m.create(ctx, body, meta)
	}
	m.mu.Lock()
	s := m.sessions[sid]
	m.mu.Unlock()
	if s != nil {
		return s.handle(ctx, body)
	}
	owner, ok := OwnerOf(sid)
	if !ok || owner == m.node || m.opts.Cluster == nil {
		return terminateBody(CondItemNotFound)
	}
	return m.forward(ctx, owner, raw, meta)
}

// failNamed ends the local session a broken body names, if it can be read.
func (m *Manager) failNamed(raw []byte, cond string) {
	b := sniffBody(raw)
	if b == nil || b.Attr("sid") == "" {
		return
	}
	m.mu.Lock()
	s := m.sessions[b.Attr("sid")]
	m.mu.Unlock()
	if s != nil {
		s.fail(cond)
	}
}

// create starts a session (XEP-0124 §7, XEP-0206 §5) and returns the
// session creation response once the stream has something to say.
func (m *Manager) create(ctx context.Context, body *wire.Element, meta Meta) []byte {
	rid, _, ok := parseUint(body, "rid")
	if !ok || rid == 0 || rid > maxRID {
		return terminateBody(CondBadRequest)
	}
	if to := body.Attr("to"); to != "" && !strings.EqualFold(to, m.opts.Domain) {
		return terminateBody(CondHostUnknown)
	}
	maxWait := secs(m.opts.MaxWait)
	wait, present, ok := parseUint(body, "wait")
	if !ok {
		return terminateBody(CondBadRequest)
	}
	if !present || wait > int64(maxWait) {
		wait = int64(maxWait)
	}
	hold, present, ok := parseUint(body, "hold")
	if !ok {
		return terminateBody(CondBadRequest)
	}
	if !present {
		hold = 1
	}
	requests := m.opts.MaxRequests
	hold = min(hold, int64(m.opts.MaxHold), int64(requests-1))
	lang := body.Attr("xml:lang")
	if lang == "" {
		lang = "en"
	}
	version := xboshAttr(body, "version")
	if version == "" {
		version = "1.0"
	}
	s := &Session{
		m:           m,
		sid:         m.newSID(),
		remoteAddr:  meta.RemoteAddr,
		secure:      meta.Secure,
		created:     m.opts.Now(),
		waitSecs:    int(wait),
		hold:        int(hold),
		requests:    requests,
		inactSecs:   secs(m.opts.Inactivity),
		pollSecs:    secs(m.opts.Polling),
		maxPause:    secs(m.opts.MaxPause),
		ackMode:     body.Attr("ack") == "1",
		ver:         negotiateVer(body.Attr("ver")),
		xmppVersion: version,
		creationRID: rid,
		lastRID:     rid - 1,
		pending:     map[int64]*request{},
		cache:       map[int64]*cached{},
		inboxCh:     make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	s.header = wire.New("stream:stream",
		"xmlns", wire.NSClient, "xmlns:stream", wire.NSStream,
		"to", m.opts.Domain, "version", version, "xml:lang", lang)
	s.header.SetAttr("from", body.Attr("from")) // the client's JID, if it says (XEP-0124 §7.1)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return terminateBody(CondSystemShutdown)
	}
	m.sessions[s.sid] = s
	m.mu.Unlock()

	s.mu.Lock()
	r, _, cond := s.admitLocked(body, rid, true)
	if cond != "" {
		s.closeLocked(cond, nil, ErrBinding)
		s.mu.Unlock()
		return terminateBody(cond)
	}
	done := r.done
	s.mu.Unlock()
	if m.opts.OnSession != nil {
		m.opts.OnSession(s)
	}
	select {
	case b := <-done:
		return b
	case <-ctx.Done():
		return nil
	}
}

// negotiateVer answers with the client's version when it is older than
// ours (XEP-0124 §7.2), else ours.
func negotiateVer(client string) string {
	if client == "" {
		return protocolVersion
	}
	cmaj, cmin, ok1 := splitVer(client)
	omaj, omin, _ := splitVer(protocolVersion)
	if !ok1 || cmaj > omaj || (cmaj == omaj && cmin >= omin) {
		return protocolVersion
	}
	return client
}

func splitVer(v string) (int, int, bool) {
	a, b, ok := strings.Cut(v, ".")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	return x, y, err1 == nil && err2 == nil
}

// forwardMsg is a request travelling to the node that owns its session.
type forwardMsg struct {
	Body   []byte `json:"b"`
	Remote string `json:"r,omitempty"`
	Secure bool   `json:"s,omitempty"`
}

// forward sends a request to the owning node and returns its response.
func (m *Manager) forward(ctx context.Context, owner string, raw []byte, meta Meta) []byte {
	payload, err := json.Marshal(forwardMsg{Body: raw, Remote: meta.RemoteAddr, Secure: meta.Secure})
	if err != nil {
		return terminateBody(CondInternalServerError)
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.MaxWait+m.opts.ForwardTimeout)
	defer cancel()
	resp, err := m.opts.Cluster.Call(ctx, owner, ForwardKind, payload)
	switch {
	case err == nil && len(resp) > 0:
		return resp
	case err == nil, ctx.Err() != nil:
		return nil // the client went away while its request was held
	case errors.Is(err, cluster.ErrNodeGone), errors.Is(err, cluster.ErrNoHandler):
		// The owner is gone, and its sessions with it.
		return terminateBody(CondItemNotFound)
	default:
		m.opts.Logger.Warn("bosh: forwarding failed", "node", owner, "err", err)
		return terminateBody(CondRemoteConnectionFailed)
	}
}

// handleForward runs a request another node forwarded to us.
func (m *Manager) handleForward(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var msg forwardMsg
	if err := json.Unmarshal(payload, &msg); err != nil {
		return nil, fmt.Errorf("bosh: bad forwarded request from %s: %w", from, err)
	}
	body, err := wire.ParseNS(msg.Body, wire.Limits{MaxStanzaBytes: m.opts.MaxBodyBytes})
	if err == nil {
		if sid := body.Attr("sid"); sid != "" {
			m.mu.Lock()
			s := m.sessions[sid]
			m.mu.Unlock()
			if s == nil {
				// Never forward twice: a sid we do not hold is dead.
				return terminateBody(CondItemNotFound), nil
			}
		}
	}
	return m.Handle(ctx, msg.Body, Meta{RemoteAddr: msg.Remote, Secure: msg.Secure}), nil
}
