package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/mistral-tap/mistral-tap/config"
	"github.com/mistral-tap/mistral-tap/notifier/store"
)

const storeUsage = `Usage:
  mistral-tap store check [--config F | --state-dir D]
  mistral-tap store reset [--config F | --state-dir D]

check runs SQLite's quick_check on the database (also while 'run' is
running) and exits 1 if it is corrupt. reset moves the database and its
companion files aside (renamed *.reset-<UTC time>, nothing is deleted) so
that the next 'run' starts with an empty state: the way out when 'run'
refuses a lost, empty or corrupt state and no backup is to be restored.
reset refuses while 'run' holds the state.
`

// cmdStore checks or resets the durable store.
func cmdStore(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "check" && args[0] != "reset") {
		fmt.Fprint(stdout, storeUsage)
		return usageError{fmt.Errorf("want 'check' or 'reset'")}
	}
	verb := args[0]
	fs := pflag.NewFlagSet("store "+verb, pflag.ContinueOnError)
	fs.SetOutput(stdout)
	cfgPath := fs.StringP("config", "c", os.Getenv("MISTRAL_TAP_CONFIG"), "configuration file (for state_dir)")
	stateDir := fs.String("state-dir", "", "state directory (overrides the config's state_dir)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	dir := *stateDir
	if dir == "" {
		if *cfgPath == "" {
			return usageError{errors.New("--config or --state-dir is required")}
		}
		cfg, err := config.Load(config.Source{Path: *cfgPath})
		if err != nil {
			return fmt.Errorf("reading %s for state_dir: %w", *cfgPath, err)
		}
		dir = cfg.StateDir
	}
	path := filepath.Join(dir, store.FileName)

	if verb == "reset" {
		moved, err := store.Reset(path, time.Now())
		for _, m := range moved {
			fmt.Fprintf(stdout, "moved aside: %s\n", m)
		}
		if err != nil {
			return err
		}
		if len(moved) == 0 {
			fmt.Fprintf(stdout, "nothing to reset in %s\n", dir)
		}
		fmt.Fprintf(stdout, "the next 'mistral-tap run' starts with an empty state in %s\n", dir)
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no store in %s (has mistral-tap run there?): %w", dir, err)
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.QuickCheck(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return nil
}
