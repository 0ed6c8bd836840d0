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

/* Every function below is generated from the X-macros of pto_status.h: a code is named and
 * enumerated exactly as it is declared. */
#define STATUS_CASE(name, value, meaning) case PTO_##name: return "PTO_" #name;
#define ERROR_CASE(name, value) case PTO_ERR_##name: return #name;
#define STALL_CASE(name, value, short_name) case PTO_STALL_##name: return short_name;

const char *pto_strerror(int status)
{
    switch (status) {
    PTO_STATUS_MAP(STATUS_CASE)
    default: return "UNKNOWN";
    }
}

const char *pto_error_name(int code)
{
    switch (code) {
    PTO_ERROR_MAP(ERROR_CASE)
    default: return "UNKNOWN";
    }
}

const char *pto_stall_name(int sub_class)
{
    switch (sub_class) {
    PTO_STALL_MAP(STALL_CASE)
    default: return "UNKNOWN";
    }
}

struct code_entry {
    int value;
    const char *name;
};

#define STATUS_ENTRY(name, value, meaning) {PTO_##name, "PTO_" #name},
#define ERROR_ENTRY(name, value) {PTO_ERR_##name, #name},
#define STALL_ENTRY(name, value, short_name) {PTO_STALL_##name, short_name},

static const struct code_entry status_table[] = {PTO_STATUS_MAP(STATUS_ENTRY)};
static const struct code_entry error_table[] = {PTO_ERROR_MAP(ERROR_ENTRY)};
static const struct code_entry stall_table[] = {PTO_STALL_MAP(STALL_ENTRY)};

static int entry_at(const struct code_entry *table, int n, int i, int *value, const char **name)
{
    if (i < 0 || i >= n || !value || !name)
        return 0;
    *value = table[i].value;
    *name = table[i].name;
    return 1;
}

#define N_OF(table) ((int)(sizeof(table) / sizeof((table)[0])))

int pto_status_at(int i, int *value, const char **name)
{
    return entry_at(status_table, N_OF(status_table), i, value, name);
}

int pto_error_code_at(int i, int *value, const char **name)
{
    return entry_at(error_table, N_OF(error_table), i, value, name);
}

int pto_stall_at(int i, int *value, const char **name)
{
    return entry_at(stall_table, N_OF(stall_table), i, value, name);
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
