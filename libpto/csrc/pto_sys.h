/* pto_sys: the OS facts the shared-memory modules share (comm.c, mailbox.c), written once.
 *
 *  - a process-shared futex: the waited word lives in a POSIX shared-memory segment mapped by
 *    several processes, so these use FUTEX_WAIT/FUTEX_WAKE, never the _PRIVATE variants (the
 *    runtime's in-process futexes are pto_futex_wait/_wake in clock.c);
 *  - THE pid-liveness rule of the project (pytest-pto's Python side applies the same rule);
 *  - the one rule for a shared-memory segment name and its shm_open path.
 */
#ifndef PTO_SYS_H
#define PTO_SYS_H

#include <stddef.h>
#include <stdint.h>

/* Sleep while the 32-bit word at addr holds `expected`, at most timeout_ns (< 0: no bound).
 * Returns 0 when woken or when the word already differed (EAGAIN), else the errno of the wait:
 * ETIMEDOUT, EINTR (a signal), or another errno of futex(2). */
int pto_sys_futex_wait(void *addr, uint32_t expected, int64_t timeout_ns);
/* Wake every process and thread sleeping on the word at addr. */
void pto_sys_futex_wake_all(void *addr);

/* The pid-liveness rule (one rule for C and Python):
 *   a pid <= 0 is not alive;
 *   otherwise it is alive iff kill(pid, 0) succeeds or fails with EPERM (it exists but belongs
 *   to another user), AND it is not a zombie or dead: the state field of /proc/<pid>/stat (the
 *   first field after the last ')') is not 'Z' or 'X'. A zombie will never notify again.
 *   A /proc/<pid>/stat that vanished (ENOENT) between the two checks means dead; one that
 *   exists but cannot be read is no evidence of death (alive, as kill(2) said).
 * Returns 1 for alive, 0 for not alive. */
int pto_sys_pid_alive(int pid);

/* The shared-memory segment name rule: `name` with or without its leading '/', the rest one
 * path component of 1..max_len characters with no space or control character, starting with
 * `prefix` when prefix is not NULL. On success writes "/<name>" (the shm_open path) into out
 * and returns PTO_OK; otherwise returns PTO_E_INVALID_ARG with a detail text that starts with
 * `what` (e.g. "pto_comm_create: name", "mailbox name") and says the rule. */
int pto_sys_shm_path(const char *what, const char *name, const char *prefix, size_t max_len,
                     char *out, size_t cap);

/* Room for a new segment of `bytes` on the filesystem behind the open shared-memory `fd`
 * (fstatvfs: blocks available to us). A segment's pages are allocated when first touched, so a
 * /dev/shm without room would surface as SIGBUS in whichever process writes first; this says it
 * at create instead. PTO_OK, or PTO_E_NOMEM with a text that starts with `what` and says the
 * free and needed bytes (or PTO_E_SYS if fstatvfs fails). Not a reservation: space another
 * process takes after the check can still run out (posix_fallocate reserved it, for ~0.3 ms per
 * MiB to allocate and later free the pages each round; issue 13). */
int pto_sys_shm_room(const char *what, int fd, uint64_t bytes);

#endif
