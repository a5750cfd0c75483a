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
	"net"
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

// GoneKind is the cluster message kind by which a node that forwarded a
// request tells the session's owner that the request's client went away
// or that the response could not be written to it (delivery.go).
const GoneKind = "bosh.gone"

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

	// stopping ends when Close runs: forwarded requests waiting for their
	// owner are answered then, not left to the HTTP server's shutdown.
	stopping context.Context
	stop     context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool

	stats counters // stats.go
}

// NewManager returns a Manager. When opts.Cluster is set it registers the
// forwarding handler with it, which must happen before the cluster starts.
func NewManager(opts Options) *Manager {
	opts.applyDefaults()
	m := &Manager{opts: opts, sessions: map[string]*Session{}}
	m.stopping, m.stop = context.WithCancel(context.Background())
	if opts.Cluster != nil {
		m.node = opts.Cluster.NodeName()
		opts.Cluster.Handle(ForwardKind, m.handleForward)
		opts.Cluster.Handle(GoneKind, m.handleGone)
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
// Requests forwarded to other nodes are answered at once with an empty
// body (their sessions live on there; the client's next request reaches
// another node).
func (m *Manager) Close() {
	m.stop()
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
	m.stats.requests.Add(1)
	raw, err := io.ReadAll(io.LimitReader(r.Body, int64(m.opts.MaxBodyBytes)+1))
	if err != nil {
		// The body did not arrive whole: a client still there gets a
		// status XEP-0124 §17.1 allows rather than an empty 200.
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			m.writeBody(w, terminateBody(CondPolicyViolation))
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// The listener's body deadline passed (server/httplimit).
			w.Header().Set("Connection", "close")
			http.Error(w, "request body not received in time", http.StatusRequestTimeout)
			return
		}
		http.Error(w, "bad request: incomplete body", http.StatusBadRequest)
		return
	}
	rep := m.handle(r.Context(), raw, meta)
	if rep.body == nil {
		// The client went away before there was an answer (or the node
		// is stopping): whoever may still read gets a proper body.
		m.writeBody(w, m.fallbackBody(raw))
		return
	}
	err = m.writeBody(w, rep.body)
	// A write into a connection whose client has gone may still succeed.
	// When the server has already read the connection's end (the context
	// ended, and not because this node is stopping) count it as lost, so
	// that what it carried goes out again at once. When it has not, the
	// write proves nothing either: the session keeps what the response
	// carried until the client's later requests confirm it (delivery.go).
	if err != nil || (r.Context().Err() != nil && m.stopping.Err() == nil) {
		rep.report(lost)
		return
	}
	rep.report(delivered)
}

// writeBody writes a response body and flushes it, so that a failed write
// is seen here.
func (m *Manager) writeBody(w http.ResponseWriter, body []byte) error {
	h := w.Header()
	h.Set("Content-Type", "text/xml; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if _, err := w.Write(body); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// fallbackBody answers a request that got no response: the node is
// stopping (system-shutdown for a new session), or its client went away;
// a request of a session gets a body without payloads, which holds
// nothing back from the session.
func (m *Manager) fallbackBody(raw []byte) []byte {
	if b := sniffBody(raw); b != nil && b.Attr("sid") != "" {
		return emptyBody()
	}
	if m.stopping.Err() != nil {
		return terminateBody(CondSystemShutdown)
	}
	return terminateBody(CondRemoteConnectionFailed)
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

// Handle runs one raw request body and returns the response body, taken
// as written (the client's later requests confirm what it carried); nil
// means ctx ended before there was one (the client went away). Embedders
// and tests use it; ServeHTTP reports how its write went.
func (m *Manager) Handle(ctx context.Context, raw []byte, meta Meta) []byte {
	rep := m.handle(ctx, raw, meta)
	rep.report(delivered)
	return rep.body
}

// handle runs one raw request body. HTTP requests and requests forwarded
// from other nodes both come here.
func (m *Manager) handle(ctx context.Context, raw []byte, meta Meta) reply {
	if len(raw) > m.opts.MaxBodyBytes {
		m.failNamed(raw, CondPolicyViolation)
		return reply{body: terminateBody(CondPolicyViolation)}
	}
	body, err := wire.ParseNS(raw, wire.Limits{MaxStanzaBytes: m.opts.MaxBodyBytes})
	if err != nil {
		cond := CondBadRequest
		if errors.Is(err, wire.ErrStanzaTooLarge) || errors.Is(err, wire.ErrTooDeep) {
			cond = CondPolicyViolation
		}
		m.failNamed(raw, cond)
		return reply{body: terminateBody(cond)}
	}
	if body.Name != "body" || body.NS() != NSHTTPBind {
		m.failNamed(raw, CondBadRequest)
		return reply{body: terminateBody(CondBadRequest)}
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
		m.stats.itemNotFound.Add(1)
		return reply{body: terminateBody(CondItemNotFound)}
	}
	m.stats.forwarded.Add(1)
	return m.forward(ctx, owner, sid, body, raw, meta)
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
func (m *Manager) create(ctx context.Context, body *wire.Element, meta Meta) reply {
	rid, _, ok := parseUint(body, "rid")
	if !ok || rid == 0 || rid > maxRID {
		return reply{body: terminateBody(CondBadRequest)}
	}
	if to := body.Attr("to"); to != "" && !strings.EqualFold(to, m.opts.Domain) {
		return reply{body: terminateBody(CondHostUnknown)}
	}
	maxWait := secs(m.opts.MaxWait)
	wait, present, ok := parseUint(body, "wait")
	if !ok {
		return reply{body: terminateBody(CondBadRequest)}
	}
	if !present || wait > int64(maxWait) {
		wait = int64(maxWait)
	}
	hold, present, ok := parseUint(body, "hold")
	if !ok {
		return reply{body: terminateBody(CondBadRequest)}
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
		return reply{body: terminateBody(CondSystemShutdown)}
	}
	m.sessions[s.sid] = s
	m.mu.Unlock()

	s.mu.Lock()
	r, _, cond := s.admitLocked(body, rid, true)
	if cond != "" {
		s.closeLocked(cond, nil, ErrBinding)
		s.mu.Unlock()
		return reply{body: terminateBody(cond)}
	}
	done := r.done
	s.mu.Unlock()
	if m.opts.OnSession != nil {
		m.opts.OnSession(s)
	}
	return s.await(ctx, r, done)
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
// When the client goes away first, or the response cannot be written to
// it, the owner is told (GoneKind) so that the request holds nothing back
// and what its response carried is sent again. A request that was still
// waiting when this node stops gets an empty body: the session goes on
// on its owner, where the client's next request is forwarded from
// another node.
func (m *Manager) forward(ctx context.Context, owner, sid string, body *wire.Element, raw []byte, meta Meta) reply {
	payload, err := json.Marshal(forwardMsg{Body: raw, Remote: meta.RemoteAddr, Secure: meta.Secure})
	if err != nil {
		return reply{body: terminateBody(CondInternalServerError)}
	}
	rid, _, _ := parseUint(body, "rid")
	cctx, cancel := context.WithTimeout(ctx, m.opts.MaxWait+m.opts.ForwardTimeout)
	defer cancel()
	unhook := context.AfterFunc(m.stopping, cancel)
	defer unhook()
	gone := func(outcome) { m.tellGone(owner, sid, rid) }
	resp, err := m.opts.Cluster.Call(cctx, owner, ForwardKind, payload)
	switch {
	case err == nil && len(resp) > 0:
		return reply{body: resp, settle: func(o outcome) {
			if o == lost {
				gone(o)
			}
		}}
	case err == nil:
		// An owner that had nothing to say (it is stopping): the session
		// gets nothing from this request.
		gone(lost)
		return reply{body: emptyBody()}
	case ctx.Err() != nil:
		gone(lost) // the client went away while its request was held
		return reply{}
	case m.stopping.Err() != nil:
		gone(lost)
		return reply{body: emptyBody()}
	case errors.Is(err, cluster.ErrNodeGone), errors.Is(err, cluster.ErrNoHandler):
		// The owner is gone, and its sessions with it (or this node cannot
		// reach it, which the client cannot tell apart).
		m.opts.Logger.Info("bosh: the node owning a session cannot be reached; the client must start a new session",
			"node", owner, "sid", sid, "err", err)
		m.stats.itemNotFound.Add(1)
		return reply{body: terminateBody(CondItemNotFound)}
	default:
		m.opts.Logger.Warn("bosh: forwarding failed", "node", owner, "err", err)
		gone(lost)
		return reply{body: terminateBody(CondRemoteConnectionFailed)}
	}
}

// goneMsg names a forwarded request whose client went away.
type goneMsg struct {
	SID string `json:"sid"`
	RID int64  `json:"rid"`
}

// tellGone tells owner that the forwarded request rid of sid reached no
// client. Best effort: an owner that cannot be told is stopping or gone.
func (m *Manager) tellGone(owner, sid string, rid int64) {
	payload, err := json.Marshal(goneMsg{SID: sid, RID: rid})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.ForwardTimeout)
	defer cancel()
	if err := m.opts.Cluster.Send(ctx, owner, GoneKind, payload); err != nil {
		m.opts.Logger.Debug("bosh: could not tell the owner that a client left", "node", owner, "sid", sid, "err", err)
	}
}

// handleGone runs another node's report that a request it forwarded to us
// reached no client.
func (m *Manager) handleGone(ctx context.Context, from string, payload []byte) ([]byte, error) {
	var msg goneMsg
	if err := json.Unmarshal(payload, &msg); err != nil {
		return nil, fmt.Errorf("bosh: bad gone report from %s: %w", from, err)
	}
	if s := m.Session(msg.SID); s != nil {
		s.gone(msg.RID)
	}
	return nil, nil
}

// handleForward runs a request another node forwarded to us. The response
// goes back over the link; that node reports a loss (GoneKind).
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
				m.stats.itemNotFound.Add(1)
				return terminateBody(CondItemNotFound), nil
			}
		}
	}
	rep := m.handle(ctx, msg.Body, Meta{RemoteAddr: msg.Remote, Secure: msg.Secure})
	if rep.body == nil {
		// Only when this node is stopping (the link's context ended):
		// never an empty reply, which the other node would pass on.
		return m.fallbackBody(msg.Body), nil
	}
	rep.report(handedOn)
	return rep.body, nil
}
