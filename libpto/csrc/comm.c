/* Comm window over POSIX shared memory: signal slots, data windows, a reusable barrier.
 * See pto_comm.h for the layout, memory order, backoff and barrier semantics. */
#include "pto_comm.h"
#include "pto_clock.h"
#include "pto_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COMM_MAGIC 0x314d4d4f434f5450ULL /* "PTOCOMM1" little-endian */
#define COMM_VERSION 1u
#define LINE 64u
#define DATA_ALIGN 4096u
#define SPIN_ITERS 64u
#define YIELD_ITERS 32u
#define SLEEP_MIN_NS 20000LL    /* first futex sleep: 20 us */
#define SLEEP_MAX_NS 1000000LL  /* sleeps grow to 1 ms */
#define PEER_CHECK_NS 10000000LL /* look for dead peers every 10 ms while sleeping */
#define ATTACH_INIT_WAIT_MS 1000 /* how long attach waits for a creator still initialising */

struct comm_hdr {
    _Atomic uint64_t magic; /* written last by the creator (release) */
    uint32_t version;
    int32_t nranks;
    uint32_t nslots;
    int32_t creator_pid;
    uint64_t data_bytes;
    uint64_t total_bytes;
    uint64_t ranks_off;
    uint64_t slots_off;
    uint64_t data_off;
    uint64_t data_stride;
    /* barrier: generation << 32 | arrived count, on its own cache line */
    _Alignas(64) _Atomic uint64_t barrier;
    _Atomic uint32_t barrier_waiters;
};

struct comm_rank {
    _Atomic int32_t pid;         /* attached process, 0 when none */
    _Atomic uint32_t arrived;    /* barrier generation + 1 this rank last arrived in */
    /* 1: this rank runs on another host and died there (pto_comm_mark_remote_dead); `remote`
     * says how, written before the flag is set (release) and read after it (acquire) */
    _Atomic int32_t remote_dead;
    char remote[LINE - 12];
};

struct comm_slot {
    _Atomic uint64_t value;
    _Atomic uint32_t waiters;    /* ranks sleeping on this slot's futex */
    char pad[LINE - 12];
};

_Static_assert(sizeof(struct comm_rank) == LINE, "rank entry must be one cache line");
_Static_assert(sizeof(struct comm_slot) == LINE, "slot must be one cache line");
_Static_assert(sizeof(struct comm_hdr) % LINE == 0, "header must be whole cache lines");

struct pto_comm {
    unsigned char *base;
    size_t map_bytes;
    struct comm_hdr *hdr;
    struct comm_rank *ranks;
    struct comm_slot *slots;
    unsigned char *data;
    uint64_t data_bytes;
    uint64_t data_stride;
    uint32_t nslots;
    int nranks;
    int rank;
    int pid;
    int creator_pid;
    char name[PTO_COMM_NAME_MAX + 2];
};

struct layout {
    uint64_t ranks_off, slots_off, data_off, data_stride, total;
};

/* ---------------------------------------------------------------- helpers */

/* The whole wait's duration for a timeout message: this slice plus the earlier ones (saturated). */
static long long total_ms(int64_t timeout_ms, int64_t elapsed_ms)
{
    if (elapsed_ms <= 0)
        return timeout_ms;
    return timeout_ms > INT64_MAX - elapsed_ms ? INT64_MAX : timeout_ms + elapsed_ms;
}

static uint32_t *lo32(_Atomic uint64_t *w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (uint32_t *)(void *)w;
#else
    return (uint32_t *)(void *)w + 1;
#endif
}

static uint32_t *hi32(_Atomic uint64_t *w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (uint32_t *)(void *)w + 1;
#else
    return (uint32_t *)(void *)w;
#endif
}

static int cmp_holds(uint64_t v, int cmp, uint64_t x)
{
    switch (cmp) {
    case PTO_CMP_EQ: return v == x;
    case PTO_CMP_NE: return v != x;
    case PTO_CMP_GE: return v >= x;
    case PTO_CMP_GT: return v > x;
    case PTO_CMP_LE: return v <= x;
    case PTO_CMP_LT: return v < x;
    default: return 0;
    }
}

