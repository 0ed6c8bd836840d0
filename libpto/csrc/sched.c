/* The scheduler threads of the sim chip: the two latch policies (PTO_LATCH_POLICY
 * idle-iterations and owned-wallclock, with the deadlock branch's PTO_DEADLOCK_CHECK), the stall
 * classification of SCHEDULER_TIMEOUT (S1/S3/S4/S5), the periodic STALL lines, and the shared
 * latch header every thread (orchestrator included) writes a code into. This is the mechanism
 * of the idle-sibling incident: a change to a latch policy lands here. See pto_runtime.h for
 * the model and the rules.
 */
#include "pto_runtime_internal.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>

#define SCHED_SLEEP_NS 50000LL

/* ------------------------------------------------------------------ run estimates */

/* Tasks popped by a scheduler and not yet completed by a core (RUNNING, approximately). */
int64_t pto_running_estimate(pto_rt *rt)
{
    int64_t popped = (int64_t)atomic_load_explicit(&rt->q.deq, memory_order_acquire);
    int64_t done = atomic_load_explicit(&rt->completed_core, memory_order_acquire);
    return popped > done ? popped - done : 0;
}

/* Tasks in the ready queue. */
int64_t pto_ready_estimate(pto_rt *rt)
{
    int64_t e = (int64_t)atomic_load_explicit(&rt->q.enq, memory_order_acquire);
    int64_t d = (int64_t)atomic_load_explicit(&rt->q.deq, memory_order_acquire);
    return e > d ? e - d : 0;
}

/* ------------------------------------------------------------------ the latch header */

/* First writer wins and owns the locators; every attempt is recorded in the bitmap. As
 * upstream, orch_error_code and sched_error_code are separate fields: a loser of the other
 * family still records its code when its field is empty, so both can be set at once. `role`:
 * PTO_LATCHED_BY_* of a code-100 latch. Returns 1 for the winner. */
