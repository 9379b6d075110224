package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// watchCost is part 3: requests per minute the watcher sends to the engine
// and mistral-tap's CPU, with n active (RUNNING) executions, idle and busy
// (20 new three-task executions per second), after the start-up catch-up.
func watchCost(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	active := fs.String("active", "10,1000,10000", "active executions")
	window := fs.Duration("window", 10*time.Second, "measured window per row")
	fs.Parse(args)
	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	fmt.Printf("# loadtool watch — %s, watch.interval 1s, window %s\n\n", cpuModel(), *window)
	fmt.Println("| active executions | phase | engine requests / min | mistral-tap CPU % of one core | webhooks |")
	fmt.Println("|---|---|---|---|---|")
	for _, n := range ints(*active) {
		up, err := spawn("-role", "upstream", "-execs", "0")
		if err != nil {
			return err
		}
		fake := up.info["fake"]
		if _, err := get(fake + "/ctl/populate?n=" + strconv.Itoa(n)); err != nil {
			up.stop()
			return err
		}
		tp, err := spawn("-role", "tap", "-upstream", fake, "-receiver", rcv.url)
		if err != nil {
			up.stop()
			return err
		}
		// Start-up catch-up: the executions created within the tracker's
		// horizon are new to it and are paged in and delivered. Wait until
		// it is over (no webhook and at most one poll's 4 requests per
		// second, twice in a row) so that "idle" is the steady state.
		t0, r0, c0 := time.Now(), int64(0), tp.cpu()
		r0, _ = get(fake + "/ctl/count")
		quiet, prevHooks, prevReq := 0, int64(-1), r0
		for quiet < 2 && time.Since(t0) < 2*time.Minute {
			time.Sleep(2 * time.Second)
			hooks := rcv.count.Load()
			req, _ := get(fake + "/ctl/count")
			if hooks == prevHooks && req-prevReq <= 2*5 {
				quiet++
			} else {
				quiet = 0
			}
			prevHooks, prevReq = hooks, req
		}
		el := time.Since(t0)
		fmt.Printf("| %d | start-up catch-up, %.0f s until quiet | %.0f | %.1f | %d |\n", n, el.Seconds(),
			float64(prevReq-r0)/el.Seconds()*60, (tp.cpu()-c0).Seconds()/el.Seconds()*100, rcv.count.Load())
		for _, phase := range []string{"idle", "busy"} {
			if phase == "busy" {
				get(fmt.Sprintf("%s/ctl/busy?rate=20&seconds=%f", fake, window.Seconds()+1))
				time.Sleep(time.Second)
			}
			rcv.reset()
			r0, _ := get(fake + "/ctl/count")
			c0 := tp.cpu()
			time.Sleep(*window)
			r1, _ := get(fake + "/ctl/count")
			cpu := tp.cpu() - c0
			req := float64(r1-r0) / window.Seconds() * 60
			fmt.Printf("| %d | %s | %.0f | %.1f | %d |\n", n, phase, req, cpu.Seconds()/window.Seconds()*100, rcv.count.Load())
		}
		tp.stop()
		up.stop()
	}
	return nil
}

func get(url string) (int64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, nil
}
