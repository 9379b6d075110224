package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// workload is one kind of request.
type workload struct {
	name   string
	method string
	path   string // relative to the target
	body   string
}

// result is one measured cell.
type result struct {
	n, errs int
	elapsed time.Duration
	lat     []time.Duration // sorted
	cpu     time.Duration   // server CPU during the window
	rps     float64
	bytesIn int64
}

func (r *result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

// cpuPer10k is server CPU seconds per 10,000 requests.
func (r *result) cpuPer10k() float64 {
	if r.n == 0 {
		return 0
	}
	return r.cpu.Seconds() / float64(r.n) * 10000
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, MaxIdleConns: conns, MaxIdleConnsPerHost: conns,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}, Timeout: 30 * time.Second}
}

// do sends one request and reads the whole body; ok means 2xx.
func do(c *http.Client, base string, w workload) (int64, bool) {
	var body io.Reader
	if w.body != "" {
		body = strings.NewReader(w.body)
	}
	req, err := http.NewRequest(w.method, base+w.path, body)
	if err != nil {
		return 0, false
	}
	if w.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, false
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ok := err == nil && resp.StatusCode/100 == 2
	if ok && w.method == "POST" && base == tapBase {
		tapCreated.Add(1)
	}
	return n, ok
}

// tapBase is mistral-tap's address in bench; tapCreated counts the
// executions created through it (each one event to deliver), warm-ups
// included, so that the run can tell whether deliveries kept up.
var (
	tapBase    string
	tapCreated atomic.Int64
)

// closedLoop runs conc clients back to back for warm+dur and measures the
// last dur. cpu reads the server's CPU time.
func closedLoop(base string, w workload, conc int, warm, dur time.Duration, cpu func() time.Duration) result {
	c := newClient(conc)
	defer c.CloseIdleConnections()
	var measuring atomic.Bool
	stop := make(chan struct{})
	lats := make([][]time.Duration, conc)
	errs := make([]int, conc)
	bytes := make([]int64, conc)
	var wg sync.WaitGroup
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				n, ok := do(c, base, w)
				if measuring.Load() {
					lats[i] = append(lats[i], time.Since(t0))
					bytes[i] += n
					if !ok {
						errs[i]++
					}
				}
			}
		}()
	}
	time.Sleep(warm)
	c0 := cpu()
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	el := time.Since(t0)
	c1 := cpu()
	close(stop)
	wg.Wait()
	return collect(lats, errs, bytes, el, c1-c0)
}

func collect(lats [][]time.Duration, errs []int, bytes []int64, el, cpu time.Duration) result {
	r := result{elapsed: el, cpu: cpu}
	for i := range lats {
		r.lat = append(r.lat, lats[i]...)
		r.errs += errs[i]
		r.bytesIn += bytes[i]
	}
	slices.Sort(r.lat)
	r.n = len(r.lat)
	r.rps = float64(r.n) / el.Seconds()
	return r
}

// openLoop sends at a fixed rate for dur, whatever the latency, and
// measures each request from when it was due (no coordinated omission).
func openLoop(base string, w workload, rate float64, dur time.Duration, cpu func() time.Duration) result {
	const workers = 256
	c := newClient(workers)
	defer c.CloseIdleConnections()
	due := make(chan time.Time, 1<<16)
	lats := make([][]time.Duration, workers)
	errs := make([]int, workers)
	bytes := make([]int64, workers)
	var wg sync.WaitGroup
	mstart := time.Now().Add(time.Hour) // set below, before the first send
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range due {
				n, ok := do(c, base, w)
				if t.Before(mstart) {
					continue
				}
				lats[i] = append(lats[i], time.Since(t))
				bytes[i] += n
				if !ok {
					errs[i]++
				}
			}
		}()
	}
	// The first 300 ms warm the connections at the same rate and are not
	// recorded.
	step := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	mstart = start.Add(300 * time.Millisecond)
	total := int(rate * (dur + 300*time.Millisecond).Seconds())
	var c0 time.Duration
	read := false
	for i := range total {
		t := start.Add(time.Duration(i) * step)
		if !read && !t.Before(mstart) {
			c0, read = cpu(), true
		}
		if d := time.Until(t); d > 0 {
			time.Sleep(d)
		}
		due <- t
	}
	close(due)
	wg.Wait()
	el := time.Since(mstart)
	r := collect(lats, errs, bytes, el, cpu()-c0)
	return r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
