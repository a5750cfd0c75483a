package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// Cookie names. The CSRF cookie is readable by page scripts (double submit);
// the session cookie is not.
const (
	sessionCookie = "aviary_session"
	csrfCookie    = "aviary_csrf"
	csrfHeader    = "X-CSRF-Token"
	tokenPrefix   = "admin.token." // property name prefix for API tokens
)

// principal is who a request acts as.
type principal struct {
	Admin  string // bare JID
	Via    string // "cookie" or "token"
	CSRF   string // the session's CSRF token (cookie auth only)
	Cookie string
	// flash is the message the session's last form left for the next
	// page (cookie auth only).
	flash    string
	flashErr bool
}

func randomToken() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// tokenRecord is stored (hashed key) in the shared properties so any node
// accepts a token any node issued.
type tokenRecord struct {
	Admin   string    `json:"admin"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// tokens persists API tokens in storage.Properties: only the SHA-256 of a
// token is stored.
type tokens struct{ props storage.Properties }

func (t tokens) issue(ctx context.Context, admin, name string) (string, error) {
	tok := "avt_" + randomToken()
	rec, _ := json.Marshal(tokenRecord{Admin: admin, Name: name, Created: time.Now().UTC()})
	if err := t.props.SetProperty(ctx, tokenPrefix+hashToken(tok), string(rec)); err != nil {
		return "", err
	}
	return tok, nil
}

func (t tokens) lookup(ctx context.Context, tok string) (tokenRecord, error) {
	v, err := t.props.GetProperty(ctx, tokenPrefix+hashToken(tok))
	if err != nil {
		return tokenRecord{}, err
	}
	var rec tokenRecord
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		return tokenRecord{}, err
	}
	return rec, nil
}

// authenticate resolves the request's principal, or returns an API error.
// Unsafe methods authenticated by cookie must carry the CSRF token.
func (s *Server) authenticate(r *http.Request) (*principal, *APIError) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, errUnauthorized("Authorization must be a Bearer token")
		}
		rec, err := s.tokens.lookup(r.Context(), tok)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, errUnauthorized("unknown API token")
			}
			return nil, errInternal(err)
		}
		if !s.isAdmin(rec.Admin) { // removed from the config since: refuse
			return nil, errForbidden("token owner is no longer an administrator")
		}
		return &principal{Admin: rec.Admin, Via: "token"}, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errUnauthorized("sign in first")
	}
	ws, err := s.sessions.get(r.Context(), c.Value)
	if errors.Is(err, errNoSession) {
		return nil, errUnauthorized("session expired: sign in again")
	}
	if err != nil {
		return nil, toAPIError(err)
	}
	if !s.isAdmin(ws.Admin) { // removed from the config since: refuse
		return nil, errForbidden("no longer an administrator")
	}
	csrf := csrfOf(c.Value)
	p := &principal{Admin: ws.Admin, Via: "cookie", CSRF: csrf, Cookie: c.Value, flash: ws.Flash, flashErr: ws.FlashErr}
	if !safeMethod(r.Method) {
		// From the header (scripts, the API) or the form body (console
		// forms), never from the URL: a token in a URL ends up in logs,
		// Referer headers and browser history.
		got := r.Header.Get(csrfHeader)
		if got == "" {
			if err := parseFormBody(r); err != nil {
				return nil, bodyError("reading the form", err)
			}
			got = r.PostForm.Get("csrf")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) != 1 {
			return nil, errForbidden("missing or wrong CSRF token")
		}
	}
	return p, nil
}

// parseFormBody parses a URL-encoded or multipart form body into
// r.PostForm (and r.MultipartForm); other bodies are left unread.
func parseFormBody(r *http.Request) error {
	err := r.ParseMultipartForm(32 << 20)
	if errors.Is(err, http.ErrNotMultipart) {
		return nil // ParseForm ran and read a URL-encoded body, if any
	}
	return err
}

// metricsAuth requires admin.metrics_token, when set, as a Bearer token
// on /metrics. Unset, /metrics is open: see conf.AdminConfig.MetricsToken
// for why that is the default.
func (s *Server) metricsAuth(next http.Handler) http.Handler {
	want := s.cfg.Admin.MetricsToken
	if want == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			writeError(w, errUnauthorized("/metrics needs the token set as admin.metrics_token (Authorization: Bearer)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (s *Server) isAdmin(bare string) bool {
	for _, a := range s.cfg.Admin.Admins {
		if strings.EqualFold(a, bare) {
			return true
		}
	}
	return false
}

// errSignInFailed answers a wrong password, an unknown account and a
// non-admin alike, so the form does not reveal which accounts exist or
// are admins.
var errSignInFailed = errUnauthorized("wrong username or password, or not an administrator")

// signIn checks an account's XMPP password and that it is an admin. Call
// it through signInLimited.
func (s *Server) signIn(ctx context.Context, username, password string) (string, *APIError) {
	user := username
	if i := strings.IndexByte(user, '@'); i >= 0 {
		if !strings.EqualFold(user[i+1:], s.backend.Domain()) {
			return "", errSignInFailed
		}
		user = user[:i]
	}
	bare := user + "@" + s.backend.Domain()
	ok, err := s.backend.CheckPassword(ctx, user, password)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return "", errInternal(err)
	}
	if !ok || !s.isAdmin(bare) {
		return "", errSignInFailed
	}
	return bare, nil
}
