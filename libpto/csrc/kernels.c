/* Builtin kernels of the sim cores: validation at graph build / submit, execution on a core.
 *
 * Waiting kernels (hang, wait) and spin observe the run's stop word, so a latched error, a
 * stream-sync timeout or pto_rt_abort ends them promptly and the runtime stays reusable.
 */
#include "pto_runtime_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[PTO_K_COUNT] = {
    "noop", "spin", "hang", "crash", "fill", "add", "copy", "notify", "wait", "event",
    "tensor_wait",
};

const char *pto_kernel_name(int kernel)
{
    return kernel >= 0 && kernel < PTO_K_COUNT ? NAMES[kernel] : "?";
}

int pto_kernel_id(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < PTO_K_COUNT; i++)
        if (!strcmp(NAMES[i], name))
            return i;
    return -1;
}

/* operands used by each buffer kernel: bit 0 dst, 1 src0, 2 src1 */
static int operands(int kernel)
{
    switch (kernel) {
    case PTO_K_FILL: return 1;
    case PTO_K_COPY: return 3;
    case PTO_K_ADD: return 7;
    default: return 0;
    }
}

static int check_mref(pto_rt *rt, const char *ctx, const char *what, const pto_mref *m,
                      uint64_t nbytes, void **out)
{
    if (m->offset % 4)
        return pto_fail(PTO_E_INVALID_ARG, "%s: %s offset %llu must be a multiple of 4 (float32)",
                        ctx, what, (unsigned long long)m->offset);
    if (m->space == PTO_MEM_BUFFER) {
        void *p;
        int st = pto_rt_buffer_ptr(rt, m->id, m->offset, nbytes, &p);
        if (st != PTO_OK) {
            char inner[320];
            snprintf(inner, sizeof inner, "%s", pto_last_error());
            return pto_fail(st, "%s: %s: %s", ctx, what, inner);
        }
        if (out)
            *out = p;
        return PTO_OK;
    }
    if (m->space == PTO_MEM_COMM) {
        if (!rt->comm) {
            if (out)
                return pto_fail(PTO_E_STATE, "%s: %s is in the comm window but none is bound",
                                ctx, what);
            return PTO_OK; /* checked again at submit */
        }
        void *p;
        int st = pto_comm_data(rt->comm, m->id, m->offset, nbytes, &p);
        if (st != PTO_OK)
            return pto_fail(st == PTO_E_RANGE ? PTO_E_RANGE : PTO_E_INVALID_ARG,
                            "%s: %s: rank %d data window [%llu, +%llu bytes) is outside the "
                            "bound comm window", ctx, what, m->id,
                            (unsigned long long)m->offset, (unsigned long long)nbytes);
        if (out)
            *out = p;
        return PTO_OK;
    }
    return pto_fail(PTO_E_INVALID_ARG, "%s: %s space=%d must be PTO_MEM_BUFFER (1) or "
                    "PTO_MEM_COMM (2)", ctx, what, m->space);
}

int pto_kernel_validate(pto_rt *rt, const pto_task_desc *d, int64_t ndeps, const char *ctx)
{
    if (d->kernel < 0 || d->kernel >= PTO_K_COUNT)
        return pto_fail(PTO_E_INVALID_ARG, "%s: unknown kernel %d (known: 0..%d)", ctx,
                        d->kernel, PTO_K_COUNT - 1);
    const char *k = NAMES[d->kernel];
    if (d->ring < 0 || d->ring >= PTO_RINGS)
        return pto_fail(PTO_E_INVALID_ARG, "%s: %s: ring=%d must be in [0, %d]", ctx, k, d->ring,
                        PTO_RINGS - 1);
    if (d->heap_bytes > (1ULL << 40))
        return pto_fail(PTO_E_INVALID_ARG, "%s: %s: heap_bytes=%llu is absurd (> 1 TiB)", ctx, k,
                        (unsigned long long)d->heap_bytes);
    switch (d->kernel) {
    case PTO_K_SPIN:
        if (d->duration_us < 0 || d->duration_us > 3600LL * 1000000LL)
            return pto_fail(PTO_E_INVALID_ARG, "%s: spin: duration_us=%lld must be in [0, 3600 s]",
                            ctx, (long long)d->duration_us);
        break;
    case PTO_K_CRASH:
        if (d->mode != 0 && d->mode != 1)
            return pto_fail(PTO_E_INVALID_ARG, "%s: crash: mode=%d must be 0 (SIGSEGV) or 1 "
                            "(abort)", ctx, d->mode);
        break;
    case PTO_K_EVENT:
        if (ndeps)
            return pto_fail(PTO_E_INVALID_ARG, "%s: event: an event task takes no deps (it "
                            "completes when the host fires it)", ctx);
        break;
    case PTO_K_FILL:
    case PTO_K_ADD:
    case PTO_K_COPY: {
        if (d->count == 0 || d->count > (1ULL << 32))
            return pto_fail(PTO_E_INVALID_ARG, "%s: %s: count=%llu must be in [1, 2^32]", ctx, k,
                            (unsigned long long)d->count);
        int ops = operands(d->kernel);
        const pto_mref *m[3] = {&d->dst, &d->src0, &d->src1};
        static const char *const which[3] = {"dst", "src0", "src1"};
        for (int i = 0; i < 3; i++) {
            if (!(ops & (1 << i)))
                continue;
            char what[32];
            snprintf(what, sizeof what, "%s %s", k, which[i]);
            int st = check_mref(rt, ctx, what, m[i], d->count * 4, NULL);
            if (st != PTO_OK)
                return st;
        }
        break;
    }
    case PTO_K_NOTIFY:
    case PTO_K_WAIT: {
        if (d->kernel == PTO_K_NOTIFY && d->mode != PTO_NOTIFY_SET && d->mode != PTO_NOTIFY_ADD)
            return pto_fail(PTO_E_INVALID_ARG, "%s: notify: mode=%d must be PTO_NOTIFY_SET (0) "
                            "or PTO_NOTIFY_ADD (1)", ctx, d->mode);
        if (d->kernel == PTO_K_WAIT && (d->mode < PTO_CMP_EQ || d->mode > PTO_CMP_LT))
            return pto_fail(PTO_E_INVALID_ARG, "%s: wait: cmp=%d must be one of PTO_CMP_EQ..LT "
                            "(0..5)", ctx, d->mode);
        if (d->kernel == PTO_K_NOTIFY && d->peer < 0)
            return pto_fail(PTO_E_INVALID_ARG, "%s: notify: peer=%d must be >= 0", ctx, d->peer);
        if (rt->comm) {
            int size = 0;
            uint32_t nslots = 0;
            pto_comm_size(rt->comm, &size);
            pto_comm_nslots(rt->comm, &nslots);
            if (d->kernel == PTO_K_NOTIFY && d->peer >= size)
                return pto_fail(PTO_E_INVALID_ARG, "%s: notify: peer=%d outside the comm window "
                                "of %d ranks", ctx, d->peer, size);
            if (d->slot >= nslots)
                return pto_fail(PTO_E_INVALID_ARG, "%s: %s: slot=%u outside the comm window's "
                                "%u slots", ctx, k, d->slot, nslots);
            if (d->kernel == PTO_K_WAIT) {
                int rank = -1;
                pto_comm_rank(rt->comm, &rank);
                if (rank < 0)
                    return pto_fail(PTO_E_STATE, "%s: wait: the bound comm window is an "
                                    "observer (no local slots)", ctx);
            }
        }
        break;
    }
    default:
        break;
    }
    return PTO_OK;
}

