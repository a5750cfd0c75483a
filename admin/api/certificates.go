package api

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

func init() {
	pageTemplates["certificates"] = template.Must(template.New("").Funcs(pageFuncs).ParseFS(templateFS, "templates/layout.html", "templates/certificates.html"))
}

func (s *Server) apiCertificates(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	if s.certs == nil {
		return nil, errNotFound("this node does not report certificates")
	}
	rep, err := s.certs.Certificates(ctx)
	if err != nil {
		return nil, toAPIError(err)
	}
	if rep.Certificates == nil {
		rep.Certificates = []Certificate{}
	}
	return rep, nil
}

// certificateRow is a certificate as the page shows it.
type certificateRow struct {
	Certificate
	Expires string // "2027-03-01 12:00 UTC (in 85 days)"
	State   string // pill class: ok, warn (under 14 days), bad (expired, self-signed)
}

// acmeRow is an ACME name as the page shows it.
type acmeRow struct {
	ACMEName
	Expires, Next string
}

func (s *Server) certificatePage() {
	if s.certs == nil {
		return
	}
	s.page("GET /admin/certificates", "certificates", "Certificates", func(ctx context.Context, r *http.Request) (any, error) {
		rep, err := s.certs.Certificates(ctx)
		now := time.Now()
		var rows []certificateRow
		for _, c := range rep.Certificates {
			row := certificateRow{Certificate: c, Expires: expiry(c.NotAfter, now), State: "ok"}
			switch {
			case now.After(c.NotAfter) || c.Source == "self-signed":
				row.State = "bad"
			case c.NotAfter.Sub(now) < 14*24*time.Hour:
				row.State = "warn"
			}
			rows = append(rows, row)
		}
		var acme []acmeRow
		if rep.ACME != nil {
			for _, n := range rep.ACME.Names {
				row := acmeRow{ACMEName: n, Next: "now"}
				if !n.NotAfter.IsZero() {
					row.Expires = expiry(n.NotAfter, now)
				}
				if n.Next.After(now) {
					row.Next = n.Next.UTC().Format("2006-01-02 15:04 UTC")
				}
				acme = append(acme, row)
			}
		}
		return map[string]any{"Node": rep.Node, "Certificates": rows, "ACME": rep.ACME, "ACMENames": acme}, err
	})
}

// expiry is a date with how far away it is.
func expiry(t, now time.Time) string {
	d := t.Sub(now)
	var rel string
	switch {
	case d < 0:
		rel = "expired"
	case d >= 48*time.Hour:
		rel = fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
	default:
		rel = "in " + strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return t.UTC().Format("2006-01-02 15:04 UTC") + " (" + rel + ")"
}
