package conf

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Live lists the keys a running node takes without a restart: from the
// admin console or API (PATCH /api/settings), which change them on every
// running node of the cluster, and from its file, environment and flags
// read again on SIGHUP (`aviary serve`, on that node; CheckReload). A node
// that restarts reads its file again: a change meant to last goes into the
// file too. Any other key needs the file and a restart.
var Live = []string{"log_level", "c2s.allow_registration", "c2s.registration_limit"}

// Entry is one key of a configuration as the admin console shows it.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	// Live: the key can change while the node runs (Live).
	Live bool `json:"live,omitempty"`
	// Secret: the value is hidden ("(set)" or "").
	Secret bool `json:"secret,omitempty"`
}

// secretKeys hold credentials: Entries shows whether they are set, never
// their values. database.url shows without its password.
var secretKeys = []string{"cluster.secret", "s2s.dialback_secret", "admin.metrics_token"}

// Entries returns every key of c with its value written as Set reads it,
// in the order of the schema, secrets hidden.
func (c *Config) Entries() []Entry {
	var out []Entry
	walkFields(reflect.ValueOf(c).Elem(), "", func(key, _ string, f reflect.Value) {
		e := Entry{Key: key, Value: formatValue(f), Live: slices.Contains(Live, key)}
		switch {
		case slices.Contains(secretKeys, key):
			e.Secret = true
			if e.Value != "" {
				e.Value = "(set)"
			}
		case key == "database.url":
			e.Value = hidePassword(e.Value)
		}
		out = append(out, e)
	})
	return out
}

// Get returns one key's value, written as Set reads it.
func (c *Config) Get(key string) (string, error) {
	var v string
	found := false
	walkFields(reflect.ValueOf(c).Elem(), "", func(k, _ string, f reflect.Value) {
		if k == key {
			found, v = true, formatValue(f)
		}
	})
	if !found {
		return "", &Error{Key: key, Msg: "unknown key"}
	}
	return v, nil
}

// WithLive returns a copy of c with changes (key → value as Set reads it)
// applied, validated whole. It refuses the whole change, naming each key,
// when a key is not Live, a value does not parse, or the result does not
// validate; c is never touched. An empty or unchanged set of changes
// returns a copy equal to c.
func (c *Config) WithLive(changes map[string]string) (*Config, error) {
	next := *c // the Live keys are scalars: a shallow copy is independent for them
	var errs Errors
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(Live, k) {
			errs = append(errs, &Error{Key: k, Msg: fmt.Sprintf("cannot change while the node runs (restart it with the new value); only %s can", strings.Join(Live, ", "))})
			continue
		}
		if err := next.Set(k, changes[k]); err != nil {
			errs = append(errs, err.(*Error))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := next.Validate(); len(errs) > 0 {
		return nil, errs
	}
	return &next, nil
}

func formatValue(f reflect.Value) string {
	if f.Type() == reflect.TypeOf(time.Duration(0)) {
		return time.Duration(f.Int()).String()
	}
	switch f.Kind() {
	case reflect.Pointer:
		if f.IsNil() {
			return ""
		}
		return formatValue(f.Elem())
	case reflect.Slice:
		parts := make([]string, f.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(f.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	case reflect.Map:
		if f.Len() == 0 {
			return ""
		}
		b, _ := json.Marshal(f.Interface())
		return string(b)
	}
	return fmt.Sprint(f.Interface())
}

// hidePassword removes the password of a database URL.
func hidePassword(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
