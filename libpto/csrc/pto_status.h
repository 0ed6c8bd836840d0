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

/* THE list of every status, runtime error code and stall sub-class: the enums below, the name
 * functions in status.c and the Python tables (libpto/_runtime_codes.py, which enumerates them
 * through pto_status_at / pto_error_code_at / pto_stall_at) are all generated from these three
 * X-macros, as libuv's UV_ERRNO_MAP. A new code is one line here and nowhere else.
 *
 * PTO_STATUS_MAP(XX): XX(NAME, value, meaning) -> PTO_NAME, named "PTO_NAME". */
#define PTO_STATUS_MAP(XX)                                                                      \
    XX(OK, 0, "success")                                                                       \
    XX(E_INVALID_ARG, -1, "a C argument broke a documented rule")                              \
    XX(E_CONFIG, -2, "a configuration value (often from the environment) is invalid")          \
    XX(E_NOMEM, -3, "allocation or reservation failed")                                        \
    XX(E_STATE, -4, "call not allowed in the object's current state")                          \
    XX(E_TIMEOUT, -5, "a bounded wait (comm wait, barrier, mailbox) timed out")                \
    XX(E_STREAM_SYNC_TIMEOUT, -6, "host stream sync exceeded its budget (outer failure)")      \
    XX(E_ORCH, -7, "the orchestrator latched orch_error_code; see pto_error_info")             \
    XX(E_SCHED, -8, "a scheduler latched sched_error_code; see pto_error_info")                \
    XX(E_SYS, -9, "an OS call failed; errno text is in pto_last_error()")                      \
    XX(E_NOT_FOUND, -10, "a named object (shared memory) does not exist")                      \
    XX(E_EXISTS, -11, "a named object already exists")                                         \
    XX(E_PEER_DEAD, -12, "a peer process of a shared object has died")                         \
    XX(E_ABORTED, -13, "the operation was aborted by request")                                 \
    XX(E_RANGE, -14, "index or offset outside the object")

/* PTO_ERROR_MAP(XX): XX(NAME, code) -> PTO_ERR_NAME, named "NAME". Runtime error codes as
 * latched in the shared header (the real runtime's numbers). The SIM_* codes are sim-only,
 * outside upstream's used ranges (orchestrator 1..11, scheduler 100..104) and inside their
 * families (orchestrator < 100, scheduler >= 100), for conditions upstream has no code of its
 * own for; the real runtime never produces them:
 *   SIM_HEAP_COMMIT_FAILED  mprotect of a ring heap's next 2 MiB step failed
 *   SIM_KERNEL_FAILED       a builtin kernel returned a failure (COND FAIL) */
#define PTO_ERROR_MAP(XX)                                                                       \
    XX(NONE, 0)                                                                                \
    XX(SCOPE_DEADLOCK, 1)                                                                      \
    XX(HEAP_RING_DEADLOCK, 2)                                                                  \
    XX(FLOW_CONTROL_DEADLOCK, 3)                                                               \
    XX(DEP_POOL_OVERFLOW, 4)                                                                   \
    XX(INVALID_ARGS, 5)                                                                        \
    XX(REQUIRE_SYNC_START_INVALID, 7)                                                          \
    XX(TENSOR_WAIT_TIMEOUT, 8)                                                                 \
    XX(EXPLICIT_ORCH_FATAL, 9)                                                                 \
    XX(SCOPE_TASKS_OVERFLOW, 10)                                                               \
    XX(TENSORMAP_OVERFLOW, 11)                                                                 \
    XX(SCHEDULER_TIMEOUT, 100)                                                                 \
    XX(ASYNC_COMPLETION_INVALID, 101)                                                          \
    XX(ASYNC_WAIT_OVERFLOW, 102)                                                               \
    XX(ASYNC_REGISTRATION_FAILED, 103)                                                         \
    XX(READY_QUEUE_OVERFLOW, 104)                                                              \
    XX(SIM_HEAP_COMMIT_FAILED, 90)                                                             \
    XX(SIM_KERNEL_FAILED, 190)

/* PTO_STALL_MAP(XX): XX(NAME, value, "short name") -> PTO_STALL_NAME. Stall sub-classes of
 * PTO_ERR_SCHEDULER_TIMEOUT; the short name ("S1") is what Python and the reports show. */
#define PTO_STALL_MAP(XX)                                                                       \
    XX(NONE, 0, "NONE")                                                                        \
    XX(S1_RUNNING_STALLED, 1, "S1")                                                            \
    XX(S3_READY_ALL_IDLE, 3, "S3")                                                             \
    XX(S4_DEP_DEADLOCK, 4, "S4")                                                               \
    XX(S5_ORCH_STARVATION, 5, "S5")                                                            \
    XX(UNKNOWN, 99, "UNKNOWN")

#define PTO_STATUS_ENUM_(name, value, meaning) PTO_##name = value,
#define PTO_ERROR_ENUM_(name, value) PTO_ERR_##name = value,
#define PTO_STALL_ENUM_(name, value, short_name) PTO_STALL_##name = value,
typedef enum { PTO_STATUS_MAP(PTO_STATUS_ENUM_) } pto_status;
enum { PTO_ERROR_MAP(PTO_ERROR_ENUM_) };
enum { PTO_STALL_MAP(PTO_STALL_ENUM_) };

/* Name of a status ("PTO_E_CONFIG"), of a runtime error code ("SCHEDULER_TIMEOUT") and of a
 * stall sub-class ("S1"). Never NULL: unknown values give "UNKNOWN". */
const char *pto_strerror(int status);
const char *pto_error_name(int code);
const char *pto_stall_name(int sub_class);

/* The tables for the Python side (libpto/_runtime_codes.py builds ERROR_CODES and friends from
 * them, so no number is written twice): entry i's value and name; 0 when i is past the end
 * (then *value and *name are untouched), 1 otherwise. Names as the *_name functions give. */
int pto_status_at(int i, int *value, const char **name);
int pto_error_code_at(int i, int *value, const char **name);
int pto_stall_at(int i, int *value, const char **name);

/* Detail text of the last failing call on this thread: names the argument or variable and the
 * rule it broke. Empty string when the last call succeeded or set no detail. */
const char *pto_last_error(void);

/* Internal: record detail text (printf-style) and return status, so C code can write
 *   return pto_fail(PTO_E_CONFIG, "PTO2_RING_HEAP=%s: must be >= 1024", v); */
int pto_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pto_clear_error(void);

#endif
