/* chat --shell's handling of the model's answer (app/chat_tools.c,
 * chat_shell_calls) with canned answers, no model: the confirmation is read
 * from an fmemopen'd input, what the user sees goes to an open_memstream.
 *   - a JSON-form shell call, confirmed with "y" → one tool message whose
 *     content is the shell result as JSON (stdout, stderr, exit code); the
 *     exact command was shown before it ran, then its exit status
 *   - "n" and EOF → the command did not run (it would have created a file)
 *     and the tool message says the user declined
 *   - the XML form (<function=shell><parameter=command>…)
 *   - two calls in one answer → two messages in order, each confirmed
 *   - a call of another tool (calculator) → no message, nothing asked
 *   - broken JSON in a call, or a function not offered → no message and a
 *     notice on the output
 *   - a shell call without a string "command" → a tool message with an
 *     error, nothing asked or run
 *   - no tool call, an empty answer, a think block → nothing added
 *   - messages already in the array are kept; new ones are appended */
#include "test_util.h"

#include "chat_tools.h"
#include "shell_tool.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The tools offered: the shell alone, or the shell and a calculator. */
static char *tools_shell(void) {
    static char buf[2048];
    snprintf(buf, sizeof buf, "[%s]", shell_tool_definition());
    return buf;
}

static char *tools_shell_and_calculator(void) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "[%s, {\"type\": \"function\", \"function\": {\"name\": \"calculator\", \"description\": \"Evaluates "
             "an arithmetic expression\", \"parameters\": {\"type\": \"object\", \"properties\": {\"expression\": "
             "{\"type\": \"string\"}}, \"required\": [\"expression\"]}}}]",
             shell_tool_definition());
    return buf;
}

/* One call of chat_shell_calls: `input` is what the user types (NULL: nothing,
 * EOF at once); *shown gets what was written to the output (malloc'd). */
typedef struct {
    cJSON *messages;
    int added;
    char *shown;
} call_outcome;

static call_outcome run_calls(const char *tools, const char *answer, const char *input) {
    call_outcome c = {cJSON_CreateArray(), 0, NULL};
    assert_non_null(c.messages);
    /* No input: /dev/null, EOF at the first read (fmemopen of 0 bytes is not portable). */
    FILE *in = input && *input ? fmemopen((void *)input, strlen(input), "r") : fopen("/dev/null", "r");
    assert_non_null(in);
    size_t len = 0;
    FILE *out = open_memstream(&c.shown, &len);
    assert_non_null(out);
    volatile sig_atomic_t cancel = 0;
    c.added = chat_shell_calls(c.messages, tools, answer, in, out, &cancel);
    fclose(in);
    fclose(out);
    assert_non_null(c.shown);
    return c;
}

static void outcome_free(call_outcome *c) {
    cJSON_Delete(c->messages);
    free(c->shown);
}

/* The content of messages[i], which must be a tool message; parsed as JSON. */
static cJSON *tool_content(const cJSON *messages, int i) {
    const cJSON *m = cJSON_GetArrayItem(messages, i);
    assert_non_null(m);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    assert_true(cJSON_IsString(role));
    assert_string_equal(role->valuestring, "tool");
    assert_true(cJSON_IsString(content));
    cJSON *j = cJSON_Parse(content->valuestring);
    if (!j) fail_msg("tool message %d: content is not JSON: %s", i, content->valuestring);
    return j;
}

static const char *json_str(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_int(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) fail_msg("no number \"%s\"", key);
    return v->valueint;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_json_call_confirmed(void **state) {
    (void)state;
    const char *answer =
        "I will run it.\n<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"echo hello; "
        "echo oops >&2; exit 3\"}}\n</tool_call>";
    call_outcome c = run_calls(tools_shell(), answer, "y\n");
    assert_int_equal(c.added, 1);
    assert_int_equal(cJSON_GetArraySize(c.messages), 1);
    cJSON *j = tool_content(c.messages, 0);
    assert_non_null(json_str(j, "stdout"));
    assert_string_equal(json_str(j, "stdout"), "hello\n");
    assert_non_null(json_str(j, "stderr"));
    assert_string_equal(json_str(j, "stderr"), "oops\n");
    assert_int_equal(json_int(j, "exit_code"), 3);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "error"));
    cJSON_Delete(j);
    /* The exact command was shown, before what the run reported. */
    const char *cmd = strstr(c.shown, "$ echo hello; echo oops >&2; exit 3\nRun it? [y/N] ");
    if (!cmd) fail_msg("the command was not shown: %s", c.shown);
    const char *exit_line = strstr(c.shown, "(exit 3;");
    if (!exit_line) fail_msg("the exit status was not shown: %s", c.shown);
    assert_true(cmd < exit_line);
    /* The command's own output goes to the model, not to the user's screen. */
    assert_null(strstr(c.shown, "hello\n"));
    outcome_free(&c);
}

