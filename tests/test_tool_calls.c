/* The assistant output parser (app/server/tool_calls.c):
 *   - empty input, plain text (trimmed), NULL text
 *   - JSON form: one call, several calls with content before, between and
 *     after, arguments as a JSON string, without arguments, whitespace
 *     around everything, names checked against the tools (OpenAI and bare
 *     entries), no tools (any name), tools text that is not an array
 *   - XML form (Qwen3-Coder / Qwen3.5): values typed by the schema (integer,
 *     number, boolean incl. True/False, object, array, null, string that looks
 *     like a number stays a string, anyOf/Optional, type lists, unknown and
 *     untyped parameters), one newline each side stripped and the rest kept,
 *     CRLF, no tools (typed by trying JSON), both forms in one answer
 *   - reasoning: <think> at the start, only </think> when the prompt opened
 *     it, unclosed, empty, stray </think> without think_open, calls inside
 *     the reasoning not parsed
 *   - every invalid case with its exact error text; invalid calls stay in
 *     the content as written and valid ones around them still count; several
 *     errors joined, more than ten counted
 *   - call ids: "call_" + 24 alphanumerics, reproducible per seed, distinct
 *   - assistant_stream_safe: partial markers ("<tool_c", "<thi", "</thi"),
 *     complete markers, '<' that starts no marker, split UTF-8 sequences,
 *     never decreasing as the text grows
 *   - non-UTF-8 garbage, NUL bytes (dropped), a text without a terminating NUL, 20k
 *     random marker soups (no crash, every call's arguments a JSON object),
 *     100k unterminated blocks in linear time
 *   - every cJSON allocation failing in turn: -1 and nothing held, or a sane
 *     output; no leaks (under ASan) */
#include "test_util.h"

#include "server/tool_calls.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather.\","
    "  \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"},"
    "  \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"shell\", \"parameters\": {\"type\": \"object\","
    "  \"properties\": {\"command\": {\"type\": \"string\"}}}}}]";

static const char TYPED_TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"typed\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {"
    "  \"i\": {\"type\": \"integer\"}, \"n\": {\"type\": \"number\"}, \"b\": {\"type\": \"boolean\"},"
    "  \"o\": {\"type\": \"object\"}, \"a\": {\"type\": \"array\"}, \"s\": {\"type\": \"string\"},"
    "  \"nul\": {\"type\": \"null\"}, \"opt\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]},"
    "  \"inull\": {\"type\": [\"integer\", \"null\"]}, \"e\": {\"enum\": [1, 2]}}}}}]";

static assistant_output parse_with(const char *text, const char *tools, int think_open) {
    assistant_output o;
    uint64_t rng = 42;
    assert_int_equal(assistant_parse(text, strlen(text), tools, think_open, &rng, &o), 0);
    assert_non_null(o.content);
    return o;
}

/* Arguments compared as JSON values, so key order and spacing do not matter. */
static void assert_json_equal(const char *got, const char *want) {
    cJSON *g = cJSON_Parse(got), *w = cJSON_Parse(want);
    if (!w) fail_msg("bad expected JSON %s", want);
    if (!g || !cJSON_Compare(g, w, 1)) fail_msg("arguments %s, expected %s", got, want);
    cJSON_Delete(g);
    cJSON_Delete(w);
}

static void assert_call(const assistant_output *o, int i, const char *name, const char *args) {
    if (i >= o->n_calls) fail_msg("call %d missing: %d calls (error: %s)", i, o->n_calls, o->error ? o->error : "-");
    assert_string_equal(o->calls[i].name, name);
    assert_json_equal(o->calls[i].arguments, args);
}

/* One XML parameter's value as typed by TYPED_TOOLS, against the expected JSON. */
static void check_typed(const char *param, const char *raw, const char *want) {
    char text[512], args[256];
    snprintf(text, sizeof text, "<tool_call>\n<function=typed>\n<parameter=%s>\n%s\n</parameter>\n</function>\n</tool_call>",
             param, raw);
    snprintf(args, sizeof args, "{\"%s\": %s}", param, want);
    assistant_output o = parse_with(text, TYPED_TOOLS, 0);
    if (o.error) fail_msg("%s = %s: %s", param, raw, o.error);
    assert_int_equal(o.n_calls, 1);
    assert_call(&o, 0, "typed", args);
    assistant_output_free(&o);
}

/* An answer whose only block is invalid: no calls, this error, the text kept. */
static void expect_error(const char *text, const char *tools, const char *error) {
    assistant_output o = parse_with(text, tools, 0);
    if (!o.error) fail_msg("no error for %s", text);
    if (strcmp(o.error, error)) fail_msg("error \"%s\", expected \"%s\"\n  for %s", o.error, error, text);
    assert_int_equal(o.n_calls, 0);
    size_t a = 0, b = strlen(text);
    while (a < b && strchr(" \t\r\n", text[a])) a++;
    while (b > a && strchr(" \t\r\n", text[b - 1])) b--;
    if (strlen(o.content) != b - a || memcmp(o.content, text + a, b - a))
        fail_msg("content \"%s\" is not the text as written", o.content);
    assistant_output_free(&o);
}

