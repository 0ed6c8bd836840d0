/* Time and deadlines shared by the runtime, the comm window and the mailboxes (clock.c).
 *
 * One monotonic clock for every module: CLOCK_MONOTONIC is system-wide on Linux, so deadlines
 * and timestamps written into shared memory by one process mean the same in another. */
#ifndef PTO_CLOCK_H
#define PTO_CLOCK_H

#include <stdint.h>

int64_t pto_now_ns(void);    /* CLOCK_MONOTONIC in ns */
void pto_cpu_relax(void);    /* one spin-wait hint (pause / yield instruction) */
/* Absolute deadline timeout_ms from now; -1 (none) for a negative timeout or one past the end of
 * the clock, which must not overflow into a deadline in the past. */
int64_t pto_deadline_after_ms(int64_t timeout_ms);

#endif
