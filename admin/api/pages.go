package api

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

var pageTemplates = map[string]*template.Template{}

func init() {
	for _, page := range []string{"login", "overview", "cluster", "users", "sessions", "federation", "plugins"} {
		files := []string{"templates/layout.html", "templates/" + page + ".html"}
		if page == "cluster" {
			files = append(files, "templates/overview.html") // the "nodes" table
		}
		pageTemplates[page] = template.Must(template.New("").Funcs(pageFuncs).ParseFS(templateFS, files...))
	}
}

// loginMessages are the only texts the sign-in page shows, chosen by the
// msg code in its URL. It never shows text taken from the URL: a link
// could otherwise make the console say anything ("your session expired,
// sign in at evil.example"). Other pages show the flash their own form
// left in the admin's session (sessions.setFlash), never the URL either.
var loginMessages = map[string]struct {
	text string
	err  bool
}{
	"signed-out":   {"Signed out.", false},
	"login-failed": {errSignInFailed.Message, true},
	"throttled":    {errTooManySignIns.Message, true},
	"unavailable":  {"Signing in is not possible right now (see the node's log); try again later.", true},
}

// pageData is what every page template gets.
type pageData struct {
	Title, Page, Admin, CSRF, Node, Domain string
	Flash                                  string
	FlashErr                               bool
	Data                                   any
}