static int is_call_id(const char *id) {
    if (strlen(id) != 29 || strncmp(id, "call_", 5)) return 0;
    for (int i = 5; i < 29; i++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", id[i])) return 0;
    return 1;
}

/* ---- plain text --------------------------------------------------------- */

static void test_empty_and_plain(void **state) {
    (void)state;
    assistant_output o = parse_with("", TOOLS, 0);
    assert_string_equal(o.content, "");
    assert_null(o.reasoning);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 0);
    assert_null(o.calls);
    assistant_output_free(&o);
    assistant_output_free(&o); /* zeroed: freeing twice is harmless */

    o = parse_with(" \n\t ", NULL, 1); /* thinking open, nothing produced */
    assert_string_equal(o.content, "");
    assert_null(o.reasoning);
    assistant_output_free(&o);

    o = parse_with("\n\n  Hello, <b>world</b> & 1 < 2.\n ", TOOLS, 0);
    assert_string_equal(o.content, "Hello, <b>world</b> & 1 < 2.");
    assert_null(o.error);
    assert_int_equal(o.n_calls, 0);
    assistant_output_free(&o);

    assert_int_equal(assistant_parse(NULL, 5, NULL, 0, NULL, &o), 0);
    assert_string_equal(o.content, "");
    assistant_output_free(&o);
    assistant_output_free(NULL);
}

/* ---- JSON form ---------------------------------------------------------- */

static void test_json_single(void **state) {
    (void)state;
    assistant_output o = parse_with(
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>", TOOLS,
        0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 1);
    assert_call(&o, 0, "get_weather", "{\"city\": \"Paris\", \"days\": 3}");
    assert_string_equal(o.calls[0].arguments, "{\"city\":\"Paris\",\"days\":3}"); /* compact */
    assert_true(is_call_id(o.calls[0].id));
    assert_string_equal(o.content, "");
    assert_null(o.reasoning);
    assistant_output_free(&o);

    /* Lenient on whitespace: none at all, or plenty, around every part. */
    o = parse_with("<tool_call>{\"name\":\"shell\",\"arguments\":{\"command\":\"ls -l\"}}</tool_call>", TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "shell", "{\"command\": \"ls -l\"}");
    assistant_output_free(&o);
    o = parse_with("\n \n<tool_call>  \r\n\t{ \"name\" : \" shell \" ,\n \"arguments\" :\n {\"command\" : \"pwd\"} }\n\n "
                   "</tool_call>\n\n",
                   TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "shell", "{\"command\": \"pwd\"}");
    assert_string_equal(o.content, "");
    assistant_output_free(&o);

    /* Nested values and unicode survive the round trip. */
    o = parse_with("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"K\xc3\xb6ln \\u00e9\\n\","
                   " \"opts\": {\"a\": [1, 2.5, null, true], \"b\": {}}}}\n</tool_call>",
                   TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "get_weather",
                "{\"city\": \"K\xc3\xb6ln \xc3\xa9\\n\", \"opts\": {\"a\": [1, 2.5, null, true], \"b\": {}}}");
    assistant_output_free(&o);
}

static void test_json_several_with_content(void **state) {
    (void)state;
    assistant_output o = parse_with("Let me check both.\n"
                                    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                                    "</tool_call>\n"
                                    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n"
                                    "</tool_call>\n"
                                    "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"date\"}}\n"
                                    "</tool_call>\nOne moment.\n",
                                    TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 3);
    assert_call(&o, 0, "get_weather", "{\"city\": \"Paris\"}");
    assert_call(&o, 1, "get_weather", "{\"city\": \"Rome\"}");
    assert_call(&o, 2, "shell", "{\"command\": \"date\"}");
    /* The pieces between blocks are joined as they were, then trimmed. */
    assert_string_equal(o.content, "Let me check both.\n\n\n\nOne moment.");
    for (int i = 0; i < 3; i++) {
        assert_true(is_call_id(o.calls[i].id));
        for (int j = 0; j < i; j++) assert_string_not_equal(o.calls[i].id, o.calls[j].id);
    }
    assistant_output_free(&o);

    o = parse_with("Before <tool_call>{\"name\": \"shell\", \"arguments\": {\"command\": \"a\"}}</tool_call> after",
                   TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 1);
    assert_string_equal(o.content, "Before  after");
    assistant_output_free(&o);
}

static void test_json_arguments_forms(void **state) {
    (void)state;
    /* Arguments as a JSON string holding an object (OpenAI's own encoding). */
    assistant_output o = parse_with("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                                    "\"{\\\"city\\\": \\\"Paris\\\", \\\"days\\\": 2}\"}\n</tool_call>",
                                    TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "get_weather", "{\"city\": \"Paris\", \"days\": 2}");
    assistant_output_free(&o);

    o = parse_with("<tool_call>{\"name\": \"shell\", \"arguments\": \" {} \"}</tool_call>", TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "shell", "{}");
    assistant_output_free(&o);

    /* Without arguments: an empty object. Key order does not matter. */
    o = parse_with("<tool_call>{\"name\": \"shell\"}</tool_call><tool_call>{\"arguments\": {\"x\": 1}, \"name\": "
                   "\"shell\"}</tool_call>",
                   TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 2);
    assert_call(&o, 0, "shell", "{}");
    assert_string_equal(o.calls[0].arguments, "{}");
    assert_call(&o, 1, "shell", "{\"x\": 1}");
    assistant_output_free(&o);
}

