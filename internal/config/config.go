// Package config loads and validates /etc/logcompactd.yaml.
//
// Every error names the file, the key and, where the YAML says it, the line:
//
//	/etc/logcompactd.yaml:14: compaction.target_size: invalid size "12XB": ...
//
// Loading changes nothing on disk. It only reads the config file and stats the
// configured directories (to refuse world-writable ones).
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/logcompactd/logcompactd/internal/fsx"
)

// DefaultPath is where the daemon reads its config unless --config or
// LOGCOMPACTD_CONFIG say otherwise.
const DefaultPath = "/etc/logcompactd.yaml"

// Config is the validated configuration. Per-stream Compaction and Archive hold the
// effective values: the global section with the stream's overrides applied.
type Config struct {
	File         string        `mapstructure:"-"`
	StateDir     string        `mapstructure:"state_dir"`
	ScanInterval time.Duration `mapstructure:"scan_interval"`
	LogLevel     string        `mapstructure:"log_level"`
	LogFormat    string        `mapstructure:"log_format"`
	Growth       Growth        `mapstructure:"growth"`
	Load         LoadSettings  `mapstructure:"load"`
	Compaction   Compaction    `mapstructure:"compaction"`
	Archive      Archive       `mapstructure:"archive"`
	Metrics      Metrics       `mapstructure:"metrics"`
	Streams      []Stream      `mapstructure:"-"`
}

// Metrics says where Prometheus metrics go besides the control socket.
type Metrics struct {
	Listen   string `mapstructure:"listen"`   // host:port for /metrics over TCP; "" = off (default)
	Textfile string `mapstructure:"textfile"` // absolute *.prom path rewritten atomically each pass; "" = off
}

// Growth configures the growth tracker.
type Growth struct {
	Window  time.Duration `mapstructure:"window"`  // samples older than this are dropped; default 30m
	Alpha   float64       `mapstructure:"alpha"`   // weight of the newest interval, (0,1]; default 0.3
	Horizon time.Duration `mapstructure:"horizon"` // predicted_size horizon; default archive.time_to_archive
}

// LoadSettings configures the system load probe.
type LoadSettings struct {
	Enabled    bool          `mapstructure:"enabled"`     // false: L is always 0; default true
	Interval   time.Duration `mapstructure:"interval"`    // sampling period; default 5s
	PauseAbove float64       `mapstructure:"pause_above"` // no new job at L >= this; default 0.85
}

// Compaction configures merging; any key may be overridden per stream.
type Compaction struct {
	Workers      int           `mapstructure:"workers"`       // concurrent jobs; default 2
	Threshold    float64       `mapstructure:"threshold"`     // compact when priority >= this; default 1.0
	MinSegments  int           `mapstructure:"min_segments"`  // eligible segments needed; default 3
	TargetSize   Size          `mapstructure:"target_size"`   // consolidated segment size; default 128MiB
	GrowthRef    Rate          `mapstructure:"growth_ref"`    // growth that doubles priority; default 1MiB/min
	Quiesce      time.Duration `mapstructure:"quiesce"`       // unmodified this long = closed; default 5m
	MaxRate      Rate          `mapstructure:"max_rate"`      // copy budget, 0 = unlimited; default 64MiB/s
	Compress     string        `mapstructure:"compress"`      // none|gzip|zstd; default none
	KeepInactive time.Duration `mapstructure:"keep_inactive"` // delay before deleting inputs; default 0s
}

// Archive configures predictive archival; any key may be overridden per stream.
type Archive struct {
	ColdDir       string        `mapstructure:"cold_dir"`        // absolute; default /var/log/cold
	TimeToArchive time.Duration `mapstructure:"time_to_archive"` // prediction horizon H; default 6h
	MaxHotBytes   Size          `mapstructure:"max_hot_bytes"`   // per-stream cap; default 10GiB
	LowWatermark  float64       `mapstructure:"low_watermark"`   // archive down to cap × this; default 0.8
	MaxAge        time.Duration `mapstructure:"max_age"`         // archive closed segments older; 0 = off
	KeepFree      Free          `mapstructure:"keep_free"`       // filesystem free-space floor; default 5%
	UrgentWithin  time.Duration `mapstructure:"urgent_within"`   // breach this close overrides load; default 15m
	Compress      string        `mapstructure:"compress"`        // none|gzip|zstd; default zstd
	ColdMaxAge    time.Duration `mapstructure:"cold_max_age"`    // delete archives older than this; 0 = keep
	ColdMaxBytes  Size          `mapstructure:"cold_max_bytes"`  // keep at most this per stream in cold; 0 = no limit
	S3            S3            `mapstructure:"s3"`              // when cold_dir is s3://BUCKET[/PREFIX]
}

