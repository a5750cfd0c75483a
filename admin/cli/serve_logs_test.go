package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviary-im/aviary/internal/testutil"
	"github.com/aviary-im/aviary/server/assembly"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestServeLogsNameComponentOnce: a node built as `aviary serve` builds it
// logs each key once per line. The admin service was handed a logger that
// already said component=admin, and the audit log, the plugin host and the
// backend each added their own component on top, so the console's log
// viewer and any log search showed component=admin component=audit.
func TestServeLogsNameComponentOnce(t *testing.T) {
	cfg := servertest.DefaultConfig(t)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Admin.Admins = []string{"boss@localhost"}
	var out testutil.Buffer
	n, err := assembly.New(cfg, slog.New(slog.NewJSONHandler(&out, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	startCtx, cancelStart := context.WithTimeout(context.Background(), time.Minute)
	defer cancelStart()
	if err := n.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(context.WithoutCancel(startCtx)); err != nil {
			t.Errorf("stopping the node: %v", err)
		}
	})
	servertest.CreateUser(t, n.Node, "boss", "boss-secret-4711")

	addr := ""
	for line := range strings.Lines(out.String()) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "admin console listening" {
			addr = rec.Addr
		}
	}
	if addr == "" {
		t.Fatalf("no admin listener logged:\n%s", out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &apiClient{base: "http://" + addr, hc: &http.Client{Timeout: 30 * time.Second}}
	if _, err := c.login(ctx, "boss", "boss-secret-4711", "log test"); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), `"msg":"admin action"`) {
			return errors.New("no audit line logged yet")
		}
		return nil
	})

	lines, err := servertest.JSONLogKeys(out.String())
	if err != nil {
		t.Fatal(err)
	}
	components := 0
	for i, keys := range lines {
		if rep := servertest.RepeatedKeys(keys); len(rep) > 0 {
			t.Errorf("keys %q twice in line %d of:\n%s", rep, i+1, out.String())
		}
		for _, k := range keys {
			if k == "component" {
				components++
			}
		}
	}
	if components == 0 {
		t.Errorf("no line named its component:\n%s", out.String())
	}
}