static void test_tools_lists(void **state) {
    (void)state;
    const char *call = "<tool_call>{\"name\": \"anything_at_all\", \"arguments\": {\"k\": \"v\"}}</tool_call>";
    /* No tools, or tools text that is not an array: any name goes. */
    const char *no_tools[] = {NULL, "", "not json", "{\"name\": \"x\"}", "[1, 2"};
    for (int i = 0; i < 5; i++) {
        assistant_output o = parse_with(call, no_tools[i], 0);
        assert_null(o.error);
        assert_call(&o, 0, "anything_at_all", "{\"k\": \"v\"}");
        assistant_output_free(&o);
    }
    /* Bare {"name", "parameters"} entries, mixed with junk entries. */
    const char *bare = "[1, \"x\", {\"type\": \"function\"}, {\"name\": \"anything_at_all\", \"parameters\": {}}]";
    assistant_output o = parse_with(call, bare, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 1);
    assistant_output_free(&o);
    /* An empty list: no function exists. */
    expect_error(call, "[]", "tool call 1: unknown function 'anything_at_all' (no tools)");
    /* More than ten tools: the list is cut short. */
    char many[2048] = "[";
    for (int i = 0; i < 12; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s{\"name\": \"t%d\"}", i ? ", " : "", i);
    strcat(many, "]");
    expect_error(call, many,
                 "tool call 1: unknown function 'anything_at_all' (tools: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, ...)");
}

/* ---- XML form ----------------------------------------------------------- */

static void test_xml_single(void **state) {
    (void)state;
    assistant_output o = parse_with("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                                    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
                                    TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 1);
    assert_call(&o, 0, "get_weather", "{\"city\": \"Paris\", \"days\": 3}");
    assert_string_equal(o.calls[0].arguments, "{\"city\":\"Paris\",\"days\":3}");
    assert_true(is_call_id(o.calls[0].id));
    assert_string_equal(o.content, "");
    assistant_output_free(&o);

    /* Compact layout, spaces around names, CRLF line ends. */
    o = parse_with("<tool_call><function= get_weather ><parameter= city >Oslo</parameter></function></tool_call>", TOOLS,
                   0);
    assert_null(o.error);
    assert_call(&o, 0, "get_weather", "{\"city\": \"Oslo\"}");
    assistant_output_free(&o);
    o = parse_with("<tool_call>\r\n<function=get_weather>\r\n<parameter=city>\r\nBergen\r\n</parameter>\r\n"
                   "</function>\r\n</tool_call>\r\n",
                   TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "get_weather", "{\"city\": \"Bergen\"}");
    assistant_output_free(&o);

    /* Only one newline each side is layout: the rest of a string is kept. */
    o = parse_with("<tool_call>\n<function=shell>\n<parameter=command>\n\n  cd /tmp &&\n  ls \"a b\" <x>\n\n"
                   "</parameter>\n</function>\n</tool_call>",
                   TOOLS, 0);
    assert_null(o.error);
    assert_call(&o, 0, "shell", "{\"command\": \"\\n  cd /tmp &&\\n  ls \\\"a b\\\" <x>\\n\"}");
    assistant_output_free(&o);

    /* No parameters; an empty value. */
    o = parse_with("<tool_call>\n<function=shell>\n</function>\n</tool_call>"
                   "<tool_call>\n<function=shell>\n<parameter=command>\n</parameter>\n</function>\n</tool_call>",
                   TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 2);
    assert_call(&o, 0, "shell", "{}");
    assert_call(&o, 1, "shell", "{\"command\": \"\"}");
    assistant_output_free(&o);
}

static void test_xml_schema_typing(void **state) {
    (void)state;
    check_typed("i", "42", "42");
    check_typed("i", "-7", "-7");
    check_typed("i", " 12 ", "12");
    check_typed("i", "twelve", "\"twelve\""); /* not JSON: kept as written */
    check_typed("n", "2.5", "2.5");
    check_typed("n", "1e3", "1000");
    check_typed("b", "true", "true");
    check_typed("b", "false", "false");
    check_typed("b", "True", "true"); /* Python spelling */
    check_typed("b", "FALSE", "false");
    check_typed("b", "yes", "\"yes\"");
    check_typed("o", "{\"k\": [1, {\"z\": null}]}", "{\"k\": [1, {\"z\": null}]}");
    check_typed("o", "{not json", "\"{not json\"");
    check_typed("a", "[1, \"two\", 3.5]", "[1, \"two\", 3.5]");
    check_typed("a", "[1, 2] trailing", "\"[1, 2] trailing\"");
    check_typed("nul", "null", "null");
    /* Strings stay strings, whatever they look like. */
    check_typed("s", "02139", "\"02139\"");
    check_typed("s", "3.14", "\"3.14\"");
    check_typed("s", "true", "\"true\"");
    check_typed("s", "null", "\"null\"");
    check_typed("s", "{\"a\": 1}", "\"{\\\"a\\\": 1}\"");
    check_typed("s", "  spaced  ", "\"  spaced  \"");
    /* Optional[str]: null when it says null, else a string. */
    check_typed("opt", "null", "null");
    check_typed("opt", "123", "\"123\"");
    check_typed("inull", "5", "5");
    check_typed("inull", "null", "null");
    /* No type in the schema, or not in the schema: JSON when it is JSON. */
    check_typed("e", "2", "2");
    check_typed("unknown", "[1]", "[1]");
    check_typed("unknown", "17", "17");
    check_typed("unknown", "hello", "\"hello\"");
    check_typed("unknown", "", "\"\"");
}

static void test_xml_without_tools(void **state) {
    (void)state;
    assistant_output o = parse_with("<tool_call>\n<function=anything>\n<parameter=n>\n7\n</parameter>\n"
                                    "<parameter=s>\nseven\n</parameter>\n<parameter=l>\n[7]\n</parameter>\n"
                                    "<parameter=z>\n007\n</parameter>\n</function>\n</tool_call>",
                                    NULL, 0);
    assert_null(o.error);
    /* "007" is not JSON (leading zeros), though cJSON reads it as 7: either is fine as long as it is valid JSON. */
    cJSON *args = cJSON_Parse(o.calls[0].arguments);
    assert_non_null(args);
    assert_int_equal(cJSON_GetObjectItem(args, "n")->valueint, 7);
    assert_string_equal(cJSON_GetObjectItem(args, "s")->valuestring, "seven");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(args, "l")));
    cJSON_Delete(args);
    assistant_output_free(&o);
}

