/* Chip-worker mailboxes in shared memory (see pto_mailbox.h for the protocol). */
#include "pto_mailbox.h"
#include "pto_clock.h"
#include "pto_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MBOX_MAGIC 0x50544f4d424f5831ULL /* "PTOMBOX1" */
#define MBOX_VERSION 2u
#define MBOX_HDR_BYTES 4096u
#define MBOX_SLOT_HDR_BYTES 512u

struct mbox_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t nranks;
    uint64_t payload_bytes;
    uint64_t slot_stride;
    int32_t owner_pid;
    _Alignas(64) _Atomic uint32_t doorbell;
};

struct mbox_slot {
    _Alignas(64) _Atomic uint32_t state;
    _Alignas(64) _Atomic uint32_t ctrl;
    _Alignas(64) _Atomic int32_t pid;
    _Atomic int32_t exited;
    int32_t wait_status;
    _Atomic int64_t times[PTO_MBOX_NTIMES];
    uint64_t len[PTO_MBOX_NCHANNELS];
};

_Static_assert(sizeof(struct mbox_hdr) <= MBOX_HDR_BYTES, "header too large");
_Static_assert(sizeof(struct mbox_slot) <= MBOX_SLOT_HDR_BYTES, "slot header too large");

/* The sizes are copied out of the header once, validated, at create/attach: every bound check
 * uses these private copies, so a peer scribbling on the shared header cannot move them. */
struct pto_mbox {
    struct mbox_hdr *hdr;
    size_t map_bytes;
    uint32_t nranks;
    uint64_t payload_bytes;
    uint64_t slot_stride;
};

static uint64_t stride_for(uint64_t payload_bytes)
{
    return (MBOX_SLOT_HDR_BYTES + PTO_MBOX_NCHANNELS * payload_bytes + 4095) & ~(uint64_t)4095;
}

static char *slot_base(const pto_mbox *m, int rank)
{
    return (char *)m->hdr + MBOX_HDR_BYTES + (size_t)rank * m->slot_stride;
}

static struct mbox_slot *slot_of(const pto_mbox *m, int rank)
{
    return (struct mbox_slot *)slot_base(m, rank);
}

static char *channel_data(const pto_mbox *m, int rank, int channel)
{
    return slot_base(m, rank) + MBOX_SLOT_HDR_BYTES + (size_t)channel * m->payload_bytes;
}

static int shm_path(const char *name, char *buf, size_t cap)
{
    return pto_sys_shm_path("mailbox name", name, NULL, NAME_MAX, buf, cap);
}

static int check_rank(const pto_mbox *m, int rank)
{
    if (!m)
        return pto_fail(PTO_E_INVALID_ARG, "mailbox: NULL handle");
    if (rank < 0 || (uint32_t)rank >= m->nranks)
        return pto_fail(PTO_E_RANGE, "mailbox rank %d: must be in [0, %u)", rank, m->nranks);
    return PTO_OK;
}

static void ring(pto_mbox *m)
{
    atomic_fetch_add_explicit(&m->hdr->doorbell, 1, memory_order_acq_rel);
    pto_sys_futex_wake_all(&m->hdr->doorbell);
}

/* One futex sleep while *addr == seen, bounded by the absolute monotonic deadline (< 0: none).
 * Returns PTO_OK on wake-up or value change, PTO_E_TIMEOUT past the deadline, PTO_E_ABORTED on a
 * signal. */
static int futex_sleep(_Atomic uint32_t *addr, uint32_t seen, int64_t deadline)
{
    int64_t left = -1;
    if (deadline >= 0) {
        left = deadline - pto_now_ns();
        if (left <= 0)
            return PTO_E_TIMEOUT;
    }
    int err = pto_sys_futex_wait(addr, seen, left);
    switch (err) {
    case 0: return PTO_OK; /* woken, or the value already changed */
    case ETIMEDOUT: return PTO_E_TIMEOUT;
    case EINTR: return pto_fail(PTO_E_ABORTED, "mailbox wait interrupted by a signal");
    default: return pto_fail(PTO_E_SYS, "futex wait: %s", strerror(err));
    }
}

