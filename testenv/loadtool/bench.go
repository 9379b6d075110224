package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// target is one way for clients to reach the engine.
type target struct {
	name string
	base string
	cpu  func() time.Duration
}

func workloads(execID string) []workload {
	return []workload{
		{name: "GET one execution", method: "GET", path: "/v2/executions/" + execID},
		{name: "GET list of 100", method: "GET", path: pathList100},
		{name: "GET list of 1,000", method: "GET", path: pathList1000},
		{name: "POST create execution", method: "POST", path: "/v2/executions", body: postBody},
	}
}

// webhookFloor is the target that measures what one webhook per created
// execution costs a plain proxy (runHTTPUtilWebhook).
const webhookFloor = "httputil+webhook → canned"

// runs reports whether target t is measured on w: the webhook floor only
// differs from httputil on POST.
func (w workload) runs(t target) bool { return t.name != webhookFloor || w.method == "POST" }

// bench is part 1: the same workloads direct, through httputil, nginx and
// mistral-tap, at fixed concurrencies, then at half of mistral-tap's
// maximum rate for added latency, then first-byte timing on a slow list.
func bench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	dur := fs.Duration("dur", 3*time.Second, "measured time per cell")
	warm := fs.Duration("warm", time.Second, "warm-up per cell (not measured)")
	concs := fs.String("conc", "16,64", "client concurrency levels")
	noNginx := fs.Bool("no-nginx", false, "skip nginx even if installed")
	only := fs.String("only", "", "run only the workload whose name contains this")
	profile := fs.String("tap-cpuprofile", "", "write mistral-tap's CPU profile to this file")
	only2 := fs.String("targets", "", "comma-separated substrings: run only the targets whose name contains one (direct: canned and httputil always run, they are the baselines)")
	events := fs.String("tap-events", "*", "events filter of mistral-tap's one callback: e.g. TASK_FAILED (never emitted by the canned upstream) measures the tap and derivation without webhook delivery")
	fixedRate := fs.Float64("rate", 0, "open-loop rate in req/s instead of 50% of mistral-tap's measured maximum (before/after comparisons at the same load)")
	fs.StringVar(&tapGOGC, "tap-gogc", "", "GOGC for mistral-tap only (default: mistral-tap's own, 400 unless GOGC is set)")
	pg := fs.String("tap-pg", "", "PostgreSQL server (postgres:// URL with rights to create databases): mistral-tap's store is a fresh database there (store.driver: postgres, one replica, leader) instead of SQLite")
	noListeners := fs.Bool("tap-no-listeners", false, "listeners.enabled: false for mistral-tap: no event history recorded on Accept (what the listeners API costs a POST)")
	pin := fs.Bool("pin", false, "give the proxies CPU 1 to themselves: this process (clients, receiver) and the upstream run on CPU 0, each proxy on CPU 1")
	fs.Parse(args)
	proxyCPUs := ""
	if *pin {
		if runtime.NumCPU() < 2 {
			return fmt.Errorf("-pin needs 2 CPUs, have %d", runtime.NumCPU())
		}
		if err := pinSelf(0); err != nil {
			return err
		}
		proxyCPUs = "1"
	}

	up, err := spawn("-role", "upstream", "-execs", "1000")
	if err != nil {
		return err
	}
	defer up.stop()
	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	hu, err := spawnOn(proxyCPUs, "-role", "httputil", "-upstream", up.info["canned"])
	if err != nil {
		return err
	}
	defer hu.stop()
	hw, err := spawnOn(proxyCPUs, "-role", "httputil-webhook", "-upstream", up.info["canned"], "-receiver", rcv.url)
	if err != nil {
		return err
	}
	defer hw.stop()
	tapArgs := []string{"-role", "tap", "-upstream", up.info["canned"], "-receiver", rcv.url + "/tap", "-cpuprofile", *profile, "-events", *events}
	if *noListeners {
		tapArgs = append(tapArgs, "-no-listeners")
	}
	storeName := "SQLite (state_dir on the local disk)"
	dbName, dbDSN := "", ""
	if *pg != "" {
		dsn, name, drop, err := tempDatabase(*pg)
		if err != nil {
			return err
		}
		defer drop()
		tapArgs = append(tapArgs, "-store-dsn", dsn)
		dbName, dbDSN = name, dsn
		storeName = "PostgreSQL " + redactedServer(dsn) + " (one replica: the leader; mistral-tap's CPU column adds its database backends' CPU)"
	}
	tp, err := spawnOn(proxyCPUs, tapArgs...)
	if err != nil {
		return err
	}
	defer tp.stop()
	tapBase = tp.info["addr"]
	tapCPU := tp.cpu
	if dbName != "" {
		tapCPU = func() time.Duration { return tp.cpu() + backendCPU(dbName) }
	}

	targets := []target{
		{"direct: fake engine", up.info["fake"], up.cpu},
		{"direct: canned", up.info["canned"], up.cpu},
		{"httputil → canned", hu.info["addr"], hu.cpu},
		{webhookFloor, hw.info["addr"], hw.cpu},
		{"mistral-tap → canned", tp.info["addr"], tapCPU},
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil && !*noNginx {
		ng, err := startNginx(up.info["canned"], proxyCPUs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nginx skipped:", err)
		} else {
			defer ng.stop()
			targets = append(targets, target{"nginx → canned", ng.addr, ng.cpu})
		}
	}

	if *only2 != "" {
		targets = slices.DeleteFunc(targets, func(t target) bool {
			if t.name == "direct: canned" || t.name == "httputil → canned" || t.name == webhookFloor {
				return false
			}
			for _, s := range strings.Split(*only2, ",") {
				if s != "" && strings.Contains(t.name, s) {
					return false
				}
			}
			return true
		})
	}

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintf(out, "# loadtool bench — %s, GOMAXPROCS=%d, %s per cell after %s warm-up\n\n", cpuModel(), runtime.GOMAXPROCS(0), *dur, *warm)
	fmt.Fprintf(out, "mistral-tap's store: %s. Load average at start: %s.\n\n", storeName, loadAvg())
	if *pin {
		fmt.Fprintln(out, "Pinned (-pin): clients, receiver and upstream on CPU 0; each proxy alone on CPU 1.")
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "%q runs only on the POST workload: httputil plus one webhook per created execution from an in-memory queue, the least any notifier pays; mistral-tap's POST rows also give their ratio to it.\n\n", webhookFloor)
	fmt.Fprintf(out, "Body sizes: one execution %s B, list of 100 %s B, list of 1,000 %s B.\n\n",
		up.info["bytes_small"], up.info["bytes_list100"], up.info["bytes_list1000"])
	fmt.Fprintln(out, "## Closed loop (fixed concurrency)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| workload | conc | target | req/s | p50 ms | p99 ms | p99.9 ms | server CPU-s / 10k req | req/s vs httputil | errors |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|")
	var wls []workload
	for _, w := range workloads(up.info["exec"]) {
		if strings.Contains(w.name, *only) {
			wls = append(wls, w)
		}
	}
	best := map[string]float64{} // tap's max req/s per workload
	var tapHooks float64         // webhooks/s from mistral-tap in its last POST cell
	for _, w := range wls {
		for _, c := range ints(*concs) {
			res := map[string]result{}
			for _, t := range targets {
				if !w.runs(t) {
					continue
				}
				before, start := rcv.tap.Load(), time.Now()
				r := closedLoop(t.base, w, c, *warm, *dur, t.cpu)
				if t.base == tapBase && w.method == "POST" {
					tapHooks = float64(rcv.tap.Load()-before) / time.Since(start).Seconds()
				}
				res[t.name] = r
			}
			floor := res["httputil → canned"].rps
			for _, t := range targets {
				if !w.runs(t) {
					continue
				}
				r := res[t.name]
				ratio := "—"
				if t.name != "httputil → canned" && floor > 0 && t.name != "direct: fake engine" {
					ratio = fmt.Sprintf("%.2f×", r.rps/floor)
				}
				if wf := res[webhookFloor].rps; t.name == "mistral-tap → canned" && wf > 0 {
					ratio += fmt.Sprintf(" (%.2f× %s; its webhooks during the cell %.0f/s)", r.rps/wf, webhookFloor, tapHooks)
				}
				fmt.Fprintf(out, "| %s | %d | %s | %.0f | %s | %s | %s | %.2f | %s | %d |\n",
					w.name, c, t.name, r.rps, ms(r.pct(0.5)), ms(r.pct(0.99)), ms(r.pct(0.999)), r.cpuPer10k(), ratio, r.errs)
			}
			out.Flush()
			best[w.name] = max(best[w.name], res["mistral-tap → canned"].rps)
		}
	}

	fmt.Fprintln(out)
	fmt.Fprintln(out, "## Open loop at 50% of mistral-tap's maximum req/s (same rate for every target)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| workload | rate req/s | target | p50 ms | p99 ms | p99.9 ms | added p99 vs direct ms | server CPU-s / 10k req | errors |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, w := range wls {
		rate := best[w.name] / 2
		if *fixedRate > 0 {
			rate = *fixedRate
		}
		if rate <= 0 {
			continue // mistral-tap was not measured: no rate to derive
		}
		var direct time.Duration
		for _, t := range targets {
			if t.name == "direct: fake engine" || !w.runs(t) {
				continue
			}
			r := openLoop(t.base, w, rate, *dur, t.cpu)
			if t.name == "direct: canned" {
				direct = r.pct(0.99)
			}
			added := "—"
			if t.name != "direct: canned" {
				added = ms(r.pct(0.99) - direct)
			}
			fmt.Fprintf(out, "| %s | %.0f | %s | %s | %s | %s | %s | %.2f | %d |\n",
				w.name, rate, t.name, ms(r.pct(0.5)), ms(r.pct(0.99)), ms(r.pct(0.999)), added, r.cpuPer10k(), r.errs)
			out.Flush()
		}
	}

	fmt.Fprintln(out)
	fmt.Fprintln(out, "## First byte before last: list of 1,000 whose second half the upstream sends 300 ms after the first")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| target | time to first body byte ms (median of 5) | time to last byte ms |")
	fmt.Fprintln(out, "|---|---|---|")
	for _, t := range targets {
		if t.name == "direct: fake engine" || t.name == webhookFloor {
			continue
		}
		var fb, lb []time.Duration
		for range 5 {
			f, l, err := firstByte(t.base + "/v2/executions?slow=1")
			if err != nil {
				return fmt.Errorf("first byte via %s: %w", t.name, err)
			}
			fb, lb = append(fb, f), append(lb, l)
		}
		slices.Sort(fb)
		slices.Sort(lb)
		fmt.Fprintf(out, "| %s | %s | %s |\n", t.name, ms(fb[2]), ms(lb[2]))
	}
	created, drainedIn := drainTap(rcv, 120*time.Second)
	fmt.Fprintf(out, "\nmistral-tap delivered %d webhooks; %d executions were created through it, one event each, besides the events of the canned executions its watcher lists; the last webhook arrived %.1f s after the last measurement.\n",
		rcv.tap.Load(), created, drainedIn.Seconds())
	if dbDSN != "" {
		fmt.Fprintf(out, "\nPostgreSQL store at the end: %s.\n", storeSummary(dbDSN))
	}
	fmt.Fprintf(out, "\nmistral-tap child RSS after the run: %.1f MiB; %s; webhooks received: %d; load average at the end: %s\n", float64(tp.rss())/(1<<20), tp.gcStats(), rcv.count.Load(), loadAvg())
	return nil
}

