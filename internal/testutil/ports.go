package testutil

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports for services a test starts as another process (PostgreSQL, a
// Hazelcast member, Pebble, Prosody, ejabberd, a node to be restarted)
// must be chosen before the process binds them, seconds later for a JVM.
// A port the kernel handed out (":0") and gave back is in the ephemeral
// range, where any outgoing connection of any process may take it as its
// local port in those seconds, and another test binary of the same `go
// test` run may pick it too: CI saw a Hazelcast member fail with "address
// already in use" that way. So ports are taken below the ephemeral range
// (net.ipv4.ip_local_port_range), where only a listener asking for that
// very port takes it, and each is claimed with a lock file that every
// test process of the machine respects, held until the process exits
// (a stopped service keeps its port for its restart).

var (
	portsMu sync.Mutex
	claimed = map[int]*os.File{} // the open lock files, never closed
)

// FreePorts returns n distinct TCP ports free on 127.0.0.1 that no other
// caller, in this process or another, was given; see above.
func FreePorts(n int) ([]int, error) {
	return FreePortsOn("127.0.0.1", n)
}

// FreePortsOn is FreePorts for a listener on host.
func FreePortsOn(host string, n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := belowEphemeral()
	dir := filepath.Join(os.TempDir(), "aviary-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 200*n {
			return nil, errors.New("testutil: no free ports")
		}
		p, err := candidatePort(host, lo, hi)
		if err != nil {
			return nil, err
		}
		if p == 0 || claimed[p] != nil {
			continue
		}
		f, ok := lockPort(dir, p)
		if !ok {
			continue // another test process has it
		}
		claimed[p] = f
		out = append(out, p)
	}
	return out, nil
}

// lockPort takes the machine-wide claim on p: an exclusive lock on its
// file, which the kernel drops when this process exits.
func lockPort(dir string, p int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// belowEphemeral is the range ports are picked from: [20000, the start
// of the ephemeral range), or none (0, 0) when the ephemeral range starts
// too low to leave room.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start < 21000 {
		return 0, 0
	}
	return 20000, start
}

// candidatePort returns a port from [lo, hi) that a listener on host
// could bind just now (0 when the one tried was busy), or one the kernel
// picks when the range is empty.
func candidatePort(host string, lo, hi int) (int, error) {
	if hi <= lo {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("testutil: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return p, nil
	}
	p := lo + rand.IntN(hi-lo)
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
	if err != nil {
		return 0, nil // busy: try another
	}
	l.Close()
	return p, nil
}
