/*
 * weft-kv: an in-memory key-value server speaking the Redis protocol (RESP2),
 * one coroutine per connection.
 *
 *   weft-kv --port P [--workers N] [--addr A]
 *
 * Commands: PING [msg], ECHO msg, GET k, SET k v [EX s|PX ms] [NX|XX],
 * DEL k..., INCR k, MGET k..., EXPIRE k s, TTL k, DBSIZE, QUIT, plus the
 * CONFIG GET and COMMAND that redis-benchmark and redis-cli send on start.
 * Replies and error texts follow Redis. Listens on 127.0.0.1 unless --addr
 * says otherwise; --port 0 picks a free port, and the line
 * "weft-kv: listening on ADDR:PORT ..." on stderr says which.
 * SIGINT/SIGTERM stop it cleanly (weft_rt_destroy cancels every coroutine).
 *
 * Pipelining: every complete request in the input buffer is executed, its
 * reply appended to one output buffer, and the replies go out in one send
 * once the buffer holds no complete request.
 *
 * The table: SHARDS hash tables chosen by the key's hash, each under its own
 * weft_mutex (a coroutine that finds it taken parks; it never spins a worker
 * thread). A command touches one shard at a time, so commands on different
 * keys seldom meet; a multi-key command (DEL, MGET) is not atomic across
 * shards, as in Redis Cluster. Keys hash with a per-process random seed, so
 * a client cannot precompute keys that collide.
 *
 * Expiry: each entry has an absolute deadline (weft_now() ns; 0 = none). A
 * read finds an expired entry as missing and frees it (lazy); the expirer
 * coroutine walks a slice of every shard's buckets every 100 ms and frees the
 * expired entries it finds (periodic), so keys nobody reads again do not stay.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"
#include "server.h"
#include "resp.h"

#define SHARDS       64
#define EXPIRE_SLICE 256              /* buckets per shard per expirer round */
#define IN_START     (16u * 1024)
#define OUT_FLUSH    (64u * 1024)     /* send once this much is queued      */

static const struct resp_limits limits = {
	.max_args = 4096,
	.max_bulk = 8u * 1024 * 1024,
	.max_inline = 64u * 1024,
	.max_request = 16u * 1024 * 1024,
};

/* ---------------------------------------------------------- the table --- */

struct entry {
	struct entry *next;
	uint64_t hash;
	uint64_t expire;                /* weft_now() deadline; 0: none */
	char *val;
	uint32_t vlen, klen;
	char key[];
};

struct shard {
	weft_mutex lock;
	struct entry **b;               /* nb buckets, a power of two */
	size_t nb, n;
	size_t cursor;                  /* where the expirer goes on */
} __attribute__((aligned(64)));

static struct shard shards[SHARDS];
static uint64_t hash_seed;

/* FNV-1a over the key, seeded, then a 64-bit finalizer so the low bits
 * (bucket) and the high bits (shard) both depend on every byte. */
static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ hash_seed;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 33);
}

static struct shard *shard_of(uint64_t h)
{
	return &shards[h >> 58];        /* the top 6 bits: SHARDS == 64 */
}

static void entry_free(struct entry *e)
{
	free(e->val);
	free(e);
}

static bool expired(const struct entry *e, uint64_t now)
{
	return e->expire && e->expire <= now;
}

/* The live entry for key, or NULL; frees an expired one found on the way.
 * *link gets the slot that points to it. Lock held. */
static struct entry *find_locked(struct shard *s, uint64_t h, const char *k, size_t n,
				 uint64_t now, struct entry ***link)
{
	struct entry **p = &s->b[h & (s->nb - 1)];
	for (struct entry *e; (e = *p); p = &e->next) {
		if (e->hash != h || e->klen != n || memcmp(e->key, k, n))
			continue;
		if (expired(e, now)) {
			*p = e->next;
			s->n--;
			entry_free(e);
			return NULL;
		}
		if (link)
			*link = p;
		return e;
	}
	return NULL;
}

/* Double the buckets when the table is as full as it is wide. Lock held.
 * Failure to grow only makes chains longer. */
