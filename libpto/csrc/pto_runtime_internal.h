/* Internal structures of the sim runtime, shared by runtime.c (life cycle, orchestrator, cores),
 * sched.c (schedulers, latch policies), graph.c (task graphs) and kernels.c; not an API. */
#ifndef PTO_RUNTIME_INTERNAL_H
#define PTO_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pto_clock.h"
#include "pto_runtime.h"

#define PTO_CL 64

/* task states */
enum { PTO_TS_PENDING = 0, PTO_TS_READY = 1, PTO_TS_RUNNING = 2, PTO_TS_COMPLETED = 3,
       PTO_TS_CONSUMED = 4 };
/* run states (rt->stop) */
enum { PTO_RUN_IDLE = 0, PTO_RUN_RUNNING = 1, PTO_RUN_DONE = 2, PTO_RUN_ERROR = 3,
       PTO_RUN_ABORT = 4, PTO_RUN_TIMEOUT = 5 };
/* COND register states */
enum { PTO_COND_ACK = 1, PTO_COND_FIN = 2, PTO_COND_FAIL = 3 };

typedef struct pto_task_static {
    uint8_t kernel;
    uint8_t ring;
    uint16_t pad;
    uint32_t nfanin;
    uint64_t fanin_off; /* into graph->fanin */
    uint64_t heap_bytes;
    uint32_t arg;       /* into graph->args; UINT32_MAX: none */
    uint32_t pad2;
} pto_task_static;

typedef struct pto_qcell {
    _Atomic uint64_t seq;
    uint32_t val;
} pto_qcell;

typedef struct pto_mpmc {
    pto_qcell *cells;
    uint64_t mask;
    uint64_t cap;
    _Alignas(PTO_CL) _Atomic uint64_t enq;
    _Alignas(PTO_CL) _Atomic uint64_t deq;
    char pad[PTO_CL - sizeof(uint64_t)];
} pto_mpmc;

struct pto_graph {
    pto_rt *rt;
    int64_t n, cap;
    pto_task_static *t;
    uint32_t *fanin;
    int64_t nedges, edges_cap;
    pto_task_desc *args;
    int64_t nargs, args_cap;
    int has_comm;           /* some task uses the comm window */
    /* run state (sized at submit) */
    int64_t run_cap;
    _Atomic int32_t *fanin_left;
    _Atomic int32_t *consumers_left;
    _Atomic uint8_t *state;
    uint64_t *heap_end;
    uint64_t *fo_off;       /* n + 1 */
    uint32_t *fanout;
    int csr_valid;
    void **rptr;            /* resolved operand pointers, 3 per arg */
    int64_t rptr_cap;
    int submitted;          /* guarded by rt->api */
    pto_graph *gnext, *gprev; /* the runtime's live graphs (api lock) */
};

typedef struct pto_core {
    _Alignas(PTO_CL) _Atomic uint32_t data;  /* DATA register: task + 1, 0 empty */
    _Atomic uint32_t sleeping;               /* the core is parked (or about to) on `bell` */
    _Atomic uint32_t bell;                   /* futex word a parked core waits on: bumped by a
                                              * dispatch that saw `sleeping`, and by run end */
    _Alignas(PTO_CL) _Atomic uint64_t cond;  /* COND register: (task + 1) << 2 | ACK/FIN/FAIL */
    _Alignas(PTO_CL) int64_t inflight;       /* owner scheduler only: task or -1 */
    uint64_t dispatch_seq;
    _Atomic uint32_t cur;                    /* dump: task + 1 running, 0 idle */
    _Atomic int32_t cur_kernel;
    _Atomic int64_t cur_since_ns;
    _Atomic int32_t parked;
    _Atomic int32_t cpu;                     /* CPU this core thread last waited on */
    int idx;
    pto_rt *rt;
    pthread_t th;
    int started;
} pto_core;

typedef struct pto_sched {
    _Alignas(PTO_CL) pto_rt *rt;
    int idx;
    pthread_t th;
    int started;
    _Atomic int32_t state;          /* 0 parked, 1 busy, 2 idle */
    _Atomic int64_t idle_since_ns;
    _Atomic int64_t idle_iters;
    _Atomic int32_t cpu;            /* CPU this scheduler last waited on */
} pto_sched;

typedef struct pto_ring {
    uint32_t *ids;                  /* task ids in allocation order, window slots */
    uint64_t mask;
    uint64_t head, tail;            /* slots allocated / reclaimed */
    uint64_t heap_head, heap_tail;  /* bytes, monotonic (wrap waste included) */
    uint64_t committed;             /* bytes of heap made read-write */
    uint64_t dep_used;
    char *heap_base;
    size_t heap_map;
    _Atomic uint64_t dump_used;     /* dump: slots in use */
} pto_ring;

