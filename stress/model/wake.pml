/*
 * Model of the coroutine park/wake state machine, src/sched/run.c (the
 * opening essay's "Park/wake state machine"): the claim word t->wait,
 * weft__wait_begin, weft__wait_park + after_switch_slow's PARK case,
 * weft__wait_claim, wake_task, weft_cancel and absorb_wake.
 *
 * One task does WAITS waits in a row. Two sources race to end each one: a
 * waker (a channel or a timer: it took the task's waiter {t, seq} from the
 * object's queue) and a canceller (weft_cancel from another thread, once).
 *
 * Properties:
 *   - no double wake: wake_task never finds a state other than RUNNING or
 *     PARKED (C: die("... double wake"));
 *   - never queued twice: at most one party queues the task per wait;
 *   - no lost wake: the `watch` process asserts at rest (Promela's timeout:
 *     nothing else can move) that the task finished every wait. A wait whose
 *     claim was won but whose task was never queued would leave it parked.
 *
 * Correspondence, model -> C:
 *   state                 t->state: RUNNING, NOTIFIED, PARKED, RUNNABLE
 *   waitw                 t->wait: (seq << 1) | 1 while wait seq is open,
 *                         seq << 1 once claimed
 *   cancel                t->cancel
 *   reg                   the waiter {t, seq} in the object's queue
 *   queued                the task sitting in a run queue (ready())
 *   task():
 *     cancel -> skip      weft__wait_begin's fast path (relaxed load)
 *     seq++; waitw = ..   ++t->wait_seq; store wait, seq_cst
 *     cancel -> claim     load cancel seq_cst; weft__wait_claim; lost ->
 *                         absorb_wake (CAS NOTIFIED -> RUNNING)
 *     reg = seq           the caller enqueues its waiter (under the object's
 *                         lock, released by w->unlock after the switch)
 *     atomic{RUNNING ->   after_switch_slow, A_PARK: CAS RUNNING -> PARKED,
 *       PARKED / else}    acq_rel; failure must see NOTIFIED: store
 *                         RUNNABLE, ready()
 *     queued > 0 -> ..    a worker takes it and resumes it (RUNNING)
 *   claim(s)              weft__wait_claim: CAS wait (s<<1)|1 -> s<<1, acq_rel
 *   wake()                wake_task: CAS RUNNING -> NOTIFIED (release); or
 *                         load PARKED (acquire), later store RUNNABLE and
 *                         ready(); else die
 *   canceller             weft_cancel: store cancel seq_cst, load wait
 *                         seq_cst, open -> claim that seq -> wake
 *   Timers (weft__timer_cancel after the wake), wake_reason and the
 *   cancel shield are not modelled.
 *
 * Memory orders: SC here. The C code's Dekker pair (cancel store / wait
 * load against wait store / cancel load) is seq_cst on both sides, or (where
 * membarrier works) a compiler-ordered pair on the waiter's side against a
 * store, membarrier(PRIVATE_EXPEDITED), load on the canceller's, which
 * forbids the same outcome (wait.c, weft__membarrier_mode), so SC is faithful
 * there; the state CASes are single RMWs on one location (any
 * order gives them a total order), so the interleavings here are theirs.
 * What SC hides: whether the release/acquire pairs carry the saved context
 * and wake_reason; that is argued in run.c and left to TSan.
 *
 * Mutations (spin -D, the check script asserts each FAILS):
 *   MUT_DROP_NOTIFIED  wake_task finding RUNNING walks away without leaving
 *                      NOTIFIED: the scheduler then parks the task for good.
 *   MUT_NO_CLAIM       the waker wakes without winning the claim: the
 *                      canceller and it both wake the same wait.
 */
#ifndef WAITS
#define WAITS 3
#endif

mtype = { RUNNING, NOTIFIED, PARKED, RUNNABLE };

mtype state = RUNNING;
byte waitw;             /* (seq << 1) | open */
bool cancel;
byte reg;               /* registered waiter's seq, 0: none */
byte queued;
bool done;

inline claim(s, won)
{
	atomic {
		if
		:: waitw == s * 2 + 1 -> waitw = s * 2; won = true
		:: else -> won = false
		fi
	}
}

/* parked: a local of the caller. PARKED is seen by a load and left by a
 * separate plain store (C: only the claim's winner may wake, and nothing
 * else leaves PARKED), so another process may run between the two. */
inline wake(parked)
{
	parked = false;
	atomic {
		if
		:: state == RUNNING ->
#ifndef MUT_DROP_NOTIFIED
			state = NOTIFIED
#else
			skip
#endif
		:: state == PARKED -> parked = true
		:: else -> assert(false)        /* die: double wake */
		fi
	};
	if
	:: parked -> atomic { state = RUNNABLE; queued++; assert(queued == 1) }
	:: else -> skip
	fi
}

active proctype task()
{
	byte seq = 0, i = 0;
	bool won;
	do
	:: i < WAITS ->
		if
		:: cancel -> goto next              /* fast path: -ECANCELED */
		:: else -> skip
		fi;
		seq++;
		waitw = seq * 2 + 1;
		if
		:: cancel ->
			claim(seq, won);
			if
			:: !won -> atomic { state == NOTIFIED -> state = RUNNING }
			:: else -> skip
			fi;
			goto next                   /* -ECANCELED */
		:: else -> skip
		fi;
		reg = seq;
		/* switch_out, then after_switch_slow on the other side */
		atomic {
			if
			:: state == RUNNING -> state = PARKED
			:: else -> assert(state == NOTIFIED); state = RUNNABLE; queued++;
				assert(queued == 1)
			fi
		};
		/* a worker resumes it */
		atomic { queued > 0 -> queued--; assert(state == RUNNABLE); state = RUNNING };
next:
		i++
	:: else -> break
	od;
	done = true
}

active proctype waker()
{
	byte s;
	bool won, parked;
end:
	do
	:: atomic { reg != 0 -> s = reg; reg = 0 };
#ifdef MUT_NO_CLAIM
		won = true;
#else
		claim(s, won);
#endif
		if
		:: won -> wake(parked)
		:: else -> skip
		fi
	od
}

active proctype canceller()
{
	byte wv;
	bool won, parked;
	cancel = true;
	wv = waitw;
	if
	:: wv & 1 ->
		claim(wv / 2, won);
		if
		:: won -> wake(parked)
		:: else -> skip
		fi
	:: else -> skip
	fi
}

active proctype watch()
{
	timeout -> assert(done)
}
