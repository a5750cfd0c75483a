package auth

import (
	"context"
	"testing"
)

// FuzzExchange feeds arbitrary client messages to every mechanism: no
// panic, and never a success without the right password.
func FuzzExchange(f *testing.F) {
	f.Add("SCRAM-SHA-256", []byte("n,,n=alice,r=abcdef"), []byte("c=biws,r=abcdef,p=AAAA"))
	f.Add("SCRAM-SHA-1", []byte("y,a=alice@example.org,n=al=3Dice,r=x"), []byte("c=eSwsYT1hbGljZUBleGFtcGxlLm9yZyw=,r=x,p=="))
	f.Add("PLAIN", []byte("\x00alice\x00wrong"), []byte(""))
	store := newMemUsers()
	um := &Users{Store: store, Domain: "example.org", Iterations: 4096}
	if err := um.CreateUser(context.Background(), "alice", "s3cret pass"); err != nil {
		f.Fatal(err)
	}
	a := New(Options{Store: store, Domain: "example.org"})
	f.Fuzz(func(t *testing.T, mech string, first, second []byte) {
		x, err := a.Start(mech, true)
		if err != nil {
			return
		}
		_, done, err := x.Step(context.Background(), first)
		if err != nil {
			return
		}
		if done {
			if string(first) != "\x00alice\x00s3cret pass" && x.Username() == "alice" {
				t.Fatalf("authenticated with %q", first)
			}
			return
		}
		if _, done, err = x.Step(context.Background(), second); err == nil && done {
			t.Fatalf("SCRAM success from fuzzed input %q / %q", first, second)
		}
	})
}
