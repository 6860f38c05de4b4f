// boost-fiber-bench: the Boost.Fiber peer of weft's scheduler benchmarks
// (bench/weft_bench.c), same counts and results as weft's.
//
//   boost-fiber-bench BENCH [--workers N]
//
// Schedulers: yield uses round_robin on one thread (as weft's: 1 worker);
// spawn, skynet, fib, sleep use work_stealing on N threads (default: all
// CPUs); pingpong and ring use round_robin with 1 worker and work_stealing with
// more, over unbuffered_channel. Threads are set up as in Boost.Fiber's own
// examples (examples/work_stealing.cpp, skynet_stealing_join.cpp): every
// thread installs work_stealing(N), they meet on a barrier, the helpers then
// block their main fiber on a condition variable until the benchmark is done.
// Stacks: fixedsize_stack of 16 KiB (Boost's skynet examples use 8 KiB; weft's
// minimum is 16 KiB); children of skynet and fib are launched with
// launch::dispatch (child runs first), as in Boost's skynet examples.
// chan: buffered_channel<int64_t>(1024) (Boost requires a power of two; its
// ring keeps one slot free, so it holds 1,023 items), work_stealing.
// gen: not Boost.Fiber (a generator needs no scheduler) but Boost.Context's
// fiber, the switch Boost.Coroutine2's pull_type is built on. pull_type only
// passes values out of the body; gen sends values both ways, so the body and
// the caller exchange them through a slot they share, as a generator built
// on Boost.Context does. One thread; 64 KiB stack (the switch peer's).
#include <boost/context/fiber.hpp>
#include <boost/fiber/all.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fibers = boost::fibers;
using clk = std::chrono::steady_clock;
using stack_alloc = fibers::fixedsize_stack;

static constexpr std::size_t kStack = 16 * 1024;

[[noreturn]] static void fail(const char *bench, const char *msg, long long v)
{
	std::fprintf(stderr, "boost-fiber-bench %s: %s %lld\n", bench, msg, v);
	std::exit(1);
}

// ------------------------------------------------------------ thread pool ---

// Plain-thread barrier (C++17 has none): the work_stealing schedulers must all
// exist before the benchmark starts.
class thread_barrier {
	std::mutex m_;
	std::condition_variable cv_;
	unsigned left_;
public:
	explicit thread_barrier(unsigned n) : left_(n) {}
	void wait()
	{
		std::unique_lock<std::mutex> lk(m_);
		if (--left_ == 0) {
			cv_.notify_all();
			return;
		}
		cv_.wait(lk, [this] { return left_ == 0; });
	}
};

static std::mutex done_mtx;
static fibers::condition_variable_any done_cv;
static bool done = false;

// Run body() on the calling thread's main fiber with `workers` threads
// stealing work; the helpers park their main fiber until body() returned.
template <class F> static void with_workers(unsigned workers, bool stealing, F body)
{
	if (!stealing) {
		body();   // round_robin, the default scheduler
		return;
	}
	thread_barrier b(workers);
	std::vector<std::thread> helpers;
	for (unsigned i = 1; i < workers; i++)
		helpers.emplace_back([workers, &b] {
			fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(workers);
			b.wait();
			std::unique_lock<std::mutex> lk(done_mtx);
			done_cv.wait(lk, [] { return done; });
		});
	fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(workers);
	b.wait();
	body();
	{
		std::unique_lock<std::mutex> lk(done_mtx);
		done = true;
	}
	done_cv.notify_all();
	for (auto &t : helpers)
		t.join();
}

// A latch: the last count_down wakes the waiting fiber.
class latch {
	std::atomic<std::uint64_t> left_;
	fibers::mutex m_;
	fibers::condition_variable cv_;
	bool open_ = false;
public:
	explicit latch(std::uint64_t n) : left_(n) {}
	void count_down()
	{
		// acq_rel: the last decrement sees every other child's work.
		if (left_.fetch_sub(1, std::memory_order_acq_rel) != 1)
			return;
		std::unique_lock<fibers::mutex> lk(m_);
		open_ = true;
		cv_.notify_one();
	}
	void wait()
	{
		std::unique_lock<fibers::mutex> lk(m_);
		cv_.wait(lk, [this] { return open_; });
	}
};

static double ms_since(clk::time_point t0)
{
	return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

// ---------------------------------------------------------------- benches ---

static double bench_yield(unsigned workers)
{
	constexpr unsigned tasks = 1000, each = 10000;
	double ns = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		auto t0 = clk::now();
		std::vector<fibers::fiber> fs;
		fs.reserve(tasks);
		for (unsigned i = 0; i < tasks; i++)
			fs.emplace_back(std::allocator_arg, salloc, [] {
				for (unsigned j = 0; j < each; j++)
					boost::this_fiber::yield();
			});
		for (auto &f : fs)
			f.join();
		ns = ms_since(t0) * 1e6 / (double(tasks) * each);
	});
	return ns;
}

