package interop

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// peerProcess is a real client run as a process (a script of node or
// python3), with its standard output line by line.
type peerProcess struct {
	cmd   *exec.Cmd
	lines chan string
	seen  []string // the lines await has read
}

// startPeer starts cmd; its standard error goes to the test's.
func startPeer(t *testing.T, cmd *exec.Cmd) *peerProcess {
	t.Helper()
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &peerProcess{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// await reads lines until one starts with prefix and returns it; a line
// starting with FAIL, or the end of the output, fails the test.
func (p *peerProcess) await(t *testing.T, prefix string) string {
	t.Helper()
	for l := range p.lines {
		p.seen = append(p.seen, l)
		if strings.HasPrefix(l, prefix) {
			return l
		}
		if strings.HasPrefix(l, "FAIL") {
			break
		}
	}
	t.Fatalf("%s never printed %q:\n%s", p.cmd.Path, prefix, strings.Join(p.seen, "\n"))
	return ""
}
