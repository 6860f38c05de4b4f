/*
 * Model of the stack pool's free list, src/ctx/stack_list.h: a Treiber
 * stack whose head is {top, generation}, changed by one double-width CAS;
 * every successful pop increments the generation, pushes keep it.
 *
 * Property: no node is handed out twice (owned[] is asserted clear when a
 * pop hands a node out), and when every process has finished, the list
 * holds every node exactly once (no loss, no cycle).
 *
 * Processes: WORKERS workers, each OPS times: pop one or two nodes (chosen
 * at random, as weft__stack_get takes a batch and the trim takes many), own
 * them, give them back either one by one or as one chain (weft__stack_put
 * hands half its cache back as a chain). NODES nodes, in the list at the
 * start.
 *
 * Correspondence to the C code (stack_list.h):
 *   top, gen          struct weft__list's w[0] (a node: an index here,
 *                     NIL for NULL) and w[1] (the generation)
 *   next[]            each node's weft__lnode.next
 *   snapshot          weft__list_head: load w[1], then w[0], two steps
 *                     (MUT_TOP_FIRST swaps them)
 *   pop               weft__list_pop: walk at most k links from the top
 *                     (each link a step of its own, racing with pushes of
 *                     the nodes it reads), then the CAS {t, g} -> {the node
 *                     after the last taken, g + 1}; a failed CAS gives the
 *                     head's current two words at once (cmpxchg16b's
 *                     failure result) and the walk starts again
 *   push              weft__list_push: next[last] = t, then the CAS
 *                     {t, g} -> {first, g}
 * The generation is a byte here: the model makes fewer than 256 pops, so it
 * never wraps (the C one is 64 bits: it never does either).
 *
 * Memory orders: Promela's statements are sequentially consistent, so this
 * checks the algorithm's interleavings, not the fences; those are argued
 * in stack_list.h and exercised by tests/cross/list_standalone.c (also on
 * AArch64 under qemu) and the TSan build.
 *
 * Mutations (the check script asserts each one FAILS):
 *   MUT_NO_GEN     a pop keeps the generation (the CAS compares the top
 *                  alone, as ck_stack_pop_upmc): the ABA of stack_list.h,
 *                  a node handed out twice or the list broken.
 *   MUT_TOP_FIRST  the snapshot reads the top before the generation: a
 *                  pop and a push of the same node between the two reads
 *                  go unseen, the walk's link is stale and the CAS
 *                  succeeds.
 */
#ifndef NODES
#define NODES 3
#endif
#ifndef WORKERS
#define WORKERS 2
#endif
#ifndef OPS
#define OPS 2
#endif
#define NIL 255

byte top = 0;
byte gen = 0;
byte next[NODES];
bool owned[NODES];
byte finished = 0;


inline snapshot(t, g)
{
#ifdef MUT_TOP_FIRST
	t = top;
	g = gen
#else
	g = gen;
	t = top
#endif
}

/* pop up to k: got = how many, a, b = the nodes (b only if got == 2) */
inline pop(k, got, a, b)
{
	snapshot(t, g);
	do
	:: t == NIL -> got = 0; break
	:: else ->
		n1 = next[t];
		if
		:: k == 2 && n1 != NIL -> n2 = next[n1]; nt = n2; cnt = 2
		:: else -> nt = n1; cnt = 1
		fi;
		atomic {
			if
#ifdef MUT_NO_GEN
			:: top == t -> top = nt; ok = true
#else
			:: top == t && gen == g -> top = nt; gen = g + 1; ok = true
#endif
			:: else -> t = top; g = gen; ok = false
			fi
		}
		if
		:: ok -> got = cnt; a = t; b = n1; break
		:: else -> skip
		fi
	od
}

/* push the chain first .. last (already linked when it has two nodes) */
inline push(first, last)
{
	snapshot(t, g);
	do
	:: true ->
		next[last] = t;
		atomic {
			if
			:: top == t && gen == g -> top = first; ok = true
			:: else -> t = top; g = gen; ok = false
			fi
		}
		if
		:: ok -> break
		:: else -> skip
		fi
	od
}

inline own(x)
{
	assert(x < NODES);
	assert(!owned[x]);        /* never handed out twice */
	owned[x] = true
}

proctype worker()
{
	byte t, g, n1, n2, nt, cnt, got, a, b, k, op = 0;
	bool ok;
	do
	:: op < OPS ->
		op++;
		if
		:: k = 1
		:: k = 2
		fi;
		pop(k, got, a, b);
		if
		:: got >= 1 -> own(a)
		:: else -> skip
		fi;
		if
		:: got == 2 -> own(b)
		:: else -> skip
		fi;
		if
		:: got >= 1 -> owned[a] = false
		:: else -> skip
		fi;
		if
		:: got == 2 -> owned[b] = false
		:: else -> skip
		fi;
		if
		:: got == 1 -> push(a, a)
		:: got == 2 ->
			if
			:: next[a] = b; push(a, b)      /* one chain */
			:: push(a, a); push(b, b)       /* one by one */
			fi
		:: else -> skip
		fi
	:: else -> break
	od;
	finished++
}

/* The list 0 -> 1 -> ... -> NODES-1, the workers, then, once every
 * worker is done: every node in the list exactly once. */
init {
	byte i = 0, x, seen = 0;
	bool inlist[NODES];
	atomic {
		do
		:: i < NODES - 1 -> next[i] = i + 1; i++
		:: else -> break
		od;
		next[NODES - 1] = NIL;
		top = 0;
		i = 0;
		do
		:: i < WORKERS -> run worker(); i++
		:: else -> break
		od
	}
	finished == WORKERS;
	x = top;
	do
	:: x == NIL -> break
	:: else ->
		assert(x < NODES);
		assert(!inlist[x]);    /* no cycle, no node twice */
		inlist[x] = true;
		seen++;
		x = next[x]
	od;
	assert(seen == NODES)      /* no node lost */
}
