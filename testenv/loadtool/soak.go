package main

import (
	"flag"
	"fmt"
	"time"
)

// tapRetention is the tap child's tracker.retention (flag -retention).
var tapRetention = time.Hour

// soak runs executions through the fake engine at a steady rate for a long
// time and samples mistral-tap's resident memory, to show that memory stops
// growing once finished executions are forgotten (tracker.retention) and
// the outbox prunes delivered rows.
func soak(args []string) error {
	fs := flag.NewFlagSet("soak", flag.ExitOnError)
	dur := fs.Duration("dur", 10*time.Minute, "how long to run")
	rate := fs.Int("rate", 20, "new three-task executions per second")
	retention := fs.Duration("retention", time.Minute, "mistral-tap's tracker.retention")
	every := fs.Duration("every", 30*time.Second, "sampling interval")
	fs.Parse(args)

	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	up, err := spawn("-role", "upstream", "-execs", "0")
	if err != nil {
		return err
	}
	defer up.stop()
	fake := up.info["fake"]
	tp, err := spawn("-role", "tap", "-upstream", fake, "-receiver", rcv.url, "-retention", retention.String())
	if err != nil {
		return err
	}
	defer tp.stop()
	if _, err := get(fmt.Sprintf("%s/ctl/busy?rate=%d&seconds=%f", fake, *rate, dur.Seconds())); err != nil {
		return err
	}
	fmt.Printf("# loadtool soak — %s, %d executions/s (3 tasks each), tracker.retention %s, %s\n\n", cpuModel(), *rate, *retention, *dur)
	fmt.Println("| elapsed | webhooks | mistral-tap RSS MiB | GC |")
	fmt.Println("|---|---|---|---|")
	start := time.Now()
	for time.Since(start) < *dur {
		time.Sleep(*every)
		fmt.Printf("| %s | %d | %.1f | %s |\n", time.Since(start).Round(time.Second), rcv.count.Load(),
			float64(tp.rss())/(1<<20), tp.gcStats())
	}
	return nil
}