static void grow_locked(struct shard *s)
{
	if (s->n < s->nb)
		return;
	size_t nb = s->nb * 2;
	struct entry **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i < s->nb; i++)
		for (struct entry *e = s->b[i], *next; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	free(s->b);
	s->b = b;
	s->nb = nb;
	s->cursor = 0;
}

/* Insert a new entry (the key is known to be absent). Lock held. */
static struct entry *insert_locked(struct shard *s, uint64_t h, const char *k, size_t n)
{
	struct entry *e = malloc(sizeof *e + n);
	if (!e)
		return NULL;
	*e = (struct entry){ .hash = h, .klen = (uint32_t)n };
	memcpy(e->key, k, n);
	grow_locked(s);
	struct entry **p = &s->b[h & (s->nb - 1)];
	e->next = *p;
	*p = e;
	s->n++;
	return e;
}

static int table_init(void)
{
	if (getrandom(&hash_seed, sizeof hash_seed, 0) != sizeof hash_seed)
		hash_seed = (uint64_t)weft_now() * 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < SHARDS; i++) {
		weft_mutex_init(&shards[i].lock);
		shards[i].nb = 64;
		shards[i].b = calloc(shards[i].nb, sizeof *shards[i].b);
		if (!shards[i].b)
			return -ENOMEM;
	}
	return 0;
}

static void table_free(void)
{
	for (int i = 0; i < SHARDS; i++) {
		for (size_t j = 0; shards[i].b && j < shards[i].nb; j++)
			for (struct entry *e = shards[i].b[j], *next; e; e = next) {
				next = e->next;
				entry_free(e);
			}
		free(shards[i].b);
	}
}

/* Periodic expiry: a slice of each shard every 100 ms. */
static void *expirer(void *arg)
{
	weft_set_name("kv-expirer");
	while (weft_sleep(100 * 1000 * 1000) == 0) {
		for (int i = 0; i < SHARDS; i++) {
			struct shard *s = &shards[i];
			if (weft_mutex_lock(&s->lock))
				return NULL;
			uint64_t now = weft_now();
			for (int k = 0; k < EXPIRE_SLICE; k++) {
				struct entry **p = &s->b[s->cursor];
				while (*p) {
					struct entry *e = *p;
					if (expired(e, now)) {
						*p = e->next;
						s->n--;
						entry_free(e);
					} else {
						p = &e->next;
					}
				}
				s->cursor = (s->cursor + 1) & (s->nb - 1);
			}
			weft_mutex_unlock(&s->lock);
		}
	}
	return NULL;
}

/* ---------------------------------------------------------- replies --- */

struct conn {
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_cap;
	bool broken;                    /* out of memory, or cancelled: close */
};

/* Room for n more output bytes; false (and c->broken) when memory ran out. */
static bool reserve(struct conn *c, size_t n)
{
	if (c->out_len + n <= c->out_cap)
		return true;
	size_t cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + n)
		cap *= 2;
	char *p = realloc(c->out, cap);
	if (!p) {
		c->broken = true;
		return false;
	}
	c->out = p;
	c->out_cap = cap;
	return true;
}

static void out_raw(struct conn *c, const char *s, size_t n)
{
	if (reserve(c, n)) {
		memcpy(c->out + c->out_len, s, n);
		c->out_len += n;
	}
}

#define OUT_LIT(c, s) out_raw((c), (s), sizeof(s) - 1)

static void out_fmt(struct conn *c, const char *fmt, long long v)
{
	char b[32];
	int n = snprintf(b, sizeof b, fmt, v);
	out_raw(c, b, (size_t)n);
}

static void out_int(struct conn *c, long long v)
{
	out_fmt(c, ":%lld\r\n", v);
}

static void out_bulk(struct conn *c, const char *s, size_t n)
{
	out_fmt(c, "$%lld\r\n", (long long)n);
	if (reserve(c, n + 2)) {
		memcpy(c->out + c->out_len, s, n);
		memcpy(c->out + c->out_len + n, "\r\n", 2);
		c->out_len += n + 2;
	}
}

static void out_err(struct conn *c, const char *msg)
{
	out_raw(c, "-", 1);
	out_raw(c, msg, strlen(msg));
	OUT_LIT(c, "\r\n");
}

