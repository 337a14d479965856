// Package archiver decides which closed segments to move to the cold directory
// (Plan, pure) and, from the archival issue on, moves them. The decision acts
// before the cap: it archives when the hot bytes *predicted* at now + H
// (time_to_archive) exceed max_hot_bytes, down to max_hot_bytes × low_watermark.
package archiver

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/logcompactd/logcompactd/internal/codec"
	"github.com/logcompactd/logcompactd/internal/model"
)

// Kind says which rule chose a segment.
type Kind string

const (
	Predictive Kind = "predictive" // predicted_bytes(now+H) > max_hot_bytes
	MaxAge     Kind = "max_age"    // closed longer than archive.max_age
	FSGuard    Kind = "fs_guard"   // the filesystem's predicted free space < keep_free
)

// Job archives one segment.
type Job struct {
	Stream   string
	Segment  model.Segment
	Kind     Kind
	Urgent   bool           // overrides load deferral
	Name     string         // the archive's name in the stream's cold subdir (see ColdName)
	Encoding codec.Encoding // the segment's own encoding (magic bytes), as the namer found it
	Output   string         // path relative to the cold dir: <stream>/<Name>
	Reason   string
}

// Decision is the archival plan of one pass over every stream.
type Decision struct {
	Jobs     map[string][]Job // by stream name, oldest first
	Deferred map[string][]Job // non-urgent jobs held back by load
}

// Input is what Plan needs beyond the streams.
type Input struct {
	Now        time.Time
	Load       float64
	PauseAbove float64
	// ColdName names the archive of a segment and says the segment's encoding
	// (the caller reads its magic bytes and knows the names already in the
	// cold subdir); nil: ColdName of a text segment with no earlier archive of
	// that name.
	ColdName func(s *model.Stream, seg model.Segment) (string, codec.Encoding)
}

// candidates are the segments archival may take: the closed or consolidated
// segments at the start of the stream, up to the first one it cannot take
// (active, busy in a job, or an inactive input of a merge not yet finished).
// Archival never skips over a segment: a gap would let a later merge join
// segments from both sides of it, and the stream read across hot and cold would
// no longer be in order. Inactive inputs stop it too: the scan that shows them
// may predate their merge's output, so what follows them is not known to be
// next in order.
func candidates(s *model.Stream) []model.Segment {
	var out []model.Segment
	for _, seg := range s.Segments {
		if seg.State != model.Closed && seg.State != model.Consolidated {
			return out
		}
		out = append(out, seg)
	}
	return out
}

// TimeName is the name an archive of segment starts from in a stream whose
// writer renumbers its files (logrotate's numbered scheme, order: mtime): there
// the trailing number says nothing once the file has left the hot dir, so it is
// replaced by the segment's mtime in UTC, ISO 8601 basic format with
// nanoseconds, and the cold subdir lists the stream in time order across any
// number of renumberings. A consolidated marker and a compression extension are
// kept in place. A name without a trailing ".<number>" is returned as it is.
//
//	app.log.4      -> app.log.20261202T134501.123456789Z
//	app.log.4~c2   -> app.log.20261202T134501.123456789Z~c2
//	app.log.12.gz  -> app.log.20261202T134501.123456789Z.gz
func TimeName(segment string, mtime time.Time) string {
	name, ext := segment, ""
	for _, e := range []string{".gz", ".zst", ".bz2", ".xz"} { // logrotate's compress, compresscmd
		if strings.HasSuffix(name, e) {
			name, ext = strings.TrimSuffix(name, e), e
			break
		}
	}
	mark := ""
	if i, j, ok := model.FindMarker(name); ok && j == len(name) {
		name, mark = name[:i], name[i:]
	}
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i == len(name) || i == 0 || name[i-1] != '.' {
		return segment
	}
	stamp := mtime.UTC().Format("20060102T150405.000000000Z")
	out := name[:i] + stamp + mark + ext
	if len(out) > model.NameMax {
		return segment
	}
	return out
}

