// Command benchtable turns the raw output of `make bench` (bench/latest.txt) into
// BENCHMARKS.md: one table with every benchmark of the project — the command
// that reproduces it, the machine, the result, the peer and the ratio — followed
// by notes on method (notes.md). A measurement missing from the input is an
// error: the table is never silently partial.
//
//	go run ./scripts/benchtable bench/latest.txt > BENCHMARKS.md
package main

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

//go:embed notes.md
var notes string

// input is what the raw output holds.
type input struct {
	machine map[string]string
	bench   map[string][]map[string]float64 // benchmark name (no -N) → one metric map per run
	kv      map[string][]map[string]string  // FG, IDLE, ARCHIVE, SCALE, SOAK lines
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	kvField   = regexp.MustCompile(`(\w+)=("[^"]*"|\S+)`)
)

func parse(r io.Reader) (*input, error) {
	in := &input{machine: map[string]string{}, bench: map[string][]map[string]float64{}, kv: map[string][]map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := benchLine.FindStringSubmatch(line); m != nil {
			f := strings.Fields(m[2])
			metrics := map[string]float64{}
			for i := 0; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("%q: %w", line, err)
				}
				metrics[f[i+1]] = v
			}
			in.bench[m[1]] = append(in.bench[m[1]], metrics)
			continue
		}
		trimmed := strings.TrimSpace(line)
		for _, k := range []string{"SOAK", "SINGLE"} { // a t.Logf line of TestSoak, TestSingleInstance
			if _, after, ok := strings.Cut(trimmed, ": "+k+" "); ok {
				trimmed = k + " " + after
			}
		}
		kind, rest, _ := strings.Cut(strings.TrimPrefix(trimmed, "# "), " ")
		switch kind {
		case "MACHINE", "FG", "IDLE", "ARCHIVE", "SCALE", "SOAK", "SINGLE":
			fields := map[string]string{}
			for _, m := range kvField.FindAllStringSubmatch(rest, -1) {
				fields[m[1]] = strings.Trim(m[2], `"`)
			}
			if kind == "MACHINE" {
				in.machine = fields
			} else {
				in.kv[kind] = append(in.kv[kind], fields)
			}
		}
	}
	return in, sc.Err()
}

// lookups that record what is missing instead of failing one by one.
type tab struct {
	in      *input
	missing []string
}

