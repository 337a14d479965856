// Command demowriter is the synthetic application of `make demo`: it appends log
// lines to numbered segments (prefix-000001.log, ...), starting a new segment
// every -rotate bytes, at a rate that follows -phases, e.g.
// "steady:20s:40KB,burst:15s:600KB,quiet:25s:0" (bytes per second per phase).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type phase struct {
	name string
	dur  time.Duration
	rate int // bytes per second
}

func parsePhases(s string) ([]phase, error) {
	var out []phase
	for _, p := range strings.Split(s, ",") {
		f := strings.Split(p, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("phase %q: want name:duration:rate", p)
		}
		d, err := time.ParseDuration(f[1])
		if err != nil {
			return nil, fmt.Errorf("phase %q: %w", p, err)
		}
		mult := 1
		r := f[2]
		if v, ok := strings.CutSuffix(r, "KB"); ok {
			r, mult = v, 1000
		} else if v, ok := strings.CutSuffix(r, "MB"); ok {
			r, mult = v, 1000000
		}
		n, err := strconv.Atoi(r)
		if err != nil {
			return nil, fmt.Errorf("phase %q: rate: %w", p, err)
		}
		out = append(out, phase{f[0], d, n * mult})
	}
	return out, nil
}

func main() {
	dir := flag.String("dir", "", "directory to write segments into")
	prefix := flag.String("prefix", "app", "segment name prefix")
	rotate := flag.Int("rotate", 256<<10, "start a new segment after this many bytes")
	phasesFlag := flag.String("phases", "steady:20s:40KB,burst:15s:600KB,quiet:25s:0", "name:duration:bytes-per-second,...")
	flag.Parse()
	phases, err := parsePhases(*phasesFlag)
	if err != nil || *dir == "" {
		fmt.Fprintln(os.Stderr, "demowriter:", err, "(-dir is required)")
		os.Exit(2)
	}
	seq := 1
	for {
		if _, err := os.Stat(filepath.Join(*dir, fmt.Sprintf("%s-%06d.log", *prefix, seq+1))); err != nil {
			break
		}
		seq++
	}
	open := func() *os.File {
		f, err := os.OpenFile(filepath.Join(*dir, fmt.Sprintf("%s-%06d.log", *prefix, seq)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demowriter:", err)
			os.Exit(1)
		}
		return f
	}
	f := open()
	fi, _ := f.Stat()
	written := int(fi.Size())
	line := 0
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	for _, p := range phases {
		fmt.Printf("[writer] %s: %s at %d B/s\n", time.Now().Format("15:04:05"), p.name, p.rate)
		end := time.Now().Add(p.dur)
		var debt float64
		for time.Now().Before(end) {
			<-t.C
			debt += float64(p.rate) * tick.Seconds()
			for debt >= 100 {
				line++
				s := fmt.Sprintf("%s level=info seq=%d msg=\"request served\" phase=%s pad=%s\n",
					time.Now().Format(time.RFC3339Nano), line, p.name, strings.Repeat("x", 20))
				n, err := f.WriteString(s)
				if err != nil {
					fmt.Fprintln(os.Stderr, "demowriter:", err)
					os.Exit(1)
				}
				debt -= float64(n)
				written += n
				if written >= *rotate {
					f.Close()
					seq++
					f = open()
					written = 0
				}
			}
		}
	}
	f.Close()
	fmt.Printf("[writer] %s: done\n", time.Now().Format("15:04:05"))
}