static double latched(unsigned workers, unsigned n, bool sleep)
{
	double ms = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		latch l(n);
		auto t0 = clk::now();
		for (unsigned i = 0; i < n; i++) {
			if (sleep)
				fibers::fiber(fibers::launch::dispatch, std::allocator_arg, salloc, [&l] {
					boost::this_fiber::sleep_for(std::chrono::milliseconds(10));
					l.count_down();
				}).detach();
			else
				fibers::fiber(fibers::launch::dispatch, std::allocator_arg, salloc, [&l] { l.count_down(); }).detach();
		}
		l.wait();
		ms = ms_since(t0);
	});
	return ms;
}

static void skynet(stack_alloc &salloc, std::uint64_t &res, std::uint64_t num, std::uint64_t size)
{
	constexpr std::uint64_t div = 10;
	if (size == 1) {
		res = num;
		return;
	}
	std::uint64_t sub = size / div;
	std::uint64_t results[div] = {};
	fibers::fiber fs[div];
	for (std::uint64_t i = 0; i < div; i++)
		fs[i] = fibers::fiber(fibers::launch::dispatch, std::allocator_arg, salloc, skynet,
		                      std::ref(salloc), std::ref(results[i]), num + i * sub, sub);
	std::uint64_t sum = 0;
	for (std::uint64_t i = 0; i < div; i++) {
		fs[i].join();
		sum += results[i];
	}
	res = sum;
}

static double bench_skynet(unsigned workers)
{
	double ms = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		std::uint64_t r = 0;
		auto t0 = clk::now();
		skynet(salloc, r, 0, 1000000);
		ms = ms_since(t0);
		if (r != 499999500000ull)
			fail("skynet", "result", (long long)r);
	});
	return ms;
}

static void fib(stack_alloc &salloc, std::uint64_t &res, std::uint64_t n)
{
	if (n < 2) {
		res = n;
		return;
	}
	std::uint64_t a = 0, b = 0;
	fibers::fiber child(fibers::launch::dispatch, std::allocator_arg, salloc, fib,
	                    std::ref(salloc), std::ref(a), n - 1);
	fib(salloc, b, n - 2);
	child.join();
	res = a + b;
}

static double bench_fib(unsigned workers)
{
	double ms = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		std::uint64_t r = 0;
		auto t0 = clk::now();
		fib(salloc, r, 30);
		ms = ms_since(t0);
		if (r != 832040)
			fail("fib", "fib(30) =", (long long)r);
	});
	return ms;
}

using chan = fibers::unbuffered_channel<std::int64_t>;

static double bench_pingpong(unsigned workers)
{
	constexpr int rounds = 1000000;
	double ns = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		chan ping, pong;
		fibers::fiber echo(std::allocator_arg, salloc, [&] {
			std::int64_t x;
			while (ping.pop(x) == fibers::channel_op_status::success)
				if (pong.push(x + 1) != fibers::channel_op_status::success)
					break;
		});
		std::int64_t v = 0;
		auto t0 = clk::now();
		for (int i = 0; i < rounds; i++) {
			ping.push(v);
			pong.pop(v);
		}
		ns = ms_since(t0) * 1e6 / rounds;
		ping.close();
		echo.join();
		if (v != rounds)
			fail("pingpong", "value", (long long)v);
	});
	return ns;
}

static double bench_ring(unsigned workers)
{
	constexpr int size = 503, hops = 10000000;
	double ns = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		std::vector<std::unique_ptr<chan>> ch;
		for (int k = 0; k < size; k++)
			ch.emplace_back(new chan);
		int winner = 0;
		clk::time_point t1;
		std::vector<fibers::fiber> fs;
		for (int id = 1; id <= size; id++) {
			chan *in = ch[(id - 2 + size) % size].get(), *out = ch[id - 1].get();
			fs.emplace_back(std::allocator_arg, salloc, [&, id, in, out] {
				std::int64_t t;
				while (in->pop(t) == fibers::channel_op_status::success) {
					if (t == 0) {
						t1 = clk::now();
						winner = id;
						for (auto &c : ch)
							c->close();
						return;
					}
					if (out->push(t - 1) != fibers::channel_op_status::success)
						return;
				}
			});
		}
		auto t0 = clk::now();
		ch[size - 1]->push(hops);
		for (auto &f : fs)
			f.join();
		ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / hops;
		if (winner != hops % size + 1)
			fail("ring", "winner", winner);
	});
	return ns;
}

