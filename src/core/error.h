/* Error reporting for the library: functions return fm_status and record one
 * message (per thread) that names the file or tensor and the problem.
 * Only app/ prints it and exits. */
#ifndef FM_CORE_ERROR_H
#define FM_CORE_ERROR_H

#include "flashmoe.h"

#if defined(__GNUC__)
#define FM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FM_PRINTF(a, b)
#endif

/* Records the message and returns `status`, so callers can write
 * `return fm_error(FM_ERR_FORMAT, "%s: bad header", path);`. */
fm_status fm_error(fm_status status, const char *fmt, ...) FM_PRINTF(2, 3);

#endif
