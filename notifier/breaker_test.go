package notifier

import (
	"log/slog"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
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
		full := b.state()
		st := breakerStatus{open: full.open, failures: full.failures, nextProbe: full.nextProbe}
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

// A breaker's state goes to the store and back (breakerRecord,
// breakerFromRecord, restore) and the restored breaker behaves as the
// recorded one would have: an open circuit sends nothing before its probe
// time, a half-open one (its trial lost with the previous dispatcher)
// probes at once, and failed probes keep doubling from the recorded wait.
func TestBreakerRecordRoundTrip(t *testing.T) {
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name  string
		setup func(b *probeBreaker) // drives the recorded breaker
		state string                // recorded state
		now   int                   // ms after base: allow on the restored breaker
		ok    bool
		probe bool
		wait  time.Duration
		// after a failed probe on the restored breaker (when probe)
		nextWait time.Duration
	}{
		{"closed with failures", func(b *probeBreaker) { b.record(send.Retryable, false, ms(0)) }, "closed", 1, true, false, 0, 0},
		{"open before its probe time", openAt(ms(0)), "open", 4, false, false, 6 * time.Millisecond, 0},
		{"open at its probe time", openAt(ms(0)), "open", 10, true, true, 0, 20 * time.Millisecond},
		{"half-open probes at once", func(b *probeBreaker) {
			openAt(ms(0))(b)
			if ok, probe, _ := b.allow(ms(10)); !ok || !probe {
				t.Fatal("no probe granted")
			}
		}, "half-open", 11, true, true, 0, 20 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := newProbeBreaker(10*time.Millisecond, slog.New(slog.DiscardHandler))
			old.configure(2, time.Second)
			tc.setup(old)
			rec := breakerRecord("cb", "http://x/", old.state(), ms(tc.now))
			if rec.State != tc.state || rec.Callback != "cb" || rec.URL != "http://x/" || rec.Failures != old.failures || !rec.UpdatedAt.Equal(ms(tc.now)) {
				t.Fatalf("record = %+v; want state %s, %d failures", rec, tc.state, old.failures)
			}
			st, ok := breakerFromRecord(rec)
			if !ok {
				t.Fatalf("record %+v not understood", rec)
			}
			b := newProbeBreaker(10*time.Millisecond, slog.New(slog.DiscardHandler))
			b.configure(2, time.Second)
			b.restore(st)
			got := b.state()
			if got.open != (tc.state != "closed") || got.failures != old.failures || got.probing ||
				(got.open && (!got.nextProbe.Equal(old.probeAt) || !got.openedAt.Equal(old.openedAt))) {
				t.Fatalf("restored %+v from %+v", got, rec)
			}
			ok, probe, wait := b.allow(ms(tc.now))
			if ok != tc.ok || probe != tc.probe || wait != tc.wait {
				t.Fatalf("allow = %v, %v, %v; want %v, %v, %v", ok, probe, wait, tc.ok, tc.probe, tc.wait)
			}
			if probe {
				b.record(send.Retryable, true, ms(tc.now))
				if got := b.state().nextProbe.Sub(ms(tc.now)); got != tc.nextWait {
					t.Fatalf("after a failed probe the next is in %v, want %v", got, tc.nextWait)
				}
			}
		})
	}
	if _, ok := breakerFromRecord(store.Breaker{State: "ajar"}); ok {
		t.Error("an unknown recorded state was accepted")
	}
}

// openAt opens a threshold-2 breaker at t (probe 10ms later).
func openAt(t time.Time) func(b *probeBreaker) {
	return func(b *probeBreaker) {
		b.record(send.Retryable, false, t)
		b.record(send.Retryable, false, t)
	}
}
