/* Runtime configuration: defaults, environment, explicit keys -- one validator for all three.
 *
 * Python overrides and the environment both go through pto_rt_config_set(key, text), so a bad
 * value gets the same message whichever way it arrived: it names the variable, the value and
 * the rule, e.g. "PTO2_RING_TASK_WINDOW=100: must be a power of two >= 4 (one value or four
 * comma-separated values)".
 */
#include "pto_runtime_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Default of PTO_MAX_IDLE_ITERATIONS. Measured on the 2-CPU sim box with
 * `python benchmarks/bench_runtime.py --calibrate-idle` (a hang task, 2 scheduler threads, time
 * from submit to the idle-iterations latch): an idle scheduler iteration spins 64 times, yields
 * 16 times, then sleeps 50 us (about 110 us with timer slack and load): cap 500 -> 50 ms,
 * cap 1000 -> 111 ms, so 850 iterations reach the cap after about 92 ms of idle looping, the
 * figure of the incident. On another machine, `python benchmarks/calibrate_idle.py` measures
 * the idle iteration time and prints the value for 92 ms. */
#define DEFAULT_MAX_IDLE_ITERATIONS 850

/* Default of PTO_SIM_COND_POLL_US: the extra cost of one idle iteration per polled RUNNING
 * core. An idle iteration in the sleep stage costs ~110 us here (above); +80 us makes an
 * owner's iteration ~1.7x a pure-idle sibling's, upstream's ratio (~200 ns vs ~115 ns per
 * iteration, scheduler_types.h of hw-native-sys/simpler). */
#define DEFAULT_COND_POLL_US 80

static const char *const KEYS[] = {
    "PTO2_RING_TASK_WINDOW",
    "PTO2_RING_HEAP",
    "PTO2_RING_DEP_POOL",
    "PTO_LATCH_POLICY",
    "PTO_SCHEDULER_TIMEOUT_MS",
    "PTO_MAX_IDLE_ITERATIONS",
    "PTO_STREAM_SYNC_TIMEOUT_MS",
    "PTO_STALL_REPORT_MS",
    "PTO_SIM_SCHED_THREADS",
    "PTO_SIM_CORES",
    "PTO_RANK",
    "PTO_SIM_INIT_DELAY_MS",
    "PTO_SIM_MALLOC_MODEL",
    "PTO_SIM_MALLOC_MS_PER_GIB",
    "PTO_SIM_MALLOC_SEED",
    "PTO_SIM_MALLOC_SIGMA",
    "PTO_SIM_COND_POLL_US",
    "PTO_SIM_NOTIFY_DELAY_MS",
    "PTO_SIM_NOTIFY_MEDIAN_MS",
    "PTO_SIM_NOTIFY_SIGMA",
    "PTO_DEADLOCK_CHECK",
    "PTO_RING_DEADLOCK_MS",
    "PTO_TENSOR_WAIT_TIMEOUT_MS",
    NULL,
};

const char *pto_rt_config_key(int i)
{
    if (i < 0 || i >= (int)(sizeof KEYS / sizeof KEYS[0]) - 1)
        return NULL;
    return KEYS[i];
}

int pto_rt_config_default(pto_rt_config *cfg)
{
    if (!cfg)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_default: cfg is NULL");
    memset(cfg, 0, sizeof *cfg);
    for (int r = 0; r < PTO_RINGS; r++) {
        cfg->task_window[r] = 16384;
        cfg->heap_bytes[r] = 256ULL << 20;
        cfg->dep_pool[r] = 16384;
    }
    cfg->latch_policy = PTO_LATCH_OWNED_WALLCLOCK;
    cfg->sched_timeout_ms = 5000;
    cfg->max_idle_iterations = DEFAULT_MAX_IDLE_ITERATIONS;
    cfg->stream_sync_timeout_ms = 2000;
    cfg->stall_report_ms = 1000;
    /* One scheduler thread (issue 13): on 2 shared CPUs every extra thread that waits takes
     * slices from the two doing a handoff. The incident's false latch needs two (an idle
     * sibling): examples/variants.yaml sets PTO_SIM_SCHED_THREADS=2.
     * Eight cores (issue 13): with a neighbour process on one of the 2 CPUs, independent tasks
     * keep eight core threads runnable, which the kernel shares out across both CPUs; with two,
     * every task was a context switch on the one free CPU (~420 k tasks/s against 1 M). Parked
     * cores cost nothing, and a chain uses one core at a time. The incident's variants pin 2. */
    cfg->sched_threads = 1;
    cfg->cores = 8;
    cfg->rank = 0;
    cfg->init_delay[0] = '\0';
    cfg->malloc_model = PTO_MALLOC_NONE;
    cfg->malloc_ms_per_gib = 10.0;
    cfg->malloc_seed = 0;
    cfg->malloc_sigma = 1.0;
    cfg->cond_poll_us = DEFAULT_COND_POLL_US;
    cfg->notify_delay[0] = '\0';
    cfg->notify_median_ms = 0.0;
    cfg->notify_sigma = 1.0;
    cfg->deadlock_check = PTO_DEADLOCK_NO_PROGRESS;
    cfg->ring_deadlock_ms = 500;
    cfg->tensor_wait_timeout_ms = 15000; /* upstream's PTO2_TENSOR_DATA_TIMEOUT_MS */
    pto_clear_error();
    return PTO_OK;
}

