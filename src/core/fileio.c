/* Whole reads and writes, and the fault injector (see fileio.h). */
#include "core/fileio.h"

#include "core/error.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long fault_counter[2];
static atomic_long fault_nth[2];
static atomic_int fault_err[2];
static atomic_int env_read;

static void arm_from_env(void) {
    if (atomic_exchange(&env_read, 1)) return;
    const char *spec = getenv("FM_FAULT");
    if (!spec || !*spec) return;
    char kind[16] = "", what[16] = "";
    long nth = 0;
    if (sscanf(spec, "%15[a-z]:%ld:%15s", kind, &nth, what) != 3 || nth <= 0) return;
    int err = strcmp(what, "EIO") == 0 ? EIO : strcmp(what, "ENOSPC") == 0 ? ENOSPC : 0;
    fm_fault_arm(strcmp(kind, "write") == 0 ? FM_FAULT_WRITE : FM_FAULT_READ, nth, err);
}

void fm_fault_arm(fm_fault_kind kind, long nth, int err) {
    atomic_store(&env_read, 1);
    atomic_store(&fault_counter[kind], 0);
    atomic_store(&fault_err[kind], err);
    atomic_store(&fault_nth[kind], nth);
}

void fm_fault_disarm(void) {
    atomic_store(&env_read, 1);
    atomic_store(&fault_nth[FM_FAULT_READ], 0);
    atomic_store(&fault_nth[FM_FAULT_WRITE], 0);
}

long fm_fault_count(fm_fault_kind kind) { return atomic_load(&fault_counter[kind]); }

ssize_t fm_fault_check(fm_fault_kind kind, size_t n) {
    arm_from_env();
    long nth = atomic_load(&fault_nth[kind]);
    if (nth <= 0) return (ssize_t)n;
    if (atomic_fetch_add(&fault_counter[kind], 1) + 1 != nth) return (ssize_t)n;
    int err = atomic_load(&fault_err[kind]);
    return err ? -err : (ssize_t)(n / 2);
}

static const char *write_problem(int err) {
    return err == ENOSPC || err == EDQUOT ? "disk full" : strerror(err);
}

fm_status fm_pread_full(int fd, void *buf, size_t n, uint64_t offset, const char *path) {
    char *p = buf;
    size_t done = 0;
    int short_once = 0;
    while (done < n) {
        size_t want = n - done;
        ssize_t inject = short_once ? (ssize_t)want : fm_fault_check(FM_FAULT_READ, want);
        if (inject < 0) {
            return fm_error(FM_ERR_IO, "%s: read of %zu bytes at offset %llu failed: %s", path, want,
                            (unsigned long long)(offset + done), strerror((int)-inject));
        }
        ssize_t r;
        if ((size_t)inject < want) { /* injected short read, then end of file */
            r = pread(fd, p + done, (size_t)inject, (off_t)(offset + done));
            short_once = 1;
            if (r > 0) {
                done += (size_t)r;
                break;
            }
        } else {
            r = pread(fd, p + done, want, (off_t)(offset + done));
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            return fm_error(FM_ERR_IO, "%s: read of %zu bytes at offset %llu failed: %s", path, want,
                            (unsigned long long)(offset + done), strerror(errno));
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    if (done < n)
        return fm_error(FM_ERR_IO, "%s: file ends early: wanted %zu bytes at offset %llu, got %zu (truncated?)", path,
                        n, (unsigned long long)offset, done);
    return FM_OK;
}

static fm_status write_loop(int fd, const void *buf, size_t n, int64_t offset, const char *path) {
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        size_t want = n - done;
        ssize_t inject = fm_fault_check(FM_FAULT_WRITE, want);
        if (inject < 0) return fm_error(FM_ERR_IO, "%s: write failed: %s", path, write_problem((int)-inject));
        if ((size_t)inject < want) /* an injected short write behaves as a full disk on the retry */
            return fm_error(FM_ERR_IO, "%s: write failed: %s", path, write_problem(ENOSPC));
        ssize_t w = offset >= 0 ? pwrite(fd, p + done, want, (off_t)offset + (off_t)done) : write(fd, p + done, want);
        if (w < 0) {
            if (errno == EINTR) continue;
            return fm_error(FM_ERR_IO, "%s: write failed: %s", path, write_problem(errno));
        }
        if (w == 0) return fm_error(FM_ERR_IO, "%s: write failed: %s", path, write_problem(ENOSPC));
        done += (size_t)w;
    }
    return FM_OK;
}

fm_status fm_pwrite_full(int fd, const void *buf, size_t n, uint64_t offset, const char *path) {
    return write_loop(fd, buf, n, (int64_t)offset, path);
}

fm_status fm_write_full(int fd, const void *buf, size_t n, const char *path) { return write_loop(fd, buf, n, -1, path); }

fm_status fm_close_synced(int fd, const char *path) {
    int err = fsync(fd) != 0 ? errno : 0;
    if (close(fd) != 0 && !err) err = errno;
    if (err) return fm_error(FM_ERR_IO, "%s: %s", path, write_problem(err));
    return FM_OK;
}