int pto_kernel_resolve(pto_rt *rt, const pto_task_desc *d, void *out[3], int64_t task)
{
    out[0] = out[1] = out[2] = NULL;
    int ops = operands(d->kernel);
    const pto_mref *m[3] = {&d->dst, &d->src0, &d->src1};
    for (int i = 0; i < 3; i++) {
        if (!(ops & (1 << i)))
            continue;
        int st = check_mref(rt, "pto_rt_submit", pto_kernel_name(d->kernel), m[i], d->count * 4,
                            &out[i]);
        if (st != PTO_OK)
            return st;
    }
    (void)task;
    return PTO_OK;
}

/* Poll until `done` or the run stops; PTO_E_ABORTED when stopped. */
static int hang(pto_rt *rt)
{
    for (uint64_t n = 0;; n++) {
        if (!pto_run_live(rt))
            return PTO_E_ABORTED;
        pto_backoff(n, 1000000);
    }
}

int pto_kernel_exec(pto_rt *rt, pto_graph *g, uint32_t t)
{
    const pto_task_static *ts = &g->t[t];
    const pto_task_desc *d = ts->arg == UINT32_MAX ? NULL : &g->args[ts->arg];
    void *const *p = ts->arg == UINT32_MAX ? NULL : &g->rptr[3 * (uint64_t)ts->arg];
    switch (ts->kernel) {
    case PTO_K_NOOP:
    case PTO_K_TENSOR_WAIT: /* the orchestrator did the waiting */
        return PTO_OK;
    case PTO_K_SPIN: {
        int64_t end = pto_now_ns() + d->duration_us * 1000;
        while (pto_now_ns() < end) {
            if (!pto_run_live(rt))
                return PTO_E_ABORTED;
            for (int i = 0; i < 32; i++)
                pto_cpu_relax();
        }
        return PTO_OK;
    }
    case PTO_K_HANG:
        return hang(rt);
    case PTO_K_CRASH:
        if (d->mode == 1)
            abort();
        raise(SIGSEGV);
        return PTO_E_STATE; /* not reached unless SIGSEGV is ignored */
    case PTO_K_FILL: {
        float *dst = p[0];
        for (uint64_t i = 0; i < d->count; i++)
            dst[i] = d->value;
        return PTO_OK;
    }
    case PTO_K_COPY: {
        memmove(p[0], p[1], d->count * 4);
        return PTO_OK;
    }
    case PTO_K_ADD: {
        float *dst = p[0];
        const float *a = p[1], *b = p[2];
        for (uint64_t i = 0; i < d->count; i++)
            dst[i] = a[i] + b[i];
        return PTO_OK;
    }
    case PTO_K_NOTIFY:
        /* op-time latency model: the first notify of the run waits this run's delay */
        if (rt->notify_delay_ms > 0 &&
            atomic_exchange_explicit(&rt->notify_taken, 1, memory_order_acq_rel) == 0) {
            int64_t end = pto_now_ns() + rt->notify_delay_ms * 1000000LL;
            for (int64_t left; (left = end - pto_now_ns()) > 0;) {
                if (!pto_run_live(rt))
                    return PTO_E_ABORTED;
                pto_sleep_ns(left < 1000000 ? left : 1000000);
            }
        }
        return pto_comm_notify(rt->comm, d->peer, d->slot, d->signal, d->mode);
    case PTO_K_WAIT:
        for (uint64_t n = 0;; n++) {
            int ok = 0;
            int st = pto_comm_test(rt->comm, d->slot, d->mode, d->signal, &ok);
            if (st != PTO_OK)
                return st;
            if (ok)
                return PTO_OK;
            if (!pto_run_live(rt))
                return PTO_E_ABORTED;
            pto_backoff(n, 200000);
        }
    default:
        return PTO_E_INVALID_ARG;
    }
}
