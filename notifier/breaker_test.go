package notifier

import (
	"log/slog"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/send"
)

// TestProbeBreaker steps a breaker through its states on explicit times.
func TestProbeBreaker(t *testing.T) {
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	type step struct {
		at int // ms after base
		// rec steps feed record (probe: from the last allow); the others
		// call allow and check ok, probe and wait.
		rec             bool
		record          send.Outcome
		ok, probe       bool
		wait            time.Duration
		open            bool
		failures        int
		nextProbeOffset int // ms after base when open
	}
	const retry, delivered = send.Retryable, send.Delivered
	steps := []step{
		{at: 0, ok: true},
		{at: 0, rec: true, record: retry, failures: 1},
		{at: 1, rec: true, record: retry, open: true, failures: 2, nextProbeOffset: 11}, // threshold 2: opens, probe in min 10ms
		{at: 5, wait: 6 * time.Millisecond, open: true, failures: 2, nextProbeOffset: 11},
		{at: 11, ok: true, probe: true, open: true, failures: 2, nextProbeOffset: 11},
		{at: 11, open: true, failures: 2, nextProbeOffset: 11},                           // one probe at a time
		{at: 12, rec: true, record: retry, open: true, failures: 3, nextProbeOffset: 32}, // failed probe: 20ms
		{at: 32, ok: true, probe: true, open: true, failures: 3, nextProbeOffset: 32},
		{at: 33, rec: true, record: retry, open: true, failures: 4, nextProbeOffset: 73}, // 40ms: the max
		{at: 73, ok: true, probe: true, open: true, failures: 4, nextProbeOffset: 73},
		{at: 74, rec: true, record: retry, open: true, failures: 5, nextProbeOffset: 114}, // stays at the max
		{at: 114, ok: true, probe: true, open: true, failures: 5, nextProbeOffset: 114},
		{at: 115, rec: true, record: delivered}, // the receiver answered: closed
		{at: 115, ok: true},
		{at: 116, rec: true, record: send.Permanent}, // a 4xx is an answer too
		{at: 117, rec: true, record: send.Gone},      // not the breaker's business
		{at: 117, ok: true},
	}
	b := newProbeBreaker(10*time.Millisecond, slog.New(slog.DiscardHandler))
	b.configure(2, 40*time.Millisecond)
	probe := false
	for i, s := range steps {
		now := ms(s.at)
		if s.rec {
			b.record(s.record, probe, now)
			probe = false
		} else {
			ok, p, wait := b.allow(now)
			if ok != s.ok || p != s.probe || wait != s.wait {
				t.Fatalf("step %d: allow(+%dms) = %v, %v, %v; want %v, %v, %v", i, s.at, ok, p, wait, s.ok, s.probe, s.wait)
			}
			probe = probe || p
		}
		st := b.state()
		want := breakerStatus{open: s.open, failures: s.failures}
		if s.open {
			want.nextProbe = ms(s.nextProbeOffset)
		}
		if st != want {
			t.Fatalf("step %d (+%dms): state %+v, want %+v", i, s.at, st, want)
		}
	}
}

// A threshold of 0 never opens the circuit.
func TestProbeBreakerThresholdZero(t *testing.T) {
	b := newProbeBreaker(time.Millisecond, slog.New(slog.DiscardHandler))
	b.configure(0, 0)
	for range 100 {
		b.record(send.Retryable, false, base)
	}
	if ok, _, _ := b.allow(base); !ok || b.state().open {
		t.Fatalf("threshold 0 opened the circuit: %+v", b.state())
	}
}
