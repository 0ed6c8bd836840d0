/* Status and error-code names, and the per-thread detail text of the last failure. */
#include "pto_status.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* The detail text lives in a heap buffer per thread, found through a pthread key, NOT in a
 * `__thread` array: this file is part of a dlopen'ed extension module, where `__thread` data is
 * glibc's *dynamic* TLS, allocated lazily by __tls_get_addr and freed by glibc at thread exit
 * with no synchronisation ThreadSanitizer can see -- TSan reported that free as a race when a
 * runtime thread (pto_rt_fire_event) exited while another reused the block. The initial-exec
 * TLS model would avoid the dynamic block but a 1 KiB buffer does not fit glibc's small static
 * TLS surplus for dlopen'ed modules. malloc/free and pthread keys are all visible to TSan. */
#define LAST_ERROR_BYTES 1024

static pthread_key_t last_error_key;
static pthread_once_t last_error_once = PTHREAD_ONCE_INIT;
static int last_error_key_ok;

static void last_error_key_init(void)
{
    last_error_key_ok = pthread_key_create(&last_error_key, free) == 0;
}

/* This thread's buffer; created on first use when `create`, else NULL if none yet. */
static char *last_error_buf(int create)
{
    pthread_once(&last_error_once, last_error_key_init);
    if (!last_error_key_ok)
        return NULL;
    char *buf = pthread_getspecific(last_error_key);
    if (buf == NULL && create) {
        buf = calloc(1, LAST_ERROR_BYTES);
        if (buf != NULL && pthread_setspecific(last_error_key, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

const char *pto_strerror(int status)
{
    switch (status) {
    case PTO_OK: return "PTO_OK";
    case PTO_E_INVALID_ARG: return "PTO_E_INVALID_ARG";
    case PTO_E_CONFIG: return "PTO_E_CONFIG";
    case PTO_E_NOMEM: return "PTO_E_NOMEM";
    case PTO_E_STATE: return "PTO_E_STATE";
    case PTO_E_TIMEOUT: return "PTO_E_TIMEOUT";
    case PTO_E_STREAM_SYNC_TIMEOUT: return "PTO_E_STREAM_SYNC_TIMEOUT";
    case PTO_E_ORCH: return "PTO_E_ORCH";
    case PTO_E_SCHED: return "PTO_E_SCHED";
    case PTO_E_SYS: return "PTO_E_SYS";
    case PTO_E_NOT_FOUND: return "PTO_E_NOT_FOUND";
    case PTO_E_EXISTS: return "PTO_E_EXISTS";
    case PTO_E_PEER_DEAD: return "PTO_E_PEER_DEAD";
    case PTO_E_ABORTED: return "PTO_E_ABORTED";
    case PTO_E_RANGE: return "PTO_E_RANGE";
    default: return "UNKNOWN";
    }
}

const char *pto_error_name(int code)
{
    switch (code) {
    case PTO_ERR_NONE: return "NONE";
    case PTO_ERR_SCOPE_DEADLOCK: return "SCOPE_DEADLOCK";
    case PTO_ERR_HEAP_RING_DEADLOCK: return "HEAP_RING_DEADLOCK";
    case PTO_ERR_FLOW_CONTROL_DEADLOCK: return "FLOW_CONTROL_DEADLOCK";
    case PTO_ERR_DEP_POOL_OVERFLOW: return "DEP_POOL_OVERFLOW";
    case PTO_ERR_INVALID_ARGS: return "INVALID_ARGS";
    case PTO_ERR_REQUIRE_SYNC_START_INVALID: return "REQUIRE_SYNC_START_INVALID";
    case PTO_ERR_TENSOR_WAIT_TIMEOUT: return "TENSOR_WAIT_TIMEOUT";
    case PTO_ERR_EXPLICIT_ORCH_FATAL: return "EXPLICIT_ORCH_FATAL";
    case PTO_ERR_SCOPE_TASKS_OVERFLOW: return "SCOPE_TASKS_OVERFLOW";
    case PTO_ERR_TENSORMAP_OVERFLOW: return "TENSORMAP_OVERFLOW";
    case PTO_ERR_SCHEDULER_TIMEOUT: return "SCHEDULER_TIMEOUT";
    case PTO_ERR_ASYNC_COMPLETION_INVALID: return "ASYNC_COMPLETION_INVALID";
    case PTO_ERR_ASYNC_WAIT_OVERFLOW: return "ASYNC_WAIT_OVERFLOW";
    case PTO_ERR_ASYNC_REGISTRATION_FAILED: return "ASYNC_REGISTRATION_FAILED";
    case PTO_ERR_READY_QUEUE_OVERFLOW: return "READY_QUEUE_OVERFLOW";
    case PTO_ERR_SIM_HEAP_COMMIT_FAILED: return "SIM_HEAP_COMMIT_FAILED";
    case PTO_ERR_SIM_KERNEL_FAILED: return "SIM_KERNEL_FAILED";
    default: return "UNKNOWN";
    }
}

const char *pto_stall_name(int sub_class)
{
    switch (sub_class) {
    case PTO_STALL_NONE: return "NONE";
    case PTO_STALL_S1_RUNNING_STALLED: return "S1";
    case PTO_STALL_S3_READY_ALL_IDLE: return "S3";
    case PTO_STALL_S4_DEP_DEADLOCK: return "S4";
    case PTO_STALL_S5_ORCH_STARVATION: return "S5";
    default: return "UNKNOWN";
    }
}

const char *pto_last_error(void)
{
    const char *buf = last_error_buf(0);
    return buf != NULL ? buf : "";
}

void pto_clear_error(void)
{
    char *buf = last_error_buf(0);
    if (buf != NULL)
        buf[0] = '\0';
}

int pto_fail(int status, const char *fmt, ...)
{
    char *buf = last_error_buf(1);
    if (buf == NULL)
        return status; /* no memory for the detail text: the status still says what failed */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, LAST_ERROR_BYTES, fmt, ap);
    va_end(ap);
    return status;
}
