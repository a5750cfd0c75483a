package plugins

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aviary-im/aviary/conf"
)

// SettingSpec describes one key a plugin reads from plugins.settings[ID].
type SettingSpec struct {
	Key     string
	Type    string // "bool", "string", "int" (a whole number, 0 or more) or "duration"
	Default string
	Doc     string
	// Values, for a string, are the values it may take (none: any).
	Values []string
}

// Configurable is implemented by plugins that take settings. The schema
// documents them and lets the node refuse a misspelt or mistyped key at
// start, naming it, instead of silently ignoring it.
type Configurable interface {
	Plugin
	Settings() []SettingSpec
}

// ValidateSettings checks conf plugins.settings against the schemas of the
// given plugins and returns every problem, each naming its key.
func ValidateSettings(cfg *conf.Config, list []Plugin) conf.Errors {
	var errs conf.Errors
	if cfg == nil {
		return nil
	}
	byID := map[string]Plugin{}
	for _, p := range list {
		byID[p.ID()] = p
	}
	ids := make([]string, 0, len(cfg.Plugins.Settings))
	for id := range cfg.Plugins.Settings {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p, ok := byID[id]
		if !ok {
			errs = append(errs, &conf.Error{Key: "plugins.settings." + id, Msg: "no running plugin has this ID"})
			continue
		}
		schema := map[string]SettingSpec{}
		if c, ok := p.(Configurable); ok {
			for _, s := range c.Settings() {
				schema[s.Key] = s
			}
		}
		for key, v := range cfg.Plugins.Settings[id] {
			k := "plugins.settings." + id + "." + key
			s, ok := schema[key]
			if !ok {
				errs = append(errs, &conf.Error{Key: k, Msg: fmt.Sprintf("unknown setting for %s", id)})
				continue
			}
			if msg := checkType(s.Type, v); msg != "" {
				errs = append(errs, &conf.Error{Key: k, Msg: msg})
			} else if str, ok := v.(string); ok && len(s.Values) > 0 && !slices.Contains(s.Values, str) {
				errs = append(errs, &conf.Error{Key: k, Msg: fmt.Sprintf("must be one of %s, not %q", strings.Join(s.Values, ", "), str)})
			}
		}
	}
	return errs
}

func checkType(typ string, v any) string {
	switch typ {
	case "bool":
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("must be true or false, not %v", v)
		}
	case "int":
		if n, ok := v.(int); !ok || n < 0 {
			return fmt.Sprintf("must be a whole number, 0 or more, not %v", v)
		}
	case "duration":
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("must be a duration such as \"5s\", not %v", v)
		}
		if d, err := time.ParseDuration(s); err != nil || d < 0 {
			return fmt.Sprintf("must be a non-negative duration such as \"5s\", not %q", s)
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("must be a string, not %v", v)
		}
	}
	return ""
}
