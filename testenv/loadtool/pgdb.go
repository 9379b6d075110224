package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// tapStoreDSN, when set (serve -store-dsn), puts the tap child on that
// PostgreSQL database (store.driver: postgres) instead of SQLite.
var tapStoreDSN string

// tapNoListeners, when set (serve -no-listeners), turns the listeners API
// off in the tap child, and with it the event history Accept records for
// backfill: bench -tap-no-listeners measures what history costs a POST.
var tapNoListeners bool

// tempDatabase creates an empty database on the server admin names (a
// URL DSN) and returns its DSN and a function that drops it, so that every
// run starts from an empty store and leaves nothing behind.
func tempDatabase(admin string) (dsn, name string, drop func(), err error) {
	u, err := url.Parse(admin)
	if err != nil || u.Scheme == "" {
		return "", "", nil, fmt.Errorf("-tap-pg wants a postgres:// URL")
	}
	var b [4]byte
	rand.Read(b[:])
	name = "loadtool_" + hex.EncodeToString(b[:])
	exec := func(q string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return fmt.Errorf("connecting to the -tap-pg server: %w", err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, q)
		return err
	}
	if err := exec("CREATE DATABASE " + name); err != nil {
		return "", "", nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), name, func() { exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") }, nil
}

// redactedServer is host/database of a DSN, without credentials.
func redactedServer(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Host + u.Path
}

// loadAvg is /proc/loadavg's three averages: the machine is shared, and a
// number means little without what else ran.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// backendCPU returns the CPU time so far of the PostgreSQL backends
// serving database db (their process titles name it), read from /proc:
// with the store on PostgreSQL, the work SQLite does inside mistral-tap's
// process happens there. Backends that exited are not counted (the pool
// keeps its connections), nor the server's shared processes (WAL writer,
// checkpointer).
func backendCPU(db string) time.Duration {
	dirs, _ := os.ReadDir("/proc")
	var ticks int64
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		title, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || !strings.HasPrefix(string(title), "postgres: ") || !strings.Contains(string(title), " "+db+" ") {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: utime and stime are
		// the 12th and 13th.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// storeSummary counts the deliveries of database dsn by state and event
// type, and the
// observations still queued: whether webhooks missing at the end were
// still pending (retrying), dead, or never derived.
func storeSummary(dsn string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT state, event_type, COUNT(*) FROM deliveries GROUP BY state, event_type ORDER BY state, event_type`)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	var parts []string
	for rows.Next() {
		var state, typ string
		var n int64
		if rows.Scan(&state, &typ, &n) == nil {
			parts = append(parts, fmt.Sprintf("%s %s %d", state, typ, n))
		}
	}
	rows.Close()
	var obs int64
	conn.QueryRow(ctx, `SELECT COUNT(*) FROM observations`).Scan(&obs)
	return fmt.Sprintf("deliveries %s; observations still queued %d", strings.Join(parts, ", "), obs)
}
