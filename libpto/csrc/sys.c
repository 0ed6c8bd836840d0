/* pto_sys: process-shared futex, pid liveness, shared-memory names (see pto_sys.h). */
#include "pto_sys.h"
#include "pto_status.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int pto_sys_futex_wait(void *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tsp = &ts;
    }
    if (syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, tsp, NULL, 0) == 0)
        return 0;
    return errno == EAGAIN ? 0 : errno;
}

void pto_sys_futex_wake_all(void *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int pto_sys_pid_alive(int pid)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno != EPERM)
        return 0;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* the command name in (...) may hold ')' itself */
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
        return 0;
    return 1;
}

int pto_sys_shm_path(const char *what, const char *name, const char *prefix, size_t max_len,
                     char *out, size_t cap)
{
    if (!name)
        return pto_fail(PTO_E_INVALID_ARG, "%s: must be a string, not NULL", what);
    const char *bare = name[0] == '/' ? name + 1 : name;
    size_t len = strlen(bare);
    if (len == 0 || len > max_len || len + 2 > cap)
        return pto_fail(PTO_E_INVALID_ARG, "%s '%s': must be 1..%zu characters", what, name,
                        max_len < cap - 2 ? max_len : cap - 2);
    if (prefix && strncmp(bare, prefix, strlen(prefix)) != 0)
        return pto_fail(PTO_E_INVALID_ARG, "%s '%s': must start with '%s'", what, name, prefix);
    if (strchr(bare, '/'))
        return pto_fail(PTO_E_INVALID_ARG,
                        "%s '%s': must be one path component (no '/' after the first character)",
                        what, name);
    for (const unsigned char *q = (const unsigned char *)bare; *q; q++)
        if (*q <= ' ' || *q == 0x7f)
            return pto_fail(PTO_E_INVALID_ARG, "%s: must not contain spaces or control characters",
                            what);
    snprintf(out, cap, "/%s", bare);
    return PTO_OK;
}

int pto_sys_shm_room(const char *what, int fd, uint64_t bytes)
{
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) != 0)
        return pto_fail(PTO_E_SYS, "%s: fstatvfs: %s", what, strerror(errno));
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (vfs.f_blocks != 0 && free_bytes < bytes) /* f_blocks 0: a filesystem without limits */
        return pto_fail(PTO_E_NOMEM, "%s: /dev/shm has %llu bytes free, the segment needs %llu "
                        "(a container's /dev/shm is often 64 MiB: raise it, e.g. docker run "
                        "--shm-size=1g)", what, (unsigned long long)free_bytes,
                        (unsigned long long)bytes);
    return PTO_OK;
}
