/* Status codes returned by every libpto C function, runtime error codes, and their names.
 *
 * Two separate number spaces on purpose:
 *  - a *status* (pto_status, <= 0) says whether a call succeeded; it is what Python turns into
 *    an exception in libpto/errors.py;
 *  - a *runtime error code* (orchestrator 1..99, scheduler 100+) is what the simulated device
 *    latches into its shared header, exactly as the real runtime does. Upstream's numbers keep
 *    upstream's meanings; the simulator's own conditions have sim-only codes (90, 190). A call that observes a
 *    latched code returns PTO_E_ORCH or PTO_E_SCHED and the code travels in pto_error_info.
 */
#ifndef PTO_STATUS_H
#define PTO_STATUS_H

#include <stdint.h>

typedef enum {
    PTO_OK = 0,
    PTO_E_INVALID_ARG = -1,       /* a C argument broke a documented rule */
    PTO_E_CONFIG = -2,            /* a configuration value (often from the environment) is invalid */
    PTO_E_NOMEM = -3,             /* allocation or reservation failed */
    PTO_E_STATE = -4,             /* call not allowed in the object's current state */
    PTO_E_TIMEOUT = -5,           /* a bounded wait (comm wait, barrier, mailbox) timed out */
    PTO_E_STREAM_SYNC_TIMEOUT = -6, /* host stream sync exceeded its budget (outer failure) */
    PTO_E_ORCH = -7,              /* the orchestrator latched orch_error_code; see pto_error_info */
    PTO_E_SCHED = -8,             /* a scheduler latched sched_error_code; see pto_error_info */
    PTO_E_SYS = -9,               /* an OS call failed; errno text is in pto_last_error() */
    PTO_E_NOT_FOUND = -10,        /* a named object (shared memory) does not exist */
    PTO_E_EXISTS = -11,           /* a named object already exists */
    PTO_E_PEER_DEAD = -12,        /* a peer process of a shared object has died */
    PTO_E_ABORTED = -13,          /* the operation was aborted by request */
    PTO_E_RANGE = -14,            /* index or offset outside the object */
} pto_status;

/* Runtime error codes, as latched in the shared header (the real runtime's numbers). */
enum {
    PTO_ERR_NONE = 0,
    PTO_ERR_SCOPE_DEADLOCK = 1,
    PTO_ERR_HEAP_RING_DEADLOCK = 2,
    PTO_ERR_FLOW_CONTROL_DEADLOCK = 3,
    PTO_ERR_DEP_POOL_OVERFLOW = 4,
    PTO_ERR_INVALID_ARGS = 5,
    PTO_ERR_REQUIRE_SYNC_START_INVALID = 7,
    PTO_ERR_TENSOR_WAIT_TIMEOUT = 8,
    PTO_ERR_EXPLICIT_ORCH_FATAL = 9,
    PTO_ERR_SCOPE_TASKS_OVERFLOW = 10,
    PTO_ERR_TENSORMAP_OVERFLOW = 11,
    PTO_ERR_SCHEDULER_TIMEOUT = 100,
    PTO_ERR_ASYNC_COMPLETION_INVALID = 101,
    PTO_ERR_ASYNC_WAIT_OVERFLOW = 102,
    PTO_ERR_ASYNC_REGISTRATION_FAILED = 103,
    PTO_ERR_READY_QUEUE_OVERFLOW = 104,
    /* Sim-only codes, outside upstream's used ranges (orchestrator 1..11, scheduler 100..104)
     * and inside their families (orchestrator < 100, scheduler >= 100), for conditions upstream
     * has no code of its own for. Never produced by the real runtime. */
    PTO_ERR_SIM_HEAP_COMMIT_FAILED = 90, /* mprotect of a ring heap's next 2 MiB step failed */
    PTO_ERR_SIM_KERNEL_FAILED = 190,     /* a builtin kernel returned a failure (COND FAIL) */
};

/* Stall sub-classes of PTO_ERR_SCHEDULER_TIMEOUT. */
enum {
    PTO_STALL_NONE = 0,
    PTO_STALL_S1_RUNNING_STALLED = 1,
    PTO_STALL_S3_READY_ALL_IDLE = 3,
    PTO_STALL_S4_DEP_DEADLOCK = 4,
    PTO_STALL_S5_ORCH_STARVATION = 5,
    PTO_STALL_UNKNOWN = 99,
};

/* Name of a status ("PTO_E_CONFIG"), of a runtime error code ("SCHEDULER_TIMEOUT") and of a
 * stall sub-class ("S1"). Never NULL: unknown values give "UNKNOWN". */
const char *pto_strerror(int status);
const char *pto_error_name(int code);
const char *pto_stall_name(int sub_class);

/* Detail text of the last failing call on this thread: names the argument or variable and the
 * rule it broke. Empty string when the last call succeeded or set no detail. */
const char *pto_last_error(void);

/* Internal: record detail text (printf-style) and return status, so C code can write
 *   return pto_fail(PTO_E_CONFIG, "PTO2_RING_HEAP=%s: must be >= 1024", v); */
int pto_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pto_clear_error(void);

#endif
