/* The sim chip's life cycle and orchestrator: the ready queue, task completion, the thread
 * life cycle, the simulated cores, the orchestrator (ring allocation, flow control, its latch
 * codes), create/destroy, device buffers, submit/sync/abort, the state dump and test hooks.
 * The scheduler threads and their latch policies are in sched.c, task graphs in graph.c; the
 * structures they share are in pto_runtime_internal.h. See pto_runtime.h for the model.
 */
#include "pto_runtime_internal.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define COMMIT_STEP (2ULL << 20)
#define QUIESCE_LIMIT_NS (10LL * 1000000000LL)

/* Zeroed, cache-line aligned (the structs hold _Alignas(64) members; calloc gives 16). */
void *pto_zalloc(size_t n)
{
    void *p = NULL;
    if (n == 0 || posix_memalign(&p, PTO_CL, n) != 0)
        return NULL;
    memset(p, 0, n);
    return p;
}

/* ------------------------------------------------------------------ ready queue (Vyukov) */

int pto_q_reserve(pto_mpmc *q, uint64_t n)
{
    uint64_t cap = 4;
    while (cap < n)
        cap <<= 1;
    if (cap > q->cap) {
        pto_qcell *cells = malloc(cap * sizeof *cells);
        if (!cells)
            return pto_fail(PTO_E_NOMEM, "ready queue of %llu entries", (unsigned long long)cap);
        free(q->cells);
        q->cells = cells;
        q->cap = cap;
    }
    q->mask = q->cap - 1;
    for (uint64_t i = 0; i < q->cap; i++)
        atomic_store_explicit(&q->cells[i].seq, i, memory_order_relaxed);
    atomic_store_explicit(&q->enq, 0, memory_order_relaxed);
    atomic_store_explicit(&q->deq, 0, memory_order_relaxed);
    return PTO_OK;
}

static void q_push(pto_mpmc *q, uint32_t v)
{
    uint64_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
    pto_qcell *c;
    for (;;) {
        c = &q->cells[pos & q->mask];
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            /* seq_cst: a parking scheduler reads enq after announcing itself (arrive()) */
            if (atomic_compare_exchange_weak_explicit(&q->enq, &pos, pos + 1,
                                                      memory_order_seq_cst, memory_order_relaxed))
                break;
        } else {
            /* dif < 0 would mean full: impossible, capacity >= tasks of the graph */
            pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
        }
    }
    c->val = v;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
}

int pto_q_pop(pto_mpmc *q, uint32_t *v)
{
    uint64_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
    pto_qcell *c;
    for (;;) {
        c = &q->cells[pos & q->mask];
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->deq, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return 0;
        } else {
            pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
        }
    }
    *v = c->val;
    atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
    return 1;
}

/* ------------------------------------------------------------------ run state helpers */

/* Ring every parked thread's bell: a core or scheduler that read its bell before this and
 * the run state as RUNNING after it either sees the new value in its futex wait or is woken. */
static void wake_all_parked(pto_rt *rt)
{
    for (int c = 0; c < rt->ncores; c++) {
        atomic_fetch_add_explicit(&rt->cores[c].bell, 1, memory_order_seq_cst);
        pto_futex_wake(&rt->cores[c].bell, 1);
    }
    atomic_fetch_add_explicit(&rt->sched_bell, 1, memory_order_seq_cst);
    pto_futex_wake(&rt->sched_bell, 1 << 30);
}

/* RUNNING -> `to` exactly once; wakes the host and the parked cores and schedulers. */
int pto_finish_run(pto_rt *rt, uint32_t to)
{
    uint32_t expect = PTO_RUN_RUNNING;
    if (!atomic_compare_exchange_strong_explicit(&rt->stop, &expect, to, memory_order_seq_cst,
                                                 memory_order_acquire))
        return 0;
    pto_futex_wake(&rt->stop, 64);
    wake_all_parked(rt);
    return 1;
}

/* A dispatch wrote a task into core c's DATA register (seq_cst): wake the core if it parked.
 * Pairs with core_park(): the core stores `sleeping` then reads DATA, both seq_cst, so either
 * it sees the task or this sees `sleeping`. */
void pto_core_kick(pto_core *c)
{
    if (atomic_load_explicit(&c->sleeping, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&c->bell, 1, memory_order_seq_cst);
        pto_futex_wake(&c->bell, 1);
    }
}

/* A task entered the ready queue: wake one parked scheduler, if any. The push's enq CAS and
 * this load are seq_cst, as are the parking scheduler's sleepers increment and its enq read
 * (sched.c), so either it sees the task or this sees it. */
static void wake_a_scheduler(pto_rt *rt)
{
    if (atomic_load_explicit(&rt->sched_sleepers, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&rt->sched_bell, 1, memory_order_seq_cst);
        pto_futex_wake(&rt->sched_bell, 1);
    }
}


/* ------------------------------------------------------------------ task completion */

/* One of t's start conditions arrived (a fanin completed, the orchestrator published it, or,
 * for an EVENT, the host fired it). The last one makes it ready. */
static void arrive(pto_rt *rt, pto_graph *g, uint32_t t)
{
    if (atomic_fetch_sub_explicit(&g->fanin_left[t], 1, memory_order_acq_rel) != 1)
        return;
    if (g->t[t].kernel == PTO_K_EVENT) {
        pto_complete_task(rt, g, t, 0);
        return;
    }
    atomic_store_explicit(&g->state[t], PTO_TS_READY, memory_order_relaxed);
    q_push(&rt->q, t);
    wake_a_scheduler(rt);
}

void pto_complete_task(pto_rt *rt, pto_graph *g, uint32_t t, int core_task)
{
    atomic_store_explicit(&g->state[t], PTO_TS_COMPLETED, memory_order_release);
    for (uint64_t i = g->fo_off[t]; i < g->fo_off[t + 1]; i++)
        arrive(rt, g, g->fanout[i]);
    const pto_task_static *ts = &g->t[t];
    for (uint32_t i = 0; i < ts->nfanin; i++) {
        uint32_t p = g->fanin[ts->fanin_off + i];
        if (atomic_fetch_sub_explicit(&g->consumers_left[p], 1, memory_order_acq_rel) == 1)
            atomic_store_explicit(&g->state[p], PTO_TS_CONSUMED, memory_order_release);
    }
    if (atomic_fetch_sub_explicit(&g->consumers_left[t], 1, memory_order_acq_rel) == 1)
        atomic_store_explicit(&g->state[t], PTO_TS_CONSUMED, memory_order_release);
    if (core_task)
        atomic_fetch_add_explicit(&rt->completed_core, 1, memory_order_acq_rel);
    if (atomic_fetch_add_explicit(&rt->completed, 1, memory_order_acq_rel) + 1 == rt->total)
        pto_finish_run(rt, PTO_RUN_DONE);
}

/* ------------------------------------------------------------------ thread life cycle */

/* Every runtime thread parks here between runs (zero CPU) until the host starts run `gen`
 * (seen + 1, ...) or shuts down. Returns 0 on shutdown. */
int pto_park_until_run(pto_rt *rt, uint32_t *seen)
{
    uint32_t gen;
    while ((gen = atomic_load_explicit(&rt->gen, memory_order_acquire)) == *seen)
        pto_futex_wait(&rt->gen, *seen, -1);
    *seen = gen;
    return !atomic_load_explicit(&rt->shutdown, memory_order_acquire);
}

