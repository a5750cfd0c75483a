package api

import (
	"context"
	"net/http"
)

// pluginRoutes mounts the plugin calls beyond the catalogue's list,
// upload, enable, disable and upgrade (server.go).
func (s *Server) pluginRoutes() {
	s.handle("DELETE /api/plugins/{name}/{version}", "plugins.delete", s.apiDeletePlugin)
	s.handle("DELETE /api/plugins/{name}", "plugins.delete", s.apiDeletePlugin)
}

// pluginEntry answers a plugin change with the version's catalogue entry:
// enabled or not, and what every live node now reports of it.
func (s *Server) pluginEntry(ctx context.Context, name, version string) (any, *APIError) {
	ps, err := s.backend.Plugins(ctx)
	if err != nil {
		return nil, toAPIError(err)
	}
	for _, p := range ps {
		if p.Name == name && p.Version == version {
			return p, nil
		}
	}
	return nil, errNotFound(name + " " + version + " is not in the catalogue")
}

// apiDeletePlugin removes one version (DELETE /api/plugins/NAME/VERSION)
// or every version (DELETE /api/plugins/NAME) from the catalogue. The
// backend refuses with 409 while a version is enabled or a node runs it.
func (s *Server) apiDeletePlugin(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	name, version := r.PathValue("name"), r.PathValue("version")
	if e := validPlugin(name, version); e != nil {
		return nil, e
	}
	if err := s.backend.DeletePlugin(ctx, name, version); err != nil {
		return nil, toAPIError(err)
	}
	out := map[string]string{"deleted": name}
	if version != "" {
		out["version"] = version
	}
	return out, nil
}