// ColdName is the name a segment's archive gets in its stream's cold subdir
// (README "Cold layout"): the segment's name with the extension of the
// archive's encoding, added once. enc is the segment's own encoding (its magic
// bytes): a text segment is compressed as compress says, a gzip or zstd one is
// archived as it is. n > 0 — an earlier archive holds the name — inserts ".n"
// before that extension. A name that would pass NAME_MAX (255 bytes) is cut
// before the suffix:
//
//	app-7.log, text, zstd        -> app-7.log.zst, app-7.log.1.zst, ...
//	app-7~c1.log.zst, zstd, zstd -> app-7~c1.log.zst (not .zst.zst)
//	app-7.log, text, none        -> app-7.log, app-7.log.1, ...
func ColdName(segment string, enc codec.Encoding, compress string, n int) string {
	if enc == codec.Text {
		enc = codec.Parse(compress)
	}
	ext := enc.Ext()
	base := segment
	if ext != "" {
		base = strings.TrimSuffix(segment, ext)
	}
	suffix := ext
	if n > 0 {
		suffix = "." + strconv.Itoa(n) + ext
	}
	if len(base)+len(suffix) > model.NameMax {
		base = base[:model.NameMax-len(suffix)] // a name the filesystem takes; ".N" keeps it unique
	}
	return base + suffix
}

// Plan decides archival for all streams at once (the filesystem guard spans them).
//
//   - predictive: with G the stream's growth and H its time_to_archive, if
//     hot + G×H > max_hot_bytes, archive the oldest closed segments until
//     hot − archived + G×H ≤ max_hot_bytes × low_watermark. Urgent when the cap is
//     already crossed or would be within urgent_within.
//   - max_age: closed segments last modified more than max_age ago (0 = off).
//   - fs_guard: per filesystem, if avail − fill_rate×H < keep_free, archive the
//     oldest closed segments of all streams on it (by mtime) until it is not. Urgent.
//
// Non-urgent jobs are deferred while load ≥ pause_above.
func Plan(streams []*model.Stream, in Input) Decision {
	d := Decision{Jobs: map[string][]Job{}, Deferred: map[string][]Job{}}
	chosen := map[*model.Stream]map[string]bool{}
	byName := map[string]*model.Stream{}
	for _, s := range streams {
		byName[s.Config.Name] = s
	}
	var all []Job
	add := func(s *model.Stream, seg model.Segment, kind Kind, urgent bool, reason string) int64 {
		if chosen[s] == nil {
			chosen[s] = map[string]bool{}
		}
		if chosen[s][seg.Name] {
			return 0
		}
		chosen[s][seg.Name] = true
		all = append(all, Job{Stream: s.Config.Name, Segment: seg, Kind: kind, Urgent: urgent, Reason: reason})
		return seg.Size
	}

	for _, s := range streams {
		a := s.Config.Archive
		capB := float64(a.MaxHotBytes)
		if s.PredictedBytes > capB {
			goal := capB * a.LowWatermark
			breach := "now"
			urgent := float64(s.HotBytes) >= capB
			if !urgent && s.GrowthRate > 0 {
				eta := time.Duration((capB - float64(s.HotBytes)) / s.GrowthRate * float64(time.Second))
				breach = "in " + eta.Round(time.Second).String()
				urgent = eta <= a.UrgentWithin
			}
			pred := s.PredictedBytes
			for _, seg := range candidates(s) {
				if pred <= goal {
					break
				}
				reason := fmt.Sprintf("predicted %s at +%s > max_hot_bytes %s (breach %s); archiving down to %.0f%%",
					human(s.PredictedBytes), a.TimeToArchive, human(capB), breach, a.LowWatermark*100)
				pred -= float64(add(s, seg, Predictive, urgent, reason))
			}
		}
		if a.MaxAge > 0 {
			for _, seg := range candidates(s) {
				age := in.Now.Sub(seg.Mtime())
				if age <= a.MaxAge {
					break // a prefix only: never skip a younger segment
				}
				add(s, seg, MaxAge, false, fmt.Sprintf("closed for %s > max_age %s", age.Round(time.Second), a.MaxAge))
			}
		}
	}

	// The filesystem guard, per device.
	byFS := map[uint64][]*model.Stream{}
	for _, s := range streams {
		if s.FS.Total > 0 {
			byFS[s.FS.Dev] = append(byFS[s.FS.Dev], s)
		}
	}
	devs := make([]uint64, 0, len(byFS))
	for dev := range byFS {
		devs = append(devs, dev)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i] < devs[j] })
	for _, dev := range devs {
		ss := byFS[dev]
		fs := ss[0].FS
		var h time.Duration
		var keep uint64
		for _, s := range ss {
			h = max(h, s.Config.Archive.TimeToArchive)
			keep = max(keep, s.Config.Archive.KeepFree.Of(fs.Total))
		}
		predFree := float64(fs.Avail) - fs.FillRate*h.Seconds()
		for _, j := range all { // what is already chosen frees space too
			if j.Stream != "" && streamOnDev(ss, j.Stream) {
				predFree += float64(j.Segment.Size)
			}
		}
		if predFree >= float64(keep) {
			continue
		}
		// Oldest first across the streams, but each stream only from its start:
		// take the stream whose next candidate is the oldest, repeatedly.
		queues := map[*model.Stream][]model.Segment{}
		for _, s := range ss {
			queues[s] = candidates(s)
		}
		reason := fmt.Sprintf("filesystem free space predicted at +%s is %s < keep_free %s", h, human(predFree), human(float64(keep)))
		for predFree < float64(keep) {
			var pick *model.Stream
			for _, s := range ss {
				q := queues[s]
				for len(q) > 0 && chosen[s][q[0].Name] {
					q = q[1:]
				}
				queues[s] = q
				if len(q) > 0 && (pick == nil || q[0].MtimeNs < queues[pick][0].MtimeNs) {
					pick = s
				}
			}
			if pick == nil {
				break
			}
			seg := queues[pick][0]
			queues[pick] = queues[pick][1:]
			predFree += float64(add(pick, seg, FSGuard, true, reason))
		}
	}

	// Archival takes a prefix of each stream, so deferral must too: an urgent job
	// makes the older jobs of its stream urgent as well.
	lastUrgent := map[string]int{}
	for i, j := range all {
		if j.Urgent {
			lastUrgent[j.Stream] = i + 1
		}
	}
	for i := range all {
		if i < lastUrgent[all[i].Stream] && !all[i].Urgent {
			all[i].Urgent = true
			all[i].Reason += "; urgent: an older segment of a stream that must be archived urgently"
		}
	}
	for _, j := range all {
		s := byName[j.Stream]
		if in.ColdName != nil {
			j.Name, j.Encoding = in.ColdName(s, j.Segment)
		} else {
			j.Name = ColdName(j.Segment.Name, codec.Text, s.Config.Archive.Compress, 0)
		}
		j.Output = j.Stream + "/" + j.Name
		if !j.Urgent && in.Load >= in.PauseAbove {
			j.Reason += fmt.Sprintf("; deferred: load %.2f ≥ pause_above %.2f", in.Load, in.PauseAbove)
			d.Deferred[j.Stream] = append(d.Deferred[j.Stream], j)
			continue
		}
		if j.Urgent && in.Load >= in.PauseAbove {
			j.Reason += fmt.Sprintf("; urgent: overrides load %.2f", in.Load)
		}
		d.Jobs[j.Stream] = append(d.Jobs[j.Stream], j)
	}
	return d
}

