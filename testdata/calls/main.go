// Command calls exercises breakpoints beyond function entry: return values
// and durations, deep recursion that grows goroutine stacks, conditions,
// rate limits, inlined functions and loops. -mode picks the workload; the
// program prints what it did so a test can compare.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"
)

var ErrDivZero = errors.New("division by zero")

// divide returns named results; b == 0 gives an error.
//
//go:noinline
func divide(a, b int) (q int, err error) {
	if b == 0 {
		return 0, ErrDivZero
	}
	return a / b, nil
}

// sleepy sleeps 10ms and returns n*2.
//
//go:noinline
func sleepy(n int) int {
	time.Sleep(10 * time.Millisecond)
	return n * 2
}

// recurse recurses depth times with a big frame, forcing stack growth.
//
//go:noinline
func recurse(depth int, pad [256]byte) int {
	if depth == 0 {
		return int(pad[0])
	}
	pad[depth%256] = byte(depth)
	return recurse(depth-1, pad) + 1
}

// filter is probed with a condition; the test counts matches itself.
//
//go:noinline
func filter(n int, name string) int {
	return n + len(name)
}

// hot is called 10000 times a second in -mode rate.
//
//go:noinline
func hot(n int) int { return n + 1 }

var counter int

// bump is small enough to be inlined into its callers.
func bump(by int) int {
	counter += by
	return counter
}

//go:noinline
func useBump(n int) int {
	a := bump(n)
	b := bump(2 * n)
	return a + b
}

//go:noinline
func sq(i int) int { return i * i }

// loop's line 78 runs once per iteration with i and s live.
//
//go:noinline
func loop(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += sq(i)
	}
	return s
}

// mayPanic panics for multiples of 5; safe recovers and returns -1.
//
//go:noinline
func mayPanic(n int) int {
	if n%5 == 0 {
		panic(fmt.Sprint("boom ", n))
	}
	return n * 3
}

func safe(n int) (r int) {
	defer func() {
		if recover() != nil {
			r = -1
		}
	}()
	return mayPanic(n)
}

// spawned is called once by each of many goroutines at the same moment.
//
//go:noinline
func spawned(id int) int {
	time.Sleep(time.Millisecond)
	return id + 1
}

// scaled(x, n, tag): a float argument before integer ones, in a function
// with a stack check (it calls hot), for binaries without DWARF: x travels
// in X0, n in RAX, tag in RBX and RCX.
//
//go:noinline
func scaled(x float64, n int, tag string) int {
	return hot(int(x)) + n + len(tag)
}

func main() {
	mode := flag.String("mode", "returns", "returns|recurse|filter|rate|inline|loop|panics|floats|goroutines")
	count := flag.Int("count", 100, "iterations")
	flag.Parse()
	switch *mode {
	case "returns":
		for n := 0; n < *count; n++ {
			q, err := divide(n*6, n%3)
			fmt.Printf("divide %d %d %v\n", n, q, err)
			if n%10 == 0 {
				sleepy(n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	case "recurse":
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < *count; i++ {
					var pad [256]byte
					pad[0] = byte(g)
					if got := recurse(100+g, pad); got != 100+g+g {
						errs <- fmt.Errorf("recurse(%d) = %d", 100+g, got)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			fmt.Println(err)
			os.Exit(3)
		}
		fmt.Println("recurse ok")
	case "floats":
		for n := 0; n < *count; n++ {
			scaled(float64(n)/2, n, "tag")
			time.Sleep(time.Millisecond)
		}
	case "filter":
		for n := 0; n < *count; n++ {
			name := "even"
			if n%2 == 1 {
				name = "odd"
			}
			filter(n, name)
			if n%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		fmt.Printf("filter calls %d\n", *count)
	case "rate":
		// 10000 calls a second for count/10000 seconds.
		next := time.Now()
		for n := 0; n < *count; n++ {
			hot(n)
			next = next.Add(100 * time.Microsecond)
			for time.Now().Before(next) {
			}
		}
		fmt.Printf("rate calls %d\n", *count)
	case "inline":
		total := 0
		for n := 0; n < *count; n++ {
			total += useBump(n)
			time.Sleep(time.Millisecond)
		}
		fmt.Printf("inline %d %d\n", total, counter)
	case "panics":
		sum := 0
		for n := 0; n < *count; n++ {
			sum += safe(n)
		}
		fmt.Printf("panics %d\n", sum)
	case "loop":
		for n := 0; n < *count; n++ {
			loop(5)
			time.Sleep(time.Millisecond)
		}
	case "goroutines":
		// -count goroutines, all alive at once, released together.
		time.Sleep(200 * time.Millisecond)
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		var mu sync.Mutex
		sum := 0
		for g := 0; g < *count; g++ {
			ready.Add(1)
			done.Add(1)
			go func(g int) {
				defer done.Done()
				ready.Done()
				<-start
				r := spawned(g)
				mu.Lock()
				sum += r
				mu.Unlock()
			}(g)
		}
		ready.Wait()
		close(start)
		done.Wait()
		fmt.Printf("goroutines %d sum %d\n", *count, sum)
	}
}
