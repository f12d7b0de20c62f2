/* The chat's shell tool: run a confirmed command with limits, report it as JSON.
 *
 * Running (shell_run): fork, then in the child: own process group, default
 * signal dispositions and an empty signal mask (ignored and blocked signals
 * survive exec, and a command whose `yes | head` cannot die of SIGPIPE, or
 * that cannot be stopped with SIGTERM, is not what the user confirmed),
 * stdin /dev/null, stdout and stderr to two pipes, exec /bin/sh -c. A third
 * close-on-exec pipe carries errno back if chdir or exec fails, so such
 * failures are "could not start" (-1) rather than an exit status.
 *
 * The parent drains both pipes with poll() (one could fill while we block on
 * the other), keeps the first max_output bytes of each and counts the rest.
 * The child's exit is watched without reaping it (waitid WNOWAIT, woken by a
 * pidfd where the kernel has one, else a 10 ms tick): while it is a zombie its
 * pid cannot be reused, so kill(-pid) always reaches its own group. Then:
 *   - time limit or cancel: SIGTERM (+ SIGCONT, for stopped members) to the
 *     group, SIGKILL 2 s later if the child still runs, and SIGKILL to the
 *     group once it has exited (nothing it started outlives a timeout);
 *   - child exited but the pipes stay open (a background process holds them):
 *     0.25 s more for late output, then stop reading and SIGKILL the group;
 *   - child exited and the pipes closed: done. Background processes that let
 *     go of the pipes (`server >log 2>&1 &`) keep running, as in a terminal.
 *
 * Signals of the parent: untouched. We never write to a pipe (stdin is
 * /dev/null, not a pipe), so SIGPIPE cannot reach us from here and needs no
 * ignoring. SIGCHLD must not be set to SIG_IGN by the caller (the kernel would
 * reap the child for us and its status would be lost: then exit_code is -1,
 * signal 0). */
#include "shell_tool.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_OUTPUT 16384
#define DEFAULT_TIMEOUT_S 60.0
#define KILL_AFTER_TERM_S 2.0 /* SIGTERM → SIGKILL */
#define EXIT_GRACE_S 0.25     /* child gone, pipes still open → stop reading */
#define TICK_MS 10            /* exit polling without a pidfd */
#define CANCEL_TICK_MS 100    /* how often limits.cancel is looked at */

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- the child ------------------------------------------------------------ */

/* Between fork and exec only async-signal-safe calls: the parent may have
 * threads (OpenMP) whose locks were copied mid-use. */
static _Noreturn void child_fail(int errfd) {
    int e = errno;
    ssize_t w;
    do w = write(errfd, &e, sizeof e);
    while (w < 0 && errno == EINTR);
    _exit(127);
}

static _Noreturn void run_child(const char *command, const char *cwd, int out_w, int err_w, int errfd) {
    setpgid(0, 0);

    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL); /* SIGKILL etc. fail harmlessly */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Move our pipe ends above 2 first: if the parent had closed its stdio,
     * they may be 0..2 themselves and the dup2s below would clobber them. */
    errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 3);
    if (errfd < 0) _exit(127);
    out_w = fcntl(out_w, F_DUPFD_CLOEXEC, 3);
    if (out_w < 0) child_fail(errfd);
    err_w = fcntl(err_w, F_DUPFD_CLOEXEC, 3);
    if (err_w < 0) child_fail(errfd);

    if (cwd && chdir(cwd) < 0) child_fail(errfd);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0) child_fail(errfd);
    if (null != 0) {
        if (dup2(null, 0) < 0) child_fail(errfd);
        close(null);
    }
    if (dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) child_fail(errfd);
    /* Descriptors the parent opened without O_CLOEXEC (model files, sockets)
     * should not leak into the command and whatever it leaves running. Best
     * effort: Linux ≥ 5.11. */
#ifdef SYS_close_range
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    child_fail(errfd);
}

/* ---- the parent ----------------------------------------------------------- */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap, max, total;
} stream;

/* Keeps what fits under s->max, counts everything. Out of memory: keeps no
 * more (the result says how much was kept). */
