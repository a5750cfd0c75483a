package backend

import (
	"context"

	"github.com/aviary-im/aviary/admin/api"
	"github.com/aviary-im/aviary/server"
)

// certificates reports the node's certificate manager to the admin API.
type certificates struct{ n *server.Node }

var _ api.CertificateSource = certificates{}

func (c certificates) Certificates(ctx context.Context) (api.CertificateReport, error) {
	m := c.n.Certs()
	rep := api.CertificateReport{Node: c.n.Cluster().NodeName()}
	for _, i := range m.Certificates() {
		rep.Certificates = append(rep.Certificates, api.Certificate{
			ID: i.ID, Names: i.Names, Issuer: i.Issuer, Serial: i.Serial,
			NotBefore: i.NotBefore, NotAfter: i.NotAfter, Source: i.Source, Node: i.Node,
		})
	}
	cfg := c.n.Config().TLS.ACME
	if !cfg.Enabled {
		return rep, nil
	}
	st, err := m.Status(ctx)
	if err != nil {
		return rep, err
	}
	rep.ACME = &api.ACMEStatus{Directory: cfg.Directory}
	for _, s := range st {
		rep.ACME.Names = append(rep.ACME.Names, api.ACMEName{
			Name: s.Name, Serial: s.Serial, NotAfter: s.NotAfter, Next: s.Next, Failures: s.Failures, LastError: s.LastError,
		})
	}
	return rep, nil
}
