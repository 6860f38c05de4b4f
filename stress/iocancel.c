/*
 * I/O cancellation storm: coroutines ("victims") block in weft_recv on
 * SOCK_SEQPACKET socketpairs, weft_read on pipes (both sometimes through the
 * _timeout variants, with a random timeout) or weft_read on a regular file,
 * while sender coroutines feed 16-byte records into the same sockets and
 * pipes at random moments and canceller coroutines weft_cancel each victim
 * after a random (seeded) delay (none, 1-65 yields, or a sleep of up to
 * 300 us), so cancels race with data arriving, with
 * timeouts firing and with ops that already completed. Up to --count
 * cancels (default 1,000,000) within --seconds. Every 32 rounds a fresh
 * runtime, with 256, 2 or 16 SQ entries per ring by turns. Checked:
 *   - each call returns exactly one valid result: a whole record that is
 *     well-formed and not seen before (16 bytes), -ECANCELED, or -ETIMEDOUT
 *     (the _timeout variants only); a file read returns the file's bytes;
 *   - the kernel never writes a buffer after its call returned: the victim
 *     fills its whole buffer with a canary the moment the call returns; at
 *     the end of the round every pair gets one more "probe" record, the
 *     round waits, and every canary must be intact (a recv the kernel still
 *     held would take the probe and write it into a returned buffer);
 *   - no record is lost except by a cancelled/timed-out call (io.h: the
 *     result of an op that completed anyway is discarded): per pair,
 *     sent + 1 probe = received + left in the pipe/socket + lost, with
 *     0 <= lost <= the pair's cancelled/timed-out calls, and the probe is
 *     always among what is left;
 *   - nothing leaks: the fd count is the same after every round, and the
 *     whole program runs leak-clean under ASan.
 */
#include "common.h"
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NP      16      /* pairs (socketpair or pipe) per round  */
#define NV      128     /* victims per round                     */
#define MAXSEND 10      /* records a sender writes per round      */
#define PROBE   63      /* sequence number of the end-of-round probe */
#define FILESZ  4096
#define CANARY  0xa5

enum kind { K_SOCK, K_SOCK_TMO, K_PIPE, K_PIPE_TMO, K_FILE, K_NKIND };
static const char *const kind_name[K_NKIND] = { "recv", "recv_timeout", "read", "read_timeout",
						"file" };

struct rec { uint32_t pair, round, seq, sum; };
_Static_assert(sizeof(struct rec) == 16, "records are 16 bytes");

struct pair {
	bool pipe;
	int rfd, wfd;
	unsigned sent;          /* records the sender wrote                  */
	unsigned dropped;       /* victims of this pair cancelled/timed out  */
	uint64_t seen;          /* bit per sequence number received          */
};

struct victim {
	enum kind k;
	unsigned pair;
	unsigned slot;
	int64_t off;            /* K_FILE */
	uint64_t tmo;           /* _TMO kinds */
	int r;
	weft_task *t;
	unsigned char buf[64];  /* the call gets [16,48); all of it canary after */
	unsigned char data[16]; /* what the call returned, copied out at once    */
};

struct sender { struct pair *p; uint64_t rng; };
/* delay: 1 = at once, < 256 = that many yields, else ns to sleep */
struct canceller { weft_task *t; uint64_t delay; };

static struct pair pairs[NP];
static struct victim vic[NV];
static struct sender snd[NP];
static struct canceller can[NV];
static int filefd;
static unsigned char filebuf[FILESZ];
static uint32_t round_no;
static unsigned long stats[K_NKIND][3];   /* data / -ECANCELED / -ETIMEDOUT */
static unsigned long cancels, lost_total;

static uint32_t rec_sum(uint32_t pair, uint32_t round, uint32_t seq)
{
	uint64_t s = ((uint64_t)pair << 40) ^ ((uint64_t)round << 8) ^ seq ^ 0x5eedull;
	return (uint32_t)stress_rand(&s);
}

static struct rec make_rec(unsigned pair, unsigned seq)
{
	return (struct rec){ pair, round_no, seq, rec_sum(pair, round_no, seq) };
}

