// Command hot calls probed functions in a tight loop (per-hit cost) or
// serves them over HTTP (service overhead), for `cargo xtask bench`.
//
//	-mode loop: G goroutines call work() for -duration; prints "calls N ns_per_call X".
//	-mode rate: work() -rate times a second (bursts every millisecond) for -duration;
//	  prints the same, timed over the bursts only, then "trimmed Y" without the slowest 1% of bursts.
//	-mode http: serve GET /work?n=N on -http, calling work() once per request.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var sink atomic.Int64

// work has Go's stack-bound check at its first byte (it is not a leaf), so
// a probe there is single-stepped while one after the check is emulated.
//
//go:noinline
func work(n int, key string) int {
	return inner(n) + len(key)
}

//go:noinline
func inner(n int) int { return n * 3 }

// burst is one burst of rate mode: how long it took, and its calls.
type burst struct {
	d     time.Duration
	calls int
}

// trimmed is ns per call over all bursts but the slowest 1%: with one
// call a burst, a single stall of the host (a millisecond, now and then,
// whatever runs) would otherwise move the mean of a few thousand
// microsecond calls by a fifth.
func trimmed(bursts []burst) float64 {
	sort.Slice(bursts, func(i, j int) bool {
		return bursts[i].d*time.Duration(bursts[j].calls) < bursts[j].d*time.Duration(bursts[i].calls)
	})
	keep := bursts[:len(bursts)-len(bursts)/100]
	var d time.Duration
	n := 0
	for _, b := range keep {
		d += b.d
		n += b.calls
	}
	return float64(d.Nanoseconds()) / float64(max(n, 1))
}

// key is work's string argument: the literal "key", which lives in the
// binary's read-only data, or with -heap-key the same bytes on the heap
// (a tracer that knows read-only data cannot change reads a literal from
// the file instead of the process: the two cost a tracer differently).
var key = "key"

func main() {
	mode := flag.String("mode", "loop", "loop|http")
	goroutines := flag.Int("goroutines", 1, "callers in loop mode")
	duration := flag.Duration("duration", 3*time.Second, "loop duration")
	addr := flag.String("http", "127.0.0.1:18080", "listen address in http mode")
	rate := flag.Float64("rate", 10000, "calls per second in rate mode")
	heapKey := flag.Bool("heap-key", false, "pass work() a heap copy of its string, not the literal")
	flag.Parse()
	if *heapKey {
		key = string([]byte{'k', 'e', 'y'})
	}
	switch *mode {
	case "loop":
		var calls atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(*duration)
		for g := 0; g < *goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := key
				local := int64(0)
				for n := 0; ; n++ {
					sink.Add(int64(work(n, key)))
					local++
					if local%1024 == 0 && time.Now().After(deadline) {
						break
					}
				}
				calls.Add(local)
			}()
		}
		wg.Wait()
		el := time.Since(start)
		c := calls.Load()
		fmt.Printf("calls %d ns_per_call %.1f\n", c, float64(el.Nanoseconds())*float64(*goroutines)/float64(c))
	case "rate":
		start := time.Now()
		calls := 0
		var busy time.Duration
		var bursts []burst
		for {
			el := time.Since(start)
			if el >= *duration {
				break
			}
			t0 := time.Now()
			n0 := calls
			for due := int(el.Seconds() * *rate); calls < due; calls++ {
				// A tracer slower than the rate (dlv, bpftrace) must not
				// turn one burst into an endless catch-up.
				if calls%64 == 0 && time.Since(start) >= *duration {
					break
				}
				sink.Add(int64(work(calls, key)))
			}
			d := time.Since(t0)
			busy += d
			if calls > n0 {
				bursts = append(bursts, burst{d, calls - n0})
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Printf("calls %d ns_per_call %.1f\n", calls, float64(busy.Nanoseconds())/float64(max(calls, 1)))
		fmt.Printf("trimmed %.1f\n", trimmed(bursts))
	case "http":
		http.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			fmt.Fprintf(w, "%d\n", work(n, r.URL.Path))
		})
		if err := http.ListenAndServe(*addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
