package api

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aviary-im/aviary/conf"
)

func init() {
	for _, page := range []string{"user", "session", "settings", "logs", "audit", "rooms"} {
		files := []string{"templates/layout.html", "templates/" + page + ".html"}
		if page == "user" {
			files = append(files, "templates/sessions.html") // the "sessionrows" table
		}
		pageTemplates[page] = template.Must(template.New("").Funcs(pageFuncs).ParseFS(templateFS, files...))
	}
}

// pageFuncs are the helpers the console's templates call.
var pageFuncs = template.FuncMap{
	"since":  since,
	"uptime": uptime,
	"ago":    func(t time.Time) string { return since(t) + " ago" },
	// pathSeg escapes one URL path segment (a full JID has a slash).
	"pathSeg": url.PathEscape,
}

// since renders how long ago t was: "3d 4h", "5m 2s".
func since(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return uptime(time.Since(t).Seconds())
}

// consolePages mounts the pages of console.go's API.
func (s *Server) consolePages() {
	s.page("GET /admin/users/{user}", "user", "User", func(ctx context.Context, r *http.Request) (any, error) {
		user := r.PathValue("user")
		if e := validUser(user); e != nil {
			return UserDetail{}, e
		}
		return s.backend.User(ctx, user)
	})
	s.page("GET /admin/sessions/{jid}", "session", "Session", func(ctx context.Context, r *http.Request) (any, error) {
		full, aerr := s.sessionJID(r.PathValue("jid"))
		if aerr != nil {
			return Session{}, aerr
		}
		sess, aerr := s.session(ctx, full)
		if aerr != nil {
			return Session{}, aerr
		}
		return sess, nil
	})
	s.page("GET /admin/settings", "settings", "Settings", func(ctx context.Context, r *http.Request) (any, error) {
		st, err := s.backend.Settings(ctx)
		return settingsPage{Settings: st, Keys: sortedKeys(st.Live), LogLevels: logLevels}, err
	})
	s.page("GET /admin/logs", "logs", "Logs", func(ctx context.Context, r *http.Request) (any, error) {
		q := r.URL.Query()
		lq := LogQuery{Node: q.Get("node"), Level: q.Get("level"), Limit: 300}
		if !contains(logLevels, lq.Level) {
			lq.Level = "info"
		}
		nodes, err := s.backend.Nodes(ctx)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		if lq.Node != "" && !contains(names, lq.Node) {
			lq.Node = ""
		}
		lines, err := s.backend.Logs(ctx, lq)
		// Newest first: what an operator opens the page for.
		for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
			lines[i], lines[j] = lines[j], lines[i]
		}
		return logsPage{Query: lq, Nodes: names, Levels: logLevels, Lines: lines}, err
	})
	s.page("GET /admin/audit", "audit", "Audit log", func(ctx context.Context, r *http.Request) (any, error) {
		entries := s.audit.recent()
		for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
			entries[i], entries[j] = entries[j], entries[i]
		}
		return entries, nil
	})
	s.page("GET /admin/rooms", "rooms", "Rooms", func(ctx context.Context, r *http.Request) (any, error) {
		if s.rooms == nil {
			return roomsPage{}, nil
		}
		rooms, err := s.rooms.Rooms(ctx)
		return roomsPage{Available: true, Rooms: rooms}, err
	})

	for _, lock := range []bool{true, false} {
		verb := map[bool]string{true: "lock", false: "unlock"}[lock]
		s.form("POST /admin/users/{user}/"+verb, "users."+verb, func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
			user := r.PathValue("user")
			if e := validUser(user); e != nil {
				return "", "", e
			}
			closed, err := s.backend.SetUserLocked(ctx, user, lock)
			if err != nil {
				return "", "", toAPIError(err)
			}
			msg := "Unlocked " + user + ": it can log in again."
			if lock {
				msg = "Locked " + user + ": logins are refused on every node"
				switch closed {
				case 0:
					msg += "."
				case 1:
					msg += ", and its one session was closed."
				default:
					msg += ", and its " + itoa(closed) + " sessions were closed."
				}
			}
			return "/admin/users/" + url.PathEscape(user), msg, nil
		})
	}
	s.form("POST /admin/settings", "settings.change", func(ctx context.Context, p *principal, r *http.Request) (string, string, *APIError) {
		if err := r.ParseForm(); err != nil {
			return "", "", bodyError("reading the form", err)
		}
		changes := map[string]string{}
		for _, k := range conf.Live {
			if v, ok := r.PostForm[k]; ok && len(v) > 0 {
				changes[k] = strings.TrimSpace(v[0])
			}
		}
		results, err := s.backend.ChangeSettings(ctx, r.PostFormValue("etag"), changes)
		if err != nil {
			return "", "", toAPIError(err)
		}
		var changed []string
		var failed []string
		for _, res := range results {
			if res.Error != "" {
				failed = append(failed, res.Node+": "+res.Error)
			} else if len(res.Changed) > 0 && len(changed) == 0 {
				changed = res.Changed
			}
		}
		msg := "Nothing changed."
		if len(changed) > 0 {
			msg = "Changed " + strings.Join(changed, ", ") + " on " + itoa(len(results)-len(failed)) + " node(s), until each restarts."
		}
		if len(failed) > 0 {
			return "", "", &APIError{Status: http.StatusBadGateway, Message: msg + " Not applied on " + strings.Join(failed, "; ")}
		}
		return "/admin/settings", msg, nil
	})
}

type settingsPage struct {
	Settings
	Keys      []string
	LogLevels []string
}

type logsPage struct {
	Query  LogQuery
	Nodes  []string
	Levels []string
	Lines  []LogLine
}

type roomsPage struct {
	Available bool
	Rooms     []Room
}

func itoa(n int) string { return strconv.Itoa(n) }
