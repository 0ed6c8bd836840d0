/* Task graphs of the sim chip: building them (pto_graph_add / _add_many, validated task by
 * task), their dependency edges in CSR form, and the per-run state pto_rt_submit prepares
 * (pto_graph_prepare). The graph is the host's; the runtime threads only read it during a run.
 */
#include "pto_runtime_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pto_graph_create(pto_rt *rt, pto_graph **out)
{
    if (!rt || !out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_create: %s is NULL", rt ? "out" : "rt");
    pto_graph *g = calloc(1, sizeof *g);
    if (!g)
        return pto_fail(PTO_E_NOMEM, "pto_graph_create");
    g->rt = rt;
    pthread_mutex_lock(&rt->api);
    g->gnext = rt->graphs;
    if (rt->graphs)
        rt->graphs->gprev = g;
    rt->graphs = g;
    pthread_mutex_unlock(&rt->api);
    *out = g;
    return PTO_OK;
}

static void free_run_state(pto_graph *g)
{
    free(g->fanin_left);
    free(g->consumers_left);
    free(g->state);
    free(g->heap_end);
    g->fanin_left = g->consumers_left = NULL;
    g->state = NULL;
    g->heap_end = NULL;
    g->run_cap = 0;
}

int pto_graph_destroy(pto_graph *g)
{
    if (!g)
        return PTO_OK;
    pto_rt *rt = g->rt;
    pthread_mutex_lock(&rt->api);
    int busy = g->submitted;
    if (!busy) {
        if (g->gprev)
            g->gprev->gnext = g->gnext;
        else
            rt->graphs = g->gnext;
        if (g->gnext)
            g->gnext->gprev = g->gprev;
    }
    int broken = rt->broken;
    pthread_mutex_unlock(&rt->api);
    if (busy && broken)
        return pto_fail(PTO_E_STATE, "pto_graph_destroy: runtime threads did not stop after "
                        "running this graph; close the runtime (it frees the graph)");
    if (busy)
        return pto_fail(PTO_E_STATE, "pto_graph_destroy: the graph is submitted; sync first");
    pto_graph_free(g);
    return PTO_OK;
}

void pto_graph_free(pto_graph *g)
{
    free(g->t);
    free(g->fanin);
    free(g->args);
    free_run_state(g);
    free(g->fo_off);
    free(g->fanout);
    free(g->rptr);
    free(g);
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    int64_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np)
        return 0;
    *p = np;
    *cap = nc;
    return 1;
}

static int add_common(pto_graph *g, const pto_task_desc *d, int64_t n, const char *fn,
                      int64_t extra_edges)
{
    if (g->submitted)
        return pto_fail(PTO_E_STATE, "%s: the graph is submitted; sync first", fn);
    if (g->n + n > PTO_MAX_GRAPH_TASKS)
        return pto_fail(PTO_E_RANGE, "%s: a graph holds at most %d tasks", fn,
                        PTO_MAX_GRAPH_TASKS);
    if (!grow((void **)&g->t, &g->cap, g->n + n, sizeof *g->t) ||
        !grow((void **)&g->fanin, &g->edges_cap, g->nedges + extra_edges, sizeof *g->fanin) ||
        !grow((void **)&g->args, &g->args_cap, g->nargs + 1, sizeof *g->args))
        return pto_fail(PTO_E_NOMEM, "%s: growing the graph", fn);
    (void)d;
    return PTO_OK;
}

static uint32_t store_arg(pto_graph *g, const pto_task_desc *d)
{
    if (d->kernel == PTO_K_NOOP || d->kernel == PTO_K_HANG || d->kernel == PTO_K_EVENT ||
        d->kernel == PTO_K_TENSOR_WAIT)
        return UINT32_MAX;
    g->args[g->nargs] = *d;
    if (d->kernel == PTO_K_NOTIFY || d->kernel == PTO_K_WAIT || d->dst.space == PTO_MEM_COMM ||
        d->src0.space == PTO_MEM_COMM || d->src1.space == PTO_MEM_COMM)
        g->has_comm = 1;
    return (uint32_t)g->nargs++;
}

