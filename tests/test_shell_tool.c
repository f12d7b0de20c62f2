/* The chat's shell tool (app/shell_tool.c):
 *   - stdout and stderr captured separately; exit codes; death by a signal;
 *     command not found (127); stdin is /dev/null
 *   - truncation: 1,000,000 bytes with max_output 1000 → 1000 kept, total
 *     counted; both pipes flooded at once do not deadlock
 *   - time limit: sleep 10 with 0.5 s ends in < 3 s by SIGTERM; a command
 *     ignoring SIGTERM gets SIGKILL 2 s later; background members die too
 *   - cancel flag ends the command like the time limit
 *   - a background child holding stdout (sleep 30 &) neither hangs us nor
 *     survives; a background child that let go of the pipes is left running
 *   - binary and invalid UTF-8 output → JSON that parses back and is valid
 *     UTF-8 (U+FFFD for bad bytes and NULs, a character cut by truncation
 *     dropped); extra fields ("truncated", "timed_out", "signal")
 *   - the parent ignoring SIGPIPE does not leak into the command
 *   - cwd honoured; a missing cwd → -1 ENOENT
 *   - shell_confirm: y / yes / n / empty / EOF; escape sequences shown as \xNN
 *   - the tool definition parses and names the "command" parameter */
#include "test_util.h"

#include "shell_tool.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void run_ok(const char *cmd, const shell_limits *lim, shell_result *r) {
    if (shell_run(cmd, lim, r) != 0) fail_msg("shell_run(%s): %s", cmd, strerror(errno));
    assert_non_null(r->out);
    assert_non_null(r->err);
}

/* The JSON of r, parsed back (and checked to be valid UTF-8). */
static int valid_utf8(const unsigned char *s) {
    while (*s) {
        int n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 ? 2 : (*s & 0xF0) == 0xE0 ? 3 : (*s & 0xF8) == 0xF0 ? 4 : 0;
        if (!n || (n == 2 && *s < 0xC2)) return 0;
        unsigned cp = n == 1 ? *s : n == 2 ? *s & 0x1F : n == 3 ? *s & 0x0F : *s & 0x07;
        for (int i = 1; i < n; i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        s += n;
    }
    return 1;
}

static cJSON *result_json(const shell_result *r) {
    char *text = shell_result_json(r);
    assert_non_null(text);
    if (!valid_utf8((const unsigned char *)text)) fail_msg("not valid UTF-8: %s", text);
    cJSON *j = cJSON_Parse(text);
    if (!j) fail_msg("not valid JSON: %s", text);
    free(text);
    return j;
}

static const char *json_str(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A process is gone (or a zombie, waiting for its reaper). */
static int process_gone(long pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && (p[2] == 'Z' || p[2] == 'X');
}

static int wait_gone(long pid, double seconds) {
    double end = now_s() + seconds;
    while (!process_gone(pid)) {
        if (now_s() > end) return 0;
        usleep(10000);
    }
    return 1;
}

/* ---- running ------------------------------------------------------------ */

static void test_stdout_stderr(void **state) {
    (void)state;
    shell_result r;
    run_ok("echo hello; echo oops >&2; echo world", NULL, &r);
    assert_string_equal(r.out, "hello\nworld\n");
    assert_string_equal(r.err, "oops\n");
    assert_int_equal(r.out_total, 12);
    assert_int_equal(r.out_len, 12);
    assert_int_equal(r.err_total, 5);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.signal, 0);
    assert_int_equal(r.timed_out, 0);

    cJSON *j = result_json(&r);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(j, "exit_code")->valuedouble, 0);
    assert_string_equal(json_str(j, "stdout"), "hello\nworld\n");
    assert_string_equal(json_str(j, "stderr"), "oops\n");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "truncated"));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "timed_out"));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "signal"));
    cJSON_Delete(j);
    shell_result_free(&r);

    /* stdin is /dev/null: cat ends at once. */
    run_ok("cat; echo done", NULL, &r);
    assert_string_equal(r.out, "done\n");
    shell_result_free(&r);
}