/* -ERR wrong number of arguments for '<cmd>' command */
static void out_arity(struct conn *c, const char *cmd)
{
	char b[96];
	snprintf(b, sizeof b, "ERR wrong number of arguments for '%s' command", cmd);
	out_err(c, b);
}

/* --------------------------------------------------------- commands --- */

struct req {
	const char *base;
	struct resp_arg *argv;
	unsigned argc;
};

static const char *arg(const struct req *r, unsigned i)
{
	return r->base + r->argv[i].off;
}

static size_t alen(const struct req *r, unsigned i)
{
	return r->argv[i].len;
}

static bool arg_is(const struct req *r, unsigned i, const char *lit)
{
	size_t n = strlen(lit);
	if (alen(r, i) != n)
		return false;
	for (size_t j = 0; j < n; j++) {
		char ch = arg(r, i)[j];
		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 32);
		if (ch != lit[j])
			return false;
	}
	return true;
}

/* A whole signed 64-bit decimal, as Redis' string2ll: no blanks, no '+',
 * no leading zeros. */
static bool parse_ll(const char *s, size_t n, long long *out)
{
	if (n == 0 || n > 20)
		return false;
	size_t i = 0;
	bool neg = s[0] == '-';
	if (neg && n == 1)
		return false;
	i = neg;
	if (s[i] == '0' && n > i + 1)
		return false;
	unsigned long long v = 0;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (ULLONG_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX + 1)
			return false;
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
	} else {
		if (v > (unsigned long long)LLONG_MAX)
			return false;
		*out = (long long)v;
	}
	return true;
}

static const char not_int[] = "ERR value is not an integer or out of range";

static void cmd_get(struct conn *c, const struct req *r)
{
	uint64_t h = hash_key(arg(r, 1), alen(r, 1));
	struct shard *s = shard_of(h);
	if (weft_mutex_lock(&s->lock)) {
		c->broken = true;
		return;
	}
	struct entry *e = find_locked(s, h, arg(r, 1), alen(r, 1), weft_now(), NULL);
	if (e)
		out_bulk(c, e->val, e->vlen);
	else
		OUT_LIT(c, "$-1\r\n");
	weft_mutex_unlock(&s->lock);
}

static void cmd_set(struct conn *c, const struct req *r)
{
	uint64_t ttl = 0;               /* ns */
	bool nx = false, xx = false;
	for (unsigned i = 3; i < r->argc; i++) {
		bool ex = arg_is(r, i, "EX"), px = arg_is(r, i, "PX");
		if ((ex || px) && i + 1 < r->argc && !ttl) {
			long long v;
			if (!parse_ll(arg(r, i + 1), alen(r, i + 1), &v)) {
				out_err(c, not_int);
				return;
			}
			/* Up to 2^62 ns (146 years): now + ttl cannot wrap. */
			if (v <= 0 || (unsigned long long)v > (ex ? (1ull << 62) / 1000000000
							     : (1ull << 62) / 1000000)) {
				out_err(c, "ERR invalid expire time in 'set' command");
				return;
			}
			ttl = (uint64_t)v * (ex ? 1000000000ull : 1000000ull);
			i++;
		} else if (arg_is(r, i, "NX") && !xx) {
			nx = true;
		} else if (arg_is(r, i, "XX") && !nx) {
			xx = true;
		} else {
			out_err(c, "ERR syntax error");
			return;
		}
	}
	char *val = malloc(alen(r, 2) ? alen(r, 2) : 1);
	if (!val) {
		out_err(c, "ERR out of memory");
		return;
	}
	memcpy(val, arg(r, 2), alen(r, 2));
	uint64_t h = hash_key(arg(r, 1), alen(r, 1));
	struct shard *s = shard_of(h);
	if (weft_mutex_lock(&s->lock)) {
		free(val);
		c->broken = true;
		return;
	}
	uint64_t now = weft_now();
	struct entry *e = find_locked(s, h, arg(r, 1), alen(r, 1), now, NULL);
	if ((nx && e) || (xx && !e)) {
		weft_mutex_unlock(&s->lock);
		free(val);
		OUT_LIT(c, "$-1\r\n");
		return;
	}
	if (!e)
		e = insert_locked(s, h, arg(r, 1), alen(r, 1));
	if (e) {
		free(e->val);
		e->val = val;
		e->vlen = (uint32_t)alen(r, 2);
		e->expire = ttl ? now + ttl : 0;
	}
	weft_mutex_unlock(&s->lock);
	if (e) {
		OUT_LIT(c, "+OK\r\n");
	} else {
		free(val);
		out_err(c, "ERR out of memory");
	}
}

