package c2s

import "testing"

// TestSessionsForFDs: a node without c2s.max_sessions keeps a tenth of
// its open-file limit (at least 256) for what is not a session.
func TestSessionsForFDs(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{0, 0},            // unknown
		{1 << 40, 0},      // unlimited
		{200, 1},          // less than the reserve: one session still
		{1024, 768},       // reserve 256
		{20000, 18000},    // this machine's limit: reserve 2,000
		{1048576, 943719}, // a raised limit: a tenth
	} {
		if got := sessionsForFDs(tc.limit); got != tc.want {
			t.Errorf("sessionsForFDs(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// TestMaxSessionsFromOpenFileLimit: without c2s.max_sessions the server
// takes its limit from the process's open-file limit; a configured limit
// wins.
func TestMaxSessionsFromOpenFileLimit(t *testing.T) {
	d := Deps{}
	srv := NewServer(d)
	if want := sessionsForFDs(openFileLimit()); srv.MaxSessions() != want {
		t.Fatalf("MaxSessions() = %d, want %d (RLIMIT_NOFILE %d)", srv.MaxSessions(), want, openFileLimit())
	}
	if openFileLimit() > 0 && openFileLimit() < 1<<30 && srv.MaxSessions() == 0 {
		t.Fatal("no session limit with a finite open-file limit")
	}
	d.C2S.MaxSessions = 7
	if got := NewServer(d).MaxSessions(); got != 7 {
		t.Fatalf("with c2s.max_sessions 7: MaxSessions() = %d", got)
	}
}
