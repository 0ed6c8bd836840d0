/* libpto runtime, `sim` platform: one simulated chip per pto_rt.
 *
 * Threads (created once, by the first pto_rt_submit of a graph with tasks -- a runtime opened
 * and closed without a run creates none; parked on a futex between runs, joined by
 * pto_rt_destroy; zero CPU while idle):
 *   - orchestrator: takes the submitted graph and allocates, task by task and in order, a ring
 *     slot (task window), ring heap bytes and dep-pool nodes (one per fanin edge) in the task's
 *     ring, waiting for in-order reclamation when a ring is full (flow control). It latches
 *     orch_error_code when a ring can never make room: DEP_POOL_OVERFLOW (4), HEAP_RING_DEADLOCK
 *     (2), FLOW_CONTROL_DEADLOCK (3); see the orchestrator in runtime.c for the exact rules.
 *   - scheduler threads: each owns cores (core c belongs to thread c % sched_threads); it pops
 *     ready tasks, writes the task id into an idle core's DATA register and polls the core's COND
 *     register for ACK then FIN of that id; on FIN it completes the task (releases fanouts, marks
 *     producers CONSUMED once all their consumers completed).
 *   - cores: read DATA, answer ACK, run the builtin kernel, answer FIN.
 *   Defaults: 1 scheduler thread (PTO_SIM_SCHED_THREADS), 8 cores (PTO_SIM_CORES). Within a
 *   run, under owned-wallclock, a waiting core or scheduler spins only while its partner ran
 *   on another CPU, yields briefly, then parks on a futex (a core until a dispatch, an idle
 *   scheduler until a push or its next check); idle-iterations keeps upstream's backoff, whose
 *   pace its iteration cap is calibrated to. See PTO_WAIT_* in pto_runtime_internal.h.
 *   Task states: PENDING -> (ready when all fanins completed) -> RUNNING -> COMPLETED ->
 *   CONSUMED (completed and every consumer completed; its slot, heap and dep nodes are then
 *   reclaimed in ring order).
 *
 * Shared header (pto_rt_error_info): orch_error_code, sched_error_code, the latching thread, a
 * bitmap of every thread that tried to latch, and stall locators. The first writer wins by
 * compare-and-swap and owns the locators; siblings see the latch and stop; the run ends with
 * that error. As upstream, the two codes are separate fields: a thread of the other family
 * (orchestrator vs scheduler) that latches before it sees the run end still records its own
 * code, so the header can hold an orchestrator and a scheduler code at once.
 * latched_by says, for a code-100 latch, whether the latching thread owned a RUNNING task
 * (owner), did not while a sibling did (sibling), or no thread did (no-owner).
 *
 * Latch policies (PTO_LATCH_POLICY; the scheduler threads and these policies live in sched.c):
 *   idle-iterations  (the old one) each scheduler thread counts its consecutive loop iterations
 *                    without progress; at PTO_MAX_IDLE_ITERATIONS it latches SCHEDULER_TIMEOUT
 *                    whether or not a sibling owns a RUNNING task.
 *   owned-wallclock  (the fix, default) a budget PTO_SCHEDULER_TIMEOUT_MS, converted to cycles of
 *                    a simulated 50 MHz system counter. When a thread has made no progress for the
 *                    budget it latches only if it owns a RUNNING task (sub-class S1, stuck task =
 *                    its oldest running task); without evidence it re-arms, except the deadlock
 *                    branch: no thread anywhere owns a RUNNING task and completed < total ->
 *                    S3 (ready tasks but every core idle), S4 (published tasks waiting on
 *                    dependencies that cannot complete, e.g. an event never fired), S5 (every
 *                    published task done but the orchestrator has not published the rest).
 *                    The deadlock branch's evidence is PTO_DEADLOCK_CHECK:
 *                      no-progress (default) nothing published and nothing completed anywhere
 *                                  for the whole budget, and nothing RUNNING now;
 *                      snapshot    upstream's instant snapshot: at the moment this thread's
 *                                  budget elapses, nothing RUNNING and completed < total. It
 *                                  fires falsely when work completes without this thread's own
 *                                  progress (a sibling's completion -> pop gap, a host event).
 *   COND poll cost (PTO_SIM_COND_POLL_US, default 80): reading the COND register of a core whose
 *                    task is RUNNING costs time on the device; an idle iteration of a thread
 *                    that polls N RUNNING cores sleeps N * this much longer (in the sleep stage
 *                    of the backoff). With the default an owner's idle iteration is ~1.7x a
 *                    pure-idle sibling's (upstream: ~200 ns vs ~115 ns), so under
 *                    idle-iterations the idle *sibling* reaches the cap first, as upstream.
 *   Both policies print periodic STALL lines to stderr (every PTO_STALL_REPORT_MS of idleness)
 *   without latching; a chip worker redirects stderr to the rank log.
 *
 * Init latency model (device_malloc of the 4 rings), applied by pto_rt_create and really slept:
 *   delay_ms = fixed + longtail, where
 *   fixed    = PTO_SIM_INIT_DELAY_MS: "MS" for every rank, or "RANK:MS[,RANK:MS...]" (ranks not
 *              listed: 0); the rank is PTO_RANK (config key) / the `rank` of the Python Runtime.
 *   longtail = 0 unless PTO_SIM_MALLOC_MODEL=longtail; then
 *              scale * exp(sigma * Z), Z ~ N(0, 1) (Box-Muller over splitmix64),
 *              sigma = PTO_SIM_MALLOC_SIGMA (default 1.0; the shape of the tail),
 *              scale = PTO_SIM_MALLOC_MS_PER_GIB * (sum of the 4 ring heaps in GiB),
 *              seeded by splitmix64(PTO_SIM_MALLOC_SEED ^ (rank * 0x9E3779B97F4A7C15)),
 *              capped at 60000 ms. Median = scale; with sigma 1.0 the mean is 1.65 * scale and
 *              p99 = 10.2 * scale (in general mean = exp(sigma^2/2), p99 = exp(2.326 sigma)).
 * Op-time latency model (a slow peer or a long kernel after init), drawn at every submit:
 *   the first notify kernel of a run sleeps (observing aborts) before it notifies, for
 *   fixed + jitter ms, fixed = PTO_SIM_NOTIFY_DELAY_MS (same syntax as PTO_SIM_INIT_DELAY_MS),
 *   jitter = PTO_SIM_NOTIFY_MEDIAN_MS * exp(PTO_SIM_NOTIFY_SIGMA * Z) (0 when the median is 0),
 *   Z seeded by PTO_SIM_MALLOC_SEED (per round), the rank and the run number; capped at 60 s.
 *
 * Ring-full deadlock by time (PTO_RING_DEADLOCK_MS, default 500): besides the structural check,
 * an orchestrator blocked on a full ring whose reclaim makes no progress for this long latches
 * FLOW_CONTROL_DEADLOCK (3) (task window), HEAP_RING_DEADLOCK (2) (heap) or
 * DEP_POOL_OVERFLOW (4) (dep pool), as upstream's 500 ms wall-clock backstop does.
 *
 * The ring heaps themselves are reserved with mmap(PROT_NONE, MAP_NORESERVE) and committed
 * (mprotect) in 2 MiB steps as allocations first reach them, so a 4 GiB heap costs no RSS.
 *
 * Orchestration-time argument errors: a task whose operands no longer resolve when the run is
 * submitted (a buffer freed after the task was added) does not fail pto_rt_submit; the
 * orchestrator latches INVALID_ARGS (5) when it reaches that task, as upstream's orchestrator
 * does for a bad argument; the tasks before it run.
 *
 * Every function validates its arguments and returns a pto_status; detail text names the
 * argument or variable and the rule (pto_last_error()). No argument crashes the process; only
 * the `crash` kernel does, on purpose.
 */
