package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/gctune"
	"github.com/mistral-tap/mistral-tap/config"
)

// configFlags registers --config plus every config override flag.
func configFlags(name string) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	path := fs.StringP("config", "c", os.Getenv("MISTRAL_TAP_CONFIG"), "YAML configuration file (env MISTRAL_TAP_CONFIG)")
	config.RegisterFlags(fs)
	return fs, path
}

// newLogger builds the process logger. The level is a LevelVar so that a
// reload can change it.
func newLogger(w io.Writer, c *config.Config) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Log.Level)); err == nil {
		lv.Set(l)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs, path := configFlags("run")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	// The compiler checks the callbacks' routing as part of the load, and
	// Run reuses what it compiled.
	comp := &app.Compiler{}
	src := config.Source{Path: *path, Flags: fs, Check: comp.Check}
	cfg, err := config.Load(src)
	if err != nil {
		printProblems(stderr, err)
		fmt.Fprintln(stderr, "mistral-tap run: refusing to start with an invalid configuration")
		return errReported
	}
	log, lv := newLogger(stderr, cfg)
	gctune.Apply(log)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()

	return app.Run(ctx, app.Options{
		Config: cfg, Source: src, Logger: log, LogLevel: lv, Version: version, Reload: reload, Compiler: comp,
	})
}

// printProblems prints each configuration problem on its own line.
func printProblems(w io.Writer, err error) {
	ps := config.Problems(err)
	if len(ps) == 0 {
		fmt.Fprintln(w, err)
		return
	}
	for _, p := range ps {
		fmt.Fprintln(w, p.Error())
	}
}

func cmdValidate(args []string, stdout io.Writer) error {
	fs, path := configFlags("validate")
	fs.SetOutput(stdout)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *path == "" {
		return usageError{fmt.Errorf("--config is required")}
	}
	cfg, err := config.Load(config.Source{Path: *path, Flags: fs, Check: app.Check})
	if err != nil {
		printProblems(stdout, err)
		n := len(config.Problems(err))
		if n == 0 {
			n = 1
		}
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", *path, n)
		return errReported
	}
	fmt.Fprintf(stdout, "%s: ok (%d callbacks)\n", *path, len(cfg.Callbacks))
	return nil
}