const char *pto_comm_cmp_name(int cmp)
{
    switch (cmp) {
    case PTO_CMP_EQ: return "==";
    case PTO_CMP_NE: return "!=";
    case PTO_CMP_GE: return ">=";
    case PTO_CMP_GT: return ">";
    case PTO_CMP_LE: return "<=";
    case PTO_CMP_LT: return "<";
    default: return "?";
    }
}

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Layout for the given sizes; arguments were range-checked, so nothing overflows. */
static struct layout make_layout(int nranks, uint32_t nslots, uint64_t data_bytes)
{
    struct layout l;
    l.ranks_off = sizeof(struct comm_hdr);
    l.slots_off = l.ranks_off + (uint64_t)nranks * sizeof(struct comm_rank);
    l.data_off = round_up(l.slots_off + (uint64_t)nranks * nslots * sizeof(struct comm_slot), DATA_ALIGN);
    l.data_stride = round_up(data_bytes, DATA_ALIGN);
    l.total = l.data_off + (uint64_t)nranks * l.data_stride;
    if (l.total == 0)
        l.total = DATA_ALIGN;
    return l;
}

/* "pto-x" or "/pto-x" -> "/pto-x" in out; the rule is the same for every entry point. */
static int shm_path(const char *fn, const char *name, char *out, size_t cap)
{
    char what[96];
    snprintf(what, sizeof what, "%s: name", fn);
    return pto_sys_shm_path(what, name, "pto-", PTO_COMM_NAME_MAX, out, cap);
}

static void bind_views(pto_comm *c)
{
    struct comm_hdr *h = (struct comm_hdr *)(void *)c->base;
    c->hdr = h;
    c->ranks = (struct comm_rank *)(void *)(c->base + h->ranks_off);
    c->slots = (struct comm_slot *)(void *)(c->base + h->slots_off);
    c->data = c->base + h->data_off;
    c->nranks = h->nranks;
    c->nslots = h->nslots;
    c->data_bytes = h->data_bytes;
    c->data_stride = h->data_stride;
    c->creator_pid = h->creator_pid;
}

static struct comm_slot *slot_of(pto_comm *c, int rank, uint32_t slot)
{
    return &c->slots[(size_t)rank * c->nslots + slot];
}

