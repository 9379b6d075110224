package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A child is a server role running in its own process, so that its CPU time
// (getrusage in the child) is not mixed with the load generator's. The
// protocol is line-based: the child prints "READY <json>" once it serves,
// answers "cpu" on stdin with "CPU <nanoseconds>", and exits when stdin
// closes (so it never outlives the parent).
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	mu   sync.Mutex
	info map[string]string
}

// tapGOGC, when set (bench -tap-gogc), is GOGC for the mistral-tap child
// only; the baselines keep the environment's.
var tapGOGC string

// spawn starts `<this binary> serve <args...>` and waits for READY.
func spawn(args ...string) (*child, error) { return spawnOn("", args...) }

// spawnOn is spawn with the child pinned to the CPU list cpus (taskset
// syntax) from its first instruction, so that every thread of its runtime
// and its GOMAXPROCS follow; "" inherits this process's CPUs.
func spawnOn(cpus string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding own binary: %w", err)
	}
	cmd := exec.Command(self, append([]string{"serve"}, args...)...)
	if cpus != "" {
		cmd = exec.Command("taskset", append([]string{"-c", cpus, self, "serve"}, args...)...)
	}
	cmd.Stderr = os.Stderr
	if tapGOGC != "" && slices.Contains(args, "tap") {
		cmd.Env = append(os.Environ(), "GOGC="+tapGOGC)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting child %v: %w", args, err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	c.out.Buffer(make([]byte, 64<<10), 1<<20)
	if !c.out.Scan() {
		cmd.Process.Kill()
		return nil, fmt.Errorf("child %v exited before READY: %v", args, c.out.Err())
	}
	line, ok := strings.CutPrefix(c.out.Text(), "READY ")
	if !ok {
		cmd.Process.Kill()
		return nil, fmt.Errorf("child %v: unexpected first line %q", args, c.out.Text())
	}
	if err := json.Unmarshal([]byte(line), &c.info); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("child %v: READY line: %w", args, err)
	}
	return c, nil
}

// ask sends one command line and returns the answer line.
func (c *child) ask(cmd string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return "", fmt.Errorf("child: sending %q: %w", cmd, err)
	}
	if !c.out.Scan() {
		return "", fmt.Errorf("child: no answer to %q: %v", cmd, c.out.Err())
	}
	return c.out.Text(), nil
}

// cpu is the child's user+system CPU time so far.
func (c *child) cpu() time.Duration {
	a, err := c.ask("cpu")
	if err != nil {
		return 0
	}
	ns, _ := strconv.ParseInt(strings.TrimPrefix(a, "CPU "), 10, 64)
	return time.Duration(ns)
}

// rss is the child's resident set size in bytes (VmRSS).
func (c *child) rss() int64 {
	a, err := c.ask("rss")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimPrefix(a, "RSS "), 10, 64)
	return n
}

// gcStats describes the child's garbage collections so far.
func (c *child) gcStats() string {
	a, err := c.ask("gc")
	if err != nil {
		return "GC unknown"
	}
	var n uint32
	var pause, heap uint64
	fmt.Sscanf(a, "GC %d %d %d", &n, &pause, &heap)
	return fmt.Sprintf("%d GCs, %.1f ms total pause, heap goal %.1f MiB", n, float64(pause)/1e6, float64(heap)/(1<<20))
}

// stop closes stdin and waits for a graceful exit (bounded).
func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// pinSelf moves every thread of this process to CPU cpu and runs Go on
// one P; threads created later inherit the affinity, and so do children.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("pinning: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pinning thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// selfCPU is this process's user+system time (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfRSS reads VmRSS from /proc/self/status.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// serveControl answers the parent's commands until stdin closes.
func serveControl() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "cpu":
			fmt.Printf("CPU %d\n", selfCPU().Nanoseconds())
		case "rss":
			fmt.Printf("RSS %d\n", selfRSS())
		case "gc":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("GC %d %d %d\n", ms.NumGC, ms.PauseTotalNs, ms.NextGC)
		default:
			fmt.Println("ERR unknown command")
		}
	}
}

func ready(info map[string]string) {
	b, _ := json.Marshal(info)
	fmt.Printf("READY %s\n", b)
}
