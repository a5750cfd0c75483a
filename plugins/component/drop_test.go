package component_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviary-im/aviary/plugins/component"
	"github.com/aviary-im/aviary/plugins/plugintest"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/wire"
)

// TestQueuedStanzasBounceWhenTheConnectionDrops: stanzas accepted for a
// component that stops reading pile up in its connection's queue; when
// the connection drops, each one the node did not write is answered with
// remote-server-timeout, none vanishes: written + bounced = accepted.
// (What was written into the socket and never read by the component is
// gone with the connection: XEP-0114 has no acknowledgements, so the
// server cannot know; that is the protocol's limit, not counted here.)
func TestQueuedStanzasBounceWhenTheConnectionDrops(t *testing.T) {
	h := plugintest.NewHost(t)
	h.Cfg.Components.Listen = "127.0.0.1:0"
	h.Cfg.Components.Secrets = map[string]string{botDomain: botSecret}
	h.Cfg.Components.HandshakeTimeout = 5 * time.Second
	h.Metrics = prometheus.NewRegistry()
	p := component.New()
	m := h.Start(t, p)

	comp := servertest.DialComponent(t, p.Addr().String(), botDomain, botSecret)
	// The component reads nothing more: the socket buffers fill, the
	// writer blocks, the queue grows.
	body := strings.Repeat("x", 16<<10)
	accepted := map[string]bool{}
	for i := range 2000 {
		id := fmt.Sprintf("m%d", i)
		err := h.ToService(t, m, fmt.Sprintf(`<message from='romeo@example.com/orchard' to='echo@bot.example.com' id='%s'><body>%s</body></message>`, id, body))
		if err == nil {
			accepted[id] = true
		}
	}
	if len(accepted) == 0 {
		t.Fatal("nothing accepted")
	}
	written := func() int {
		mfs, err := h.Metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "aviary_component_sent_total" {
				return int(mf.GetMetric()[0].GetCounter().GetValue())
			}
		}
		t.Fatal("no aviary_component_sent_total")
		return -1
	}
	if w := written(); w >= len(accepted) {
		t.Fatalf("all %d accepted stanzas were written before the drop (%d): the test needs some queued", len(accepted), w)
	}
	comp.Conn.Close()

	bounced := map[string]bool{}
	servertest.CheckFor(t, 40*time.Second, 10*time.Millisecond, func() error {
		for _, s := range h.Routed() {
			el := plugintest.Parse(t, s)
			id := el.Attr("id")
			if el.Type() != "error" || !accepted[id] {
				continue
			}
			if e := el.Child("error", ""); e == nil || e.Child("remote-server-timeout", wire.NSStanzas) == nil {
				return fmt.Errorf("bounce of %s is not remote-server-timeout: %s", id, s[:min(len(s), 300)])
			}
			if bounced[id] {
				return fmt.Errorf("%s bounced twice", id)
			}
			bounced[id] = true
		}
		if w := written(); w+len(bounced) != len(accepted) {
			return fmt.Errorf("accepted %d: written %d + bounced %d", len(accepted), w, len(bounced))
		}
		return nil
	})
	t.Logf("accepted %d, written %d, bounced %d", len(accepted), written(), len(bounced))
}