// S3 configures an object-store cold tier (cold_dir s3://BUCKET[/PREFIX]).
// Credentials come from the standard AWS chain only, never from the config.
type S3 struct {
	Endpoint     string        `mapstructure:"endpoint"`      // "" = AWS for the region; else http(s)://host[:port]
	Region       string        `mapstructure:"region"`        // default us-east-1
	PathStyle    bool          `mapstructure:"path_style"`    // bucket in the path, not the host (most S3-compatible servers)
	StorageClass string        `mapstructure:"storage_class"` // "" = the bucket's default
	PartSize     Size          `mapstructure:"part_size"`     // multipart above this; default 64MiB, at least 5MiB
	Timeout      time.Duration `mapstructure:"timeout"`       // deadline of one request; default 2m
}

// ColdURL is a parsed s3:// cold_dir.
type ColdURL struct{ Bucket, Prefix string }

// ParseColdURL parses s3://BUCKET[/PREFIX] ({host} and {machine_id} already
// expanded). ok is false for a local path.
func ParseColdURL(s string) (u ColdURL, ok bool, err error) {
	rest, found := strings.CutPrefix(s, "s3://")
	if !found {
		return u, false, nil
	}
	u.Bucket, u.Prefix, _ = strings.Cut(rest, "/")
	u.Prefix = strings.TrimSuffix(u.Prefix, "/")
	if !validBucket(u.Bucket) {
		return u, true, fmt.Errorf("%q: bucket %q is not a valid S3 bucket name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)", s, u.Bucket)
	}
	for _, part := range strings.Split(u.Prefix, "/") {
		if u.Prefix != "" && (part == "" || part == "." || part == "..") {
			return u, true, fmt.Errorf("%q: prefix %q has an empty, . or .. component", s, u.Prefix)
		}
	}
	if strings.ContainsAny(u.Prefix, "{}\x00") {
		return u, true, fmt.Errorf("%q: prefix %q: only {host} and {machine_id} are expanded", s, u.Prefix)
	}
	return u, true, nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || ((r == '.' || r == '-') && i > 0 && i < len(b)-1)
		if !ok {
			return false
		}
	}
	return true
}

// expandCold replaces {host} and {machine_id} in an s3:// cold_dir.
func expandCold(s string) (string, error) {
	if !strings.HasPrefix(s, "s3://") {
		return s, nil
	}
	if strings.Contains(s, "{host}") {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("{host}: %w", err)
		}
		s = strings.ReplaceAll(s, "{host}", h)
	}
	if strings.Contains(s, "{machine_id}") {
		b, err := os.ReadFile("/etc/machine-id")
		id := strings.TrimSpace(string(b))
		if err != nil || id == "" {
			return "", fmt.Errorf("{machine_id}: cannot read /etc/machine-id: %v", err)
		}
		s = strings.ReplaceAll(s, "{machine_id}", id)
	}
	return s, nil
}

// Stream is one configured stream with its effective settings.
type Stream struct {
	Name       string
	Dir        string
	Pattern    string
	Order      string // name|mtime
	Compaction Compaction
	Archive    Archive
}