static void test_mixed_forms(void **state) {
    (void)state;
    assistant_output o = parse_with("I will call two tools.\n\n"
                                    "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"uptime\"}}\n</tool_call>\n"
                                    "<tool_call>\n<function=get_weather>\n<parameter=city>\nLima\n</parameter>\n"
                                    "</function>\n</tool_call>",
                                    TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 2);
    assert_call(&o, 0, "shell", "{\"command\": \"uptime\"}");
    assert_call(&o, 1, "get_weather", "{\"city\": \"Lima\"}");
    assert_string_equal(o.content, "I will call two tools.");
    assistant_output_free(&o);
}

/* ---- reasoning ---------------------------------------------------------- */

static void test_reasoning(void **state) {
    (void)state;
    /* Opening tag in the output. */
    assistant_output o = parse_with("<think>\nThe user wants weather.\n</think>\n\nIt is sunny.", TOOLS, 0);
    assert_string_equal(o.reasoning, "The user wants weather.");
    assert_string_equal(o.content, "It is sunny.");
    assert_null(o.error);
    assistant_output_free(&o);

    /* The prompt opened it: only the closing tag appears. */
    o = parse_with("Thinking about it.\nStill.\n</think>\n\nAnswer.", TOOLS, 1);
    assert_string_equal(o.reasoning, "Thinking about it.\nStill.");
    assert_string_equal(o.content, "Answer.");
    assistant_output_free(&o);
    /* ... and without think_open that is no reasoning. */
    o = parse_with("Thinking about it.\n</think>\n\nAnswer.", TOOLS, 0);
    assert_null(o.reasoning);
    assert_string_equal(o.content, "Thinking about it.\n</think>\n\nAnswer.");
    assistant_output_free(&o);
    /* think_open and the model repeats the tag anyway. */
    o = parse_with("<think>\nhmm\n</think>\nok", TOOLS, 1);
    assert_string_equal(o.reasoning, "hmm");
    assert_string_equal(o.content, "ok");
    assistant_output_free(&o);

    /* Stopped while thinking: all of it is reasoning. */
    o = parse_with("still thinking <tool_call>{\"name\": \"shell\"}</tool_call>", TOOLS, 1);
    assert_string_equal(o.reasoning, "still thinking <tool_call>{\"name\": \"shell\"}</tool_call>");
    assert_string_equal(o.content, "");
    assert_int_equal(o.n_calls, 0);
    assert_null(o.error);
    assistant_output_free(&o);
    o = parse_with("  <think>unclosed", TOOLS, 0);
    assert_string_equal(o.reasoning, "unclosed");
    assert_string_equal(o.content, "");
    assistant_output_free(&o);

    /* Empty reasoning (thinking switched off): none. */
    o = parse_with("<think>\n\n</think>\n\nHi!", TOOLS, 0);
    assert_null(o.reasoning);
    assert_string_equal(o.content, "Hi!");
    assistant_output_free(&o);
    o = parse_with("</think>Hi!", TOOLS, 1);
    assert_null(o.reasoning);
    assert_string_equal(o.content, "Hi!");
    assistant_output_free(&o);

    /* <think> later in the answer is content. */
    o = parse_with("Use <think> tags.", TOOLS, 0);
    assert_null(o.reasoning);
    assert_string_equal(o.content, "Use <think> tags.");
    assistant_output_free(&o);

    /* A call drafted in the reasoning is not made; the one after it is. */
    o = parse_with("I could <tool_call>{\"name\": \"nope\"}</tool_call>\n</think>\n\n"
                   "<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": \"id\"}}\n</tool_call>",
                   TOOLS, 1);
    assert_null(o.error);
    assert_string_equal(o.reasoning, "I could <tool_call>{\"name\": \"nope\"}</tool_call>");
    assert_int_equal(o.n_calls, 1);
    assert_call(&o, 0, "shell", "{\"command\": \"id\"}");
    assert_string_equal(o.content, "");
    assistant_output_free(&o);
}

/* ---- invalid calls ------------------------------------------------------ */

static void test_invalid_blocks(void **state) {
    (void)state;
    expect_error("<tool_call>\n{\"name\": \"shell\", \"arguments\": {}}", TOOLS, "tool call 1: unterminated <tool_call>");
    expect_error("Sure. <tool_call>", TOOLS, "tool call 1: unterminated <tool_call>");
    expect_error("<tool_call>\n</tool_call>", TOOLS, "tool call 1: empty <tool_call>");
    expect_error("<tool_call>get_weather(city='Paris')</tool_call>", TOOLS,
                 "tool call 1: expected a JSON object or <function=...>");
    expect_error("<tool_call>[{\"name\": \"shell\"}]</tool_call>", TOOLS,
                 "tool call 1: expected a JSON object or <function=...>");
}

