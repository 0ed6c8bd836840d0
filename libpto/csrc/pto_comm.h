/* Comm window: one POSIX shared-memory segment per group of ranks (one process per rank).
 *
 * Layout of the segment (all offsets fixed at creation, validated again at attach):
 *   header    magic, version, nranks, nslots, data_bytes, creator pid, barrier word
 *   rank table per rank: attached pid and the barrier generation it last arrived in (64 B each)
 *   slots     per rank, nslots signal slots; each slot owns a 64-byte cache line so a notify
 *             into one slot never false-shares with another rank's notify into the next slot
 *   data      per rank, a data window of data_bytes (4 KiB aligned)
 *
 * Memory order: notify is a release store (SET) or release fetch-add (ADD) into the peer's
 * slot; test/load/wait are acquire loads. A rank that observes a signal therefore also
 * observes every data-window write its peer made before notifying.
 *
 * Waiting (pto_comm_wait, pto_comm_barrier) spins briefly, then yields, then sleeps on a
 * shared futex with a short timeout (<= 1 ms), so many ranks on few CPUs never livelock.
 * A notify wakes a sleeping waiter only when one is registered on that slot.
 *
 * Barrier: one 64-bit word (generation << 32 | arrived count) updated by compare-and-swap.
 * The last arrival bumps the generation and resets the count in one step, which releases
 * every waiter. A rank that times out withdraws its arrival with a compare-and-swap that
 * only succeeds while the generation is unchanged, so a timed-out barrier leaves no trace:
 * the window stays usable and the next barrier is sound. (If the withdrawal loses the race
 * because the barrier completed meanwhile, the call returns PTO_OK.)
 *
 * Dead peers: each rank's attached pid is in the rank table; waits check it now and then
 * (the pid-liveness rule of pto_sys.h: kill(pid, 0) and /proc state) and fail with
 * PTO_E_PEER_DEAD instead of timing out. A rank running on another host (a window mirrored
 * across hosts, libpto/_comm_bridge.py) has no pid here; the mirror marks it dead with
 * pto_comm_mark_remote_dead when its own host says so, and waits fail the same way, naming it
 * with the mark's text instead of a pid.
 *
 * Rank -1 ("observer"): pto_comm_create/attach accept rank -1 for a process that is not a
 * rank (the parent that owns the window): it may notify, load and use data windows, but has
 * no local slots, so test/wait/barrier return PTO_E_STATE.
 *
 * Timeouts: timeout_ms < 0 means no deadline.
 */
#ifndef PTO_COMM_H
#define PTO_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "pto_status.h"

typedef struct pto_comm pto_comm;

enum { PTO_CMP_EQ = 0, PTO_CMP_NE = 1, PTO_CMP_GE = 2, PTO_CMP_GT = 3, PTO_CMP_LE = 4, PTO_CMP_LT = 5 };
enum { PTO_NOTIFY_SET = 0, PTO_NOTIFY_ADD = 1 };

#define PTO_COMM_MAX_RANKS 4096
#define PTO_COMM_MAX_SLOTS 65536
#define PTO_COMM_MAX_DATA_BYTES (1ULL << 32) /* per rank */
#define PTO_COMM_NAME_MAX 200

/* Create the segment `name` ("pto-..." optionally with a leading '/'; no other '/'), sized for
 * nranks ranks, nslots slots and data_bytes of data window per rank, and attach to it as
 * `rank` (-1: observer). Fails with PTO_E_EXISTS if the name exists. */
int pto_comm_create(const char *name, int nranks, int rank, uint32_t nslots, uint64_t data_bytes, pto_comm **out);
/* Attach to an existing segment by name as `rank` (-1: observer). A rank already attached by
 * a live process gives PTO_E_EXISTS; a missing name PTO_E_NOT_FOUND. */
int pto_comm_attach(const char *name, int rank, pto_comm **out);
int pto_comm_close(pto_comm *c);                                   /* unmap; NULL ok */
int pto_comm_unlink(const char *name);
int pto_comm_rank(const pto_comm *c, int *out);
int pto_comm_size(const pto_comm *c, int *out);
int pto_comm_notify(pto_comm *c, int peer, uint32_t slot, uint64_t value, int op);   /* release */
int pto_comm_test(pto_comm *c, uint32_t slot, int cmp, uint64_t value, int *ok);     /* local slot, acquire */
int pto_comm_load(pto_comm *c, int rank, uint32_t slot, uint64_t *out);
int pto_comm_wait(pto_comm *c, uint32_t slot, int cmp, uint64_t value, int64_t timeout_ms); /* host-side poll w/ backoff */
int pto_comm_data(pto_comm *c, int rank, uint64_t offset, uint64_t nbytes, void **out); /* PTO_E_RANGE if outside */
int pto_comm_barrier(pto_comm *c, int64_t timeout_ms);   /* sense-reversing, all ranks */

/* Additions beyond the shared interface. */
int pto_comm_nslots(const pto_comm *c, uint32_t *out);
int pto_comm_data_bytes(const pto_comm *c, uint64_t *out);
int pto_comm_creator_pid(const pto_comm *c, int *out);
/* Pid attached as `rank` (0: none). */
int pto_comm_rank_pid(const pto_comm *c, int rank, int *out);
/* *alive = 1 when `rank` is attached by a live process, else 0. */
int pto_comm_peer_alive(const pto_comm *c, int rank, int *alive);
/* Mark `rank`, which runs on another host and is not attached here, as dead there: waits fail
 * with PTO_E_PEER_DEAD "peer rank R (<how>) died" (`how` is cut to 51 bytes). The first mark
 * stands until cleared; how NULL or "" clears it, and so does a process attaching as `rank`.
 * PTO_E_STATE if a process is attached as `rank` here. */
int pto_comm_mark_remote_dead(pto_comm *c, int rank, const char *how);
/* Copy between the caller's buffer and a rank's data window, bounds-checked (for Python). */
int pto_comm_write(pto_comm *c, int rank, uint64_t offset, const void *src, uint64_t nbytes);
int pto_comm_read(pto_comm *c, int rank, uint64_t offset, void *dst, uint64_t nbytes);
/* Like pto_comm_wait; *last (may be NULL) receives the slot's last observed value, also on
 * timeout. elapsed_ms is the time the caller already spent in earlier slices of the same logical
 * wait (Python waits in short slices so signals are handled); it only enters the timeout message. */
int pto_comm_wait_value(pto_comm *c, uint32_t slot, int cmp, uint64_t value, int64_t timeout_ms, int64_t elapsed_ms,
                        uint64_t *last);
/* Like pto_comm_barrier, with elapsed_ms as for pto_comm_wait_value. A timed-out slice withdraws
 * this rank's arrival, so calling again is the same as having waited on. */
int pto_comm_barrier_ex(pto_comm *c, int64_t timeout_ms, int64_t elapsed_ms);
/* Name of a comparison ("==", ">=", ...); "?" for an invalid one. */
const char *pto_comm_cmp_name(int cmp);

#endif
