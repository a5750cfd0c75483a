package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The API behind the console pages an Openfire operator looks for:
// account details and locks, session details, server information, live
// settings, the nodes' logs and group chat rooms.

// RoomSource lists group chat rooms (XEP-0045) for GET /api/rooms and the
// rooms page. Group chat is not part of the server yet: without one both
// say so. The component that hosts rooms implements it.
type RoomSource interface {
	Rooms(ctx context.Context) ([]Room, error)
}

// Room is one group chat room.
type Room struct {
	JID       string `json:"jid"`
	Name      string `json:"name,omitempty"`
	Occupants int    `json:"occupants"`
	Node      string `json:"node,omitempty"` // the node hosting it now
	Public    bool   `json:"public"`
	Persist   bool   `json:"persistent"`
}

func (s *Server) consoleRoutes() {
	s.handle("GET /api/users/{user}", "users.show", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		user := r.PathValue("user")
		if e := validUser(user); e != nil {
			return nil, e
		}
		d, err := s.backend.User(ctx, user)
		return wrap(d, err)
	})
	s.handle("POST /api/users/{user}/lock", "users.lock", s.apiLock(true))
	s.handle("POST /api/users/{user}/unlock", "users.unlock", s.apiLock(false))
	s.handle("GET /api/sessions/{jid}", "sessions.show", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		full, aerr := s.sessionJID(r.PathValue("jid"))
		if aerr != nil {
			return nil, aerr
		}
		return s.session(ctx, full)
	})
	s.handle("GET /api/server", "server", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		in, err := s.backend.ServerInfo(ctx)
		return wrap(in, err)
	})
	s.handle("GET /api/settings", "settings", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		st, err := s.backend.Settings(ctx)
		if err != nil {
			return nil, toAPIError(err)
		}
		return withHeaders{st, http.Header{"Etag": {st.ETag}}}, nil
	})
	s.handle("PATCH /api/settings", "settings.change", s.apiChangeSettings)
	s.handle("GET /api/logs", "logs", s.apiLogs)
	s.handle("GET /api/rooms", "rooms", func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		if s.rooms == nil {
			return map[string]any{"available": false, "rooms": []Room{},
				"message": "group chat (XEP-0045) does not run on this server yet"}, nil
		}
		rooms, err := s.rooms.Rooms(ctx)
		if err != nil {
			return nil, toAPIError(err)
		}
		if rooms == nil {
			rooms = []Room{}
		}
		return map[string]any{"available": true, "rooms": rooms}, nil
	})
}

func (s *Server) apiLock(lock bool) action {
	return func(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
		user := r.PathValue("user")
		if e := validUser(user); e != nil {
			return nil, e
		}
		closed, err := s.backend.SetUserLocked(ctx, user, lock)
		if err != nil {
			return nil, toAPIError(err)
		}
		return map[string]any{"username": user, "locked": lock, "closed_sessions": closed}, nil
	}
}

// session returns one online session's details, or 404.
func (s *Server) session(ctx context.Context, full string) (Session, *APIError) {
	ss, err := s.backend.Sessions(ctx)
	if err != nil {
		return Session{}, toAPIError(err)
	}
	for _, x := range ss {
		if strings.EqualFold(x.JID, full) {
			return x, nil
		}
	}
	return Session{}, errNotFound("no such session")
}

// errIfMatchRequired answers a settings change without If-Match: writes
// must say which version of the settings they change (STYLE.md, "Live
// admin changes").
var errIfMatchRequired = &APIError{Status: http.StatusPreconditionRequired,
	Message: "If-Match is required: send the ETag of GET /api/settings"}

// apiChangeSettings changes live settings on every node: a JSON object of
// key → value (strings, numbers or booleans, as in the YAML file).
func (s *Server) apiChangeSettings(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		return nil, errIfMatchRequired
	}
	var raw map[string]any
	if err := decodeJSON(r, &raw); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, errBadRequest("nothing to change: send {\"key\": value, ...}")
	}
	changes := map[string]string{}
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			changes[k] = x
		case bool, float64:
			changes[k] = fmt.Sprint(x)
		default:
			return nil, errBadRequest("%s: want a string, number or boolean", k)
		}
	}
	results, err := s.backend.ChangeSettings(ctx, ifMatch, changes)
	if err != nil {
		return nil, toAPIError(err)
	}
	body := map[string]any{"results": results}
	st, err := s.backend.Settings(ctx)
	if err != nil {
		return body, nil
	}
	body["etag"] = st.ETag
	return withHeaders{body, http.Header{"Etag": {st.ETag}}}, nil
}

var logLevels = []string{"debug", "info", "warn", "error"}

func (s *Server) apiLogs(ctx context.Context, p *principal, r *http.Request) (any, *APIError) {
	q := r.URL.Query()
	lq := LogQuery{Node: q.Get("node"), Level: q.Get("level")}
	if lq.Level == "" {
		lq.Level = "info"
	}
	if !contains(logLevels, lq.Level) {
		return nil, errBadRequest("level must be one of %s", strings.Join(logLevels, ", "))
	}
	n, aerr := intParam(q.Get("limit"), 200, 1, 1000, "limit")
	if aerr != nil {
		return nil, aerr
	}
	lq.Limit = n
	lines, err := s.backend.Logs(ctx, lq)
	if err != nil {
		return nil, toAPIError(err)
	}
	return lines, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// withHeaders is an action's answer with response headers (ETag):
// handleBody sets them before it writes body.
type withHeaders struct {
	body any
	h    http.Header
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// uptime renders seconds as "3d 4h 5m".
func uptime(sec float64) string {
	d := int64(sec)
	days, hours, mins := d/86400, d%86400/3600, d%3600/60
	switch {
	case days > 0:
		return strconv.FormatInt(days, 10) + "d " + strconv.FormatInt(hours, 10) + "h " + strconv.FormatInt(mins, 10) + "m"
	case hours > 0:
		return strconv.FormatInt(hours, 10) + "h " + strconv.FormatInt(mins, 10) + "m"
	}
	return strconv.FormatInt(mins, 10) + "m " + strconv.FormatInt(d%60, 10) + "s"
}
