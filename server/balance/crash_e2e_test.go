package balance_test

import (
	"encoding/json"
	"github.com/aviary-im/aviary/internal/testutil"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashE2E: a node SIGKILLed under load loses no message the server
// acknowledged (issue 24, server/router/CRASHSAFETY.md). Three `aviary
// serve` processes on one PostgreSQL and one Hazelcast member run the
// load tool's -reconnect workload, a third of the users on WebSocket and
// BOSH, its clients acknowledging a second late (as battery-saving clients
// do, so the sessions always hold unacknowledged messages); in the middle
// the second node is SIGKILLed. Its clients reconnect
// through the dispatcher to the others, cannot resume, log in again and
// collect what the server kept for them (the survivors route again the
// copies they kept; offline storage at login). The test fails on any
// message lost: acknowledged by the server and never delivered, or sent
// and never delivered at all. It runs once per role of the killed node,
// each time with pairs of users placed so that it holds
//   - senders only: its senders' messages were acknowledged only once the
//     receivers' nodes had them;
//   - receivers only: the senders' nodes kept copies of what its sessions
//     had not had acknowledged, and route them again;
//   - both, with pairs inside it: its buddy node holds copies of what its
//     own sessions had not had acknowledged.
//
// AVIARY_E2E_CRASH_SAFETY=0 runs the nodes with cluster.crash_safety off,
// which shows the test failing: messages are lost.
func TestCrashE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Hazelcast and three aviary processes (about two minutes)")
	}
	began := time.Now()
	const users = 96
	safety := os.Getenv("AVIARY_E2E_CRASH_SAFETY") != "0"
	extra := ""
	if !safety {
		extra = "cluster: {crash_safety: false}\n"
	}
	cl := startE2EClusterWith(t, "cr", 3, users, extra)
	var servers, dispatch []string
	for _, p := range cl.nodes {
		servers = append(servers, p.c2s)
		dispatch = append(dispatch, "http://"+p.http)
	}
	victim := cl.nodes[1]
	roles := []struct{ name, flows, rerouted string }{
		// Node index 1 is the victim. Pairs between the other two keep
		// traffic flowing that the crash does not touch.
		{"senders only", "1>0,1>2,0>2,2>0", ""},
		{"receivers only", "0>1,2>1,0>2,2>0", `kept=[1-9]`},
		{"both", "1>1,0>1,1>2,2>0", `deposited=[1-9]`},
	}
	for _, role := range roles {
		t.Run(strings.ReplaceAll(role.name, " ", "_"), func(t *testing.T) {
			logStart := map[string]int{}
			for _, p := range cl.nodes {
				logStart[p.name] = len(cl.log(p.name))
			}
			bench := exec.Command(cl.bench, "-servers", strings.Join(servers, ","), "-dispatch", strings.Join(dispatch, ","),
				"-users", strconv.Itoa(users), "-create", "none", "-password", "bench-secret",
				"-workload", "ring", "-reconnect", "-flows", role.flows, "-transports", "tcp=2,websocket=1,bosh=3", "-bosh-pause", "300ms",
				"-messages", "200", "-inflight", "5", "-interval", "100ms", "-ack-delay", "1s",
				"-concurrency", "16", "-timeout", "15s", "-drain", "30s", "-max-time", "4m", "-json")
			var out, errOut testutil.Buffer
			bench.Stdout, bench.Stderr = &out, &errOut
			if err := bench.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- bench.Wait() }()
			t.Cleanup(func() {
				bench.Process.Kill()
				<-done
			})
			waitFor(t, 90*time.Second, "aviary-bench's ring to start", func() bool {
				return strings.Contains(errOut.String(), "ring started")
			})
			time.Sleep(2 * time.Second) // traffic before the crash
			killed := time.Now()
			cl.kill(t, victim.name)
			t.Logf("%s SIGKILLed", victim.name)

			var err error
			select {
			case err = <-done:
				done <- err
			case <-time.After(3 * time.Minute):
				t.Fatalf("aviary-bench did not finish\n%s", tail(errOut.String(), 3000))
			}
			if err != nil {
				t.Errorf("aviary-bench: %v\n%s", err, tail(errOut.String(), 3000))
			}
			var res struct {
				Login struct {
					OK     int
					Errors []string
				} `json:"login"`
				Ring *struct {
					Sent, Received, Lost, Duplicates int
					Stalled                          int      `json:"stalled_senders"`
					LostSample                       []string `json:"lost_sample"`
					Latency                          struct {
						P99 float64 `json:"p99_ms"`
					} `json:"latency"`
					Reconnect *struct {
						Sent, Delivered, Redelivered, Bounced, Lost, Reconnects, Disconnects, Resumed, Resent int
						NeverAcked                                                                            int            `json:"never_acked"`
						RedeliveredByServer                                                                   int            `json:"redelivered_by_server"`
						FailedWithH                                                                           int            `json:"failed_with_h"`
						ResendsSaved                                                                          int            `json:"resends_saved"`
						FailedHBelowAck                                                                       int            `json:"failed_h_below_ack"`
						ReconnectP99                                                                          float64        `json:"reconnect_p99_ms"`
						ReconnectMax                                                                          float64        `json:"reconnect_max_ms"`
						Transports                                                                            map[string]int `json:"transports"`
					} `json:"reconnect"`
				} `json:"ring"`
			}
			if err := json.Unmarshal([]byte(out.String()), &res); err != nil || res.Ring == nil || res.Ring.Reconnect == nil {
				t.Fatalf("aviary-bench output: %v\n%s\n%s", err, out.String(), tail(errOut.String(), 3000))
			}
			r, rc := res.Ring, res.Ring.Reconnect
			t.Logf("CRASH FIGURES role=%q safety=%v sent=%d delivered=%d redelivered=%d (by the server alone %d) bounced=%d lost(acked)=%d never-acked-lost=%d reconnects=%d (resumed %d) disconnects=%d resent=%d (saved by %d <failed h/>: %d) reconnect p99=%.0fms max=%.0fms latency p99=%.0fms stalled=%d transports=%v",
				role.name, safety, rc.Sent, rc.Delivered, rc.Redelivered, rc.RedeliveredByServer, rc.Bounced, rc.Lost, rc.NeverAcked, rc.Reconnects, rc.Resumed, rc.Disconnects, rc.Resent, rc.FailedWithH, rc.ResendsSaved,
				rc.ReconnectP99, rc.ReconnectMax, r.Latency.P99, r.Stalled, rc.Transports)
			if res.Login.OK != users {
				t.Errorf("%d of %d users logged in: %v", res.Login.OK, users, res.Login.Errors)
			}
			if rc.Sent == 0 || rc.Disconnects == 0 || rc.Reconnects < rc.Disconnects {
				t.Errorf("sent %d, %d disconnects, %d reconnects: the crash did not hit the load", rc.Sent, rc.Disconnects, rc.Reconnects)
			}
			if rc.FailedHBelowAck > 0 {
				t.Errorf("%d failed resumptions answered <failed h/> below an <a h/> their client had", rc.FailedHBelowAck)
			}
			if rc.Lost > 0 || r.Lost > 0 {
				t.Errorf("lost %d messages the server had acknowledged, %d in all, e.g. (pair sender:seq) %v", rc.Lost, r.Lost, r.LostSample)
				cl.logTails(t)
			}
			// The survivors routed again what the dead node held.
			if role.rerouted != "" && safety {
				re := regexp.MustCompile(`routing again what a dead node held"? node=` + victim.name + `.*` + role.rerouted)
				found := false
				for _, p := range cl.nodes {
					if p.name == victim.name {
						continue
					}
					for _, line := range strings.Split(cl.log(p.name)[logStart[p.name]:], "\n") {
						if strings.Contains(line, "routing again") || strings.Contains(line, "custody") {
							t.Logf("%s: %s", p.name, line)
						}
					}
					if re.MatchString(cl.log(p.name)[logStart[p.name]:]) {
						found = true
					}
				}
				if !found {
					t.Errorf("no survivor logged routing again what %s held (%s)", victim.name, role.rerouted)
				}
			}

			// The victim comes back for the next role.
			cl.startNode(t, victim)
			waitHTTP(t, "http://"+victim.admin+"/readyz", 90*time.Second)
			waitFor(t, 60*time.Second, "three members", func() bool {
				return cl.members(victim.admin) == 3 && cl.members(cl.nodes[0].admin) == 3
			})
			t.Logf("%s back after %s", victim.name, time.Since(killed).Round(100*time.Millisecond))
		})
	}
	t.Logf("test took %s", time.Since(began).Round(time.Second))
}

// kill SIGKILLs a node's current process and waits until it is gone.
func (cl *e2eCluster) kill(t *testing.T, name string) {
	t.Helper()
	pid := cl.pid(t, name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The process is this test's child, reaped by startNode's Wait: gone
	// once signal 0 fails.
	waitFor(t, 30*time.Second, name+" to die", func() bool { return syscall.Kill(pid, 0) != nil })
}

func (cl *e2eCluster) pid(t *testing.T, name string) int {
	t.Helper()
	raw, err := os.ReadFile(cl.dir + "/" + name + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// members is how many live members a node's admin API reports (-1 when
// it does not answer).
func (cl *e2eCluster) members(admin string) int {
	req, err := http.NewRequest(http.MethodGet, "http://"+admin+"/api/nodes", nil)
	if err != nil {
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var nodes []json.RawMessage
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&nodes) != nil {
		return -1
	}
	return len(nodes)
}