#ifndef PTO_RUNTIME_H
#define PTO_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "pto_comm.h"
#include "pto_status.h"

#define PTO_RINGS 4
#define PTO_MAX_SCHED_THREADS 32
#define PTO_MAX_CORES 64
#define PTO_MAX_GRAPH_TASKS 0x7ffffffe
#define PTO_LATCH_THREAD_ORCH 63 /* bit / thread number of the orchestrator in the latch header */
#define PTO_SYNC_DEFAULT -1      /* pto_rt_sync timeout: use PTO_STREAM_SYNC_TIMEOUT_MS */
#define PTO_SYNC_FOREVER -2      /* pto_rt_sync timeout: no deadline */

enum { PTO_LATCH_OWNED_WALLCLOCK = 0, PTO_LATCH_IDLE_ITERATIONS = 1 };
enum { PTO_MALLOC_NONE = 0, PTO_MALLOC_LONGTAIL = 1 };
/* PTO_DEADLOCK_CHECK: how the owned-wallclock deadlock branch decides (see above). */
enum { PTO_DEADLOCK_NO_PROGRESS = 0, PTO_DEADLOCK_SNAPSHOT = 1 };
/* pto_rt_error_info.latched_by: who latched a SCHEDULER_TIMEOUT (100). */
enum {
    PTO_LATCHED_BY_NONE = 0,     /* not a code-100 latch */
    PTO_LATCHED_BY_OWNER = 1,    /* the latching thread owned a RUNNING task */
    PTO_LATCHED_BY_SIBLING = 2,  /* it owned none; another thread owned a RUNNING task */
    PTO_LATCHED_BY_NO_OWNER = 3, /* no thread owned a RUNNING task (deadlock branch) */
};

