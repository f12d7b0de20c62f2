/* Writing a whole output file (logits, a saved conversation) so that nothing
 * is lost and nothing half-written looks complete. */
#ifndef FM_APP_OUTPUT_FILE_H
#define FM_APP_OUTPUT_FILE_H

#include <stddef.h>

/* Writes n bytes to path. A regular file (or a new path; through a symlink,
 * the file it names) is written to PATH.tmp.PID, synced and renamed over it,
 * so a failure leaves the old file as it was. Anything else (a device such as
 * /dev/null or /dev/full, a FIFO, /dev/stdout) is written directly, never
 * replaced. Every write, sync and close error is reported. `what` names the
 * content in messages. 0 on success, else the exit code (message printed). */
int output_file_write(const char *path, const void *data, size_t n, const char *what);

#endif
