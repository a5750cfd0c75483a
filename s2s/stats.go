package s2s

import (
	"sort"
	"time"
)

// StreamInfo describes one live s2s stream, for the admin console.
type StreamInfo struct {
	// Direction is "in" (a peer's stream to us) or "out" (ours to a peer).
	Direction string `json:"direction"`
	// Local is our domain; Remote the peer's (for "in": each authenticated
	// domain, comma separated, or "" before authentication).
	Local  string `json:"local"`
	Remote string `json:"remote"`
	// Method is how the peer (in) or we (out) authenticated:
	// "sasl-external", "dialback", "dialback+certificate" or "".
	Method string `json:"method"`
	// State is "connecting", "ready" or "closing".
	State string `json:"state"`
	// Queued is the number of stanzas waiting (out only).
	Queued int `json:"queued"`
	// Addr is the peer's network address.
	Addr string `json:"addr"`
	// Since is when the stream was created.
	Since time.Time `json:"since"`
}

// Stats is a snapshot of the service's streams and close counters.
type Stats struct {
	Streams []StreamInfo `json:"streams"`
	// Closed counts ended streams by close reason.
	Closed map[string]int64 `json:"closed"`
}

// Stats returns a snapshot of the live streams and the close counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	outs := make([]*outConn, 0, len(s.out))
	for _, c := range s.out {
		outs = append(outs, c)
	}
	ins := make([]*inStream, 0, len(s.in))
	for in := range s.in {
		ins = append(ins, in)
	}
	closed := make(map[string]int64, len(s.closed))
	for r, n := range s.closed {
		closed[r.String()] = n
	}
	s.mu.Unlock()

	st := Stats{Closed: closed}
	for _, c := range outs {
		c.mu.Lock()
		info := StreamInfo{Direction: "out", Local: c.key.local, Remote: c.key.remote,
			Method: c.method, Queued: len(c.queue), Since: c.created}
		switch {
		case c.closing || c.state == outClosed:
			info.State = "closing"
		case c.state == outReady:
			info.State = "ready"
		default:
			info.State = "connecting"
		}
		if c.conn != nil {
			info.Addr = c.conn.RemoteAddr().String()
		}
		c.mu.Unlock()
		st.Streams = append(st.Streams, info)
	}
	for _, in := range ins {
		in.mu.Lock()
		info := StreamInfo{Direction: "in", Local: s.domain, Method: in.method,
			State: "ready", Addr: in.addr, Since: in.created}
		var domains []string
		for d := range in.authed {
			domains = append(domains, d)
		}
		in.mu.Unlock()
		sort.Strings(domains)
		for i, d := range domains {
			if i > 0 {
				info.Remote += ","
			}
			info.Remote += d
		}
		if len(domains) == 0 {
			info.State = "connecting"
		}
		st.Streams = append(st.Streams, info)
	}
	sort.Slice(st.Streams, func(i, j int) bool {
		a, b := st.Streams[i], st.Streams[j]
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		return a.Remote < b.Remote
	})
	return st
}

// countClose records why a stream ended.
func (s *Service) countClose(r closeReason) {
	s.mu.Lock()
	s.closed[r]++
	s.mu.Unlock()
}
