package plugintest_test

import (
	"testing"

	"github.com/aviary-im/aviary/plugins/plugintest"
)

// TestNetCallAfterSends: the in-memory net keeps Call's promise as the
// real clusters do (group chat's tests depend on it).
func TestNetCallAfterSends(t *testing.T) {
	net := plugintest.NewNet()
	t.Cleanup(net.Close)
	a, b := net.Join("a"), net.Join("b")
	plugintest.CheckCallAfterSends(t, a.For("p"), b.For("p"))
}
