/*
 * src/sched/cpus.h: the default worker count (cpus.c): the CPUs of the
 * affinity mask, capped by the cgroup's CPU bandwidth limit.
 */
#ifndef WEFT_SCHED_CPUS_H
#define WEFT_SCHED_CPUS_H

/* THREAD: the workers a runtime gets when its config says 0. */
unsigned weft__default_workers(void);

/* The parts, for tests. ANY. */
int weft__cpu_max_parse(const char *s, double *cpus);
unsigned weft__cpus_cap(unsigned n, double cpus);
double weft__cgroup_cpu_limit(const char *prefix);

#endif /* WEFT_SCHED_CPUS_H */