static void test_exit_codes(void **state) {
    (void)state;
    shell_result r;
    run_ok("exit 3", NULL, &r);
    assert_int_equal(r.exit_code, 3);
    assert_int_equal(r.signal, 0);
    cJSON *j = result_json(&r);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(j, "exit_code")->valuedouble, 3);
    cJSON_Delete(j);
    shell_result_free(&r);

    run_ok("false", NULL, &r);
    assert_int_equal(r.exit_code, 1);
    shell_result_free(&r);

    run_ok("no_such_command_fm_xyz", NULL, &r);
    assert_int_equal(r.exit_code, 127);
    assert_non_null(strstr(r.err, "not found"));
    shell_result_free(&r);
}

static void test_signal(void **state) {
    (void)state;
    shell_result r;
    run_ok("echo before; kill -9 $$; echo after", NULL, &r);
    assert_string_equal(r.out, "before\n");
    assert_int_equal(r.exit_code, -1);
    assert_int_equal(r.signal, SIGKILL);
    assert_int_equal(r.timed_out, 0);
    cJSON *j = result_json(&r);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(j, "exit_code")->valuedouble, -1);
    assert_string_equal(json_str(j, "signal"), "SIGKILL");
    cJSON_Delete(j);
    shell_result_free(&r);
}

static void test_truncation(void **state) {
    (void)state;
    shell_limits lim = {.max_output = 1000};
    shell_result r;
    run_ok("yes | head -c 1000000", &lim, &r);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.out_len, 1000);
    assert_int_equal(strlen(r.out), 1000);
    assert_int_equal(r.out_total, 1000000);
    assert_memory_equal(r.out, "y\ny\ny\n", 6);
    cJSON *j = result_json(&r);
    assert_int_equal(strlen(json_str(j, "stdout")), 1000);
    const char *t = json_str(j, "truncated");
    assert_non_null(t);
    assert_non_null(strstr(t, "kept 1000 of 1000000 bytes"));
    assert_non_null(strstr(t, "stdout"));
    assert_null(strstr(t, "stderr"));
    cJSON_Delete(j);
    shell_result_free(&r);

    /* Both pipes flooded at once (default limits): no deadlock, both counted. */
    double t0 = now_s();
    run_ok("head -c 3000000 /dev/zero >&2 & head -c 2000000 /dev/zero; wait; echo done >&2", NULL, &r);
    assert_true(now_s() - t0 < 10);
    assert_int_equal(r.out_total, 2000000);
    assert_int_equal(r.err_total, 3000005);
    assert_int_equal(r.out_len, 16384);
    assert_int_equal(r.err_len, 16384);
    j = result_json(&r);
    assert_non_null(strstr(json_str(j, "truncated"), "stdout: kept 16384 of 2000000 bytes; stderr: kept 16384 of 3000005 bytes"));
    cJSON_Delete(j);
    shell_result_free(&r);
}

static void test_timeout(void **state) {
    (void)state;
    shell_limits lim = {.timeout_s = 0.5};
    shell_result r;
    double t0 = now_s();
    run_ok("echo started; sleep 10", &lim, &r);
    double dt = now_s() - t0;
    printf("  sleep 10, limit 0.5 s: %.2f s\n", dt);
    assert_true(dt >= 0.45 && dt < 3);
    assert_int_equal(r.timed_out, 1);
    assert_int_equal(r.exit_code, -1);
    assert_int_equal(r.signal, SIGTERM);
    assert_string_equal(r.out, "started\n");
    cJSON *j = result_json(&r);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "timed_out")));
    assert_string_equal(json_str(j, "signal"), "SIGTERM");
    cJSON_Delete(j);
    shell_result_free(&r);

    /* SIGTERM ignored: SIGKILL 2 s later. */
    t0 = now_s();
    run_ok("trap '' TERM; sleep 10", &lim, &r);
    dt = now_s() - t0;
    printf("  ignoring SIGTERM: %.2f s\n", dt);
    assert_true(dt >= 2.4 && dt < 4);
    assert_int_equal(r.timed_out, 1);
    assert_int_equal(r.signal, SIGKILL);
    shell_result_free(&r);

    /* Background members of the group die with it, even one that closed the
     * pipes and ignores SIGTERM. */
    t0 = now_s();
    run_ok("(trap '' TERM; exec sleep 20) >/dev/null 2>&1 & echo $!; sleep 10", &lim, &r);
    assert_true(now_s() - t0 < 3);
    long bg = atol(r.out);
    assert_true(bg > 0);
    assert_true(wait_gone(bg, 2));
    shell_result_free(&r);
}

