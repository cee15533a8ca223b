// Command values calls functions that take every kind of Go value Probe
// decodes. Call N (N = 0, 1, 2, ...) derives every argument from N, so a test
// can check any hit; see each function's comment for what it receives.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
	"unsafe"
)

type Point struct{ X, Y int }

type Base struct {
	ID  int64
	Tag string
}

type Address struct {
	City string
	Zip  int32
}

type Customer struct {
	Name    string
	Address Address
}

type Item struct {
	SKU   string
	Qty   int
	Price float64
}

// Order has an embedded struct, pointers, slices, maps, arrays and times.
type Order struct {
	Base
	Customer *Customer
	Items    []Item
	Meta     map[string]int
	Notes    [2]string
	When     time.Time
	Timeout  time.Duration
}

// Node is recursive; a ring of Nodes is a pointer cycle.
// Nums holds floats and complex numbers in memory, where a uprobe can read
// them (as arguments they travel in XMM registers, which it cannot).
type Nums struct {
	F32  float32
	F64  float64
	C64  complex64
	C128 complex128
	Inf  float64
	NaN  float64
}

type Node struct {
	Val  int
	Next *Node
}

type Shape interface{ Area() float64 }

type Rect struct{ W, H float64 }

func (r Rect) Area() float64 { return r.W * r.H }

type Circle struct{ R float64 }

func (c *Circle) Area() float64 { return 3 * c.R * c.R }

type CodeErr struct{ Code int }

func (e *CodeErr) Error() string { return "code " + strconv.Itoa(e.Code) }

// scalars(N): b=N%2==0, i8=int8(N%100), i16=-N, i32=N*3, i64=-N<<33,
// u8=uint8(N), u16=uint16(N*7), u32=N*5, u64=N<<40, i=-N, u=N*11,
// uptr=N*13, c64=complex(N, -N), c128=complex(N/2, 2N), up=unsafe.Pointer(&global),
// nums=&Nums{N/4, N/8, complex(N, -N), complex(N/2, 2N), +Inf, NaN}
//
//go:noinline
func scalars(b bool, i8 int8, i16 int16, i32 int32, i64 int64, u8 uint8, u16 uint16,
	u32 uint32, u64 uint64, i int, u uint, uptr uintptr, c64 complex64, c128 complex128,
	up unsafe.Pointer, nums *Nums) int {
	if b {
		return int(i8) + int(i16) + int(i32) + int(i64) + int(u8) + int(u16) + int(u32) + int(u64) + i + int(u) + int(uptr) + int(real(c64)) + int(imag(c128)) + int(uintptr(up)&1)
	}
	return 0
}

// composite(N): o = order(N); pts = [{N,1},{N,2}]; arr = [N, -N, 7];
// m = {"a": N, "b": N+1}; mp = {N: &{N, N}}; nilm = nil; empty = []int{};
// nils = nil; nilp = nil.
//
//go:noinline
func composite(o *Order, pts []Point, arr [3]int16, m map[string]int, mp map[int]*Point,
	nilm map[string]int, empty []int, nils []int, nilp *Point) int {
	return len(o.Items) + len(pts) + int(arr[0]) + len(m) + len(mp) + len(nilm) + len(empty) + len(nils)
}

// ifaces(N): e = any(N) (an int); s = Rect{N, 2} (value); sp = &Circle{N}
// (pointer); err = &CodeErr{N}; nilerr = nil; wrapped = fmt.Errorf("wrap %d: %w", N, &CodeErr{N});
// n = nil; str = any("s<N>").
//
//go:noinline
func ifaces(e any, s Shape, sp Shape, err error, nilerr error, wrapped error, n any, str any) int {
	if err != nil && nilerr == nil && n == nil {
		return 1
	}
	return 0
}

// misc(N): ch = make(chan int, 4) holding N%4 values; f = double; list = 3
// Nodes N, N+1, N+2; ring = a 2-Node cycle N, N+1; words = ["w<N>", "x<N>"];
// nilch = nil; nilf = nil.
//
//go:noinline
func misc(ch chan int, f func(int) int, list *Node, ring *Node, words []string, nilch chan int, nilf func(int) int) int {
	return len(ch) + f(1) + list.Val + ring.Val + len(words)
}

// big(N): a slice of a million int64, every element N.
//
//go:noinline
func big(xs []int64, n int) int { return len(xs) + n }

// State is mutated right after each snapshot(N) call returns.
type State struct {
	Gen  int
	Vals []int
	Name string
}

