package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
	"github.com/logcompactd/logcompactd/internal/model"
	"github.com/logcompactd/logcompactd/internal/objstore"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

// OrderWarnings scans the streams and says, for each that uses order: name
// and whose names and mtimes disagree about which segment is older, how often:
// logrotate's numbered scheme (the newest has the smallest number) is read
// backwards by name, and a merge would put lines out of order for good. Of
// each that uses order: mtime on a filesystem that keeps no birth times (ext4
// with 128-byte inodes, ext2/3, some network and FUSE filesystems) it says that
// ties of mtimes then go by name (scanner.Sort). It changes nothing. `check`
// prints these.
func OrderWarnings(cfg *config.Config) []string {
	var out []string
	s := scanner.New(cfg.Streams, scanner.Options{})
	defer s.Close()
	for i, r := range s.Scan(time.Now(), nil, nil) {
		if r.Err != nil || len(r.Segments) < 2 {
			continue
		}
		if r.Stream.Order == "mtime" {
			if slices.ContainsFunc(r.Segments, func(e model.Segment) bool { return e.ID.Gen == 0 }) {
				out = append(out, fmt.Sprintf("streams[%d] (%s): the filesystem under %s keeps no birth times: segments whose mtimes tie (last writes in one tick of the kernel's clock) go by name, which a renumbering writer's names get backwards",
					i, r.Stream.Name, r.Stream.Dir))
			}
			continue
		}
		if n := mtimeInversions(r.Segments); n > 0 {
			out = append(out, fmt.Sprintf("streams[%d] (%s): in %d of %d adjacent pairs of segments the name order and the mtimes disagree; if the newest segment does not have the last name (logrotate's numbered scheme: the newest is .1), use order: mtime",
				i, r.Stream.Name, n, len(r.Segments)-1))
		}
	}
	return out
}

// mtimeInversions counts adjacent entries (in their stream order) whose
// mtimes go backwards.
func mtimeInversions(es []model.Segment) int {
	n := 0
	for i := 1; i < len(es); i++ {
		if es[i].MtimeNs < es[i-1].MtimeNs {
			n++
		}
	}
	return n
}

// Check is what `check` says of a valid config on this host, beyond what
// loading it already refuses: problems make the daemon unable to do its work
// (a cold dir that is missing or unusable: nothing would ever be archived);
// warnings are what an operator should know (names and mtimes that disagree,
// metrics served beyond loopback, a managed dir that does not exist yet).
// It changes nothing.
func Check(cfg *config.Config) (problems, warnings []string) {
	seen := map[string]bool{}
	for i, s := range cfg.Streams {
		key := "archive.cold_dir"
		if s.Archive.ColdDir != cfg.Archive.ColdDir {
			key = fmt.Sprintf("streams[%d].archive.cold_dir", i)
		}
		if p := tierKey(s.Archive.ColdDir); !seen[p] {
			seen[p] = true
			if strings.HasPrefix(p, "s3://") {
				if err := storeUsable(p, s.Archive.S3); err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v: nothing would be archived", key, err))
				}
				continue
			}
			if err := coldUsable(p); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v: nothing would be archived", key, err))
			}
		}
		if _, err := os.Lstat(s.Dir); errors.Is(err, os.ErrNotExist) {
			warnings = append(warnings, fmt.Sprintf("streams[%d].dir: %s does not exist yet (reported every pass until it does)", i, s.Dir))
		}
	}
	if t := cfg.Metrics.Textfile; t != "" {
		if fi, err := os.Stat(filepath.Dir(t)); err != nil || !fi.IsDir() {
			problems = append(problems, fmt.Sprintf("metrics.textfile: its dir %s is not a directory (%v)", filepath.Dir(t), err))
		} else if err := unix.Access(filepath.Dir(t), unix.W_OK); err != nil {
			problems = append(problems, fmt.Sprintf("metrics.textfile: cannot write in %s: %v", filepath.Dir(t), err))
		}
	}
	if w := cfg.Metrics.MetricsExposed(); w != "" {
		warnings = append(warnings, w)
	}
	warnings = append(warnings, OrderWarnings(cfg)...)
	return problems, warnings
}

// coldUsable says why a cold dir cannot take archives now, or nil.
func coldUsable(path string) error {
	d, err := fsx.OpenDir(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s does not exist (logcompactd does not create it: mkdir it, or mount the cold filesystem)", path)
		}
		return err
	}
	defer d.Close()
	if err := d.OnlyOurs(true); err != nil {
		return err
	}
	if err := unix.Access(path, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%s: cannot create files in it: %w", path, err)
	}
	return nil
}

// storeUsable probes an object-store cold tier as run does at start.
func storeUsable(url string, c config.S3) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := objstore.New(ctx, url, c)
	if err != nil {
		return err
	}
	_, err = st.Probe(ctx)
	return err
}
