/*
 * Model of the spawn deque, src/sched/spawnq.c: a fixed-capacity Chase-Lev
 * deque (owner push/take at the bottom, thieves steal one at the top).
 *
 * Property: every item pushed is taken exactly once: by the owner's take, a
 * thief's steal, or (deque full: push returns -1) by the caller's fallback
 * queue. Each take asserts the item was not taken before; the end check
 * asserts each was taken once every process is done.
 *
 * Correspondence, model -> C (spawnq.c):
 *   top, bottom, slot[]      struct weft__spawnq (CAP 4: WEFT_SMALL_QUEUES'
 *                            size); 64-bit indices that never wrap (here
 *                            fewer than 256 pushes)
 *   push:
 *     b = bottom             load bottom, relaxed (owner's own)
 *     tp = top               load top, acquire
 *     b - tp >= CAP          full: return -1 (the caller queues elsewhere)
 *     slot[b % CAP] = it     store slot, relaxed
 *     bottom = b + 1         store bottom, release
 *   take:
 *     top >= bottom          the fast path: relaxed loads, return NULL
 *     b = bottom - 1;        load bottom, store bottom - 1 (relaxed)
 *     bottom = b
 *     (fence) t = top        seq_cst fence, load top relaxed
 *     t > b                  empty: restore bottom = b + 1
 *     x = slot[b % CAP]      load slot
 *     t == b: CAS(top,t,t+1) the last item: CAS seq_cst, failure -> NULL;
 *                            then bottom = b + 1
 *   steal:
 *     t = top (fence)        load top acquire, seq_cst fence
 *     b = bottom             load bottom acquire
 *     t >= b                 empty
 *     x = slot[t % CAP]      load slot relaxed
 *     CAS(top, t, t + 1)     seq_cst; failure -> NULL (caller moves on)
 *
 * Memory orders: SC here. The Lê et al. fences (take's and steal's seq_cst
 * fences) exist to make the weak-memory executions behave like these SC
 * ones for the bottom-store/top-load race; SC checks the algorithm, not
 * that the fences suffice (that is the paper's proof, and TSan's/stress's
 * job). The relaxed fast path in take is modelled as two separate reads.
 *
 * Mutations (spin -D, the check script asserts each FAILS):
 *   MUT_LAST_NO_CAS   take's last item without the CAS race against thieves
 *   MUT_TAKE_READ_FIRST take reads top before publishing bottom - 1
 */
#ifndef ITEMS
#define ITEMS 5
#endif
/* One thief by default: 1.1M states, about a second. Two thieves
 * (-DTHIEVES=2 -DSTEALS=2) also verify, with 14.6M states in ~30 s of CPU:
 * too slow for every test run, worth it after a change to spawnq.c. */
#ifndef THIEVES
#define THIEVES 1
#endif
#ifndef STEALS
#define STEALS 3
#endif
#define CAP 4

byte top, bottom;
byte slot[CAP];
byte taken[ITEMS + 1];
byte finished;

inline take_item(it)
{
	assert(it >= 1 && it <= ITEMS);
	assert(taken[it] == 0);
	taken[it]++
}

/* weft__spawnq_take; got = the item or 0 */
inline owner_take(got)
{
	got = 0;
	if
	:: top >= bottom -> skip                    /* fast path (two loads) */
	:: else ->
#ifdef MUT_TAKE_READ_FIRST
		t = top;
		b = bottom - 1;
		bottom = b;
#else
		b = bottom - 1;
		bottom = b;
		t = top;
#endif
		if
		:: t > b -> bottom = b + 1
		:: else ->
			x = slot[b % CAP];
			if
			:: t == b ->
#ifdef MUT_LAST_NO_CAS
				top = t + 1; ok = true;
#else
				atomic {
					if
					:: top == t -> top = t + 1; ok = true
					:: else -> ok = false
					fi
				};
#endif
				if
				:: ok -> got = x
				:: else -> skip
				fi;
				bottom = b + 1
			:: else -> got = x
			fi
		fi
	fi
}

active proctype owner()
{
	byte next = 1, b, t, x, tp, got;
	bool ok;
	do
	:: next <= ITEMS ->
		b = bottom;
		tp = top;
		if
		:: b - tp >= CAP -> take_item(next)      /* -1: queued elsewhere */
		:: else ->
			slot[b % CAP] = next;
			bottom = b + 1
		fi;
		next++
	:: true ->
		owner_take(got);
		if
		:: got != 0 -> take_item(got)
		:: else -> skip
		fi
	:: next > ITEMS -> break
	od;
	/* drain: take until empty */
	do
	:: top < bottom ->
		owner_take(got);
		if
		:: got != 0 -> take_item(got)
		:: else -> skip
		fi
	:: else -> break
	od;
	finished++
}

active [THIEVES] proctype thief()
{
	byte t, b, x, tries = 0;
	bool ok;
	do
	:: tries < STEALS ->
		tries++;
		t = top;
		b = bottom;
		if
		:: t >= b -> skip
		:: else ->
			x = slot[t % CAP];
			atomic {
				if
				:: top == t -> top = t + 1; ok = true
				:: else -> ok = false
				fi
			};
			if
			:: ok -> take_item(x)
			:: else -> skip
			fi
		fi
	:: else -> break
	od;
	finished++
}

active proctype check()
{
	byte i = 1;
	finished == THIEVES + 1;
	do
	:: i <= ITEMS -> assert(taken[i] == 1); i++
	:: else -> break
	od
}
