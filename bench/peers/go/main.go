// go-bench: the Go peer of weft's scheduler benchmarks (bench/weft_bench.c).
//
//	go-bench BENCH [--workers N]
//
// BENCH is one of yield, spawn, skynet, fib, sleep, pingpong, ring, chan, gen,
// park1m.
// --workers sets GOMAXPROCS (default: all CPUs; yield and gen 1).
// Prints one line: name=<bench> impl=go workers=<n> value=<v> unit=<u>.
// Standard library only, so it builds without network access.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
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

// chan: 4 producers, 4 consumers, one channel buffered for 1,024, 10,000,000
// items (the values 1..N); ns per item (items/s = 1e9 / value). The main
// goroutine closes the channel once the producers are done.
func benchChan() (float64, string) {
	const producers, consumers, items = 4, 4, 10000000
	const per = items / producers
	ch := make(chan int64, 1024)
	var got [consumers]struct{ n, sum uint64 }
	var pwg, cwg sync.WaitGroup
	t0 := time.Now()
	cwg.Add(consumers)
	for c := 0; c < consumers; c++ {
		go func(id int) {
			var n, sum uint64
			for v := range ch {
				n++
				sum += uint64(v)
			}
			got[id].n, got[id].sum = n, sum
			cwg.Done()
		}(c)
	}
	pwg.Add(producers)
	for p := 0; p < producers; p++ {
		go func(id int64) {
			for v := id*per + 1; v <= (id+1)*per; v++ {
				ch <- v
			}
			pwg.Done()
		}(int64(p))
	}
	pwg.Wait()
	close(ch)
	cwg.Wait()
	el := time.Since(t0)
	var n, sum uint64
	for _, g := range got {
		n += g.n
		sum += g.sum
	}
	if n != items || sum != uint64(items)*(items+1)/2 {
		fail("chan", "%d items summing to %d", n, sum)
	}
	return float64(el.Nanoseconds()) / items, "ns"
}

// gen: ns per generator value, GOMAXPROCS=1. Go 1.19 has no iter.Pull, so
// the generator is Go's idiom: a goroutine and two unbuffered channels, one
// for the values out and one for what the caller sends back (the body waits
// for each resume, as a generator does). Yields 0..N-1 (N = 10,000,000); each
// resume sends the count received so far; checks as weft's: values sum to
// N(N-1)/2, the body's total of what it was sent is N(N+1)/2.
func benchGen() (float64, string) {
	const n = 10000000
	out, in := make(chan uint64), make(chan uint64)
	total := make(chan uint64, 1)
	go func() {
		insum := <-in // the first resume starts the body
		for i := uint64(0); i < n; i++ {
			out <- i
			insum += <-in
		}
		close(out)
		total <- insum
	}()
	var sum, got uint64
	t0 := time.Now()
	for {
		in <- got
		v, ok := <-out
		if !ok {
			break
		}
		sum += v
		got++
	}
	el := time.Since(t0)
	insum := <-total
	if got != n || sum != uint64(n)*(n-1)/2 || insum != uint64(n)*(n+1)/2 {
		fail("gen", "%d values summing to %d, sent total %d", got, sum, insum)
	}
	return float64(el.Nanoseconds()) / n, "ns"
}

// rss: the process's resident set in bytes (/proc/self/statm), 0 if unreadable.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res uint64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		return 0
	}
	return res * uint64(os.Getpagesize())
}

// park1m: as weft's (bench/weft_bench_park.c). 1,000,000 goroutines each
// count themselves in and wait on a semaphore (a channel: one receive per
// permit); the figure is the time until all have counted themselves in.
// Then 1,000,000 permits are sent, every woken goroutine checks the value it
// was started with and counts down a WaitGroup. Extra lines: park1m.rss (B
// per parked goroutine) and park1m.back (s from the last return until RSS
// is within 256 MiB of the start, polled every 10 ms for at most 20 s; no
// line when it does not get there). The runtime's own scavenger gives the
// memory back; nothing here calls debug.FreeOSMemory.
func benchPark1m() (float64, string) {
	const n = 1000000
	const backLimit = 256 << 20
	sem := make(chan struct{})
	var arrived, bad int64
	var wg sync.WaitGroup
	wg.Add(n)
	rss0 := rss()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func(i int) {
			atomic.AddInt64(&arrived, 1)
			<-sem
			if i < 0 || i >= n {
				atomic.AddInt64(&bad, 1)
			}
			wg.Done()
		}(i)
	}
	for atomic.LoadInt64(&arrived) < n { // bounded: every goroutine gets there
		time.Sleep(100 * time.Microsecond)
	}
	parked := time.Since(t0)
	rssParked := rss()
	for i := 0; i < n; i++ {
		sem <- struct{}{}
	}
	wg.Wait()
	tDone := time.Now()
	if bad != 0 {
		fail("park1m", "%d goroutines woke wrongly", bad)
	}
	per := 0.0
	if rssParked > rss0 {
		per = float64(rssParked-rss0) / n
	}
	extra = append(extra, fmt.Sprintf("name=park1m.rss impl=go workers=%d value=%.3f unit=B",
		runtime.GOMAXPROCS(0), per))
	for {
		if rss() <= rss0+backLimit {
			extra = append(extra, fmt.Sprintf("name=park1m.back impl=go workers=%d value=%.3f unit=s",
				runtime.GOMAXPROCS(0), time.Since(tDone).Seconds()))
			break
		}
		if time.Since(tDone) > 20*time.Second {
			fmt.Fprintln(os.Stderr, "go-bench park1m: RSS not back within 256 MiB of the start 20 s after the spike")
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return parked.Seconds(), "s"
}

// extra: further lines of the benchmark that ran, printed after its own.
var extra []string

func main() {
	benches := map[string]func() (float64, string){
		"yield": benchYield, "spawn": benchSpawn, "skynet": benchSkynet, "fib": benchFib,
		"sleep": benchSleep, "pingpong": benchPingpong, "ring": benchRing,
		"chan": benchChan, "gen": benchGen, "park1m": benchPark1m,
	}
	if len(os.Args) < 2 || benches[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: go-bench yield|spawn|skynet|fib|sleep|pingpong|ring|chan|gen|park1m [--workers N]")
		os.Exit(2)
	}
	name := os.Args[1]
	workers := runtime.NumCPU()
	if name == "yield" || name == "gen" {
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
	for _, l := range extra {
		fmt.Println(l)
	}
}