static void cmd_del(struct conn *c, const struct req *r)
{
	long long n = 0;
	for (unsigned i = 1; i < r->argc; i++) {
		uint64_t h = hash_key(arg(r, i), alen(r, i));
		struct shard *s = shard_of(h);
		if (weft_mutex_lock(&s->lock)) {
			c->broken = true;
			return;
		}
		struct entry **link;
		struct entry *e = find_locked(s, h, arg(r, i), alen(r, i), weft_now(), &link);
		if (e) {
			*link = e->next;
			s->n--;
			entry_free(e);
			n++;
		}
		weft_mutex_unlock(&s->lock);
	}
	out_int(c, n);
}

static void cmd_incr(struct conn *c, const struct req *r)
{
	uint64_t h = hash_key(arg(r, 1), alen(r, 1));
	struct shard *s = shard_of(h);
	char *num = malloc(24);
	if (!num || weft_mutex_lock(&s->lock)) {
		free(num);
		out_err(c, "ERR out of memory");
		return;
	}
	struct entry *e = find_locked(s, h, arg(r, 1), alen(r, 1), weft_now(), NULL);
	long long v = 0;
	const char *err = NULL;
	if (e && !parse_ll(e->val, e->vlen, &v))
		err = not_int;
	else if (v == LLONG_MAX)
		err = "ERR increment or decrement would overflow";
	else if (!e && !(e = insert_locked(s, h, arg(r, 1), alen(r, 1))))
		err = "ERR out of memory";
	if (!err) {
		v++;
		int n = snprintf(num, 24, "%lld", v);
		free(e->val);            /* the TTL stays, as in Redis */
		e->val = num;
		e->vlen = (uint32_t)n;
		num = NULL;
	}
	weft_mutex_unlock(&s->lock);
	free(num);
	if (err)
		out_err(c, err);
	else
		out_int(c, v);
}

static void cmd_mget(struct conn *c, const struct req *r)
{
	out_fmt(c, "*%lld\r\n", (long long)(r->argc - 1));
	for (unsigned i = 1; i < r->argc; i++) {
		struct req one = { r->base, r->argv + i - 1, 2 };
		cmd_get(c, &one);
	}
}

static void cmd_expire(struct conn *c, const struct req *r)
{
	long long secs;
	if (!parse_ll(arg(r, 2), alen(r, 2), &secs)) {
		out_err(c, not_int);
		return;
	}
	if (secs > (long long)((1ull << 62) / 1000000000)) {   /* as SET's EX */
		out_err(c, "ERR invalid expire time in 'expire' command");
		return;
	}
	uint64_t h = hash_key(arg(r, 1), alen(r, 1));
	struct shard *s = shard_of(h);
	if (weft_mutex_lock(&s->lock)) {
		c->broken = true;
		return;
	}
	uint64_t now = weft_now();
	struct entry **link;
	struct entry *e = find_locked(s, h, arg(r, 1), alen(r, 1), now, &link);
	if (e && secs <= 0) {           /* a deadline already past deletes the key */
		*link = e->next;
		s->n--;
		entry_free(e);
	} else if (e) {
		e->expire = now + (uint64_t)secs * 1000000000ull;
	}
	weft_mutex_unlock(&s->lock);
	out_int(c, e ? 1 : 0);
}

static void cmd_ttl(struct conn *c, const struct req *r)
{
	uint64_t h = hash_key(arg(r, 1), alen(r, 1));
	struct shard *s = shard_of(h);
	if (weft_mutex_lock(&s->lock)) {
		c->broken = true;
		return;
	}
	uint64_t now = weft_now();
	struct entry *e = find_locked(s, h, arg(r, 1), alen(r, 1), now, NULL);
	long long ttl = !e ? -2 : !e->expire ? -1
		: (long long)((e->expire - now + 500000000ull) / 1000000000ull);
	weft_mutex_unlock(&s->lock);
	out_int(c, ttl);
}

