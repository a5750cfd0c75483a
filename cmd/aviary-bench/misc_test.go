package main

import (
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviary-im/aviary/wire"
)

func TestSCRAMRFC5802Vector(t *testing.T) {
	s := newSCRAM("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL")
	if got := s.clientFirst(); got != "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL" {
		t.Fatalf("client-first = %q", got)
	}
	final, err := s.clientFinal("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
	if err != nil {
		t.Fatal(err)
	}
	if want := "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="; final != want {
		t.Fatalf("client-final = %q, want %q", final, want)
	}
	if err := s.verifyServer("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="); err != nil {
		t.Fatalf("good server signature refused: %v", err)
	}
	if err := s.verifyServer("v=AAAApqV8S7suAoZWja4dJRkFsKQ="); err == nil {
		t.Fatal("bad server signature accepted")
	}
	if err := s.verifyServer("e=invalid-proof"); err == nil {
		t.Fatal("server error accepted")
	}
}

func TestSCRAMRejectsBadServerFirst(t *testing.T) {
	cases := map[string]string{
		"foreign nonce":  "r=other,s=QSXCR+Q6sek8bf92,i=4096",
		"no server part": "r=abc,s=QSXCR+Q6sek8bf92,i=4096",
		"bad salt":       "r=abcdef,s=***,i=4096",
		"bad count":      "r=abcdef,s=QSXCR+Q6sek8bf92,i=x",
		"zero count":     "r=abcdef,s=QSXCR+Q6sek8bf92,i=0",
	}
	for name, sf := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSCRAM("u", "p", "abc")
			s.clientFirst()
			if _, err := s.clientFinal(sf); err == nil {
				t.Fatalf("clientFinal(%q) succeeded", sf)
			}
		})
	}
	if got := scramEscape("a=b,c"); got != "a=3Db=2Cc" {
		t.Fatalf("scramEscape = %q", got)
	}
}