/* Strict finite decimal in [lo, hi]: no leading blank, nothing after the number. */
static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (s[0] == '\0' || s[0] == ' ' || *end != '\0' || errno || !isfinite(d) || d < lo || d > hi)
        return 0;
    *out = d;
    return 1;
}

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

typedef int (*u64_rule)(uint64_t v);
static int rule_window(uint64_t v) { return v >= 4 && v <= (1ULL << 24) && (v & (v - 1)) == 0; }
static int rule_heap(uint64_t v) { return v >= 1024 && v <= (1ULL << 36); }
static int rule_pool(uint64_t v) { return v >= 4 && v <= (1ULL << 30); }

/* One value, or exactly four comma-separated values. */
static int parse_rings(const char *key, const char *value, u64_rule rule, const char *rule_text,
                       uint64_t out[PTO_RINGS])
{
    uint64_t vals[PTO_RINGS];
    int n = 0;
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == PTO_RINGS || !parse_u64(p, len, &vals[n]) || !rule(vals[n]))
            goto bad;
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (n != 1 && n != PTO_RINGS)
        goto bad;
    for (int r = 0; r < PTO_RINGS; r++)
        out[r] = vals[n == 1 ? 0 : r];
    return PTO_OK;
bad:
    return pto_fail(PTO_E_CONFIG, "%s=%s: must be %s (one value or four comma-separated values)",
                    key, value, rule_text);
}

