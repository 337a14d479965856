package logging

import (
	"errors"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type record struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func TestJournalRecordsCarryStructuredFields(t *testing.T) {
	var got []record
	core := NewJournalCore(zapcore.DebugLevel, func(m string, p journal.Priority, v map[string]string) error {
		got = append(got, record{m, p, v})
		return nil
	})
	log := zap.New(core).With(zap.String("stream", "app"))
	log.Info("merged", zap.String("action", "compact"), zap.Strings("segments", []string{"a-1.log", "a-2.log"}),
		zap.ByteString("segment", []byte("a-\xff.log")), zap.Int64("bytes", 1234), zap.Int64("duration_ms", 56),
		zap.Duration("retry_in", time.Second), zap.Error(errors.New("boom")))
	log.Warn("w")
	log.Error("e")
	log.Debug("d")
	r := got[0]
	want := map[string]string{"STREAM": "app", "ACTION": "compact", "SEGMENTS": `["a-1.log","a-2.log"]`,
		"SEGMENT": "a-\xff.log", "BYTES": "1234", "DURATION_MS": "56", "RETRY_IN": "1s", "ERROR": "boom",
		"SYSLOG_IDENTIFIER": "logcompactd"}
	for k, v := range want {
		if r.vars[k] != v {
			t.Errorf("%s = %q, want %q", k, r.vars[k], v)
		}
	}
	if r.msg != "merged" || r.pri != journal.PriInfo {
		t.Fatalf("record %+v", r)
	}
	if got[1].pri != journal.PriWarning || got[2].pri != journal.PriErr || got[3].pri != journal.PriDebug {
		t.Fatalf("priorities %v %v %v", got[1].pri, got[2].pri, got[3].pri)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"stream": "STREAM", "duration_ms": "DURATION_MS", "a.b-c": "A_B_C", "_x": "X", "9lives": "F_9LIVES"} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewRejectsBadLevelAndFormat(t *testing.T) {
	if _, err := New("loud", "json", nil); err == nil {
		t.Fatal("bad level accepted")
	}
	if _, err := New("info", "xml", nil); err == nil {
		t.Fatal("bad format accepted")
	}
}
