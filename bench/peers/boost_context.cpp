// boost-context-bench: the Boost.Context peer of weft's `switch` benchmark
// (bench/weft_bench.c): two contexts bounce control with jump_fcontext, one
// switch = one transfer, 20,000,000 switches, a 64 KiB stack; a value travels
// with every switch, as in weft's version.
// Prints: name=switch impl=boost.context workers=1 value=<ns per switch> unit=ns
#include <boost/context/detail/fcontext.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sys/mman.h>

namespace ctx = boost::context::detail;

static constexpr std::uintptr_t kSwitches = 20000000;
static constexpr std::size_t kStack = 64 * 1024;

static void entry(ctx::transfer_t t)
{
	for (;;)
		t = ctx::jump_fcontext(t.fctx, t.data);
}

int main(int argc, char **argv)
{
	if (argc > 1 && std::strcmp(argv[1], "switch") != 0) {
		std::fprintf(stderr, "usage: boost-context-bench [switch]\n");
		return 2;
	}
	void *stk = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stk == MAP_FAILED)
		return 1;
	ctx::fcontext_t c = ctx::make_fcontext(static_cast<char *>(stk) + kStack, kStack, entry);
	std::uintptr_t sum = 0;
	auto t0 = std::chrono::steady_clock::now();
	for (std::uintptr_t i = 0; i < kSwitches / 2; i++) {
		ctx::transfer_t t = ctx::jump_fcontext(c, reinterpret_cast<void *>(i));
		c = t.fctx;
		sum += reinterpret_cast<std::uintptr_t>(t.data);
	}
	auto t1 = std::chrono::steady_clock::now();
	std::uintptr_t n = kSwitches / 2;
	if (sum != n * (n - 1) / 2) {
		std::fprintf(stderr, "boost-context-bench: values lost\n");
		return 1;
	}
	double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / kSwitches;
	std::printf("name=switch impl=boost.context workers=1 value=%.3f unit=ns\n", ns);
	return 0;
}