/* Builtin kernels. */
enum {
    PTO_K_NOOP = 0,
    PTO_K_SPIN = 1,   /* busy for duration_us (observes abort) */
    PTO_K_HANG = 2,   /* never finishes until the run is aborted */
    PTO_K_CRASH = 3,  /* mode 0: SIGSEGV, mode 1: abort() -- on purpose */
    PTO_K_FILL = 4,   /* dst[i] = value, i < count (float32) */
    PTO_K_ADD = 5,    /* dst[i] = src0[i] + src1[i] */
    PTO_K_COPY = 6,   /* dst[i] = src0[i] */
    PTO_K_NOTIFY = 7, /* comm notify(peer, slot, signal, mode = PTO_NOTIFY_SET|ADD) */
    PTO_K_WAIT = 8,   /* RUNNING until local comm slot `mode`-compares true against signal */
    PTO_K_EVENT = 9,  /* no core: completes when the host fires it (pto_rt_fire_event); no deps */
    PTO_K_TENSOR_WAIT = 10, /* orchestration reads its deps' outputs (upstream's get_tensor_data):
                             * the orchestrator waits until every dep completed, at most
                             * PTO_TENSOR_WAIT_TIMEOUT_MS (else TENSOR_WAIT_TIMEOUT, 8), before
                             * it publishes this task and the rest; then a noop on a core */
    PTO_K_COUNT = 11
};

/* Memory spaces of a kernel operand. */
enum { PTO_MEM_NONE = 0, PTO_MEM_BUFFER = 1, PTO_MEM_COMM = 2 };

/* add_many modes */
enum { PTO_MANY_INDEPENDENT = 0, PTO_MANY_CHAIN = 1, PTO_MANY_FANOUT = 2 };

typedef struct pto_mref {
    int32_t space;   /* PTO_MEM_* */
    int32_t id;      /* buffer id (PTO_MEM_BUFFER) or rank (PTO_MEM_COMM) */
    uint64_t offset; /* bytes, multiple of 4 */
} pto_mref;

typedef struct pto_task_desc {
    int32_t kernel;      /* PTO_K_* */
    int32_t ring;        /* 0..3 */
    uint64_t heap_bytes; /* ring heap the task holds until CONSUMED */
    pto_mref dst, src0, src1;
    uint64_t count;      /* float32 elements (fill/add/copy) */
    float value;         /* fill value */
    int64_t duration_us; /* spin */
    int32_t peer;        /* notify */
    uint32_t slot;       /* notify / wait */
    uint64_t signal;     /* notify value / wait operand */
    int32_t mode;        /* notify: PTO_NOTIFY_*; wait: PTO_CMP_*; crash: 0 segv, 1 abort */
} pto_task_desc;