/* A thread is done with the current run; the last one out wakes the host's quiesce. */
void pto_leave_run(pto_rt *rt)
{
    if (atomic_fetch_sub_explicit(&rt->active, 1, memory_order_acq_rel) == 1)
        pto_futex_wake(&rt->active, 4);
}

/* ------------------------------------------------------------------ cores */

/* Park core c until a dispatch or the end of the run (no timeout: both ring its bell). */
static void core_park(pto_rt *rt, pto_core *c)
{
    uint32_t bell = atomic_load_explicit(&c->bell, memory_order_seq_cst);
    atomic_store_explicit(&c->sleeping, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->data, memory_order_seq_cst) == 0 &&
        atomic_load_explicit(&rt->stop, memory_order_seq_cst) == PTO_RUN_RUNNING)
        pto_futex_wait(&c->bell, bell, -1);
    atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
}

static void *core_main(void *arg)
{
    pto_core *c = arg;
    pto_rt *rt = c->rt;
    char name[16];
    snprintf(name, sizeof name, "pto-core%d", c->idx);
    pthread_setname_np(pthread_self(), name);
    uint32_t seen = 0;
    for (;;) {
        atomic_store_explicit(&c->parked, 1, memory_order_relaxed);
        if (!pto_park_until_run(rt, &seen))
            return NULL;
        atomic_store_explicit(&c->parked, 0, memory_order_relaxed);
        pto_graph *g = rt->g;
        uint64_t idle = 0;
        int64_t idle_from = 0;
        for (;;) {
            uint32_t d = atomic_load_explicit(&c->data, memory_order_acquire);
            if (d) {
                uint32_t t = d - 1;
                atomic_store_explicit(&c->data, 0, memory_order_relaxed);
                uint64_t tag = (uint64_t)d << 2;
                atomic_store_explicit(&c->cond, tag | PTO_COND_ACK, memory_order_release);
                int st = PTO_OK;
                if (g->t[t].kernel != PTO_K_NOOP) {
                    atomic_store_explicit(&c->cur_kernel, g->t[t].kernel, memory_order_relaxed);
                    atomic_store_explicit(&c->cur_since_ns, pto_now_ns(), memory_order_relaxed);
                    atomic_store_explicit(&c->cur, d, memory_order_relaxed);
                    st = pto_kernel_exec(rt, g, t);
                    atomic_store_explicit(&c->cur, 0, memory_order_relaxed);
                }
                atomic_store_explicit(&c->cond, tag | (st == PTO_OK ? PTO_COND_FIN : PTO_COND_FAIL),
                                      memory_order_release);
                idle = 0;
                continue;
            }
            if (!pto_run_live(rt))
                break;
            /* Waiting for the next dispatch (PTO_WAIT_* in pto_runtime_internal.h): spin
             * while the scheduler runs on the other CPU, yield while it shares this one, then
             * park until a dispatch or the end of the run. */
            idle++;
            if (idle <= PTO_WAIT_SPIN) {
                pto_cpu_relax();
                continue;
            }
            int64_t now = pto_now_ns();
            if (idle == PTO_WAIT_SPIN + 1)
                idle_from = now;
            int here = sched_getcpu();
            atomic_store_explicit(&c->cpu, here, memory_order_relaxed);
            int owner_cpu = atomic_load_explicit(&rt->sch[c->idx % rt->nsched].cpu,
                                                 memory_order_relaxed);
            if (owner_cpu != here && now - idle_from < PTO_WAIT_FAR_NS) {
                pto_cpu_relax();
                continue;
            }
            if (now - idle_from < PTO_CORE_YIELD_NS) {
                sched_yield();
                continue;
            }
            core_park(rt, c);
            idle = 0;
        }
        pto_leave_run(rt);
    }
}

/* ------------------------------------------------------------------ orchestrator */

static void ring_reclaim(pto_rt *rt, pto_graph *g, pto_ring *R)
{
    while (R->tail < R->head) {
        uint32_t t = R->ids[R->tail & R->mask];
        if (atomic_load_explicit(&g->state[t], memory_order_acquire) != PTO_TS_CONSUMED)
            break;
        R->heap_tail = g->heap_end[t];
        R->dep_used -= g->t[t].nfanin;
        R->tail++;
    }
    if (R->tail == R->head)
        R->heap_head = R->heap_tail = 0;
    atomic_store_explicit(&R->dump_used, R->head - R->tail, memory_order_relaxed);
}

/* 0: fits; 1 window, 2 heap, 3 dep pool. On fit, *start gets the heap start (monotonic). */
static int ring_fits(pto_rt *rt, pto_ring *R, int r, const pto_task_static *ts, uint64_t *start)
{
    if (R->head - R->tail >= rt->cfg.task_window[r])
        return 1;
    uint64_t cap = rt->cfg.heap_bytes[r], h = ts->heap_bytes;
    uint64_t s = R->heap_head;
    if (h) {
        uint64_t pos = s % cap;
        if (pos + h > cap)
            s += cap - pos;
        if (s + h - R->heap_tail > cap)
            return 2;
    }
    if (R->dep_used + ts->nfanin > rt->cfg.dep_pool[r])
        return 3;
    *start = s;
    return 0;
}

