package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// delivery is part 2: durable delivery throughput (events/s from the tap
// deriving them to the receiver acknowledging, outbox with fsync), and
// latency from a state change to its webhook, tapped and watched.
func delivery(args []string) error {
	fs := flag.NewFlagSet("delivery", flag.ExitOnError)
	events := fs.Int("events", 20000, "events for the throughput run (multiple of 1000)")
	samples := fs.Int("samples", 100, "tapped latency samples")
	wsamples := fs.Int("watched", 20, "watched latency samples")
	conc := fs.Int("concurrency", 16, "callback concurrency")
	profile := fs.String("tap-cpuprofile", "", "write mistral-tap's CPU profile (whole run) to this file")
	fs.Parse(args)
	if *events < 1000 || *events%1000 != 0 || *samples < 1 || *wsamples < 1 || *conc < 1 {
		return fmt.Errorf("delivery: -events must be a positive multiple of 1000, -samples, -watched and -concurrency at least 1")
	}

	up, err := spawn("-role", "upstream", "-execs", "10")
	if err != nil {
		return err
	}
	defer up.stop()
	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	tapArgs := []string{"-role", "tap", "-upstream", up.info["canned"], "-receiver", rcv.url, "-concurrency", fmt.Sprint(*conc)}
	if *profile != "" {
		tapArgs = append(tapArgs, "-cpuprofile", *profile)
	}
	tp, err := spawn(tapArgs...)
	if err != nil {
		return err
	}
	defer tp.stop()
	base := tp.info["addr"]
	c := newClient(4)

	fmt.Printf("# loadtool delivery — %s\n\n", cpuModel())
	if err := deliveryThroughput(c, base, rcv, tp, *events, *conc); err != nil {
		return err
	}
	tapped, err := tappedLatency(c, base, rcv, *samples)
	if err != nil {
		return err
	}
	fmt.Print(latencyRow("tapped: response → webhook", tapped))
	watched, err := watchedLatency(up.info["canned"], rcv, *wsamples)
	if err != nil {
		return err
	}
	fmt.Print(latencyRow("watched (interval 1s): change → webhook", watched))
	fmt.Printf("| mistral-tap RSS after | %.1f MiB |\n", float64(tp.rss())/(1<<20))
	return nil
}

// deliveryThroughput has mistral-tap list 1,000 new RUNNING executions at a
// time, one WORKFLOW_LAUNCHED each, until events are due, waits (at most 3
// minutes) for the receiver to have them all, and prints the table's head
// with the rate and mistral-tap's CPU per 1,000 deliveries.
func deliveryThroughput(c *http.Client, base string, rcv *receiver, tp *child, events, conc int) error {
	rcv.reset()
	cpu0 := tp.cpu()
	t0 := time.Now()
	for range events / 1000 {
		if _, ok := do(c, base, workload{method: "GET", path: "/v2/executions?fresh=1000"}); !ok {
			return fmt.Errorf("fresh list through the tap failed")
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for rcv.count.Load() < int64(events) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := rcv.count.Load()
	el := rcv.lastArrival().Sub(t0)
	fmt.Println("| measure | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| durable deliveries (outbox fsync, callback concurrency %d) | %d events in %.2f s = **%.0f events/s** |\n", conc, got, el.Seconds(), float64(got)/el.Seconds())
	fmt.Printf("| mistral-tap CPU per 1,000 deliveries | %.3f s |\n", (tp.cpu()-cpu0).Seconds()/float64(got)*1000)
	return nil
}

// tappedLatency measures, n times, from a POST's response through
// mistral-tap (which reveals the new execution) to its webhook; the pause
// between samples keeps them from queueing behind each other.
func tappedLatency(c *http.Client, base string, rcv *receiver, n int) ([]time.Duration, error) {
	var tapped []time.Duration
	for range n {
		req, _ := http.NewRequest("POST", base+"/v2/executions", strings.NewReader(postBody))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done := time.Now()
		var x struct{ ID string }
		json.Unmarshal(b, &x)
		at, ok := rcv.wait(x.ID, 5*time.Second)
		if !ok {
			return nil, fmt.Errorf("no webhook for tapped execution %s within 5s", x.ID)
		}
		tapped = append(tapped, at.Sub(done))
		time.Sleep(50 * time.Millisecond)
	}
	return tapped, nil
}

// watchedLatency measures, n times, from an execution appearing behind the
// proxy's back (the canned upstream's /ctl/spawn) to its webhook, which
// the watcher finds on its next poll.
func watchedLatency(canned string, rcv *receiver, n int) ([]time.Duration, error) {
	var watched []time.Duration
	for i := range n {
		time.Sleep(time.Duration(i%7) * 137 * time.Millisecond) // spread over the poll phase
		t := time.Now()
		resp, err := http.Post(canned+"/ctl/spawn", "text/plain", nil)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		at, ok := rcv.wait(string(b), 5*time.Second)
		if !ok {
			return nil, fmt.Errorf("no webhook for watched execution %s within 5s", b)
		}
		watched = append(watched, at.Sub(t))
	}
	return watched, nil
}

// latencyRow is the table row for a latency sample: p50, p99 and max of d,
// which it sorts in place. d must not be empty.
func latencyRow(label string, d []time.Duration) string {
	slices.Sort(d)
	return fmt.Sprintf("| %s (n=%d) | p50 %s ms, p99 %s ms, max %s ms |\n", label, len(d),
		ms(d[len(d)/2]), ms(d[len(d)*99/100]), ms(d[len(d)-1]))
}
