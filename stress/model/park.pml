/*
 * Model of the worker park/unpark protocol, src/sched/idle.c and run.c
 * (weft__notify_work, idle_push, idle_leave, steal_work's searching count,
 * found_work, weft__worker_park) with the ring wake of src/io/ring.c
 * (weft__ring_wake, ring_reap, weft__ring_wait).
 *
 * Property, no lost wake-up: the system never comes to rest (every worker
 * asleep in its ring, every producer done) while a task is still queued. The
 * `watch` process checks it: Promela's `timeout` holds exactly when no other
 * statement can run, i.e. when every worker is blocked in ring_wait with no
 * wake CQE on its way; it then asserts the queue is empty and every task ran.
 * A second assertion, at the sleep point, checks the searching count never
 * goes negative and a sleeping worker never still counts as searching.
 *
 * Work: PRODUCERS threads outside the runtime (weft_rt_spawn, or ready() from
 * a non-worker thread: inject_push then notify_work) each queue TASKS tasks;
 * the first task a worker runs queues one more the same way (inject_push
 * then notify_work, as ready() does when the waker is not one of rt's
 * workers), so notify_work also races with the workers' own parking. Workers take tasks from the injection queue only: the local
 * queues' pushes use notify_local, which is lossy by design (idle.h says
 * so; the monitor thread covers it) and so is not part of this property.
 *
 * Correspondence, model statement -> C:
 *   q                      rt->inject_len (and the inject list behind
 *                          inject_lock): tasks queued
 *   q++ in produce()       inject_push (under inject_lock: one step)
 *   notify_work():
 *     (fence) nidle == 0   atomic_thread_fence(seq_cst); load nidle -> return
 *     nsearching != 0      load nsearching -> return
 *     atomic{CAS 0 -> 1}   compare_exchange_strong(nsearching, 0, 1)
 *     atomic{pop idle}     idle_lock section: v = idle[--nidle_list],
 *                          v->in_idle = false, v->woken_searching = true,
 *                          fetch_sub(nidle)
 *     no v: nsearching--   fetch_sub(nsearching) and return
 *     ring_wake(v)         weft__ring_wake: exchange(wake_pending, 1); only
 *                          the 0 -> 1 caller sends (MSG_RING or eventfd),
 *                          modelled as one CQE on its way: cqe[v]++
 *   worker, find_work():
 *     take()               inject_take (under inject_lock)
 *     searching / cap      steal_work: unless w->searching, give up when
 *                          2 * nsearching >= workers - nidle, else
 *                          searching = true, fetch_add(nsearching)
 *     second take()        steal_work's inject_take after probing victims
 *                          (victims' local queues are not modelled)
 *     found_work()         if searching: fetch_sub(nsearching) == 1 ->
 *                          notify_work
 *   worker_park():
 *     searching -> nsearching--      fetch_sub(nsearching)
 *     atomic{idle push}              idle_push (idle_lock section, fetch_add
 *                                    nidle)
 *     (fence) q == 0                 store parked, fence seq_cst,
 *                                    !any_work_visible (reads inject_len)
 *     atomic{cqe > 0 -> reap}        weft__ring_wait(-1): blocks until a CQE;
 *                                    ring_reap then exchange(wake_pending, 0)
 *                                    (no timers: timeout -1)
 *     atomic{idle leave}             idle_leave: still on the list -> remove,
 *                                    fetch_sub(nidle); else woken =
 *                                    woken_searching
 *     woken -> searching             if (idle_leave()) w->searching = true
 *   `parked` and the remote-call list (weft__sched_call) are not modelled;
 *   stop/shutdown neither.
 *
 * Memory orders: Promela is sequentially consistent. Every access in this
 * protocol that the argument relies on is seq_cst in the C code (the fences
 * in notify_work and worker_park, the seq_cst RMWs on nidle, nsearching and
 * wake_pending), and lock sections are single atomic steps here, so SC is
 * the right model for them; the relaxed loads of nidle/nsearching after the
 * fence are ordered by that fence. What the model does not check: the
 * relaxed inject_len store inside inject_push (the model assumes the fence
 * in notify_work orders it, as the comment there argues), and
 * notify_local's lossy fast path.
 *
 * Mutations (spin -D, the check script asserts each FAILS):
 *   MUT_NO_RECHECK    worker_park sleeps without re-checking the queues
 *                     after joining the idle list.
 *   MUT_LATE_UNSEARCH worker_park leaves the searching count only after the
 *                     sleep, so a sleeper still counts as searching and
 *                     notify_work wakes nobody.
 */