struct pto_rt {
    pto_rt_config cfg;
    int nsched, ncores;
    pto_sched *sch;
    pto_core *cores;
    pthread_t orch_th;
    int orch_started;
    pthread_mutex_t api;

    _Alignas(PTO_CL) _Atomic uint32_t gen;
    _Atomic uint32_t shutdown;
    _Alignas(PTO_CL) _Atomic uint32_t stop;
    _Alignas(PTO_CL) _Atomic uint32_t active;
    /* Schedulers parked with nothing to do (owned-wallclock only): they wait on sched_bell,
     * which a push to the ready queue that sees sched_sleepers > 0 bumps (and run end). */
    _Alignas(PTO_CL) _Atomic uint32_t sched_bell;
    _Atomic int32_t sched_sleepers;

    pto_graph *g;                   /* run in flight (set before gen bump) */
    int64_t total;
    pto_mpmc q;
    _Alignas(PTO_CL) _Atomic int64_t completed;
    _Alignas(PTO_CL) _Atomic int64_t completed_core;
    _Alignas(PTO_CL) _Atomic int64_t published;
    _Atomic int64_t progress_epoch;  /* bumped by the orchestrator when it publishes */

    /* shared header */
    _Alignas(PTO_CL) _Atomic int32_t latch_owner;
    _Atomic uint64_t latch_attempts;
    _Atomic uint64_t test_latch_hold; /* pto_rt_test_hold_latch: 0 outside tests */
    _Atomic int32_t orch_code, sched_code;
    int32_t sub_class, latch_core, latch_ring;
    int64_t stuck_task, latch_completed, latch_total;
    char latch_msg[512];
    int32_t latched_by;             /* PTO_LATCHED_BY_* (latch owner writes it) */

    /* op-time latency model: this run's notify delay, taken by the first notify kernel */
    int64_t notify_delay_ms;
    _Atomic int32_t notify_taken;

    /* orchestration-time argument error: the first arg that did not resolve at submit */
    int64_t bad_arg;                /* -1 none */
    char bad_arg_msg[384];

    /* orchestrator */
    pto_ring rings[PTO_RINGS];
    _Atomic int32_t orch_state;      /* 0 parked, 1 submitting, 2 blocked, 3 done */
    _Atomic int64_t orch_next;
    _Atomic int32_t orch_block_ring, orch_block_res;

    pto_graph *graphs;              /* live graphs, freed by pto_rt_destroy */
    pto_comm *comm;
    struct { void *p; uint64_t n; } *bufs;
    int32_t nbufs, bufs_cap;

    int64_t init_ns, init_delay_ms, runs;
    _Atomic int64_t tasks_total;
    int64_t submit_ns, end_ns;
    int in_flight;                  /* submitted, not yet synced (api lock) */
    int broken;                     /* threads did not quiesce: refuse runs */
    int threads_up;                 /* started (at the first run with tasks) */
};

/* How a scheduler (owned-wallclock) and a core wait for each other (issue 13). On 2 CPUs shared
 * with other processes the two threads of a handoff (scheduler -> core -> scheduler) are often
 * on the same CPU: then spinning only burns the slice the partner needs, and a yield hands it
 * over (~1.5 us). When the partner last ran on another CPU (sched_getcpu(), published by both),
 * it answers within a microsecond: spin, and do not yield the slice to a neighbour process.
 *   - PTO_WAIT_SPIN pauses first; then spin while the partner is elsewhere, up to
 *     PTO_WAIT_FAR_NS since the wait began; otherwise yield;
 *   - a scheduler owning RUNNING tasks yields up to PTO_SCHED_YIELD_NS, then sleeps
 *     (SCHED_SLEEP_NS plus the COND poll cost) per poll; one owning nothing yields
 *     PTO_IDLE_SCHED_YIELDS times, then parks on rt->sched_bell until a push to the ready queue
 *     or its next budget check / STALL report;
 *   - a core yields up to PTO_CORE_YIELD_NS, then parks on its bell until a dispatch or the
 *     end of the run (no timeout: zero CPU while parked).
 * The idle-iterations policy keeps upstream's loop (pto_backoff), whose pace its
 * PTO_MAX_IDLE_ITERATIONS calibration depends on. */