// Error is a config error that names the file, the key and, when known, the line.
type Error struct {
	File string
	Key  string
	Line int
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func defaults(v *viper.Viper) {
	v.SetDefault("state_dir", "/var/lib/logcompactd")
	v.SetDefault("scan_interval", "30s")
	v.SetDefault("log_level", "info")
	v.SetDefault("log_format", "auto")
	v.SetDefault("growth.window", "30m")
	v.SetDefault("growth.alpha", 0.3)
	v.SetDefault("load.enabled", true)
	v.SetDefault("load.interval", "5s")
	v.SetDefault("load.pause_above", 0.85)
	v.SetDefault("compaction.workers", 2)
	v.SetDefault("compaction.threshold", 1.0)
	v.SetDefault("compaction.min_segments", 3)
	v.SetDefault("compaction.target_size", "128MiB")
	v.SetDefault("compaction.growth_ref", "1MiB/min")
	v.SetDefault("compaction.quiesce", "5m")
	v.SetDefault("compaction.max_rate", "64MiB/s")
	v.SetDefault("compaction.compress", "none")
	v.SetDefault("compaction.keep_inactive", "0s")
	v.SetDefault("archive.cold_dir", "/var/log/cold")
	v.SetDefault("archive.time_to_archive", "6h")
	v.SetDefault("archive.max_hot_bytes", "10GiB")
	v.SetDefault("archive.low_watermark", 0.8)
	v.SetDefault("archive.max_age", "0s")
	v.SetDefault("archive.keep_free", "5%")
	v.SetDefault("archive.urgent_within", "15m")
	v.SetDefault("archive.compress", "zstd")
	v.SetDefault("archive.cold_max_age", "0s")
	v.SetDefault("archive.cold_max_bytes", 0)
	v.SetDefault("archive.s3.region", "us-east-1")
	v.SetDefault("archive.s3.part_size", "64MiB")
	v.SetDefault("archive.s3.timeout", "2m")
}

// MaxFileBytes bounds the config file: a config is a few KiB; anything larger
// is a mistake (or an attack on memory) and refused before it is parsed.
const MaxFileBytes = 1 << 20

// Load reads, decodes and validates the config file at path. The file decides
// what a root daemon reads, moves and deletes, so it is refused unless it is a
// regular file owned by root or by the caller and writable by nobody else, and
// no larger than MaxFileBytes. It is opened without blocking: a FIFO, device or
// directory is an error at once.
func Load(path string) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	return Parse(path, data)
}

func readConfigFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("config is not a regular file (%s)", fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("config: cannot tell its owner")
	}
	if euid := os.Geteuid(); st.Uid != 0 && int(st.Uid) != euid {
		return nil, fmt.Errorf("config is owned by uid %d, not by root or uid %d: refusing it (it decides what this daemon moves and deletes)", st.Uid, euid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("config is writable by group or others (mode %#o): refusing it; chmod go-w", fi.Mode().Perm())
	}
	if fi.Size() > MaxFileBytes {
		return nil, fmt.Errorf("config is %d bytes, more than the %d a config may have", fi.Size(), MaxFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config is more than %d bytes", MaxFileBytes)
	}
	return data, nil
}

// Parse decodes and validates config data; file is used in error messages and to
// resolve nothing else (all paths in the config must be absolute).
func Parse(file string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	lines := map[string]int{}
	if err := checkKeys(&root, lines); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.File = file
		}
		return nil, err
	}
	fail := func(key string, err error) error {
		return &Error{File: file, Key: key, Line: lines[key], Err: err}
	}

	v := viper.New()
	v.SetConfigType("yaml")
	defaults(v)
	// The document parsed once above, not parsed again from the text.
	var doc map[string]any
	if err := root.Decode(&doc); err != nil {
		return nil, &Error{File: file, Err: fmt.Errorf("parse yaml: %w", err)}
	}
	if err := v.MergeConfigMap(doc); err != nil {
		return nil, &Error{File: file, Err: fmt.Errorf("parse yaml: %w", err)}
	}
	var fc struct {
		Config  `mapstructure:",squash"`
		Streams []any `mapstructure:"streams"`
	}
	if err := v.Unmarshal(&fc, decoderOptions); err != nil {
		key, err := decodeErrKey(err)
		return nil, fail(key, err)
	}
	cfg := &fc.Config
	cfg.File = file
	if !v.IsSet("growth.horizon") {
		cfg.Growth.Horizon = cfg.Archive.TimeToArchive
	}

	var err error
	if cfg.Archive.ColdDir, err = expandCold(cfg.Archive.ColdDir); err != nil {
		return nil, fail("archive.cold_dir", err)
	}
	for i, r := range fc.Streams {
		prefix := fmt.Sprintf("streams[%d]", i)
		s, err := decodeStream(cfg, r)
		if err != nil {
			key, err := decodeErrKey(err)
			if key != "" {
				key = prefix + "." + key
			} else {
				key = prefix
			}
			return nil, fail(key, err)
		}
		if s.Archive.ColdDir, err = expandCold(s.Archive.ColdDir); err != nil {
			return nil, fail(prefix+".archive.cold_dir", err)
		}
		cfg.Streams = append(cfg.Streams, s)
	}
	if err := validate(cfg); err != nil {
		var ve *Error
		if errors.As(err, &ve) {
			ve.File = file
			ve.Line = lines[ve.Key]
		}
		return nil, err
	}
	return cfg, nil
}

