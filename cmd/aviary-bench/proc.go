package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MemoryStats is the server's resident memory around the login phase.
type MemoryStats struct {
	BeforeKiB     int64   `json:"rss_before_kib"`
	AfterKiB      int64   `json:"rss_after_kib"`
	Sessions      int     `json:"sessions"`
	PerSessionKiB float64 `json:"kib_per_session"`
}

func memoryStats(before, after int64, sessions int) *MemoryStats {
	m := &MemoryStats{BeforeKiB: before, AfterKiB: after, Sessions: sessions}
	if sessions > 0 {
		m.PerSessionKiB = float64(after-before) / float64(sessions)
	}
	return m
}

// parseVmRSS returns VmRSS in KiB from the text of /proc/<pid>/status.
func parseVmRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(line[len("VmRSS:"):])
		if len(f) < 1 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		if len(f) > 1 && f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS unit in %q", line)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// readRSS reads one process's VmRSS in KiB.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

// sumRSS adds the VmRSS of every pid; unreadable ones count as zero.
func sumRSS(pids []int) int64 {
	var total int64
	for _, p := range pids {
		n, err := readRSS(p)
		if err == nil {
			total += n
		}
	}
	return total
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, err
		}
	}
	return lim.Cur, nil
}

// stable reports whether readings vary by at most 1% (or 256 KiB).
func stable(readings []int64) bool {
	lo, hi := readings[0], readings[0]
	for _, r := range readings {
		lo, hi = min(lo, r), max(hi, r)
	}
	return hi-lo <= max(hi/100, 256)
}

// stableRSS reads the summed RSS every half second until three readings in
// a row agree (servers with a garbage collector shrink and grow for a while
// after a burst) or maxWait passes, and returns the last reading.
func stableRSS(ctx context.Context, pids []int, maxWait time.Duration) int64 {
	deadline := time.Now().Add(maxWait)
	var readings []int64
	for {
		readings = append(readings, sumRSS(pids))
		if len(readings) >= 3 && stable(readings[len(readings)-3:]) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return readings[len(readings)-1]
		case <-time.After(500 * time.Millisecond):
		}
	}
	return readings[len(readings)-1]
}
