package logsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short", "alice", 10, "alice"},
		{"exact", "alice", 5, "alice"},
		{"long", "alicealice", 5, "alice…(+5 bytes)"},
		{"rune boundary", "ééé", 3, "é…(+4 bytes)"},
		{"default bound", strings.Repeat("a", Field+1), 0, strings.Repeat("a", Field) + "…(+1 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Clip(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Clip cut a rune: %q", got)
			}
		})
	}
	// A 50 MiB username (the attack) comes out at the bound plus the marker.
	huge := strings.Repeat("A", 50<<20)
	if got := Clip(huge, Field); len(got) > Field+32 {
		t.Errorf("clipped 50 MiB to %d bytes", len(got))
	}
}
