package amqp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier"
	"github.com/mistral-tap/mistral-tap/notifier/payload"
	"github.com/mistral-tap/mistral-tap/notifier/send"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

// oslo body of a real event, for the transport benchmarks.
func osloRequest(b *testing.B, cb, id string) send.Request {
	f, err := payload.New(payload.Spec{Format: payload.FormatOslo})
	if err != nil {
		b.Fatal(err)
	}
	m, err := f.Format(payload.Samples()[0])
	if err != nil {
		b.Fatal(err)
	}
	return send.Request{Callback: cb, EventID: id, RootID: "root", Topic: "notifications.info",
		Header: m.Header, Body: m.Body, Method: http.MethodPost, Timeout: 5 * time.Second}
}

// sendAll sends b.N requests from workers goroutines and reports
// deliveries/s.
func sendAll(b *testing.B, workers int, s notifier.Sender, r send.Request) {
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				rr := r
				rr.EventID = fmt.Sprintf("evt_%d", next.Load())
				if res := s.Send(context.Background(), rr); res.Outcome != send.Delivered {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/delivery")
	if failed.Load() > 0 {
		b.Fatalf("%d sends failed", failed.Load())
	}
}

// cpuTime is this process's user+system CPU time (for HTTP it includes
// the in-process receiver; the broker is another process).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTransport: one confirmed, persistent, mandatory publish per
// Send to a durable queue on the local broker, against one HTTP POST per
// Send to a local receiver that answers 204; workers Sends in flight.
func BenchmarkTransport(b *testing.B) {
	raw := brokerURL(b)
	for _, workers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("amqp/inflight=%d", workers), func(b *testing.B) {
			a := newAdmin(b, raw)
			ex := unique("bench")
			q := a.exchangeWithQueue(ex)
			p := newPublisher(b, map[string]Endpoint{"cb": {URL: raw, Exchange: ex, Persistent: true, Mandatory: true}})
			sendAll(b, workers, p, osloRequest(b, "cb", ""))
			b.StopTimer()
			_, _ = a.ch.QueuePurge(q, false)
		})
		b.Run(fmt.Sprintf("amqp-transient/inflight=%d", workers), func(b *testing.B) {
			a := newAdmin(b, raw)
			ex := unique("bench")
			q := a.exchangeWithQueue(ex)
			p := newPublisher(b, map[string]Endpoint{"cb": {URL: raw, Exchange: ex, Persistent: false, Mandatory: true}})
			sendAll(b, workers, p, osloRequest(b, "cb", ""))
			b.StopTimer()
			_, _ = a.ch.QueuePurge(q, false)
		})
		b.Run(fmt.Sprintf("http/inflight=%d", workers), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
			defer srv.Close()
			c, err := send.New(send.Options{AllowNetworks: []string{"127.0.0.0/8"}, MaxIdleConnsPerHost: workers})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := osloRequest(b, "cb", "")
			r.URL = srv.URL
			sendAll(b, workers, c, r)
		})
	}
}

// BenchmarkOutbox: durable deliveries through the dispatcher and the
// SQLite outbox (Accept in batches of 100, outcome committed), format
// oslo, over AMQP and over HTTP.
func BenchmarkOutbox(b *testing.B) {
	raw := brokerURL(b)
	for _, conc := range []int{16, 64} {
		b.Run(fmt.Sprintf("amqp/concurrency=%d", conc), func(b *testing.B) {
			a := newAdmin(b, raw)
			ex := unique("bench")
			q := a.exchangeWithQueue(ex)
			p := newPublisher(b, map[string]Endpoint{"tap": {URL: raw, Exchange: ex, Persistent: true, Mandatory: true}})
			cb := amqpCallback("tap")
			cb.Concurrency = conc
			runOutbox(b, notifier.Transports{config.TypeAMQP: p}, cb)
			b.StopTimer()
			_, _ = a.ch.QueuePurge(q, false)
		})
		b.Run(fmt.Sprintf("http/concurrency=%d", conc), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
			defer srv.Close()
			c, err := send.New(send.Options{AllowNetworks: []string{"127.0.0.0/8"}, MaxIdleConnsPerHost: conc})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cb := amqpCallback("tap")
			cb.Type, cb.URL, cb.Concurrency = config.TypeHTTP, srv.URL, conc
			runOutbox(b, notifier.Transports{config.TypeHTTP: c}, cb)
		})
	}
}

func runOutbox(b *testing.B, tr notifier.Transports, cb config.Callback) {
	st, err := store.Open(b.TempDir(), store.Options{Exclusive: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	f, err := payload.New(payload.Spec{Format: cb.Format, RoutingKey: cb.AMQPSettings().RoutingKey})
	if err != nil {
		b.Fatal(err)
	}
	r := &notifier.Routing{Matcher: matchAll{cb.Name}, Delivery: config.Default().Delivery,
		Routes: map[string]notifier.Route{cb.Name: {Callback: cb, Format: f}}}
	d, err := notifier.New(notifier.Options{Store: st, Sender: tr, Routing: r})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	evs := events(fmt.Sprint(time.Now().UnixNano()), 200, b.N/200+1)[:b.N]
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(evs); i += 100 {
		if err := d.Accept(ctx, evs[i:min(i+100, len(evs))], nil); err != nil {
			b.Fatal(err)
		}
	}
	for {
		// In-flight deliveries stay pending until their outcome commits.
		n, err := st.CountPending(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n[cb.Name] == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}
