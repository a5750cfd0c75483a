package hazelcast

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hazelcast/hazelcast-go-client/types"

	"github.com/aviary-im/aviary/conf"
)

func TestNewValidates(t *testing.T) {
	good := conf.ClusterConfig{Hazelcast: []string{"127.0.0.1:5701"}, NodeName: "n", Secret: "s"}
	cases := []struct {
		name string
		mod  func(*conf.ClusterConfig)
		err  string
	}{
		{"ok", func(*conf.ClusterConfig) {}, ""},
		{"no hazelcast", func(c *conf.ClusterConfig) { c.Hazelcast = nil }, "no Hazelcast addresses"},
		{"no secret", func(c *conf.ClusterConfig) { c.Secret = "" }, "cluster.secret"},
		{"ttl too short", func(c *conf.ClusterConfig) {
			c.HeartbeatInterval = 2 * time.Second
			c.NodeTTL = 3 * time.Second
		}, "cluster.node_ttl"},
		{"long name", func(c *conf.ClusterConfig) { c.NodeName = strings.Repeat("n", 201) }, "longer than 200"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := good
			tc.mod(&cc)
			c, err := New(cc, nil, nil)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.NodeName() != "n" || c.cc.NodeTTL != 10*time.Second || c.cc.HeartbeatInterval != 2*time.Second ||
					c.cc.HazelcastClusterName != "aviary" || c.cc.StartupRetries != 10 {
					t.Fatalf("defaults not applied: %+v", c.cc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestClientConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "client.json")
	if err := os.WriteFile(file, []byte(`{
		"ClientName": "from-file",
		"Labels": ["dc1"],
		"Cluster": {"Name": "overridden", "Unisocket": true, "Network": {"ConnectionTimeout": "7s"}}
	}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cc := conf.ClusterConfig{Hazelcast: []string{"10.0.0.1:5701"}, HazelcastClusterName: "prod",
		HazelcastConfigFile: file, NodeName: "n", Secret: "s"}
	c, err := NewWithOptions(Options{Cluster: cc})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := c.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !hc.Cluster.Unisocket || len(hc.Labels) != 1 || hc.Cluster.Network.ConnectionTimeout != types.Duration(7*time.Second) {
		t.Fatalf("file settings lost: %+v", hc.Cluster)
	}
	if hc.Cluster.Name != "prod" || hc.ClientName != "aviary-n" || hc.Cluster.Network.Addresses[0] != "10.0.0.1:5701" {
		t.Fatalf("our settings not applied: name %q client %q addrs %v", hc.Cluster.Name, hc.ClientName, hc.Cluster.Network.Addresses)
	}
	if hc.Cluster.HeartbeatTimeout != types.Duration(10*time.Second) || hc.Cluster.InvocationTimeout != types.Duration(5*time.Second) {
		t.Fatalf("timeouts: %+v", hc.Cluster)
	}

	if err := os.WriteFile(file, []byte(`{"Cluster": `), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.clientConfig(); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("bad file: %v", err)
	}
}
