package c2s

import "time"

// writerIdle is how long a writer goroutine waits for another session to
// flush before it exits.
const writerIdle = 5 * time.Second

// writeJob is one session's turn to write what it has queued.
type writeJob struct {
	s *Session
	t Transport
}

// writers runs session writers on goroutines shared by all sessions and
// kept between flushes. A session still has no goroutine of its own while
// it has nothing to write; but a login flushes about ten times, and a
// goroutine started per flush began each time with a small stack that had
// to grow inside crypto/tls (runtime.newstack and goroutine creation were
// ~3% of the server's CPU per login). A kept goroutine has its stack
// already; the idle ones exit after writerIdle.
var writers = writerPool{jobs: make(chan writeJob)}

type writerPool struct {
	// jobs is unbuffered: a send succeeds only when a writer waits.
	jobs chan writeJob
}

// run hands j to a waiting writer, or starts a new one. It never blocks,
// so it may be called with the session's lock held.
func (p *writerPool) run(j writeJob) {
	select {
	case p.jobs <- j:
	default:
		go p.work(j)
	}
}

func (p *writerPool) work(j writeJob) {
	// Once per writer, not per job: zeroing growStack's frame for every
	// flush cost the ring workload ~2% of its messages per second. Should
	// the collector shrink the stack of a waiting writer, it grows back on
	// the next deep call, once.
	growStack()
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		j.s.writeLoop(j.t)
		j = writeJob{}
		idle.Reset(writerIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		}
	}
}