// pageRoutes mounts the console. Pages are server-rendered; forms post to
// the routes below, which call the same backend as the JSON API, check the
// same CSRF token, and write the same audit log.
func (s *Server) pageRoutes() {
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
	})
	s.mux.HandleFunc("GET /admin/login", func(w http.ResponseWriter, r *http.Request) {
		m := loginMessages[r.URL.Query().Get("msg")]
		s.render(w, r, "login", pageData{Title: "Sign in", Flash: m.text, FlashErr: m.err})
	})
	s.mux.HandleFunc("POST /admin/login", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
		if err := r.ParseForm(); err != nil {
			writeError(w, bodyError("reading the form", err))
			return
		}
		user, pw := r.PostFormValue("username"), r.PostFormValue("password")
		bare, aerr := s.signInLimited(r.Context(), remote(r), user, pw)
		if aerr != nil {
			s.auditSignInFailure(r, "password", user, aerr)
			code := "login-failed"
			switch {
			case aerr.Status == http.StatusTooManyRequests:
				code = "throttled"
			case aerr != errSignInFailed:
				code = "unavailable"
			}
			http.Redirect(w, r, "/admin/login?msg="+code, http.StatusSeeOther)
			return
		}
		id, csrf, err := s.sessions.create(r.Context(), bare)
		if err != nil {
			s.log.Error("admin sign-in: storing the session", "err", err)
			http.Redirect(w, r, "/admin/login?msg=unavailable", http.StatusSeeOther)
			return
		}
		s.setSessionCookies(w, r, id, csrf)
		s.audit.write(AuditEntry{Admin: bare, Via: "password", Action: "login", Result: "ok", Remote: remote(r)})
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
	})
	s.page("GET /admin/{$}", "overview", "Overview", func(ctx context.Context, r *http.Request) (any, error) {
		o, err := s.backend.Overview(ctx)
		if err != nil {
			return overviewPage{Overview: o}, err
		}
		info, err := s.backend.ServerInfo(ctx)
		return overviewPage{Overview: o, Info: info}, err
	})
	s.page("GET /admin/cluster", "cluster", "Cluster", func(ctx context.Context, r *http.Request) (any, error) {
		on, err := s.backend.ClusterEnabled(ctx)
		if err != nil {
			return nil, err
		}
		nodes, err := s.backend.Nodes(ctx)
		return map[string]any{"Enabled": on, "Nodes": nodes}, err
	})
	s.page("GET /admin/users", "users", "Users", func(ctx context.Context, r *http.Request) (any, error) {
		q := r.URL.Query().Get("q")
		users, total, err := s.backend.ListUsers(ctx, q, 200, 0)
		return map[string]any{"Users": users, "Total": total, "Q": q}, err
	})
	s.page("GET /admin/sessions", "sessions", "Sessions", func(ctx context.Context, r *http.Request) (any, error) {
		ss, err := s.backend.Sessions(ctx)
		return struct{ Sessions []Session }{ss}, err
	})
	s.page("GET /admin/federation", "federation", "Federation", func(ctx context.Context, r *http.Request) (any, error) {
		return s.backend.S2S(ctx)
	})
	s.page("GET /admin/plugins", "plugins", "Plugins", func(ctx context.Context, r *http.Request) (any, error) {
		ps, err := s.backend.Plugins(ctx)
		if err != nil {
			return nil, err
		}
		u, err := s.backend.Upgrade(ctx)
		return map[string]any{"Plugins": ps, "Upgrade": u}, err
	})

	s.form("POST /admin/logout", "logout", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		s.sessions.delete(ctx, p.Cookie)
		return "/admin/login?msg=signed-out", "", nil
	})
	s.form("POST /admin/cluster", "cluster.switch", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		var on bool
		switch r.FormValue("enabled") {
		case "true":
			on = true
		case "false":
		default:
			return "", "", errBadRequest("enabled must be true or false")
		}
		if err := s.backend.SetClusterEnabled(ctx, on); err != nil {
			return "", "", toAPIError(err)
		}
		state := "disabled"
		if on {
			state = "enabled"
		}
		return "/admin/cluster", "Clustering " + state + "; every node follows within seconds.", nil
	})
	s.form("POST /admin/nodes/{node}/drain", "node.drain", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		if err := s.backend.Drain(ctx, r.PathValue("node")); err != nil {
			return "", "", toAPIError(err)
		}
		return "/admin/cluster", "Draining " + r.PathValue("node") + ".", nil
	})
	s.form("POST /admin/users", "users.create", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		user, pw := strings.TrimSpace(r.FormValue("username")), r.FormValue("password")
		if e := validUser(user); e != nil {
			return "", "", e
		}
		if e := validPassword(pw); e != nil {
			return "", "", e
		}
		if err := s.backend.CreateUser(ctx, user, pw); err != nil {
			return "", "", toAPIError(err)
		}
		return "/admin/users", "Created " + user + ".", nil
	})
	s.form("POST /admin/users/{user}/delete", "users.delete", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		user := r.PathValue("user")
		if e := validUser(user); e != nil {
			return "", "", e
		}
		if err := s.backend.DeleteUser(ctx, user); err != nil {
			return "", "", toAPIError(err)
		}
		return "/admin/users", "Deleted " + user + ".", nil
	})
	s.form("POST /admin/users/{user}/password", "users.password", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		user, pw := r.PathValue("user"), r.FormValue("password")
		if e := validUser(user); e != nil {
			return "", "", e
		}
		if e := validPassword(pw); e != nil {
			return "", "", e
		}
		if err := s.backend.SetPassword(ctx, user, pw); err != nil {
			return "", "", toAPIError(err)
		}
		return "/admin/users", "Password of " + user + " changed.", nil
	})
	s.form("POST /admin/sessions/kick", "sessions.kick", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		full, aerr := s.sessionJID(r.FormValue("jid"))
		if aerr != nil {
			return "", "", aerr
		}
		ok, err := s.backend.Kick(ctx, full)
		if err != nil {
			return "", "", toAPIError(err)
		}
		if !ok {
			return "", "", errNotFound("no such session")
		}
		return "/admin/sessions", "Kicked " + full + ".", nil
	})
	s.formBody("POST /admin/plugins/upload", "plugins.upload", MaxBodyBytes, func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		name, version := r.FormValue("name"), r.FormValue("version")
		if e := validPlugin(name, version); e != nil {
			return "", "", e
		}
		f, fh, err := r.FormFile("artifact")
		if err != nil {
			return "", "", errBadRequest("choose a .wasm file to upload")
		}
		defer f.Close()
		if fh.Size > maxUploadBody {
			return "", "", &APIError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("a plugin is at most %d bytes", maxUploadBody)}
		}
		data, err := io.ReadAll(f)
		if err != nil {
			return "", "", bodyError("reading the upload", err)
		}
		if len(data) < 8 || string(data[:4]) != "\x00asm" {
			return "", "", errBadRequest("the file is not a WebAssembly module")
		}
		if err := s.backend.UploadPlugin(ctx, name, version, data); err != nil {
			return "", "", toAPIError(err)
		}
		return "/admin/plugins", "Uploaded " + name + " " + version + ".", nil
	})
	for _, on := range []bool{true, false} {
		verb := "disable"
		if on {
			verb = "enable"
		}
		s.form("POST /admin/plugins/{name}/{version}/"+verb, "plugins."+verb, func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
			name, version := r.PathValue("name"), r.PathValue("version")
			if e := validPlugin(name, version); e != nil {
				return "", "", e
			}
			if err := s.backend.SetPluginEnabled(ctx, name, version, on); err != nil {
				return "", "", toAPIError(err)
			}
			return "/admin/plugins", name + " " + version + " " + verb + "d.", nil
		})
	}
	s.form("POST /admin/plugins/{name}/upgrade", "plugins.upgrade", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		name, version := r.PathValue("name"), r.FormValue("version")
		if e := validPlugin(name, version); e != nil {
			return "", "", e
		}
		if err := s.backend.StartUpgrade(ctx, name, version); err != nil {
			return "", "", toAPIError(err)
		}
		return "/admin/plugins", "Rolling upgrade of " + name + " to " + version + " started.", nil
	})
}