int pto_graph_add(pto_graph *g, const pto_task_desc *d, const int64_t *deps, int64_t ndeps,
                  int64_t *out_id)
{
    if (!g || !d)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_add: %s is NULL", g ? "desc" : "graph");
    if (ndeps < 0 || ndeps > 0x7fffffff || (ndeps && !deps))
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_add: ndeps=%lld invalid (deps %s)",
                        (long long)ndeps, deps ? "given" : "NULL");
    pto_rt *rt = g->rt;
    pthread_mutex_lock(&rt->api);
    int st = pto_kernel_validate(rt, d, ndeps, "pto_graph_add");
    for (int64_t i = 0; st == PTO_OK && i < ndeps; i++)
        if (deps[i] < 0 || deps[i] >= g->n)
            st = pto_fail(PTO_E_INVALID_ARG, "pto_graph_add: deps[%lld]=%lld is not a task of "
                          "this graph (ids so far: 0..%lld)", (long long)i, (long long)deps[i],
                          (long long)g->n - 1);
    if (st == PTO_OK)
        st = add_common(g, d, 1, "pto_graph_add", ndeps);
    if (st == PTO_OK) {
        pto_task_static *ts = &g->t[g->n];
        memset(ts, 0, sizeof *ts);
        ts->kernel = (uint8_t)d->kernel;
        ts->ring = (uint8_t)d->ring;
        ts->heap_bytes = d->heap_bytes;
        ts->nfanin = (uint32_t)ndeps;
        ts->fanin_off = (uint64_t)g->nedges;
        for (int64_t i = 0; i < ndeps; i++)
            g->fanin[g->nedges++] = (uint32_t)deps[i];
        ts->arg = store_arg(g, d);
        if (out_id)
            *out_id = g->n;
        g->n++;
        g->csr_valid = 0;
    }
    pthread_mutex_unlock(&rt->api);
    return st;
}

int pto_graph_add_many(pto_graph *g, const pto_task_desc *d, int64_t n, int32_t mode, int64_t dep,
                       int64_t *first_id)
{
    if (!g || !d)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_add_many: %s is NULL",
                        g ? "desc" : "graph");
    if (n < 1 || n > PTO_MAX_GRAPH_TASKS)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_add_many: n=%lld must be in [1, %d]",
                        (long long)n, PTO_MAX_GRAPH_TASKS);
    if (mode < PTO_MANY_INDEPENDENT || mode > PTO_MANY_FANOUT)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_add_many: mode=%d must be 0 (independent),"
                        " 1 (chain) or 2 (fan-out)", mode);
    if (d->kernel == PTO_K_EVENT)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_add_many: event tasks are added one by one");
    pto_rt *rt = g->rt;
    pthread_mutex_lock(&rt->api);
    int st = pto_kernel_validate(rt, d, mode == PTO_MANY_INDEPENDENT ? 0 : 1,
                                 "pto_graph_add_many");
    if (st == PTO_OK && mode == PTO_MANY_FANOUT && (dep < 0 || dep >= g->n))
        st = pto_fail(PTO_E_INVALID_ARG, "pto_graph_add_many: dep=%lld is not a task of this "
                      "graph (ids so far: 0..%lld)", (long long)dep, (long long)g->n - 1);
    int64_t edges = mode == PTO_MANY_INDEPENDENT ? 0 : (mode == PTO_MANY_CHAIN ? n - 1 : n);
    if (st == PTO_OK)
        st = add_common(g, d, n, "pto_graph_add_many", edges);
    if (st == PTO_OK) {
        uint32_t arg = store_arg(g, d);
        int64_t first = g->n;
        for (int64_t i = 0; i < n; i++) {
            pto_task_static *ts = &g->t[g->n];
            memset(ts, 0, sizeof *ts);
            ts->kernel = (uint8_t)d->kernel;
            ts->ring = (uint8_t)d->ring;
            ts->heap_bytes = d->heap_bytes;
            ts->arg = arg;
            ts->fanin_off = (uint64_t)g->nedges;
            if (mode == PTO_MANY_CHAIN && i > 0) {
                ts->nfanin = 1;
                g->fanin[g->nedges++] = (uint32_t)(g->n - 1);
            } else if (mode == PTO_MANY_FANOUT) {
                ts->nfanin = 1;
                g->fanin[g->nedges++] = (uint32_t)dep;
            }
            g->n++;
        }
        g->csr_valid = 0;
        if (first_id)
            *first_id = first;
    }
    pthread_mutex_unlock(&rt->api);
    return st;
}

int pto_graph_size(const pto_graph *g, int64_t *out)
{
    if (!g || !out)
        return pto_fail(PTO_E_INVALID_ARG, "pto_graph_size: %s is NULL", g ? "out" : "graph");
    pthread_mutex_lock(&g->rt->api); /* pto_graph_add may grow it in another thread */
    *out = g->n;
    pthread_mutex_unlock(&g->rt->api);
    return PTO_OK;
}