// yamlLine is the line number the YAML parser puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError makes a YAML syntax error read "file:line: parse yaml: what".
func yamlError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Err: fmt.Errorf("parse yaml: %s", msg[len(m[0]):])}
	}
	return &Error{File: file, Err: fmt.Errorf("parse yaml: %s", strings.TrimPrefix(msg, "yaml: "))}
}

// GlobalOnly are the keys a stream may not override: the worker pool and the
// copy budget are shared by every stream.
var GlobalOnly = []string{"workers", "max_rate"}

type rawStream struct {
	Name       string         `mapstructure:"name"`
	Dir        string         `mapstructure:"dir"`
	Pattern    string         `mapstructure:"pattern"`
	Order      string         `mapstructure:"order"`
	Compaction map[string]any `mapstructure:"compaction"`
	Archive    map[string]any `mapstructure:"archive"`
}

func decodeStream(cfg *Config, r any) (Stream, error) {
	var rs rawStream
	if err := decode(r, &rs); err != nil {
		return Stream{}, err
	}
	s := Stream{Name: rs.Name, Dir: rs.Dir, Pattern: rs.Pattern, Order: rs.Order,
		Compaction: cfg.Compaction, Archive: cfg.Archive}
	if s.Order == "" {
		s.Order = "name"
	}
	for _, k := range GlobalOnly {
		if _, set := rs.Compaction[k]; set {
			return Stream{}, &keyedErr{key: "compaction." + k, err: errors.New(
				"is global only (the worker pool and the copy budget are shared by all streams): set it under the top-level compaction")}
		}
	}
	if err := decode(rs.Compaction, &s.Compaction); err != nil {
		return Stream{}, prefixDecodeErr("compaction", err)
	}
	if err := decode(rs.Archive, &s.Archive); err != nil {
		return Stream{}, prefixDecodeErr("archive", err)
	}
	return s, nil
}

// decode applies in onto out (fields absent from in keep their value), strictly:
// unknown keys and values of the wrong type are errors.
func decode(in, out any) error {
	if m, ok := in.(map[string]any); in == nil || ok && len(m) == 0 {
		// Nothing to apply. A stream without its own compaction or archive
		// keys has a nil map here, which mapstructure still walked field by
		// field with every hook: a third of loading a 1,000-stream config.
		return nil
	}
	dc := &mapstructure.DecoderConfig{Result: out, ErrorUnused: true, DecodeHook: hooks()}
	d, err := mapstructure.NewDecoder(dc)
	if err != nil {
		return err
	}
	return d.Decode(in)
}

func decoderOptions(dc *mapstructure.DecoderConfig) {
	dc.DecodeHook = hooks()
	dc.WeaklyTypedInput = false
	dc.ErrorUnused = true
}

type keyedErr struct {
	key string
	err error
}

func (k *keyedErr) Error() string { return k.key + ": " + k.err.Error() }
func (k *keyedErr) Unwrap() error { return k.err }

func prefixDecodeErr(prefix string, err error) error {
	key, inner := decodeErrKey(err)
	if key == "" {
		return &keyedErr{key: prefix, err: inner}
	}
	return &keyedErr{key: prefix + "." + key, err: inner}
}

// decodeErrKey extracts the key a mapstructure error is about, and the error itself.
func decodeErrKey(err error) (string, error) {
	var ke *keyedErr
	if errors.As(err, &ke) {
		return ke.key, ke.err
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return de.Name(), de.Unwrap()
	}
	return "", err
}

var (
	sizeType = reflect.TypeOf(Size(0))
	rateType = reflect.TypeOf(Rate(0))
	freeType = reflect.TypeOf(Free{})
	durType  = reflect.TypeOf(time.Duration(0))
	intType  = reflect.TypeOf(0)
)

