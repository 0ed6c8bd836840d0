/* Chip-worker mailboxes: one shared-memory segment per world, one mailbox per rank.
 *
 * The parent (world owner) and each chip worker talk only through these words, so the protocol
 * must be correct on its own across processes: every state word is read with acquire and written
 * with release (or acq_rel compare-and-swap), so the payload written before a state change is
 * visible to whoever observes the new state. Blocking waits use futexes (shared, not private)
 * with a timeout, so 8 ranks on 2 CPUs sleep instead of spinning.
 *
 * Layout: a header (magic, sizes, owner pid, a "doorbell" word) followed by one slot per rank.
 * A slot holds:
 *  - the state word (PTO_MBOX_IDLE ... PTO_MBOX_INIT_FAILED, DESIGN section 3);
 *  - a separate control word (PTO_MBOX_CONTROL_REQUEST / CONTROL_DONE): a stack request must
 *    never overwrite the state of a task the rank is still running, so it has its own word;
 *  - the worker's pid, its exit record (written by whoever reaped it), timestamps;
 *  - three payload channels: TASK (task frame in, answer out), CONTROL (stack text), INIT.
 * Every change a worker makes rings the doorbell (atomic increment + futex wake of all), so the
 * parent waits for "anything happened in this world" with one futex and no lost wake-ups.
 */
#ifndef PTO_MAILBOX_H
#define PTO_MAILBOX_H

#include <stdint.h>

#include "pto_status.h"

enum {
    PTO_MBOX_IDLE = 0,
    PTO_MBOX_TASK_READY = 1,
    PTO_MBOX_TASK_DONE = 2,
    PTO_MBOX_SHUTDOWN = 3,
    PTO_MBOX_CONTROL_REQUEST = 4,
    PTO_MBOX_CONTROL_DONE = 5,
    PTO_MBOX_INIT_DONE = 6,
    PTO_MBOX_INIT_FAILED = 7,
    PTO_MBOX_NSTATES = 8,
};

/* Timestamps of a slot (nanoseconds, CLOCK_REALTIME, so they line up across processes and with
 * Python's time.time_ns()). */
enum {
    PTO_MBOX_T_SPAWN = 0,      /* parent asked for the process */
    PTO_MBOX_T_START = 1,      /* the worker process began running */
    PTO_MBOX_T_INIT_START = 2,
    PTO_MBOX_T_INIT_END = 3,   /* INIT_DONE / INIT_FAILED published */
    PTO_MBOX_T_RELEASE = 4,    /* barrier released this rank (reset to IDLE) */
    PTO_MBOX_T_DISPATCH = 5,   /* parent posted TASK_READY */
    PTO_MBOX_T_OP_START = 6,
    PTO_MBOX_T_OP_END = 7,
    PTO_MBOX_T_EXIT = 8,       /* reaped */
    PTO_MBOX_NTIMES = 9,
};

/* Payload channels: TASK (task frame in, answer out), CONTROL (stack text), INIT (the init
 * failure record: separate from TASK so a failing init never races a task frame the parent posts
 * early when the barrier is off). */
enum { PTO_MBOX_CH_TASK = 0, PTO_MBOX_CH_CONTROL = 1, PTO_MBOX_CH_INIT = 2, PTO_MBOX_NCHANNELS = 3 };

/* Limits: payload capacity per channel, and ranks per world. */
#define PTO_MBOX_MAX_RANKS 1024
#define PTO_MBOX_MIN_PAYLOAD 4096
#define PTO_MBOX_MAX_PAYLOAD 1073741824

typedef struct pto_mbox pto_mbox;

/* Create (O_EXCL) and map a segment named `name` ("pto-mbox-<pid>-<rand>", leading '/' optional)
 * with `nranks` mailboxes of `payload_bytes` per channel; every state starts IDLE. */
int pto_mbox_create(const char *name, int nranks, uint64_t payload_bytes, pto_mbox **out);
int pto_mbox_attach(const char *name, pto_mbox **out);
int pto_mbox_close(pto_mbox *m); /* unmap; NULL ok */
int pto_mbox_unlink(const char *name);
int pto_mbox_size(const pto_mbox *m, int *nranks);
int pto_mbox_capacity(const pto_mbox *m, uint64_t *payload_bytes);
int pto_mbox_owner(const pto_mbox *m, int32_t *pid);

/* State word: acquire load, release store, acq_rel compare-and-swap. Stores and successful swaps
 * wake the rank's waiters and ring the doorbell. */
int pto_mbox_load(pto_mbox *m, int rank, uint32_t *out);
int pto_mbox_store(pto_mbox *m, int rank, uint32_t state);
int pto_mbox_cas(pto_mbox *m, int rank, uint32_t expected, uint32_t desired, int *swapped);
/* Block until the state is one of `mask` (bit 1<<state); PTO_E_TIMEOUT after timeout_ms
 * (< 0: no deadline); PTO_E_ABORTED when a signal interrupted the wait (retry after handling). */
int pto_mbox_wait(pto_mbox *m, int rank, uint32_t mask, int64_t timeout_ms, uint32_t *out);

/* Control word: same rules as the state word. */
int pto_mbox_ctrl_load(pto_mbox *m, int rank, uint32_t *out);
int pto_mbox_ctrl_store(pto_mbox *m, int rank, uint32_t value);
int pto_mbox_ctrl_wait(pto_mbox *m, int rank, uint32_t mask, int64_t timeout_ms, uint32_t *out);

/* Doorbell: bumped by every worker-side change. Read it, scan, then wait while it is unchanged:
 * returns PTO_OK once it moved (or on a spurious/signal wake-up), PTO_E_TIMEOUT otherwise. */
int pto_mbox_doorbell(pto_mbox *m, uint32_t *out);
int pto_mbox_doorbell_wait(pto_mbox *m, uint32_t seen, int64_t timeout_ms);
int pto_mbox_ring(pto_mbox *m);

/* Timestamps (ns, CLOCK_REALTIME); ns == 0 means "now". */
int pto_mbox_set_time(pto_mbox *m, int rank, int which, int64_t ns);
int pto_mbox_get_time(pto_mbox *m, int rank, int which, int64_t *out);
int pto_mbox_now(int64_t *out);

/* Worker pid, and its exit record (wait status as returned by waitpid), written by the reaper;
 * setting the exit record rings the doorbell. */
int pto_mbox_set_pid(pto_mbox *m, int rank, int32_t pid);
int pto_mbox_get_pid(pto_mbox *m, int rank, int32_t *out);
int pto_mbox_set_exit(pto_mbox *m, int rank, int32_t wait_status);
int pto_mbox_get_exit(pto_mbox *m, int rank, int *exited, int32_t *wait_status);

/* Payload channels. A write longer than the capacity fails with PTO_E_RANGE naming the limit.
 * pto_mbox_payload returns a pointer into the segment and the current length (valid until the
 * next write of that channel; copy it out). */
int pto_mbox_write(pto_mbox *m, int rank, int channel, const void *data, uint64_t nbytes);
int pto_mbox_payload(pto_mbox *m, int rank, int channel, void **data, uint64_t *nbytes);

/* Replace this process's command line as shown by /proc/<pid>/cmdline and ps (a forked chip
 * worker must not keep its zygote's "pto-zygote" marker). Truncated to the original length. */
int pto_set_proctitle(const char *title);

#endif
