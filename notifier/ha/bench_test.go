package ha_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/ha"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore/pgtest"
	"github.com/mistral-tap/mistral-tap/tap/event"
)

type ack struct{}

func (ack) Send(context.Context, send.Request) send.Result {
	return send.Result{Outcome: send.Delivered, Status: 204}
}

type all struct{}

func (all) Match(*event.Event) []string { return []string{"a"} }

type noFormat struct{}

func (noFormat) Format(*event.Event) (payload.Message, error) {
	return payload.Message{Body: []byte("{}")}, nil
}

// BenchmarkDurableDeliveryPostgres is notifier's BenchmarkDurableDelivery
// on the PostgreSQL store with the leader's fence on every write: Accept in
// batches of 100 (as the SQLite benchmark) or 1,000 (the tracker's batches
// grow under load), a receiver that acks at once (ordering per root,
// concurrency 32), completions recorded.
// With followers=2, two more replicas campaign for the lease and forward
// one tapped observation per event to the shared queue meanwhile (what
// three replicas add to the leader's database load). history=on also
// records every event (Options.History, the listeners API).
func BenchmarkDurableDeliveryPostgres(b *testing.B) {
	dsn := pgtest.Database(b)
	for _, tc := range []struct {
		followers, batch int
		history          bool
	}{{0, 100, false}, {2, 100, false}, {0, 1000, false}, {2, 1000, false}, {0, 100, true}, {0, 1000, true}} {
		followers, batch := tc.followers, tc.batch
		name := fmt.Sprintf("replicas=%d/accept=%d", followers+1, batch)
		if tc.history {
			name += "/history=on"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn, MaxConns: 10})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			holder := fmt.Sprintf("bench-%d", time.Now().UnixNano())
			term, err := st.Acquire(ctx, "leader", holder, 0, time.Hour)
			if err != nil || term == 0 {
				b.Fatalf("acquire: %d %v", term, err)
			}
			defer st.Resign(context.Background(), "leader", holder, term)
			st.SetFence(&pgstore.Fence{Lease: "leader", Holder: holder, Term: term})
			var fwds []*ha.Forwarder
			for i := range followers {
				f, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn, MaxConns: 4})
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				el := ha.NewElector(ha.ElectorOptions{Store: f, Holder: fmt.Sprintf("follower-%d", i), TTL: 3 * time.Second})
				go el.Run(ctx, func(ctx context.Context, _ *ha.Lease) error { <-ctx.Done(); return nil })
				fw := ha.NewForwarder(ha.ForwarderOptions{Store: f, Replica: fmt.Sprintf("follower-%d", i)})
				go fw.Run(ctx)
				fwds = append(fwds, fw)
			}
			cb := config.Callback{Name: "a", Ordering: "root", Concurrency: 32}
			d, err := notifier.New(notifier.Options{Store: st, Sender: ack{}, History: tc.history,
				Routing: &notifier.Routing{Matcher: all{}, Routes: map[string]notifier.Route{"a": {Callback: cb, Format: noFormat{}}}}})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			for len(d.Status()) == 0 {
				time.Sleep(time.Millisecond)
			}
			evs := make([]event.Event, b.N)
			states := make([]event.EntityState, b.N)
			now := time.Now()
			for i := range evs {
				root := fmt.Sprintf("%s-root-%d", holder, i%200)
				evs[i] = event.Event{ID: fmt.Sprintf("evt_%s_%d", holder, i), Type: event.TaskSucceeded, Sequence: uint64(i/200 + 1),
					RootExecutionID: root, Time: now, Task: &event.Task{ID: fmt.Sprintf("%s-t%d", holder, i), WorkflowExecutionID: root,
						State: event.StateSuccess, CreatedAt: "2025-01-01 00:00:00"}}
				states[i] = event.EntityState{Kind: event.KindTask, ID: evs[i].Task.ID, RootID: root, State: event.StateSuccess, UpdatedAt: "x"}
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < len(evs); i += batch {
				j := min(i+batch, len(evs))
				for _, fw := range fwds {
					obs := make([]event.Observation, 0, j-i)
					for k := i; k < j; k++ {
						obs = append(obs, event.Observation{Source: event.SourceTap, Task: evs[k].Task})
					}
					fw.ObserveAll(obs)
				}
				if err := d.Accept(ctx, evs[i:j], states[i:j]); err != nil {
					b.Fatal(err)
				}
			}
			for d.Status()[0].Pending > 0 {
				time.Sleep(200 * time.Microsecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
			cancel()
			<-done
		})
	}
}
