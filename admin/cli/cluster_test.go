package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/cluster"
	"github.com/aviary-im/aviary/cluster/hazelcast"
	"github.com/aviary-im/aviary/cluster/hazelcast/hztest"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/storage/postgres"
	"github.com/aviary-im/aviary/storage/postgres/pgtest"
)

func TestClusterCommand(t *testing.T) {
	pg := pgtest.Start(t)
	m := hztest.StartMember(t, "aviary-cli")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, pg.URL(), postgres.Options{}) // migrates
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	c, err := hazelcast.NewWithOptions(hazelcast.Options{
		Cluster: conf.ClusterConfig{
			Hazelcast: []string{m.Addr()}, HazelcastClusterName: m.ClusterName, NodeName: "n1",
			Listen: "127.0.0.1:0", Secret: "s", StartupRetries: 2, StartupRetryInterval: 5 * time.Second,
			OperationTimeout: 3 * time.Second, HeartbeatInterval: 200 * time.Millisecond, NodeTTL: 2 * time.Second,
		},
		Properties: st, Version: "9.9", SwitchPoll: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runCluster(ctx, args, []string{"AVIARY_DATABASE=" + pg.URL()}, &out, &errb)
		return code, out.String(), errb.String()
	}
	hzFlags := []string{"--hazelcast", m.Addr(), "--hazelcast-cluster-name", m.ClusterName}

	steps := []struct {
		name     string
		args     []string
		code     int
		contains []string
		check    func(t *testing.T)
	}{
		{"no args", nil, 2, nil, nil},
		{"unknown", []string{"explode"}, 2, nil, nil},
		{"status enabled by default", append([]string{"status"}, hzFlags...), 0,
			[]string{"clustering: enabled", "n1", "clustered,senior", "9.9"}, nil},
		{"disable", append([]string{"disable"}, hzFlags...), 0, []string{"clustering disabled"}, func(t *testing.T) {
			v, err := st.GetProperty(ctx, cluster.SwitchProperty)
			if err != nil || v != "false" {
				t.Fatalf("property = %q, %v", v, err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for c.Clustered() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if c.Clustered() {
				t.Fatal("node still clustered after disable")
			}
		}},
		{"status disabled", []string{"status"}, 0, []string{"clustering: disabled", "members: unknown"}, nil},
		{"enable without hazelcast", []string{"enable"}, 0, []string{"clustering enabled"}, func(t *testing.T) {
			deadline := time.Now().Add(10 * time.Second)
			for !c.Clustered() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !c.Clustered() {
				t.Fatal("node not clustered after enable")
			}
		}},
		{"status json", append([]string{"status", "--json"}, hzFlags...), 0, nil, func(t *testing.T) {}},
		{"extra args", []string{"status", "junk"}, 2, nil, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, out, errOut := run(s.args...)
			if code != s.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, s.code, out, errOut)
			}
			for _, want := range s.contains {
				if !strings.Contains(out, want) {
					t.Fatalf("output lacks %q:\n%s", want, out)
				}
			}
			if s.name == "status json" {
				// The member record says clustered from its next heartbeat
				// after the switch came back on: poll, do not race it.
				deadline := time.Now().Add(20 * time.Second)
				for {
					var got struct {
						Switch  string
						Members []cluster.MemberStatus
					}
					if err := json.Unmarshal([]byte(out), &got); err != nil {
						t.Fatalf("%v:\n%s", err, out)
					}
					ok := got.Switch == "enabled" && len(got.Members) == 1 && got.Members[0].Name == "n1" && got.Members[0].Clustered
					if ok {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("json status = %+v", got)
					}
					time.Sleep(200 * time.Millisecond)
					_, out, _ = run(s.args...)
				}
			}
			if s.check != nil {
				s.check(t)
			}
		})
	}

	if code := runCluster(ctx, []string{"enable"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 1 {
		t.Fatalf("enable without a database: exit %d, want 1", code)
	}
}