static void test_invalid_json_calls(void **state) {
    (void)state;
    expect_error("<tool_call>\n{\"name\": \"shell\", \"arguments\": {\"command\": }}\n</tool_call>", TOOLS,
                 "tool call 1: not valid JSON at byte 43");
    expect_error("<tool_call>{\"name\": \"shell\"} {\"name\": \"shell\"}</tool_call>", TOOLS,
                 "tool call 1: not valid JSON at byte 18");
    expect_error("<tool_call>{\"arguments\": {}}</tool_call>", TOOLS, "tool call 1: missing \"name\"");
    expect_error("<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>", TOOLS,
                 "tool call 1: \"name\" is not a string");
    expect_error("<tool_call>{\"name\": \"  \", \"arguments\": {}}</tool_call>", TOOLS,
                 "tool call 1: missing function name");
    expect_error("<tool_call>{\"name\": \"a\\nb\"}</tool_call>", NULL, "tool call 1: invalid function name");
    expect_error("<tool_call>{\"name\": \"foo\", \"arguments\": {}}</tool_call>", TOOLS,
                 "tool call 1: unknown function 'foo' (tools: get_weather, shell)");
    expect_error("<tool_call>{\"name\": \"shell\", \"arguments\": [\"ls\"]}</tool_call>", TOOLS,
                 "tool call 1: arguments are not a JSON object");
    expect_error("<tool_call>{\"name\": \"shell\", \"arguments\": null}</tool_call>", TOOLS,
                 "tool call 1: arguments are not a JSON object");
    expect_error("<tool_call>{\"name\": \"shell\", \"arguments\": \"[1]\"}</tool_call>", TOOLS,
                 "tool call 1: arguments are not a JSON object");
    expect_error("<tool_call>{\"name\": \"shell\", \"arguments\": \"{\\\"command\\\": ls}\"}</tool_call>", TOOLS,
                 "tool call 1: arguments are not valid JSON at byte 12");
    expect_error("<tool_call>{\"name\": \"shell\", \"arguments\": \"\"}</tool_call>", TOOLS,
                 "tool call 1: arguments are not valid JSON at byte 0");
    expect_error("<tool_call>{\"name\": \"shell\", \"parameters\": {\"command\": \"ls\"}}</tool_call>", TOOLS,
                 "tool call 1: unexpected key 'parameters'");
    expect_error("<tool_call>{\"name\": \"shell\", \"name\": \"get_weather\"}</tool_call>", TOOLS,
                 "tool call 1: duplicate key 'name'");
    expect_error("<tool_call>{\"name\": \"shell\", \"arguments\": {\"command\": \"a\", \"command\": \"b\"}}</tool_call>",
                 TOOLS, "tool call 1: duplicate parameter 'command'");
    /* A long name is shortened in the message. */
    char text[400], err[200];
    snprintf(text, sizeof text, "<tool_call>{\"name\": \"%0100d\"}</tool_call>", 0);
    snprintf(err, sizeof err, "tool call 1: unknown function '%064d...' (tools: get_weather, shell)", 0);
    expect_error(text, TOOLS, err);
}

static void test_invalid_xml_calls(void **state) {
    (void)state;
    expect_error("<tool_call>\n<function=get_weather\n</tool_call>", TOOLS, "tool call 1: unterminated <function=");
    expect_error("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</tool_call>", TOOLS,
                 "tool call 1: unterminated <function='get_weather'>");
    expect_error("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</function>\n</tool_call>", TOOLS,
                 "tool call 1: unterminated <parameter='city'>");
    expect_error("<tool_call>\n<function=get_weather>\n<parameter=city\n</function>\n</tool_call>", TOOLS,
                 "tool call 1: invalid parameter name");
    expect_error("<tool_call>\n<function=get_weather>\n<parameter=city", TOOLS, "tool call 1: unterminated <tool_call>");
    expect_error("<tool_call><function=get_weather><parameter=city</tool_call>", TOOLS,
                 "tool call 1: unterminated <parameter=");
    expect_error("<tool_call>\n<function=get_weather>\n<parameter=>\nx\n</parameter>\n</function>\n</tool_call>", TOOLS,
                 "tool call 1: invalid parameter name");
    expect_error("<tool_call>\n<function=>\n</function>\n</tool_call>", TOOLS, "tool call 1: missing function name");
    expect_error("<tool_call>\n<function=foo>\n</function>\n</tool_call>", TOOLS,
                 "tool call 1: unknown function 'foo' (tools: get_weather, shell)");
    expect_error("<tool_call>\n<function=get_weather>\ncity: Paris\n</function>\n</tool_call>", TOOLS,
                 "tool call 1: unexpected text in <function='get_weather'>");
    expect_error("<tool_call>\n<function=get_weather>\n</function>\nthanks\n</tool_call>", TOOLS,
                 "tool call 1: unexpected text after </function>");
    expect_error("<tool_call>\n<function=shell>\n</function>\n<function=shell>\n</function>\n</tool_call>", TOOLS,
                 "tool call 1: unexpected text after </function>");
    expect_error("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=city>\nRome\n"
                 "</parameter>\n</function>\n</tool_call>",
                 TOOLS, "tool call 1: duplicate parameter 'city'");
}