// hooks converts YAML scalars into Size, Rate, Free and time.Duration, strictly.
func hooks() mapstructure.DecodeHookFuncType {
	return func(from, to reflect.Type, data any) (any, error) {
		switch to {
		case sizeType:
			switch x := data.(type) {
			case string:
				return ParseSize(x)
			case int:
				if x < 0 {
					return nil, fmt.Errorf("invalid size %d: negative", x)
				}
				return Size(x), nil
			}
			return nil, fmt.Errorf("invalid size %v: want bytes or a string such as 128MiB", data)
		case rateType:
			if x, ok := data.(string); ok {
				return ParseRate(x)
			}
			if x, ok := data.(int); ok && x == 0 {
				return Rate(0), nil
			}
			return nil, fmt.Errorf("invalid rate %v: want a string such as 1MiB/min", data)
		case freeType:
			switch x := data.(type) {
			case string:
				return ParseFree(x)
			case int:
				if x < 0 {
					return nil, fmt.Errorf("invalid free space %d: negative", x)
				}
				return Free{Bytes: Size(x)}, nil
			}
			return nil, fmt.Errorf("invalid free space %v: want a size or a percentage such as 5%%", data)
		case intType:
			if x, ok := data.(float64); ok && x != float64(int64(x)) {
				return nil, fmt.Errorf("invalid value %v: want a whole number", x)
			}
			return data, nil
		case durType:
			switch x := data.(type) {
			case string:
				return ParseDuration(x)
			case int:
				if x == 0 {
					return time.Duration(0), nil
				}
			}
			return nil, fmt.Errorf("invalid duration %v: want Go syntax such as 100ms, 90s, 6h", data)
		}
		return data, nil
	}
}

func enumErr(val string, allowed ...string) error {
	return fmt.Errorf("invalid value %q: want one of %s", val, strings.Join(allowed, ", "))
}

func oneOf(val string, allowed ...string) bool {
	for _, a := range allowed {
		if val == a {
			return true
		}
	}
	return false
}

func keyErr(key string, format string, args ...any) error {
	return &Error{Key: key, Err: fmt.Errorf(format, args...)}
}

// The smallest values the timing keys take: below them the daemon would spin
// (scan_interval: 1ns was 60,000 passes a second) or misjudge what is closed.
// They are small enough for tests that run in seconds.
const (
	MinScanInterval  = 10 * time.Millisecond
	MinLoadInterval  = 10 * time.Millisecond
	MinWindow        = 100 * time.Millisecond
	MinQuiesce       = 100 * time.Millisecond
	MinTimeToArchive = 100 * time.Millisecond
)

// validate checks ranges and the relations between paths.
func validate(c *Config) error {
	if !oneOf(c.LogLevel, "debug", "info", "warn", "error") {
		return &Error{Key: "log_level", Err: enumErr(c.LogLevel, "debug", "info", "warn", "error")}
	}
	if !oneOf(c.LogFormat, "auto", "journal", "console", "json") {
		return &Error{Key: "log_format", Err: enumErr(c.LogFormat, "auto", "journal", "console", "json")}
	}
	if c.ScanInterval < MinScanInterval {
		return keyErr("scan_interval", "must be at least %s, got %s", MinScanInterval, c.ScanInterval)
	}
	if c.Growth.Window < MinWindow {
		return keyErr("growth.window", "must be at least %s, got %s", MinWindow, c.Growth.Window)
	}
	if !(c.Growth.Alpha > 0 && c.Growth.Alpha <= 1) {
		return keyErr("growth.alpha", "must be within (0, 1], got %v", c.Growth.Alpha)
	}
	if c.Load.Interval < MinLoadInterval {
		return keyErr("load.interval", "must be at least %s, got %s", MinLoadInterval, c.Load.Interval)
	}
	if !(c.Load.PauseAbove > 0 && c.Load.PauseAbove <= 1) {
		return keyErr("load.pause_above", "must be within (0, 1], got %v", c.Load.PauseAbove)
	}
	if err := validateCompaction("compaction", c.Compaction); err != nil {
		return err
	}
	if err := validateArchive("archive", c.Archive); err != nil {
		return err
	}
	if err := validatePath("state_dir", c.StateDir); err != nil {
		return err
	}
	if _, err := os.Lstat(c.StateDir); err == nil {
		d, err := fsx.OpenDir(c.StateDir)
		if err != nil {
			return keyErr("state_dir", "%v", err)
		}
		d.Close()
	}
	if err := validateMetrics(c.Metrics); err != nil {
		return err
	}
	if len(c.Streams) == 0 {
		return keyErr("streams", "at least one stream is required")
	}
	names := map[string]int{}
	for i, s := range c.Streams {
		p := fmt.Sprintf("streams[%d]", i)
		if s.Name == "" {
			return keyErr(p+".name", "is required")
		}
		if strings.ContainsAny(s.Name, "/\x00") || s.Name == "." || s.Name == ".." {
			return keyErr(p+".name", "invalid name %q: must be usable as a directory name", s.Name)
		}
		if j, dup := names[s.Name]; dup {
			return keyErr(p+".name", "duplicate stream name %q (also streams[%d])", s.Name, j)
		}
		names[s.Name] = i
		if err := validatePath(p+".dir", s.Dir); err != nil {
			return err
		}
		if s.Pattern == "" {
			return keyErr(p+".pattern", "is required")
		}
		if strings.Contains(s.Pattern, "/") {
			return keyErr(p+".pattern", "invalid pattern %q: must not contain /", s.Pattern)
		}
		if _, err := filepath.Match(s.Pattern, ""); err != nil {
			return keyErr(p+".pattern", "invalid pattern %q: %v", s.Pattern, err)
		}
		if !oneOf(s.Order, "name", "mtime") {
			return &Error{Key: p + ".order", Err: enumErr(s.Order, "name", "mtime")}
		}
		if err := validateCompaction(p+".compaction", s.Compaction); err != nil {
			return err
		}
		if err := validateArchive(p+".archive", s.Archive); err != nil {
			return err
		}
	}
	return validateLayout(c)
}