func TestChooseMech(t *testing.T) {
	cases := []struct {
		name    string
		offered []string
		want    string
		got     string
		err     bool
	}{
		{"auto prefers scram", []string{"PLAIN", "SCRAM-SHA-1"}, "auto", "SCRAM-SHA-1", false},
		{"auto falls back to plain", []string{"PLAIN", "SCRAM-SHA-256"}, "auto", "PLAIN", false},
		{"explicit plain", []string{"SCRAM-SHA-1", "PLAIN"}, "plain", "PLAIN", false},
		{"explicit missing", []string{"SCRAM-SHA-1"}, "PLAIN", "", true},
		{"nothing usable", []string{"EXTERNAL"}, "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := chooseMech(c.offered, c.want)
			if (err != nil) != c.err || got != c.got {
				t.Fatalf("chooseMech = %q, %v", got, err)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	cases := []struct {
		name   string
		status string
		want   int64
		err    bool
	}{
		{"normal", "Name:\tprosody\nVmPeak:\t  9000 kB\nVmRSS:\t   15488 kB\nThreads:\t1\n", 15488, false},
		{"missing", "Name:\tzombie\nState:\tZ\n", 0, true},
		{"garbage", "VmRSS:\tlots kB\n", 0, true},
		{"unit", "VmRSS:\t12 MB\n", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseVmRSS(c.status)
			if (err != nil) != c.err || got != c.want {
				t.Fatalf("parseVmRSS = %d, %v", got, err)
			}
		})
	}
	m := memoryStats(1000, 3000, 100)
	if m.PerSessionKiB != 20 {
		t.Fatalf("per session = %v, want 20", m.PerSessionKiB)
	}
}

// The stanzas the tool writes must parse, and the reader must find the
// payload in them again.
func TestFraming(t *testing.T) {
	p := payload{Run: runID, Sender: 3, Seq: 9, Sent: time.Second}
	msg := "<message type='chat' to='a@b/c' id='9'><body>" + p.String() + "</body></message>"
	el, err := wire.Parse([]byte(msg), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePayload(bodyOf(el))
	if err != nil || got != p {
		t.Fatalf("payload from message = %+v, %v", got, err)
	}

	// A stream with several stanzas in one chunk, a whitespace keepalive
	// and a body split by a child element.
	stream := streamHeader("localhost") + "<message><body>" + p.String() + "</body></message> \n" +
		"<presence><status>ab:r1:0:1:5</status></presence><iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
	r := wire.NewReader(strings.NewReader(stream), wire.Limits{})
	if _, err := r.Header(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		el, err := r.Next()
		if err != nil {
			break
		}
		names = append(names, el.LocalName())
		if el.LocalName() == "presence" {
			if pp, err := parsePayload(el.ChildText("status", "")); err != nil || pp.Seq != 1 {
				t.Fatalf("presence payload = %+v, %v", pp, err)
			}
		}
	}
	if strings.Join(names, ",") != "message,presence,iq" {
		t.Fatalf("elements = %v", names)
	}
	if wire.BareJID("u@d/r/x") != "u@d" || wire.BareJID("u@d") != "u@d" {
		t.Fatal("bareJID")
	}
}

func TestForEachVisitsEveryIndexOnce(t *testing.T) {
	for _, workers := range []int{0, 1, 3, 100} {
		seen := make([]atomic.Int32, 37)
		forEach(len(seen), workers, func(i int) { seen[i].Add(1) })
		for i := range seen {
			if seen[i].Load() != 1 {
				t.Fatalf("workers %d: index %d visited %d times", workers, i, seen[i].Load())
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func() Config {
		return Config{Servers: []string{"127.0.0.1:1"}, Users: 2, Concurrency: 1, Create: "ibr", Workload: "ring", Messages: 1, InFlight: 1}
	}
	cases := []struct {
		name string
		mod  func(*Config)
		bad  bool
	}{
		{"fine", func(*Config) {}, false},
		{"no servers", func(c *Config) { c.Servers = nil }, true},
		{"ring of one", func(c *Config) { c.Users = 1 }, true},
		{"unknown workload", func(c *Config) { c.Workload = "chaos" }, true},
		{"cmd without command", func(c *Config) { c.Create = "cmd" }, true},
		{"bad create", func(c *Config) { c.Create = "magic" }, true},
		{"idle of one", func(c *Config) { c.Users = 1; c.Workload = "idle" }, false},
		{"no in flight", func(c *Config) { c.InFlight = 0 }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok()
			c.mod(&cfg)
			if err := cfg.validate(); (err != nil) != c.bad {
				t.Fatalf("validate = %v", err)
			}
		})
	}
	if _, err := parsePids("12, 34"); err != nil {
		t.Fatal(err)
	}
	if _, err := parsePids("12,x"); err == nil {
		t.Fatal("bad pid accepted")
	}
}

func TestErrorSetGroupsByMessageWithoutAddresses(t *testing.T) {
	var e errorSet
	e.add(errString("stream header: read tcp 127.0.0.1:46074->127.0.0.1:15322: i/o timeout"))
	e.add(errString("stream header: read tcp 127.0.0.1:46098->127.0.0.1:15322: i/o timeout"))
	e.add(errString("dial: dial tcp 127.0.0.1:5: connection refused"))
	got := e.list()
	want := []string{"1x dial: dial tcp ADDR: connection refused", "2x stream header: read tcp ADDR: i/o timeout"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("list = %q", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestStable(t *testing.T) {
	cases := []struct {
		r    []int64
		want bool
	}{
		{[]int64{100000, 100500, 100900}, true},
		{[]int64{100000, 95000, 100000}, false},
		{[]int64{1000, 1200, 1100}, true}, // within 256 KiB
		{[]int64{1000, 2000, 1500}, false},
	}
	for _, c := range cases {
		if got := stable(c.r); got != c.want {
			t.Errorf("stable(%v) = %v", c.r, got)
		}
	}
}

func TestSCRAMCacheRoundTrip(t *testing.T) {
	path := t.TempDir() + "/cache"
	c, err := loadSCRAMCache(path)
	if err != nil {
		t.Fatal(err)
	}
	k := scramKey("user", "QSXCR+Q6sek8bf92", 4096)
	c.put(k, []byte{1, 2, 3})
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	c2, err := loadSCRAMCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.get(k); string(got) != "\x01\x02\x03" {
		t.Fatalf("cached = %v", got)
	}
	if c2.get(scramKey("user", "QSXCR+Q6sek8bf92", 4097)) != nil {
		t.Fatal("other iteration count hit the cache")
	}
	var none *scramCache
	none.put(k, nil) // a nil cache is a no-op
	if none.get(k) != nil || none.save() != nil {
		t.Fatal("nil cache")
	}
}

// The tool offers the same classical key exchange to every server unless
// asked for the post-quantum hybrid, and a Go server then agrees on X25519.
func TestClientTLSGroups(t *testing.T) {
	cases := []struct {
		name string
		pq   bool
		want tls.CurveID
	}{
		{"classic", false, tls.X25519},
		{"post-quantum", true, tls.X25519MLKEM768},
	}
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
			go srv.Handshake()
			cl := tls.Client(a, clientTLSConfig(dialOptions{Domain: "localhost", PostQuantum: c.pq}))
			if err := cl.Handshake(); err != nil {
				t.Fatal(err)
			}
			if got := cl.ConnectionState().CurveID; got != c.want {
				t.Fatalf("negotiated %v, want %v", got, c.want)
			}
		})
	}
}
