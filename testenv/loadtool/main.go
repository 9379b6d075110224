// Command loadtool measures mistral-tap on loopback: proxy overhead against
// the engine directly, a plain httputil.ReverseProxy and nginx (bench),
// durable delivery throughput and latency (delivery), and the watcher's cost
// (watch). Servers run in child processes of this binary so that each one's
// CPU time is its own; every run is bounded in time and stops by itself.
//
//	go run ./testenv/loadtool bench    [-dur 3s] [-conc 16,64]
//	go run ./testenv/loadtool delivery [-events 20000]
//	go run ./testenv/loadtool watch    [-active 10,1000,10000] [-window 15s]
//	go run ./testenv/loadtool soak     [-dur 10m] [-rate 20] [-retention 1m]
//	go run ./testenv/loadtool all
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadtool bench|delivery|watch|all [flags]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "bench":
		err = bench(args)
	case "delivery":
		err = delivery(args)
	case "watch":
		err = watchCost(args)
	case "soak":
		err = soak(args)
	case "all":
		if err = bench(args); err == nil {
			if err = delivery(nil); err == nil {
				err = watchCost(nil)
			}
		}
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtool:", err)
		os.Exit(1)
	}
}

// serve runs one child role (see child.go).
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	role := fs.String("role", "", "upstream | httputil | httputil-webhook | tap")
	upstream := fs.String("upstream", "", "upstream URL")
	receiver := fs.String("receiver", "", "webhook receiver URL (tap)")
	interval := fs.Duration("interval", time.Second, "watch interval (tap)")
	conc := fs.Int("concurrency", 16, "callback concurrency (tap)")
	ordering := fs.String("ordering", "root", "callback ordering (tap)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the child (tap)")
	events := fs.String("events", "*", "the callback's events filter (tap); an event nothing emits turns delivery off while keeping derivation")
	execs := fs.Int("execs", 1000, "executions in the fake engine (upstream)")
	fs.DurationVar(&tapRetention, "retention", time.Hour, "tracker.retention (tap)")
	fs.StringVar(&tapStoreDSN, "store-dsn", "", "PostgreSQL database for the store instead of SQLite (tap)")
	fs.BoolVar(&tapNoListeners, "no-listeners", false, "listeners.enabled: false (tap): no event history, no /v2/listeners")
	fs.Parse(args)
	switch *role {
	case "upstream":
		return runUpstream(*execs)
	case "httputil":
		return runHTTPUtil(*upstream)
	case "httputil-webhook":
		return runHTTPUtilWebhook(*upstream, *receiver)
	case "tap":
		return runTap(*upstream, *receiver, *interval, *conc, *ordering, *profile, *events)
	}
	return fmt.Errorf("serve: unknown role %q", *role)
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func bytesReader(b []byte) *strings.Reader { return strings.NewReader(string(b)) }
