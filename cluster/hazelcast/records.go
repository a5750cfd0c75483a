package hazelcast

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hazelcast/hazelcast-go-client/serialization"

	"github.com/aviary-im/aviary/cluster"
)

// memberRecord is the JSON value of Prefix+"members"[name].
type memberRecord struct {
	cluster.Member
	// Inc names this incarnation of the node: name#registration-nanos. It
	// changes whenever the node registers anew (start, or after finding
	// its entry gone), and tags every route the incarnation publishes.
	Inc string `json:"inc"`
	// Clustered is false while the node's switch is off: it is alive but
	// neither reads nor maintains shared routes.
	Clustered bool `json:"clustered"`
}

// routeRecord is the JSON value of Prefix+"routes"[full JID]: the route
// plus the fields the queries use.
type routeRecord struct {
	cluster.Route
	Bare string `json:"bare"`
	Inc  string `json:"inc"`
	// Seq orders the writes of one incarnation (see dirty.go).
	Seq uint64 `json:"seq,omitempty"`
}

func toJSON(v any) (serialization.JSON, error) {
	b, err := json.Marshal(v)
	return serialization.JSON(b), err
}

// fromValue decodes a value read from Hazelcast: JSON, a string or bytes.
func fromValue(v any, out any) error {
	var b []byte
	switch x := v.(type) {
	case serialization.JSON:
		b = x
	case *serialization.JSON:
		b = *x
	case string:
		b = []byte(x)
	case []byte:
		b = x
	case nil:
		return fmt.Errorf("cluster/hazelcast: nil value")
	default:
		return fmt.Errorf("cluster/hazelcast: unexpected value type %T", v)
	}
	return json.Unmarshal(b, out)
}

// incName returns the node name of an incarnation ID.
func incName(inc string) string {
	if i := strings.LastIndexByte(inc, '#'); i >= 0 {
		return inc[:i]
	}
	return inc
}

func copyMember(m cluster.Member) cluster.Member {
	if m.ClientAddrs != nil {
		addrs := make(map[string]string, len(m.ClientAddrs))
		for k, v := range m.ClientAddrs {
			addrs[k] = v
		}
		m.ClientAddrs = addrs
	}
	m.Features = append([]string(nil), m.Features...)
	return m
}

// older reports whether a is senior to b: started earlier, then by name.
func older(a, b cluster.Member) bool {
	if !a.Started.Equal(b.Started) {
		return a.Started.Before(b.Started)
	}
	return a.Name < b.Name
}

func sortMembers(ms []cluster.Member) {
	sort.Slice(ms, func(i, j int) bool { return older(ms[i], ms[j]) })
}

func sortRoutes(rs []cluster.Route) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].JID < rs[j].JID })
}
