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
	f := parseBenchFlags(args)
	proxyCPUs, err := pinProxies(f.pin)
	if err != nil {
		return err
	}
	rig := &benchRig{}
	defer rig.close()
	if err := rig.start(f, proxyCPUs); err != nil {
		return err
	}

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	writeBenchHeader(out, f, rig)
	var wls []workload
	for _, w := range workloads(rig.up.info["exec"]) {
		if strings.Contains(w.name, f.only) {
			wls = append(wls, w)
		}
	}
	best := closedLoopSection(out, f, rig, wls)
	openLoopSection(out, f, rig.targets, wls, best)
	if err := firstByteSection(out, rig.targets); err != nil {
		return err
	}
	writeBenchFooter(out, rig)
	return nil
}

// benchFlags are bench's command line.
type benchFlags struct {
	dur, warm                     time.Duration
	concs, only, profile, targets string
	events, pg                    string
	noNginx, noListeners, pin     bool
	fixedRate                     float64
}

// parseBenchFlags reads bench's flags; -h and bad flags exit, as every
// loadtool command does. -tap-gogc goes to tapGOGC, which spawnOn reads.
func parseBenchFlags(args []string) benchFlags {
	var f benchFlags
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.DurationVar(&f.dur, "dur", 3*time.Second, "measured time per cell")
	fs.DurationVar(&f.warm, "warm", time.Second, "warm-up per cell (not measured)")
	fs.StringVar(&f.concs, "conc", "16,64", "client concurrency levels")
	fs.BoolVar(&f.noNginx, "no-nginx", false, "skip nginx even if installed")
	fs.StringVar(&f.only, "only", "", "run only the workload whose name contains this")
	fs.StringVar(&f.profile, "tap-cpuprofile", "", "write mistral-tap's CPU profile to this file")
	fs.StringVar(&f.targets, "targets", "", "comma-separated substrings: run only the targets whose name contains one (direct: canned and httputil always run, they are the baselines)")
	fs.StringVar(&f.events, "tap-events", "*", "events filter of mistral-tap's one callback: e.g. TASK_FAILED (never emitted by the canned upstream) measures the tap and derivation without webhook delivery")
	fs.Float64Var(&f.fixedRate, "rate", 0, "open-loop rate in req/s instead of 50% of mistral-tap's measured maximum (before/after comparisons at the same load)")
	fs.StringVar(&tapGOGC, "tap-gogc", "", "GOGC for mistral-tap only (default: mistral-tap's own, 400 unless GOGC is set)")
	fs.StringVar(&f.pg, "tap-pg", "", "PostgreSQL server (postgres:// URL with rights to create databases): mistral-tap's store is a fresh database there (store.driver: postgres, one replica, leader) instead of SQLite")
	fs.BoolVar(&f.noListeners, "tap-no-listeners", false, "listeners.enabled: false for mistral-tap: no event history recorded on Accept (what the listeners API costs a POST)")
	fs.BoolVar(&f.pin, "pin", false, "give the proxies CPU 1 to themselves: this process (clients, receiver) and the upstream run on CPU 0, each proxy on CPU 1")
	fs.Parse(args)
	return f
}

// pinProxies, under -pin, moves this process to CPU 0 and returns the CPU
// list for the proxies ("1"), so that clients and proxies never share a
// core; without -pin it returns "" (no pinning).
func pinProxies(pin bool) (string, error) {
	if !pin {
		return "", nil
	}
	if runtime.NumCPU() < 2 {
		return "", fmt.Errorf("-pin needs 2 CPUs, have %d", runtime.NumCPU())
	}
	if err := pinSelf(0); err != nil {
		return "", err
	}
	return "1", nil
}

// benchRig is what bench measures against: the children, the receiver and
// the targets built on them. close undoes start, also a partial one.
type benchRig struct {
	up, tp    *child
	rcv       *receiver
	targets   []target
	storeName string // for the header
	dbDSN     string // PostgreSQL store's database, "" with SQLite
	stops     []func()
}

// close stops what start started, last first (nginx, mistral-tap, its
// database, the proxies, the upstream), as the deferred calls did.
func (rig *benchRig) close() {
	for i := len(rig.stops) - 1; i >= 0; i-- {
		rig.stops[i]()
	}
}