static void stream_add(stream *s, const char *p, size_t n) {
    s->total += n;
    size_t keep = s->max - s->len < n ? s->max - s->len : n;
    if (!keep) return;
    if (s->len + keep + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + keep + 1) cap *= 2;
        if (cap > s->max + 1) cap = s->max + 1;
        char *b = realloc(s->buf, cap);
        if (!b) {
            s->max = s->len;
            return;
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, keep);
    s->len += keep;
}

/* One read from a readable pipe; closes it at EOF or on an error. */
static void stream_read(stream *s) {
    char tmp[16384];
    ssize_t n = read(s->fd, tmp, sizeof tmp);
    if (n > 0) {
        stream_add(s, tmp, (size_t)n);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(s->fd);
        s->fd = -1;
    }
}

/* Has the child exited? Leaves it unreaped (WNOWAIT). ECHILD (someone else
 * reaped it) counts as exited. */
static int child_exited(pid_t pid) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc;
    do rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) return errno == ECHILD;
    return si.si_pid == pid;
}

static int pidfd_for(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0); /* close-on-exec by definition */
#else
    (void)pid;
    return -1;
#endif
}

/* Milliseconds until `t` (≥ 0, rounded up, capped). */
static int ms_until(double t, double now) {
    double ms = ceil((t - now) * 1000.0);
    if (!(ms > 0)) return 0;
    return ms > 3600e3 ? 3600000 : (int)ms;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

int shell_run(const char *command, const shell_limits *limits, shell_result *r) {
    shell_limits lim = {0};
    if (limits) lim = *limits;
    if (r) memset(r, 0, sizeof *r);
    if (!command || !r) {
        errno = EINVAL;
        return -1;
    }
    double timeout = lim.timeout_s > 0 ? lim.timeout_s : DEFAULT_TIMEOUT_S; /* NaN too */
    stream s[2] = {{.fd = -1, .max = lim.max_output ? lim.max_output : DEFAULT_MAX_OUTPUT},
                   {.fd = -1, .max = lim.max_output ? lim.max_output : DEFAULT_MAX_OUTPUT}};
    if (s[0].max > SIZE_MAX / 2) s[0].max = s[1].max = SIZE_MAX / 2; /* cap + 1 and doubling stay finite */

    int out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, exec_p[2] = {-1, -1};
    if (pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0 || pipe2(exec_p, O_CLOEXEC) < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            close_fd(&out_p[i]);
            close_fd(&err_p[i]);
            close_fd(&exec_p[i]);
        }
        errno = e;
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) run_child(command, lim.cwd, out_p[1], err_p[1], exec_p[1]);
    int fork_errno = errno;
    close_fd(&out_p[1]);
    close_fd(&err_p[1]);
    close_fd(&exec_p[1]);
    if (pid < 0) {
        close_fd(&out_p[0]);
        close_fd(&err_p[0]);
        close_fd(&exec_p[0]);
        errno = fork_errno;
        return -1;
    }
    setpgid(pid, pid); /* also here, so the group exists whichever runs first */

    /* EOF: exec succeeded (the pipe closed on exec); an int: the child's errno. */
    int child_errno = 0;
    ssize_t n;
    do n = read(exec_p[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close_fd(&exec_p[0]);
    if (n > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        close_fd(&out_p[0]);
        close_fd(&err_p[0]);
        errno = n == (ssize_t)sizeof child_errno && child_errno ? child_errno : ECHILD;
        return -1;
    }

    s[0].fd = out_p[0];
    s[1].fd = err_p[0];
    int pidfd = pidfd_for(pid);
    double start = now_s(), deadline = start + timeout, kill_at = 0, exit_at = 0;
    int exited = 0, stopping = 0, killed = 0;
    for (;;) {
        double t = now_s();
        if (!exited && child_exited(pid)) {
            exited = 1;
            exit_at = t;
        }
        if (exited && s[0].fd < 0 && s[1].fd < 0) break;

        double next = INFINITY;
        if (exited) {
            /* Something the command left running holds our pipes. */
            if (t >= exit_at + EXIT_GRACE_S) {
                kill(-pid, SIGKILL);
                break;
            }
            next = exit_at + EXIT_GRACE_S;
        } else if (!stopping) {
            int cancel = lim.cancel && *lim.cancel;
            if (cancel || t >= deadline) {
                stopping = 1;
                r->cancelled = cancel;
                r->timed_out = !cancel;
                kill(-pid, SIGTERM);
                kill(-pid, SIGCONT);
                kill_at = t + KILL_AFTER_TERM_S;
                next = kill_at;
            } else {
                next = deadline;
            }
        } else if (!killed) {
            if (t >= kill_at) {
                kill(-pid, SIGKILL);
                killed = 1;
            } else {
                next = kill_at;
            }
        }

        int wait_ms = next == INFINITY ? -1 : ms_until(next, t);
        if (!exited && pidfd < 0 && (wait_ms < 0 || wait_ms > TICK_MS)) wait_ms = TICK_MS;
        if (!exited && !stopping && lim.cancel && (wait_ms < 0 || wait_ms > CANCEL_TICK_MS))
            wait_ms = CANCEL_TICK_MS;
        struct pollfd p[3] = {
            {.fd = s[0].fd, .events = POLLIN},
            {.fd = s[1].fd, .events = POLLIN},
            {.fd = exited ? -1 : pidfd, .events = POLLIN},
        };
        int rc = poll(p, 3, wait_ms);
        if (rc < 0) {
            if (errno == EINTR) continue;
            /* Cannot wait for output any more: end it rather than spin. */
            kill(-pid, SIGKILL);
            killed = 1;
            break;
        }
        for (int i = 0; i < 2; i++)
            if (s[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) stream_read(&s[i]);
    }
    if (r->timed_out || r->cancelled) kill(-pid, SIGKILL); /* what the command started dies with it */
    close_fd(&s[0].fd);
    close_fd(&s[1].fd);
    close_fd(&pidfd);

    int st = 0;
    pid_t w;
    do w = waitpid(pid, &st, 0);
    while (w < 0 && errno == EINTR);
    if (w == pid && WIFEXITED(st)) {
        r->exit_code = WEXITSTATUS(st);
    } else {
        r->exit_code = -1;
        r->signal = w == pid && WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    }

    for (int i = 0; i < 2; i++) {
        if (!s[i].buf) s[i].buf = malloc(1);
        if (s[i].buf) s[i].buf[s[i].len] = 0;
    }
    r->out = s[0].buf;
    r->err = s[1].buf;
    r->out_len = r->out ? s[0].len : 0;
    r->err_len = r->err ? s[1].len : 0;
    r->out_total = s[0].total;
    r->err_total = s[1].total;
    return 0;
}

void shell_result_free(shell_result *r) {
    if (!r) return;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
    r->out_len = r->err_len = 0;
}

/* ---- JSON for the model --------------------------------------------------- */

/* The length of the valid UTF-8 character at s (n ≥ 1 bytes left), or 0 when
 * invalid; then *bad is the length of its maximal invalid prefix (≥ 1, one
 * U+FFFD each, as Unicode recommends) and *at_end whether it is a valid
 * beginning that the end of the input cut short. */
static size_t utf8_char(const unsigned char *s, size_t n, size_t *bad, int *at_end) {
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    *at_end = 0;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0; /* overlong */
        if (b == 0xED) hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90; /* overlong */
        if (b == 0xF4) hi = 0x8F; /* > U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    size_t k = 1;
    for (; k < need && k < n; k++) {
        if (s[k] < lo || s[k] > hi) break;
        lo = 0x80;
        hi = 0xBF;
    }
    if (k == need) return need;
    *bad = k;
    *at_end = k == n;
    return 0;
}

/* p[0..n) as valid UTF-8 without NUL bytes (malloc'd): invalid sequences and
 * NULs become U+FFFD; with `cut` (the output was truncated there) a character
 * the cut split is dropped instead. */
static char *valid_utf8(const char *p, size_t n, int cut) {
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    static const char repl[] = "\xEF\xBF\xBD";
    const unsigned char *s = (const unsigned char *)(p ? p : "");
    char *o = malloc(3 * n + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        size_t bad = 0;
        int at_end;
        size_t c = utf8_char(s + i, n - i, &bad, &at_end);
        if (c == 1 && s[i] == 0) {
            memcpy(q, repl, 3);
            q += 3;
            i++;
        } else if (c) {
            memcpy(q, s + i, c);
            q += c;
            i += c;
        } else if (cut && at_end) {
            break;
        } else {
            memcpy(q, repl, 3);
            q += 3;
            i += bad;
        }
    }
    *q = 0;
    return o;
}

static const char *signal_name(int sig, char *buf, size_t size) {
    static const struct {
        int sig;
        const char *name;
    } names[] = {
        {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
        {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
        {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
        {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGCHLD, "SIGCHLD"},
        {SIGCONT, "SIGCONT"}, {SIGSTOP, "SIGSTOP"}, {SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"},
        {SIGTTOU, "SIGTTOU"}, {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
        {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].sig == sig) return names[i].name;
    snprintf(buf, size, "signal %d", sig);
    return buf;
}

/* Adds a string made valid UTF-8; 0 on success. */
static int add_text(cJSON *o, const char *key, const char *p, size_t n, int cut) {
    char *t = valid_utf8(p, n, cut);
    if (!t) return -1;
    cJSON *item = cJSON_AddStringToObject(o, key, t);
    free(t);
    return item ? 0 : -1;
}

char *shell_result_json(const shell_result *r) {
    if (!r) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int out_cut = r->out_total > r->out_len, err_cut = r->err_total > r->err_len;
    int ok = cJSON_AddNumberToObject(o, "exit_code", r->exit_code) != NULL;
    ok = ok && add_text(o, "stdout", r->out, r->out ? r->out_len : 0, out_cut) == 0;
    ok = ok && add_text(o, "stderr", r->err, r->err ? r->err_len : 0, err_cut) == 0;
    if (ok && (out_cut || err_cut)) {
        char msg[160];
        int m = 0;
        if (out_cut) m = snprintf(msg, sizeof msg, "stdout: kept %zu of %zu bytes", r->out_len, r->out_total);
        if (err_cut)
            snprintf(msg + m, sizeof msg - (size_t)m, "%sstderr: kept %zu of %zu bytes", m ? "; " : "", r->err_len,
                     r->err_total);
        ok = cJSON_AddStringToObject(o, "truncated", msg) != NULL;
    }
    if (ok && r->timed_out) ok = cJSON_AddTrueToObject(o, "timed_out") != NULL;
    if (ok && r->cancelled) ok = cJSON_AddTrueToObject(o, "cancelled") != NULL;
    if (ok && r->signal) {
        char buf[32];
        ok = cJSON_AddStringToObject(o, "signal", signal_name(r->signal, buf, sizeof buf)) != NULL;
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

const char *shell_tool_definition(void) {
    return "{\"type\":\"function\",\"function\":{\"name\":\"shell\","
           "\"description\":\"Runs a POSIX shell command (/bin/sh -c) on the user's machine, after the user "
           "confirms it. Returns a JSON object with exit_code, stdout and stderr; long output is truncated and "
           "the command is stopped after a time limit. stdin is empty, so the command cannot be interactive.\","
           "\"parameters\":{\"type\":\"object\",\"properties\":{\"command\":{\"type\":\"string\","
           "\"description\":\"The shell command line to run, for example: ls -la\"}},"
           "\"required\":[\"command\"]}}}";
}

/* ---- confirmation --------------------------------------------------------- */

int shell_confirm(const char *command, FILE *in, FILE *out) {
    if (!command || !in || !out) return 0;
    fputs("\nThe model wants to run this shell command:\n  $ ", out);
    for (const unsigned char *p = (const unsigned char *)command; *p; p++) {
        if (*p == '\n')
            fputs("\n  > ", out); /* marked, so the command cannot fake lines of ours */
        else if (*p >= 0x20 && *p < 0x7F)
            fputc(*p, out);
        else
            fprintf(out, "\\x%02x", *p); /* ESC, CR, tabs, C1 controls, any non-ASCII */
    }
    fputs("\nRun it? [y/N] ", out);
    fflush(out);

    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, in);
    int yes = 0;
    if (n < 0) {
        fputc('\n', out); /* EOF: finish the prompt's line */
        fflush(out);
    } else {
        char *a = line, *b = line + n;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        *b = 0;
        yes = strcasecmp(a, "y") == 0 || strcasecmp(a, "yes") == 0;
    }
    free(line);
    return yes;
}