static void cmd_dbsize(struct conn *c, const struct req *r)
{
	long long n = 0;
	for (int i = 0; i < SHARDS; i++) {
		if (weft_mutex_lock(&shards[i].lock)) {
			c->broken = true;
			return;
		}
		n += (long long)shards[i].n;
		weft_mutex_unlock(&shards[i].lock);
	}
	out_int(c, n);
}

/* CONFIG GET <name>: what redis-benchmark asks on start (persistence is off). */
static void cmd_config(struct conn *c, const struct req *r)
{
	if (!arg_is(r, 1, "GET") || r->argc != 3) {
		out_err(c, "ERR only CONFIG GET <parameter> is supported");
		return;
	}
	if (arg_is(r, 2, "SAVE"))
		OUT_LIT(c, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
	else if (arg_is(r, 2, "APPENDONLY"))
		OUT_LIT(c, "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	else
		OUT_LIT(c, "*0\r\n");
}

/* Returns false when the connection should close after the replies. */
static bool execute(struct conn *c, const struct req *r)
{
	static const struct {
		const char *name;
		int arity;              /* as in Redis: > 0 exact, < 0 at least -arity */
		void (*fn)(struct conn *, const struct req *);
	} cmds[] = {
		{ "GET", 2, cmd_get }, { "SET", -3, cmd_set }, { "DEL", -2, cmd_del },
		{ "INCR", 2, cmd_incr }, { "MGET", -2, cmd_mget }, { "EXPIRE", 3, cmd_expire },
		{ "TTL", 2, cmd_ttl }, { "DBSIZE", 1, cmd_dbsize }, { "CONFIG", -2, cmd_config },
	};
	if (arg_is(r, 0, "PING")) {
		if (r->argc > 2)
			out_arity(c, "ping");
		else if (r->argc == 2)
			out_bulk(c, arg(r, 1), alen(r, 1));
		else
			OUT_LIT(c, "+PONG\r\n");
		return true;
	}
	if (arg_is(r, 0, "ECHO")) {
		if (r->argc != 2)
			out_arity(c, "echo");
		else
			out_bulk(c, arg(r, 1), alen(r, 1));
		return true;
	}
	if (arg_is(r, 0, "QUIT")) {
		OUT_LIT(c, "+OK\r\n");
		return false;
	}
	if (arg_is(r, 0, "COMMAND")) {
		OUT_LIT(c, "*0\r\n");
		return true;
	}
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		if (!arg_is(r, 0, cmds[i].name))
			continue;
		int a = cmds[i].arity;
		if ((a > 0 && r->argc != (unsigned)a) || (a < 0 && r->argc < (unsigned)-a)) {
			char lower[16];
			size_t n = strlen(cmds[i].name);
			for (size_t j = 0; j <= n; j++)
				lower[j] = (char)(cmds[i].name[j] | (j < n ? 0x20 : 0));
			out_arity(c, lower);
		} else {
			cmds[i].fn(c, r);
		}
		return true;
	}
	/* The name, printable and short, so the error stays one line. */
	char name[64], msg[128];
	size_t n = alen(r, 0) < sizeof name - 1 ? alen(r, 0) : sizeof name - 1;
	for (size_t j = 0; j < n; j++) {
		char ch = arg(r, 0)[j];
		name[j] = (ch >= ' ' && ch < 0x7f && ch != '\'') ? ch : '?';
	}
	name[n] = 0;
	snprintf(msg, sizeof msg, "ERR unknown command '%s'", name);
	out_err(c, msg);
	return true;
}

/* --------------------------------------------------------- connections --- */

static int flush(struct conn *c)
{
	if (!c->out_len)
		return 0;
	ssize_t n = weft_send_all(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
	c->out_len = 0;
	return n < 0 ? (int)n : 0;
}

static void *serve(void *argp)
{
	struct conn c = { .fd = (int)(intptr_t)argp, .in_cap = IN_START };
	struct resp_arg *argv = malloc(limits.max_args * sizeof *argv);
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c.in = malloc(c.in_cap);
	if (!c.in || !argv)
		goto out;
	size_t need = 1;
	for (;;) {
		/* Every complete request in the buffer, then one send. */
		size_t off = 0;
		bool open = true;
		while (open && c.in_len - off >= need) {
			unsigned argc;
			const char *why = NULL;
			long used = resp_parse(c.in + off, c.in_len - off, &limits, argv, &argc,
					       &need, &why);
			if (used == 0)
				break;          /* need counts from c.in + off */
			if (used < 0) {
				char msg[128];
				snprintf(msg, sizeof msg, "ERR %s", why);
				out_err(&c, msg);
				flush(&c);
				goto out;
			}
			struct req r = { c.in + off, argv, argc };
			off += (size_t)used;
			need = 1;
			if (argc)
				open = execute(&c, &r);
			if (c.broken)
				goto out;
			if (c.out_len >= OUT_FLUSH && flush(&c))
				goto out;
		}
		if (flush(&c) || !open)
			goto out;
		if (off) {
			memmove(c.in, c.in + off, c.in_len - off);
			c.in_len -= off;
		}
		/* A request bigger than the buffer: grow it to what it needs
		 * (the parser has already checked that against the limits). */
		size_t want = need > c.in_len + 4096 ? need : c.in_len + 4096;
		if (want > c.in_cap) {
			size_t cap = c.in_cap;
			while (cap < want)
				cap *= 2;
			char *p = realloc(c.in, cap);
			if (!p)
				goto out;
			c.in = p;
			c.in_cap = cap;
		}
		ssize_t n = weft_recv(c.fd, c.in + c.in_len, c.in_cap - c.in_len, 0);
		if (n <= 0)
			goto out;
		c.in_len += (size_t)n;
	}
out:
	free(argv);
	free(c.in);
	free(c.out);
	weft_close(c.fd);
	return NULL;
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "weft-kv: %s\n", why);
	fprintf(stderr, "usage: weft-kv --port P [--workers N] [--addr A]\n");
	exit(2);
}

static unsigned long number(const char *s, unsigned long min, unsigned long max, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
		char msg[128];
		snprintf(msg, sizeof msg, "bad %s '%s' (%lu..%lu)", what, s, min, max);
		usage(msg);
	}
	return v;
}

