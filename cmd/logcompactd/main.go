// Command logcompactd watches log directories, predicts their growth and (from
// the compaction and archival issues on) merges and archives closed segments.
// This file only parses flags, builds the logger and wires the daemon package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/logcompactd/logcompactd/internal/config"
	lcd "github.com/logcompactd/logcompactd/internal/daemon"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

// Exit codes (SPEC §11).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

type usageError struct{ error }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type globals struct {
	configPath string
	logLevel   string
	logFormat  string
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := &cobra.Command{
		Use:           "logcompactd",
		Short:         "Predictive, load-aware compaction and archival of log segments",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmdRun(g, stderr) },
	}
	def := os.Getenv("LOGCOMPACTD_CONFIG")
	if def == "" {
		def = config.DefaultPath
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", def, "config file (env LOGCOMPACTD_CONFIG)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "debug|info|warn|error (overrides log_level)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "", "auto|journal|console|json (overrides log_format)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetOut(stdout)
	root.SetErr(stderr)

	var asJSON bool
	planCmd := &cobra.Command{
		Use:   "plan",
		Short: "print streams, segments, growth, predictions, priorities and the actions a pass would take; changes nothing",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmdPlan(g, asJSON, stdout, stderr) },
	}
	planCmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (see README)")
	root.AddCommand(
		&cobra.Command{Use: "run", Short: "run the daemon in the foreground (the default)", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return cmdRun(g, stderr) }},
		&cobra.Command{Use: "once", Short: "scan, update growth history, plan and log once, then exit", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return cmdOnce(g, stderr) }},
		planCmd,
		&cobra.Command{Use: "check", Short: "validate the config and exit", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := loadConfig(g)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s: ok (%d streams)\n", cfg.File, len(cfg.Streams))
				return nil
			}},
		&cobra.Command{Use: "version", Short: "print the version", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				fmt.Fprintf(stdout, "logcompactd %s\n", version)
				return nil
			}},
	)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "logcompactd: %v\n", err)
	var ce *config.Error
	var ue usageError
	switch {
	case errors.As(err, &ce), errors.As(err, &ue), isCobraUsage(err):
		return exitUsage
	}
	return exitRuntime
}

// isCobraUsage recognises cobra's own argument errors (unknown command, extra args).
func isCobraUsage(err error) bool {
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument"} {
		if strings.Contains(err.Error(), p) {
			return true
		}
	}
	return false
}

func loadConfig(g *globals) (*config.Config, error) {
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, err
	}
	if g.logLevel != "" {
		cfg.LogLevel = g.logLevel
	}
	if g.logFormat != "" {
		cfg.LogFormat = g.logFormat
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, stderr io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil || cfg.LogLevel == "" {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.LogLevel)}
	}
	format := cfg.LogFormat
	switch format {
	case "auto":
		format = "json"
		if f, ok := stderr.(*os.File); ok && isTerminal(f) {
			format = "console"
		}
	case "journal":
		// Native journal fields arrive with the systemd issue; until then JSON on
		// stderr, which journald stores as the message.
		format = "json"
	case "console", "json":
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want auto, journal, console or json", format)}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(stderr), lvl)), nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func setup(g *globals, stderr io.Writer) (*config.Config, *zap.Logger, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

func notify(state string) { _, _ = daemon.SdNotify(false, state) }

// withDaemon loads the config, builds the logger, opens the daemon, runs fn and
// closes everything.
func withDaemon(g *globals, stderr io.Writer, o lcd.Options, fn func(*lcd.Daemon) error) error {
	cfg, log, err := setup(g, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	o.Logger = log
	d, err := lcd.Open(cfg, o)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(d)
}

func cmdRun(g *globals, stderr io.Writer) error {
	return withDaemon(g, stderr, lcd.Options{Notify: notify}, func(d *lcd.Daemon) error {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
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
		return d.Run(ctx, reload, func() (*config.Config, error) { return loadConfig(g) })
	})
}

func cmdOnce(g *globals, stderr io.Writer) error {
	return withDaemon(g, stderr, lcd.Options{}, func(d *lcd.Daemon) error {
		_, err := d.Once()
		return err
	})
}

func cmdPlan(g *globals, asJSON bool, stdout, stderr io.Writer) error {
	return withDaemon(g, stderr, lcd.Options{ReadOnly: true}, func(d *lcd.Daemon) error {
		r := d.Plan()
		if asJSON {
			return r.WriteJSON(stdout)
		}
		return r.WriteTable(stdout)
	})
}
