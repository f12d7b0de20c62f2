/* Whole reads and writes with errors that name the file, and a fault
 * injector for tests. Every read or write of model data (packed experts,
 * converter output) goes through here, so a short read, an I/O error or a
 * full disk is reported the same way everywhere and can be provoked on
 * demand. */
#ifndef FM_CORE_FILEIO_H
#define FM_CORE_FILEIO_H

#include "flashmoe.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads exactly n bytes at offset (retrying short reads and EINTR). Fails with
 * FM_ERR_IO naming `path` on an error or on end of file before n bytes. */
fm_status fm_pread_full(int fd, void *buf, size_t n, uint64_t offset, const char *path);
/* Writes exactly n bytes at offset / at the current position. ENOSPC and EDQUOT
 * are reported as a full disk. */
fm_status fm_pwrite_full(int fd, const void *buf, size_t n, uint64_t offset, const char *path);
fm_status fm_write_full(int fd, const void *buf, size_t n, const char *path);
/* fsync, then close; reports either failing. */
fm_status fm_close_synced(int fd, const char *path);

/* ---- fault injection (tests) ----
 * The n-th call (counting from 1, across threads) of the given kind fails:
 * with errno `err` (e.g. EIO, ENOSPC), or, when err is 0, returns only half
 * the bytes asked for and then end of file (a short read/write).
 * FM_FAULT_OFF (n = 0) disarms. Also armed from the environment:
 * FM_FAULT="read:N:EIO" | "write:N:ENOSPC" | "read:N:short". */
typedef enum { FM_FAULT_READ, FM_FAULT_WRITE } fm_fault_kind;
void fm_fault_arm(fm_fault_kind kind, long nth, int err);
void fm_fault_disarm(void);
/* Calls of `kind` counted since it was last armed (tests size their faults with it). */
long fm_fault_count(fm_fault_kind kind);
/* Called by the I/O paths that do not use fm_pread_full (io_uring): returns
 * the injected result for a transfer of n bytes (-errno, a short count), or n
 * when no fault fires. */
ssize_t fm_fault_check(fm_fault_kind kind, size_t n);

#endif