static int wait_word(_Atomic uint32_t *addr, uint32_t mask, int64_t timeout_ms, uint32_t *out,
                     const char *what, int rank)
{
    int64_t deadline = pto_deadline_after_ms(timeout_ms);
    for (;;) {
        uint32_t v = atomic_load_explicit(addr, memory_order_acquire);
        if (v < 32 && (mask & (1u << v))) {
            if (out)
                *out = v;
            return PTO_OK;
        }
        int st = futex_sleep(addr, v, deadline);
        if (st == PTO_E_TIMEOUT) {
            if (out)
                *out = atomic_load_explicit(addr, memory_order_acquire);
            return pto_fail(PTO_E_TIMEOUT, "rank %d %s: no wanted value (mask 0x%x) within %lld ms",
                            rank, what, mask, (long long)timeout_ms);
        }
        if (st != PTO_OK)
            return st;
    }
}

int pto_mbox_create(const char *name, int nranks, uint64_t payload_bytes, pto_mbox **out)
{
    char path[NAME_MAX + 2];
    int st;
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_create: out must not be NULL");
    *out = NULL;
    if ((st = shm_path(name, path, sizeof path)) != PTO_OK)
        return st;
    if (nranks < 1 || nranks > PTO_MBOX_MAX_RANKS)
        return pto_fail(PTO_E_INVALID_ARG, "mailbox nranks=%d: must be in [1, %d]", nranks,
                        PTO_MBOX_MAX_RANKS);
    if (payload_bytes < PTO_MBOX_MIN_PAYLOAD || payload_bytes > PTO_MBOX_MAX_PAYLOAD)
        return pto_fail(PTO_E_INVALID_ARG, "mailbox payload_bytes=%llu: must be in [%d, %d]",
                        (unsigned long long)payload_bytes, PTO_MBOX_MIN_PAYLOAD,
                        PTO_MBOX_MAX_PAYLOAD);
    uint64_t stride = stride_for(payload_bytes);
    size_t total = MBOX_HDR_BYTES + (size_t)nranks * stride;

    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return pto_fail(PTO_E_EXISTS, "mailbox %s: already exists", path);
        return pto_fail(PTO_E_SYS, "shm_open(%s): %s", path, strerror(errno));
    }
    int room = pto_sys_shm_room("pto_mbox_create", fd, total);
    if (room != PTO_OK) {
        close(fd);
        shm_unlink(path);
        return room;
    }
    if (ftruncate(fd, (off_t)total) != 0) {
        int e = errno;
        close(fd);
        shm_unlink(path);
        return pto_fail(PTO_E_SYS, "ftruncate(%s, %zu): %s", path, total, strerror(e));
    }
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        shm_unlink(path);
        return pto_fail(PTO_E_SYS, "mmap(%s): %s", path, strerror(e));
    }
    pto_mbox *m = calloc(1, sizeof *m);
    if (!m) {
        munmap(p, total);
        shm_unlink(path);
        return pto_fail(PTO_E_NOMEM, "mailbox handle: out of memory");
    }
    m->hdr = p;
    m->map_bytes = total;
    m->nranks = (uint32_t)nranks;
    m->payload_bytes = payload_bytes;
    m->slot_stride = stride;
    /* ftruncate zero-fills: every state is IDLE, every time 0. */
    m->hdr->version = MBOX_VERSION;
    m->hdr->nranks = (uint32_t)nranks;
    m->hdr->payload_bytes = payload_bytes;
    m->hdr->slot_stride = stride;
    m->hdr->owner_pid = (int32_t)getpid();
    atomic_thread_fence(memory_order_release);
    __atomic_store_n(&m->hdr->magic, MBOX_MAGIC, __ATOMIC_RELEASE);
    *out = m;
    return PTO_OK;
}

