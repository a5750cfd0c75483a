package plugins_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aviary-im/aviary/conf"
	"github.com/aviary-im/aviary/plugins"
)

type configurable struct{}

func (configurable) ID() string                                         { return "test.conf" }
func (configurable) Start(ctx context.Context, host plugins.Host) error { return nil }
func (configurable) Stop(ctx context.Context) error                     { return nil }
func (configurable) Settings() []plugins.SettingSpec {
	return []plugins.SettingSpec{{Key: "ttl", Type: "duration", Default: "5s"}, {Key: "on", Type: "bool"}, {Key: "max", Type: "int"}}
}

func TestValidateSettings(t *testing.T) {
	cases := []struct {
		name     string
		settings map[string]map[string]any
		want     []string
	}{
		{"fine", map[string]map[string]any{"test.conf": {"ttl": "10s", "on": true, "max": 0}}, nil},
		{"negative count", map[string]map[string]any{"test.conf": {"max": -1}}, []string{"plugins.settings.test.conf.max: must be a whole number, 0 or more, not -1"}},
		{"fraction", map[string]map[string]any{"test.conf": {"max": 1.5}}, []string{"plugins.settings.test.conf.max: must be a whole number"}},
		{"unknown key", map[string]map[string]any{"test.conf": {"tll": "10s"}}, []string{"plugins.settings.test.conf.tll: unknown setting"}},
		{"bad duration", map[string]map[string]any{"test.conf": {"ttl": "soon"}}, []string{"plugins.settings.test.conf.ttl: must be a non-negative duration"}},
		{"bad bool", map[string]map[string]any{"test.conf": {"on": "yes"}}, []string{"plugins.settings.test.conf.on: must be true or false"}},
		{"unknown plugin", map[string]map[string]any{"nope": {"x": 1}}, []string{"plugins.settings.nope: no running plugin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &conf.Config{}
			cfg.Plugins.Settings = tc.settings
			errs := plugins.ValidateSettings(cfg, []plugins.Plugin{configurable{}})
			if len(errs) != len(tc.want) {
				t.Fatalf("errors = %v, want %v", errs, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %q lacks %q", errs[i], w)
				}
			}
		})
	}
}