static void test_invalid_among_valid(void **state) {
    (void)state;
    /* Numbering counts every block; valid calls still come out; each invalid
     * block stays in the content where it was. */
    const char *text = "A\n<tool_call>{\"name\": \"shell\", \"arguments\": {\"command\": \"ls\"}}</tool_call>\n"
                       "B\n<tool_call>{\"name\": \"rm_rf\"}</tool_call>\n"
                       "C\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n"
                       "</tool_call>\n"
                       "D\n<tool_call>{\"name\": \"shell\", \"arguments\": 7}</tool_call>\nE";
    assistant_output o = parse_with(text, TOOLS, 0);
    assert_string_equal(o.error, "tool call 2: unknown function 'rm_rf' (tools: get_weather, shell); "
                                 "tool call 4: arguments are not a JSON object");
    assert_int_equal(o.n_calls, 2);
    assert_call(&o, 0, "shell", "{\"command\": \"ls\"}");
    assert_call(&o, 1, "get_weather", "{\"city\": \"Paris\"}");
    assert_string_equal(o.content, "A\n\nB\n<tool_call>{\"name\": \"rm_rf\"}</tool_call>\nC\n\n"
                                   "D\n<tool_call>{\"name\": \"shell\", \"arguments\": 7}</tool_call>\nE");
    assistant_output_free(&o);

    /* An unterminated block followed by a complete one: the first is invalid
     * up to where the second begins. */
    o = parse_with("<tool_call>{\"name\": \"shell\"\n<tool_call>{\"name\": \"shell\"}</tool_call>", TOOLS, 0);
    assert_string_equal(o.error, "tool call 1: unterminated <tool_call>");
    assert_int_equal(o.n_calls, 1);
    assert_call(&o, 0, "shell", "{}");
    assert_string_equal(o.content, "<tool_call>{\"name\": \"shell\"");
    assistant_output_free(&o);

    /* A stray closing tag is plain text. */
    o = parse_with("done </tool_call>", TOOLS, 0);
    assert_null(o.error);
    assert_string_equal(o.content, "done </tool_call>");
    assistant_output_free(&o);

    /* More than ten invalid blocks: ten listed, the rest counted. */
    char many[1024] = "";
    for (int i = 0; i < 13; i++) strcat(many, "<tool_call>x</tool_call>");
    o = parse_with(many, TOOLS, 0);
    assert_non_null(strstr(o.error, "tool call 10: expected a JSON object or <function=...>; 3 more invalid tool calls"));
    assert_null(strstr(o.error, "tool call 11"));
    assert_string_equal(o.content, many);
    assistant_output_free(&o);
}

/* ---- ids ---------------------------------------------------------------- */

static void test_call_ids(void **state) {
    (void)state;
    const char *text = "<tool_call>{\"name\": \"shell\"}</tool_call><tool_call>{\"name\": \"shell\"}</tool_call>";
    assistant_output a, b, c;
    uint64_t r1 = 7, r2 = 7, r3 = 8;
    assert_int_equal(assistant_parse(text, strlen(text), TOOLS, 0, &r1, &a), 0);
    assert_int_equal(assistant_parse(text, strlen(text), TOOLS, 0, &r2, &b), 0);
    assert_int_equal(assistant_parse(text, strlen(text), TOOLS, 0, &r3, &c), 0);
    assert_int_equal(a.n_calls, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(is_call_id(a.calls[i].id));
        assert_string_equal(a.calls[i].id, b.calls[i].id); /* same seed, same ids */
        assert_string_not_equal(a.calls[i].id, c.calls[i].id);
    }
    assert_string_not_equal(a.calls[0].id, a.calls[1].id);
    assert_true(r1 != 7 && r1 == r2); /* the state advanced */
    /* The next answer with the advanced state gets new ids. */
    assistant_output d;
    assert_int_equal(assistant_parse(text, strlen(text), TOOLS, 0, &r1, &d), 0);
    assert_string_not_equal(d.calls[0].id, a.calls[0].id);
    assert_string_not_equal(d.calls[0].id, a.calls[1].id);
    /* NULL: a fixed seed. */
    assistant_output e;
    assert_int_equal(assistant_parse(text, strlen(text), TOOLS, 0, NULL, &e), 0);
    assert_true(is_call_id(e.calls[0].id));
    assistant_output_free(&a);
    assistant_output_free(&b);
    assistant_output_free(&c);
    assistant_output_free(&d);
    assistant_output_free(&e);
}

/* ---- streaming ---------------------------------------------------------- */

static size_t safe(const char *s) { return assistant_stream_safe(s, strlen(s)); }