int pto_mbox_attach(const char *name, pto_mbox **out)
{
    char path[NAME_MAX + 2];
    int st;
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_attach: out must not be NULL");
    *out = NULL;
    if ((st = shm_path(name, path, sizeof path)) != PTO_OK)
        return st;
    int fd = shm_open(path, O_RDWR, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return pto_fail(PTO_E_NOT_FOUND, "mailbox %s: no such segment", path);
        return pto_fail(PTO_E_SYS, "shm_open(%s): %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (size_t)sb.st_size < MBOX_HDR_BYTES) {
        close(fd);
        return pto_fail(PTO_E_STATE, "mailbox %s: segment too small to be a mailbox", path);
    }
    size_t total = (size_t)sb.st_size;
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return pto_fail(PTO_E_SYS, "mmap(%s): %s", path, strerror(e));
    struct mbox_hdr *h = p;
    /* never trust sizes from shared memory: the stride must be the one the payload implies */
    uint32_t nranks = h->nranks;
    uint64_t payload = h->payload_bytes, stride = h->slot_stride;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MBOX_MAGIC || h->version != MBOX_VERSION ||
        nranks < 1 || nranks > PTO_MBOX_MAX_RANKS || payload < PTO_MBOX_MIN_PAYLOAD ||
        payload > PTO_MBOX_MAX_PAYLOAD || stride != stride_for(payload) ||
        MBOX_HDR_BYTES + (size_t)nranks * stride > total) {
        munmap(p, total);
        return pto_fail(PTO_E_STATE, "mailbox %s: not an initialised version-%u mailbox", path,
                        MBOX_VERSION);
    }
    pto_mbox *m = calloc(1, sizeof *m);
    if (!m) {
        munmap(p, total);
        return pto_fail(PTO_E_NOMEM, "mailbox handle: out of memory");
    }
    m->hdr = h;
    m->map_bytes = total;
    m->nranks = nranks;
    m->payload_bytes = payload;
    m->slot_stride = stride;
    *out = m;
    return PTO_OK;
}

int pto_mbox_close(pto_mbox *m)
{
    if (!m)
        return PTO_OK;
    munmap(m->hdr, m->map_bytes);
    free(m);
    return PTO_OK;
}

int pto_mbox_unlink(const char *name)
{
    char path[NAME_MAX + 2];
    int st;
    if ((st = shm_path(name, path, sizeof path)) != PTO_OK)
        return st;
    if (shm_unlink(path) != 0) {
        if (errno == ENOENT)
            return pto_fail(PTO_E_NOT_FOUND, "mailbox %s: no such segment", path);
        return pto_fail(PTO_E_SYS, "shm_unlink(%s): %s", path, strerror(errno));
    }
    return PTO_OK;
}

int pto_mbox_size(const pto_mbox *m, int *nranks)
{
    if (!m || !nranks)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_size: NULL argument");
    *nranks = (int)m->nranks;
    return PTO_OK;
}

int pto_mbox_capacity(const pto_mbox *m, uint64_t *payload_bytes)
{
    if (!m || !payload_bytes)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_capacity: NULL argument");
    *payload_bytes = m->payload_bytes;
    return PTO_OK;
}

int pto_mbox_owner(const pto_mbox *m, int32_t *pid)
{
    if (!m || !pid)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_owner: NULL argument");
    *pid = m->hdr->owner_pid;
    return PTO_OK;
}

static int check_state(uint32_t v, const char *what)
{
    if (v >= PTO_MBOX_NSTATES)
        return pto_fail(PTO_E_INVALID_ARG, "mailbox %s %u: must be in [0, %d]", what, v,
                        PTO_MBOX_NSTATES - 1);
    return PTO_OK;
}

int pto_mbox_load(pto_mbox *m, int rank, uint32_t *out)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_load: out must not be NULL");
    *out = atomic_load_explicit(&slot_of(m, rank)->state, memory_order_acquire);
    return PTO_OK;
}

int pto_mbox_store(pto_mbox *m, int rank, uint32_t state)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_state(state, "state")) != PTO_OK)
        return st;
    struct mbox_slot *s = slot_of(m, rank);
    atomic_store_explicit(&s->state, state, memory_order_release);
    pto_sys_futex_wake_all(&s->state);
    ring(m);
    return PTO_OK;
}

