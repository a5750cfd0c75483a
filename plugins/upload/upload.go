// Package upload is XEP-0363 HTTP file upload: a service at upload.DOMAIN
// hands a local user a slot (a PUT URL and a GET URL) for a file of a
// given name, size and type; the user PUTs the file to the node's HTTP or
// HTTPS listener and shares the GET URL, which any node serves.
//
// Storage: what is known of a file is kept in the shared store (the map
// store "upload", owner the uploader's bare JID, one collection per file)
// as a "meta" item; a key/value index under the service's domain maps a
// file's ID to its owner for GET. Its contents (upload.store, see
// interface.go) are chunks of 256 KiB beside the meta item (store.go) or
// a file in a directory every node mounts (dirstore.go), written as the
// body is read and read back as the response is written, so neither
// direction holds a file in memory and every node of a cluster serves
// every file; GET answers Range requests. Deleting an account deletes its
// files: the store deletes its module state, the node that deletes it (or
// Reconcile) the contents in a directory and what they reserved.
//
// Slots: the file's ID is 128 random bits; the PUT URL carries an HMAC of
// the ID under a secret the cluster shares (kept in the store, made by
// the first node that needs it), so only the URL handed out can fill the
// slot, once, before upload.slot_timeout.
//
// A PUT moves its slot's end past the longest the upload may take (a
// chunk per http.read_body_timeout), so no node removes a slot whose
// upload is running.
//
// Expiry (expire.go): one node removes slots that ended unused and, with
// upload.expire_after, files older than that, then reconciles (quota.go).
//
// Limits (upload.*), each refusal the XEP's error with the limit in it:
// max_file_size (not-acceptable with <file-too-large><max-file-size/>),
// allowed_types (not-acceptable), user_quota and domain_quota
// (resource-constraint at slot time). user_quota is checked again when
// the PUT begins and, with the database store, by the store at every
// chunk under the owner's lock; domain_quota is a reservation every slot
// takes out of one counter the cluster shares (quota.go), which the PUT
// checks it still holds. A PUT past either gets 413.
package upload

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
	"github.com/aviary-im/aviary/plugins/disco"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// ID is the plugin's registered ID.
const ID = "xep0363.upload"

// NS is the upload namespace.
const NS = "urn:xmpp:http:upload:0"

// Prefix is the HTTP path files are uploaded to and served from.
const Prefix = "/upload/"

const (
	chunkSize = 256 << 10
	storeName = "upload"
	metaKey   = "meta"
	// metaSlack is what a user's meta items may add to the store's byte
	// count on top of the quota.
	metaSlack = 1 << 20
)

func init() { plugins.Register(ID, func() plugins.Plugin { return New() }) }

// Plugin is the upload service.
type Plugin struct {
	// Now is the clock slots expire by (tests set it).
	Now func() time.Time

	host   plugins.Host
	log    *slog.Logger
	cfg    conf.UploadConfig
	cors   []string
	domain string
	base   string
	files  storage.Map
	index  storage.KeyValue
	byTime storage.Archive // the expiry indexes (expire.go)
	store  fileStore
	wg     sync.WaitGroup
	stop   context.CancelFunc
	unhook func()
	secret []byte
	on     bool

	readTimeout, writeTimeout time.Duration // per chunk (http.read_body_timeout, http.write_timeout)
}

// meta is what is known of a file before and after its upload.
type meta struct {
	Name    string    `json:"name"`
	Size    int       `json:"size"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"` // the slot's end, for an upload not done
	Done    bool      `json:"done"`
}

var (
	_ plugins.Plugin      = (*Plugin)(nil)
	_ plugins.HTTPHandler = (*Plugin)(nil)
)

// New returns the plugin.
func New() *Plugin { return &Plugin{Now: time.Now} }

func (p *Plugin) ID() string         { return ID }
func (p *Plugin) HTTPPrefix() string { return Prefix }

// Domain is the service's domain ("" while it is off).
func (p *Plugin) Domain() string { return p.domain }