static void test_cancel(void **state) {
    (void)state;
    static volatile sig_atomic_t flag;
    flag = 0;
    shell_limits lim = {.cancel = &flag};
    shell_result r;
    run_ok("true", &lim, &r);
    assert_int_equal(r.cancelled, 0);
    shell_result_free(&r);

    flag = 1; /* set before: ends at once */
    double t0 = now_s();
    run_ok("sleep 10", &lim, &r);
    assert_true(now_s() - t0 < 1);
    assert_int_equal(r.cancelled, 1);
    assert_int_equal(r.timed_out, 0);
    assert_int_equal(r.signal, SIGTERM);
    cJSON *j = result_json(&r);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "cancelled")));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "timed_out"));
    cJSON_Delete(j);
    shell_result_free(&r);
}

static void test_background_child(void **state) {
    (void)state;
    shell_result r;
    double t0 = now_s();
    run_ok("echo hi; sleep 30 & echo $! >&2", NULL, &r);
    double dt = now_s() - t0;
    printf("  sleep 30 & holding stdout: returned after %.2f s\n", dt);
    assert_true(dt < 2);
    assert_string_equal(r.out, "hi\n");
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.timed_out, 0);
    long bg = atol(r.err);
    assert_true(bg > 0);
    assert_true(wait_gone(bg, 2)); /* the group was killed */
    shell_result_free(&r);

    /* Late output from the background within the grace period is kept. */
    run_ok("(sleep 0.05; echo late) &", NULL, &r);
    assert_string_equal(r.out, "late\n");
    shell_result_free(&r);

    /* One that let go of the pipes is left alone (like `server >log &`). */
    t0 = now_s();
    run_ok("sleep 5 >/dev/null 2>&1 & echo $!", NULL, &r);
    assert_true(now_s() - t0 < 1);
    bg = atol(r.out);
    assert_true(bg > 0);
    usleep(300000);
    assert_false(process_gone(bg));
    kill((pid_t)bg, SIGKILL);
    shell_result_free(&r);
}

static void test_binary_output(void **state) {
    (void)state;
    shell_result r;
    /* NUL, 0xFF, 0xFE, ESC sequence, é, a lone continuation byte, an overlong
     * '/', a surrogate, then a 3-byte character cut short at the end. */
    run_ok("printf 'a\\000b\\377\\376 \\033[31mred \\303\\251 \\200 \\300\\257 \\355\\240\\200 \\342\\202'", NULL, &r);
    assert_int_equal(r.out_len, 29);
    assert_int_equal(r.out_total, 29);
    assert_int_equal(r.out[1], 0);
    cJSON *j = result_json(&r);
    const char *s = json_str(j, "stdout");
    assert_non_null(s);
    const char *want = "a\xEF\xBF\xBD"
                       "b\xEF\xBF\xBD\xEF\xBF\xBD \x1b[31mred \xC3\xA9 \xEF\xBF\xBD "
                       "\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD";
    assert_string_equal(s, want);
    cJSON_Delete(j);
    shell_result_free(&r);

    /* A character cut in two by truncation is dropped, not replaced. */
    shell_limits lim = {.max_output = 4};
    run_ok("printf 'ab\\342\\202\\254cd'", &lim, &r);
    assert_int_equal(r.out_len, 4);
    assert_int_equal(r.out_total, 7);
    j = result_json(&r);
    assert_string_equal(json_str(j, "stdout"), "ab");
    cJSON_Delete(j);
    shell_result_free(&r);

    /* Random bytes: always valid JSON and UTF-8. */
    run_ok("head -c 65536 /dev/urandom; head -c 4096 /dev/urandom >&2", NULL, &r);
    assert_int_equal(r.out_total, 65536);
    j = result_json(&r);
    assert_non_null(json_str(j, "stdout"));
    assert_non_null(json_str(j, "stderr"));
    cJSON_Delete(j);
    shell_result_free(&r);
}

static void test_sigpipe_default_in_child(void **state) {
    (void)state;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old);
    shell_result r;
    /* With SIGPIPE ignored, `yes` would complain "Broken pipe" and exit 1. */
    run_ok("yes | head -c 10 >/dev/null; echo ok", NULL, &r);
    sigaction(SIGPIPE, &old, NULL);
    assert_string_equal(r.out, "ok\n");
    assert_string_equal(r.err, "");
    shell_result_free(&r);
}