/* A record read from pair p; fails the run unless well-formed and new. */
static void take_rec(struct pair *p, unsigned pi, const void *data, const char *who)
{
	struct rec r;
	memcpy(&r, data, sizeof r);
	STRESS_CHECK(r.pair == pi && r.round == round_no && r.seq < 64 &&
		     r.sum == rec_sum(r.pair, r.round, r.seq),
		     "%s on pair %u got a corrupt record {pair %u round %u seq %u sum %08x} "
		     "(round %u)", who, pi, r.pair, r.round, r.seq, r.sum, round_no);
	STRESS_CHECK(!(p->seen >> r.seq & 1), "%s on pair %u: record %u received twice (round %u)",
		     who, pi, r.seq, round_no);
	p->seen |= 1ull << r.seq;
}

static void *victim(void *arg)
{
	struct victim *v = arg;
	struct pair *p = &pairs[v->pair];
	unsigned char *b = v->buf + 16;
	ssize_t r;
	switch (v->k) {
	case K_SOCK: r = weft_recv(p->rfd, b, 32, 0); break;
	case K_SOCK_TMO: r = weft_recv_timeout(p->rfd, b, 32, 0, v->tmo); break;
	/* exactly one record: pipe writes of 16 bytes are atomic, so a read of
	 * 16 never splits one */
	case K_PIPE: r = weft_read(p->rfd, b, 16, -1); break;
	case K_PIPE_TMO: r = weft_read_timeout(p->rfd, b, 16, -1, v->tmo); break;
	default: r = weft_read(filefd, b, 16, v->off); break;
	}
	/* copy the result out, then the canary over everything at once */
	memcpy(v->data, b, sizeof v->data);
	memset(v->buf, CANARY ^ v->slot, sizeof v->buf);
	v->r = (int)r;
	if (r == -ECANCELED || (r == -ETIMEDOUT && (v->k == K_SOCK_TMO || v->k == K_PIPE_TMO))) {
		/* counted per pair by round_main after the joins */
	} else if (v->k == K_FILE) {
		STRESS_CHECK(r == 16 && memcmp(v->data, filebuf + v->off, 16) == 0,
			     "file read at %" PRId64 " returned %zd%s", v->off, r,
			     r == 16 ? " with the wrong bytes" : "");
	} else {
		STRESS_CHECK(r == 16, "%s on pair %u returned %zd (%s)", kind_name[v->k], v->pair, r,
			     r < 0 ? weft_strerror((int)r) : "expected a 16-byte record");
	}
	stress_tick();
	return NULL;
}

static void *sender(void *arg)
{
	struct sender *s = arg;
	struct pair *p = s->p;
	unsigned pi = (unsigned)(p - pairs);
	unsigned n = (unsigned)(stress_rand(&s->rng) % (MAXSEND + 1));
	for (unsigned i = 0; i < n; i++) {
		/* yields mostly: sleeps are as coarse as the timer wheel, yields
		 * spread the writes finely among the victims' submits and cancels */
		uint64_t d = stress_rand(&s->rng);
		if (d & 3)
			for (unsigned y = (unsigned)(d >> 8) % 24; y; y--)
				weft_yield();
		else
			weft_sleep((d >> 8) % 60000);
		struct rec r = make_rec(pi, i);
		ssize_t w = p->pipe ? weft_write(p->wfd, &r, sizeof r, -1)
				    : weft_send(p->wfd, &r, sizeof r, 0);
		STRESS_CHECK(w == sizeof r, "sender of pair %u: write returned %zd (%s)", pi, w,
			     w < 0 ? weft_strerror((int)w) : "short");
		p->sent++;   /* read by round_main after joining this sender */
	}
	return NULL;
}

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;
	/* delay 1: at once, maybe before the victim even submitted */
	if (c->delay < 256)
		for (uint64_t y = c->delay; y > 1; y--)
			weft_yield();
	else
		weft_sleep(c->delay);
	weft_cancel(c->t);
	return NULL;
}