static void test_stream_safe(void **state) {
    (void)state;
    assert_int_equal(assistant_stream_safe("", 0), 0);
    assert_int_equal(assistant_stream_safe(NULL, 0), 0);
    assert_int_equal(safe("Hello"), 5);
    /* Partial markers at the end are held back. */
    assert_int_equal(safe("Hello <tool_c"), 6);
    assert_int_equal(safe("Hello <thi"), 6);
    assert_int_equal(safe("Hello </thi"), 6);
    assert_int_equal(safe("Hello <"), 6);
    assert_int_equal(safe("Hello </"), 6);
    assert_int_equal(safe("<t"), 0);
    assert_int_equal(safe("<tool_call"), 0);
    /* Complete markers stop the plain text. */
    assert_int_equal(safe("abc<tool_call>{\"name\""), 3);
    assert_int_equal(safe("abc<tool_call>"), 3);
    assert_int_equal(safe("<think>\nhm"), 0);
    assert_int_equal(safe("reasoning</think>\n\nx"), 9);
    assert_int_equal(safe("a <b> c < d </x> <tool"), 17);
    /* A '<' that cannot start a marker is plain. */
    assert_int_equal(safe("1 < 2"), 5);
    assert_int_equal(safe("x <tool_cal>"), 12);
    assert_int_equal(safe("</tool_call>"), 12);
    assert_int_equal(safe("<thinking"), 9);
    /* Split UTF-8 sequences are held back until complete. */
    assert_int_equal(safe("caf\xc3"), 3);
    assert_int_equal(safe("caf\xc3\xa9"), 5);
    assert_int_equal(safe("\xe2\x82"), 0);
    assert_int_equal(safe("\xe2\x82\xac"), 3);
    assert_int_equal(safe("ok \xf0\x9f\x98"), 3);
    assert_int_equal(safe("ok \xf0\x9f\x98\x80"), 7);
    assert_int_equal(safe("ab\xc3<tool"), 2);
    /* Invalid bytes never complete: they are not held. */
    assert_int_equal(safe("\xff"), 1);
    assert_int_equal(safe("a\x80"), 2);
    assert_int_equal(safe("\xc3x"), 2);

    /* Never decreases as the text grows. */
    const char *s = "Hi \xc3\xa9<thin <think>x</think> 1<2 \xf0\x9f\x98\x80 <tool_c <tool_call>{}</tool_call>";
    size_t n = strlen(s), prev = 0;
    for (size_t k = 0; k <= n; k++) {
        size_t v = assistant_stream_safe(s, k);
        if (v < prev || v > k) fail_msg("prefix %zu: %zu after %zu", k, v, prev);
        prev = v;
    }
    assert_int_equal(prev, 11); /* "Hi é<thin " */
}

/* ---- garbage ------------------------------------------------------------ */

static void check_invariants(const assistant_output *o) {
    assert_non_null(o->content);
    assert_true(o->n_calls >= 0);
    for (int i = 0; i < o->n_calls; i++) {
        assert_true(is_call_id(o->calls[i].id));
        assert_true(o->calls[i].name[0] != 0);
        cJSON *a = cJSON_Parse(o->calls[i].arguments);
        if (!cJSON_IsObject(a)) fail_msg("arguments not an object: %s", o->calls[i].arguments);
        cJSON_Delete(a);
    }
}

static void test_garbage(void **state) {
    (void)state;
    /* Non-UTF-8 bytes pass through untouched; the block is invalid. */
    const char *g = "\xff\xfe\x80 <tool_call>\x80\xc3(\xf5</tool_call> \xc3";
    assistant_output o = parse_with(g, TOOLS, 0);
    assert_string_equal(o.content, g + 0);
    assert_string_equal(o.error, "tool call 1: expected a JSON object or <function=...>");
    assistant_output_free(&o);
    o = parse_with("<tool_call>{\"name\": \"shell\", \"arguments\": {\"command\": \"\xff\xfe\"}}</tool_call>", TOOLS, 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 1);
    assistant_output_free(&o);

    /* NUL bytes: within JSON they make it invalid; content, reasoning and
     * string values drop them. */
    const char nul_json[] = "<tool_call>{\"name\": \"shell\"\0}</tool_call>";
    uint64_t rng = 1;
    assert_int_equal(assistant_parse(nul_json, sizeof nul_json - 1, TOOLS, 0, &rng, &o), 0);
    assert_string_equal(o.error, "tool call 1: not valid JSON at byte 16");
    assistant_output_free(&o);
    const char nul_text[] = "ab\0cd<tool_call>{\"name\": \"shell\"}</tool_call>";
    assert_int_equal(assistant_parse(nul_text, sizeof nul_text - 1, TOOLS, 0, &rng, &o), 0);
    assert_null(o.error);
    assert_int_equal(o.n_calls, 1);
    assert_string_equal(o.content, "abcd");
    assistant_output_free(&o);
    const char nul_think[] = "\0 \0</think>\0 x\0y <tool_call><function=f><parameter=p>a\0b</parameter></function></tool_call>";
    assert_int_equal(assistant_parse(nul_think, sizeof nul_think - 1, NULL, 1, &rng, &o), 0);
    assert_null(o.error);
    assert_null(o.reasoning);
    assert_string_equal(o.content, "xy");
    assert_call(&o, 0, "f", "{\"p\": \"ab\"}");
    assistant_output_free(&o);

    /* A text with no NUL after it (exact-size buffer: ASan checks the reads). */
    const char *exact_src = "<think>r</think><tool_call>\n<function=shell>\n<parameter=command>\n1\n</parameter>\n"
                            "</function>\n</tool_call>";
    size_t n = strlen(exact_src);
    for (size_t k = 0; k <= n; k++) {
        char *buf = malloc(k ? k : 1);
        assert_non_null(buf);
        memcpy(buf, exact_src, k);
        assert_int_equal(assistant_parse(buf, k, TOOLS, 0, &rng, &o), 0);
        check_invariants(&o);
        assistant_output_free(&o);
        assert_true(assistant_stream_safe(buf, k) <= k);
        free(buf);
    }

    /* Random soups of markers, JSON and XML pieces and bytes. */
    static const char *const parts[] = {
        "<tool_call>", "</tool_call>", "<think>", "</think>", "<function=", "</function>", "<parameter=",
        "</parameter>", "get_weather", "shell", "city", "days", ">", "<", "\n", " ", "{", "}", "[", "]", "\"",
        ":", ",", "\"name\"", "\"arguments\"", "\"get_weather\"", "{\"city\": \"x\"}", "3", "true", "null", "\\",
        "\xff", "\xc3", "\xa9", "\xf0\x9f", "\0"};
    const size_t n_parts = sizeof parts / sizeof *parts;
    uint64_t seed = 12345;
    char *buf = malloc(4096);
    assert_non_null(buf);
    for (int it = 0; it < 20000; it++) {
        size_t len = 0;
        int pieces = 1 + it % 40;
        for (int k = 0; k < pieces; k++) {
            float u = rand_uniform(&seed) * 0.5f + 0.5f; /* [0, 1) */
            size_t pi = (size_t)(u * (float)n_parts) % n_parts;
            size_t pl = pi == n_parts - 1 ? 1 : strlen(parts[pi]);
            if (len + pl > 4096) break;
            memcpy(buf + len, parts[pi], pl);
            len += pl;
        }
        const char *tools = it % 3 == 0 ? NULL : it % 3 == 1 ? TOOLS : "[{\"name\": \"shell\"}]";
        char *exact = malloc(len ? len : 1);
        assert_non_null(exact);
        memcpy(exact, buf, len);
        assert_int_equal(assistant_parse(exact, len, tools, it & 1, &rng, &o), 0);
        check_invariants(&o);
        if (tools && tools != TOOLS)
            for (int i = 0; i < o.n_calls; i++) assert_string_equal(o.calls[i].name, "shell");
        assistant_output_free(&o);
        size_t sv = assistant_stream_safe(exact, len);
        assert_true(sv <= len);
        assert_null(memmem(exact, sv, "<tool_call>", 11));
        free(exact);
    }
    free(buf);
}

