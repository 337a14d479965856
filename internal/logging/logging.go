// Package logging builds the daemon's zap logger: console on a terminal, JSON
// otherwise, and native journald records (structured fields, PRIORITY from the
// level) under systemd or with --log-format journal.
package logging

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// Sender sends one journal record; journal.Send in production.
type Sender func(message string, priority journal.Priority, vars map[string]string) error

// New returns a logger for level (debug|info|warn|error) and format
// (auto|journal|console|json). auto means journal when stderr is connected to the
// journal (JOURNAL_STREAM), console on a terminal, else JSON.
func New(level, format string, stderr io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil || level == "" {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	if format == "auto" {
		format = "json"
		if f, ok := stderr.(*os.File); ok {
			if isTerminal(f) {
				format = "console"
			}
			if ok, _ := journal.StderrIsJournalStream(); ok && f == os.Stderr {
				format = "journal"
			}
		}
	}
	switch format {
	case "journal":
		return zap.New(NewJournalCore(lvl, journal.Send)), nil
	case "console", "json":
	default:
		return nil, fmt.Errorf("log format %q: want auto, journal, console or json", format)
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

// journalCore writes every entry as one journal record: MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER, and each zap field as an upper-case journal field
// (stream -> STREAM, duration_ms -> DURATION_MS); lists and objects as JSON.
type journalCore struct {
	zapcore.LevelEnabler
	fields []zapcore.Field
	send   Sender
}

// NewJournalCore returns a zap core that sends records with send.
func NewJournalCore(enab zapcore.LevelEnabler, send Sender) zapcore.Core {
	return &journalCore{LevelEnabler: enab, send: send}
}

func (c *journalCore) With(fs []zapcore.Field) zapcore.Core {
	return &journalCore{LevelEnabler: c.LevelEnabler, send: c.send, fields: append(append([]zapcore.Field{}, c.fields...), fs...)}
}

func (c *journalCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *journalCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	vars := map[string]string{"SYSLOG_IDENTIFIER": "logcompactd"}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vars[FieldName(k)] = value(enc.Fields[k])
	}
	return c.send(e.Message, Priority(e.Level), vars)
}

func (c *journalCore) Sync() error { return nil }

// Priority maps a zap level to a syslog priority.
func Priority(l zapcore.Level) journal.Priority {
	switch {
	case l <= zapcore.DebugLevel:
		return journal.PriDebug
	case l == zapcore.InfoLevel:
		return journal.PriInfo
	case l == zapcore.WarnLevel:
		return journal.PriWarning
	case l == zapcore.ErrorLevel:
		return journal.PriErr
	}
	return journal.PriCrit
}

// FieldName turns a zap key into a valid journal field name: upper case, only
// A-Z, 0-9 and _, not starting with _ or a digit.
func FieldName(k string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(k) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "F_" + s
	}
	return s
}

func value(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case fmt.Stringer:
		return x.String()
	case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return fmt.Sprint(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
