// Command runstat runs a command several times and prints, as key=value pairs,
// the median wall time in seconds and the largest resident set of any run
// (ru_maxrss), for the benchmark scripts:
//
//	go run ./scripts/runstat -n 5 -- find /var/log -printf '%s\n'
//	seconds=0.342 max_rss_mib=3.1 runs=5
//
// The command's stdout goes to /dev/null; its stderr passes through. Any run
// that fails stops it with the command's error.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 5, "runs")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: runstat [-n RUNS] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	var secs []float64
	var rss int64
	for i := 0; i < *n; i++ {
		cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "runstat: %v: %v\n", flag.Args(), err)
			os.Exit(1)
		}
		secs = append(secs, time.Since(start).Seconds())
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = max(rss, ru.Maxrss) // KiB on Linux
		}
	}
	slices.Sort(secs)
	fmt.Printf("seconds=%.3f max_rss_mib=%.1f runs=%d\n", secs[len(secs)/2], float64(rss)/1024, *n)
}
