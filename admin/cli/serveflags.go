package cli

import (
	"flag"
	"strings"

	"github.com/aviary-im/aviary/conf"
)

// serveFlag is an `aviary serve` flag that sets one configuration key.
// Flags win over the file and the environment.
type serveFlag struct {
	name, usage string
	set         func(c *conf.Config, v string)
}

var serveFlags = []serveFlag{
	{"hazelcast", "Hazelcast member `addresses` host:port[,host:port...]; enables clustering (cluster.hazelcast)", func(c *conf.Config, v string) {
		c.Cluster.Hazelcast = nil
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.Cluster.Hazelcast = append(c.Cluster.Hazelcast, a)
			}
		}
	}},
	{"hazelcast-cluster-name", "Hazelcast cluster `name` (cluster.hazelcast_cluster_name)", func(c *conf.Config, v string) { c.Cluster.HazelcastClusterName = v }},
	{"node-name", "this node's stable, unique `name` (cluster.node_name)", func(c *conf.Config, v string) { c.Cluster.NodeName = v }},
	{"cluster-listen", "node-to-node link `addr` (cluster.listen)", func(c *conf.Config, v string) { c.Cluster.Listen = v }},
	{"admin-listen", "admin console and API `addr`, or off (admin.listen)", func(c *conf.Config, v string) { c.Admin.Listen = v }},
	{"http-listen", "BOSH/WebSocket HTTP `addr`, or off (http.listen)", func(c *conf.Config, v string) { c.HTTP.Listen = v }},
	{"https-listen", "BOSH/WebSocket HTTPS `addr`, or off (http.tls_listen)", func(c *conf.Config, v string) { c.HTTP.TLSListen = v }},
	{"s2s-listen", "server-to-server `addr`, or off (s2s.listen)", func(c *conf.Config, v string) { c.S2S.Listen = v }},
}

// registerServeFlags adds the table's flags to fs and returns the function
// that applies the ones given.
func registerServeFlags(fs *flag.FlagSet) func(c *conf.Config) {
	vals := make([]*string, len(serveFlags))
	for i, f := range serveFlags {
		vals[i] = fs.String(f.name, "", f.usage)
	}
	return func(c *conf.Config) {
		fs.Visit(func(fl *flag.Flag) {
			for i, f := range serveFlags {
				if f.name == fl.Name {
					f.set(c, *vals[i])
				}
			}
		})
	}
}
