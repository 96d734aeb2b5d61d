// Command launchready runs the reconciliation pipeline: `launchready run` runs
// every stage in one process; each stage also runs alone (`launchready ingest`,
// `cdc`, `reconcile`, `audit`, `sink`). See `launchready help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
)

// command is one subcommand. Files of this package register theirs in init.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: launchready <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nEvery command takes the settings as flags (e.g. --kafka-brokers) or LR_* environment variables;\n`launchready <command> -h` lists them.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "launchready: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	app.TuneRuntime()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "launchready %s: %s\n", os.Args[1], strings.ReplaceAll(err.Error(), "\n", "\n  "))
		os.Exit(1)
	}
}

// loadConfig parses the settings of a command: environment, then flags, then
// Validate for what the command needs. extra registers command-specific flags.
func loadConfig(name string, args []string, needs config.Need, extra func(*flag.FlagSet)) (*config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("launchready "+name, flag.ContinueOnError)
	if extra != nil {
		extra(fs)
	}
	cfg, err := config.Load(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.Validate(needs); err != nil {
		return nil, nil, fmt.Errorf("invalid settings:\n%w", err)
	}
	return cfg, fs, nil
}

// logger is the process logger for cfg; it is also set as slog's default.
func newLogger(cfg *config.Config) *obs.Logger {
	l := obs.NewLogger(os.Stderr, cfg.LogLevel)
	obs.SetDefault(l)
	return l
}