static void orch_run(pto_rt *rt)
{
    pto_graph *g = rt->g;
    static const char *const res_name[] = {"", "task window", "heap", "dep pool"};
    atomic_store_explicit(&rt->orch_state, 1, memory_order_relaxed);
    for (int64_t i = 0; i < g->n; i++) {
        uint32_t t = (uint32_t)i;
        const pto_task_static *ts = &g->t[t];
        int r = ts->ring;
        pto_ring *R = &rt->rings[r];
        if ((i & 255) == 0) {
            if (!pto_run_live(rt))
                goto out;
            atomic_store_explicit(&rt->orch_next, i, memory_order_relaxed);
        }
        if (ts->arg != UINT32_MAX && rt->bad_arg >= 0 && (int64_t)ts->arg >= rt->bad_arg) {
            pto_latch(rt, PTO_LATCH_THREAD_ORCH, PTO_ERR_INVALID_ARGS, 0, PTO_STALL_NONE, t, -1, r,
                  PTO_LATCHED_BY_NONE, "task %u (%s): %s", t, pto_kernel_name(ts->kernel),
                  rt->bad_arg_msg);
            goto out;
        }
        if (ts->kernel == PTO_K_TENSOR_WAIT) {
            /* get_tensor_data: every dep (published earlier) must complete first */
            const int64_t bound_ns = rt->cfg.tensor_wait_timeout_ms * 1000000LL;
            int64_t t0 = pto_now_ns();
            for (uint32_t k = 0; k < ts->nfanin; k++) {
                uint32_t p = g->fanin[ts->fanin_off + k];
                for (uint64_t n = 0; atomic_load_explicit(&g->state[p], memory_order_acquire) <
                                     PTO_TS_COMPLETED;
                     n++) {
                    if (!pto_run_live(rt))
                        goto out;
                    if (pto_now_ns() - t0 >= bound_ns) {
                        pto_latch(rt, PTO_LATCH_THREAD_ORCH, PTO_ERR_TENSOR_WAIT_TIMEOUT, 0,
                              PTO_STALL_NONE, p, -1, r, PTO_LATCHED_BY_NONE,
                              "task %u (tensor_wait): producer task %u (%s) not completed "
                              "within PTO_TENSOR_WAIT_TIMEOUT_MS=%lld",
                              t, p, pto_kernel_name(g->t[p].kernel),
                              (long long)rt->cfg.tensor_wait_timeout_ms);
                        goto out;
                    }
                    pto_backoff(n, 1000000);
                }
            }
        }
        if (ts->nfanin > rt->cfg.dep_pool[r]) {
            pto_latch(rt, PTO_LATCH_THREAD_ORCH, PTO_ERR_DEP_POOL_OVERFLOW, 0, PTO_STALL_NONE, t, -1,
                  r, PTO_LATCHED_BY_NONE, "task %u needs %u dep-pool nodes (one per fanin) but ring %d's "
                  "PTO2_RING_DEP_POOL holds %llu", t, ts->nfanin, r,
                  (unsigned long long)rt->cfg.dep_pool[r]);
            goto out;
        }
        if (ts->heap_bytes > rt->cfg.heap_bytes[r]) {
            pto_latch(rt, PTO_LATCH_THREAD_ORCH, PTO_ERR_HEAP_RING_DEADLOCK, 0, PTO_STALL_NONE, t, -1,
                  r, PTO_LATCHED_BY_NONE, "task %u needs %llu heap bytes but ring %d's PTO2_RING_HEAP is %llu", t,
                  (unsigned long long)ts->heap_bytes, r,
                  (unsigned long long)rt->cfg.heap_bytes[r]);
            goto out;
        }
        uint64_t start = 0;
        int res = ring_fits(rt, R, r, ts, &start);
        if (res) {
            uint64_t spins = 0;
            static const int code[] = {0, PTO_ERR_FLOW_CONTROL_DEADLOCK,
                                       PTO_ERR_HEAP_RING_DEADLOCK, PTO_ERR_DEP_POOL_OVERFLOW};
            /* wall-clock backstop: reclaim progress (the ring's tail) re-arms it */
            uint64_t seen_tail = R->tail;
            int64_t stuck_since = pto_now_ns();
            const int64_t bound_ns = rt->cfg.ring_deadlock_ms * 1000000LL;
            atomic_store_explicit(&rt->orch_next, i, memory_order_relaxed);
            atomic_store_explicit(&rt->orch_block_ring, r, memory_order_relaxed);
            atomic_store_explicit(&rt->orch_block_res, res, memory_order_relaxed);
            atomic_store_explicit(&rt->orch_state, 2, memory_order_relaxed);
            for (;;) {
                ring_reclaim(rt, g, R);
                if ((res = ring_fits(rt, R, r, ts, &start)) == 0)
                    break;
                /* Can the ring ever make room? Only if its oldest task can become CONSUMED; a
                 * completed task whose consumer is not submitted yet (it comes at or after
                 * task t, which waits for this very room) never can. */
                uint32_t oldest = R->ids[R->tail & R->mask];
                if (atomic_load_explicit(&g->state[oldest], memory_order_acquire) ==
                        PTO_TS_COMPLETED &&
                    g->fo_off[oldest + 1] > g->fo_off[oldest] &&
                    g->fanout[g->fo_off[oldest + 1] - 1] >= t) {
                    pto_latch(rt, PTO_LATCH_THREAD_ORCH, code[res], 0, PTO_STALL_NONE, t, -1, r,
                          PTO_LATCHED_BY_NONE,
                          "ring %d %s full (%llu tasks in flight) and can never make room: its "
                          "oldest task %u is completed but waits for consumer %u, which comes "
                          "at or after task %u that needs the room",
                          r, res_name[res], (unsigned long long)(R->head - R->tail), oldest,
                          g->fanout[g->fo_off[oldest + 1] - 1], t);
                    goto out;
                }
                if (!pto_run_live(rt))
                    goto out;
                if (R->tail != seen_tail) {
                    seen_tail = R->tail;
                    stuck_since = pto_now_ns();
                } else if ((spins & 15) == 0 && pto_now_ns() - stuck_since >= bound_ns) {
                    pto_latch(rt, PTO_LATCH_THREAD_ORCH, code[res], 0, PTO_STALL_NONE, t, -1, r,
                          PTO_LATCHED_BY_NONE,
                          "ring %d %s full (%llu tasks in flight) with no reclaim for "
                          "PTO_RING_DEADLOCK_MS=%lld before task %u; its oldest task %u is %s",
                          r, res_name[res], (unsigned long long)(R->head - R->tail),
                          (long long)rt->cfg.ring_deadlock_ms, t, oldest,
                          atomic_load_explicit(&g->state[oldest], memory_order_acquire) ==
                                  PTO_TS_COMPLETED
                              ? "completed, waiting for its consumers"
                              : "not completed (RUNNING, ready or waiting)");
                    goto out;
                }
                pto_backoff(spins++, 50000);
            }
            atomic_store_explicit(&rt->orch_state, 1, memory_order_relaxed);
        }
        /* allocate */
        R->ids[R->head & R->mask] = t;
        R->head++;
        R->dep_used += ts->nfanin;
        if (ts->heap_bytes) {
            uint64_t cap = rt->cfg.heap_bytes[r];
            uint64_t off_end = start % cap + ts->heap_bytes;
            R->heap_head = start + ts->heap_bytes;
            if (off_end > R->committed) {
                uint64_t want = (off_end + COMMIT_STEP - 1) & ~(COMMIT_STEP - 1);
                if (want > R->heap_map)
                    want = R->heap_map;
                if (mprotect(R->heap_base + R->committed, want - R->committed,
                             PROT_READ | PROT_WRITE) != 0) {
                    /* upstream has no code for this (9 is an explicit fatal): sim-only */
                    pto_latch(rt, PTO_LATCH_THREAD_ORCH, PTO_ERR_SIM_HEAP_COMMIT_FAILED, 0,
                          PTO_STALL_NONE, t, -1, r, PTO_LATCHED_BY_NONE, "committing ring %d heap to %llu bytes: %s",
                          r, (unsigned long long)want, strerror(errno));
                    goto out;
                }
                R->committed = want;
            }
        }
        g->heap_end[t] = R->heap_head;
        atomic_store_explicit(&rt->published, i + 1, memory_order_release);
        atomic_fetch_add_explicit(&rt->progress_epoch, 1, memory_order_release);
        arrive(rt, g, t);
    }
    atomic_store_explicit(&rt->orch_next, g->n, memory_order_relaxed);
out:
    atomic_store_explicit(&rt->orch_state, 3, memory_order_relaxed);
}

static void *orch_main(void *arg)
{
    pto_rt *rt = arg;
    pthread_setname_np(pthread_self(), "pto-orch");
    uint32_t seen = 0;
    for (;;) {
        if (!pto_park_until_run(rt, &seen))
            return NULL;
        orch_run(rt);
        atomic_store_explicit(&rt->orch_state, 0, memory_order_relaxed);
        pto_leave_run(rt);
    }
}

