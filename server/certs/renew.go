package certs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/aviary-im/aviary/storage"
)

// lockName is the cluster-wide lock held while ordering: one node of the
// cluster talks to the CA at a time.
const lockName = "acme"

// Run keeps the node's certificates current until ctx ends: it re-reads
// the store when another node wrote a certificate (Store.Watch) and every
// Options.Poll, and, with tls.acme.enabled, orders what is due. It blocks.
func (m *Manager) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.o.Store.Watch(ctx, func() {
			m.reloadLogged(ctx)
			m.kick()
		})
	}()
	defer func() { <-done }()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
		m.reloadLogged(ctx)
		wait := m.o.Poll
		if m.o.Config.ACME.Enabled {
			wait = min(wait, m.maintain(ctx))
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(max(wait, 0))
	}
}

// kick makes Run look again now.
func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) reloadLogged(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Reload(rctx); err != nil && ctx.Err() == nil {
		m.log.Warn("certs: reading the stored certificates", "err", err)
	}
}

// NameStatus is ACME's view of one name, for the console.
type NameStatus struct {
	Name string `json:"name"`
	// Serial and NotAfter describe the stored certificate serving the
	// name (empty when none).
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// Next is when it is (re)ordered; zero: now.
	Next time.Time `json:"next"`
	// Failures counts failed orders since the last success, LastError is
	// the last one's reason.
	Failures  int    `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// Status reports, for every ACME name, its certificate and when it is
// ordered next.
func (m *Manager) Status(ctx context.Context) ([]NameStatus, error) {
	states, err := m.states(ctx)
	if err != nil {
		return nil, err
	}
	s := m.snap.Load()
	a := m.o.Config.ACME
	var out []NameStatus
	for _, n := range m.names {
		c := s.stored1(n)
		st := states[n]
		ns := NameStatus{Name: n, Next: nextOrder(c, st, a.RenewBefore, m.o.RetryBase, m.o.RetryMax), Failures: st.Failures, LastError: st.LastError}
		if c != nil {
			ns.Serial, ns.NotAfter = c.Serial, c.NotAfter
		}
		out = append(out, ns)
	}
	return out, nil
}

func (m *Manager) states(ctx context.Context) (map[string]nameState, error) {
	all, err := m.o.Store.List(ctx, "state/")
	if err != nil {
		return nil, err
	}
	out := map[string]nameState{}
	for k, v := range all {
		var st nameState
		if json.Unmarshal(v, &st) == nil {
			out[strings.TrimPrefix(k, "state/")] = st
		}
	}
	return out, nil
}

// due returns the names to order now, and how long until the next one is
// due otherwise.
func (m *Manager) due(ctx context.Context) ([]string, time.Duration, error) {
	states, err := m.states(ctx)
	if err != nil {
		return nil, 0, err
	}
	now := m.o.Now()
	s := m.snap.Load()
	a := m.o.Config.ACME
	var names []string
	wait := time.Duration(1<<63 - 1)
	for _, n := range m.names {
		at := nextOrder(s.stored1(n), states[n], a.RenewBefore, m.o.RetryBase, m.o.RetryMax)
		if !at.After(now) {
			names = append(names, n)
			continue
		}
		wait = min(wait, at.Sub(now))
	}
	return names, wait, nil
}

// maintain orders the names that are due, under the cluster-wide lock,
// and returns how long until it should look again.
func (m *Manager) maintain(ctx context.Context) time.Duration {
	names, wait, err := m.due(ctx)
	if m.o.Checked != nil {
		initial := names
		defer func() { m.o.Checked(initial) }()
	}
	if err != nil {
		m.log.Warn("certs: reading the ACME state", "err", err)
		return m.o.Poll
	}
	if len(names) == 0 {
		return wait
	}
	unlock, ok, err := m.o.Store.TryLock(ctx, lockName)
	if err != nil {
		m.log.Warn("certs: taking the ordering lock", "err", err)
		return m.o.Poll
	}
	if !ok {
		// Another node orders; its certificates arrive through Watch.
		m.log.Debug("certs: another node is ordering", "due", strings.Join(names, ","))
		return m.o.Poll
	}
	defer unlock()
	// Under the lock, look again: the node that held it may have just
	// stored what we were about to order.
	m.reloadLogged(ctx)
	if names, _, err = m.due(ctx); err != nil {
		m.log.Warn("certs: reading the ACME state", "err", err)
		return m.o.Poll
	}
	for _, n := range names {
		if ctx.Err() != nil {
			return 0
		}
		m.obtain(ctx, n)
	}
	_, wait, err = m.due(ctx)
	if err != nil {
		return m.o.Poll
	}
	return wait
}

// obtain orders one name and stores the result, or records the failure.
func (m *Manager) obtain(ctx context.Context, name string) {
	states, _ := m.states(ctx)
	st := states[name]
	prev := m.snap.Load().stored1(name)
	octx, cancel := context.WithTimeout(ctx, m.o.OrderTimeout)
	defer cancel()
	start := m.o.Now()
	types := challengeOrder(m.challenges, st.Failures)
	c, err := m.acmeClient(octx)
	var chainPEM, keyPEM []byte
	if err == nil {
		chainPEM, keyPEM, err = m.order(octx, c, name, types)
	}
	var cert *Certificate
	if err == nil {
		cert, err = Put(octx, m.o.Store, chainPEM, keyPEM, SourceACME, m.o.Node, m.o.Now())
		if err == nil && cert.ID != name {
			err = errors.New("the CA's certificate is not for " + name + " first")
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: not the CA's fault
		}
		st.Failures++
		st.LastAttempt, st.LastError, st.Node = m.o.Now(), err.Error(), m.o.Node
		m.metrics.failures.WithLabelValues(name).Inc()
		m.log.Error("certs: ACME order failed", "name", name, "challenges", strings.Join(types, ","),
			"failures", st.Failures, "retry_in", retryDelay(st.Failures, m.o.RetryBase, m.o.RetryMax), "err", err)
		if perr := m.o.Store.Put(ctx, stateKey(name), st.encode()); perr != nil {
			m.log.Warn("certs: recording the failed order", "name", name, "err", perr)
		}
		return
	}
	if st.Failures > 0 {
		if err := m.o.Store.Delete(ctx, stateKey(name)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			m.log.Warn("certs: clearing the failed-order record", "name", name, "err", err)
		}
	}
	m.metrics.renewals.WithLabelValues(name).Inc()
	args := []any{"name", name, "serial", cert.Serial, "issuer", cert.Issuer,
		"not_after", cert.NotAfter.UTC().Format(time.RFC3339), "took", m.o.Now().Sub(start).Round(time.Millisecond)}
	if prev != nil {
		args = append(args, "replaces", prev.Serial, "old_not_after", prev.NotAfter.UTC().Format(time.RFC3339))
		m.log.Info("certs: renewed certificate", args...)
	} else {
		m.log.Info("certs: obtained certificate", args...)
	}
	m.reloadLogged(ctx)
}