static void open_pair(struct pair *p, bool pipe_)
{
	int fd[2];
	*p = (struct pair){ .pipe = pipe_ };
	if (pipe_)
		STRESS_CHECK(pipe2(fd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	else
		STRESS_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd) == 0,
			     "socketpair: %s", strerror(errno));
	p->rfd = fd[0];
	p->wfd = fd[1];
}

/* What is left in pair pi, without blocking: every record valid and new,
 * the probe among them. Returns how many. */
static unsigned drain(struct pair *p, unsigned pi)
{
	STRESS_CHECK(fcntl(p->rfd, F_SETFL, O_NONBLOCK) == 0, "fcntl: %s", strerror(errno));
	unsigned n = 0;
	for (unsigned i = 0; i < 2 * MAXSEND + 2; i++) {
		unsigned char b[32];
		ssize_t r = p->pipe ? read(p->rfd, b, 16) : recv(p->rfd, b, sizeof b, MSG_DONTWAIT);
		if (r < 0 && errno == EAGAIN)
			break;
		STRESS_CHECK(r == 16, "drain of pair %u: %zd (%s)", pi, r,
			     r < 0 ? strerror(errno) : "not one record");
		take_rec(p, pi, b, "drain");
		n++;
	}
	STRESS_CHECK(p->seen >> PROBE & 1, "pair %u (%s): the end-of-round probe is gone: an op "
		     "still held by the kernel after its call returned took it (round %u)",
		     pi, p->pipe ? "pipe" : "socket", round_no);
	return n;
}