// median of a benchmark's metric over its runs.
func (t *tab) med(name, unit string) float64 {
	var vs []float64
	for _, m := range t.in.bench[name] {
		if v, ok := m[unit]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		t.missing = append(t.missing, name+" "+unit)
		return 0
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// kv finds the line of kind whose fields match all of sel, and returns field key.
func (t *tab) kv(kind string, sel map[string]string, key string) float64 {
	for _, f := range t.in.kv[kind] {
		ok := true
		for k, v := range sel {
			ok = ok && f[k] == v
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(f[key], 64)
		if err != nil {
			break
		}
		return v
	}
	t.missing = append(t.missing, fmt.Sprintf("%s %v %s", kind, sel, key))
	return 0
}

type row struct {
	what, command, result, peer, ratio, goal string
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func verdict(ok bool, goal string) string {
	if ok {
		return goal + ": **met**"
	}
	return goal + ": **short**"
}

func rows(t *tab) []row {
	const (
		scan    = "`go test -run '^$' -bench 'BenchmarkScan|BenchmarkFind' -benchtime 5x -count 3 ./internal/scanner`"
		pass    = "`go test -run '^$' -bench BenchmarkPass100k -benchtime 5x -count 3 ./internal/daemon`"
		live    = "`go test -run '^$' -bench BenchmarkLiveSet -benchtime 1x -count 3 ./internal/daemon`"
		report  = "`go test -run '^$' -bench BenchmarkWriteJSON -benchtime 10x -count 3 ./internal/daemon`"
		growth  = "`go test -run '^$' -bench BenchmarkTrackerMemory -benchtime 3x ./internal/growth`"
		save    = "`go test -run '^$' -bench BenchmarkMarshal -benchtime 20x -count 3 ./internal/growth`"
		merge   = "`go test -run '^$' -bench 'BenchmarkMergeVsCat' -benchtime 5x -count 3 ./internal/compactor`"
		rate    = "`go test -run '^$' -bench 'BenchmarkMergeMaxRate' -benchtime 5x -count 3 ./internal/compactor`"
		predict = "`go test -run '^$' -bench BenchmarkPredictionVsReaction -benchtime 1x ./internal/archiver`"
		archive = "`scripts/bench-archive.sh`"
		s3      = "`go test -run '^$' -bench BenchmarkArchiveToS3 -benchtime 1x -count 3 ./internal/archiver`"
		fg      = "`go run ./scripts/fgbench -bin bin/logcompactd -dir /var/tmp -size 1073741824`"
		soak    = "`make soak` (`SOAK=10m`)"
		single  = "`make soak-single` (`SINGLE=1h`)"
		scale   = "`scripts/bench-scale.sh`"
	)
	var out []row
	for _, tree := range []struct{ name, label string }{{"1dir-100k", "1 dir × 100,000"}, {"1000dirs-100", "1,000 dirs × 100"}} {
		warm, cold, find := t.med("BenchmarkScan/"+tree.name+"/warm", "ns/op"), t.med("BenchmarkScan/"+tree.name+"/cold", "ns/op"), t.med("BenchmarkFind/"+tree.name, "ns/op")
		out = append(out,
			row{"Full scan, steady state, " + tree.label, scan, secs(warm), "`find DIR -printf '%s\\n'` " + secs(find), ratio(warm, find), verdict(warm <= 2*find, "≤ 2× find")},
			row{"Full scan, first after start (a fresh scanner: opens its dirs), " + tree.label, scan, secs(cold), "`find` " + secs(find), ratio(cold, find), "— (once per start)"})
	}
	full, quiet := t.med("BenchmarkPass100k/full", "ns/op"), t.med("BenchmarkPass100k/unchanged", "ns/op")
	out = append(out,
		row{"Daemon pass over 100,000 idle segments, re-reading the dir", pass, ms(full), "—", "—", "—"},
		row{"Daemon pass over 100,000 idle segments, tick without an inotify event", pass, ms(quiet), "the full pass " + ms(full), ratio(quiet, full), "—"},
		row{"Heap a daemon keeps between passes, 1,000 dirs × 100 idle segments (after two passes and a collection)", live,
			fmt.Sprintf("%.0f B/segment", t.med("BenchmarkLiveSet", "live-B/segment")), "—", "—", "—"},
		row{"`plan --json` encoding of 100,000 segment rows in 1,000 streams (the report only)", report,
			ms(t.med("BenchmarkWriteJSON", "ns/op")), "—", "—", "—"})
	for _, tree := range []struct{ dirs, per, label string }{{"1", "100000", "1 dir × 100,000"}, {"1000", "100", "1,000 dirs × 100"}} {
		sel := map[string]string{"dirs": tree.dirs, "per_dir": tree.per}
		cpu, rss, bps, secsRun := t.kv("IDLE", sel, "cpu_pct"), t.kv("IDLE", sel, "rss_mib"), t.kv("IDLE", sel, "bytes_per_segment"), t.kv("IDLE", sel, "seconds")
		peak := t.kv("IDLE", sel, "peak_mib")
		cmd := fmt.Sprintf("`scripts/bench-idle.sh %s %s` (`IDLE_SECONDS=330`)", tree.dirs, tree.per)
		out = append(out,
			row{fmt.Sprintf("Idle daemon CPU, %s, scan_interval 30s, over %.0f s", tree.label, secsRun), cmd, fmt.Sprintf("%.2f %% of a core", cpu), "goal 0.3 %", ratio(cpu, 0.3), verdict(cpu <= 0.3, "≤ 0.3 %")},
			row{"Idle daemon resident memory at the end of the window, " + tree.label, cmd,
				fmt.Sprintf("%.1f MiB (%.0f B/segment); peak %.1f MiB (first scan or full re-read)", rss, bps, peak), "goal 48 MiB, peak 64 MiB", ratio(rss, 48), verdict(rss <= 48 && peak <= 64, "≤ 48 MiB, peak ≤ 64 MiB")})
	}
	out = append(out,
		row{"Growth tracker, idle segment", growth, fmt.Sprintf("%.0f B/segment", t.med("BenchmarkTrackerMemory/idle-100k", "B/segment")), "—", "—", "—"},
		row{"Growth tracker, segment growing at every scan", growth, fmt.Sprintf("%.0f B/segment", t.med("BenchmarkTrackerMemory/growing-100k", "B/segment")), "—", "—", "—"},
		row{"Growth history encoded for the periodic save, 100,000 idle segments in 1 stream / in 1,000", save,
			fmt.Sprintf("%s / %s", ms(t.med("BenchmarkMarshal/100k-in-1", "ns/op")), ms(t.med("BenchmarkMarshal/100k-in-1000", "ns/op"))), "—", "—", "—"})
	cat, mg, mc := t.med("BenchmarkMergeVsCat", "cat+fsync+rm-ms"), t.med("BenchmarkMergeVsCat", "merge-ms"), t.med("BenchmarkMergeVsCat", "merge/cat")
	out = append(out,
		row{"Merge of 16 × 8 MiB, whole crash-safe protocol", merge, fmt.Sprintf("%.0f ms", mg), fmt.Sprintf("`cat` + fsync + `rm` of the inputs %.0f ms", cat), fmt.Sprintf("%.2f (total ÷ total)", mc), verdict(mc <= 1.1, "≤ 1.1")})
	mbs := t.med("BenchmarkMergeMaxRate", "MB/s") * 1e6 / (1 << 20)
	out = append(out,
		row{"Merge under `max_rate: 32MiB/s`, idle host", rate, fmt.Sprintf("%.1f MiB/s", mbs), "the budget, 32 MiB/s", ratio(mbs, 32), "—"})
	for _, p := range []struct{ name, label string }{{"reactive-60s", "reactive size trigger every 60 s"}, {"hourly", "hourly logrotate-style check"}} {
		pp, rp := t.med("BenchmarkPredictionVsReaction/predictive", "peak/cap"), t.med("BenchmarkPredictionVsReaction/"+p.name, "peak/cap")
		po, ro := t.med("BenchmarkPredictionVsReaction/predictive", "s-over-cap"), t.med("BenchmarkPredictionVsReaction/"+p.name, "s-over-cap")
		out = append(out, row{"Predictive archival on a bursty 48 h trace: peak hot ÷ cap, time over cap", predict,
			fmt.Sprintf("%.2f, %.0f s", pp, po), fmt.Sprintf("%s: %.2f, %.0f s", p.label, rp, ro), ratio(pp, rp) + " (peak)", verdict(po == 0, "never over the cap")})
	}
	zs, gz, paced := t.kv("ARCHIVE", map[string]string{"who": "logcompactd-zstd-unpaced"}, "mb_s"), t.kv("ARCHIVE", map[string]string{"who": "logcompactd-gzip-unpaced"}, "mb_s"), t.kv("ARCHIVE", map[string]string{"who": "logcompactd-zstd-paced"}, "mb_s")
	lr, z3 := t.kv("ARCHIVE", map[string]string{"who": "logrotate-gzip"}, "mb_s"), t.kv("ARCHIVE", map[string]string{"who": "zstd-3"}, "mb_s")
	zr, lrr := t.kv("ARCHIVE", map[string]string{"who": "logcompactd-zstd-unpaced"}, "ratio"), t.kv("ARCHIVE", map[string]string{"who": "logrotate-gzip"}, "ratio")
	out = append(out,
		row{"Archive 200 MiB with zstd (copy, compress, fsync, verify), unpaced", archive, fmt.Sprintf("%.1f MB/s, ratio %.2f", zs, zr), fmt.Sprintf("logrotate `compress` %.1f MB/s, ratio %.2f", lr, lrr), ratio(zs, lr), "—"},
		row{"Archive 200 MiB with zstd, unpaced", archive, fmt.Sprintf("%.1f MB/s", zs), fmt.Sprintf("`zstd -3` command %.1f MB/s", z3), ratio(zs, z3), verdict(z3 > 0 && zs/z3 >= 0.9, "≥ 0.9× `zstd -3`")},
		row{"Archive 200 MiB with gzip, unpaced", archive, fmt.Sprintf("%.1f MB/s", gz), fmt.Sprintf("logrotate `compress` %.1f MB/s", lr), ratio(gz, lr), "—"},
		row{"Archive 200 MiB with zstd, default `max_rate` 64 MiB/s", archive, fmt.Sprintf("%.1f MB/s", paced), "the budget, 67.1 MB/s", ratio(paced, 67.108864), "—"})
	s3d, s3l, s3p := t.med("BenchmarkArchiveToS3", "s3-MB/s"), t.med("BenchmarkArchiveToS3", "dir-MB/s"), t.med("BenchmarkArchiveToS3", "put-MB/s")
	ws, wb := t.med("BenchmarkArchiveToS3", "writes/GiB-single"), t.med("BenchmarkArchiveToS3", "writes/GiB-batched")
	out = append(out,
		row{"Archive 200 MiB with zstd to S3 (versitygw on loopback: stage, multipart upload, HEAD verify, remove)", s3,
			fmt.Sprintf("%.1f MB/s", s3d), fmt.Sprintf("the same to a local cold dir %.1f MB/s", s3l), ratio(s3d, s3l), "—"},
		row{"Archive 200 MiB with zstd to S3, against a plain PUT of the same compressed bytes (same SDK)", s3,
			fmt.Sprintf("%.1f MB/s", s3d), fmt.Sprintf("plain PUT %.1f MB/s (input-equivalent)", s3p), ratio(s3d, s3p), "—"},
		row{"Write requests (PUT, POST) per GiB archived to S3, 200 segments of 100 KiB", s3,
			fmt.Sprintf("%.0f batched", wb), fmt.Sprintf("one object per segment: %.0f", ws), ratio(wb, ws), "—"})
	un := map[string]string{"scenario": "unpaced"}
	pl := map[string]string{"scenario": "rate+load"}
	r := map[string]string{"scenario": "rate"}
	l := map[string]string{"scenario": "load"}
	base := t.kv("FG", pl, "base_p99_us")
	out = append(out,
		row{"Foreground append (write + fdatasync) p99 during a 1 GiB merge, `max_rate` 64 MiB/s + load on", fg,
			fmt.Sprintf("%.1f ms (p50 %.2f ms, max %.0f ms; merge %.0f s)", t.kv("FG", pl, "p99_us")/1000, t.kv("FG", pl, "p50_us")/1000, t.kv("FG", pl, "max_us")/1000, t.kv("FG", pl, "merge_s")),
			fmt.Sprintf("unpaced, load off: %.1f ms (max %.0f ms; merge %.0f s)", t.kv("FG", un, "p99_us")/1000, t.kv("FG", un, "max_us")/1000, t.kv("FG", un, "merge_s")),
			ratio(t.kv("FG", pl, "p99_us"), t.kv("FG", un, "p99_us")), "—"},
		row{"Foreground append p99 during the merge, `max_rate` only / load only", fg,
			fmt.Sprintf("%.1f ms / %.1f ms", t.kv("FG", r, "p99_us")/1000, t.kv("FG", l, "p99_us")/1000),
			fmt.Sprintf("no merge: %.2f ms", base/1000), ratio(t.kv("FG", r, "p99_us"), base) + " / " + ratio(t.kv("FG", l, "p99_us"), base), "—"})
	{
		u := map[string]string{"scenario": "unit"}
		p99, ub := t.kv("FG", u, "p99_us"), t.kv("FG", u, "base_p99_us")
		out = append(out, row{"Foreground append p99 during a 1 GiB merge, defaults, as the unit runs it (`nice -n 10 ionice -c 3`)", fg,
			fmt.Sprintf("%.1f ms (p50 %.2f ms, max %.0f ms; merge %.0f s)", p99/1000, t.kv("FG", u, "p50_us")/1000, t.kv("FG", u, "max_us")/1000, t.kv("FG", u, "merge_s")),
			fmt.Sprintf("no merge: %.2f ms", ub/1000), ratio(p99, ub), verdict(p99 <= 3*ub, "≤ 3× no merge")})
	}
	sc := func(what, k string) float64 { return t.kv("SCALE", map[string]string{"what": what}, k) }
	find := sc("find", "seconds")
	for _, c := range []struct{ what, label string }{{"plan", "`plan --json`"}, {"once-idle", "`once` with nothing to do"}} {
		secs, rss := sc(c.what, "seconds"), sc(c.what, "max_rss_mib")
		out = append(out,
			row{"Fresh " + c.label + " over 100,000 segments in 1,000 dirs, no daemon running (median of 5)", scale,
				fmt.Sprintf("%.2f s, max RSS %.0f MiB", secs, rss), fmt.Sprintf("`find DIR -printf '%%s\\n'` %.2f s", find), ratio(secs, find),
				verdict(secs <= 1.5*find, "≤ 1.5× find") + "; " + verdict(rss <= 64, "RSS ≤ 64 MiB")})
	}
	tiny, tar := sc("tiny-archive", "seconds"), sc("tiny-archive", "peer_seconds")
	out = append(out, row{fmt.Sprintf("`once` archiving %.0f tiny closed segments (%.0f archives, zstd; median of 3)", sc("tiny-archive", "segments"), sc("tiny-archive", "archives")), scale,
		fmt.Sprintf("%.2f s", tiny), fmt.Sprintf("`tar --zstd -cf` + sync + rm %.2f s", tar), ratio(tiny, tar), verdict(tiny <= 10*tar, "≤ 10×")})
	s := func(k string) float64 { return t.kv("SOAK", nil, k) }
	lost, dup := s("lost"), s("duplicated")
	out = append(out, row{fmt.Sprintf("Soak, %.0f min: 4 rotating writers, kill -9 every 1–5 s", s("seconds")/60), soak,
		fmt.Sprintf("%.0f lines, %.0f lost, %.0f duplicated; %.0f kills (%.0f mid-job), %.0f merges, %.0f archivals; peak RSS %.1f MiB",
			s("lines"), lost, dup, s("kills"), s("in_flight"), s("merges"), s("archivals"), s("peak_mib")),
		"—", "—", verdict(lost+dup == 0, "0 lost, 0 duplicated")})
	g := func(k string) float64 { return t.kv("SINGLE", nil, k) }
	early, end := g("rss_early_mib"), g("rss_end_mib")
	lost, dup = g("lost"), g("duplicated")
	out = append(out, row{fmt.Sprintf("One `run` instance for %.0f min of the soak's writers, rotation, merges and archival, no kills", g("seconds")/60), single,
		fmt.Sprintf("%.0f lines, %.0f lost, %.0f duplicated; %.0f merges, %.0f archivals; RSS %.1f MiB at the end", g("lines"), lost, dup, g("merges"), g("archivals"), end),
		fmt.Sprintf("RSS at a sixth of the run %.1f MiB", early), ratio(end, early),
		verdict(end <= 1.2*early, "end ≤ 1.2× at a sixth") + "; " + verdict(lost+dup == 0, "0 lost, 0 duplicated")})
	return out
}

func secs(ns float64) string { return fmt.Sprintf("%.2f s", ns/1e9) }
func ms(ns float64) string   { return fmt.Sprintf("%.0f ms", ns/1e6) }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable bench/latest.txt > BENCHMARKS.md")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	in, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	t := &tab{in: in}
	rs := rows(t)
	if len(in.machine) == 0 {
		t.missing = append(t.missing, "# MACHINE line")
	}
	if len(t.missing) > 0 {
		return fmt.Errorf("%s lacks: %s", path, strings.Join(t.missing, "; "))
	}
	m := in.machine
	machine := fmt.Sprintf("%s CPUs (%s), %s GiB", m["cpus"], m["cpu"], m["mem_gib"])
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nGenerated by one run of `make bench` on %s, with nothing else running on the machine, from `bench/latest.txt` (the raw output; `go run ./scripts/benchtable bench/latest.txt` rebuilds this file from it). Do not edit by hand: the notes below the table live in `scripts/benchtable/notes.md`.\n\n", m["date"])
	fmt.Fprintf(&b, "Machine for every row: %s; %s, Linux %s; temp files on %s, disk benchmarks on %s; %s; uid %s.\n\n",
		machine, m["os"], m["kernel"], m["tmp_fs"], m["disk_fs"], m["go"], m["uid"])
	b.WriteString("| benchmark | command | machine | result | peer | ratio | goal |\n|---|---|---|---|---|---|---|\n")
	short := fmt.Sprintf("%s vCPU, %s", m["cpus"], m["disk_fs"])
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.what, strings.ReplaceAll(r.command, "|", "\\|"), short, r.result, r.peer, r.ratio, r.goal)
	}
	b.WriteString("\n")
	b.WriteString(notes)
	_, err = io.WriteString(w, b.String())
	return err
}
