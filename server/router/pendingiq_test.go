package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/wire"
)

// TestIQAnsweredWhenResponderNodeDies: alice asks bob and carol, both on
// node2; carol answers, bob does not before node2 dies. alice gets
// service-unavailable for her request to bob, and nothing more for the
// one carol answered.
func TestIQAnsweredWhenResponderNodeDies(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	carol := es[1].bindSM("carol", "c")
	es[0].sendFrom(alice, `<iq type='get' to='bob@example.com/b' id='q1'><query xmlns='jabber:iq:version'/></iq>`)
	es[0].sendFrom(alice, `<iq type='get' to='carol@example.com/c' id='q2'><query xmlns='jabber:iq:version'/></iq>`)
	if got := only("iq", bob.take()); len(got) != 1 || got[0].ID() != "q1" {
		t.Fatalf("bob got %v", got)
	}
	if got := only("iq", carol.take()); len(got) != 1 || got[0].ID() != "q2" {
		t.Fatalf("carol got %v", got)
	}
	es[1].sendFrom(carol, `<iq type='result' to='alice@example.com/a' id='q2'/>`)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if got := only("iq", alice.take()); len(got) != 1 || got[0].Type() != "result" || got[0].ID() != "q2" {
			return fmt.Errorf("alice got %v, want carol's result", got)
		}
		return nil
	})
	if n := es[0].r.iqs.outstanding(); n != 1 {
		t.Fatalf("%d requests outstanding, want bob's", n)
	}

	net.kill("node2")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		got := only("iq", alice.take())
		if len(got) != 1 {
			return fmt.Errorf("alice got %d IQs, want one error for bob's", len(got))
		}
		if el := got[0]; el.Type() != "error" || el.ID() != "q1" || el.From() != "bob@example.com/b" ||
			el.Child("error", "") == nil || el.Child("error", "").Child("service-unavailable", wire.NSStanzas) == nil {
			return fmt.Errorf("alice got %s, want service-unavailable from bob for q1", el)
		}
		return nil
	})
	if n := es[0].r.iqs.outstanding(); n != 0 {
		t.Fatalf("%d requests still outstanding", n)
	}
}

// TestIQToMovedResourceNotAnswered: a resource that is online again on
// another node when its old node is found dead may still answer; the
// router does not answer for it.
func TestIQToMovedResourceNotAnswered(t *testing.T) {
	es, net := threeNodes(t)
	alice := es[0].bindSM("alice", "a")
	bob := es[1].bindSM("bob", "b")
	es[0].sendFrom(alice, `<iq type='set' to='bob@example.com/b' id='q1'><x xmlns='urn:example'/></iq>`)
	if got := only("iq", bob.take()); len(got) != 1 {
		t.Fatalf("bob got %v", got)
	}
	found := net.killUnnoticed("node2")
	es[2].bindSM("bob", "b") // back before node2 is found dead
	// found runs the node-down callbacks, which route any answer, before
	// it returns.
	found()
	if n := es[0].r.iqs.outstanding(); n != 0 {
		t.Fatalf("%d requests still outstanding", n)
	}
	if got := only("iq", alice.take()); len(got) != 0 {
		t.Fatalf("alice got %v", got)
	}
}
