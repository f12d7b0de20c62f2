/* The "shell" tool of flashmoe chat: the model asks to run a command, the user
 * confirms it (shell_confirm), the command runs under /bin/sh -c with limits
 * on time and kept output (shell_run), and the model receives the outcome as a
 * JSON object (shell_result_json).
 *
 * The command runs in its own process group with stdin from /dev/null, so it
 * can neither read the terminal's input nor receive the terminal's Ctrl-C; the
 * time limit (or limits.cancel) ends it, and with it every process it started
 * in the group. */
#ifndef FM_APP_SHELL_TOOL_H
#define FM_APP_SHELL_TOOL_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    size_t max_output;   /* bytes kept of stdout and of stderr each; 0 = 16384 */
    double timeout_s;    /* 0 (or negative, NaN) = 60 s; then the process group gets SIGTERM, 2 s later SIGKILL */
    const char *cwd;     /* NULL = current directory */
    /* Optional: when *cancel becomes nonzero (a SIGINT handler's flag) the
     * command is ended like at the time limit and r->cancelled is set. Checked
     * at least every 100 ms. NULL = none. */
    const volatile sig_atomic_t *cancel;
} shell_limits;

typedef struct {
    char *out, *err;             /* the first max_output bytes of each (malloc'd, NUL-terminated) */
    size_t out_len, err_len;     /* bytes kept in out / err (they may hold NUL bytes) */
    size_t out_total, err_total; /* bytes the command wrote (may exceed what was kept) */
    int exit_code;               /* exit status, or -1 if killed by a signal */
    int signal;                  /* the signal that ended it, 0 if none */
    int timed_out;               /* the time limit ended it */
    int cancelled;               /* limits.cancel ended it */
} shell_result;

/* Runs `command` with /bin/sh -c. 0 when it ran (whatever its exit status),
 * -1 with errno when it could not start (fork, pipes, cwd, /bin/sh missing);
 * then *r holds nothing to free (shell_result_free on it is harmless). */
int shell_run(const char *command, const shell_limits *limits, shell_result *r);
void shell_result_free(shell_result *r);

/* The text the model receives as the tool's result (malloc'd, NULL if out of
 * memory): {"exit_code":N,"stdout":"...","stderr":"..."} plus, when relevant,
 * "truncated":"stdout: kept X of Y bytes", "timed_out":true, "cancelled":true,
 * "signal":"SIGKILL". Always valid JSON and valid UTF-8: bytes of the output
 * that are not valid UTF-8 (and NUL bytes) become U+FFFD; a character cut in
 * two by truncation is dropped. */
char *shell_result_json(const shell_result *r);

/* The tool's definition in OpenAI function format (a static JSON string):
 * name "shell", parameters {"command": string, required}. */
const char *shell_tool_definition(void);

/* Shows `command` on `out` and asks whether to run it; reads one line from
 * `in`: "y" or "yes" (any case, surrounding blanks ignored) → 1, anything
 * else or EOF → 0. Bytes outside printable ASCII are shown as \xNN, so escape
 * sequences and control characters in the command cannot hide or rewrite what
 * is shown; a newline in the command starts a new shown line marked "> ". */
int shell_confirm(const char *command, FILE *in, FILE *out);

#endif
