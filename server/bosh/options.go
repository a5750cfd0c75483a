package bosh

import (
	"log/slog"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/conf"
)

// Options configure a Manager. FromConfig fills them from conf.
type Options struct {
	// Domain is the XMPP domain; a session creation request for another
	// 'to' gets host-unknown.
	Domain string
	// MaxWait caps the client's wait attribute.
	MaxWait time.Duration
	// Inactivity is the inactivity period announced to clients.
	Inactivity time.Duration
	// MaxPause caps a pause request; zero disables pause.
	MaxPause time.Duration
	// Polling is the shortest polling interval announced; zero announces none
	// and never refuses frequent requests.
	Polling time.Duration
	// MaxHold and MaxRequests cap the hold and requests attributes.
	MaxHold     int
	MaxRequests int
	// CORSOrigins are the origins browsers may use the endpoint from; "*"
	// allows any. Empty allows none.
	CORSOrigins []string
	// MaxBodyBytes caps one request body; bigger bodies get policy-violation.
	MaxBodyBytes int
	// MaxPendingBytes caps what may wait for the client's next request;
	// past it the session ends as a slow consumer.
	MaxPendingBytes int
	// Second is how long one protocol second lasts (wait, inactivity, pause
	// and polling are whole seconds on the wire). Tests shorten it so that
	// a wait='2' expires in milliseconds. Default time.Second.
	Second time.Duration
	// Cluster forwards requests for sessions other nodes own and receives
	// theirs. Nil means one node.
	Cluster cluster.Cluster
	// ForwardTimeout bounds a forwarded request beyond its own wait.
	ForwardTimeout time.Duration
	// OnSession starts the XMPP stream of a new session, usually in a new
	// goroutine (c2s.Serve). It must not block.
	OnSession func(s *Session)
	// Logger logs session ends. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// FromConfig returns the options the http section (h), the domain and
// c2s.max_stanza_bytes describe. The caller adds Cluster, OnSession and
// Logger.
func FromConfig(domain string, h conf.HTTPConfig, maxStanzaBytes int) Options {
	return Options{
		Domain:       domain,
		MaxWait:      h.BOSHMaxWait,
		Inactivity:   h.BOSHInactivity,
		MaxPause:     h.BOSHMaxPause,
		Polling:      h.BOSHPolling,
		MaxHold:      h.BOSHHold,
		MaxRequests:  h.BOSHRequests,
		MaxBodyBytes: maxStanzaBytes,
		CORSOrigins:  h.CORSOrigins,
	}
}

func (o *Options) applyDefaults() {
	if o.MaxWait <= 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.Inactivity <= 0 {
		o.Inactivity = 60 * time.Second
	}
	if o.MaxHold <= 0 {
		o.MaxHold = 1
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 2
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 256 << 10
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 4 << 20
	}
	if o.Second <= 0 {
		o.Second = time.Second
	}
	if o.ForwardTimeout <= 0 {
		o.ForwardTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// secs converts a configured duration into whole protocol seconds.
func secs(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