/* ------------------------------------------------------------------ create / destroy */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* See pto_runtime.h: fixed + scale * exp(sigma * Z), Z ~ N(0,1). */
static int64_t init_delay(const pto_rt_config *cfg)
{
    int64_t fixed = 0;
    pto_rt_init_delay_ms(cfg, &fixed);
    double tail = 0.0;
    if (cfg->malloc_model == PTO_MALLOC_LONGTAIL) {
        double gib = 0.0;
        for (int r = 0; r < PTO_RINGS; r++)
            gib += (double)cfg->heap_bytes[r] / (double)(1ULL << 30);
        uint64_t s = cfg->malloc_seed ^ ((uint64_t)cfg->rank * 0x9E3779B97F4A7C15ULL);
        splitmix64(&s);
        double u1 = ((double)(splitmix64(&s) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(splitmix64(&s) >> 11) / 9007199254740992.0;
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        tail = cfg->malloc_ms_per_gib * gib * exp(cfg->malloc_sigma * z);
        if (tail > 60000.0)
            tail = 60000.0;
    }
    return fixed + (int64_t)(tail + 0.5);
}

/* See pto_runtime.h, op-time latency model: fixed + median * exp(sigma * Z), per run. */
static int64_t notify_delay(const pto_rt_config *cfg, int64_t run)
{
    int64_t fixed = 0;
    pto_rt_notify_delay_ms(cfg, &fixed);
    double jitter = 0.0;
    if (cfg->notify_median_ms > 0.0) {
        uint64_t s = cfg->malloc_seed ^ ((uint64_t)cfg->rank * 0x9E3779B97F4A7C15ULL) ^
                     ((uint64_t)run * 0xD1B54A32D192ED03ULL) ^ 0x6E6F74696679ULL; /* "notify" */
        splitmix64(&s);
        double u1 = ((double)(splitmix64(&s) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(splitmix64(&s) >> 11) / 9007199254740992.0;
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        jitter = cfg->notify_median_ms * exp(cfg->notify_sigma * z);
        if (jitter > 60000.0)
            jitter = 60000.0;
    }
    return fixed + (int64_t)(jitter + 0.5);
}

/* Say once per process and per distinct text that the budgets are incoherent: a chip worker's
 * log gets the line, a process that creates thousands of runtimes does not repeat it. */
static void warn_incoherent_config(const pto_rt_config *cfg)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char last[512];
    char warn[512];
    pto_rt_config_check(cfg, warn, sizeof warn);
    if (!warn[0])
        return;
    pthread_mutex_lock(&lock);
    if (strcmp(warn, last) != 0) {
        snprintf(last, sizeof last, "%s", warn);
        fprintf(stderr, "pto[rank %d] CONFIG WARNING %s\n", cfg->rank, warn);
        fflush(stderr);
    }
    pthread_mutex_unlock(&lock);
}

static void stop_threads(pto_rt *rt)
{
    atomic_store_explicit(&rt->shutdown, 1, memory_order_release);
    atomic_fetch_add_explicit(&rt->gen, 1, memory_order_acq_rel);
    pto_futex_wake(&rt->gen, 1 << 30);
    /* each flag cleared once joined: a start that failed, then destroy, joins nobody twice */
    if (rt->orch_started)
        pthread_join(rt->orch_th, NULL);
    rt->orch_started = 0;
    for (int i = 0; i < rt->nsched; i++) {
        if (rt->sch[i].started)
            pthread_join(rt->sch[i].th, NULL);
        rt->sch[i].started = 0;
    }
    for (int i = 0; i < rt->ncores; i++) {
        if (rt->cores[i].started)
            pthread_join(rt->cores[i].th, NULL);
        rt->cores[i].started = 0;
    }
}

static void free_rt(pto_rt *rt)
{
    for (int r = 0; r < PTO_RINGS; r++) {
        free(rt->rings[r].ids);
        if (rt->rings[r].heap_base)
            munmap(rt->rings[r].heap_base, rt->rings[r].heap_map);
    }
    for (int i = 0; i < rt->nbufs; i++)
        free(rt->bufs[i].p);
    free(rt->bufs);
    free(rt->q.cells);
    free(rt->sch);
    free(rt->cores);
    pthread_mutex_destroy(&rt->api);
    free(rt);
}

/* Start the runtime's threads: at the first run that has tasks, not at create (issue 13): a
 * chip that is opened and closed without a run (a round whose op runs no graph) then costs no
 * thread creation and no joins. They start before that run's gen bump, with `seen` 0 == gen, so
 * each sees the run. Async signals are blocked in them, so Python's handlers stay on the main
 * thread. 0 or the pthread_create error (the threads that did start are then stopped). */
static int start_threads(pto_rt *rt)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = 0;
    for (int i = 0; i < rt->ncores && !err; i++) {
        pto_core *c = &rt->cores[i];
        err = pthread_create(&c->th, NULL, core_main, c);
        c->started = !err;
    }
    for (int i = 0; i < rt->nsched && !err; i++) {
        pto_sched *s = &rt->sch[i];
        err = pthread_create(&s->th, NULL, pto_sched_main, s);
        s->started = !err;
    }
    if (!err) {
        err = pthread_create(&rt->orch_th, NULL, orch_main, rt);
        rt->orch_started = !err;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        stop_threads(rt);
    rt->threads_up = !err;
    return err;
}

int pto_rt_create(const pto_rt_config *cfg, pto_rt **out)
{
    int64_t t0 = pto_now_ns();
    if (!cfg)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_create: cfg is NULL");
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_create: out is NULL");
    *out = NULL;
    /* Re-validate: the struct may have been filled by hand. */
    for (int r = 0; r < PTO_RINGS; r++) {
        uint64_t w = cfg->task_window[r];
        if (w < 4 || w > (1ULL << 24) || (w & (w - 1)))
            return pto_fail(PTO_E_CONFIG, "PTO2_RING_TASK_WINDOW=%llu (ring %d): must be a power "
                            "of two >= 4 (one value or four comma-separated values)",
                            (unsigned long long)w, r);
        if (cfg->heap_bytes[r] < 1024 || cfg->heap_bytes[r] > (1ULL << 36))
            return pto_fail(PTO_E_CONFIG, "PTO2_RING_HEAP=%llu (ring %d): must be an integer "
                            "number of bytes >= 1024 (one value or four comma-separated values)",
                            (unsigned long long)cfg->heap_bytes[r], r);
        if (cfg->dep_pool[r] < 4 || cfg->dep_pool[r] > (1ULL << 30))
            return pto_fail(PTO_E_CONFIG, "PTO2_RING_DEP_POOL=%llu (ring %d): must be an integer "
                            ">= 4 (one value or four comma-separated values)",
                            (unsigned long long)cfg->dep_pool[r], r);
    }
    if (cfg->sched_threads < 1 || cfg->sched_threads > PTO_MAX_SCHED_THREADS)
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_SCHED_THREADS=%d: must be in [1, %d]",
                        cfg->sched_threads, PTO_MAX_SCHED_THREADS);
    if (cfg->cores < 1 || cfg->cores > PTO_MAX_CORES)
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_CORES=%d: must be in [1, %d]", cfg->cores,
                        PTO_MAX_CORES);
    if (cfg->latch_policy != PTO_LATCH_OWNED_WALLCLOCK &&
        cfg->latch_policy != PTO_LATCH_IDLE_ITERATIONS)
        return pto_fail(PTO_E_CONFIG, "PTO_LATCH_POLICY=%d: unknown policy", cfg->latch_policy);
    const struct { const char *key; int64_t v, hi; } ranges[] = {
        {"PTO_SCHEDULER_TIMEOUT_MS", cfg->sched_timeout_ms, PTO_MAX_TIMEOUT_MS},
        {"PTO_STREAM_SYNC_TIMEOUT_MS", cfg->stream_sync_timeout_ms, PTO_MAX_TIMEOUT_MS},
        {"PTO_STALL_REPORT_MS", cfg->stall_report_ms, PTO_MAX_TIMEOUT_MS},
        {"PTO_MAX_IDLE_ITERATIONS", cfg->max_idle_iterations, PTO_MAX_IDLE_ITERS},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v < 1 || ranges[i].v > ranges[i].hi)
            return pto_fail(PTO_E_CONFIG, "%s=%lld: must be an integer in [1, %lld]",
                            ranges[i].key, (long long)ranges[i].v, (long long)ranges[i].hi);
    if (cfg->malloc_model != PTO_MALLOC_NONE && cfg->malloc_model != PTO_MALLOC_LONGTAIL)
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_MALLOC_MODEL=%d: unknown model", cfg->malloc_model);
    if (!(cfg->malloc_ms_per_gib >= 0.0 && cfg->malloc_ms_per_gib <= 1e6)) /* NaN fails too */
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_MALLOC_MS_PER_GIB=%g: must be a number of "
                        "milliseconds in [0, 1e6]", cfg->malloc_ms_per_gib);
    if (!(cfg->malloc_sigma >= 0.0 && cfg->malloc_sigma <= 4.0))
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_MALLOC_SIGMA=%g: must be a number in [0, 4] "
                        "(log-normal shape)", cfg->malloc_sigma);
    if (cfg->rank < 0 || cfg->rank > 4095)
        return pto_fail(PTO_E_CONFIG, "PTO_RANK=%d: must be in [0, 4095]", cfg->rank);
    if (cfg->cond_poll_us < 0 || cfg->cond_poll_us > 1000000)
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_COND_POLL_US=%lld: must be an integer in "
                        "[0, 1000000]", (long long)cfg->cond_poll_us);
    if (cfg->tensor_wait_timeout_ms < 1 || cfg->tensor_wait_timeout_ms > PTO_MAX_TIMEOUT_MS)
        return pto_fail(PTO_E_CONFIG, "PTO_TENSOR_WAIT_TIMEOUT_MS=%lld: must be an integer in "
                        "[1, %lld]", (long long)cfg->tensor_wait_timeout_ms, PTO_MAX_TIMEOUT_MS);
    if (cfg->ring_deadlock_ms < 1 || cfg->ring_deadlock_ms > PTO_MAX_TIMEOUT_MS)
        return pto_fail(PTO_E_CONFIG, "PTO_RING_DEADLOCK_MS=%lld: must be an integer in "
                        "[1, %lld]", (long long)cfg->ring_deadlock_ms, PTO_MAX_TIMEOUT_MS);
    if (cfg->deadlock_check != PTO_DEADLOCK_NO_PROGRESS &&
        cfg->deadlock_check != PTO_DEADLOCK_SNAPSHOT)
        return pto_fail(PTO_E_CONFIG, "PTO_DEADLOCK_CHECK=%d: unknown check", cfg->deadlock_check);
    if (!(cfg->notify_median_ms >= 0.0 && cfg->notify_median_ms <= 1e6))
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_NOTIFY_MEDIAN_MS=%g: must be a number of "
                        "milliseconds in [0, 1e6]", cfg->notify_median_ms);
    if (!(cfg->notify_sigma >= 0.0 && cfg->notify_sigma <= 4.0))
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_NOTIFY_SIGMA=%g: must be a number in [0, 4] "
                        "(log-normal shape)", cfg->notify_sigma);
    if (memchr(cfg->notify_delay, '\0', sizeof cfg->notify_delay) == NULL)
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_NOTIFY_DELAY_MS: not NUL-terminated");
    int64_t probe_notify;
    if (pto_rt_notify_delay_ms(cfg, &probe_notify) != PTO_OK)
        return PTO_E_CONFIG;
    if (memchr(cfg->init_delay, '\0', sizeof cfg->init_delay) == NULL)
        return pto_fail(PTO_E_CONFIG, "PTO_SIM_INIT_DELAY_MS: not NUL-terminated");
    int64_t probe;
    int st = pto_rt_init_delay_ms(cfg, &probe);
    if (st != PTO_OK)
        return st;

    pto_rt *rt = pto_zalloc(sizeof *rt);
    if (!rt)
        return pto_fail(PTO_E_NOMEM, "pto_rt_create: runtime struct");
    rt->cfg = *cfg;
    rt->nsched = cfg->sched_threads;
    rt->ncores = cfg->cores;
    pthread_mutex_init(&rt->api, NULL);
    atomic_store(&rt->latch_owner, -1);
    rt->bad_arg = -1;
    rt->sch = pto_zalloc((size_t)rt->nsched * sizeof *rt->sch);
    rt->cores = pto_zalloc((size_t)rt->ncores * sizeof *rt->cores);
    if (!rt->sch || !rt->cores) {
        free_rt(rt);
        return pto_fail(PTO_E_NOMEM, "pto_rt_create: thread tables");
    }

    /* device_malloc of the 4 rings: injected latency, then lazy reservation */
    rt->init_delay_ms = init_delay(cfg);
    pto_sleep_ns(rt->init_delay_ms * 1000000LL);
    long page = sysconf(_SC_PAGESIZE);
    for (int r = 0; r < PTO_RINGS; r++) {
        pto_ring *R = &rt->rings[r];
        R->mask = cfg->task_window[r] - 1;
        R->ids = malloc(cfg->task_window[r] * sizeof *R->ids);
        R->heap_map = (size_t)((cfg->heap_bytes[r] + (uint64_t)page - 1) & ~((uint64_t)page - 1));
        R->heap_base = mmap(NULL, R->heap_map, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (R->heap_base == MAP_FAILED) {
            R->heap_base = NULL;
            int e = errno;
            free_rt(rt);
            return pto_fail(PTO_E_NOMEM, "reserving ring %d heap of %llu bytes "
                            "(PTO2_RING_HEAP): %s", r, (unsigned long long)cfg->heap_bytes[r],
                            strerror(e));
        }
        if (!R->ids) {
            free_rt(rt);
            return pto_fail(PTO_E_NOMEM, "ring %d task window of %llu slots", r,
                            (unsigned long long)cfg->task_window[r]);
        }
    }

    for (int i = 0; i < rt->ncores; i++) {
        pto_core *c = &rt->cores[i];
        c->idx = i;
        c->rt = rt;
        c->inflight = -1;
        atomic_store(&c->cpu, -1); /* not waited anywhere yet */
    }
    for (int i = 0; i < rt->nsched; i++) {
        pto_sched *s = &rt->sch[i];
        s->idx = i;
        atomic_store(&s->cpu, -1);
        s->rt = rt;
    }
    warn_incoherent_config(cfg);
    rt->init_ns = pto_now_ns() - t0;
    *out = rt;
    pto_clear_error();
    return PTO_OK;
}

