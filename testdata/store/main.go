// Command store is Probe's first trace target: a tiny key-value store whose
// every call derives its arguments from a counter, so a test that sees any
// hit can check every decoded value against what the program passed.
//
// Hit N (N = 0, 1, 2, ...) calls:
//
//	(*Store).Put(s, key="k<N>", val=[]byte{N%256, (N+1)%256, (N+2)%256}, ttl=N seconds)
//	  with s.name="main-store", s.shard=7, s.puts=N, s.ratio=N/2, s.ready=(N%2==0)
//	kinds(int8(N%100), int16(-N), int32(N*3), int64(N)<<33, uint8(N%256),
//	  uint16(N%65536), uint32(N*5), uint64(N)<<40, int(-N*7), uint(N*11),
//	  uintptr(N*13), N%2==1, float32(N)/4, float64(N)/8, "name-<N>")
//
// Each loop iteration prints "tick N <unix-nanos>" on stdout so a test can
// see that the program was never paused while it was traced.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Level is a named integer type, decoded as a number.
type Level int16

// Store is a toy in-memory store.
type Store struct {
	name  string
	shard int32
	puts  uint64
	ratio float64
	ready bool
	level Level
	mu    sync.Mutex
	data  map[string][]byte
}

// Put stores val under key; it is the function the tests and the demo probe.
//
//go:noinline
func (s *Store) Put(key string, val []byte, ttl time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, existed := s.data[key]
	s.data[key] = val
	s.puts++
	s.ratio = float64(s.puts) / 2
	s.ready = s.puts%2 == 0
	_ = ttl
	return !existed
}

// Get is here so the symbol table has near matches for "Put"-like typos.
//
//go:noinline
func (s *Store) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return v, ok
}

var sink uint64

// kinds takes one parameter of every basic Go kind the foundation decodes.
//
//go:noinline
func kinds(a int8, b int16, c int32, d int64, e uint8, f uint16, g uint32, h uint64,
	i int, j uint, k uintptr, ok bool, f32 float32, f64 float64, name string) {
	sum := uint64(a) + uint64(b) + uint64(c) + uint64(d) + uint64(e) + uint64(f) +
		uint64(g) + h + uint64(i) + uint64(j) + uint64(k) + uint64(len(name))
	if ok {
		sum += uint64(f32) + uint64(f64)
	}
	sink += sum
}

func step(s *Store, n int) {
	key := "k" + strconv.Itoa(n)
	val := []byte{byte(n), byte(n + 1), byte(n + 2)}
	s.Put(key, val, time.Duration(n)*time.Second)
	if got, ok := s.Get(key); !ok || len(got) != 3 {
		panic("store lost " + key)
	}
	kinds(int8(n%100), int16(-n), int32(n*3), int64(n)<<33, uint8(n), uint16(n),
		uint32(n*5), uint64(n)<<40, -n*7, uint(n*11), uintptr(n*13), n%2 == 1,
		float32(n)/4, float64(n)/8, "name-"+strconv.Itoa(n))
	if len(s.data) > 1000 {
		s.mu.Lock()
		s.data = make(map[string][]byte)
		s.mu.Unlock()
	}
}

func main() {
	interval := flag.Duration("interval", 20*time.Millisecond, "pause between calls")
	count := flag.Int("count", -1, "number of calls (-1: forever)")
	addr := flag.String("http", "", "also serve GET /put?n=N on this address")
	flag.Parse()

	s := &Store{name: "main-store", shard: 7, level: 3, data: make(map[string][]byte)}
	// Hit N sees the state Put left after hit N-1: puts=N, ratio=N/2, ready=(N%2==0).
	s.ready = true
	if *addr != "" {
		go serve(*addr, s)
	}
	for n := 0; *count < 0 || n < *count; n++ {
		step(s, n)
		fmt.Printf("tick %d %d\n", n, time.Now().UnixNano())
		if *interval > 0 {
			time.Sleep(*interval)
		}
	}
	os.Stdout.Sync()
}

var httpMu sync.Mutex

func serve(addr string, s *Store) {
	http.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		httpMu.Lock()
		step(s, n)
		httpMu.Unlock()
		fmt.Fprintf(w, "ok %d\n", n)
	})
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