int pto_latch(pto_rt *rt, int thread, int orch_code, int sched_code, int sub, int64_t stuck,
              int core, int ring, int role, const char *fmt, ...)
{
    atomic_fetch_or_explicit(&rt->latch_attempts, 1ULL << thread, memory_order_acq_rel);
    /* Test hook (pto_rt_test_hold_latch; the mask is 0 outside tests): a held thread has
     * recorded its attempt and waits here, before the compare-and-swap, until the host
     * releases it or the run ends, so a test orders the writers instead of racing them. */
    for (uint64_t n = 0; atomic_load_explicit(&rt->test_latch_hold, memory_order_acquire) &
                         (1ULL << thread);
         n++) {
        if (!pto_run_live(rt))
            break;
        pto_backoff(n, 1000000);
    }
    int32_t expect = -1;
    if (!atomic_compare_exchange_strong_explicit(&rt->latch_owner, &expect, thread,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        /* the other family's field: record this code too (first of its family wins) */
        int32_t zero = 0;
        _Atomic int32_t *field = orch_code ? &rt->orch_code : &rt->sched_code;
        int code = orch_code ? orch_code : sched_code;
        int owner_orch = expect == PTO_LATCH_THREAD_ORCH;
        int mine_orch = thread == PTO_LATCH_THREAD_ORCH;
        if (owner_orch != mine_orch &&
            atomic_compare_exchange_strong_explicit(field, &zero, code, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            fprintf(stderr, "pto[rank %d] LATCH %s=%d (%s) by %s%d too (after %s%d's latch)\n",
                    rt->cfg.rank, orch_code ? "orch_error_code" : "sched_error_code", code,
                    pto_error_name(code), mine_orch ? "orchestrator" : "sched",
                    mine_orch ? 0 : thread, owner_orch ? "orchestrator" : "sched",
                    owner_orch ? 0 : expect);
            fflush(stderr);
        }
        return 0;
    }
    rt->sub_class = sub;
    rt->stuck_task = stuck;
    rt->latch_core = core;
    rt->latch_ring = ring;
    rt->latched_by = role;
    rt->latch_completed = atomic_load_explicit(&rt->completed, memory_order_acquire);
    rt->latch_total = rt->total;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->latch_msg, sizeof rt->latch_msg, fmt, ap);
    va_end(ap);
    if (orch_code)
        atomic_store_explicit(&rt->orch_code, orch_code, memory_order_release);
    if (sched_code)
        atomic_store_explicit(&rt->sched_code, sched_code, memory_order_release);
    fprintf(stderr, "pto[rank %d] LATCH %s=%d (%s) by %s%d: %s\n", rt->cfg.rank,
            orch_code ? "orch_error_code" : "sched_error_code", orch_code ? orch_code : sched_code,
            pto_error_name(orch_code ? orch_code : sched_code),
            thread == PTO_LATCH_THREAD_ORCH ? "orchestrator" : "sched",
            thread == PTO_LATCH_THREAD_ORCH ? 0 : thread, rt->latch_msg);
    fflush(stderr);
    pto_finish_run(rt, PTO_RUN_ERROR);
    return 1;
}

/* ------------------------------------------------------------------ schedulers */

/* Lowest-index published task that is not completed (the first blocked one), for S4. */
static int64_t first_waiting(pto_rt *rt, pto_graph *g)
{
    int64_t pub = atomic_load_explicit(&rt->published, memory_order_acquire);
    for (int64_t i = 0; i < pub && i < g->n; i++)
        if (atomic_load_explicit(&g->state[i], memory_order_acquire) < PTO_TS_COMPLETED)
            return i;
    return -1;
}

/* Sub-class of a stall when no core of this thread holds evidence. */
static int classify(pto_rt *rt, pto_graph *g, int64_t *stuck, int *core)
{
    *core = -1;
    *stuck = -1;
    if (pto_running_estimate(rt) > 0) {
        for (int c = 0; c < rt->ncores; c++) {
            uint32_t cur = atomic_load_explicit(&rt->cores[c].cur, memory_order_relaxed);
            if (cur) {
                *stuck = (int64_t)cur - 1;
                *core = c;
                break;
            }
        }
        return PTO_STALL_S1_RUNNING_STALLED;
    }
    if (pto_ready_estimate(rt) > 0)
        return PTO_STALL_S3_READY_ALL_IDLE;
    int64_t pub = atomic_load_explicit(&rt->published, memory_order_acquire);
    int64_t done = atomic_load_explicit(&rt->completed, memory_order_acquire);
    if (pub > done) {
        *stuck = first_waiting(rt, g);
        return PTO_STALL_S4_DEP_DEADLOCK;
    }
    if (pub < rt->total) {
        *stuck = pub;
        return PTO_STALL_S5_ORCH_STARVATION;
    }
    return PTO_STALL_UNKNOWN;
}

static void stall_report(pto_rt *rt, pto_sched *s, int64_t idle_ms)
{
    int64_t running = pto_running_estimate(rt), ready = pto_ready_estimate(rt);
    int64_t pub = atomic_load_explicit(&rt->published, memory_order_acquire);
    int64_t done = atomic_load_explicit(&rt->completed, memory_order_acquire);
    int64_t waiting = pub - done - running - ready;
    if (waiting < 0)
        waiting = 0;
    char own[128] = "";
    size_t off = 0;
    for (int c = s->idx; c < rt->ncores && off < sizeof own - 32; c += rt->nsched) {
        uint32_t cur = atomic_load_explicit(&rt->cores[c].cur, memory_order_relaxed);
        if (cur)
            off += (size_t)snprintf(own + off, sizeof own - off, " core%d:task%u(%s)", c,
                                    cur - 1,
                                    pto_kernel_name(atomic_load_explicit(
                                        &rt->cores[c].cur_kernel, memory_order_relaxed)));
    }
    fprintf(stderr,
            "pto[rank %d] STALL sched%d idle %lld ms: running=%lld ready=%lld waiting=%lld "
            "unpublished=%lld completed=%lld/%lld%s%s\n",
            rt->cfg.rank, s->idx, (long long)idle_ms, (long long)running, (long long)ready,
            (long long)waiting, (long long)(rt->total - pub), (long long)done,
            (long long)rt->total, off ? " owns" : "", own);
    fflush(stderr);
}

/* Park a scheduler that owns no RUNNING task and found the ready queue empty, until a push
 * (arrive() rings the bell when it sees a sleeper), the end of the run, or `timeout_ns` (its
 * next budget check or STALL report). The sleepers increment, the bell read and the enq read
 * are seq_cst, as are the pusher's enq CAS and sleepers read: no wake-up is lost. */
static void sched_park(pto_rt *rt, int64_t timeout_ns, int wants_pushes)
{
    if (!wants_pushes) {
        uint32_t bell = atomic_load_explicit(&rt->sched_bell, memory_order_seq_cst);
        if (atomic_load_explicit(&rt->stop, memory_order_seq_cst) == PTO_RUN_RUNNING)
            pto_futex_wait(&rt->sched_bell, bell, timeout_ns);
        return;
    }
    atomic_fetch_add_explicit(&rt->sched_sleepers, 1, memory_order_seq_cst);
    uint32_t bell = atomic_load_explicit(&rt->sched_bell, memory_order_seq_cst);
    uint64_t enq = atomic_load_explicit(&rt->q.enq, memory_order_seq_cst);
    uint64_t deq = atomic_load_explicit(&rt->q.deq, memory_order_seq_cst);
    if (enq <= deq && atomic_load_explicit(&rt->stop, memory_order_seq_cst) == PTO_RUN_RUNNING)
        pto_futex_wait(&rt->sched_bell, bell, timeout_ns);
    atomic_fetch_sub_explicit(&rt->sched_sleepers, 1, memory_order_relaxed);
}

static void sched_run(pto_rt *rt, pto_sched *s)
{
    pto_graph *g = rt->g;
    pto_core *mine[PTO_MAX_CORES];
    int nmine = 0;
    for (int c = s->idx; c < rt->ncores; c += rt->nsched)
        mine[nmine++] = &rt->cores[c];
    const int policy = rt->cfg.latch_policy;
    const uint64_t budget = pto_ms_to_cycles(rt->cfg.sched_timeout_ms);
    const uint64_t report = pto_ms_to_cycles(rt->cfg.stall_report_ms);
    const int64_t max_idle = rt->cfg.max_idle_iterations;
    const int64_t cond_poll_ns = rt->cfg.cond_poll_us * 1000;
    const int counts_iterations = policy == PTO_LATCH_IDLE_ITERATIONS;
    uint64_t seq = 0, idle = 0, armed_at = 0, next_report = 0;
    int64_t armed_epoch = 0, armed_done = 0, idle_from = 0;
    atomic_store_explicit(&s->state, 1, memory_order_relaxed);
    while (pto_run_live(rt)) {
        int progress = 0;
        for (int i = 0; i < nmine; i++) {
            pto_core *c = mine[i];
            if (c->inflight >= 0) {
                uint64_t cond = atomic_load_explicit(&c->cond, memory_order_acquire);
                uint64_t state = cond & 3;
                if ((cond >> 2) == (uint64_t)c->inflight + 1 && state >= PTO_COND_FIN) {
                    uint32_t t = (uint32_t)c->inflight;
                    c->inflight = -1;
                    if (state == PTO_COND_FAIL) {
                        /* upstream has no code for "a kernel returned failure": sim-only */
                        pto_latch(rt, s->idx, 0, PTO_ERR_SIM_KERNEL_FAILED, PTO_STALL_NONE, t, c->idx,
                              -1, PTO_LATCHED_BY_NONE,
                              "task %u (%s) on core %d completed with a failure", t,
                              pto_kernel_name(g->t[t].kernel), c->idx);
                        break;
                    }
                    pto_complete_task(rt, g, t, 1);
                    progress = 1;
                }
            }
            if (c->inflight < 0) {
                uint32_t t;
                if (pto_q_pop(&rt->q, &t)) {
                    c->inflight = t;
                    c->dispatch_seq = ++seq;
                    atomic_store_explicit(&g->state[t], PTO_TS_RUNNING, memory_order_relaxed);
                    atomic_store_explicit(&c->data, t + 1, memory_order_seq_cst);
                    pto_core_kick(c);
                    atomic_store_explicit(&s->cpu, sched_getcpu(), memory_order_relaxed);
                    progress = 1;
                }
            }
        }
        if (progress) {
            if (idle) {
                idle = 0;
                atomic_store_explicit(&s->state, 1, memory_order_relaxed);
            }
            continue;
        }
        idle++;
        if (idle == 1) {
            armed_at = pto_syscnt();
            armed_epoch = atomic_load_explicit(&rt->progress_epoch, memory_order_acquire);
            armed_done = atomic_load_explicit(&rt->completed, memory_order_acquire);
            next_report = armed_at + report;
            idle_from = pto_now_ns();
            atomic_store_explicit(&s->idle_since_ns, idle_from, memory_order_relaxed);
            atomic_store_explicit(&s->state, 2, memory_order_relaxed);
        }
        atomic_store_explicit(&s->idle_iters, (int64_t)idle, memory_order_relaxed);
        int owned = 0; /* cores of this thread whose task is RUNNING (COND polled above) */
        for (int i = 0; i < nmine; i++)
            owned += mine[i]->inflight >= 0;
        if (policy == PTO_LATCH_IDLE_ITERATIONS && (int64_t)idle >= max_idle) {
            int64_t stuck;
            int core;
            int sub = classify(rt, g, &stuck, &core);
            int role = owned ? PTO_LATCHED_BY_OWNER
                             : pto_running_estimate(rt) > 0 ? PTO_LATCHED_BY_SIBLING
                                                        : PTO_LATCHED_BY_NO_OWNER;
            pto_latch(rt, s->idx, 0, PTO_ERR_SCHEDULER_TIMEOUT, sub, stuck, core, -1, role,
                  "idle-iterations: latched by %s thread %d: sched%d reached "
                  "PTO_MAX_IDLE_ITERATIONS=%lld; %s, stuck task %lld, core %d, completed %lld/%lld",
                  role == PTO_LATCHED_BY_OWNER     ? "owner"
                  : role == PTO_LATCHED_BY_SIBLING ? "sibling"
                                                   : "no-owner",
                  s->idx, s->idx, (long long)max_idle, pto_stall_name(sub), (long long)stuck,
                  core, (long long)atomic_load(&rt->completed), (long long)rt->total);
            break;
        }
        /* owned-wallclock checks its clocks every iteration past the spin: an iteration may
         * be a park of many milliseconds */
        if ((idle >= 64 && (idle & 7) == 0) ||
            (!counts_iterations && idle > PTO_WAIT_SPIN)) {
            uint64_t now = pto_syscnt();
            if (now >= next_report) {
                stall_report(rt, s, (int64_t)((now - armed_at) / 50000ULL));
                next_report += report;
            }
            if (policy == PTO_LATCH_OWNED_WALLCLOCK && now - armed_at >= budget) {
                pto_core *own = NULL;
                for (int i = 0; i < nmine; i++)
                    if (mine[i]->inflight >= 0 &&
                        (!own || mine[i]->dispatch_seq < own->dispatch_seq))
                        own = mine[i];
                if (own) {
                    pto_latch(rt, s->idx, 0, PTO_ERR_SCHEDULER_TIMEOUT, PTO_STALL_S1_RUNNING_STALLED,
                          own->inflight, own->idx, -1, PTO_LATCHED_BY_OWNER,
                          "owned-wallclock: latched by owner thread %d: sched%d owns RUNNING "
                          "task %lld (%s) on core %d, no progress for "
                          "PTO_SCHEDULER_TIMEOUT_MS=%lld; S1, completed %lld/%lld",
                          s->idx, s->idx, (long long)own->inflight,
                          pto_kernel_name(g->t[own->inflight].kernel), own->idx,
                          (long long)rt->cfg.sched_timeout_ms,
                          (long long)atomic_load(&rt->completed), (long long)rt->total);
                    break;
                }
                /* no-progress (default): deadlock evidence is global: nothing published and
                 * nothing completed anywhere for the whole budget, and nothing RUNNING now. An
                 * instantaneous snapshot alone is not evidence: between a sibling's completion
                 * of task k and its pop of task k + 1 nothing is RUNNING and k + 1 is ready (it
                 * would read as S3, or as S4 when the counters are read across the pop).
                 * snapshot (PTO_DEADLOCK_CHECK=snapshot): upstream's branch, exactly that
                 * instantaneous snapshot, offered to show its false window. */
                int64_t epoch = atomic_load_explicit(&rt->progress_epoch, memory_order_acquire);
                int64_t done = atomic_load_explicit(&rt->completed, memory_order_acquire);
                int snapshot = rt->cfg.deadlock_check == PTO_DEADLOCK_SNAPSHOT;
                if ((snapshot || (epoch == armed_epoch && done == armed_done)) &&
                    pto_running_estimate(rt) == 0 && done < rt->total) {
                    int64_t stuck;
                    int core;
                    int sub = classify(rt, g, &stuck, &core);
                    if (sub != PTO_STALL_S1_RUNNING_STALLED) {
                        pto_latch(rt, s->idx, 0, PTO_ERR_SCHEDULER_TIMEOUT, sub, stuck, core, -1,
                              PTO_LATCHED_BY_NO_OWNER,
                              "owned-wallclock deadlock branch (%s): latched by no-owner thread "
                              "%d: sched%d idle for PTO_SCHEDULER_TIMEOUT_MS=%lld, no thread "
                              "owns a RUNNING task, completed %lld < total %lld; %s, stuck task "
                              "%lld",
                              snapshot ? "snapshot" : "no-progress", s->idx, s->idx,
                              (long long)rt->cfg.sched_timeout_ms, (long long)done,
                              (long long)rt->total, pto_stall_name(sub), (long long)stuck);
                        break;
                    }
                }
                /* no evidence: re-arm */
                armed_at = now;
                armed_epoch = epoch;
                armed_done = done;
            }
        }
        if (counts_iterations) {
            /* idle-iterations: upstream's loop, whose pace the PTO_MAX_IDLE_ITERATIONS
             * calibration (~110 us per idle iteration) depends on. The COND poll cost: an idle
             * iteration that polled RUNNING cores is slower, by PTO_SIM_COND_POLL_US per core,
             * once the backoff reached its sleep stage. */
            if (owned && cond_poll_ns && idle >= 80)
                pto_sleep_ns(SCHED_SLEEP_NS + owned * cond_poll_ns);
            else
                pto_backoff(idle, SCHED_SLEEP_NS);
            continue;
        }
        /* owned-wallclock: no iteration count to keep, so wait as cheaply as the CPUs allow
         * (PTO_WAIT_* in pto_runtime_internal.h). Owning RUNNING work: spin while an owned
         * core runs on the other CPU, yield while one shares this CPU (it runs its task in
         * our slice), then sleep with the COND poll cost. Owning nothing: park until a push. */
        if (idle <= PTO_WAIT_SPIN) {
            pto_cpu_relax();
            continue;
        }
        int64_t now_ns = pto_now_ns();
        if (owned) {
            int here = sched_getcpu(), near = 0;
            atomic_store_explicit(&s->cpu, here, memory_order_relaxed);
            for (int i = 0; i < nmine; i++)
                near |= mine[i]->inflight >= 0 &&
                        atomic_load_explicit(&mine[i]->cpu, memory_order_relaxed) == here;
            if (!near && now_ns - idle_from < PTO_WAIT_FAR_NS)
                pto_cpu_relax();
            else if (now_ns - idle_from < PTO_SCHED_YIELD_NS)
                sched_yield();
            else
                pto_sleep_ns(SCHED_SLEEP_NS + owned * cond_poll_ns);
        } else if (idle <= PTO_WAIT_SPIN + PTO_IDLE_SCHED_YIELDS) {
            sched_yield();
        } else {
            /* a scheduler without cores has nothing a push could give it: it only wakes
             * for its checks (not counted as a sleeper, so pushes do not ring for it) */
            uint64_t now = pto_syscnt(), until = next_report;
            if (armed_at + budget < until)
                until = armed_at + budget;
            if (until > now)
                sched_park(rt, (int64_t)(until - now) * 20, nmine > 0);
        }
    }
    atomic_store_explicit(&s->state, 0, memory_order_relaxed);
}

void *pto_sched_main(void *arg)
{
    pto_sched *s = arg;
    pto_rt *rt = s->rt;
    char name[16];
    snprintf(name, sizeof name, "pto-sched%d", s->idx);
    pthread_setname_np(pthread_self(), name);
    uint32_t seen = 0;
    for (;;) {
        if (!pto_park_until_run(rt, &seen))
            return NULL;
        sched_run(rt, s);
        pto_leave_run(rt);
    }
}