static int build_csr(pto_graph *g)
{
    if (g->csr_valid)
        return PTO_OK;
    free(g->fo_off);
    free(g->fanout);
    g->fo_off = calloc((size_t)g->n + 1, sizeof *g->fo_off);
    g->fanout = malloc(((size_t)g->nedges + 1) * sizeof *g->fanout);
    if (!g->fo_off || !g->fanout)
        return pto_fail(PTO_E_NOMEM, "pto_rt_submit: fanout lists of %lld edges",
                        (long long)g->nedges);
    for (int64_t e = 0; e < g->nedges; e++)
        g->fo_off[g->fanin[e] + 1]++;
    for (int64_t i = 0; i < g->n; i++)
        g->fo_off[i + 1] += g->fo_off[i];
    uint64_t *fill = malloc(((size_t)g->n + 1) * sizeof *fill);
    if (!fill)
        return pto_fail(PTO_E_NOMEM, "pto_rt_submit: fanout lists");
    memcpy(fill, g->fo_off, ((size_t)g->n + 1) * sizeof *fill);
    for (int64_t c = 0; c < g->n; c++) /* consumers in increasing order: lists come sorted */
        for (uint32_t i = 0; i < g->t[c].nfanin; i++)
            g->fanout[fill[g->fanin[g->t[c].fanin_off + i]]++] = (uint32_t)c;
    free(fill);
    g->csr_valid = 1;
    return PTO_OK;
}

int pto_graph_prepare(pto_rt *rt, pto_graph *g)
{
    int st = build_csr(g);
    if (st != PTO_OK)
        return st;
    if (g->run_cap < g->n) {
        free_run_state(g);
        size_t n = (size_t)g->n;
        g->fanin_left = malloc(n * sizeof *g->fanin_left);
        g->consumers_left = malloc(n * sizeof *g->consumers_left);
        g->state = malloc(n * sizeof *g->state);
        g->heap_end = malloc(n * sizeof *g->heap_end);
        if (!g->fanin_left || !g->consumers_left || !g->state || !g->heap_end) {
            free_run_state(g);
            return pto_fail(PTO_E_NOMEM, "pto_rt_submit: run state of %lld tasks",
                            (long long)g->n);
        }
        g->run_cap = g->n;
    }
    if (g->has_comm && !rt->comm)
        return pto_fail(PTO_E_STATE, "pto_rt_submit: the graph uses the comm window "
                        "(notify/wait or comm operands) but no comm window is bound "
                        "(pto_rt_bind_comm)");
    if (!grow((void **)&g->rptr, &g->rptr_cap, 3 * g->nargs, sizeof *g->rptr))
        return pto_fail(PTO_E_NOMEM, "pto_rt_submit: operands");
    /* An operand that no longer resolves (a freed buffer, a comm operand outside the window
     * bound now) is an orchestration-time argument error: the orchestrator latches
     * INVALID_ARGS when it reaches the first task using it. Args come in task order. */
    rt->bad_arg = -1;
    rt->bad_arg_msg[0] = '\0';
    for (int64_t a = 0; a < g->nargs; a++) {
        st = pto_kernel_validate(rt, &g->args[a], 0, "pto_rt_submit");
        if (st == PTO_OK)
            st = pto_kernel_resolve(rt, &g->args[a], &g->rptr[3 * a], -1);
        if ((st == PTO_E_INVALID_ARG || st == PTO_E_RANGE) && rt->bad_arg < 0) {
            rt->bad_arg = a;
            snprintf(rt->bad_arg_msg, sizeof rt->bad_arg_msg, "%s", pto_last_error());
            pto_clear_error();
            continue;
        }
        if (st != PTO_OK && st != PTO_E_INVALID_ARG && st != PTO_E_RANGE)
            return st;
    }
    for (int64_t i = 0; i < g->n; i++) {
        int32_t extra = g->t[i].kernel == PTO_K_EVENT ? 2 : 1; /* publish (+ fire) */
        atomic_store_explicit(&g->fanin_left[i], (int32_t)g->t[i].nfanin + extra,
                              memory_order_relaxed);
        atomic_store_explicit(&g->consumers_left[i],
                              (int32_t)(g->fo_off[i + 1] - g->fo_off[i]) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&g->state[i], PTO_TS_PENDING, memory_order_relaxed);
    }
    return pto_q_reserve(&rt->q, (uint64_t)g->n);
}
