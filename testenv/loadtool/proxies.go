package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/gctune"
	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/tap/proxy"
)

// runHTTPUtil is the floor for a Go proxy: httputil.ReverseProxy with the
// same upstream transport as mistral-tap.
func runHTTPUtil(upstream string) error {
	rp, err := newHTTPUtil(upstream)
	if err != nil {
		return err
	}
	return serveChild(rp)
}

func newHTTPUtil(upstream string) (*httputil.ReverseProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	tr, err := proxy.NewTransport(proxy.TransportOptions{})
	if err != nil {
		return nil, err
	}
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host },
		Transport: tr,
	}, nil
}

// serveChild serves h on a loopback port, reports it READY and answers the
// parent until it goes away.
func serveChild(h http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(ln, h)
	ready(map[string]string{"addr": "http://" + ln.Addr().String()})
	serveControl()
	return nil
}

const tapConfig = `
listen: 127.0.0.1:0
upstream: %s
state_dir: %s
watch:
  interval: %s
tracker:
  retention: RETENTION
delivery:
  allow_networks: ["127.0.0.0/8"]
callbacks:
  - name: load
    events: [%q]
    url: %s
    concurrency: %d
    ordering: %s
`

// runTap is mistral-tap itself (app.Run), tapping, watching and delivering
// every event to the parent's receiver.
func runTap(upstream, receiver string, interval time.Duration, concurrency int, ordering, profile, events string) error {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	dir, err := os.MkdirTemp("", "loadtool-tap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mistral-tap.yaml")
	cfgText := fmt.Sprintf(tapConfig, upstream, filepath.Join(dir, "state"), interval, events, receiver, concurrency, ordering)
	cfgText = strings.Replace(cfgText, "RETENTION", tapRetention.String(), 1)
	if tapStoreDSN != "" {
		cfgText += fmt.Sprintf("store:\n  driver: postgres\n  dsn: %q\n", tapStoreDSN)
	}
	switch {
	case tapNoListeners:
		cfgText += "listeners:\n  enabled: false\n"
	case tapStoreDSN != "":
		// Replicas share sealed listeners, so PostgreSQL needs a key.
		key := make([]byte, 24)
		rand.Read(key)
		cfgText += fmt.Sprintf("listeners:\n  key: %x\n", key)
	}
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(config.Source{Path: path})
	if err != nil {
		return fmt.Errorf("tap config: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	started := make(chan struct{})
	gctune.Apply(log) // as cmd/mistral-tap run does: this child is the mistral-tap process
	go func() {
		done <- app.Run(ctx, app.Options{Config: cfg, Logger: log, Listener: ln, Version: "loadtool",
			Ready: func(string) { close(started) }})
	}()
	select {
	case <-started:
	case err := <-done:
		cancel()
		return fmt.Errorf("app.Run: %w", err)
	}
	ready(map[string]string{"addr": "http://" + ln.Addr().String()})
	serveControl()
	cancel()
	return <-done
}

// nginxServer runs /usr/sbin/nginx as a reverse proxy with a keepalive
// upstream pool; its CPU time is read from /proc for master and workers.
type nginxServer struct {
	cmd  *exec.Cmd
	dir  string
	addr string
}

func startNginx(upstream, cpus string) (*nginxServer, error) {
	bin := "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadtool-nginx-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	up := strings.TrimPrefix(upstream, "http://")
	workers := 2
	if cpus != "" {
		workers = 1 // pinned to one CPU
	}
	conf := fmt.Sprintf(`
worker_processes %[4]d;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  upstream mistral { server %[2]s; keepalive 64; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://mistral;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }
}
`, dir, up, addr, workers)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", cf)
	if cpus != "" {
		cmd = exec.Command("taskset", "-c", cpus, bin, "-p", dir, "-c", cf)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nginxServer{cmd: cmd, dir: dir, addr: "http://" + addr}
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return n, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.stop()
	return nil, fmt.Errorf("nginx did not listen on %s", addr)
}

// cpu sums utime+stime of the master and its children from /proc.
func (n *nginxServer) cpu() time.Duration {
	pids := []int{n.cmd.Process.Pid}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pids[0], pids[0])); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	var ticks int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// fields after the command: state(0) ... utime(11) stime(12)
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}

func (n *nginxServer) stop() {
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
	n.cmd.Wait()
	os.RemoveAll(n.dir)
}

// runHTTPUtilWebhook is the floor for a proxy that notifies: httputil plus,
// for every 2xx POST, one webhook carrying the response body to the
// receiver, sent from a pool of 16 workers through an in-memory queue. No
// durability, no matching, no retries: what any notifier that sends one
// HTTP request per event pays at least, on the same cores.
func runHTTPUtilWebhook(upstream, receiver string) error {
	rp, err := newHTTPUtil(upstream)
	if err != nil {
		return err
	}
	queue := make(chan []byte, 1<<20)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	for range 16 {
		go func() {
			for body := range queue {
				resp, err := client.Post(receiver, "application/json", bytes.NewReader(body))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodPost || resp.StatusCode/100 != 2 {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		queue <- body
		return nil
	}
	return serveChild(rp)
}