// firstByte times the first and the last body byte of a GET.
func firstByte(url string) (first, last time.Duration, err error) {
	t0 := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	n, err := resp.Body.Read(buf)
	for n == 0 && err == nil {
		n, err = resp.Body.Read(buf)
	}
	first = time.Since(t0)
	for err == nil {
		_, err = resp.Body.Read(buf)
	}
	return first, time.Since(t0), nil
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	sc := bufio.NewScanner(bytesReader(b))
	for sc.Scan() {
		var k, v string
		if n, _ := fmt.Sscanf(sc.Text(), "model name\t: %s", &v); n == 1 {
			_ = k
			return sc.Text()[len("model name\t: "):] + fmt.Sprintf(" × %d", runtime.NumCPU())
		}
	}
	return fmt.Sprintf("unknown CPU × %d", runtime.NumCPU())
}

// drainTap waits until mistral-tap's webhooks stop arriving (none for 3 s,
// at most max): with deliveries trailing the proxy, the tail tells how far
// behind they were. It returns the executions created through mistral-tap
// and how long after the call the last webhook arrived.
func drainTap(rcv *receiver, max time.Duration) (created int64, last time.Duration) {
	start := time.Now()
	n, lastAt := rcv.tap.Load(), start
	for time.Since(lastAt) < 3*time.Second && time.Since(start) < max {
		time.Sleep(50 * time.Millisecond)
		if m := rcv.tap.Load(); m != n {
			n, lastAt = m, time.Now()
		}
	}
	return tapCreated.Load(), lastAt.Sub(start)
}
