package cluster

import "testing"

func TestBareJID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a@x/r", "a@x"},
		{"a@x", "a@x"},
		{"x/r/s", "x"},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := BareJID(tc.in); got != tc.want {
				t.Fatalf("BareJID(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