func validateMetrics(m Metrics) error {
	if m.Listen != "" {
		host, port, err := net.SplitHostPort(m.Listen)
		if err != nil {
			return keyErr("metrics.listen", "want host:port (127.0.0.1:9467), got %q: %v", m.Listen, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return keyErr("metrics.listen", "port %q is not a number in 1..65535", port)
		}
		if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			return keyErr("metrics.listen", "host %q is not an IP address (or localhost)", host)
		}
	}
	if m.Textfile != "" {
		if err := validatePath("metrics.textfile", m.Textfile); err != nil {
			return err
		}
		if !strings.HasSuffix(m.Textfile, ".prom") {
			return keyErr("metrics.textfile", "%q must end in .prom (node_exporter's textfile collector reads only those)", m.Textfile)
		}
	}
	return nil
}

// MetricsExposed says whether metrics.listen serves beyond loopback ("" if it
// does not): check warns, as README does.
func (m Metrics) MetricsExposed() string {
	if m.Listen == "" {
		return ""
	}
	host, _, _ := net.SplitHostPort(m.Listen)
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return ""
	}
	return fmt.Sprintf("metrics.listen %s serves /metrics beyond this host: keep it behind a firewall", m.Listen)
}

func validateCompaction(k string, c Compaction) error {
	switch {
	case c.Workers < 1 || c.Workers > 256:
		return keyErr(k+".workers", "must be within 1..256, got %d", c.Workers)
	case !(c.Threshold > 0):
		return keyErr(k+".threshold", "must be greater than 0, got %v", c.Threshold)
	case c.MinSegments < 2:
		return keyErr(k+".min_segments", "must be at least 2, got %d", c.MinSegments)
	case c.TargetSize <= 0:
		return keyErr(k+".target_size", "must be greater than 0")
	case !(c.GrowthRef > 0):
		return keyErr(k+".growth_ref", "must be greater than 0")
	case c.MaxRate < 0:
		return keyErr(k+".max_rate", "must not be negative")
	case c.Quiesce < MinQuiesce:
		return keyErr(k+".quiesce", "must be at least %s, got %s (a writer's pause between two appends must not make its file look closed)", MinQuiesce, c.Quiesce)
	case c.KeepInactive < 0:
		return keyErr(k+".keep_inactive", "must not be negative")
	case !oneOf(c.Compress, "none", "gzip", "zstd"):
		return &Error{Key: k + ".compress", Err: enumErr(c.Compress, "none", "gzip", "zstd")}
	}
	return nil
}

