package certs

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRenewAt(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		name        string
		life        time.Duration
		renewBefore time.Duration
		want        time.Time
	}{
		{"90-day certificate, 30 days before", 90 * day, 30 * day, t0.Add(60 * day)},
		{"renew_before shorter than needed", 90 * day, time.Hour, t0.Add(90*day - time.Hour)},
		{"six-day certificate with the 30-day default: a third left", 6 * day, 30 * day, t0.Add(4 * day)},
		{"renew_before equal to the lifetime: a third left", 9 * day, 9 * day, t0.Add(6 * day)},
		{"a 20 s certificate renewed 17 s early", 20 * time.Second, 17 * time.Second, t0.Add(3 * time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := renewAt(t0, t0.Add(tc.life), tc.renewBefore); !got.Equal(tc.want) {
				t.Errorf("renewAt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	base, max := 5*time.Minute, time.Hour
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {1, 5 * time.Minute}, {2, 10 * time.Minute}, {3, 20 * time.Minute},
		{4, 40 * time.Minute}, {5, time.Hour}, {6, time.Hour}, {1000, time.Hour},
	} {
		if got := retryDelay(tc.failures, base, max); got != tc.want {
			t.Errorf("retryDelay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestNextOrder(t *testing.T) {
	day := 24 * time.Hour
	cert := &Certificate{Info: Info{NotBefore: t0, NotAfter: t0.Add(90 * day)}}
	cases := []struct {
		name string
		cert *Certificate
		st   nameState
		want time.Time
	}{
		{"no certificate: now", nil, nameState{}, time.Time{}},
		{"a certificate: at its renewal time", cert, nameState{}, t0.Add(60 * day)},
		{"no certificate after two failures: after the second delay", nil,
			nameState{Failures: 2, LastAttempt: t0}, t0.Add(10 * time.Minute)},
		{"due certificate after a failure: after the delay", cert,
			nameState{Failures: 1, LastAttempt: t0.Add(61 * day)}, t0.Add(61*day + 5*time.Minute)},
		{"an old failure does not bring renewal forward", cert,
			nameState{Failures: 1, LastAttempt: t0}, t0.Add(60 * day)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := nextOrder(tc.cert, tc.st, 30*day, 5*time.Minute, 12*time.Hour)
			if !got.Equal(tc.want) {
				t.Errorf("nextOrder = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestChallengeOrder(t *testing.T) {
	types := []string{acmeHTTP01, acmeTLSALPN01}
	for failures, want := range [][]string{types, {acmeTLSALPN01, acmeHTTP01}, types} {
		if got := challengeOrder(types, failures); !slices.Equal(got, want) {
			t.Errorf("after %d failures: %v, want %v", failures, got, want)
		}
	}
	if got := challengeOrder(types, 1); types[0] != acmeHTTP01 || len(got) != 2 {
		t.Error("challengeOrder changed its input")
	}
	if got := challengeOrder([]string{acmeHTTP01}, 3); !slices.Equal(got, []string{acmeHTTP01}) {
		t.Errorf("one type: %v", got)
	}
}
