package daemon

import (
	"fmt"
	"time"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/scanner"
)

// OrderWarnings scans the streams that use order: name and says, for each
// whose names and mtimes disagree about which segment is older, how often:
// logrotate's numbered scheme (the newest has the smallest number) is read
// backwards by name, and a merge would put lines out of order for good. It
// changes nothing. `check` prints these.
func OrderWarnings(cfg *config.Config) []string {
	var out []string
	s := scanner.New(cfg.Streams, scanner.Options{NamesOnly: true}) // no lease per segment: only names and mtimes matter
	defer s.Close()
	for i, r := range s.Scan(time.Now(), nil, nil) {
		if r.Err != nil || r.Stream.Order != "name" || len(r.Entries) < 2 {
			continue
		}
		if n := mtimeInversions(r.Entries); n > 0 {
			out = append(out, fmt.Sprintf("streams[%d] (%s): in %d of %d adjacent pairs of segments the name order and the mtimes disagree; if the newest segment does not have the last name (logrotate's numbered scheme: the newest is .1), use order: mtime",
				i, r.Stream.Name, n, len(r.Entries)-1))
		}
	}
	return out
}

// mtimeInversions counts adjacent entries (in their stream order) whose
// mtimes go backwards.
func mtimeInversions(es []scanner.Entry) int {
	n := 0
	for i := 1; i < len(es); i++ {
		if es[i].Stat.MtimeNs < es[i-1].Stat.MtimeNs {
			n++
		}
	}
	return n
}