typedef struct pto_rt_config {
    uint64_t task_window[PTO_RINGS]; /* PTO2_RING_TASK_WINDOW: power of two >= 4 */
    uint64_t heap_bytes[PTO_RINGS];  /* PTO2_RING_HEAP: >= 1024 */
    uint64_t dep_pool[PTO_RINGS];    /* PTO2_RING_DEP_POOL: >= 4 */
    int32_t latch_policy;            /* PTO_LATCH_POLICY */
    int64_t sched_timeout_ms;        /* PTO_SCHEDULER_TIMEOUT_MS */
    int64_t max_idle_iterations;     /* PTO_MAX_IDLE_ITERATIONS */
    int64_t stream_sync_timeout_ms;  /* PTO_STREAM_SYNC_TIMEOUT_MS */
    int64_t stall_report_ms;         /* PTO_STALL_REPORT_MS */
    int32_t sched_threads;           /* PTO_SIM_SCHED_THREADS */
    int32_t cores;                   /* PTO_SIM_CORES */
    int32_t rank;                    /* PTO_RANK */
    char init_delay[256];            /* PTO_SIM_INIT_DELAY_MS (validated text) */
    int32_t malloc_model;            /* PTO_SIM_MALLOC_MODEL */
    double malloc_ms_per_gib;        /* PTO_SIM_MALLOC_MS_PER_GIB */
    uint64_t malloc_seed;            /* PTO_SIM_MALLOC_SEED */
    double malloc_sigma;             /* PTO_SIM_MALLOC_SIGMA */
    int32_t timeouts_set; /* scheduler budget or stream-sync timeout set (not defaults) */
    int64_t cond_poll_us;            /* PTO_SIM_COND_POLL_US */
    char notify_delay[256];          /* PTO_SIM_NOTIFY_DELAY_MS (validated text) */
    double notify_median_ms;         /* PTO_SIM_NOTIFY_MEDIAN_MS (0: no op-time jitter) */
    double notify_sigma;             /* PTO_SIM_NOTIFY_SIGMA */
    int32_t deadlock_check;          /* PTO_DEADLOCK_CHECK */
    int64_t ring_deadlock_ms;        /* PTO_RING_DEADLOCK_MS */
    int64_t tensor_wait_timeout_ms;  /* PTO_TENSOR_WAIT_TIMEOUT_MS */
} pto_rt_config;

/* The shared header as the host sees it after a run. */
typedef struct pto_rt_error_info {
    int32_t orch_error_code;
    int32_t sched_error_code;
    int32_t sub_class;      /* PTO_STALL_* */
    int32_t latch_thread;   /* scheduler thread index, PTO_LATCH_THREAD_ORCH, or -1 */
    uint64_t latch_attempts;/* bit i: scheduler thread i tried to latch; bit 63: orchestrator */
    int64_t stuck_task;     /* -1 none */
    int32_t core;           /* -1 none */
    int32_t ring;           /* orchestrator codes: the ring that could not make room, else -1 */
    int64_t completed;
    int64_t total;
    int64_t elapsed_us;     /* submit -> end of run */
    int32_t latched_by;     /* PTO_LATCHED_BY_* of a code-100 latch */
} pto_rt_error_info;

typedef struct pto_rt_stats {
    int64_t init_ns;        /* pto_rt_create duration, injected delay included */
    int64_t init_delay_ms;  /* the injected delay alone */
    int64_t runs;
    int64_t tasks_completed;
    int32_t threads;        /* runtime threads (orchestrator + schedulers + cores) */
    int32_t sched_threads;
    int32_t cores;
    int32_t rank;
} pto_rt_stats;

typedef struct pto_rt pto_rt;
typedef struct pto_graph pto_graph;

/* ---- configuration: one validator for env and explicit keys */
int pto_rt_config_default(pto_rt_config *cfg);
/* key: an environment variable name (PTO2_RING_HEAP, PTO_LATCH_POLICY, ..., PTO_RANK). */
int pto_rt_config_set(pto_rt_config *cfg, const char *key, const char *value);
/* Apply every known variable present in the process environment. */
int pto_rt_config_from_env(pto_rt_config *cfg);
/* Name of the i-th known key, NULL past the end. */
const char *pto_rt_config_key(int i);
/* Cross-field coherence. Returns PTO_OK; writes a warning ("" when coherent) into buf. */
int pto_rt_config_check(const pto_rt_config *cfg, char *buf, size_t cap);

