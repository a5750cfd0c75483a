package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// SwitchProperty is the storage.Properties name of the cluster-wide
// switch: "true" (or unset) enables clustering, "false" disables it.
const SwitchProperty = "cluster.enabled"

// ParseSwitch reads a switch value: true/on/yes/1/enabled or
// false/off/no/0/disabled.
func ParseSwitch(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "1", "enabled":
		return true, nil
	case "false", "off", "no", "0", "disabled":
		return false, nil
	}
	return false, fmt.Errorf("cluster: %s=%q is neither true nor false", SwitchProperty, v)
}

// ReadSwitch returns the cluster-wide switch from storage; unset means on.
func ReadSwitch(ctx context.Context, props storage.Properties) (bool, error) {
	v, err := props.GetProperty(ctx, SwitchProperty)
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return ParseSwitch(v)
}

// WriteSwitch sets the cluster-wide switch in storage. Running nodes
// follow within seconds (see Switch); a Cluster that is also a
// SwitchAnnouncer can tell them at once.
func WriteSwitch(ctx context.Context, props storage.Properties, enabled bool) error {
	if err := props.SetProperty(ctx, SwitchProperty, strconv.FormatBool(enabled)); err != nil {
		return fmt.Errorf("cluster: writing %s: %w", SwitchProperty, err)
	}
	return nil
}

// SwitchAnnouncer is implemented by clusters with a channel of their own
// that reaches every running node (cluster/hazelcast: a topic). After
// WriteSwitch, AnnounceSwitch asks the nodes to re-read the switch now;
// it is only a hint, storage stays the one source of truth.
type SwitchAnnouncer interface {
	AnnounceSwitch(ctx context.Context, enabled bool) error
}

// SwitchOptions tune a Switch.
type SwitchOptions struct {
	// Poll is how often storage is re-read, the safety net under pushed
	// changes. Default 1s.
	Poll time.Duration
	// Timeout bounds one read. Default 5s.
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Switch follows the cluster-wide switch (SwitchProperty in
// storage.Properties, PostgreSQL in a cluster) for one node. Storage is
// the only source of truth: the node learns of a change in three ways,
// each of which only triggers a re-read:
//
//   - storage.PropertyListener (storage/postgres: LISTEN/NOTIFY), pushed
//     to every node in milliseconds;
//   - Recheck, called by whoever hears a hint (cluster/hazelcast's topic);
//   - a re-read every Poll, which alone meets the "within two seconds"
//     promise if both pushes are lost.
//
// Re-reading rather than trusting a pushed value means a stale, lost or
// forged message cannot flip the switch. An unreadable switch keeps its
// current state (on at start).
type Switch struct {
	props storage.Properties
	o     SwitchOptions
	log   *slog.Logger

	enabled atomic.Bool
	kick    chan struct{}

	mu      sync.Mutex
	fns     []func(bool)
	stop    chan struct{}
	started bool
	wg      sync.WaitGroup
}

// NewSwitch returns a switch read from props; nil props mean always on.
func NewSwitch(props storage.Properties, o SwitchOptions) *Switch {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Switch{props: props, o: o, log: o.Logger, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	s.enabled.Store(true)
	return s
}

// Enabled reports the switch as last read.
func (s *Switch) Enabled() bool { return s.enabled.Load() }

// OnChange registers fn, run on the switch's goroutine after each change
// of Enabled. Register before Start.
func (s *Switch) OnChange(fn func(enabled bool)) {
	s.mu.Lock()
	s.fns = append(s.fns, fn)
	s.mu.Unlock()
}

// Recheck asks for a re-read now (a hint arrived). It never blocks.
func (s *Switch) Recheck() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Start reads the switch once (an unreadable switch counts as on and is
// logged) and then follows it until Stop. Without storage it does nothing.
func (s *Switch) Start(ctx context.Context) {
	if s.props == nil {
		return
	}
	if v, err := s.read(ctx); err != nil {
		s.log.Warn("cluster switch unreadable; assuming enabled", "err", err)
	} else {
		s.enabled.Store(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	wctx, cancel := context.WithCancel(context.Background())
	if pl, ok := s.props.(storage.PropertyListener); ok {
		// The pushed value is only a hint: storage is re-read below, so
		// every path (push, hint, poll) applies the same way.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			pl.ListenProperty(wctx, SwitchProperty, func(string) { s.Recheck() })
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.loop(wctx)
	}()
}

// Stop ends following and waits for the goroutines.
func (s *Switch) Stop() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Switch) read(ctx context.Context) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	return ReadSwitch(rctx, s.props)
}

func (s *Switch) loop(ctx context.Context) {
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		v, err := s.read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("cluster switch unreadable; keeping the current state", "err", err)
			}
			continue
		}
		if s.enabled.Swap(v) == v {
			continue
		}
		s.log.Info("cluster switch changed", "enabled", v)
		s.mu.Lock()
		fns := s.fns
		s.mu.Unlock()
		for _, fn := range fns {
			fn(v)
		}
	}
}
