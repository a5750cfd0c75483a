package testutil

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// retireThreads ends n OS threads of this process: a goroutine that
// returns while locked to its thread takes the thread with it.
func retireThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
		}()
		wg.Wait()
	}
}

func alive(cmd *exec.Cmd, exited chan struct{}) bool {
	select {
	case <-exited:
		return false
	case <-time.After(200 * time.Millisecond):
		return syscall.Kill(cmd.Process.Pid, 0) == nil
	}
}

// TestStartChildOutlivesOtherThreads: a child started with StartChild
// keeps running while the runtime retires threads under it. Started the
// plain way (cmd.Start with Pdeathsig) it is killed as soon as the
// thread that forked it is retired, which this churn makes all but
// certain (logged, not asserted: which thread forks is the runtime's).
func TestStartChildOutlivesOtherThreads(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("no sleep binary (coreutils): %v", err)
	}
	cmd := exec.Command(sleep, "60")
	exited := make(chan struct{})
	if err := StartChild(cmd, syscall.SIGKILL, func(error) { close(exited) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	plain := exec.Command(sleep, "60")
	plain.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := plain.Start(); err != nil {
		t.Fatal(err)
	}
	plainExited := make(chan struct{})
	go func() { _ = plain.Wait(); close(plainExited) }()
	t.Cleanup(func() { _ = plain.Process.Kill(); <-plainExited })

	retireThreads(200)
	if !alive(cmd, exited) {
		t.Fatal("the child started with StartChild died when other threads were retired")
	}
	t.Logf("a child started the plain way is alive after the churn: %v", alive(plain, plainExited))
}