#define PTO_WAIT_SPIN 4
#define PTO_WAIT_FAR_NS 50000LL
#define PTO_SCHED_YIELD_NS 200000LL
#define PTO_CORE_YIELD_NS 50000LL
#define PTO_IDLE_SCHED_YIELDS 8

/* clock.c (and pto_clock.h: pto_now_ns, pto_cpu_relax, pto_deadline_after_ms) */
uint64_t pto_syscnt(void);                   /* simulated 50 MHz system counter */
uint64_t pto_ms_to_cycles(int64_t ms);
void pto_sleep_ns(int64_t ns);               /* really sleeps, EINTR-safe */
void pto_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ns);
void pto_futex_wake(_Atomic uint32_t *addr, int n);
/* Backoff step for the n-th consecutive unsuccessful poll: spin, then yield, then sleep. */
void pto_backoff(uint64_t n, int64_t max_sleep_ns);

/* kernels.c: run task t's kernel on a core; returns PTO_OK or a failing status. */
int pto_kernel_exec(pto_rt *rt, pto_graph *g, uint32_t t);
/* kernels.c: validate a kernel descriptor (and comm operands when a comm is bound). */
int pto_kernel_validate(pto_rt *rt, const pto_task_desc *d, int64_t ndeps, const char *ctx);
/* kernels.c: resolve operand pointers of a descriptor into out[3]. */
int pto_kernel_resolve(pto_rt *rt, const pto_task_desc *d, void *out[3], int64_t task);

/* runtime.c: pointer to [off, off + n) of a device buffer (api lock held) */
int pto_rt_buffer_ptr(pto_rt *rt, int32_t id, uint64_t off, uint64_t n, void **out);
/* runtime.c: zeroed, cache-line aligned memory (NULL for n == 0 or no memory) */
void *pto_zalloc(size_t n);
/* runtime.c: the ready queue (Vyukov MPMC): room for n tasks; pop one (0: empty) */
int pto_q_reserve(pto_mpmc *q, uint64_t n);
int pto_q_pop(pto_mpmc *q, uint32_t *v);
/* runtime.c: end the run RUNNING -> `to` exactly once (1: this call did); wakes host and cores */
int pto_finish_run(pto_rt *rt, uint32_t to);
/* runtime.c: task t completed (core_task: it ran on a core); releases fanouts and producers */
void pto_complete_task(pto_rt *rt, pto_graph *g, uint32_t t, int core_task);
/* runtime.c: wake core c if it parked (after a dispatch wrote its DATA register, seq_cst) */
void pto_core_kick(pto_core *c);
/* runtime.c: park a runtime thread until the next run (0: shut down); leave the current run */
int pto_park_until_run(pto_rt *rt, uint32_t *seen);
void pto_leave_run(pto_rt *rt);

/* sched.c: the scheduler thread's body (pthread start routine; arg is its pto_sched) */
void *pto_sched_main(void *arg);
/* sched.c: write a code into the latch header; first writer wins (returns 1) and owns the
 * locators; `thread` is a scheduler index or PTO_LATCH_THREAD_ORCH, `role` PTO_LATCHED_BY_* */
int pto_latch(pto_rt *rt, int thread, int orch_code, int sched_code, int sub, int64_t stuck,
              int core, int ring, int role, const char *fmt, ...)
    __attribute__((format(printf, 10, 11)));
/* sched.c: tasks RUNNING on cores / waiting in the ready queue, approximately */
int64_t pto_running_estimate(pto_rt *rt);
int64_t pto_ready_estimate(pto_rt *rt);

/* graph.c: free a graph's memory (the runtime's list is the caller's); ready a graph for a run
 * (CSR edges, run state, operands; a bad operand is remembered for the orchestrator's latch) */
void pto_graph_free(pto_graph *g);
int pto_graph_prepare(pto_rt *rt, pto_graph *g);

/* config.c */
int pto_rt_init_delay_ms(const pto_rt_config *cfg, int64_t *ms);
int pto_rt_notify_delay_ms(const pto_rt_config *cfg, int64_t *ms);
/* Upper bounds of the integer keys (pto_rt_config_set and pto_rt_create share them). */
#define PTO_MAX_TIMEOUT_MS 86400000LL      /* the *_TIMEOUT_MS and PTO_STALL_REPORT_MS keys */
#define PTO_MAX_IDLE_ITERS 1000000000000LL /* PTO_MAX_IDLE_ITERATIONS */

static inline int pto_run_live(pto_rt *rt)
{
    return atomic_load_explicit(&rt->stop, memory_order_acquire) == PTO_RUN_RUNNING;
}

#endif
