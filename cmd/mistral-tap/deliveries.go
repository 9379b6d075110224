package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
	"github.com/mistral-tap/mistral-tap/notifier/store/pgstore"
)

const deliveriesUsage = `Usage:
  mistral-tap deliveries list   [--config F | --state-dir D] [--callback N] [--state dead|pending|delivered] [--limit N] [--json]
  mistral-tap deliveries replay [--config F | --state-dir D] (ID | --callback N | --since T)

Both work on the durable store directly (SQLite under state_dir, or the
shared PostgreSQL database with store.driver postgres), also while
'mistral-tap run' is running: a replayed delivery is picked up by the running server within
seconds. T is RFC 3339 (2026-11-28T10:00:00Z) or a duration ago (2h).
`

// cmdDeliveries lists or replays deliveries in the store.
func cmdDeliveries(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprint(stdout, deliveriesUsage)
		return usageError{fmt.Errorf("want 'list' or 'replay'")}
	}
	verb := args[0]
	a, err := parseDeliveriesArgs(verb, args[1:], stdout)
	if err != nil {
		return err
	}

	st, err := openDeliveries(ctx, a.cfgPath, a.stateDir)
	if err != nil {
		return err
	}
	defer st.Close()

	var since time.Time
	if a.since != "" {
		if since, err = parseSince(a.since, time.Now()); err != nil {
			return usageError{err}
		}
	}
	if verb == "list" {
		return listDeliveries(ctx, st, a, since, stdout)
	}
	return replayDeliveries(ctx, st, a, since, stdout)
}

// deliveriesArgs are the flags and arguments of both verbs; each verb
// ignores what it does not use, as the usage text says.
type deliveriesArgs struct {
	cfgPath, stateDir string
	callback, state   string
	since             string
	limit             int
	asJSON            bool
	ids               []string // what follows the flags: replay's delivery id
}

func parseDeliveriesArgs(verb string, args []string, stdout io.Writer) (deliveriesArgs, error) {
	var a deliveriesArgs
	fs := pflag.NewFlagSet("deliveries "+verb, pflag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVarP(&a.cfgPath, "config", "c", os.Getenv("MISTRAL_TAP_CONFIG"), "configuration file (for state_dir or the PostgreSQL store)")
	fs.StringVar(&a.stateDir, "state-dir", "", "state directory (overrides the config's state_dir)")
	fs.StringVar(&a.callback, "callback", "", "only this callback")
	fs.StringVar(&a.state, "state", "", "list: only dead, pending or delivered")
	fs.StringVar(&a.since, "since", "", "only events at or after T (RFC 3339, or a duration ago like 2h)")
	fs.IntVar(&a.limit, "limit", 100, "list: at most this many")
	fs.BoolVar(&a.asJSON, "json", false, "list: JSON lines instead of a table")
	if err := fs.Parse(args); err != nil {
		return a, usageError{err}
	}
	a.ids = fs.Args()
	return a, nil
}

// listDeliveries prints the deliveries the flags select, as JSON lines
// (for scripts) or a table (for people).
func listDeliveries(ctx context.Context, st deliveryStore, a deliveriesArgs, since time.Time, stdout io.Writer) error {
	f := store.Filter{Callback: a.callback, State: store.State(a.state), Since: since, Limit: a.limit}
	if f.State != "" && !f.State.Valid() {
		return usageError{fmt.Errorf("--state %q: want dead, pending or delivered", a.state)}
	}
	ds, err := st.List(ctx, f)
	if err != nil {
		return err
	}
	if a.asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range ds {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	return writeDeliveriesTable(stdout, ds)
}

// writeDeliveriesTable prints one line per delivery; the last error is cut
// to one line of 80 runes so that a receiver's long answer keeps the table
// readable.
func writeDeliveriesTable(stdout io.Writer, ds []store.Delivery) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCALLBACK\tEVENT\tSTATE\tATTEMPTS\tSTATUS\tUPDATED\tLAST ERROR")
	for _, d := range ds {
		status := "-"
		if d.LastStatus != 0 {
			status = fmt.Sprint(d.LastStatus)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.Callback, d.EventType, d.State,
			d.Attempts, status, d.UpdatedAt.UTC().Format(time.RFC3339), oneLine(d.LastError, 80))
	}
	return tw.Flush()
}

// replayDeliveries makes the selected deliveries pending again. It needs a
// selector: replaying the whole store by accident would resend everything.
func replayDeliveries(ctx context.Context, st deliveryStore, a deliveriesArgs, since time.Time, stdout io.Writer) error {
	f := store.ReplayFilter{Callback: a.callback, Since: since}
	if len(a.ids) > 1 {
		return usageError{fmt.Errorf("replay takes at most one delivery id")}
	}
	if len(a.ids) == 1 {
		f.ID = a.ids[0]
	}
	if f.ID == "" && f.Callback == "" && f.Since.IsZero() {
		return usageError{fmt.Errorf("replay needs an ID, --callback or --since")}
	}
	n, err := st.Replay(ctx, f, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d delivery(ies)\n", n)
	return nil
}

// deliveryStore is what the command needs from either store.
type deliveryStore interface {
	List(ctx context.Context, f store.Filter) ([]store.Delivery, error)
	Replay(ctx context.Context, f store.ReplayFilter, now time.Time) (int, error)
	Close() error
}

// openDeliveries opens the store the configuration names: SQLite under
// state_dir (--state-dir overrides it, and needs no config), or the shared
// PostgreSQL database of store.driver postgres.
func openDeliveries(ctx context.Context, cfgPath, stateDir string) (deliveryStore, error) {
	if stateDir == "" {
		cfg, err := config.Load(config.Source{Path: cfgPath})
		if err != nil {
			return nil, fmt.Errorf("reading %s for the store: %w", cfgPath, err)
		}
		if cfg.Store.Driver == config.DriverPostgres {
			return pgstore.Open(ctx, pgstore.Options{DSN: cfg.Store.DSN, MaxConns: 2, ConnectTimeout: cfg.Store.ConnectTimeout})
		}
		stateDir = cfg.StateDir
	}
	if _, err := os.Stat(filepath.Join(stateDir, store.FileName)); err != nil {
		return nil, fmt.Errorf("no store in %s (has mistral-tap run there?): %w", stateDir, err)
	}
	return store.Open(stateDir, store.Options{})
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want RFC 3339 (2026-11-28T10:00:00Z) or a duration like 2h", s)
}

func oneLine(s string, n int) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' || r == '\t' {
			r = ' '
		}
		out = append(out, r)
		if len(out) >= n {
			return string(out) + "…"
		}
	}
	return string(out)
}