static void *round_main(void *arg)
{
	uint64_t *rng = arg;
	weft_task *st[NP], *ct[NV];
	for (unsigned i = 0; i < NP; i++)
		open_pair(&pairs[i], stress_rand(rng) & 1);
	for (unsigned i = 0; i < NV; i++) {
		struct victim *v = &vic[i];
		unsigned pi = i % NP;
		uint64_t x = stress_rand(rng);
		enum kind k = pairs[pi].pipe ? K_PIPE : K_SOCK;
		if ((x & 7) == 0)
			k = K_FILE;
		else if ((x & 3) == 1)
			k += 1;   /* the _timeout variant */
		*v = (struct victim){ .k = k, .pair = pi, .slot = i,
				      .off = (int64_t)((x >> 8) % (FILESZ - 16)),
				      .tmo = 1000 + (x >> 24) % 150000 };
		memset(v->buf, CANARY ^ i, sizeof v->buf);
		STRESS_CHECK(weft_spawn(&v->t, victim, v) == 0, "spawn victim");
		uint64_t y = stress_rand(rng);
		uint64_t d = (y & 7) == 0 ? 1 : (y & 7) < 5 ? 2 + (y >> 8) % 64
			   : 256 + (y >> 8) % 300000;
		can[i] = (struct canceller){ v->t, d };
		STRESS_CHECK(weft_spawn(&ct[i], cancel_later, &can[i]) == 0, "spawn canceller");
	}
	for (unsigned i = 0; i < NP; i++) {
		snd[i] = (struct sender){ &pairs[i], stress_rand(rng) };
		STRESS_CHECK(weft_spawn(&st[i], sender, &snd[i]) == 0, "spawn sender");
	}
	for (unsigned i = 0; i < NV; i++) {
		STRESS_CHECK(weft_join(ct[i], NULL) == 0, "join canceller %u", i);
		STRESS_CHECK(weft_join(vic[i].t, NULL) == 0, "join victim %u", i);
		cancels++;
	}
	for (unsigned i = 0; i < NP; i++)
		STRESS_CHECK(weft_join(st[i], NULL) == 0, "join sender %u", i);
	/* Every call has returned. One probe per pair; then the window in
	 * which a late completion would land. */
	for (unsigned i = 0; i < NP; i++) {
		struct rec r = make_rec(i, PROBE);
		ssize_t w = write(pairs[i].wfd, &r, sizeof r);
		STRESS_CHECK(w == sizeof r, "probe write: %zd", w);
	}
	weft_sleep(200000);
	for (unsigned i = 0; i < NV; i++) {
		struct victim *v = &vic[i];
		for (unsigned j = 0; j < sizeof v->buf; j++)
			STRESS_CHECK(v->buf[j] == (unsigned char)(CANARY ^ i),
				     "victim %u (%s, pair %u, result %d): its buffer was written at "
				     "byte %u after the call returned (round %u)", i,
				     kind_name[v->k], v->pair, v->r, j, round_no);
	}
	for (unsigned i = 0; i < NV; i++) {
		struct victim *v = &vic[i];
		stats[v->k][v->r == -ECANCELED ? 1 : v->r == -ETIMEDOUT ? 2 : 0]++;
		if (v->k == K_FILE)
			continue;
		if (v->r == 16)
			take_rec(&pairs[v->pair], v->pair, v->data, "victim");
		else
			pairs[v->pair].dropped++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	stress_init("iocancel", argc, argv);
	unsigned workers = stress.workers ? stress.workers : 4;
	unsigned long target = stress.count ? stress.count : 1000000;
	stress_watchdog_start();

	char path[] = "/tmp/weft-iocancel-XXXXXX";
	filefd = mkstemp(path);
	STRESS_CHECK(filefd >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	for (unsigned i = 0; i < FILESZ; i++)
		filebuf[i] = (unsigned char)(i * 7 + (i >> 8));
	STRESS_CHECK(write(filefd, filebuf, FILESZ) == FILESZ, "write temp file");

	/* A fresh runtime every 32 rounds, its rings by turns 256, 2 and 16 SQ
	 * entries: cancels (ASYNC_CANCEL SQEs, remote cancels) then also wait
	 * for room in a full SQ. */
	static const unsigned sizes[] = { 256, 2, 16 };
	weft_rt *rt = NULL;
	int r, fds0 = -1;
	uint64_t rng = stress_seed_for(0);
	do {
		round_no++;
		if (round_no % 32 == 1) {
			if (rt)
				STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
			unsigned e = sizes[(round_no / 32) % 3];
			r = weft_rt_create(&rt, &(struct weft_config){ .workers = workers,
								       .ring_entries = e });
			STRESS_CHECK(r == 0, "weft_rt_create (ring_entries %u): %s", e,
				     weft_strerror(r));
			if (fds0 < 0)
				fds0 = stress_count_fds();
		}
		r = weft_rt_run(rt, round_main, &rng, NULL);
		STRESS_CHECK(r == 0, "weft_rt_run: %s", weft_strerror(r));
		for (unsigned i = 0; i < NP; i++) {
			struct pair *p = &pairs[i];
			/* the victims' records, then what is left */
			unsigned got = (unsigned)__builtin_popcountll(p->seen);
			unsigned left = drain(p, i);
			unsigned lost = p->sent + 1 - (got + left);
			STRESS_CHECK(got + left <= p->sent + 1 && lost <= p->dropped,
				     "pair %u (%s): %u records sent + 1 probe, %u received by victims, "
				     "%u left, %u calls cancelled/timed out: %u lost (round %u)", i,
				     p->pipe ? "pipe" : "socket", p->sent, got, left,
				     p->dropped, lost, round_no);
			lost_total += lost;
			close(p->rfd);
			close(p->wfd);
		}
		int fds = stress_count_fds();
		STRESS_CHECK(fds == fds0, "round %u: %d fds open, %d before the rounds", round_no, fds,
			     fds0);
	} while (!stress_expired() && cancels < target);
	STRESS_CHECK(weft_rt_destroy(rt) == 0, "weft_rt_destroy");
	close(filefd);
	unsigned long c = 0;
	for (int k = 0; k < K_NKIND; k++)
		c += stats[k][1];
	stress_pass("workers=%u rounds=%u cancels=%lu (%lu took effect, %lu records discarded) "
		    "recv %lu/%lu/%lu recv_timeout %lu/%lu/%lu read %lu/%lu/%lu "
		    "read_timeout %lu/%lu/%lu file %lu/%lu (data/cancelled/timed out)",
		    workers, round_no, cancels, c, lost_total,
		    stats[0][0], stats[0][1], stats[0][2], stats[1][0], stats[1][1], stats[1][2],
		    stats[2][0], stats[2][1], stats[2][2], stats[3][0], stats[3][1], stats[3][2],
		    stats[4][0], stats[4][1]);
	return 0;
}