static double bench_chan(unsigned workers)
{
	constexpr int producers = 4, consumers = 4;
	constexpr std::int64_t items = 10000000, per = items / producers;
	double ns = 0;
	with_workers(workers, workers > 1, [&] {
		stack_alloc salloc(kStack);
		fibers::buffered_channel<std::int64_t> ch(1024);
		std::uint64_t n[consumers] = {}, sum[consumers] = {};
		auto t0 = clk::now();
		std::vector<fibers::fiber> cs, ps;
		for (int c = 0; c < consumers; c++)
			cs.emplace_back(std::allocator_arg, salloc, [&, c] {
				std::int64_t v;
				while (ch.pop(v) == fibers::channel_op_status::success) {
					n[c]++;
					sum[c] += std::uint64_t(v);
				}
			});
		for (int p = 0; p < producers; p++)
			ps.emplace_back(std::allocator_arg, salloc, [&, p] {
				for (std::int64_t v = p * per + 1; v <= (p + 1) * per; v++)
					if (ch.push(v) != fibers::channel_op_status::success)
						fail("chan", "push failed at", (long long)v);
			});
		for (auto &f : ps)
			f.join();
		ch.close();
		for (auto &f : cs)
			f.join();
		ns = ms_since(t0) * 1e6 / double(items);
		std::uint64_t tn = 0, ts = 0;
		for (int c = 0; c < consumers; c++) {
			tn += n[c];
			ts += sum[c];
		}
		if (tn != std::uint64_t(items))
			fail("chan", "items received:", (long long)tn);
		if (ts != std::uint64_t(items) * (items + 1) / 2)
			fail("chan", "sum:", (long long)ts);
	});
	return ns;
}

// gen: yields 0..N-1; each resume sends the count received so far (0 starts
// the body); the body adds up what it is sent. Same checks as weft's.
static double bench_gen(unsigned)
{
	namespace ctx = boost::context;
	constexpr std::uint64_t n = 10000000;
	std::uint64_t slot_in = 0, slot_out = 0, insum = 0;
	bool done = false;
	ctx::fiber body(std::allocator_arg, ctx::fixedsize_stack(64 * 1024),
	                [&](ctx::fiber &&caller) {
		insum = slot_in;
		for (std::uint64_t i = 0; i < n; i++) {
			slot_out = i;
			caller = std::move(caller).resume();
			insum += slot_in;
		}
		done = true;
		return std::move(caller);
	});
	std::uint64_t sum = 0, got = 0;
	auto t0 = clk::now();
	for (;;) {
		slot_in = got;
		body = std::move(body).resume();
		if (done)
			break;
		sum += slot_out;
		got++;
	}
	double ns = ms_since(t0) * 1e6 / double(n);
	if (got != n || sum != n * (n - 1) / 2)
		fail("gen", "values summed to", (long long)sum);
	if (insum != n * (n + 1) / 2)
		fail("gen", "body's total of what it was sent:", (long long)insum);
	return ns;
}

int main(int argc, char **argv)
{
	struct def { const char *name, *unit; bool single; double (*run)(unsigned); };
	static const def defs[] = {
		{ "yield", "ns", true, bench_yield },
		{ "spawn", "ns", false, [](unsigned w) { return latched(w, 1000000, false) * 1e6 / 1000000; } },
		{ "skynet", "ms", false, bench_skynet },
		{ "fib", "ms", false, bench_fib },
		{ "sleep", "ms", false, [](unsigned w) { return latched(w, 100000, true); } },
		{ "pingpong", "ns", false, bench_pingpong },
		{ "ring", "ns", false, bench_ring },
		{ "chan", "ns", false, bench_chan },   // ns per item
		{ "gen", "ns", true, bench_gen },      // ns per value
	};
	const def *d = nullptr;
	for (const auto &x : defs)
		if (argc > 1 && std::strcmp(argv[1], x.name) == 0)
			d = &x;
	if (!d) {
		std::fprintf(stderr, "usage: boost-fiber-bench yield|spawn|skynet|fib|sleep|pingpong|ring|chan|gen [--workers N]\n");
		return 2;
	}
	unsigned workers = d->single ? 1 : std::thread::hardware_concurrency();
	for (int i = 2; i < argc; i++) {
		if (std::strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
			workers = unsigned(std::atoi(argv[++i]));
			if (workers < 1 || workers > 4096) {
				std::fprintf(stderr, "boost-fiber-bench: bad --workers\n");
				return 2;
			}
		} else {
			std::fprintf(stderr, "boost-fiber-bench: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	double v = d->run(workers);
	std::printf("name=%s impl=boost.fiber workers=%u value=%.3f unit=%s\n", d->name, workers, v, d->unit);
	return 0;
}