func validateArchive(k string, a Archive) error {
	switch {
	case a.TimeToArchive < MinTimeToArchive:
		return keyErr(k+".time_to_archive", "must be at least %s, got %s", MinTimeToArchive, a.TimeToArchive)
	case a.MaxAge < 0 || a.UrgentWithin < 0 || a.ColdMaxAge < 0:
		return keyErr(k, "max_age, urgent_within and cold_max_age must not be negative")
	case a.MaxHotBytes <= 0:
		return keyErr(k+".max_hot_bytes", "must be greater than 0")
	case !(a.LowWatermark > 0 && a.LowWatermark <= 1):
		return keyErr(k+".low_watermark", "must be within (0, 1], got %v", a.LowWatermark)
	case !oneOf(a.Compress, "none", "gzip", "zstd"):
		return &Error{Key: k + ".compress", Err: enumErr(a.Compress, "none", "gzip", "zstd")}
	}
	if _, isS3, err := ParseColdURL(a.ColdDir); isS3 {
		if err != nil {
			return keyErr(k+".cold_dir", "%v", err)
		}
		switch {
		case a.ColdMaxAge > 0 || a.ColdMaxBytes > 0:
			return keyErr(k+".cold_max_age", "cold_max_age and cold_max_bytes do not apply to an s3:// cold_dir: use a lifecycle rule on the bucket (README)")
		case a.S3.PartSize < 5<<20:
			return keyErr(k+".s3.part_size", "must be at least 5MiB (the S3 minimum part), got %d bytes", int64(a.S3.PartSize))
		case a.S3.Timeout < time.Second:
			return keyErr(k+".s3.timeout", "must be at least 1s, got %s", a.S3.Timeout)
		case a.S3.Region == "":
			return keyErr(k+".s3.region", "is required")
		case a.S3.Endpoint != "" && !strings.HasPrefix(a.S3.Endpoint, "http://") && !strings.HasPrefix(a.S3.Endpoint, "https://"):
			return keyErr(k+".s3.endpoint", "%q: want http://HOST[:PORT] or https://HOST[:PORT]", a.S3.Endpoint)
		}
		return nil
	}
	return validatePath(k+".cold_dir", a.ColdDir)
}

func validatePath(key, p string) error {
	if p == "" {
		return keyErr(key, "is required")
	}
	if !filepath.IsAbs(p) {
		return keyErr(key, "path %q must be absolute", p)
	}
	if filepath.Clean(p) == "/" {
		return keyErr(key, "must not be /")
	}
	return nil
}

// within reports whether path p is dir or lies below it (both cleaned, absolute).
func within(p, dir string) bool {
	return withinClean(filepath.Clean(p), filepath.Clean(dir))
}

// withinClean is within for cleaned paths, without an allocation: the layout
// check compares every stream with every other (a million pairs at 1,000).
func withinClean(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || (len(p) > len(dir) && p[len(dir)] == '/' && strings.HasPrefix(p, dir))
}

