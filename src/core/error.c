/* Per-thread last-error message (see error.h). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char error_message[1024];

fm_status fm_error(fm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return status;
}

const char *fm_last_error(void) { return error_message[0] ? error_message : "no error"; }

const char *fm_status_name(fm_status status) {
    switch (status) {
    case FM_OK: return "ok";
    case FM_ERR_IO: return "I/O error";
    case FM_ERR_FORMAT: return "invalid file";
    case FM_ERR_UNSUPPORTED: return "unsupported";
    case FM_ERR_ARGUMENT: return "invalid argument";
    case FM_ERR_NOMEM: return "out of memory";
    case FM_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}