func (p *Plugin) Start(ctx context.Context, host plugins.Host) error {
	p.host, p.log = host, host.Logger()
	cfg := host.Config()
	p.cfg, p.cors = cfg.Upload, cfg.HTTP.CORSOrigins
	p.readTimeout, p.writeTimeout = orDefault(cfg.HTTP.ReadBodyTimeout), orDefault(cfg.HTTP.WriteTimeout)
	if p.cfg.URL == "" {
		return nil
	}
	p.domain = "upload." + host.Domain()
	p.base = strings.TrimSuffix(p.cfg.URL, "/")
	p.files = host.Store().Map(storeName)
	p.index = host.Store().KeyValue(storeName)
	p.byTime = host.Store().Archive(storeName)
	switch p.cfg.Store {
	case "directory":
		ds, err := newDirStore(p.cfg.Directory)
		if err != nil {
			return fmt.Errorf("upload.directory: %w", err)
		}
		p.store = ds
	default:
		p.store = &chunkStore{files: p.files, limit: storage.Limits{Bytes: int64(p.cfg.UserQuota) + metaSlack}, log: p.log}
	}
	secret, err := p.loadSecret(ctx)
	if err != nil {
		return fmt.Errorf("upload: the slot secret: %w", err)
	}
	p.secret = secret
	if _, err := host.ServeDomain(plugins.Service{Domain: p.domain, Name: "HTTP File Upload", Handle: p.handle}); err != nil {
		return err
	}
	p.on = true
	p.unhook = host.Hooks().Add(plugins.EventUserDeleted, 0, p.userDeleted)
	var loopCtx context.Context
	loopCtx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	p.wg.Add(1)
	go p.expireLoop(loopCtx)
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error {
	if p.unhook != nil {
		p.unhook()
	}
	if p.stop != nil {
		p.stop()
	}
	p.wg.Wait()
	return nil
}

// loadSecret returns the cluster's slot secret, making it if no node did.
func (p *Plugin) loadSecret(ctx context.Context) ([]byte, error) {
	e, err := p.index.Get(ctx, p.domain, "secret")
	if err == nil {
		return e.Value, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if _, err := p.index.CompareAndSet(ctx, p.domain, "secret", 0, secret, storage.Limits{}); err != nil {
		if !errors.Is(err, storage.ErrConflict) {
			return nil, err
		}
		e, err := p.index.Get(ctx, p.domain, "secret") // another node was first
		return e.Value, err
	}
	return secret, nil
}

// handle answers what reaches the service's domain: disco and slot
// requests.
func (p *Plugin) handle(ctx context.Context, el *wire.Element) error {
	if el.Name != "iq" {
		if el.Name == "message" && !el.IsError() {
			return wire.ErrServiceUnavailable
		}
		return nil
	}
	if t := el.Type(); t != "get" && t != "set" {
		return nil
	}
	q := el.FirstChild()
	switch {
	case el.Type() == "get" && q != nil && q.Name == "query" && q.NS() == wire.NSDiscoInfo && q.Attr("node") == "":
		p.host.Route(ctx, wire.IQResult(el, p.info()))
	case el.Type() == "get" && q != nil && q.Name == "query" && q.NS() == wire.NSDiscoItems:
		p.host.Route(ctx, wire.IQResult(el, wire.NewNS("query", wire.NSDiscoItems)))
	case el.Type() == "get" && q != nil && q.Name == "request" && q.NS() == NS:
		slot, err := p.slot(ctx, el.From(), q)
		if err != nil {
			return p.refuse(ctx, el, err)
		}
		p.host.Route(ctx, wire.IQResult(el, slot))
	default:
		return wire.ErrServiceUnavailable
	}
	return nil
}

// info is the service's disco#info: identity, feature and the
// max-file-size form (XEP-0363 §3, XEP-0128).
func (p *Plugin) info() *wire.Element {
	q := disco.InfoElement("", []plugins.Identity{{Category: "store", Type: "file", Name: "HTTP File Upload"}}, []string{NS})
	x := wire.NewNS("x", "jabber:x:data").SetAttr("type", "result")
	x.Append(wire.New("field", "var", "FORM_TYPE", "type", "hidden").Append(wire.New("value").SetText(NS)))
	x.Append(wire.New("field", "var", "max-file-size").Append(wire.New("value").SetText(strconv.Itoa(p.cfg.MaxFileSize))))
	return q.Append(x)
}

// tooLarge is the refusal of a file past max_file_size, which carries
// the limit in the XEP's own element.
type tooLarge struct{ max int }

func (e tooLarge) Error() string { return fmt.Sprintf("upload: file larger than %d bytes", e.max) }

// refuse bounces a slot request with err: a *wire.StanzaError as is, a
// tooLarge with its <file-too-large/>, anything else as
// internal-server-error (logged).
func (p *Plugin) refuse(ctx context.Context, el *wire.Element, err error) error {
	var tl tooLarge
	if errors.As(err, &tl) {
		reply := wire.ErrorReply(el, wire.ErrNotAcceptable.WithText(tl.Error()))
		e := reply.Child("error", "")
		e.Append(wire.NewNS("file-too-large", NS).Append(wire.New("max-file-size").SetText(strconv.Itoa(tl.max))))
		p.host.Route(ctx, reply)
		return nil
	}
	var qe quotaError
	if errors.As(err, &qe) {
		return wire.ErrResourceConstraint.WithText(qe.Error())
	}
	var se *wire.StanzaError
	if errors.As(err, &se) {
		return se
	}
	p.log.Error("upload: slot request failed", "from", el.From(), "err", err)
	return wire.ErrInternalServerError
}

// slot checks a request and makes a slot for it.
func (p *Plugin) slot(ctx context.Context, from string, req *wire.Element) (*wire.Element, error) {
	owner := wire.JIDOf(from).Bare()
	if wire.JIDOf(owner).Local() == "" || !strings.HasSuffix(owner, "@"+p.host.Domain()) {
		return nil, wire.ErrForbidden.WithText("only users of " + p.host.Domain() + " may upload")
	}
	name := req.Attr("filename")
	if !goodName(name) {
		return nil, wire.ErrBadRequest.WithText("filename must be a plain file name")
	}
	size, err := strconv.Atoi(req.Attr("size"))
	if err != nil || size < 1 {
		return nil, wire.ErrBadRequest.WithText("size must be a positive number of bytes")
	}
	if size > p.cfg.MaxFileSize {
		return nil, tooLarge{p.cfg.MaxFileSize}
	}
	ctype := req.Attr("content-type")
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	if !p.typeAllowed(ctype) {
		return nil, wire.ErrNotAcceptable.WithText("content type " + ctype + " is not accepted; accepted: " + strings.Join(p.cfg.AllowedTypes, ", "))
	}
	used, err := p.used(ctx, owner)
	if err != nil {
		return nil, err
	}
	if used+size > p.cfg.UserQuota {
		return nil, quotaError{"upload quota", int64(p.cfg.UserQuota), int64(used)}
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	if err := p.reserve(ctx, owner, id, size); err != nil {
		return nil, err
	}
	now := p.Now()
	m := meta{Name: name, Size: size, Type: ctype, Created: now, Expires: now.Add(p.cfg.SlotTimeout)}
	err = p.record(ctx, slotsIndex, owner, id, m.Expires)
	if err == nil {
		_, err = p.index.Set(ctx, p.domain, id, []byte(owner), storage.Limits{})
	}
	if err == nil {
		err = p.setMeta(ctx, owner, id, m)
	}
	if err != nil {
		if rerr := p.remove(ctx, owner, id); rerr != nil {
			p.log.Warn("upload: removing a slot that failed", "err", rerr)
		}
		return nil, err
	}
	get := p.base + Prefix + id + "/" + escapeName(name)
	slot := wire.NewNS("slot", NS)
	slot.Append(wire.New("put", "url", get+"?token="+p.token(id)))
	slot.Append(wire.New("get", "url", get))
	return slot, nil
}

// used sums the sizes of the owner's files and live slots, and drops the
// slots that expired unused.
func (p *Plugin) used(ctx context.Context, owner string) (int, error) {
	ids, err := p.files.Collections(ctx, owner)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, id := range ids {
		m, err := p.meta(ctx, owner, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if !m.Done && p.Now().After(m.Expires) {
			if err := p.remove(ctx, owner, id); err != nil {
				p.log.Warn("upload: removing a slot that ended unused", "err", err)
			}
			continue
		}
		total += m.Size
	}
	return total, nil
}

func (p *Plugin) setMeta(ctx context.Context, owner, id string, m meta) error {
	b, _ := json.Marshal(m)
	_, err := p.files.Set(ctx, owner, id, metaKey, b, storage.Limits{})
	return err
}

func (p *Plugin) meta(ctx context.Context, owner, id string) (meta, error) {
	var m meta
	it, err := p.files.Get(ctx, owner, id, metaKey)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(it.Value, &m)
}

// remove deletes a file (or an unused slot): its contents, its meta
// item, its index entry, and then its reservation, so a removal that
// stops half way leaves the quota too full rather than too empty (Expire
// tries again; Reconcile gives back a reservation whose file is gone).
func (p *Plugin) remove(ctx context.Context, owner, id string) error {
	if err := p.store.remove(ctx, owner, id); err != nil {
		return fmt.Errorf("upload: deleting the contents of %s: %w", id, err)
	}
	if _, err := p.files.DeleteCollection(ctx, owner, id); err != nil {
		return fmt.Errorf("upload: deleting %s: %w", id, err)
	}
	if err := p.index.Delete(ctx, p.domain, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("upload: deleting the index entry of %s: %w", id, err)
	}
	if err := p.release(ctx, owner, id); err != nil {
		return fmt.Errorf("upload: giving back the reservation of %s: %w", id, err)
	}
	return nil
}

func (p *Plugin) typeAllowed(ctype string) bool {
	if len(p.cfg.AllowedTypes) == 0 {
		return true
	}
	major, _, _ := strings.Cut(ctype, "/")
	for _, t := range p.cfg.AllowedTypes {
		if strings.EqualFold(t, ctype) || (strings.HasSuffix(t, "/*") && strings.EqualFold(strings.TrimSuffix(t, "/*"), major)) {
			return true
		}
	}
	return false
}

// token authorizes the PUT of file id.
func (p *Plugin) token(id string) string {
	mac := hmac.New(sha256.New, p.secret)
	mac.Write([]byte("put " + id))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// validID accepts a file ID as slot makes them: 32 lowercase hex digits.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// goodName accepts a plain file name: no path, no control characters.
func goodName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\\") {
		return false
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// orDefault is d, or 30s when d is not set (0 turns the server's
// deadline off; a chunk still gets one).
func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return 30 * time.Second
	}
	return d
}