// validateLayout refuses configs whose streams, cold dirs and state dir
// overlap. Each stream is compared only with the streams whose dir or cold
// dir is its own or above it (found by walking up its path in maps), and each
// distinct dir is checked on disk once: pairwise, 1,000 streams were two
// million comparisons and 2,000 opens of the same cold dir in every command.
func validateLayout(c *Config) error {
	dirs, colds := make([]string, len(c.Streams)), make([]string, len(c.Streams))
	byDir, byCold := map[string][]int{}, map[string][]int{}
	for i, s := range c.Streams {
		dirs[i], colds[i] = filepath.Clean(s.Dir), filepath.Clean(s.Archive.ColdDir)
		byDir[dirs[i]] = append(byDir[dirs[i]], i)
		byCold[colds[i]] = append(byCold[colds[i]], i)
	}
	// pair is every check between stream i and another stream j; it can fail
	// only for the j that containing finds.
	pair := func(k string, i, j int) error {
		s, o := c.Streams[i], c.Streams[j]
		ok := fmt.Sprintf("streams[%d]", j)
		if withinClean(dirs[i], colds[j]) {
			return keyErr(k+".dir", "dir %s is inside %s.archive.cold_dir %s", s.Dir, ok, o.Archive.ColdDir)
		}
		if i == j {
			return nil
		}
		if dirs[i] == dirs[j] && j < i && PatternsOverlap(s.Pattern, o.Pattern) {
			return keyErr(k+".pattern", "pattern %q overlaps %s.pattern %q in the same dir %s: a file would belong to two streams", s.Pattern, ok, o.Pattern, s.Dir)
		}
		if dirs[i] != dirs[j] && withinClean(dirs[i], dirs[j]) {
			// s.Dir is nested in o.Dir: its top component below o.Dir is an entry of o.Dir.
			rel, _ := filepath.Rel(dirs[j], dirs[i])
			top := strings.SplitN(rel, "/", 2)[0]
			if m, _ := filepath.Match(o.Pattern, top); m {
				return keyErr(k+".dir", "dir %s is nested in %s.dir %s and its entry %q matches that stream's pattern %q", s.Dir, ok, o.Dir, top, o.Pattern)
			}
		}
		return nil
	}
	checked := map[[2]string]bool{} // dirs found fine on disk, as managed ("dir") or cold ("cold")
	var opener fsx.Opener           // the directories above them are checked once
	defer opener.Close()
	onDisk := func(key, dir string, cold bool) error {
		kind := map[bool]string{false: "dir", true: "cold"}[cold]
		if checked[[2]string{kind, dir}] {
			return nil
		}
		if err := checkDirOnDisk(&opener, key, dir, cold); err != nil {
			return err
		}
		checked[[2]string{kind, dir}] = true
		return nil
	}
	for i, s := range c.Streams {
		k := fmt.Sprintf("streams[%d]", i)
		cold := s.Archive.ColdDir
		if js := containing(colds[i], byDir); len(js) > 0 {
			j := js[0]
			return keyErr(k+".archive.cold_dir", "cold dir %s is equal to or inside streams[%d].dir %s", cold, j, c.Streams[j].Dir)
		}
		js := append(containing(dirs[i], byCold), containing(dirs[i], byDir)...)
		slices.Sort(js)
		for _, j := range slices.Compact(js) {
			if err := pair(k, i, j); err != nil {
				return err
			}
		}
		if within(c.StateDir, s.Dir) {
			return keyErr("state_dir", "state dir %s is inside %s.dir %s", c.StateDir, k, s.Dir)
		}
		if within(c.StateDir, cold) || within(cold, c.StateDir) {
			return keyErr("state_dir", "state dir %s overlaps %s.archive.cold_dir %s", c.StateDir, k, cold)
		}
		if within(s.Dir, c.StateDir) {
			return keyErr(k+".dir", "dir %s is inside state_dir %s", s.Dir, c.StateDir)
		}
		if err := onDisk(k+".dir", s.Dir, false); err != nil {
			return err
		}
		if strings.HasPrefix(cold, "s3://") {
			continue
		}
		if err := onDisk(k+".archive.cold_dir", cold, true); err != nil {
			return err
		}
	}
	return nil
}

// containing returns, in ascending order, the indexes that idx files under p
// or under a directory above p (the j for which withinClean(p, key) holds).
func containing(p string, idx map[string][]int) []int {
	var out []int
	for a := p; ; {
		if withinClean(p, a) {
			out = append(out, idx[a]...)
		}
		up := filepath.Dir(a)
		if up == a {
			break
		}
		a = up
	}
	slices.Sort(out)
	return out
}

// checkDirOnDisk refuses a dir that exists but is a symlink, not a directory,
// or one the daemon would refuse to open (reached through a directory or
// symlink another user can change: fsx.OpenDir). A managed dir must not be
// world-writable without the sticky bit (anyone could plant files in it); a
// cold dir (cold) must be the daemon's user's and writable by nobody else
// unless sticky (fsx.Dir.OnlyOurs: they could delete archives whose hot copies
// are gone). A missing dir is allowed: applications may create a managed dir
// later (the scanner reports it until they do), and the daemon reports a
// missing cold dir when it archives.
func checkDirOnDisk(opener *fsx.Opener, key, dir string, cold bool) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return keyErr(key, "stat %s: %v", dir, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return keyErr(key, "%s is a symlink; configure the real directory", dir)
	}
	if !fi.IsDir() {
		return keyErr(key, "%s is not a directory", dir)
	}
	d, err := opener.Open(dir)
	if err != nil {
		return keyErr(key, "%v", err)
	}
	defer d.Close()
	if cold {
		if err := d.OnlyOurs(true); err != nil {
			return keyErr(key, "%v", err)
		}
		return nil
	}
	if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return keyErr(key, "%s is world-writable without the sticky bit: anyone could plant files in it", dir)
	}
	return nil
}
