package c2s

import (
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

// writesConn records every Write as the peer would see it arrive.
type writesConn struct {
	chunkConn
	writes []string
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}
func (c *writesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *writesConn) Close() error                     { return nil }

// Our stream header and the features that follow it leave in one write:
// a login answers three stream headers, and each extra write is a syscall
// here and a read and wake-up at the client.
func TestHeaderLeavesWithFeatures(t *testing.T) {
	c := &writesConn{}
	tr := NewTCPTransport(c, false, wire.Limits{})
	if err := tr.OpenStream(StreamHeader{From: "example.org", ID: "abc", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 0 {
		t.Fatalf("header written alone: %q", c.writes)
	}
	if err := tr.Write([]*wire.Element{wire.New("stream:features")}); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 1 || !strings.HasPrefix(c.writes[0], "<?xml version='1.0'?><stream:stream") ||
		!strings.HasSuffix(c.writes[0], "<stream:features/>") {
		t.Fatalf("want header and features in one write, got %q", c.writes)
	}
	// The next write carries no header again.
	if err := tr.Write([]*wire.Element{wire.New("presence")}); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 2 || c.writes[1] != "<presence/>" {
		t.Fatalf("second write %q", c.writes)
	}
}

// A header followed by a stream error goes out with the error at Close,
// in order (RFC 6120 §4.9.1.1), and only once.
func TestHeaderLeavesWithStreamError(t *testing.T) {
	c := &writesConn{}
	tr := NewTCPTransport(c, false, wire.Limits{})
	if err := tr.OpenStream(StreamHeader{From: "example.org", ID: "abc", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	se := wire.New("stream:error")
	se.Append(wire.NewNS("host-unknown", wire.NSStreams))
	_ = tr.Close(se)
	all := strings.Join(c.writes, "")
	if strings.Count(all, "<stream:stream") != 1 || !strings.Contains(all, "id='abc'") {
		t.Fatalf("want our one header, got %q", all)
	}
	if h, e := strings.Index(all, "<stream:stream"), strings.Index(all, "<stream:error>"); h < 0 || e < h ||
		!strings.HasSuffix(all, "</stream:stream>") {
		t.Fatalf("want header, error, end in order, got %q", all)
	}
}

// The first header after a TLS handshake goes alone (Smack's NIO client
// stalls when it shares the first record with the features); the next
// one waits for the features again.
func TestFirstHeaderAfterTLSLeavesAlone(t *testing.T) {
	c := &writesConn{}
	tr := NewTCPTransport(c, true, wire.Limits{})
	tr.tlsFresh = true
	if err := tr.OpenStream(StreamHeader{From: "example.org", ID: "a", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 1 || !strings.HasSuffix(c.writes[0], "id='a' from='example.org' version='1.0'>") {
		t.Fatalf("want the header written at once, got %q", c.writes)
	}
	_ = tr.Write([]*wire.Element{wire.New("stream:features")})
	_ = tr.OpenStream(StreamHeader{From: "example.org", ID: "b", Version: "1.0"})
	_ = tr.Write([]*wire.Element{wire.New("stream:features")})
	if len(c.writes) != 3 || !strings.Contains(c.writes[2], "id='b'") || !strings.HasSuffix(c.writes[2], "<stream:features/>") {
		t.Fatalf("want the second header with its features, got %q", c.writes)
	}
}