/* cJSON allocations fail one at a time (the n-th of a run), through its
 * hooks: each run either succeeds with a sane output or returns -1 with
 * nothing held; LeakSanitizer checks that nothing leaks. */
static long alloc_count, alloc_fail_at;
static void *failing_malloc(size_t n) { return ++alloc_count == alloc_fail_at ? NULL : malloc(n); }

static void test_cjson_alloc_failures(void **state) {
    (void)state;
    const char *text = "<think>r</think>A<tool_call>{\"name\": \"shell\", \"arguments\": \"{\\\"command\\\": \\\"ls\\\"}\"}"
                       "</tool_call>B<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                       "<parameter=days>\n[3]\n</parameter>\n</function>\n</tool_call><tool_call>{\"name\": \"x\"}</tool_call>";
    int failed = 0, succeeded = 0;
    for (long k = 1;; k++) {
        cJSON_Hooks hooks = {.malloc_fn = failing_malloc, .free_fn = free};
        cJSON_InitHooks(&hooks);
        alloc_count = 0;
        alloc_fail_at = k;
        assistant_output o;
        uint64_t rng = 5;
        int rc = assistant_parse(text, strlen(text), TOOLS, 0, &rng, &o);
        long used = alloc_count;
        cJSON_InitHooks(NULL);
        if (rc == 0) {
            check_invariants(&o);
            succeeded++;
        } else {
            assert_int_equal(rc, -1);
            assert_null(o.content);
            assert_null(o.calls);
            failed++;
        }
        int complete = used < k; /* no allocation failed */
        if (complete) {
            assert_int_equal(rc, 0);
            assert_int_equal(o.n_calls, 2);
            assert_string_equal(o.error, "tool call 3: unknown function 'x' (tools: get_weather, shell)");
        }
        assistant_output_free(&o);
        if (complete) break;
    }
    printf("  %d runs returned -1, %d parsed (a failed cJSON parse looks like invalid JSON)\n", failed, succeeded);
    assert_true(failed > 0);
}

static void test_linear_time(void **state) {
    (void)state;
    /* 100k unterminated blocks, then 100k blocks sharing one far-away close:
     * quadratic scanning would take minutes. */
    size_t reps = 100000, n = reps * 11;
    char *s = malloc(n + 13);
    assert_non_null(s);
    for (size_t i = 0; i < reps; i++) memcpy(s + i * 11, "<tool_call>", 11);
    assistant_output o;
    uint64_t rng = 3;
    assert_int_equal(assistant_parse(s, n, TOOLS, 0, &rng, &o), 0);
    assert_int_equal(o.n_calls, 0);
    assert_int_equal(strlen(o.content), n);
    assert_non_null(strstr(o.error, "; 99990 more invalid tool calls"));
    assistant_output_free(&o);
    memcpy(s + n, "</tool_call>", 12);
    assert_int_equal(assistant_parse(s, n + 12, TOOLS, 0, &rng, &o), 0);
    assert_int_equal(o.n_calls, 0);
    assert_non_null(strstr(o.error, "; 99990 more invalid tool calls"));
    assistant_output_free(&o);
    assert_int_equal(assistant_stream_safe(s, n), 0);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_plain),
        cmocka_unit_test(test_json_single),
        cmocka_unit_test(test_json_several_with_content),
        cmocka_unit_test(test_json_arguments_forms),
        cmocka_unit_test(test_tools_lists),
        cmocka_unit_test(test_xml_single),
        cmocka_unit_test(test_xml_schema_typing),
        cmocka_unit_test(test_xml_without_tools),
        cmocka_unit_test(test_mixed_forms),
        cmocka_unit_test(test_reasoning),
        cmocka_unit_test(test_invalid_blocks),
        cmocka_unit_test(test_invalid_json_calls),
        cmocka_unit_test(test_invalid_xml_calls),
        cmocka_unit_test(test_invalid_among_valid),
        cmocka_unit_test(test_call_ids),
        cmocka_unit_test(test_stream_safe),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_cjson_alloc_failures),
        cmocka_unit_test(test_linear_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