/* A command that would leave a file: with "n" (or EOF) it must not run. */
static void check_declined(const char *input) {
    char path[1024], answer[2048];
    snprintf(path, sizeof path, "%s/declined-%d", test_tmp_dir(), (int)getpid());
    unlink(path);
    snprintf(answer, sizeof answer,
             "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"touch %s\"}}\n</tool_call>", path);
    call_outcome c = run_calls(tools_shell(), answer, input);
    assert_int_equal(c.added, 1);
    assert_int_equal(cJSON_GetArraySize(c.messages), 1);
    if (file_exists(path)) {
        unlink(path);
        fail_msg("the declined command ran (input %s)", input ? input : "EOF");
    }
    cJSON *j = tool_content(c.messages, 0);
    const char *err = json_str(j, "error");
    if (!err || !strstr(err, "declined")) fail_msg("no 'declined' error: %s", cJSON_PrintUnformatted(j));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "exit_code"));
    cJSON_Delete(j);
    assert_non_null(strstr(c.shown, path)); /* it was shown all the same */
    assert_null(strstr(c.shown, "(exit "));
    outcome_free(&c);
}

static void test_declined(void **state) {
    (void)state;
    check_declined("n\n");
    check_declined("no\n");
    check_declined("\n");
}

static void test_eof_declines(void **state) {
    (void)state;
    check_declined(NULL);
}

static void test_xml_call(void **state) {
    (void)state;
    const char *answer =
        "<tool_call>\n<function=shell>\n<parameter=command>\necho xml\n</parameter>\n</function>\n</tool_call>";
    call_outcome c = run_calls(tools_shell(), answer, "yes\n");
    assert_int_equal(c.added, 1);
    cJSON *j = tool_content(c.messages, 0);
    assert_string_equal(json_str(j, "stdout"), "xml\n");
    assert_string_equal(json_str(j, "stderr"), "");
    assert_int_equal(json_int(j, "exit_code"), 0);
    cJSON_Delete(j);
    assert_non_null(strstr(c.shown, "echo xml"));
    outcome_free(&c);
}

