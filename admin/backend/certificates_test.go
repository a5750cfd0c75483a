package backend

import (
	"context"
	"testing"

	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/servertest"
)

// TestCertificatesReport: the admin API's report lists the node's
// self-signed fallback, and ACME's names only when ACME is on.
func TestCertificatesReport(t *testing.T) {
	for _, acme := range []bool{false, true} {
		cfg := servertest.DefaultConfig(t)
		cfg.Domain = "chat.example.com"
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.TLS.ACME.Enabled = acme
		n, err := server.New(cfg, server.WithLogger(servertest.TestLogger()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Store().Close() })
		rep, err := certificates{n}.Certificates(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Certificates) != 1 || rep.Certificates[0].Source != "self-signed" || rep.Certificates[0].Node != "test-node" ||
			rep.Certificates[0].Names[0] != "chat.example.com" || rep.Node != "test-node" {
			t.Errorf("acme %v: certificates %+v", acme, rep)
		}
		switch {
		case !acme && rep.ACME != nil:
			t.Errorf("ACME off, but reported: %+v", rep.ACME)
		case acme && (rep.ACME == nil || len(rep.ACME.Names) != 4 || rep.ACME.Names[1].Name != "conference.chat.example.com" || !rep.ACME.Names[0].Next.IsZero()):
			t.Errorf("ACME on: %+v", rep.ACME)
		}
	}
}