int pto_mbox_cas(pto_mbox *m, int rank, uint32_t expected, uint32_t desired, int *swapped)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_state(desired, "state")) != PTO_OK)
        return st;
    if (!swapped)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_cas: swapped must not be NULL");
    struct mbox_slot *s = slot_of(m, rank);
    *swapped = atomic_compare_exchange_strong_explicit(&s->state, &expected, desired,
                                                       memory_order_acq_rel, memory_order_acquire);
    if (*swapped) {
        pto_sys_futex_wake_all(&s->state);
        ring(m);
    }
    return PTO_OK;
}

int pto_mbox_wait(pto_mbox *m, int rank, uint32_t mask, int64_t timeout_ms, uint32_t *out)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (!mask)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_wait: mask must name at least one state");
    return wait_word(&slot_of(m, rank)->state, mask, timeout_ms, out, "state", rank);
}

int pto_mbox_ctrl_load(pto_mbox *m, int rank, uint32_t *out)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_ctrl_load: out must not be NULL");
    *out = atomic_load_explicit(&slot_of(m, rank)->ctrl, memory_order_acquire);
    return PTO_OK;
}

int pto_mbox_ctrl_store(pto_mbox *m, int rank, uint32_t value)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_state(value, "control value")) != PTO_OK)
        return st;
    struct mbox_slot *s = slot_of(m, rank);
    atomic_store_explicit(&s->ctrl, value, memory_order_release);
    pto_sys_futex_wake_all(&s->ctrl);
    ring(m);
    return PTO_OK;
}

int pto_mbox_ctrl_wait(pto_mbox *m, int rank, uint32_t mask, int64_t timeout_ms, uint32_t *out)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (!mask)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_ctrl_wait: mask must name at least one value");
    return wait_word(&slot_of(m, rank)->ctrl, mask, timeout_ms, out, "control", rank);
}

int pto_mbox_doorbell(pto_mbox *m, uint32_t *out)
{
    if (!m || !out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_doorbell: NULL argument");
    *out = atomic_load_explicit(&m->hdr->doorbell, memory_order_acquire);
    return PTO_OK;
}

int pto_mbox_doorbell_wait(pto_mbox *m, uint32_t seen, int64_t timeout_ms)
{
    if (!m)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_doorbell_wait: NULL handle");
    if (atomic_load_explicit(&m->hdr->doorbell, memory_order_acquire) != seen)
        return PTO_OK;
    return futex_sleep(&m->hdr->doorbell, seen, pto_deadline_after_ms(timeout_ms));
}

int pto_mbox_ring(pto_mbox *m)
{
    if (!m)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_ring: NULL handle");
    ring(m);
    return PTO_OK;
}

int pto_mbox_now(int64_t *out)
{
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_now: out must not be NULL");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *out = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return PTO_OK;
}

static int check_time(int which)
{
    if (which < 0 || which >= PTO_MBOX_NTIMES)
        return pto_fail(PTO_E_INVALID_ARG, "mailbox timestamp index %d: must be in [0, %d)", which,
                        PTO_MBOX_NTIMES);
    return PTO_OK;
}

int pto_mbox_set_time(pto_mbox *m, int rank, int which, int64_t ns)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_time(which)) != PTO_OK)
        return st;
    if (ns == 0)
        pto_mbox_now(&ns);
    atomic_store_explicit(&slot_of(m, rank)->times[which], ns, memory_order_release);
    return PTO_OK;
}

int pto_mbox_get_time(pto_mbox *m, int rank, int which, int64_t *out)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_time(which)) != PTO_OK)
        return st;
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_get_time: out must not be NULL");
    *out = atomic_load_explicit(&slot_of(m, rank)->times[which], memory_order_acquire);
    return PTO_OK;
}

int pto_mbox_set_pid(pto_mbox *m, int rank, int32_t pid)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (pid <= 0)
        return pto_fail(PTO_E_INVALID_ARG, "mailbox pid %d: must be > 0", pid);
    atomic_store_explicit(&slot_of(m, rank)->pid, pid, memory_order_release);
    ring(m);
    return PTO_OK;
}

int pto_mbox_get_pid(pto_mbox *m, int rank, int32_t *out)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (!out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_get_pid: out must not be NULL");
    *out = atomic_load_explicit(&slot_of(m, rank)->pid, memory_order_acquire);
    return PTO_OK;
}

