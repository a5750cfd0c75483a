package backend

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/plugins/examples/exampletest"
	"github.com/aviary-im/aviary/plugins/runtime"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/pluginhost"
	"github.com/aviary-im/aviary/server/servertest"
	"github.com/aviary-im/aviary/storage"
	"github.com/aviary-im/aviary/wire"
)

// TestPluginHostBoundsOnANode runs the "hog" guest on a real node (bounds
// from plugins.wasm, the stanza bound from c2s.max_stanza_bytes): a client
// asks it to send a stanza over the stanza bound; the node refuses the
// copy, the client is answered with <resource-constraint/> instead of
// silence, the refusal shows in /metrics, and the next command (the
// canary) is answered as usual.
func TestPluginHostBoundsOnANode(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Plugins.Wasm.MaxHostCalls = 16
	plugs := pluginhost.NewService(cfg.Plugins, cfg.C2S.MaxStanzaBytes, servertest.TestLogger())
	adm := NewService(cfg, Deps{Logger: servertest.TestLogger(), Plugins: plugs})
	n := servertest.RunServer(t, cfg, server.WithService(plugs), server.WithService(adm))
	servertest.CreateUser(t, n, "alice", "alice-secret")

	wasm, err := os.ReadFile(exampletest.Build(t, "plugins/runtime/testdata/hog"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Store().PutPlugin(ctx, storage.PluginRecord{Name: "hog", Version: "1", Checksum: runtime.Checksum(wasm),
		Artifact: wasm, Enabled: true, Uploaded: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := adm.Plugins().ApplyLocal(ctx, "hog", "1"); err != nil {
		t.Fatal(err)
	}

	alice := servertest.DialAddr(t, n.Addr(server.ListenerC2S).String(), "localhost", false)
	alice.Login("alice", "alice-secret", "phone")
	alice.Send(`<message to='localhost' type='chat' id='big1'><body>send-big</body></message>`)
	bounce := alice.Await("the answer to send-big", func(el *wire.Element) bool { return el.ID() == "big1" })
	if e := bounce.Child("error", ""); bounce.Type() != "error" || e == nil || e.Child("resource-constraint", wire.NSStanzas) == nil {
		t.Fatalf("answer %s, want a resource-constraint error", bounce)
	}

	resp, err := http.Get("http://" + adm.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `aviary_plugin_refused_calls_total{limit="stanza",node="test-node",plugin="hog",version="1"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %s", want)
	}

	alice.Send(`<message to='localhost' type='chat' id='ok1'><body>ok</body></message>`)
	alice.Await("the canary's answer", func(el *wire.Element) bool {
		return el.Name == "message" && el.Type() == "chat" && el.ChildText("body", "") == "ok"
	})
}
