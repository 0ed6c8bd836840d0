/* Time, the simulated 50 MHz system counter, futexes and the shared backoff.
 *
 * 8 ranks x (orchestrator + schedulers + cores) share 2 CPUs, so no thread may spin for long:
 * every poll loop goes spin (pause) -> sched_yield -> short sleeps (futex or nanosleep).
 */
#include "pto_runtime_internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SYSCNT_HZ 50000000ULL

int64_t pto_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t pto_deadline_after_ms(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    int64_t now = pto_now_ns();
    if (timeout_ms > (INT64_MAX - now) / 1000000LL)
        return -1;
    return now + timeout_ms * 1000000LL;
}

uint64_t pto_syscnt(void) { return (uint64_t)pto_now_ns() / (1000000000ULL / SYSCNT_HZ); }

uint64_t pto_ms_to_cycles(int64_t ms) { return (uint64_t)ms * (SYSCNT_HZ / 1000ULL); }

void pto_sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void pto_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void pto_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, tp, NULL, 0);
}

void pto_futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void pto_backoff(uint64_t n, int64_t max_sleep_ns)
{
    if (n < 64) {
        pto_cpu_relax();
    } else if (n < 80) {
        sched_yield();
    } else {
        int64_t ns = 20000LL << ((n - 80) < 4 ? (n - 80) : 4); /* 20 us doubling */
        pto_sleep_ns(ns < max_sleep_ns ? ns : max_sleep_ns);
    }
}