int pto_mbox_set_exit(pto_mbox *m, int rank, int32_t wait_status)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    struct mbox_slot *s = slot_of(m, rank);
    int64_t now;
    pto_mbox_now(&now);
    s->wait_status = wait_status;
    atomic_store_explicit(&s->times[PTO_MBOX_T_EXIT], now, memory_order_relaxed);
    atomic_store_explicit(&s->exited, 1, memory_order_release);
    /* a worker blocked on its own words is gone; wake anyone waiting on them, and the parent */
    pto_sys_futex_wake_all(&s->state);
    pto_sys_futex_wake_all(&s->ctrl);
    ring(m);
    return PTO_OK;
}

int pto_mbox_get_exit(pto_mbox *m, int rank, int *exited, int32_t *wait_status)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK)
        return st;
    if (!exited || !wait_status)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_get_exit: NULL argument");
    struct mbox_slot *s = slot_of(m, rank);
    *exited = atomic_load_explicit(&s->exited, memory_order_acquire);
    *wait_status = *exited ? s->wait_status : 0;
    return PTO_OK;
}

static int check_channel(int channel)
{
    if (channel < 0 || channel >= PTO_MBOX_NCHANNELS)
        return pto_fail(PTO_E_INVALID_ARG,
                        "mailbox channel %d: must be 0 (task), 1 (control) or 2 (init)", channel);
    return PTO_OK;
}

int pto_mbox_write(pto_mbox *m, int rank, int channel, const void *data, uint64_t nbytes)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_channel(channel)) != PTO_OK)
        return st;
    if (!data && nbytes)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_write: data is NULL but nbytes=%llu",
                        (unsigned long long)nbytes);
    if (nbytes > m->payload_bytes)
        return pto_fail(PTO_E_RANGE,
                        "mailbox payload of %llu bytes exceeds the limit of %llu bytes per rank "
                        "(PTO_MBOX_PAYLOAD_BYTES)",
                        (unsigned long long)nbytes, (unsigned long long)m->payload_bytes);
    if (nbytes)
        memcpy(channel_data(m, rank, channel), data, nbytes);
    slot_of(m, rank)->len[channel] = nbytes; /* published by the next release store */
    return PTO_OK;
}

int pto_mbox_payload(pto_mbox *m, int rank, int channel, void **data, uint64_t *nbytes)
{
    int st = check_rank(m, rank);
    if (st != PTO_OK || (st = check_channel(channel)) != PTO_OK)
        return st;
    if (!data || !nbytes)
        return pto_fail(PTO_E_INVALID_ARG, "pto_mbox_payload: NULL argument");
    uint64_t n = slot_of(m, rank)->len[channel];
    if (n > m->payload_bytes)
        return pto_fail(PTO_E_STATE, "mailbox rank %d: corrupt payload length %llu", rank,
                        (unsigned long long)n);
    *data = channel_data(m, rank, channel);
    *nbytes = n;
    return PTO_OK;
}

int pto_set_proctitle(const char *title)
{
    if (!title)
        return pto_fail(PTO_E_INVALID_ARG, "pto_set_proctitle: title must not be NULL");
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return pto_fail(PTO_E_SYS, "open /proc/self/stat: %s", strerror(errno));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return pto_fail(PTO_E_SYS, "/proc/self/stat: unexpected format");
    /* fields after the comm: state is field 3; arg_start/arg_end are fields 48/49 */
    unsigned long long arg_start = 0, arg_end = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        ++field;
        if (field == 48)
            arg_start = strtoull(tok, NULL, 10);
        else if (field == 49) {
            arg_end = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (!arg_start || arg_end <= arg_start)
        return pto_fail(PTO_E_SYS, "/proc/self/stat: no argument area");
    size_t cap = (size_t)(arg_end - arg_start);
    char *area = (char *)(uintptr_t)arg_start;
    size_t len = strlen(title);
    if (len > cap - 1)
        len = cap - 1;
    memset(area, 0, cap);
    memcpy(area, title, len);
    return PTO_OK;
}