// snapshot(N): s.Gen = N, every s.Vals[i] = N, s.Name = "gen-<N>".
//
//go:noinline
func snapshot(s *State) int { return s.Gen }

// growing(N, size): m = {i: i + N for i < size}, for size 45..60 in turn,
// called after each insert. Go ≤1.23 maps grow incrementally (each write
// moves one or two old buckets): going from 8 buckets to 16 starts at the
// 49th (Go 1.21) or 53rd (1.22, 1.23) insert and takes a few more, so some
// of these calls see entries still in oldbuckets. Swiss tables (Go ≥1.24)
// grow at once.
//
//go:noinline
func growing(m map[int]int) int { return len(m) }

func double(x int) int { return 2 * x }

// Max is generic: instantiated with int and string.
//
//go:noinline
func Max[T int | string](a, b T) T {
	if a > b {
		return a
	}
	return b
}

var global int64 = 42

func step(n int, bigSlice []int64, st *State) {
	scalars(n%2 == 0, int8(n%100), int16(-n), int32(n*3), -int64(n)<<33, uint8(n), uint16(n*7),
		uint32(n*5), uint64(n)<<40, -n, uint(n*11), uintptr(n*13),
		complex(float32(n), float32(-n)), complex(float64(n)/2, float64(2*n)), unsafe.Pointer(&global),
		&Nums{float32(n) / 4, float64(n) / 8, complex(float32(n), float32(-n)), complex(float64(n)/2, float64(2*n)),
			math.Inf(1), math.NaN()})

	o := &Order{
		Base:     Base{ID: int64(n), Tag: "t" + strconv.Itoa(n)},
		Customer: &Customer{Name: "c" + strconv.Itoa(n), Address: Address{City: "Paris", Zip: int32(75000 + n%100)}},
		Items:    []Item{{SKU: "s1", Qty: n, Price: 1.5}, {SKU: "s2", Qty: n + 1, Price: 2.25}},
		Meta:     map[string]int{"k": n},
		Notes:    [2]string{"n" + strconv.Itoa(n), ""},
		When:     time.Unix(1795777200+int64(n), 5000).UTC(),
		Timeout:  time.Duration(n) * time.Millisecond,
	}
	composite(o, []Point{{n, 1}, {n, 2}}, [3]int16{int16(n), int16(-n), 7},
		map[string]int{"a": n, "b": n + 1}, map[int]*Point{n: {n, n}}, nil, []int{}, nil, nil)

	ifaces(any(n), Rect{float64(n), 2}, &Circle{float64(n)}, &CodeErr{n}, nil,
		fmt.Errorf("wrap %d: %w", n, &CodeErr{n}), nil, any("s"+strconv.Itoa(n)))

	ch := make(chan int, 4)
	for i := 0; i < n%4; i++ {
		ch <- i
	}
	list := &Node{n, &Node{n + 1, &Node{n + 2, nil}}}
	ring := &Node{Val: n}
	ring.Next = &Node{Val: n + 1, Next: ring}
	misc(ch, double, list, ring, []string{"w" + strconv.Itoa(n), "x" + strconv.Itoa(n)}, nil, nil)

	for i := range bigSlice {
		bigSlice[i] = int64(n)
	}
	big(bigSlice, n)

	// snapshot, then mutate everything it could see: a capture made later
	// than the call would show a mix of generations.
	st.Gen = n
	for i := range st.Vals {
		st.Vals[i] = n
	}
	st.Name = "gen-" + strconv.Itoa(n)
	snapshot(st)
	st.Gen = -1
	for i := range st.Vals {
		st.Vals[i] = -1
	}
	st.Name = "mutated"

	Max(n, n+1)
	Max("a"+strconv.Itoa(n), "b")

	gm := make(map[int]int)
	for i := 0; i < 60; i++ {
		gm[i] = i + n
		if i+1 >= 45 {
			growing(gm)
		}
	}
}

func main() {
	interval := flag.Duration("interval", 20*time.Millisecond, "pause between calls")
	count := flag.Int("count", -1, "number of calls (-1: forever)")
	flag.Parse()
	bigSlice := make([]int64, 1_000_000)
	st := &State{Vals: make([]int, 64)}
	for n := 0; *count < 0 || n < *count; n++ {
		step(n, bigSlice, st)
		fmt.Printf("tick %d %d\n", n, time.Now().UnixNano())
		if *interval > 0 {
			time.Sleep(*interval)
		}
	}
	_ = errors.New
	os.Stdout.Sync()
}
