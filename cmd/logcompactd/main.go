// Command logcompactd watches log directories, predicts their growth and (from
// the compaction and archival issues on) merges and archives closed segments.
// This file only parses flags, builds the logger and wires the daemon package.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/control"
	lcd "github.com/logcompactd/logcompactd/internal/daemon"
	"github.com/logcompactd/logcompactd/internal/logging"
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
		Short: "print streams, segments, growth, predictions, priorities and the actions decided; changes nothing",
		Long: "plan shows the running daemon's last pass when a daemon answers on its control socket\n" +
			"(<state_dir>/control.sock), and says so with its pid; with no daemon it makes one pass\n" +
			"of its own, without saving, merging or archiving anything, and says that.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmdPlan(g, asJSON, stdout, stderr) },
	}
	planCmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (see README)")
	var strict, configOnly bool
	checkCmd := &cobra.Command{Use: "check", Short: "validate the config and what it names on this host; changes nothing",
		Long: "check loads the config as run would, then checks the host: each cold_dir exists and is usable,\n" +
			"the metrics textfile's dir is writable. It warns (names and mtimes that disagree, metrics served\n" +
			"beyond loopback, a managed dir not there yet). Exit 0: usable; 2: the config or the host cannot work\n" +
			"(with --strict, also any warning).", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmdCheck(g, strict, configOnly, stdout, stderr) }}
	checkCmd.Flags().BoolVar(&strict, "strict", false, "warnings fail too (exit 2): what the package's postinst uses")
	checkCmd.Flags().BoolVar(&configOnly, "config-only", false,
		"validate the config as run does at start, nothing on the host (the unit's ExecStartPre: a cold tier not mounted yet must not stop the daemon)")
	var since, until, to string
	catCmd := &cobra.Command{Use: "cat STREAM",
		Short: "print a stream's lines in order: its archives (cold dir or bucket), then hot, decompressed; changes nothing",
		Long: "cat reads the stream's archives in time order (archives keep their segment's mtime), then its hot\n" +
			"segments in the stream's order, decompressing, and writes them to stdout. --since and --until take\n" +
			"RFC 3339 times or durations ago (90m) and select whole files by their mtime.", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return cmdCat(g, args[0], since, until, stdout) }}
	restoreCmd := &cobra.Command{Use: "restore STREAM --to DIR",
		Short: "write a stream's archives, decompressed, into DIR under their names and mtimes; never replaces a file",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return cmdRestore(g, args[0], to, since, until, stdout) }}
	for _, c := range []*cobra.Command{catCmd, restoreCmd} {
		c.Flags().StringVar(&since, "since", "", "only files modified at or after this (RFC 3339, or a duration ago)")
		c.Flags().StringVar(&until, "until", "", "only files that begin before this (RFC 3339, or a duration ago)")
	}
	restoreCmd.Flags().StringVar(&to, "to", "", "the directory to write into (must exist)")
	_ = restoreCmd.MarkFlagRequired("to")
	var statusJSON bool
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "ask the running daemon how it is: last pass, streams, jobs, cold tiers, journal; changes nothing",
		Long: "status asks the daemon that holds the state dir, over its control socket (<state_dir>/control.sock).\n" +
			"It exits 1 when no daemon answers.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmdStatus(g, statusJSON, stdout) },
	}
	statusCmd.Flags().BoolVar(&statusJSON, "json", false, "print one JSON object (see README)")
	root.AddCommand(
		&cobra.Command{Use: "run", Short: "run the daemon in the foreground (the default): merges, archives and deletes merged or archived inputs in the managed dirs",
			Long: "run watches the configured streams and acts on what each pass decides. It serves\n" +
				"plan, status and /metrics on <state_dir>/control.sock; SIGHUP reloads the config,\n" +
				"SIGTERM stops running jobs at a safe point.", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return cmdRun(g, stderr) }},
		&cobra.Command{Use: "once", Short: "one pass: recover, scan, merge and archive what it decides, save growth history, log a summary, exit",
			Long: "once changes the managed dirs as run would: it finishes unfinished operations, merges,\n" +
				"archives and deletes archived or merged inputs. It ends with one summary line.", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return cmdOnce(g, stderr) }},
		planCmd,
		statusCmd,
		catCmd,
		restoreCmd,
		checkCmd,
		&cobra.Command{Use: "version", Short: "print the version; changes nothing", Args: cobra.NoArgs,
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

// loadConfigFile loads and checks a config file (a variable for the test that
// counts the loads).
var loadConfigFile = config.Load

func loadConfig(g *globals) (*config.Config, error) {
	cfg, err := loadConfigFile(g.configPath)
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

func setup(g *globals, stderr io.Writer) (*config.Config, *zap.Logger, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(g, cfg, stderr)
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

// newLogger builds the logger cfg (with the flags) asks for.
func newLogger(g *globals, cfg *config.Config, stderr io.Writer) (*zap.Logger, error) {
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		src := cfg.File + ": log_level/log_format"
		if g.logLevel != "" || g.logFormat != "" {
			src = "--log-level/--log-format"
		}
		return nil, usageError{fmt.Errorf("%s: %w", src, err)}
	}
	return log, nil
}

func notify(state string) { _, _ = daemon.SdNotify(false, state) }

// withDaemon loads the config, builds the logger, opens the daemon, runs fn and
// closes everything.
func withDaemon(g *globals, stderr io.Writer, o lcd.Options, fn func(*lcd.Daemon) error) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	return withConfig(g, cfg, stderr, o, fn)
}

// withConfig is withDaemon for a config already loaded: loading one checks
// every managed directory on disk (at 1,000 directories a seventh of a fresh
// plan), so a command loads it once.
func withConfig(g *globals, cfg *config.Config, stderr io.Writer, o lcd.Options, fn func(*lcd.Daemon) error) error {
	log, err := newLogger(g, cfg, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	o.Logger = log
	o.Version = version
	d, err := lcd.Open(cfg, o)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(d)
}

// runGCPercent is the GC target of `run` unless GOGC is set. The daemon's live
// set is long-lived (per segment: the scanner's segment, which the snapshot
// classifies in place, the growth state, the name; ~250 bytes) and a quiet pass makes almost no
// garbage, so collections are rare either way; what the target decides is the
// headroom above the live set, which Go's default (100) makes as large as the
// live set itself. With 25, 100,000 idle segments sat at 74-86 MiB instead of
// 94-100 MiB (scripts/bench-idle.sh, when the live set was ~470 B/segment).
const runGCPercent = 25

func cmdRun(g *globals, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(runGCPercent)
	}
	o := lcd.Options{Notify: notify}
	if wd, err := daemon.SdWatchdogEnabled(false); err == nil && wd > 0 {
		o.Watchdog = wd
	}
	if os.Getenv("LOGCOMPACTD_TEST_HOOKS") == "1" {
		// Tests only: SIGUSR2 stalls the main loop, to prove the watchdog notices.
		stall := make(chan os.Signal, 1)
		signal.Notify(stall, syscall.SIGUSR2)
		ch := make(chan struct{})
		go func() { <-stall; close(ch) }()
		o.Stall = ch
	}
	return withDaemon(g, stderr, o, func(d *lcd.Daemon) error {
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
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	body, err := askDaemon(cfg, "/v1/plan")
	switch {
	case err == nil:
		return show(body, asJSON, &lcd.Report{}, "plan", stdout)
	case !errors.Is(err, control.ErrNoDaemon):
		return err // a daemon runs but cannot be asked: a second computation could disagree with it
	}
	var r *lcd.Report
	if err := withConfig(g, cfg, stderr, lcd.Options{ReadOnly: true}, func(d *lcd.Daemon) error {
		r = d.Plan()
		return nil
	}); err != nil {
		return err
	}
	// The daemon is closed: its scan, growth state and snapshot (at 100,000
	// segments three quarters of the heap) are garbage now, and collected
	// before the report's encoding makes more; left to the GC's pace, the
	// heap grew to twice their size while the report was written.
	runtime.GC()
	if asJSON {
		return r.WriteJSON(stdout)
	}
	return r.WriteTable(stdout)
}

// askDaemon asks the daemon holding cfg's state dir for path.
func askDaemon(cfg *config.Config, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return control.Get(ctx, control.SocketPath(cfg.StateDir), path)
}

func cmdStatus(g *globals, asJSON bool, stdout io.Writer) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	body, err := askDaemon(cfg, "/v1/status")
	if errors.Is(err, control.ErrNoDaemon) {
		return fmt.Errorf("no daemon is running for %s: nothing answers on %s", cfg.File, control.SocketPath(cfg.StateDir))
	}
	if err != nil {
		return err
	}
	return show(body, asJSON, &lcd.Status{}, "status", stdout)
}

// show prints a daemon's JSON answer as it came (--json), or decoded into v
// as v's table.
func show(body []byte, asJSON bool, v interface{ WriteTable(io.Writer) error }, what string, stdout io.Writer) error {
	if asJSON {
		_, err := stdout.Write(body)
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the daemon's %s: %w", what, err)
	}
	return v.WriteTable(stdout)
}

func cmdCheck(g *globals, strict, configOnly bool, stdout, stderr io.Writer) error {
	cfg, log, err := setup(g, io.Discard) // the log settings are checked as run would use them
	if err != nil {
		return err
	}
	_ = log.Sync()
	if configOnly {
		fmt.Fprintf(stdout, "%s: config ok (%d streams)\n", cfg.File, len(cfg.Streams))
		return nil
	}
	problems, warnings := lcd.Check(cfg)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", cfg.File, w)
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: error: %s\n", cfg.File, p)
	}
	switch {
	case len(problems) > 0:
		return usageError{fmt.Errorf("%s: %d problems: the daemon could not do its work", cfg.File, len(problems))}
	case strict && len(warnings) > 0:
		return usageError{fmt.Errorf("%s: %d warnings (--strict)", cfg.File, len(warnings))}
	}
	fmt.Fprintf(stdout, "%s: ok (%d streams)\n", cfg.File, len(cfg.Streams))
	return nil
}

// configAndWindow loads the config and parses --since and --until (cat, restore).
func configAndWindow(g *globals, since, until string) (*config.Config, lcd.Window, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, lcd.Window{}, err
	}
	w, err := window(since, until)
	return cfg, w, err
}

// window parses --since and --until: RFC 3339, or a duration ago.
func window(since, until string) (lcd.Window, error) {
	var w lcd.Window
	parse := func(flag, v string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, nil
		}
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return time.Now().Add(-d), nil
		}
		return time.Time{}, usageError{fmt.Errorf("--%s %q: want an RFC 3339 time (2026-12-02T10:00:00Z) or a duration ago (90m)", flag, v)}
	}
	var err error
	if w.Since, err = parse("since", since); err != nil {
		return w, err
	}
	w.Until, err = parse("until", until)
	return w, err
}

func cmdCat(g *globals, stream, since, until string, stdout io.Writer) error {
	cfg, w, err := configAndWindow(g, since, until)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(stdout, 256<<10)
	if err := lcd.Cat(context.Background(), cfg, stream, w, bw); err != nil {
		return err
	}
	return bw.Flush()
}

func cmdRestore(g *globals, stream, to, since, until string, stdout io.Writer) error {
	cfg, w, err := configAndWindow(g, since, until)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(to); err != nil || !fi.IsDir() {
		return usageError{fmt.Errorf("--to %s: not a directory (%v)", to, err)}
	}
	names, err := lcd.Restore(context.Background(), cfg, stream, to, w)
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return err
}