static int quiesce(pto_rt *rt)
{
    int64_t deadline = pto_now_ns() + QUIESCE_LIMIT_NS;
    uint32_t a;
    while ((a = atomic_load_explicit(&rt->active, memory_order_acquire)) != 0) {
        int64_t left = deadline - pto_now_ns();
        if (left <= 0)
            return 0;
        pto_futex_wait(&rt->active, a, left < 10000000 ? left : 10000000);
    }
    return 1;
}

int pto_rt_destroy(pto_rt *rt)
{
    if (!rt)
        return PTO_OK;
    pto_rt_abort(rt);
    pthread_mutex_lock(&rt->api);
    if (rt->in_flight && !quiesce(rt)) {
        pthread_mutex_unlock(&rt->api);
        return pto_fail(PTO_E_STATE, "pto_rt_destroy: runtime threads did not stop within 10 s");
    }
    if (rt->in_flight && rt->g)
        rt->g->submitted = 0;
    pthread_mutex_unlock(&rt->api);
    stop_threads(rt);
    while (rt->graphs) {
        pto_graph *g = rt->graphs;
        rt->graphs = g->gnext;
        pto_graph_free(g);
    }
    free_rt(rt);
    return PTO_OK;
}

int pto_rt_get_config(const pto_rt *rt, pto_rt_config *out)
{
    if (!rt || !out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_get_config: %s is NULL", rt ? "out" : "rt");
    *out = rt->cfg;
    return PTO_OK;
}

int pto_rt_stats_get(const pto_rt *rt, pto_rt_stats *out)
{
    if (!rt || !out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_stats_get: %s is NULL", rt ? "out" : "rt");
    pto_rt *w = (pto_rt *)rt; /* the lock, not the runtime, changes */
    pthread_mutex_lock(&w->api); /* pto_rt_submit counts runs in another thread */
    out->runs = rt->runs;
    pthread_mutex_unlock(&w->api);
    out->init_ns = rt->init_ns;
    out->init_delay_ms = rt->init_delay_ms;
    out->tasks_completed = atomic_load(&((pto_rt *)rt)->tasks_total);
    out->threads = 1 + rt->nsched + rt->ncores;
    out->sched_threads = rt->nsched;
    out->cores = rt->ncores;
    out->rank = rt->cfg.rank;
    return PTO_OK;
}

int pto_rt_bind_comm(pto_rt *rt, pto_comm *comm)
{
    if (!rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_bind_comm: rt is NULL");
    pthread_mutex_lock(&rt->api);
    if (rt->in_flight) {
        pthread_mutex_unlock(&rt->api);
        return pto_fail(PTO_E_STATE, "pto_rt_bind_comm: a run is in flight");
    }
    rt->comm = comm;
    pthread_mutex_unlock(&rt->api);
    return PTO_OK;
}

/* ------------------------------------------------------------------ buffers */

int pto_rt_buffer_alloc(pto_rt *rt, uint64_t nbytes, int32_t *id)
{
    if (!rt || !id)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_buffer_alloc: %s is NULL", rt ? "id" : "rt");
    if (nbytes == 0 || nbytes > (1ULL << 34) || nbytes % 4)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_buffer_alloc: nbytes=%llu must be a positive "
                        "multiple of 4 (float32) up to 16 GiB", (unsigned long long)nbytes);
    void *p = calloc(1, nbytes);
    if (!p)
        return pto_fail(PTO_E_NOMEM, "pto_rt_buffer_alloc: %llu bytes",
                        (unsigned long long)nbytes);
    pthread_mutex_lock(&rt->api);
    int32_t slot = -1;
    for (int32_t i = 0; i < rt->nbufs; i++)
        if (!rt->bufs[i].p) {
            slot = i;
            break;
        }
    if (slot < 0) {
        if (rt->nbufs == rt->bufs_cap) {
            int32_t cap = rt->bufs_cap ? rt->bufs_cap * 2 : 16;
            void *nb = realloc(rt->bufs, (size_t)cap * sizeof *rt->bufs);
            if (!nb) {
                pthread_mutex_unlock(&rt->api);
                free(p);
                return pto_fail(PTO_E_NOMEM, "pto_rt_buffer_alloc: buffer table");
            }
            rt->bufs = nb;
            rt->bufs_cap = cap;
        }
        slot = rt->nbufs++;
    }
    rt->bufs[slot].p = p;
    rt->bufs[slot].n = nbytes;
    pthread_mutex_unlock(&rt->api);
    *id = slot;
    return PTO_OK;
}

static int buf_check(pto_rt *rt, const char *fn, int32_t id, uint64_t off, uint64_t n)
{
    if (id < 0 || id >= rt->nbufs || !rt->bufs[id].p)
        return pto_fail(PTO_E_INVALID_ARG, "%s: buffer id %d is not allocated", fn, id);
    if (off > rt->bufs[id].n || n > rt->bufs[id].n - off)
        return pto_fail(PTO_E_RANGE, "%s: [%llu, %llu + %llu) outside buffer %d of %llu bytes",
                        fn, (unsigned long long)off, (unsigned long long)off,
                        (unsigned long long)n, id, (unsigned long long)rt->bufs[id].n);
    return PTO_OK;
}

int pto_rt_buffer_free(pto_rt *rt, int32_t id)
{
    if (!rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_buffer_free: rt is NULL");
    pthread_mutex_lock(&rt->api);
    int st = buf_check(rt, "pto_rt_buffer_free", id, 0, 0);
    if (st == PTO_OK && rt->in_flight)
        st = pto_fail(PTO_E_STATE, "pto_rt_buffer_free: a run is in flight");
    else if (st == PTO_OK && rt->broken) /* a kernel may still write it */
        st = pto_fail(PTO_E_STATE, "pto_rt_buffer_free: runtime threads did not stop after an "
                      "earlier run; close the runtime");
    if (st == PTO_OK) {
        free(rt->bufs[id].p);
        rt->bufs[id].p = NULL;
        rt->bufs[id].n = 0;
    }
    pthread_mutex_unlock(&rt->api);
    return st;
}

int pto_rt_buffer_write(pto_rt *rt, int32_t id, uint64_t off, const void *src, uint64_t n)
{
    if (!rt || (!src && n))
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_buffer_write: %s is NULL", rt ? "src" : "rt");
    pthread_mutex_lock(&rt->api);
    int st = buf_check(rt, "pto_rt_buffer_write", id, off, n);
    if (st == PTO_OK && n)
        memcpy((char *)rt->bufs[id].p + off, src, n);
    pthread_mutex_unlock(&rt->api);
    return st;
}

int pto_rt_buffer_read(pto_rt *rt, int32_t id, uint64_t off, void *dst, uint64_t n)
{
    if (!rt || (!dst && n))
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_buffer_read: %s is NULL", rt ? "dst" : "rt");
    pthread_mutex_lock(&rt->api);
    int st = buf_check(rt, "pto_rt_buffer_read", id, off, n);
    if (st == PTO_OK && n)
        memcpy(dst, (char *)rt->bufs[id].p + off, n);
    pthread_mutex_unlock(&rt->api);
    return st;
}

/* used by kernels.c under the api lock (submit) */
int pto_rt_buffer_ptr(pto_rt *rt, int32_t id, uint64_t off, uint64_t n, void **out)
{
    int st = buf_check(rt, "device buffer", id, off, n);
    if (st == PTO_OK)
        *out = (char *)rt->bufs[id].p + off;
    return st;
}

/* ------------------------------------------------------------------ runs */

int pto_rt_submit(pto_rt *rt, pto_graph *g)
{
    if (!rt || !g)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_submit: %s is NULL", rt ? "graph" : "rt");
    if (g->rt != rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_submit: the graph belongs to another runtime");
    pthread_mutex_lock(&rt->api);
    int st = PTO_OK;
    if (rt->broken)
        st = pto_fail(PTO_E_STATE, "pto_rt_submit: runtime threads did not stop after an "
                      "earlier run; close the runtime");
    else if (rt->in_flight)
        st = pto_fail(PTO_E_STATE, "pto_rt_submit: a run is already in flight; sync first");
    else if (g->n > 0x7ffffffeLL)
        st = pto_fail(PTO_E_RANGE, "pto_rt_submit: graph too large");
    if (st == PTO_OK)
        st = pto_graph_prepare(rt, g);
    if (st == PTO_OK && g->n > 0 && !rt->threads_up) {
        int err = start_threads(rt);
        if (err) {
            rt->broken = 1;
            st = pto_fail(PTO_E_SYS, "pto_rt_submit: starting the runtime threads: "
                          "pthread_create: %s", strerror(err));
        }
    }
    if (st != PTO_OK) {
        pthread_mutex_unlock(&rt->api);
        return st;
    }
    for (int r = 0; r < PTO_RINGS; r++) {
        pto_ring *R = &rt->rings[r];
        R->head = R->tail = R->heap_head = R->heap_tail = R->dep_used = 0;
        atomic_store(&R->dump_used, 0);
    }
    for (int c = 0; c < rt->ncores; c++) {
        pto_core *k = &rt->cores[c];
        atomic_store_explicit(&k->data, 0, memory_order_relaxed);
        atomic_store_explicit(&k->cond, 0, memory_order_relaxed);
        atomic_store_explicit(&k->cur, 0, memory_order_relaxed);
        k->inflight = -1;
    }
    rt->g = g;
    __atomic_store_n(&rt->total, g->n, __ATOMIC_RELAXED); /* pto_rt_dump_state reads it unlocked */
    atomic_store(&rt->completed, 0);
    atomic_store(&rt->completed_core, 0);
    atomic_store(&rt->published, 0);
    atomic_store(&rt->progress_epoch, 0);
    atomic_store(&rt->latch_owner, -1);
    atomic_store(&rt->latch_attempts, 0);
    atomic_store(&rt->orch_code, 0);
    atomic_store(&rt->sched_code, 0);
    rt->sub_class = 0;
    rt->stuck_task = -1;
    rt->latch_core = rt->latch_ring = -1;
    rt->latch_completed = rt->latch_total = 0;
    rt->latch_msg[0] = '\0';
    rt->latched_by = PTO_LATCHED_BY_NONE;
    rt->notify_delay_ms = notify_delay(&rt->cfg, rt->runs);
    atomic_store(&rt->notify_taken, 0);
    g->submitted = 1;
    rt->in_flight = 1;
    rt->runs++;
    rt->submit_ns = pto_now_ns();
    if (g->n == 0) {
        atomic_store(&rt->active, 0);
        atomic_store_explicit(&rt->stop, PTO_RUN_DONE, memory_order_release);
    } else {
        atomic_store(&rt->active, (uint32_t)(1 + rt->nsched + rt->ncores));
        atomic_store_explicit(&rt->stop, PTO_RUN_RUNNING, memory_order_release);
        atomic_fetch_add_explicit(&rt->gen, 1, memory_order_acq_rel);
        pto_futex_wake(&rt->gen, 1 << 30);
    }
    pthread_mutex_unlock(&rt->api);
    return PTO_OK;
}

/* `end`: how the run ended. A latch can lose the race to end the run (the last task completed,
 * the stream sync timed out or the host aborted first); its header is kept for diagnosis, but a
 * run that completed every task reports its real count. */
static void fill_info(pto_rt *rt, pto_rt_error_info *info, uint32_t end)
{
    if (!info)
        return;
    memset(info, 0, sizeof *info);
    info->orch_error_code = atomic_load(&rt->orch_code);
    info->sched_error_code = atomic_load(&rt->sched_code);
    info->latch_thread = atomic_load(&rt->latch_owner);
    info->latch_attempts = atomic_load(&rt->latch_attempts);
    int latched = info->latch_thread >= 0;
    info->sub_class = latched ? rt->sub_class : 0;
    info->stuck_task = latched ? rt->stuck_task : -1;
    info->core = latched ? rt->latch_core : -1;
    info->ring = latched ? rt->latch_ring : -1;
    info->latched_by = latched ? rt->latched_by : PTO_LATCHED_BY_NONE;
    info->completed = latched && end != PTO_RUN_DONE ? rt->latch_completed
                                                      : atomic_load(&rt->completed);
    info->total = rt->total;
    info->elapsed_us = (rt->end_ns - rt->submit_ns) / 1000;
}

int pto_rt_sync(pto_rt *rt, int64_t timeout_ms, pto_rt_error_info *info)
{
    if (!rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_sync: rt is NULL");
    if (timeout_ms == 0 || timeout_ms < PTO_SYNC_FOREVER)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_sync: timeout_ms=%lld must be > 0, "
                        "PTO_SYNC_DEFAULT (-1) or PTO_SYNC_FOREVER (-2)", (long long)timeout_ms);
    pthread_mutex_lock(&rt->api);
    int in_flight = rt->in_flight;
    pthread_mutex_unlock(&rt->api);
    if (!in_flight)
        return pto_fail(PTO_E_STATE, "pto_rt_sync: nothing submitted");
    if (timeout_ms == PTO_SYNC_DEFAULT)
        timeout_ms = rt->cfg.stream_sync_timeout_ms;
    /* a budget past the end of the clock is no deadline (and must not overflow into one) */
    int64_t deadline = timeout_ms > 0 && timeout_ms <= (INT64_MAX - rt->submit_ns) / 1000000LL
                           ? rt->submit_ns + timeout_ms * 1000000LL
                           : INT64_MAX;
    uint32_t s;
    while ((s = atomic_load_explicit(&rt->stop, memory_order_acquire)) == PTO_RUN_RUNNING) {
        int64_t left = deadline == INT64_MAX ? 100000000 : deadline - pto_now_ns();
        if (left <= 0) {
            pto_finish_run(rt, PTO_RUN_TIMEOUT);
            continue;
        }
        pto_futex_wait(&rt->stop, PTO_RUN_RUNNING, left < 100000000 ? left : 100000000);
    }
    rt->end_ns = pto_now_ns();
    pthread_mutex_lock(&rt->api);
    int quiet = quiesce(rt);
    if (!quiet)
        rt->broken = 1;
    atomic_fetch_add(&rt->tasks_total, atomic_load(&rt->completed));
    fill_info(rt, info, s);
    rt->in_flight = 0;
    if (rt->g && quiet) /* else a thread may still use the graph: it stays submitted */
        rt->g->submitted = 0;
    atomic_store_explicit(&rt->stop, PTO_RUN_IDLE, memory_order_release);
    int64_t done = atomic_load(&rt->completed);
    int st = PTO_OK;
    if (s == PTO_RUN_ERROR) {
        /* the orchestrator's code is the primary one when both are set (upstream's
         * runtime_status_from_error_codes reads it first); the message is the first latch's */
        int oc = atomic_load(&rt->orch_code), sc = atomic_load(&rt->sched_code);
        char also[96] = "";
        if (oc && sc)
            snprintf(also, sizeof also, " (also sched_error_code=%d %s)", sc,
                     pto_error_name(sc));
        st = pto_fail(oc ? PTO_E_ORCH : PTO_E_SCHED, "%s=%d %s%s: %s",
                      oc ? "orch_error_code" : "sched_error_code", oc ? oc : sc,
                      pto_error_name(oc ? oc : sc), also, rt->latch_msg);
    } else if (s == PTO_RUN_TIMEOUT) {
        st = pto_fail(PTO_E_STREAM_SYNC_TIMEOUT, "stream sync timed out after %lld ms "
                      "(PTO_STREAM_SYNC_TIMEOUT_MS or the run's timeout); completed %lld/%lld "
                      "tasks; the run was aborted", (long long)timeout_ms, (long long)done,
                      (long long)rt->total);
    } else if (s == PTO_RUN_ABORT) {
        st = pto_fail(PTO_E_ABORTED, "the run was aborted; completed %lld/%lld tasks",
                      (long long)done, (long long)rt->total);
    }
    if (!quiet && st == PTO_OK)
        st = pto_fail(PTO_E_STATE, "runtime threads did not stop within 10 s");
    pthread_mutex_unlock(&rt->api);
    if (st == PTO_OK)
        pto_clear_error();
    return st;
}

int pto_rt_run(pto_rt *rt, pto_graph *g, int64_t timeout_ms, pto_rt_error_info *info)
{
    if (timeout_ms == 0 || timeout_ms < PTO_SYNC_FOREVER)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_run: timeout_ms=%lld must be > 0, "
                        "PTO_SYNC_DEFAULT (-1) or PTO_SYNC_FOREVER (-2)", (long long)timeout_ms);
    int st = pto_rt_submit(rt, g);
    if (st != PTO_OK)
        return st;
    return pto_rt_sync(rt, timeout_ms, info);
}

int pto_rt_fire_event(pto_rt *rt, int64_t task)
{
    if (!rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_fire_event: rt is NULL");
    pthread_mutex_lock(&rt->api);
    int st = PTO_OK;
    pto_graph *g = rt->g;
    if (!rt->in_flight || atomic_load(&rt->stop) != PTO_RUN_RUNNING)
        st = pto_fail(PTO_E_STATE, "pto_rt_fire_event: no run in flight");
    else if (task < 0 || task >= g->n)
        st = pto_fail(PTO_E_INVALID_ARG, "pto_rt_fire_event: task %lld is not a task of the "
                      "running graph", (long long)task);
    else if (g->t[task].kernel != PTO_K_EVENT)
        st = pto_fail(PTO_E_INVALID_ARG, "pto_rt_fire_event: task %lld is a %s task, not an "
                      "event", (long long)task, pto_kernel_name(g->t[task].kernel));
    else if (atomic_load(&g->state[task]) != PTO_TS_PENDING)
        st = pto_fail(PTO_E_STATE, "pto_rt_fire_event: event %lld already fired",
                      (long long)task);
    if (st == PTO_OK) {
        atomic_store(&g->state[task], PTO_TS_READY); /* marks "fired" before arrival */
        arrive(rt, g, (uint32_t)task);
    }
    pthread_mutex_unlock(&rt->api);
    return st;
}

int pto_rt_abort(pto_rt *rt)
{
    if (!rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_abort: rt is NULL");
    pto_finish_run(rt, PTO_RUN_ABORT);
    return PTO_OK;
}

/* ------------------------------------------------------------------ dump */

int pto_rt_dump_state(pto_rt *rt, char *buf, size_t cap)
{
    if (!rt || !buf || cap == 0)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_dump_state: %s",
                        !rt ? "rt is NULL" : "buf is NULL or cap is 0");
    static const char *const runs[] = {"idle", "running", "done", "error", "aborted",
                                       "stream-sync-timeout"};
    static const char *const res_name[] = {"", "task window", "heap", "dep pool"};
    size_t off = 0;
    int64_t now = pto_now_ns();
#define OUT(...)                                                                               \
    do {                                                                                       \
        if (off < cap) {                                                                       \
            int k_ = snprintf(buf + off, cap - off, __VA_ARGS__);                              \
            if (k_ > 0)                                                                        \
                off += (size_t)k_;                                                             \
        }                                                                                      \
    } while (0)
    uint32_t stop = atomic_load(&rt->stop);
    int64_t pub = atomic_load(&rt->published), done = atomic_load(&rt->completed);
    int64_t total = __atomic_load_n(&rt->total, __ATOMIC_RELAXED); /* no api lock: may be in a sync */
    OUT("runtime rank %d: run %s, tasks completed %lld / published %lld / total %lld, "
        "running %lld, ready %lld; policy %s\n",
        rt->cfg.rank, stop < 6 ? runs[stop] : "?", (long long)done, (long long)pub, (long long)total, (long long)pto_running_estimate(rt), (long long)pto_ready_estimate(rt),
        rt->cfg.latch_policy == PTO_LATCH_OWNED_WALLCLOCK ? "owned-wallclock" : "idle-iterations");
    int os = atomic_load(&rt->orch_state);
    if (os == 2) {
        int r = atomic_load(&rt->orch_block_ring), res = atomic_load(&rt->orch_block_res);
        OUT("  orchestrator: blocked before task %lld on ring %d %s (%llu slots in use)\n",
            (long long)atomic_load(&rt->orch_next), r, res_name[res & 3],
            (unsigned long long)atomic_load(&rt->rings[r & 3].dump_used));
    } else {
        OUT("  orchestrator: %s\n", os == 0 ? "parked" : os == 1 ? "submitting" : "done");
    }
    for (int i = 0; i < rt->nsched; i++) {
        pto_sched *s = &rt->sch[i];
        int st = atomic_load(&s->state);
        if (st == 2)
            OUT("  sched%d: idle %.1f ms (%lld iterations)\n", i,
                (double)(now - atomic_load(&s->idle_since_ns)) / 1e6,
                (long long)atomic_load(&s->idle_iters));
        else
            OUT("  sched%d: %s\n", i, st == 0 ? "parked" : "dispatching");
    }
    for (int c = 0; c < rt->ncores; c++) {
        pto_core *k = &rt->cores[c];
        uint32_t cur = atomic_load(&k->cur);
        if (cur)
            OUT("  core%d (sched%d): running task %u (%s) for %.1f ms\n", c, c % rt->nsched,
                cur - 1, pto_kernel_name(atomic_load(&k->cur_kernel)),
                (double)(now - atomic_load(&k->cur_since_ns)) / 1e6);
        else
            OUT("  core%d (sched%d): %s\n", c, c % rt->nsched,
                atomic_load(&k->parked) ? "parked" : "idle");
    }
    int owner = atomic_load(&rt->latch_owner);
    /* the message is complete once a code is published (release in pto_latch()) */
    if (owner >= 0 && (atomic_load_explicit(&rt->orch_code, memory_order_acquire) ||
                       atomic_load_explicit(&rt->sched_code, memory_order_acquire)))
        OUT("  latched by %s%d: %s\n", owner == PTO_LATCH_THREAD_ORCH ? "orchestrator" : "sched",
            owner == PTO_LATCH_THREAD_ORCH ? 0 : owner, rt->latch_msg);
#undef OUT
    if (off >= cap)
        buf[cap - 1] = '\0';
    return PTO_OK;
}

/* ------------------------------------------------------------------ test hooks */

int pto_rt_test_hold_latch(pto_rt *rt, uint64_t mask)
{
    if (!rt)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_test_hold_latch: rt is NULL");
    atomic_store_explicit(&rt->test_latch_hold, mask, memory_order_release);
    return PTO_OK;
}

int pto_rt_test_latch_attempts(pto_rt *rt, uint64_t *out)
{
    if (!rt || !out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_rt_test_latch_attempts: %s is NULL",
                        rt ? "out" : "rt");
    *out = atomic_load_explicit(&rt->latch_attempts, memory_order_acquire);
    return PTO_OK;
}
