/*
 * Model of the steal-half run queue, src/sched/runq.c.
 *
 * Property: every item pushed is taken exactly once, by the owner's pop, by a
 * thief's steal, or by the owner's overflow into the injection queue
 * (runq_push_slow). `taken[i]` counts the takes of item i; each take asserts
 * the item was not taken before (no duplicate), and the end check asserts
 * every item was taken (no loss) once every process has finished.
 *
 * Processes: one owner (pushes ITEMS items, popping now and then, then drains
 * its queue) and THIEVES thieves, each stealing up to STEALS times.
 *
 * Correspondence to the C code (runq.c), statement by statement:
 *   head, tail, slot[]            struct weft__runq's head, tail, slot[CAP]
 *                                 (CAP = 4 here: WEFT_SMALL_QUEUES' size).
 *                                 The 32-bit counters wrap in C; the model
 *                                 pushes fewer than 256 items so they never
 *                                 wrap, and indexes slots with % CAP as the
 *                                 C code does with & MASK.
 *   push():
 *     h = head                    weft__runq_push: load head, acquire
 *     tl = tail                   load tail, relaxed (the owner's own)
 *     tl - h < CAP                the "not full" test
 *     slot[tl % CAP] = it         store slot, relaxed
 *     tail = tl + 1               store tail, release
 *     the else branch             runq_push_slow: n = (tl - h) / 2 slot
 *                                 loads into batch[], then
 *     CAS(head, h, h + n)         compare_exchange_strong(head, h, h + n),
 *                                 release; failure: back to the top of
 *                                 weft__runq_push's loop. Success: batch[]
 *                                 and the new item go to the injection queue
 *                                 (enqueue_back's inject_push), which is a
 *                                 take here.
 *   pop():                        weft__runq_pop:
 *     h = head; tl = tail         load head acquire, tail relaxed
 *     h == tl                     empty: NULL
 *     t = slot[h % CAP]           slot load, relaxed
 *     CAS(head, h, h + 1)         compare_exchange_weak, release; on failure
 *                                 retry (a weak CAS's spurious failure is a
 *                                 retry too, so it needs no extra branch).
 *   thief:                        runq_grab (weft__runq_steal's core):
 *     h = head; tl = tail         load head acquire, load tail acquire
 *     n = tl - h; n = n - n / 2   half, rounded up
 *     n == 0                      nothing: return 0
 *     n > CAP / 2                 inconsistent snapshot: retry
 *     got[i] = slot[(h+i) % CAP]  the copy loop (relaxed loads; the copy into
 *                                 dst's slots is private to the thief until
 *                                 it publishes dst's tail, so not modelled)
 *     CAS(head, h, h + n)         compare_exchange_strong, release; success:
 *                                 the n items are the thief's (one returned,
 *                                 the rest published in its own queue).
 *
 * Memory orders: Promela runs every statement sequentially consistently, so
 * this model checks the algorithm (the interleavings of its steps) and not
 * the C orders: it cannot see a reordering that acquire/release would allow
 * (say a thief reading a slot before the tail store that published it).
 * Those pairings are argued in the comments in runq.c and exercised by the
 * TSan build and stress/deque. Each CAS is one atomic step here, as in C.
 *
 * Mutations (cc -D, the check script asserts each one FAILS):
 *   MUT_FULL       "not full" test off by one (tl - h <= CAP): the owner
 *                  overwrites a slot not yet consumed (loss or duplicate).
 *   MUT_STEAL_STORE the thief commits with a plain store head = h + n
 *                  instead of the CAS: it and the owner take the same item.
 */
#ifndef ITEMS
#define ITEMS 6
#endif
#ifndef THIEVES
#define THIEVES 1
#endif
#ifndef STEALS
#define STEALS 2
#endif
#define CAP 4

byte head, tail;
byte slot[CAP];
byte taken[ITEMS + 1];
byte finished;

inline take(it)
{
	assert(it >= 1 && it <= ITEMS);
	assert(taken[it] == 0);            /* no duplicate */
	taken[it]++
}

active proctype owner()
{
	byte h, tl, n, i, t, next = 1;
	byte batch[CAP];
	bool ok;

	do
	:: next <= ITEMS ->
		/* weft__runq_push(q, next, batch) */
push_retry:
		h = head;
		tl = tail;
#ifdef MUT_FULL
		if
		:: tl - h <= CAP ->
#else
		if
		:: tl - h < CAP ->
#endif
			slot[tl % CAP] = next;
			tail = tl + 1
		:: else ->
			n = (tl - h) / 2;
			i = 0;
			do
			:: i < n -> batch[i] = slot[(h + i) % CAP]; i++
			:: else -> break
			od;
			atomic {
				if
				:: head == h -> head = h + n; ok = true
				:: else -> ok = false
				fi
			}
			if
			:: ok ->
				i = 0;
				do
				:: i < n -> take(batch[i]); i++
				:: else -> break
				od;
				take(next)     /* batch[n] = t: to the injection queue */
			:: else -> goto push_retry
			fi
		fi;
		next++
	:: true ->
		/* weft__runq_pop */
pop_retry:
		h = head;
		tl = tail;
		if
		:: h == tl -> skip
		:: else ->
			t = slot[h % CAP];
			atomic {
				if
				:: head == h -> head = h + 1; ok = true
				:: else -> ok = false
				fi
			}
			if
			:: ok -> take(t)
			:: else -> goto pop_retry
			fi
		fi
	:: next > ITEMS -> break
	od;
	/* drain: pop until empty */
	do
	:: true ->
		h = head;
		tl = tail;
		if
		:: h == tl -> break
		:: else ->
			t = slot[h % CAP];
			atomic {
				if
				:: head == h -> head = h + 1; ok = true
				:: else -> ok = false
				fi
			}
			if
			:: ok -> take(t)
			:: else -> skip
			fi
		fi
	od;
	finished++
}

active [THIEVES] proctype thief()
{
	byte h, tl, n, i, tries = 0;
	byte got[CAP];
	bool ok;

	do
	:: tries < STEALS ->
		tries++;
grab_retry:
		h = head;
		tl = tail;
		n = tl - h;
		n = n - n / 2;
		if
		:: n == 0 -> skip
		:: n > CAP / 2 -> goto grab_retry
		:: else ->
			i = 0;
			do
			:: i < n -> got[i] = slot[(h + i) % CAP]; i++
			:: else -> break
			od;
#ifdef MUT_STEAL_STORE
			head = h + n;
			ok = true;
#else
			atomic {
				if
				:: head == h -> head = h + n; ok = true
				:: else -> ok = false
				fi
			};
#endif
			if
			:: ok ->
				i = 0;
				do
				:: i < n -> take(got[i]); i++
				:: else -> break
				od
			:: else -> goto grab_retry
			fi
		fi
	:: else -> break
	od;
	finished++
}

/* End check: once the owner and every thief are done, no item was lost. */
active proctype check()
{
	byte i = 1;
	finished == THIEVES + 1;
	do
	:: i <= ITEMS -> assert(taken[i] == 1); i++
	:: else -> break
	od
}