int main(int argc, char **argv)
{
	int port = -1;
	unsigned workers = 0;
	const char *addr = "127.0.0.1";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage(!strcmp(a, "--help") ? NULL : "missing value");
		i++;
		if (!strcmp(a, "--port"))
			port = (int)number(v, 0, 65535, "port");
		else if (!strcmp(a, "--workers"))
			workers = (unsigned)number(v, 1, 1024, "worker count");
		else if (!strcmp(a, "--addr"))
			addr = v;
		else
			usage("unknown option");
	}
	if (port < 0)
		usage("--port is required");

	int bound;
	int lfd = ex_listen("weft-kv", addr, port, &bound);
	if (lfd < 0)
		return lfd == -EINVAL ? 2 : 1;
	if (table_init()) {
		fprintf(stderr, "weft-kv: out of memory\n");
		return 1;
	}

	sigset_t set;
	ex_signals_block(&set);

	struct ex_acceptor acceptor = { "weft-kv", lfd, serve };
	weft_rt *rt;
	struct weft_config cfg = { .workers = workers };
	int err = weft_rt_create(&rt, &cfg);
	if (err) {
		fprintf(stderr, "weft-kv: runtime: %s\n", weft_strerror(err));
		return 1;
	}
	if ((err = weft_rt_spawn(rt, NULL, expirer, NULL)) ||
	    (err = weft_rt_spawn(rt, NULL, ex_accept_loop, &acceptor))) {
		fprintf(stderr, "weft-kv: spawn: %s\n", weft_strerror(err));
		weft_rt_destroy(rt);
		return 1;
	}
	fprintf(stderr, "weft-kv: listening on %s:%d with %u workers\n", addr,
		bound, weft_rt_workers(rt));
	ex_signals_wait(&set);
	weft_rt_destroy(rt);
	close(lfd);
	table_free();
	return 0;
}
