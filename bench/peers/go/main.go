// go-bench: the Go peer of weft's scheduler benchmarks (../shared/BENCH.md).
//
//	go-bench BENCH [--workers N]
//
// BENCH is one of yield, spawn, skynet, fib, sleep, pingpong, ring. --workers
// sets GOMAXPROCS (default: all CPUs; yield always 1, as BENCH.md defines it).
// Prints one line: name=<bench> impl=go workers=<n> value=<v> unit=<u>.
// Standard library only, so it builds without network access.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func fail(bench, format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-bench %s: %s\n", bench, fmt.Sprintf(format, a...))
	os.Exit(1)
}

// yield: 1,000 goroutines each call runtime.Gosched 10,000 times.
func benchYield() (float64, string) {
	const tasks, each = 1000, 10000
	t0 := time.Now()
	var wg sync.WaitGroup
	wg.Add(tasks)
	for i := 0; i < tasks; i++ {
		go func() {
			for j := 0; j < each; j++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / (tasks * each), "ns"
}

// spawn: one goroutine spawns 1,000,000 goroutines that count down a wait group.
func benchSpawn() (float64, string) {
	const n = 1000000
	var elapsed time.Duration
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		t0 := time.Now()
		wg.Add(n)
		for i := 0; i < n; i++ {
			go wg.Done()
		}
		wg.Wait()
		elapsed = time.Since(t0)
		close(done)
	}()
	<-done
	return float64(elapsed.Nanoseconds()) / n, "ns"
}

func skynet(num, size uint64) uint64 {
	if size == 1 {
		return num
	}
	const div = 10
	var res [div]chan uint64
	sub := size / div
	for i := uint64(0); i < div; i++ {
		res[i] = make(chan uint64, 1)
		go func(c chan uint64, n uint64) { c <- skynet(n, sub) }(res[i], num+i*sub)
	}
	var sum uint64
	for i := 0; i < div; i++ {
		sum += <-res[i] // the join
	}
	return sum
}

func benchSkynet() (float64, string) {
	t0 := time.Now()
	r := skynet(0, 1000000)
	el := time.Since(t0)
	if r != 499999500000 {
		fail("skynet", "result %d", r)
	}
	return float64(el.Nanoseconds()) / 1e6, "ms"
}

func fib(n int) int {
	if n < 2 {
		return n
	}
	c := make(chan int, 1) // the child's join handle
	go func() { c <- fib(n - 1) }()
	x := fib(n - 2)
	return x + <-c
}

func benchFib() (float64, string) {
	t0 := time.Now()
	r := fib(30)
	el := time.Since(t0)
	if r != 832040 {
		fail("fib", "fib(30) = %d", r)
	}
	return float64(el.Nanoseconds()) / 1e6, "ms"
}

// sleep: 100,000 goroutines sleep 10 ms, then count down a wait group.
func benchSleep() (float64, string) {
	const n = 100000
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			time.Sleep(10 * time.Millisecond)
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / 1e6, "ms"
}

func benchPingpong() (float64, string) {
	const rounds = 1000000
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for x := range ping {
			pong <- x + 1
		}
	}()
	var v int64
	t0 := time.Now()
	for i := 0; i < rounds; i++ {
		ping <- v
		v = <-pong
	}
	el := time.Since(t0)
	close(ping)
	if v != rounds {
		fail("pingpong", "value %d", v)
	}
	return float64(el.Nanoseconds()) / rounds, "ns"
}

// ring: member k receives from ch[k-1] and sends to ch[k] (1-based, mod 503).
func benchRing() (float64, string) {
	const size, hops = 503, 10000000
	var ch [size]chan int64
	for k := range ch {
		ch[k] = make(chan int64)
	}
	type result struct {
		id int
		at time.Time
	}
	win := make(chan result, 1)
	for k := 1; k <= size; k++ {
		go func(id int, in, out chan int64) {
			for t := range in {
				if t == 0 {
					win <- result{id, time.Now()}
					return
				}
				out <- t - 1
			}
		}(k, ch[(k-2+size)%size], ch[k-1])
	}
	t0 := time.Now()
	ch[size-1] <- hops
	r := <-win
	if r.id != hops%size+1 {
		fail("ring", "winner %d, want %d", r.id, hops%size+1)
	}
	return float64(r.at.Sub(t0).Nanoseconds()) / hops, "ns"
}

func main() {
	benches := map[string]func() (float64, string){
		"yield": benchYield, "spawn": benchSpawn, "skynet": benchSkynet, "fib": benchFib,
		"sleep": benchSleep, "pingpong": benchPingpong, "ring": benchRing,
	}
	if len(os.Args) < 2 || benches[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: go-bench yield|spawn|skynet|fib|sleep|pingpong|ring [--workers N]")
		os.Exit(2)
	}
	name := os.Args[1]
	workers := runtime.NumCPU()
	if name == "yield" {
		workers = 1
	}
	for i := 2; i < len(os.Args); i++ {
		if os.Args[i] == "--workers" && i+1 < len(os.Args) {
			n, err := strconv.Atoi(os.Args[i+1])
			if err != nil || n < 1 {
				fmt.Fprintln(os.Stderr, "go-bench: bad --workers")
				os.Exit(2)
			}
			workers = n
			i++
		} else {
			fmt.Fprintln(os.Stderr, "go-bench: unknown argument", os.Args[i])
			os.Exit(2)
		}
	}
	runtime.GOMAXPROCS(workers)
	v, unit := benches[name]()
	fmt.Printf("name=%s impl=go workers=%d value=%.3f unit=%s\n", name, workers, v, unit)
}