static int parse_int_range(const char *key, const char *value, int64_t lo, int64_t hi,
                           int64_t *out)
{
    uint64_t v;
    if (!parse_u64(value, strlen(value), &v) || v < (uint64_t)lo || v > (uint64_t)hi)
        return pto_fail(PTO_E_CONFIG, "%s=%s: must be an integer in [%lld, %lld]", key, value,
                        (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return PTO_OK;
}

/* "MS" or "RANK:MS[,RANK:MS...]"; on success *ms gets the delay of `rank` (if rank >= 0). */
static int parse_rank_delay(const char *key, const char *value, int rank, int64_t *ms)
{
    const int64_t max_ms = 600000;
    *ms = 0;
    if (value[0] == '\0')
        return PTO_OK;
    if (!strchr(value, ':')) {
        uint64_t v;
        if (!parse_u64(value, strlen(value), &v) || v > (uint64_t)max_ms)
            goto bad;
        *ms = (int64_t)v;
        return PTO_OK;
    }
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        uint64_t r, v;
        if (!colon || !parse_u64(p, (size_t)(colon - p), &r) || r > 4095 ||
            !parse_u64(colon + 1, len - (size_t)(colon - p) - 1, &v) || v > (uint64_t)max_ms)
            goto bad;
        if ((int64_t)r == rank)
            *ms = (int64_t)v;
        if (!comma)
            break;
        p = comma + 1;
    }
    return PTO_OK;
bad:
    return pto_fail(PTO_E_CONFIG,
                    "%s=%s: must be milliseconds in [0, %lld] for every rank, or "
                    "RANK:MS[,RANK:MS...] with ranks in [0, 4095]",
                    key, value, (long long)max_ms);
}

int pto_rt_init_delay_ms(const pto_rt_config *cfg, int64_t *ms)
{
    return parse_rank_delay("PTO_SIM_INIT_DELAY_MS", cfg->init_delay, cfg->rank, ms);
}

int pto_rt_notify_delay_ms(const pto_rt_config *cfg, int64_t *ms)
{
    return parse_rank_delay("PTO_SIM_NOTIFY_DELAY_MS", cfg->notify_delay, cfg->rank, ms);
}

int pto_rt_config_set(pto_rt_config *cfg, const char *key, const char *value)
{
    if (!cfg)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_set: cfg is NULL");
    if (!key)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_set: key is NULL");
    if (!value)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_set: value of %s is NULL", key);
    int64_t v;
    int st;
    if (!strcmp(key, "PTO2_RING_TASK_WINDOW"))
        return parse_rings(key, value, rule_window, "a power of two >= 4 (at most 16777216)",
                           cfg->task_window);
    if (!strcmp(key, "PTO2_RING_HEAP"))
        return parse_rings(key, value, rule_heap,
                           "an integer number of bytes >= 1024 (at most 68719476736)",
                           cfg->heap_bytes);
    if (!strcmp(key, "PTO2_RING_DEP_POOL"))
        return parse_rings(key, value, rule_pool, "an integer >= 4 (at most 1073741824)",
                           cfg->dep_pool);
    if (!strcmp(key, "PTO_LATCH_POLICY")) {
        if (!strcmp(value, "owned-wallclock"))
            cfg->latch_policy = PTO_LATCH_OWNED_WALLCLOCK;
        else if (!strcmp(value, "idle-iterations"))
            cfg->latch_policy = PTO_LATCH_IDLE_ITERATIONS;
        else
            return pto_fail(PTO_E_CONFIG,
                            "%s=%s: must be owned-wallclock (default) or idle-iterations", key,
                            value);
        return PTO_OK;
    }
#define INT_KEY(NAME, LO, HI, FIELD, TYPE)                                                     \
    if (!strcmp(key, NAME)) {                                                                  \
        if ((st = parse_int_range(key, value, LO, HI, &v)) != PTO_OK)                          \
            return st;                                                                         \
        cfg->FIELD = (TYPE)v;                                                                  \
        return PTO_OK;                                                                         \
    }
    /* the coherence check judges these two only when someone chose one (timeouts_set) */
    if (!strcmp(key, "PTO_SCHEDULER_TIMEOUT_MS") || !strcmp(key, "PTO_STREAM_SYNC_TIMEOUT_MS"))
        cfg->timeouts_set = 1;
    INT_KEY("PTO_SCHEDULER_TIMEOUT_MS", 1, PTO_MAX_TIMEOUT_MS, sched_timeout_ms, int64_t)
    INT_KEY("PTO_MAX_IDLE_ITERATIONS", 1, PTO_MAX_IDLE_ITERS, max_idle_iterations, int64_t)
    INT_KEY("PTO_STREAM_SYNC_TIMEOUT_MS", 1, PTO_MAX_TIMEOUT_MS, stream_sync_timeout_ms, int64_t)
    INT_KEY("PTO_STALL_REPORT_MS", 1, PTO_MAX_TIMEOUT_MS, stall_report_ms, int64_t)
    INT_KEY("PTO_SIM_SCHED_THREADS", 1, PTO_MAX_SCHED_THREADS, sched_threads, int32_t)
    INT_KEY("PTO_SIM_CORES", 1, PTO_MAX_CORES, cores, int32_t)
    INT_KEY("PTO_RANK", 0, 4095, rank, int32_t)
    INT_KEY("PTO_SIM_COND_POLL_US", 0, 1000000, cond_poll_us, int64_t)
    INT_KEY("PTO_RING_DEADLOCK_MS", 1, PTO_MAX_TIMEOUT_MS, ring_deadlock_ms, int64_t)
    INT_KEY("PTO_TENSOR_WAIT_TIMEOUT_MS", 1, PTO_MAX_TIMEOUT_MS, tensor_wait_timeout_ms, int64_t)
#undef INT_KEY
    if (!strcmp(key, "PTO_SIM_INIT_DELAY_MS") || !strcmp(key, "PTO_SIM_NOTIFY_DELAY_MS")) {
        char *dst = key[8] == 'I' ? cfg->init_delay : cfg->notify_delay; /* PTO_SIM_[I]NIT */
        if (strlen(value) >= sizeof cfg->init_delay)
            return pto_fail(PTO_E_CONFIG, "%s=%.40s...: longer than %zu characters", key, value,
                            sizeof cfg->init_delay - 1);
        if ((st = parse_rank_delay(key, value, -1, &v)) != PTO_OK)
            return st;
        snprintf(dst, sizeof cfg->init_delay, "%s", value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_DEADLOCK_CHECK")) {
        if (!strcmp(value, "no-progress"))
            cfg->deadlock_check = PTO_DEADLOCK_NO_PROGRESS;
        else if (!strcmp(value, "snapshot"))
            cfg->deadlock_check = PTO_DEADLOCK_SNAPSHOT;
        else
            return pto_fail(PTO_E_CONFIG,
                            "%s=%s: must be no-progress (default) or snapshot (upstream's)", key,
                            value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_SIM_NOTIFY_MEDIAN_MS")) {
        if (!parse_double(value, 0.0, 1e6, &cfg->notify_median_ms))
            return pto_fail(PTO_E_CONFIG, "%s=%s: must be a number of milliseconds in [0, 1e6]",
                            key, value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_SIM_NOTIFY_SIGMA")) {
        if (!parse_double(value, 0.0, 4.0, &cfg->notify_sigma))
            return pto_fail(PTO_E_CONFIG, "%s=%s: must be a number in [0, 4] (log-normal shape)",
                            key, value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_SIM_MALLOC_MODEL")) {
        if (!strcmp(value, "none"))
            cfg->malloc_model = PTO_MALLOC_NONE;
        else if (!strcmp(value, "longtail"))
            cfg->malloc_model = PTO_MALLOC_LONGTAIL;
        else
            return pto_fail(PTO_E_CONFIG, "%s=%s: must be none (default) or longtail", key,
                            value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_SIM_MALLOC_MS_PER_GIB")) {
        if (!parse_double(value, 0.0, 1e6, &cfg->malloc_ms_per_gib))
            return pto_fail(PTO_E_CONFIG, "%s=%s: must be a number of milliseconds in [0, 1e6]",
                            key, value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_SIM_MALLOC_SIGMA")) {
        if (!parse_double(value, 0.0, 4.0, &cfg->malloc_sigma))
            return pto_fail(PTO_E_CONFIG, "%s=%s: must be a number in [0, 4] (log-normal shape)",
                            key, value);
        return PTO_OK;
    }
    if (!strcmp(key, "PTO_SIM_MALLOC_SEED")) {
        uint64_t u;
        if (!parse_u64(value, strlen(value), &u))
            return pto_fail(PTO_E_CONFIG, "%s=%s: must be an unsigned 64-bit integer", key,
                            value);
        cfg->malloc_seed = u;
        return PTO_OK;
    }
    return pto_fail(PTO_E_INVALID_ARG, "unknown runtime configuration key %s", key);
}

int pto_rt_config_from_env(pto_rt_config *cfg)
{
    if (!cfg)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_from_env: cfg is NULL");
    for (int i = 0; KEYS[i]; i++) {
        const char *v = getenv(KEYS[i]);
        if (v) {
            int st = pto_rt_config_set(cfg, KEYS[i], v);
            if (st != PTO_OK)
                return st;
        }
    }
    return PTO_OK;
}

/* Values are individually valid by construction; this checks combinations. The one rule:
 * with owned-wallclock, a scheduler budget >= the host stream-sync timeout means a stalled
 * task is reported by the host's outer timeout before the device can latch
 * SCHEDULER_TIMEOUT with its stall locators. Legal (it is the incident's configuration), so a
 * warning, not an error -- and only when one of the two was set (environment, env mapping or
 * keyword): the documented defaults (5000 >= 2000, the incident's) are a known trade-off, and
 * a warning every rank log repeats for a choice nobody made is noise that hides real ones. */
int pto_rt_config_check(const pto_rt_config *cfg, char *buf, size_t cap)
{
    if (!cfg)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_check: cfg is NULL");
    if (!buf || cap == 0)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_config_check: buf is NULL or cap is 0");
    buf[0] = '\0';
    if (cfg->timeouts_set && cfg->latch_policy == PTO_LATCH_OWNED_WALLCLOCK &&
        cfg->sched_timeout_ms >= cfg->stream_sync_timeout_ms)
        snprintf(buf, cap,
                 "PTO_SCHEDULER_TIMEOUT_MS=%lld >= PTO_STREAM_SYNC_TIMEOUT_MS=%lld: a stalled "
                 "task ends the run as a host stream-sync timeout before the scheduler can latch "
                 "SCHEDULER_TIMEOUT (100) with its stall locators; set the scheduler budget below "
                 "the stream-sync timeout for device-side diagnosis",
                 (long long)cfg->sched_timeout_ms, (long long)cfg->stream_sync_timeout_ms);
    return PTO_OK;
}
