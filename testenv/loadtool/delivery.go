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
	// Throughput: lists of 1,000 new RUNNING executions, one WORKFLOW_LAUNCHED each.
	rcv.reset()
	cpu0 := tp.cpu()
	t0 := time.Now()
	for range *events / 1000 {
		if _, ok := do(c, base, workload{method: "GET", path: "/v2/executions?fresh=1000"}); !ok {
			return fmt.Errorf("fresh list through the tap failed")
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for rcv.count.Load() < int64(*events) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := rcv.count.Load()
	el := rcv.lastArrival().Sub(t0)
	fmt.Println("| measure | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| durable deliveries (outbox fsync, callback concurrency %d) | %d events in %.2f s = **%.0f events/s** |\n", *conc, got, el.Seconds(), float64(got)/el.Seconds())
	fmt.Printf("| mistral-tap CPU per 1,000 deliveries | %.3f s |\n", (tp.cpu()-cpu0).Seconds()/float64(got)*1000)

	// Tapped latency: the POST response reveals the new execution.
	var tapped []time.Duration
	for range *samples {
		req, _ := http.NewRequest("POST", base+"/v2/executions", strings.NewReader(postBody))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done := time.Now()
		var x struct{ ID string }
		json.Unmarshal(b, &x)
		at, ok := rcv.wait(x.ID, 5*time.Second)
		if !ok {
			return fmt.Errorf("no webhook for tapped execution %s within 5s", x.ID)
		}
		tapped = append(tapped, at.Sub(done))
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(tapped)
	fmt.Printf("| tapped: response → webhook (n=%d) | p50 %s ms, p99 %s ms, max %s ms |\n", len(tapped),
		ms(tapped[len(tapped)/2]), ms(tapped[len(tapped)*99/100]), ms(tapped[len(tapped)-1]))

	// Watched latency: an execution appears behind the proxy's back.
	var watched []time.Duration
	for i := range *wsamples {
		time.Sleep(time.Duration(i%7) * 137 * time.Millisecond) // spread over the poll phase
		t := time.Now()
		resp, err := http.Post(up.info["canned"]+"/ctl/spawn", "text/plain", nil)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		at, ok := rcv.wait(string(b), 5*time.Second)
		if !ok {
			return fmt.Errorf("no webhook for watched execution %s within 5s", b)
		}
		watched = append(watched, at.Sub(t))
	}
	slices.Sort(watched)
	fmt.Printf("| watched (interval 1s): change → webhook (n=%d) | p50 %s ms, p99 %s ms, max %s ms |\n", len(watched),
		ms(watched[len(watched)/2]), ms(watched[len(watched)*99/100]), ms(watched[len(watched)-1]))
	fmt.Printf("| mistral-tap RSS after | %.1f MiB |\n", float64(tp.rss())/(1<<20))
	return nil
}