static void test_cwd(void **state) {
    (void)state;
    char dir[600], real[4096];
    snprintf(dir, sizeof dir, "%s/shell cwd", test_tmp_dir());
    mkdir(dir, 0755);
    assert_non_null(realpath(dir, real));
    shell_limits lim = {.cwd = dir};
    shell_result r;
    run_ok("pwd -P", &lim, &r);
    char want[4200];
    snprintf(want, sizeof want, "%s\n", real);
    assert_string_equal(r.out, want);
    shell_result_free(&r);

    char here[4096];
    assert_non_null(getcwd(here, sizeof here));
    run_ok("pwd -P", NULL, &r);
    assert_non_null(realpath(here, real));
    snprintf(want, sizeof want, "%s\n", real);
    assert_string_equal(r.out, want);
    shell_result_free(&r);

    lim.cwd = "/nonexistent/fm-shell-tool";
    errno = 0;
    assert_int_equal(shell_run("true", &lim, &r), -1);
    assert_int_equal(errno, ENOENT);
    assert_null(r.out);
    shell_result_free(&r);
    rmdir(dir);
}

/* ---- confirmation and definition ---------------------------------------- */

/* shell_confirm with `answer` as the user's input (NULL: EOF); *shown gets the prompt text. */
static int confirm(const char *command, const char *answer, char **shown) {
    FILE *in = fmemopen((void *)(answer ? answer : ""), answer ? strlen(answer) : 0, "r");
    assert_non_null(in);
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    assert_non_null(out);
    int yes = shell_confirm(command, in, out);
    fclose(in);
    fclose(out);
    if (shown)
        *shown = buf;
    else
        free(buf);
    return yes;
}

static void test_confirm(void **state) {
    (void)state;
    assert_int_equal(confirm("ls", "y\n", NULL), 1);
    assert_int_equal(confirm("ls", "yes\n", NULL), 1);
    assert_int_equal(confirm("ls", "  YES \n", NULL), 1);
    assert_int_equal(confirm("ls", "Y", NULL), 1); /* no newline before EOF */
    assert_int_equal(confirm("ls", "n\n", NULL), 0);
    assert_int_equal(confirm("ls", "no\n", NULL), 0);
    assert_int_equal(confirm("ls", "\n", NULL), 0);
    assert_int_equal(confirm("ls", "yess\n", NULL), 0);
    assert_int_equal(confirm("ls", NULL, NULL), 0); /* EOF */

    /* An escape sequence that would erase the shown line is shown escaped. */
    char *shown = NULL;
    assert_int_equal(confirm("rm -rf ~\033[2K\rls", "n\n", &shown), 0);
    printf("  shown: %s\n", shown);
    assert_non_null(strstr(shown, "rm -rf ~\\x1b[2K\\x0dls"));
    assert_null(strchr(shown, '\033'));
    assert_null(strchr(shown, '\r'));
    free(shown);

    /* Non-ASCII bytes too; newlines start marked lines. */
    assert_int_equal(confirm("echo \xC3\xA9\xE2\x80\xAE\ncat x", "n\n", &shown), 0);
    assert_non_null(strstr(shown, "$ echo \\xc3\\xa9\\xe2\\x80\\xae\n  > cat x\n"));
    free(shown);
}

static void test_definition(void **state) {
    (void)state;
    cJSON *d = cJSON_Parse(shell_tool_definition());
    assert_non_null(d);
    assert_string_equal(json_str(d, "type"), "function");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(d, "function");
    assert_non_null(f);
    assert_string_equal(json_str(f, "name"), "shell");
    const char *desc = json_str(f, "description");
    assert_non_null(desc);
    assert_non_null(strstr(desc, "POSIX shell"));
    assert_non_null(strstr(desc, "confirms"));
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "parameters");
    assert_string_equal(json_str(p, "type"), "object");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "properties"), "command");
    assert_string_equal(json_str(cmd, "type"), "string");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(p, "required");
    assert_int_equal(cJSON_GetArraySize(req), 1);
    assert_string_equal(cJSON_GetArrayItem(req, 0)->valuestring, "command");
    cJSON_Delete(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdout_stderr),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_signal),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_background_child),
        cmocka_unit_test(test_binary_output),
        cmocka_unit_test(test_sigpipe_default_in_child),
        cmocka_unit_test(test_cwd),
        cmocka_unit_test(test_confirm),
        cmocka_unit_test(test_definition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