// start starts the upstream, the receiver, the proxies and mistral-tap and
// lists the targets, keeping only those -targets asks for.
func (rig *benchRig) start(f benchFlags, proxyCPUs string) error {
	hu, hw, err := rig.startBaselines(proxyCPUs)
	if err != nil {
		return err
	}
	tapCPU, err := rig.startTap(f, proxyCPUs)
	if err != nil {
		return err
	}
	up := rig.up
	rig.targets = []target{
		{"direct: fake engine", up.info["fake"], up.cpu},
		{"direct: canned", up.info["canned"], up.cpu},
		{"httputil → canned", hu.info["addr"], hu.cpu},
		{webhookFloor, hw.info["addr"], hw.cpu},
		{"mistral-tap → canned", rig.tp.info["addr"], tapCPU},
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil && !f.noNginx {
		ng, err := startNginx(up.info["canned"], proxyCPUs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nginx skipped:", err)
		} else {
			rig.stops = append(rig.stops, ng.stop)
			rig.targets = append(rig.targets, target{"nginx → canned", ng.addr, ng.cpu})
		}
	}
	if f.targets != "" {
		rig.targets = slices.DeleteFunc(rig.targets, func(t target) bool { return !keepTarget(t.name, f.targets) })
	}
	return nil
}

// keepTarget reports whether -targets (comma-separated substrings) keeps
// the target called name; the baselines are always kept since the other
// rows are read against them.
func keepTarget(name, only string) bool {
	if name == "direct: canned" || name == "httputil → canned" || name == webhookFloor {
		return true
	}
	for _, s := range strings.Split(only, ",") {
		if s != "" && strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// startBaselines starts the upstream, the receiver and the two httputil
// proxies (plain, and with one webhook per created execution).
func (rig *benchRig) startBaselines(proxyCPUs string) (hu, hw *child, err error) {
	up, err := spawn("-role", "upstream", "-execs", "1000")
	if err != nil {
		return nil, nil, err
	}
	rig.up = up
	rig.stops = append(rig.stops, up.stop)
	if rig.rcv, err = startReceiver(); err != nil {
		return nil, nil, err
	}
	hu, err = spawnOn(proxyCPUs, "-role", "httputil", "-upstream", up.info["canned"])
	if err != nil {
		return nil, nil, err
	}
	rig.stops = append(rig.stops, hu.stop)
	hw, err = spawnOn(proxyCPUs, "-role", "httputil-webhook", "-upstream", up.info["canned"], "-receiver", rig.rcv.url)
	if err != nil {
		return nil, nil, err
	}
	rig.stops = append(rig.stops, hw.stop)
	return hu, hw, nil
}

// startTap starts mistral-tap, on a fresh PostgreSQL database under
// -tap-pg, and returns its CPU clock: with PostgreSQL that adds the
// database backends' CPU, which is work the store costs mistral-tap.
func (rig *benchRig) startTap(f benchFlags, proxyCPUs string) (func() time.Duration, error) {
	tapArgs := []string{"-role", "tap", "-upstream", rig.up.info["canned"], "-receiver", rig.rcv.url + "/tap", "-cpuprofile", f.profile, "-events", f.events}
	if f.noListeners {
		tapArgs = append(tapArgs, "-no-listeners")
	}
	rig.storeName = "SQLite (state_dir on the local disk)"
	dbName := ""
	if f.pg != "" {
		dsn, name, drop, err := tempDatabase(f.pg)
		if err != nil {
			return nil, err
		}
		rig.stops = append(rig.stops, drop)
		tapArgs = append(tapArgs, "-store-dsn", dsn)
		dbName, rig.dbDSN = name, dsn
		rig.storeName = "PostgreSQL " + redactedServer(dsn) + " (one replica: the leader; mistral-tap's CPU column adds its database backends' CPU)"
	}
	tp, err := spawnOn(proxyCPUs, tapArgs...)
	if err != nil {
		return nil, err
	}
	rig.tp = tp
	rig.stops = append(rig.stops, tp.stop)
	tapBase = tp.info["addr"]
	if dbName != "" {
		return func() time.Duration { return tp.cpu() + backendCPU(dbName) }, nil
	}
	return tp.cpu, nil
}

// writeBenchHeader writes what the numbers below depend on: machine, cell
// timing, store, pinning, the webhook floor and the body sizes.
func writeBenchHeader(out *bufio.Writer, f benchFlags, rig *benchRig) {
	up := rig.up
	fmt.Fprintf(out, "# loadtool bench — %s, GOMAXPROCS=%d, %s per cell after %s warm-up\n\n", cpuModel(), runtime.GOMAXPROCS(0), f.dur, f.warm)
	fmt.Fprintf(out, "mistral-tap's store: %s. Load average at start: %s.\n\n", rig.storeName, loadAvg())
	if f.pin {
		fmt.Fprintln(out, "Pinned (-pin): clients, receiver and upstream on CPU 0; each proxy alone on CPU 1.")
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "%q runs only on the POST workload: httputil plus one webhook per created execution from an in-memory queue, the least any notifier pays; mistral-tap's POST rows also give their ratio to it.\n\n", webhookFloor)
	fmt.Fprintf(out, "Body sizes: one execution %s B, list of 100 %s B, list of 1,000 %s B.\n\n",
		up.info["bytes_small"], up.info["bytes_list100"], up.info["bytes_list1000"])
}

// closedLoopSection measures every workload at every concurrency on every
// target and returns mistral-tap's best req/s per workload, which sets the
// open-loop rate.
func closedLoopSection(out *bufio.Writer, f benchFlags, rig *benchRig, wls []workload) map[string]float64 {
	fmt.Fprintln(out, "## Closed loop (fixed concurrency)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| workload | conc | target | req/s | p50 ms | p99 ms | p99.9 ms | server CPU-s / 10k req | req/s vs httputil | errors |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|")
	best := map[string]float64{} // tap's max req/s per workload
	for _, w := range wls {
		for _, c := range ints(f.concs) {
			res, tapHooks := closedLoopCell(f, rig, w, c)
			writeClosedLoopRows(out, rig.targets, w, c, res, tapHooks)
			out.Flush()
			best[w.name] = max(best[w.name], res["mistral-tap → canned"].rps)
		}
	}
	return best
}

// closedLoopCell measures workload w at concurrency c on each target it
// runs on, and the webhooks/s mistral-tap delivered during its POST cell
// (0 otherwise): delivery trailing the proxy shows there.
func closedLoopCell(f benchFlags, rig *benchRig, w workload, c int) (res map[string]result, tapHooks float64) {
	res = map[string]result{}
	for _, t := range rig.targets {
		if !w.runs(t) {
			continue
		}
		before, start := rig.rcv.tap.Load(), time.Now()
		r := closedLoop(t.base, w, c, f.warm, f.dur, t.cpu)
		if t.base == tapBase && w.method == "POST" {
			tapHooks = float64(rig.rcv.tap.Load()-before) / time.Since(start).Seconds()
		}
		res[t.name] = r
	}
	return res, tapHooks
}

// writeClosedLoopRows writes one cell's rows, each with its ratio to
// httputil (the cost of any Go proxy) and, for mistral-tap, to the webhook
// floor.
func writeClosedLoopRows(out *bufio.Writer, targets []target, w workload, c int, res map[string]result, tapHooks float64) {
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
}

// openLoopSection offers every target the same fixed rate (half of
// mistral-tap's best, or -rate) so latencies compare at equal load, and
// reports p99 added over the canned upstream reached directly.
func openLoopSection(out *bufio.Writer, f benchFlags, targets []target, wls []workload, best map[string]float64) {
	fmt.Fprintln(out)
	fmt.Fprintln(out, "## Open loop at 50% of mistral-tap's maximum req/s (same rate for every target)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| workload | rate req/s | target | p50 ms | p99 ms | p99.9 ms | added p99 vs direct ms | server CPU-s / 10k req | errors |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, w := range wls {
		rate := best[w.name] / 2
		if f.fixedRate > 0 {
			rate = f.fixedRate
		}
		if rate <= 0 {
			continue // mistral-tap was not measured: no rate to derive
		}
		var direct time.Duration
		for _, t := range targets {
			if t.name == "direct: fake engine" || !w.runs(t) {
				continue
			}
			r := openLoop(t.base, w, rate, f.dur, t.cpu)
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
}

// firstByteSection times first and last byte of a list whose second half
// comes late: a proxy that buffers the body shows its first byte late too.
func firstByteSection(out *bufio.Writer, targets []target) error {
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
	return nil
}

// writeBenchFooter waits for mistral-tap's deliveries to drain and reports
// them with its store, memory and GC after the run.
func writeBenchFooter(out *bufio.Writer, rig *benchRig) {
	created, drainedIn := drainTap(rig.rcv, 120*time.Second)
	fmt.Fprintf(out, "\nmistral-tap delivered %d webhooks; %d executions were created through it, one event each, besides the events of the canned executions its watcher lists; the last webhook arrived %.1f s after the last measurement.\n",
		rig.rcv.tap.Load(), created, drainedIn.Seconds())
	if rig.dbDSN != "" {
		fmt.Fprintf(out, "\nPostgreSQL store at the end: %s.\n", storeSummary(rig.dbDSN))
	}
	fmt.Fprintf(out, "\nmistral-tap child RSS after the run: %.1f MiB; %s; webhooks received: %d; load average at the end: %s\n", float64(rig.tp.rss())/(1<<20), rig.tp.gcStats(), rig.rcv.count.Load(), loadAvg())
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
