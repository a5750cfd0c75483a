package cli

import (
	"log/slog"

	"github.com/aviary-im/aviary/admin/backend"
	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server"
	"github.com/aviary-im/aviary/server/balance"
	"github.com/aviary-im/aviary/server/httpd"
)

// Every node that `aviary serve` starts runs federation and the HTTP
// connectors (each idle while its listener is off), then the plugin
// runtime and the admin console, which reports on the others.
func init() {
	RegisterServeOption(func(cfg *conf.Config, log *slog.Logger) ([]server.Option, error) {
		fed := server.NewFederationService()
		adm := backend.NewService(cfg, log)
		adm.S2S = fed.Stats
		web := httpd.NewService()
		bal := balance.NewService()
		bal.HTTP, bal.OnDrained = web, stopWhenDrained(log)
		adm.Drain, adm.Draining = bal.Drain, bal.Draining
		return []server.Option{
			server.WithService(fed),
			server.WithService(web),
			server.WithService(bal),
			server.WithService(adm),
		}, nil
	})
}