/* Claim the rank entry for this process; a live holder keeps it. */
static int claim_rank(pto_comm *c, const char *fn)
{
    if (c->rank < 0)
        return PTO_OK;
    _Atomic int32_t *p = &c->ranks[c->rank].pid;
    for (;;) {
        int32_t cur = atomic_load_explicit(p, memory_order_acquire);
        if (cur == c->pid)
            return pto_fail(PTO_E_EXISTS, "%s: rank %d of '%s' is already attached by this process (pid %d)",
                            fn, c->rank, c->name, cur);
        if (cur != 0 && pto_sys_pid_alive(cur))
            return pto_fail(PTO_E_EXISTS, "%s: rank %d of '%s' is already attached by live pid %d", fn,
                            c->rank, c->name, cur);
        if (atomic_compare_exchange_strong_explicit(p, &cur, c->pid, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            atomic_store_explicit(&c->ranks[c->rank].arrived, 0, memory_order_relaxed);
            /* the rank lives here now: another host's word about it no longer holds */
            atomic_store_explicit(&c->ranks[c->rank].remote_dead, 0, memory_order_release);
            return PTO_OK;
        }
    }
}

#define CHECK_COMM(fn, c)                                                                           \
    do {                                                                                            \
        if (!(c))                                                                                   \
            return pto_fail(PTO_E_INVALID_ARG, "%s: comm is NULL", fn);                             \
    } while (0)

#define CHECK_OUT(fn, p, what)                                                                      \
    do {                                                                                            \
        if (!(p))                                                                                   \
            return pto_fail(PTO_E_INVALID_ARG, "%s: %s is NULL", fn, what);                          \
    } while (0)

static int check_rank(const char *fn, const pto_comm *c, const char *what, int rank)
{
    if (rank < 0 || rank >= c->nranks)
        return pto_fail(PTO_E_INVALID_ARG, "%s: %s=%d out of range [0, %d)", fn, what, rank, c->nranks);
    return PTO_OK;
}

static int check_slot(const char *fn, const pto_comm *c, uint32_t slot)
{
    if (slot >= c->nslots)
        return pto_fail(PTO_E_INVALID_ARG, "%s: slot=%u out of range [0, %u)", fn, slot, c->nslots);
    return PTO_OK;
}

static int check_cmp(const char *fn, int cmp)
{
    if (cmp < PTO_CMP_EQ || cmp > PTO_CMP_LT)
        return pto_fail(PTO_E_INVALID_ARG, "%s: cmp=%d is not a comparison (0..5: == != >= > <= <)", fn, cmp);
    return PTO_OK;
}

static int need_rank(const char *fn, const pto_comm *c)
{
    if (c->rank < 0)
        return pto_fail(PTO_E_STATE, "%s: this handle of '%s' is an observer (rank -1) and has no local slots",
                        fn, c->name);
    return PTO_OK;
}

/* First dead peer, or -1: an attached pid that no longer lives, or a rank another host's
 * mirror marked dead (pto_comm_mark_remote_dead). `who` receives "pid N" or the mark's text. */
static int dead_peer(pto_comm *c, char *who, size_t cap)
{
    for (int r = 0; r < c->nranks; r++) {
        if (r == c->rank)
            continue;
        int pid = atomic_load_explicit(&c->ranks[r].pid, memory_order_acquire);
        if (pid != 0 && pid != c->pid && !pto_sys_pid_alive(pid)) {
            snprintf(who, cap, "pid %d", pid);
            return r;
        }
        if (pid == 0 && atomic_load_explicit(&c->ranks[r].remote_dead, memory_order_acquire)) {
            const char *text = c->ranks[r].remote;
            snprintf(who, cap, "%.*s", (int)sizeof c->ranks[r].remote, text);
            return r;
        }
    }
    return -1;
}

/* Backoff: spin, then yield, then a futex sleep on `addr` that grows to SLEEP_MAX_NS, never
 * past the deadline. Returns 1 when the caller should look for dead peers now. */
struct backoff {
    unsigned iter;
    int64_t sleep_ns;
    int64_t next_peer_check;
};

static int backoff_step(struct backoff *b, uint32_t *addr, uint32_t expected, _Atomic uint32_t *waiters,
                        int64_t deadline, int (*still)(void *), void *arg)
{
    b->iter++;
    if (b->iter <= SPIN_ITERS) {
        pto_cpu_relax();
        return 0;
    }
    if (b->iter <= SPIN_ITERS + YIELD_ITERS) {
        sched_yield();
        return 0;
    }
    int64_t t = pto_now_ns();
    int64_t ns = b->sleep_ns ? b->sleep_ns : SLEEP_MIN_NS;
    if (deadline >= 0 && deadline - t < ns)
        ns = deadline - t;
    if (ns > 0) {
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        if (still(arg)) /* re-check after announcing ourselves: a notify now will wake us */
            pto_sys_futex_wait(addr, expected, ns);
        atomic_fetch_sub_explicit(waiters, 1, memory_order_seq_cst);
    }
    b->sleep_ns = b->sleep_ns ? b->sleep_ns * 2 : SLEEP_MIN_NS * 2;
    if (b->sleep_ns > SLEEP_MAX_NS)
        b->sleep_ns = SLEEP_MAX_NS;
    if (b->next_peer_check == 0)
        b->next_peer_check = t + PEER_CHECK_NS / 10;
    if (t >= b->next_peer_check) {
        b->next_peer_check = t + PEER_CHECK_NS;
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- lifecycle */

int pto_comm_create(const char *name, int nranks, int rank, uint32_t nslots, uint64_t data_bytes, pto_comm **out)
{
    static const char fn[] = "pto_comm_create";
    char path[PTO_COMM_NAME_MAX + 2];
    int st = shm_path(fn, name, path, sizeof path);
    if (st)
        return st;
    CHECK_OUT(fn, out, "out");
    *out = NULL;
    if (nranks < 1 || nranks > PTO_COMM_MAX_RANKS)
        return pto_fail(PTO_E_INVALID_ARG, "%s: nranks=%d out of range [1, %d]", fn, nranks, PTO_COMM_MAX_RANKS);
    if (rank < -1 || rank >= nranks)
        return pto_fail(PTO_E_INVALID_ARG, "%s: rank=%d out of range [0, %d) (or -1 for an observer)", fn, rank,
                        nranks);
    if (nslots < 1 || nslots > PTO_COMM_MAX_SLOTS)
        return pto_fail(PTO_E_INVALID_ARG, "%s: nslots=%u out of range [1, %d]", fn, nslots, PTO_COMM_MAX_SLOTS);
    if (data_bytes > PTO_COMM_MAX_DATA_BYTES)
        return pto_fail(PTO_E_INVALID_ARG, "%s: data_bytes=%llu exceeds the per-rank limit %llu", fn,
                        (unsigned long long)data_bytes, (unsigned long long)PTO_COMM_MAX_DATA_BYTES);
    struct layout l = make_layout(nranks, nslots, data_bytes);
    if (l.total > (uint64_t)SIZE_MAX / 2 || l.total > (uint64_t)INT64_MAX)
        return pto_fail(PTO_E_INVALID_ARG, "%s: window of %llu bytes is too large", fn,
                        (unsigned long long)l.total);

    pto_comm *c = calloc(1, sizeof *c);
    if (!c)
        return pto_fail(PTO_E_NOMEM, "%s: out of memory", fn);
    snprintf(c->name, sizeof c->name, "%s", path + 1);
    c->pid = (int)getpid();
    c->rank = rank;

    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        free(c);
        if (e == EEXIST)
            return pto_fail(PTO_E_EXISTS, "%s: shared memory '%s' already exists", fn, path + 1);
        return pto_fail(PTO_E_SYS, "%s: shm_open('%s'): %s", fn, path + 1, strerror(e));
    }
    if (ftruncate(fd, (off_t)l.total) != 0) {
        st = pto_fail(PTO_E_SYS, "%s: ftruncate('%s', %llu): %s", fn, path + 1, (unsigned long long)l.total,
                      strerror(errno));
        goto fail;
    }
    /* A /dev/shm without room fails here, not with SIGBUS on a later write (pto_sys.h). */
    char what[PTO_COMM_NAME_MAX + 40];
    snprintf(what, sizeof what, "%s: '%s'", fn, path + 1);
    st = pto_sys_shm_room(what, fd, l.total);
    if (st)
        goto fail;
    void *base = mmap(NULL, (size_t)l.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        st = pto_fail(PTO_E_SYS, "%s: mmap('%s', %llu): %s", fn, path + 1, (unsigned long long)l.total,
                      strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    c->base = base;
    c->map_bytes = (size_t)l.total;
    struct comm_hdr *h = (struct comm_hdr *)base;
    h->version = COMM_VERSION;
    h->nranks = nranks;
    h->nslots = nslots;
    h->creator_pid = c->pid;
    h->data_bytes = data_bytes;
    h->total_bytes = l.total;
    h->ranks_off = l.ranks_off;
    h->slots_off = l.slots_off;
    h->data_off = l.data_off;
    h->data_stride = l.data_stride;
    atomic_store_explicit(&h->barrier, 0, memory_order_relaxed);
    bind_views(c);
    if (rank >= 0)
        atomic_store_explicit(&c->ranks[rank].pid, c->pid, memory_order_relaxed);
    atomic_store_explicit(&h->magic, COMM_MAGIC, memory_order_release);
    *out = c;
    pto_clear_error();
    return PTO_OK;

fail:
    if (fd >= 0)
        close(fd);
    shm_unlink(path);
    free(c);
    return st;
}

int pto_comm_attach(const char *name, int rank, pto_comm **out)
{
    static const char fn[] = "pto_comm_attach";
    char path[PTO_COMM_NAME_MAX + 2];
    int st = shm_path(fn, name, path, sizeof path);
    if (st)
        return st;
    CHECK_OUT(fn, out, "out");
    *out = NULL;
    if (rank < -1 || rank >= PTO_COMM_MAX_RANKS)
        return pto_fail(PTO_E_INVALID_ARG, "%s: rank=%d out of range [0, %d) (or -1 for an observer)", fn, rank,
                        PTO_COMM_MAX_RANKS);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return pto_fail(PTO_E_NOT_FOUND, "%s: no comm window named '%s' (was it created, or already unlinked?)",
                            fn, path + 1);
        return pto_fail(PTO_E_SYS, "%s: shm_open('%s'): %s", fn, path + 1, strerror(e));
    }
    struct stat sb;
    int64_t deadline = pto_now_ns() + (int64_t)ATTACH_INIT_WAIT_MS * 1000000LL;
    for (;;) { /* the creator sizes the segment right after creating it */
        if (fstat(fd, &sb) != 0) {
            st = pto_fail(PTO_E_SYS, "%s: fstat('%s'): %s", fn, path + 1, strerror(errno));
            close(fd);
            return st;
        }
        if ((uint64_t)sb.st_size >= sizeof(struct comm_hdr) || pto_now_ns() > deadline)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if ((uint64_t)sb.st_size < sizeof(struct comm_hdr)) {
        close(fd);
        return pto_fail(PTO_E_STATE, "%s: '%s' is %lld bytes, too small for a comm window", fn, path + 1,
                        (long long)sb.st_size);
    }
    size_t map_bytes = (size_t)sb.st_size;
    void *base = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (base == MAP_FAILED)
        return pto_fail(PTO_E_SYS, "%s: mmap('%s'): %s", fn, path + 1, strerror(e));
    struct comm_hdr *h = (struct comm_hdr *)base;
    uint64_t magic;
    while ((magic = atomic_load_explicit(&h->magic, memory_order_acquire)) == 0 && pto_now_ns() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (magic != COMM_MAGIC) {
        st = magic == 0 ? pto_fail(PTO_E_STATE, "%s: '%s' was never initialised (its creator died while creating it?)",
                                   fn, path + 1)
                        : pto_fail(PTO_E_STATE, "%s: '%s' is not a comm window (bad magic 0x%llx)", fn, path + 1,
                                   (unsigned long long)magic);
        munmap(base, map_bytes);
        return st;
    }
    if (h->version != COMM_VERSION) {
        munmap(base, map_bytes);
        return pto_fail(PTO_E_STATE, "%s: '%s' has layout version %u, this library speaks %u", fn, path + 1,
                        h->version, COMM_VERSION);
    }
    /* Never trust offsets from shared memory: recompute them from validated sizes. */
    int valid = h->nranks >= 1 && h->nranks <= PTO_COMM_MAX_RANKS && h->nslots >= 1 &&
                h->nslots <= PTO_COMM_MAX_SLOTS && h->data_bytes <= PTO_COMM_MAX_DATA_BYTES;
    if (valid) {
        struct layout l = make_layout(h->nranks, h->nslots, h->data_bytes);
        valid = l.total == h->total_bytes && l.total <= map_bytes && l.ranks_off == h->ranks_off &&
                l.slots_off == h->slots_off && l.data_off == h->data_off && l.data_stride == h->data_stride;
    }
    if (!valid) {
        munmap(base, map_bytes);
        return pto_fail(PTO_E_STATE, "%s: '%s' has a corrupt header", fn, path + 1);
    }
    if (rank >= h->nranks) {
        int n = h->nranks;
        munmap(base, map_bytes);
        return pto_fail(PTO_E_INVALID_ARG, "%s: rank=%d out of range [0, %d) for '%s' (or -1 for an observer)", fn,
                        rank, n, path + 1);
    }
    pto_comm *c = calloc(1, sizeof *c);
    if (!c) {
        munmap(base, map_bytes);
        return pto_fail(PTO_E_NOMEM, "%s: out of memory", fn);
    }
    snprintf(c->name, sizeof c->name, "%s", path + 1);
    c->base = base;
    c->map_bytes = map_bytes;
    c->pid = (int)getpid();
    c->rank = rank;
    bind_views(c);
    st = claim_rank(c, fn);
    if (st) {
        munmap(base, map_bytes);
        free(c);
        return st;
    }
    *out = c;
    pto_clear_error();
    return PTO_OK;
}

int pto_comm_close(pto_comm *c)
{
    if (!c)
        return PTO_OK;
    /* only the process that attached releases the rank (not a forked child closing its copy) */
    if (c->rank >= 0 && (int)getpid() == c->pid) {
        int32_t me = c->pid;
        atomic_compare_exchange_strong_explicit(&c->ranks[c->rank].pid, &me, 0, memory_order_acq_rel,
                                                memory_order_relaxed);
    }
    munmap(c->base, c->map_bytes);
    free(c);
    return PTO_OK;
}

int pto_comm_unlink(const char *name)
{
    static const char fn[] = "pto_comm_unlink";
    char path[PTO_COMM_NAME_MAX + 2];
    int st = shm_path(fn, name, path, sizeof path);
    if (st)
        return st;
    if (shm_unlink(path) != 0) {
        if (errno == ENOENT)
            return pto_fail(PTO_E_NOT_FOUND, "%s: no comm window named '%s'", fn, path + 1);
        return pto_fail(PTO_E_SYS, "%s: shm_unlink('%s'): %s", fn, path + 1, strerror(errno));
    }
    return PTO_OK;
}

/* ---------------------------------------------------------------- queries */

int pto_comm_rank(const pto_comm *c, int *out)
{
    CHECK_COMM("pto_comm_rank", c);
    CHECK_OUT("pto_comm_rank", out, "out");
    *out = c->rank;
    return PTO_OK;
}

int pto_comm_size(const pto_comm *c, int *out)
{
    CHECK_COMM("pto_comm_size", c);
    CHECK_OUT("pto_comm_size", out, "out");
    *out = c->nranks;
    return PTO_OK;
}

int pto_comm_nslots(const pto_comm *c, uint32_t *out)
{
    CHECK_COMM("pto_comm_nslots", c);
    CHECK_OUT("pto_comm_nslots", out, "out");
    *out = c->nslots;
    return PTO_OK;
}

int pto_comm_data_bytes(const pto_comm *c, uint64_t *out)
{
    CHECK_COMM("pto_comm_data_bytes", c);
    CHECK_OUT("pto_comm_data_bytes", out, "out");
    *out = c->data_bytes;
    return PTO_OK;
}

int pto_comm_creator_pid(const pto_comm *c, int *out)
{
    CHECK_COMM("pto_comm_creator_pid", c);
    CHECK_OUT("pto_comm_creator_pid", out, "out");
    *out = c->creator_pid;
    return PTO_OK;
}

int pto_comm_rank_pid(const pto_comm *c, int rank, int *out)
{
    static const char fn[] = "pto_comm_rank_pid";
    CHECK_COMM(fn, c);
    CHECK_OUT(fn, out, "out");
    int st = check_rank(fn, c, "rank", rank);
    if (st)
        return st;
    *out = atomic_load_explicit(&c->ranks[rank].pid, memory_order_acquire);
    return PTO_OK;
}

int pto_comm_peer_alive(const pto_comm *c, int rank, int *alive)
{
    static const char fn[] = "pto_comm_peer_alive";
    CHECK_COMM(fn, c);
    CHECK_OUT(fn, alive, "alive");
    int st = check_rank(fn, c, "rank", rank);
    if (st)
        return st;
    *alive = pto_sys_pid_alive(atomic_load_explicit(&c->ranks[rank].pid, memory_order_acquire));
    return PTO_OK;
}

int pto_comm_mark_remote_dead(pto_comm *c, int rank, const char *how)
{
    static const char fn[] = "pto_comm_mark_remote_dead";
    CHECK_COMM(fn, c);
    int st = check_rank(fn, c, "rank", rank);
    if (st)
        return st;
    struct comm_rank *e = &c->ranks[rank];
    if (!how || !*how) {
        atomic_store_explicit(&e->remote_dead, 0, memory_order_release);
        return PTO_OK;
    }
    if (atomic_load_explicit(&e->pid, memory_order_acquire) != 0)
        return pto_fail(PTO_E_STATE, "%s: rank %d of '%s' is attached on this host (pid %d), not on another", fn,
                        rank, c->name, atomic_load_explicit(&e->pid, memory_order_relaxed));
    if (atomic_load_explicit(&e->remote_dead, memory_order_acquire))
        return PTO_OK; /* the first word stands: a reader may be copying its text right now */
    snprintf(e->remote, sizeof e->remote, "%s", how);
    atomic_store_explicit(&e->remote_dead, 1, memory_order_release);
    return PTO_OK;
}

/* ---------------------------------------------------------------- signals */

int pto_comm_notify(pto_comm *c, int peer, uint32_t slot, uint64_t value, int op)
{
    static const char fn[] = "pto_comm_notify";
    CHECK_COMM(fn, c);
    int st = check_rank(fn, c, "peer", peer);
    if (st)
        return st;
    if ((st = check_slot(fn, c, slot)))
        return st;
    struct comm_slot *s = slot_of(c, peer, slot);
    /* seq_cst (a release and more): pairs with the waiter's announce-then-recheck, so a
     * sleeping waiter is either seen here or sees the new value before it sleeps. */
    if (op == PTO_NOTIFY_SET)
        atomic_store_explicit(&s->value, value, memory_order_seq_cst);
    else if (op == PTO_NOTIFY_ADD)
        atomic_fetch_add_explicit(&s->value, value, memory_order_seq_cst);
    else
        return pto_fail(PTO_E_INVALID_ARG, "%s: op=%d is not PTO_NOTIFY_SET (0) or PTO_NOTIFY_ADD (1)", fn, op);
    if (atomic_load_explicit(&s->waiters, memory_order_seq_cst) != 0)
        pto_sys_futex_wake_all(lo32(&s->value));
    return PTO_OK;
}

int pto_comm_test(pto_comm *c, uint32_t slot, int cmp, uint64_t value, int *ok)
{
    static const char fn[] = "pto_comm_test";
    CHECK_COMM(fn, c);
    CHECK_OUT(fn, ok, "ok");
    int st;
    if ((st = need_rank(fn, c)) || (st = check_slot(fn, c, slot)) || (st = check_cmp(fn, cmp)))
        return st;
    uint64_t v = atomic_load_explicit(&slot_of(c, c->rank, slot)->value, memory_order_acquire);
    *ok = cmp_holds(v, cmp, value);
    return PTO_OK;
}

int pto_comm_load(pto_comm *c, int rank, uint32_t slot, uint64_t *out)
{
    static const char fn[] = "pto_comm_load";
    CHECK_COMM(fn, c);
    CHECK_OUT(fn, out, "out");
    int st;
    if ((st = check_rank(fn, c, "rank", rank)) || (st = check_slot(fn, c, slot)))
        return st;
    *out = atomic_load_explicit(&slot_of(c, rank, slot)->value, memory_order_acquire);
    return PTO_OK;
}

struct slot_wait {
    struct comm_slot *s;
    int cmp;
    uint64_t value;
    uint64_t last;
};

static int slot_still_waiting(void *arg)
{
    struct slot_wait *w = arg;
    w->last = atomic_load_explicit(&w->s->value, memory_order_seq_cst);
    return !cmp_holds(w->last, w->cmp, w->value);
}

int pto_comm_wait_value(pto_comm *c, uint32_t slot, int cmp, uint64_t value, int64_t timeout_ms, int64_t elapsed_ms,
                        uint64_t *last)
{
    static const char fn[] = "pto_comm_wait";
    CHECK_COMM(fn, c);
    int st;
    if ((st = need_rank(fn, c)) || (st = check_slot(fn, c, slot)) || (st = check_cmp(fn, cmp)))
        return st;
    struct slot_wait w = {.s = slot_of(c, c->rank, slot), .cmp = cmp, .value = value};
    int64_t deadline = pto_deadline_after_ms(timeout_ms);
    struct backoff b = {0};
    for (;;) {
        w.last = atomic_load_explicit(&w.s->value, memory_order_acquire);
        if (cmp_holds(w.last, cmp, value)) {
            if (last)
                *last = w.last;
            return PTO_OK;
        }
        if (deadline >= 0 && pto_now_ns() >= deadline) {
            if (last)
                *last = w.last;
            return pto_fail(PTO_E_TIMEOUT, "comm wait: slot %u %s %llu not reached in %lld ms (value %llu)", slot,
                            pto_comm_cmp_name(cmp), (unsigned long long)value,
                            total_ms(timeout_ms, elapsed_ms), (unsigned long long)w.last);
        }
        if (backoff_step(&b, lo32(&w.s->value), (uint32_t)w.last, &w.s->waiters, deadline, slot_still_waiting,
                         &w)) {
            char who[LINE];
            int dead = dead_peer(c, who, sizeof who);
            if (dead >= 0) {
                w.last = atomic_load_explicit(&w.s->value, memory_order_acquire);
                if (cmp_holds(w.last, cmp, value))
                    continue; /* it notified before dying: the wait succeeded */
                if (last)
                    *last = w.last;
                return pto_fail(PTO_E_PEER_DEAD, "comm wait: slot %u %s %llu: peer rank %d (%s) died (value %llu)",
                                slot, pto_comm_cmp_name(cmp), (unsigned long long)value, dead, who,
                                (unsigned long long)w.last);
            }
        }
    }
}

int pto_comm_wait(pto_comm *c, uint32_t slot, int cmp, uint64_t value, int64_t timeout_ms)
{
    return pto_comm_wait_value(c, slot, cmp, value, timeout_ms, 0, NULL);
}

/* ---------------------------------------------------------------- data windows */

int pto_comm_data(pto_comm *c, int rank, uint64_t offset, uint64_t nbytes, void **out)
{
    static const char fn[] = "pto_comm_data";
    CHECK_COMM(fn, c);
    CHECK_OUT(fn, out, "out");
    int st = check_rank(fn, c, "rank", rank);
    if (st)
        return st;
    if (offset > c->data_bytes || nbytes > c->data_bytes - offset)
        return pto_fail(PTO_E_RANGE, "%s: offset=%llu nbytes=%llu outside rank %d's data window of %llu bytes", fn,
                        (unsigned long long)offset, (unsigned long long)nbytes, rank,
                        (unsigned long long)c->data_bytes);
    *out = c->data + (size_t)rank * c->data_stride + offset;
    return PTO_OK;
}

int pto_comm_write(pto_comm *c, int rank, uint64_t offset, const void *src, uint64_t nbytes)
{
    void *dst;
    if (nbytes && !src)
        return pto_fail(PTO_E_INVALID_ARG, "pto_comm_write: src is NULL");
    int st = pto_comm_data(c, rank, offset, nbytes, &dst);
    if (st)
        return st;
    if (nbytes)
        memcpy(dst, src, (size_t)nbytes);
    atomic_thread_fence(memory_order_release);
    return PTO_OK;
}

int pto_comm_read(pto_comm *c, int rank, uint64_t offset, void *dst, uint64_t nbytes)
{
    void *src;
    if (nbytes && !dst)
        return pto_fail(PTO_E_INVALID_ARG, "pto_comm_read: dst is NULL");
    int st = pto_comm_data(c, rank, offset, nbytes, &src);
    if (st)
        return st;
    atomic_thread_fence(memory_order_acquire);
    if (nbytes)
        memcpy(dst, src, (size_t)nbytes);
    return PTO_OK;
}

/* ---------------------------------------------------------------- barrier */

struct bar_wait {
    _Atomic uint64_t *word;
    uint32_t gen;
};

static int bar_still_waiting(void *arg)
{
    struct bar_wait *w = arg;
    return (uint32_t)(atomic_load_explicit(w->word, memory_order_seq_cst) >> 32) == w->gen;
}

/* "1, 3, 5" (at most ~40 ranks, then "...") of ranks not arrived in generation gen. */
static void missing_ranks(pto_comm *c, uint32_t gen, char *buf, size_t cap, int *dead_rank, int *dead_pid)
{
    size_t n = 0;
    int listed = 0;
    buf[0] = '\0';
    *dead_rank = -1;
    for (int r = 0; r < c->nranks; r++) {
        if (atomic_load_explicit(&c->ranks[r].arrived, memory_order_acquire) == gen + 1u)
            continue;
        int pid = atomic_load_explicit(&c->ranks[r].pid, memory_order_acquire);
        if (*dead_rank < 0 && r != c->rank && pid != 0 && !pto_sys_pid_alive(pid)) {
            *dead_rank = r;
            *dead_pid = pid;
        }
        if (listed == 40) {
            if (n + 5 < cap)
                n += (size_t)snprintf(buf + n, cap - n, ", ...");
            listed++;
            continue;
        }
        if (listed > 40 || n + 16 >= cap)
            continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s%d", listed ? ", " : "", r);
        listed++;
    }
}

int pto_comm_barrier(pto_comm *c, int64_t timeout_ms)
{
    return pto_comm_barrier_ex(c, timeout_ms, 0);
}

int pto_comm_barrier_ex(pto_comm *c, int64_t timeout_ms, int64_t elapsed_ms)
{
    static const char fn[] = "pto_comm_barrier";
    CHECK_COMM(fn, c);
    int st = need_rank(fn, c);
    if (st)
        return st;
    int64_t deadline = pto_deadline_after_ms(timeout_ms);
    _Atomic uint64_t *word = &c->hdr->barrier;
    uint64_t n = (uint64_t)c->nranks;

    /* arrive */
    uint64_t cur = atomic_load_explicit(word, memory_order_acquire);
    uint32_t gen;
    for (;;) {
        gen = (uint32_t)(cur >> 32);
        uint64_t count = cur & 0xffffffffu;
        atomic_store_explicit(&c->ranks[c->rank].arrived, gen + 1u, memory_order_release);
        if (count + 1 >= n) { /* last: open the barrier and start the next generation */
            uint64_t next = (uint64_t)(gen + 1u) << 32;
            /* seq_cst: pairs with a sleeper's announce-then-recheck of barrier_waiters */
            if (atomic_compare_exchange_weak_explicit(word, &cur, next, memory_order_seq_cst,
                                                      memory_order_acquire)) {
                if (atomic_load_explicit(&c->hdr->barrier_waiters, memory_order_seq_cst) != 0)
                    pto_sys_futex_wake_all(hi32(word));
                return PTO_OK;
            }
        } else if (atomic_compare_exchange_weak_explicit(word, &cur, cur + 1, memory_order_acq_rel,
                                                         memory_order_acquire)) {
            break;
        }
    }

    /* wait for the generation to move on */
    struct bar_wait w = {.word = word, .gen = gen};
    struct backoff b = {0};
    int dead_rank = -1, dead_pid = 0;
    for (;;) {
        cur = atomic_load_explicit(word, memory_order_acquire);
        if ((uint32_t)(cur >> 32) != gen)
            return PTO_OK;
        int timed_out = deadline >= 0 && pto_now_ns() >= deadline;
        if (!timed_out && backoff_step(&b, hi32(word), gen, &c->hdr->barrier_waiters, deadline, bar_still_waiting,
                                       &w)) {
            char tmp[8];
            missing_ranks(c, gen, tmp, sizeof tmp, &dead_rank, &dead_pid);
        }
        if (!timed_out && dead_rank < 0)
            continue;
        /* give up: withdraw our arrival unless the barrier opened meanwhile */
        cur = atomic_load_explicit(word, memory_order_acquire);
        for (;;) {
            if ((uint32_t)(cur >> 32) != gen)
                return PTO_OK;
            if (atomic_compare_exchange_weak_explicit(word, &cur, cur - 1, memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        }
        uint64_t arrived = cur & 0xffffffffu; /* including us, before withdrawing */
        char miss[320];
        int dr, dp = 0;
        missing_ranks(c, gen, miss, sizeof miss, &dr, &dp);
        atomic_store_explicit(&c->ranks[c->rank].arrived, gen, memory_order_release);
        if (dead_rank >= 0)
            return pto_fail(PTO_E_PEER_DEAD, "comm barrier: rank %d (pid %d) died; %llu of %d ranks arrived, missing ranks: %s",
                            dead_rank, dead_pid, (unsigned long long)arrived, c->nranks, miss);
        return pto_fail(PTO_E_TIMEOUT, "comm barrier: %llu of %d ranks arrived in %lld ms, missing ranks: %s",
                        (unsigned long long)arrived, c->nranks,
                        total_ms(timeout_ms, elapsed_ms), miss);
    }
}
