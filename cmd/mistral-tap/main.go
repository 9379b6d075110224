// Command mistral-tap is a sidecar reverse proxy for OpenStack Mistral's
// REST API that turns workflow and task state changes into webhooks.
//
//	mistral-tap run --config mistral-tap.yaml
//	mistral-tap demo
//	mistral-tap validate --config mistral-tap.yaml
//	mistral-tap explain --config mistral-tap.yaml --workflow deploy_app --event TASK_FAILED
//	mistral-tap deliveries list|replay ...
//	mistral-tap store check|reset ...
//	mistral-tap listeners add|list|get|delete ...
//	mistral-tap version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `mistral-tap: webhooks for OpenStack Mistral, as a sidecar proxy

Usage:
  mistral-tap run --config FILE          proxy, watch and deliver (in front of a real Mistral)
  mistral-tap demo [--keep]              fake engine + proxy + console receiver, events in seconds
  mistral-tap validate --config FILE     check a config; print every problem with its position
  mistral-tap explain --config FILE ...  which callbacks an event would reach, and why not the others
  mistral-tap deliveries list|replay ... inspect and replay the durable outbox (also while running)
  mistral-tap store check|reset ...      check the state database, or move a lost/corrupt one aside
  mistral-tap listeners add|list|get|delete ...  runtime listeners through a running proxy's /v2/listeners
  mistral-tap version

Run 'mistral-tap COMMAND --help' for a command's flags.
`

// run dispatches a subcommand and returns the process exit code: 0 on
// success, 1 on failure, 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "validate":
		err = cmdValidate(args[1:], stdout)
	case "explain":
		err = cmdExplain(args[1:], stdout)
	case "deliveries":
		err = cmdDeliveries(ctx, args[1:], stdout)
	case "store":
		err = cmdStore(ctx, args[1:], stdout)
	case "listeners":
		err = cmdListeners(ctx, args[1:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "mistral-tap", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "mistral-tap: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "mistral-tap %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintf(stderr, "mistral-tap %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ error }

// errReported means the command already printed what went wrong.
var errReported = errors.New("reported")
