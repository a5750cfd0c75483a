package server

import (
	"context"
	"log/slog"
	"sync"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/server/certs"
	"github.com/aviary-im/aviary/server/tlsutil"
	"github.com/aviary-im/aviary/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// newCertManager builds the node's certificate manager: the stored
// certificates (ACME, imported) over the fallback of tls.cert_file or the
// self-signed certificate.
func newCertManager(cfg *conf.Config, store storage.Store, log *slog.Logger, reg prometheus.Registerer, o options) (*certs.Manager, error) {
	co := certs.Options{
		Config: certs.ConfigFrom(cfg), Store: certs.NewDBStore(store), Node: cfg.Cluster.NodeName,
		Logger: log, Registry: reg,
	}
	if o.tls == nil {
		tc, source, err := tlsutil.LoadCertificate(cfg, log)
		if err != nil {
			return nil, err
		}
		if co.Fallback, err = certs.FromTLS(tc, source, cfg.Cluster.NodeName); err != nil {
			return nil, err
		}
	}
	if o.certOpts != nil {
		o.certOpts(&co)
	}
	return certs.New(co)
}

// certService runs the certificate manager's loop: picking up what other
// nodes store and, with tls.acme.enabled, ordering and renewing.
type certService struct {
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func (s *certService) Name() string { return "certs" }

func (s *certService) Start(ctx context.Context, n *Node) error {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		n.certs.Run(rctx)
	}()
	return nil
}

func (s *certService) Stop(ctx context.Context) error {
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
	return nil
}