// overviewPage is the front page: the cluster and each node's server
// information.
type overviewPage struct {
	Overview
	Info []ServerInfo
}

// page serves a GET page for a signed-in admin; anonymous visitors go to
// the sign-in form.
func (s *Server) page(pattern, name, title string, load func(ctx context.Context, r *http.Request) (any, error)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, aerr := s.authenticate(r)
		if aerr != nil {
			if aerr.Status == http.StatusUnauthorized || aerr.Status == http.StatusForbidden {
				http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
				return
			}
			writeError(w, aerr)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		data, err := load(ctx, r)
		pd := pageData{Title: title, Page: name, Admin: p.Admin, CSRF: p.CSRF, Node: s.backend.NodeName(), Domain: s.backend.Domain(), Data: data}
		if p.flash != "" {
			pd.Flash, pd.FlashErr = p.flash, p.flashErr
			_ = s.sessions.clearFlash(ctx, p.Cookie)
		}
		if err != nil {
			pd.Flash, pd.FlashErr = "Could not load everything: "+toAPIError(err).Message, true
			s.log.Error("admin page", "page", name, "err", err)
		}
		s.render(w, r, name, pd)
	})
}

// formAction is a console form's work: it returns where to go next and
// what to tell the admin there.
type formAction func(ctx context.Context, p *principal, r *http.Request) (to, flash string, aerr *APIError)

// form handles a POSTed console form whose body is at most maxBody bytes.
func (s *Server) form(pattern, name string, fn formAction) {
	s.formBody(pattern, name, maxBody, fn)
}

// formBody handles a POSTed console form: authenticated, CSRF-checked,
// audited, then a redirect (post/redirect/get). The message for the next
// page stays in the admin's session, not in the URL (see loginMessages).
func (s *Server) formBody(pattern, name string, limit int64, fn formAction) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		p, aerr := s.authenticate(r)
		if aerr != nil {
			s.audit.write(AuditEntry{Action: name, Target: r.URL.Path, Result: aerr.Message, Remote: remote(r)})
			if aerr.Status == http.StatusUnauthorized {
				http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
				return
			}
			writeError(w, aerr)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		to, flash, aerr := fn(ctx, p, r)
		res := "ok"
		if aerr != nil {
			res = aerr.Message
			if aerr.err != nil {
				s.log.Error("admin form", "action", name, "err", aerr.err)
			}
			back := r.Header.Get("Referer")
			if u, err := url.Parse(back); err != nil || back == "" || !strings.HasPrefix(u.Path, "/admin/") {
				back = "/admin/"
			} else {
				back = u.Path
			}
			to = back
			_ = s.sessions.setFlash(ctx, p.Cookie, aerr.Message, true)
		} else if flash != "" {
			_ = s.sessions.setFlash(ctx, p.Cookie, flash, false)
		}
		s.audit.write(AuditEntry{Admin: p.Admin, Via: p.Via, Action: name, Target: r.URL.Path, Result: res, Remote: remote(r)})
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, pd pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pageTemplates[name].ExecuteTemplate(w, name+".html", pd); err != nil {
		s.log.Error("render", "page", name, "err", err)
	}
}
