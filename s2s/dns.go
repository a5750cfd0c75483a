package s2s

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
)

// DefaultPort is the s2s port used when DNS has no SRV record.
const DefaultPort = 5269

// Resolver looks up SRV records; *net.Resolver satisfies it. Tests inject
// their own so that no real lookup happens.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

// target is one place to connect to for a remote domain.
type target struct {
	host      string
	port      uint16
	directTLS bool // XEP-0368: TLS from the first byte
}

func (t target) addr() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// staticTarget parses a s2s.hosts value: "host:port", or
// "tls://host:port" for a direct-TLS port.
func staticTarget(v string) (target, error) {
	direct := false
	if rest, ok := strings.CutPrefix(v, "tls://"); ok {
		v, direct = rest, true
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return target{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return target{}, err
	}
	return target{host: host, port: uint16(p), directTLS: direct}, nil
}

// lookupTargets finds where to connect for domain (RFC 6120 §3.2.1,
// XEP-0368): the SRV records of _xmpps-server._tcp (direct TLS) and
// _xmpp-server._tcp (STARTTLS) merged and ordered by priority and weight;
// when neither exists, the domain itself on port 5269 (its A/AAAA records,
// resolved when dialling). A lone SRV target of "." means the service is
// decidedly not offered.
func lookupTargets(ctx context.Context, r Resolver, domain string) ([]target, error) {
	type rec struct {
		srv    *net.SRV
		direct bool
	}
	var recs []rec
	refused := 0
	for _, svc := range []struct {
		name   string
		direct bool
	}{{"xmpps-server", true}, {"xmpp-server", false}} {
		_, addrs, err := r.LookupSRV(ctx, svc.name, "tcp", domain)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if err != nil {
			// NXDOMAIN, no records, or a failing server: the fallback
			// below still gets its chance.
			continue
		}
		if len(addrs) == 1 && (addrs[0].Target == "." || addrs[0].Target == "") {
			refused++
			continue
		}
		for _, a := range addrs {
			if a.Target == "." || a.Target == "" {
				continue
			}
			recs = append(recs, rec{a, svc.direct})
		}
	}
	if len(recs) == 0 {
		if refused > 0 {
			return nil, ErrNoTargets
		}
		return []target{{host: domain, port: DefaultPort}}, nil
	}
	// Order by priority; within one priority, a weighted random order
	// (RFC 2782).
	slices.SortStableFunc(recs, func(a, b rec) int { return int(a.srv.Priority) - int(b.srv.Priority) })
	out := make([]target, 0, len(recs))
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].srv.Priority == recs[i].srv.Priority {
			j++
		}
		group := recs[i:j]
		for len(group) > 0 {
			total := 0
			for _, g := range group {
				total += int(g.srv.Weight)
			}
			pick := 0
			if total > 0 {
				n := rand.IntN(total + 1)
				acc := 0
				for k, g := range group {
					acc += int(g.srv.Weight)
					if acc >= n {
						pick = k
						break
					}
				}
			}
			g := group[pick]
			out = append(out, target{host: strings.TrimSuffix(g.srv.Target, "."), port: g.srv.Port, directTLS: g.direct})
			group = append(group[:pick:pick], group[pick+1:]...)
		}
		i = j
	}
	return out, nil
}