/* ---- lifecycle */
int pto_rt_create(const pto_rt_config *cfg, pto_rt **out);
int pto_rt_destroy(pto_rt *rt); /* NULL ok; aborts a run in flight */
int pto_rt_get_config(const pto_rt *rt, pto_rt_config *out);
int pto_rt_stats_get(const pto_rt *rt, pto_rt_stats *out);
/* Bind a comm window for notify/wait/comm buffers (NULL unbinds). Not during a run. */
int pto_rt_bind_comm(pto_rt *rt, pto_comm *comm);

/* ---- device buffers (float32 data; sizes in bytes) */
int pto_rt_buffer_alloc(pto_rt *rt, uint64_t nbytes, int32_t *id);
int pto_rt_buffer_free(pto_rt *rt, int32_t id);
int pto_rt_buffer_write(pto_rt *rt, int32_t id, uint64_t offset, const void *src, uint64_t nbytes);
int pto_rt_buffer_read(pto_rt *rt, int32_t id, uint64_t offset, void *dst, uint64_t nbytes);

/* ---- graphs */
int pto_graph_create(pto_rt *rt, pto_graph **out);
int pto_graph_destroy(pto_graph *g); /* NULL ok; PTO_E_STATE while submitted */
int pto_graph_add(pto_graph *g, const pto_task_desc *desc, const int64_t *deps, int64_t ndeps,
                  int64_t *out_id);
/* n copies of desc; mode PTO_MANY_INDEPENDENT, _CHAIN (each depends on the previous), _FANOUT
 * (each depends on task `dep`). *first_id receives the first id; ids are consecutive. */
int pto_graph_add_many(pto_graph *g, const pto_task_desc *desc, int64_t n, int32_t mode,
                       int64_t dep, int64_t *first_id);
int pto_graph_size(const pto_graph *g, int64_t *out);

/* ---- runs */
int pto_rt_submit(pto_rt *rt, pto_graph *g); /* async */
/* Wait for the submitted run. timeout_ms > 0, or PTO_SYNC_DEFAULT / PTO_SYNC_FOREVER. On
 * timeout the run is aborted (kernels observe it) and PTO_E_STREAM_SYNC_TIMEOUT returned; a
 * latched code gives PTO_E_ORCH / PTO_E_SCHED; info (may be NULL) gets the header either way. */
int pto_rt_sync(pto_rt *rt, int64_t timeout_ms, pto_rt_error_info *info);
int pto_rt_run(pto_rt *rt, pto_graph *g, int64_t timeout_ms, pto_rt_error_info *info);
/* Complete an EVENT task of the run in flight. */
int pto_rt_fire_event(pto_rt *rt, int64_t task);
/* Abort the run in flight (any thread); pto_rt_sync then returns PTO_E_ABORTED promptly. */
int pto_rt_abort(pto_rt *rt);
/* What every runtime thread is doing, as text (always NUL-terminated, truncated to cap). */
int pto_rt_dump_state(pto_rt *rt, char *buf, size_t cap);
/* Name of a kernel ("noop"), "?" if unknown; and the id of a name (-1 if unknown). */
const char *pto_kernel_name(int kernel);
int pto_kernel_id(const char *name);

/* ---- test hooks: not for products; they exist so tests can force an order on races.
 * Latch attempts by the threads in `mask` (bit i: scheduler thread i, bit 63: the
 * orchestrator) are recorded in the attempt bitmap and then held before the first-writer-wins
 * compare-and-swap until the host clears their bit or the run ends. Persists across runs. */
int pto_rt_test_hold_latch(pto_rt *rt, uint64_t mask);
/* The attempt bitmap of the run in flight (or of the last run), read live. */
int pto_rt_test_latch_attempts(pto_rt *rt, uint64_t *out);

#endif
