package testutil

import (
	"os/exec"
	"runtime"
	"syscall"
)

// StartChild starts cmd so that it dies with the test binary: it sets
// Pdeathsig (sig, unless cmd already sets one) and starts the child from a
// goroutine locked to its OS thread until the child has exited, then calls
// done with cmd.Wait's error (done may be nil).
//
// Why the lock: Linux sends Pdeathsig when the *thread* that forked the
// child exits, not the process. The Go runtime ends a thread whenever a
// goroutine locked to it returns, so a child forked from an ordinary
// goroutine dies at a random later moment: the thread that forked it is
// later locked by another such goroutine (another child's), and when that
// other child exits, both go. The shared Hazelcast member of
// server/clustertest died that way 22 ms after a test SIGKILLed a node, and
// the next test's survivors, cut off from Hazelcast, never saw the next
// killed node go.
func StartChild(cmd *exec.Cmd, sig syscall.Signal, done func(error)) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = sig
	}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, and
		// the child was told to die with it, which it already has.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		if done != nil {
			done(err)
		}
	}()
	return <-started
}