static void test_two_calls_in_order(void **state) {
    (void)state;
    const char *answer =
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"echo first\"}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"echo second\"}}\n</tool_call>";
    call_outcome c = run_calls(tools_shell(), answer, "y\ny\n");
    assert_int_equal(c.added, 2);
    assert_int_equal(cJSON_GetArraySize(c.messages), 2);
    cJSON *a = tool_content(c.messages, 0), *b = tool_content(c.messages, 1);
    assert_string_equal(json_str(a, "stdout"), "first\n");
    assert_string_equal(json_str(b, "stdout"), "second\n");
    cJSON_Delete(a);
    cJSON_Delete(b);
    const char *p1 = strstr(c.shown, "echo first"), *p2 = strstr(c.shown, "echo second");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_true(p1 < p2);
    outcome_free(&c);

    /* Each call asks on its own: yes to the first, no to the second. */
    c = run_calls(tools_shell(), answer, "y\nn\n");
    assert_int_equal(c.added, 2);
    a = tool_content(c.messages, 0);
    b = tool_content(c.messages, 1);
    assert_string_equal(json_str(a, "stdout"), "first\n");
    assert_non_null(json_str(b, "error"));
    assert_non_null(strstr(json_str(b, "error"), "declined"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    outcome_free(&c);
}

static void test_other_tool_ignored(void **state) {
    (void)state;
    const char *answer =
        "<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"37 * 12\"}}\n</tool_call>";
    call_outcome c = run_calls(tools_shell_and_calculator(), answer, "y\n");
    assert_int_equal(c.added, 0);
    assert_int_equal(cJSON_GetArraySize(c.messages), 0);
    assert_string_equal(c.shown, ""); /* nothing asked */
    outcome_free(&c);

    /* A calculator call next to a shell call: only the shell's message. */
    const char *both =
        "<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1 + 1\"}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"echo after\"}}\n</tool_call>";
    c = run_calls(tools_shell_and_calculator(), both, "y\n");
    assert_int_equal(c.added, 1);
    cJSON *j = tool_content(c.messages, 0);
    assert_string_equal(json_str(j, "stdout"), "after\n");
    cJSON_Delete(j);
    outcome_free(&c);
}

static void test_invalid_call(void **state) {
    (void)state;
    const char *answer = "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"echo x\"\n</tool_call>";
    call_outcome c = run_calls(tools_shell(), answer, "y\n");
    assert_int_equal(c.added, 0);
    assert_int_equal(cJSON_GetArraySize(c.messages), 0);
    if (!strstr(c.shown, "invalid tool call")) fail_msg("no notice of the invalid call: '%s'", c.shown);
    assert_null(strstr(c.shown, "Run it?"));
    assert_null(strstr(c.shown, "(exit "));
    outcome_free(&c);

    /* A function that was not offered is an invalid call too. */
    c = run_calls(tools_shell(),
                  "<tool_call>\n{\"name\": \"nosuch\", \"arguments\": {\"command\": \"echo x\"}}\n</tool_call>", "y\n");
    assert_int_equal(c.added, 0);
    if (!strstr(c.shown, "invalid tool call")) fail_msg("no notice of the unknown function: '%s'", c.shown);
    outcome_free(&c);
}

static void test_missing_command(void **state) {
    (void)state;
    const char *answers[] = {
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"cmd\": \"echo x\"}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": 42}}\n</tool_call>",
    };
    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        call_outcome c = run_calls(tools_shell(), answers[i], "y\n");
        assert_int_equal(c.added, 1);
        cJSON *j = tool_content(c.messages, 0);
        const char *err = json_str(j, "error");
        if (!err || !strstr(err, "command")) fail_msg("answer %zu: no error naming 'command'", i);
        assert_null(cJSON_GetObjectItemCaseSensitive(j, "exit_code"));
        cJSON_Delete(j);
        /* Nothing asked, nothing run. */
        assert_null(strstr(c.shown, "Run it?"));
        assert_null(strstr(c.shown, "(exit "));
        outcome_free(&c);
    }
}

static void test_no_call(void **state) {
    (void)state;
    const char *answers[] = {
        "",
        "Hello! How can I help you today?",
        "<think>\nmaybe run echo?\n</think>\n\nNo need to run anything.",
        "Use `<tool_call>` tags to call a tool.",
    };
    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        call_outcome c = run_calls(tools_shell(), answers[i], "y\n");
        assert_int_equal(c.added, 0);
        assert_int_equal(cJSON_GetArraySize(c.messages), 0);
        assert_null(strstr(c.shown, "(exit "));
        outcome_free(&c);
    }
}

static void test_appends_to_conversation(void **state) {
    (void)state;
    cJSON *messages = cJSON_Parse("[{\"role\": \"user\", \"content\": \"list\"}, {\"role\": \"assistant\", "
                                  "\"content\": \"x\"}]");
    assert_non_null(messages);
    FILE *in = fmemopen((void *)"y\n", 2, "r");
    char *shown = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&shown, &len);
    int added = chat_shell_calls(
        messages, tools_shell(),
        "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"printf ok\"}}\n</tool_call>", in, out,
        NULL); /* no cancel flag */
    fclose(in);
    fclose(out);
    assert_int_equal(added, 1);
    assert_int_equal(cJSON_GetArraySize(messages), 3);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(messages, 0), "role")->valuestring,
                        "user");
    cJSON *j = tool_content(messages, 2);
    assert_string_equal(json_str(j, "stdout"), "ok");
    cJSON_Delete(j);
    cJSON_Delete(messages);
    free(shown);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_call_confirmed),
        cmocka_unit_test(test_declined),
        cmocka_unit_test(test_eof_declines),
        cmocka_unit_test(test_xml_call),
        cmocka_unit_test(test_two_calls_in_order),
        cmocka_unit_test(test_other_tool_ignored),
        cmocka_unit_test(test_invalid_call),
        cmocka_unit_test(test_missing_command),
        cmocka_unit_test(test_no_call),
        cmocka_unit_test(test_appends_to_conversation),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(test_tmp_dir());
    return rc;
}
