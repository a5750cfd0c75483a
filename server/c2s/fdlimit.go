package c2s

// The open-file limit as a session limit. A node without c2s.max_sessions
// used to take streams until accept failed with "too many open files"
// (a survivor of a node's crash, taking that node's users on top of its
// own, did: 687 failed accepts in the 54,000-user storm, with its
// database connections, node links and HTTP listener starved of
// descriptors too). Each TCP stream is one descriptor; the node keeps a
// tenth of its limit (at least fdReserveMin) for everything else.

const fdReserveMin = 256

// sessionsForFDs is the session limit the open-file limit allows; 0 when
// the limit is unknown or unlimited.
func sessionsForFDs(limit uint64) int {
	if limit == 0 || limit > 1<<30 {
		return 0
	}
	reserve := max(limit/10, fdReserveMin)
	if limit <= reserve {
		return 1
	}
	return int(limit - reserve)
}

// MaxSessions is the node's session limit: c2s.max_sessions, else what
// the open-file limit allows (0: none).
func (srv *Server) MaxSessions() int {
	if m := srv.d.C2S.MaxSessions; m > 0 {
		return m
	}
	return srv.fdSessions
}