#ifndef NW
#define NW 2
#endif
#ifndef PRODUCERS
#define PRODUCERS 1
#endif
#ifndef TASKS
#define TASKS 2
#endif
#define TOTAL (PRODUCERS * TASKS + 1)

byte q;                 /* queued tasks */
byte ran;               /* tasks run */
byte spawned_extra;     /* the one task queued by a worker */
byte producers_done;
byte nidle, nsearching;
byte nidle_list;
byte idle[NW];
bool in_idle[NW], woken_searching[NW];
bool wake_pending[NW];
byte cqe[NW];

inline ring_wake(v)
{
	atomic {
		if
		:: !wake_pending[v] -> wake_pending[v] = true; cqe[v]++
		:: else -> skip
		fi
	}
}

inline notify_work(v, ok)
{
	if
	:: nidle == 0 -> skip
	:: else ->
		if
		:: nsearching != 0 -> skip
		:: else ->
			atomic {
				if
				:: nsearching == 0 -> nsearching = 1; ok = true
				:: else -> ok = false
				fi
			};
			if
			:: ok ->
				atomic {
					if
					:: nidle_list > 0 ->
						nidle_list--;
						v = idle[nidle_list];
						in_idle[v] = false;
						woken_searching[v] = true;
						nidle--;
						ok = true
					:: else -> ok = false
					fi
				};
				if
				:: ok -> ring_wake(v)
				:: else -> nsearching--
				fi
			:: else -> skip
			fi
		fi
	fi
}

active [PRODUCERS] proctype producer()
{
	byte i = 0, v;
	bool ok;
	do
	:: i < TASKS ->
		q++;                    /* inject_push */
		notify_work(v, ok);
		i++
	:: else -> break
	od;
	producers_done++
}

proctype worker(byte me)
{
	bool searching = false, got, woken, ok;
	byte i, v;

loop:
	/* find_work: the injection queue */
	atomic { if :: q > 0 -> q--; got = true :: else -> got = false fi };
	if
	:: got -> goto found
	:: else -> skip
	fi;
	/* steal_work */
	if
	:: !searching ->
		if
		:: 2 * nsearching >= NW - nidle -> goto park
		:: else -> searching = true; nsearching++
		fi
	:: else -> skip
	fi;
	atomic { if :: q > 0 -> q--; got = true :: else -> got = false fi };
	if
	:: got -> goto found
	:: else -> skip
	fi;
park:
#ifndef MUT_LATE_UNSEARCH
	if
	:: searching -> searching = false; nsearching--
	:: else -> skip
	fi;
#endif
	atomic {
		in_idle[me] = true;
		woken_searching[me] = false;
		idle[nidle_list] = me;
		nidle_list++;
		nidle++
	};
#ifdef MUT_NO_RECHECK
	if
	:: true ->
#else
	if
	:: q == 0 ->
#endif
		assert(nsearching <= NW);
#ifndef MUT_LATE_UNSEARCH
		assert(!searching);
#endif
end_sleep:
		atomic { cqe[me] > 0 -> cqe[me]--; wake_pending[me] = false }
	:: else -> skip
	fi;
#ifdef MUT_LATE_UNSEARCH
	if
	:: searching -> searching = false; nsearching--
	:: else -> skip
	fi;
#endif
	atomic {
		if
		:: in_idle[me] ->
			i = 0;
			do
			:: idle[i] == me ->
				nidle_list--;
				idle[i] = idle[nidle_list];
				break
			:: else -> i++
			od;
			in_idle[me] = false;
			nidle--;
			woken = false
		:: else ->
			woken = woken_searching[me];
			woken_searching[me] = false
		fi
	};
	if
	:: woken -> searching = true
	:: else -> skip
	fi;
	goto loop;

found:
	/* found_work */
	if
	:: searching ->
		searching = false;
		atomic { nsearching--; ok = (nsearching == 0) };
		if
		:: ok -> notify_work(v, ok)
		:: else -> skip
		fi
	:: else -> skip
	fi;
	ran++;
	/* the first task run queues one more from a worker */
	atomic { if :: spawned_extra == 0 -> spawned_extra = 1; got = true :: else -> got = false fi };
	if
	:: got -> q++; notify_work(v, ok)
	:: else -> skip
	fi;
	goto loop
}

init
{
	byte i = 0;
	atomic {
		do
		:: i < NW -> run worker(i); i++
		:: else -> break
		od
	}
}

/* At rest: no statement of any other process can run. */
active proctype watch()
{
	timeout ->
	assert(producers_done == PRODUCERS && q == 0 && ran == TOTAL)
}