func streamOnDev(ss []*model.Stream, name string) bool {
	for _, s := range ss {
		if s.Config.Name == name {
			return true
		}
	}
	return false
}

// human formats bytes with a binary unit, for reasons.
func human(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%s", b, units[i])
}

// Batch groups a stream's archival jobs (in stream order) for an object store,
// which charges per request and suffers from many small objects: consecutive
// text segments, none sparse, go into one archive of at most target bytes of
// input and max segments; any other job stays alone. A batch keeps the jobs'
// order, so archival still never skips a segment.
func Batch(jobs []Job, target int64, max int) [][]Job {
	var out [][]Job
	var cur []Job
	var size int64
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur, size = nil, 0
	}
	for _, j := range jobs {
		if j.Encoding != codec.Text || j.Segment.Sparse {
			flush()
			out = append(out, []Job{j})
			continue
		}
		if len(cur) > 0 && (size+j.Segment.Size > target || len(cur) >= max || cur[0].Urgent != j.Urgent) {
			flush()
		}
		cur = append(cur, j)
		size += j.Segment.Size
	}
	flush()
	return out
}

// BatchBase is the name an archive of several segments starts from (before
// ColdName adds the extension): "<first>..<last>", which says what it holds;
// "<first>+<n-1>" when that would pass NAME_MAX.
func BatchBase(first, last string, n int) string {
	if b := first + ".." + last; len(b) <= model.NameMax-16 {
		return b
	}
	return first + "+" + strconv.Itoa(n-1)
}
