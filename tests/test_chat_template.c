/* Chat templates: fm_chat_template_* and the Jinja interpreter behind it
 * (src/text/chat_template.c, src/text/jinja_*.c).
 *   - the Qwen3 reference renderings of tests/data/chat (transformers 5.17
 *     apply_chat_template on conversations.json), byte for byte
 *   - small templates per feature (whitespace control, loops, scoping,
 *     indexing, filters, tojson, string methods, undefined values,
 *     operators, literals) rendered against one small conversation; each
 *     expected string is what Jinja2 3.1 renders with transformers' settings
 *     (trim_blocks, lstrip_blocks, the immutable sandbox, its tojson)
 *   - numbers from the messages JSON keep int/float as Python reads them
 *   - the variables: tools is None when not given, enable_thinking only when
 *     asked for, bos/eos tokens, add_generation_prompt
 *   - errors: syntax (with line and column), raise_exception (the template's
 *     own words), runtime type errors (with the line), bad JSON
 *   - limits: endless loops, deep nesting, huge output, self-containing
 *     values end in an error, never a crash or a leak
 * Data files are found under FM_TEST_DATA (default tests/data). */
#include "test_util.h"

#include "core/error.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

static const char *data_dir(void) {
    const char *d = getenv("FM_TEST_DATA");
    return d && *d ? d : "tests/data";
}

static char *read_text(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir(), name);
    return read_text_file(path);
}

static cJSON *read_json(const char *name) {
    char *text = read_text(name);
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (!json) fail_msg("%s: invalid JSON", name);
    return json;
}

/* Prints where got and want first differ, with some context around it. */
static void show_difference(const char *label, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    printf("  %s: first difference at byte %zu (got %zu bytes, want %zu)\n", label, i, strlen(got), strlen(want));
    printf("    got:  \"%.80s\"\n", got + from);
    printf("    want: \"%.80s\"\n", want + from);
}

/* The conversation the small templates render against. */
static const char *const MESSAGES =
    "[{\"role\": \"system\", \"content\": \"Sys\"}, {\"role\": \"user\", \"content\": \"Hi \\\"there\\\" \xc3\xa9\"},"
    " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\":"
    " {\"a\": 1, \"b\": [1.5, true, null, 2.0]}}}]}]";

/* Renders; on failure returns NULL with the status in *status. */
static char *render_full(const char *source, const char *messages, const char *tools, const fm_chat_options *options,
                         fm_status *status) {
    fm_chat_template *t = NULL;
    char *out = NULL;
    fm_status st = fm_chat_template_new(source, &t);
    if (!st) {
        st = fm_chat_template_render(t, messages, tools, options, &out);
        fm_chat_template_free(t);
    }
    if (status) *status = st;
    return st ? NULL : out;
}

static char *render_ok(const char *source, const char *messages) {
    fm_status st;
    char *out = render_full(source, messages, NULL, NULL, &st);
    if (!out) fail_msg("template %s failed: %s", source, fm_last_error());
    return out;
}

static void expect_render(const char *source, const char *want) {
    char *got = render_ok(source, MESSAGES);
    if (strcmp(got, want)) {
        printf("template: %s\n", source);
        show_difference("rendering", got, want);
        free(got);
        fail_msg("rendering differs");
    }
    free(got);
}

/* Expects failure with `status` and a message containing each needle. */
static void expect_error(const char *source, const char *messages, fm_status status, const char *needle1,
                         const char *needle2) {
    fm_status st;
    char *out = render_full(source, messages ? messages : MESSAGES, NULL, NULL, &st);
    if (out) {
        printf("template: %s\nrendered: %s\n", source, out);
        free(out);
        fail_msg("expected an error");
    }
    const char *msg = fm_last_error();
    if (st != status) fail_msg("%s: status %s, want %s (%s)", source, fm_status_name(st), fm_status_name(status), msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("%s: message \"%s\" lacks \"%s\"", source, msg, needle1);
    if (needle2 && !strstr(msg, needle2)) fail_msg("%s: message \"%s\" lacks \"%s\"", source, msg, needle2);
}

typedef struct {
    const char *source, *want;
} template_case;

#define RUN_CASES(cases)                                                                                               \
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases)[0]; i++) expect_render((cases)[i].source, (cases)[i].want)

/* ---- Qwen3 references ------------------------------------------------------------- */

static void test_qwen3_references(void **state) {
    (void)state;
    cJSON *config = read_json("tokenizers/qwen3/tokenizer_config.json");
    cJSON *convs = read_json("chat/conversations.json");
    cJSON *refs = read_json("chat/qwen3_chat_refs.json");
    const cJSON *source = cJSON_GetObjectItem(config, "chat_template");
    assert_true(cJSON_IsString(source));
    fm_chat_template *t;
    assert_int_equal(fm_chat_template_new(source->valuestring, &t), FM_OK);
    const cJSON *renderings = cJSON_GetObjectItem(refs, "renderings");
    int checked = 0, failed = 0;
    const cJSON *conv;
    cJSON_ArrayForEach(conv, convs) {
        const char *name = cJSON_GetObjectItem(conv, "name")->valuestring;
        const cJSON *want = NULL, *r;
        cJSON_ArrayForEach(r, renderings) if (!strcmp(cJSON_GetObjectItem(r, "name")->valuestring, name)) want =
            cJSON_GetObjectItem(r, "text");
        if (!want) fail_msg("no reference rendering for %s", name);
        char *messages = cJSON_PrintUnformatted(cJSON_GetObjectItem(conv, "messages"));
        const cJSON *tools_item = cJSON_GetObjectItem(conv, "tools");
        char *tools = tools_item ? cJSON_PrintUnformatted(tools_item) : NULL;
        const cJSON *think = cJSON_GetObjectItem(conv, "enable_thinking");
        fm_chat_options options = {
            .add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(conv, "add_generation_prompt")),
            .enable_thinking = think ? cJSON_IsTrue(think) : -1,
            .eos_token = "<|im_end|>",
        };
        char *got = NULL;
        fm_status st = fm_chat_template_render(t, messages, tools, &options, &got);
        if (st) {
            printf("  %s: %s\n", name, fm_last_error());
            failed++;
        } else if (strcmp(got, want->valuestring)) {
            show_difference(name, got, want->valuestring);
            failed++;
        }
        checked++;
        free(got);
        free(messages);
        free(tools);
    }
    printf("  %d Qwen3 renderings checked, %d differ\n", checked, failed);
    assert_int_equal(checked, cJSON_GetArraySize(renderings));
    assert_int_equal(failed, 0);
    fm_chat_template_free(t);
    cJSON_Delete(config);
    cJSON_Delete(convs);
    cJSON_Delete(refs);
}

/* ---- features, against Jinja2's renderings -------------------------------------------- */

/* Each pair: a template and what Jinja2 3.1 renders from it against MESSAGES. */
static const template_case whitespace_cases[] = {
    {"{{- ' a ' -}}   {{ 'b' }}   {{- 'c' }}", " a bc"},
    {"  {% if true %}\n  x\n  {% endif %}\ny", "  x\ny"},
    {"{% if true %}\nx{% endif %}\n\nz", "x\nz"},
    {"  {%- if true -%}  \n x \n  {%- endif -%}  \n y", "xy"},
    {"  {%+ if true %}x{% endif %}", "  x"},
    {"{% if true +%}\nx{% endif %}", "\nx"},
    {"a {# comment #}\nb\n  {# own line #}\nc", "a b\nc"},
    {"a {#- trimmed -#} b", "ab"},
    {"{% raw %}{{ x }}{% if %}{% endraw %}", "{{ x }}{% if %}"},
    {"  {%- raw -%}  {{ kept }}  {%- endraw -%}  after", "{{ kept }}after"},
    {"{{ 'a' }}\n{{ 'b' }}\n", "a\nb"},
    {"x {% if true %} y {% endif %} z", "x  y  z"},
    {"\n  {% for i in [1, 2] %}\n    {{ i }}\n  {% endfor %}\n", "\n    1\n    2\n"},
};

static const template_case loops_cases[] = {
    {"{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first "
     "}}{{ loop.last }}{{ loop.length }};{% endfor %}",
     "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;"},
    {"{% for m in messages %}{{ (loop.previtem or {}).role }}>{{ m.role }}>{{ (loop.nextitem or {}).role }}|{{ "
     "loop.cycle('odd', 'even') }};{% endfor %}",
     ">system>user|odd;system>user>assistant|even;user>assistant>|odd;"},
    {"{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1, 2, 3, 4] if x is even %}{{ x }}/{{ loop.length "
     "}}{% endfor %}",
     "empty|2/24/2"},
    {"{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }},{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% "
     "endfor %}",
     "b=1,a=2,xy"},
    {"{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}{% for c in 'héllo' %}[{{ c }}]{% endfor %}",
     "37[h][é][l][l][o]"},
    {"{% for i in range(6) %}{% if i == 4 %}{% break %}{% endif %}{% if i is odd %}{% continue %}{% endif %}{{ i }}{% "
     "endfor %}",
     "02"},
    {"{% for i in range(2) %}{% for j in range(3) %}{{ i }}{{ j }}{{ loop.index }} {% endfor %}{{ loop.index }};{% "
     "endfor %}",
     "001 012 023 1;101 112 123 2;"},
    {"{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(5, 0, -2) | list }}", "[0, 1, 2][1, 3, 5][5, 3, 1]"},
};

static const template_case scoping_cases[] = {
    {"{% set x = 'outer' %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{{ x }},{% endfor %}{{ x }}",
     "outer1,outer2,outer"},
    {"{% if true %}{% set y = 'from if' %}{% endif %}{{ y }}", "from if"},
    {"{% set ns = namespace(count=0, last=none) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% set "
     "ns.last = m.role %}{% endfor %}{{ ns.count }} {{ ns.last }}",
     "3 assistant"},
    {"{% set a, b = 1, 'two' %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}", "1two(1, 2)"},
    {"{% set block %}captured {{ messages | length }}{% endset %}{{ block }}|{{ block | length }}", "captured 3|10"},
    {"{% set up | upper %}shout{% endset %}{{ up }}{% with w = 'inner' %}{{ w }}{% endwith %}{{ w is defined }}",
     "SHOUTinnerFalse"},
    {"{% macro tag(name, body='') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}{{ tag('a') }}{{ tag('b', "
     "body='x') }}{{ tag('c', 1) }}",
     "<a></a><b>x</b><c>1</c>"},
    {"{% filter upper %}hello {{ messages[0].content }}{% endfilter %}", "HELLO SYS"},
};

static const template_case indexing_cases[] = {
    {"{{ messages[0].role }}{{ messages[0]['role'] }}{{ messages[-1].role }}{{ messages.1.role }}{{ "
     "messages[0].missing }}|{{ messages[9] }}|",
     "systemsystemassistantuser||"},
    {"{{ messages[::-1] | map(attribute='role') | join(',') }}|{{ messages[1:] | length }}|{{ messages[:1][0].content "
     "}}",
     "assistant,user,system|2|Sys"},
    {"{{ 'abcdef'[1:4] }} {{ 'abcdef'[::2] }} {{ 'abcdef'[-2:] }} {{ 'abcdef'[:-2] }} {{ 'héllo'[::-1] }} {{ "
     "'héllo'[1] }} {{ 'abc'[5:] }}|",
     "bcd ace ef abcd olléh é |"},
    {"{{ [1, 2, 3, 4, 5][1::2] }} {{ [1, 2, 3][-10:10] }} {{ [1, 2, 3][::-2] }} {{ (1, 2, 3)[1:] }}",
     "[2, 4] [1, 2, 3] [3, 1] (2, 3)"},
    {"{{ messages[2].tool_calls[0].function.arguments.b[0] }} {{ messages[2].tool_calls[0]['function']['name'] }}",
     "1.5 f"},
    {"{{ {'items': 5}['items'] }} {{ {'a': {'b': [10, 20]}}.a.b.1 }}", "5 20"},
};

static const template_case filters_cases[] = {
    {"{{ messages | length }}{{ 'héllo' | length }}{{ {} | length }}{{ 'héllo' | count }}", "3505"},
    {"{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'MiXed' | upper }}{{ 'MiXed' | lower }}|{{ 'hello world' | "
     "capitalize }}|{{ \"they're bill's-friend\" | title }}",
     "x y|hi|MIXEDmixed|Hello world|They're Bill's-Friend"},
    {"{{ [3, 1, 2] | first }}{{ [3, 1, 2] | last }}{{ 'abc' | first }}{{ [] | first }}|{{ [1, 2, 3] | join('-') }}{{ "
     "['a', none, 1.5] | join }}",
     "32a|1-2-3aNone1.5"},
    {"{{ undefined_name | default('dflt') }}|{{ none | default('dflt') }}|{{ '' | default('dflt', true) }}|{{ 0 | "
     "default('dflt', boolean=true) }}",
     "dflt|None|dflt|dflt"},
    {"{{ 12 | string }}{{ 1.5 | string }}{{ none | string }}{{ '42' | int + 1 }}{{ ' 4.7 ' | int }}{{ 'x' | int }}{{ "
     "'x' | int(7) }}{{ '2.5' | float }}{{ 3 | float }}",
     "121.5None434072.53.0"},
    {"{{ 'ab' | list }}{{ {'k': 1} | list }}{{ {'k': 1, 'j': 2} | items | list }}{{ 'a-b-c' | replace('-', '+') }}{{ "
     "'aaa' | replace('a', 'b', 2) }}",
     "['a', 'b']['k'][('k', 1), ('j', 2)]a+b+cbba"},
    {"{{ ['b', 'A', 'c'] | sort }}{{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}{{ [3, 1, 2] | sort(reverse=true) "
     "}}{{ ['b', 'A', 'a', 'B'] | unique | list }}",
     "['A', 'b', 'c']['A', 'b', 'c'][3, 2, 1]['b', 'A']"},
    {"{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') }}{{ [1, 5, 3] | max }}{{ [1, 5, 3] | min }}{{ [1, 2, 3] | sum "
     "}}{{ [1, 2] | reverse | list }}{{ 'abc' | reverse }}",
     "[{'n': 1}, {'n': 2}]516[2, 1]cba"},
    {"{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}{{ messages | "
     "rejectattr('content') | map(attribute='role') | list }}",
     "['Hi \"there\" é']['assistant']"},
    {"{{ [1, 2, 3, 4] | select('odd') | list }}{{ [1, 2, 3, 4] | reject('divisibleby', 2) | list }}{{ ['a', 'b'] | "
     "map('upper') | join }}{{ [{'a': 1}, {}] | map(attribute='a', default=0) | list }}",
     "[1, 3][1, 3]AB[1, 0]"},
    {"{{ 'line1\nline2\n\nline4' | indent(2) }}|{{ 'x\ny' | indent(3, true) }}|{{ '<a & \"b\">' | e }}|{{ -3 | abs "
     "}}{{ 2.5 | round }}{{ 2.675 | round(2) }}|{{ 'one two_3' | wordcount }}",
     "line1\n  line2\n\n  line4|   x\n   y|&lt;a &amp; &#34;b&#34;&gt;|32.02.67|2"},
    {"{{ {'b': 1, 'A': 2} | dictsort }}{{ [{'x': 1}, {'x': 2}] | sum(attribute='x') }}{{ '%s=%d' | format('a', 3) }}{{ "
     "'ab' | center(6) }}|",
     "[('A', 2), ('b', 1)]3a=3  ab  |"},
};

static const template_case tojson_cases[] = {
    {"{{ 'quote \" backslash \\\\ newline \n tab \t bell \\x07 del \\x7f é 🙂' | tojson }}",
     "\"quote \\\" backslash \\\\ newline \\n tab \\t bell \\u0007 del \177 é 🙂\""},
    {"{{ messages[2] | tojson }}", "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": "
                                   "{\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1.5, true, null, 2.0]}}}]}"},
    {"{{ {'int': 1, 'float': 1.0, 'big': 1e100, 'small': 1.5e-7, 'neg': -0.0, 'frac': 0.1, 'none': none, 'list': "
     "[true, false]} | tojson }}",
     "{\"int\": 1, \"float\": 1.0, \"big\": 1e+100, \"small\": 1.5e-07, \"neg\": -0.0, \"frac\": 0.1, \"none\": null, "
     "\"list\": [true, false]}"},
    {"{{ {'a': [1, {'b': none}], 'c': {}, 'd': []} | tojson(indent=2) }}",
     "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": []\n}"},
    {"{{ [1, [2]] | tojson(indent='\\t') }}{{ {'z': 1, 'a': 2} | tojson(sort_keys=true) }}{{ {'a': 1} | "
     "tojson(separators=(',', ':')) }}{{ 'é' | tojson(ensure_ascii=true) }}",
     "[\n\t1,\n\t[\n\t\t2\n\t]\n]{\"a\": 2, \"z\": 1}{\"a\":1}\"\\u00e9\""},
    {"{{ {1: 'int key', true: 'bool key', none: 'none key', 2.5: 'float key'} | tojson }}",
     "{\"1\": \"bool key\", \"null\": \"none key\", \"2.5\": \"float key\"}"},
};

static const template_case strings_cases[] = {
    {"{{ 'Hello'.startswith('He') }}{{ 'Hello'.startswith(('x', 'H')) }}{{ 'Hello'.endswith('lo') }}{{ "
     "'Hello'.endswith('He') }}",
     "TrueTrueTrueFalse"},
    {"{{ ' a  b '.split() }}{{ 'a,b,,c'.split(',') }}{{ 'a,b,c'.split(',', 1) }}{{ 'a b c'.rsplit(None, 1) }}{{ "
     "'a,b,c'.rsplit(',', 1) }}{{ 'a\nb\n'.splitlines() }}",
     "['a', 'b']['a', 'b', '', 'c']['a', 'b,c']['a b', 'c']['a,b', 'c']['a', 'b']"},
    {"{{ '  x  '.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ '\n\nx\n'.strip('\n') }}|{{ "
     "'xyxzy'.lstrip('xy') }}|{{ 'xyzzy'.rstrip('yz') }}",
     "x|x  |  x|x|zy|x"},
    {"{{ 'a-b-c'.replace('-', '') }}{{ 'a-b-c'.replace('-', '+', 1) }}{{ 'ab'.replace('', '.') }}{{ 'MiXed'.upper() "
     "}}{{ 'MiXed'.lower() }}{{ \"it's a TEST\".title() }}{{ 'ß'.upper() }}",
     "abca+b-c.a.b.MIXEDmixedIt'S A TestSS"},
    {"{{ 'abcabc'.find('c') }}{{ 'abcabc'.rfind('c') }}{{ 'abc'.find('z') }}{{ 'abcabc'.count('bc') }}{{ ', "
     "'.join(['a', 'b']) }}{{ '12'.isdigit() }}{{ 'ab'.isalpha() }}{{ ' '.isspace() }}",
     "25-12a, bTrueTrueTrue"},
    {"{{ 'x'.center(5) }}|{{ '42'.zfill(5) }}|{{ 'a=b=c'.partition('=') }}|{{ 'prefix-x'.removeprefix('prefix-') }}|{{ "
     "'Hi {}, {name}!'.format('you', name='me') }}",
     "  x  |00042|('a', '=', 'b=c')|x|Hi you, me!"},
    {"{{ 'a</think>b</think>c'.split('</think>')[-1] }}|{{ "
     "'\n\n<think>\nr\n</think>\n\nans'.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') }}",
     "c|r"},
};

static const template_case undefined_cases[] = {
    {"[{{ nothing }}][{{ messages[0].nothing }}][{{ none.attr }}][{{ nothing is defined }}][{{ nothing is undefined "
     "}}][{{ nothing | length }}][{{ nothing == nothing }}]",
     "[][][][False][True][0][True]"},
    {"{% if nothing %}yes{% else %}no{% endif %}{% for x in nothing %}never{% endfor %}{{ 'x' in nothing }}{{ nothing "
     "| list }}{{ nothing ~ 'cat' }}{{ nothing | string | length }}",
     "noFalse[]cat0"},
    {"{{ 'then' if true }}[{{ 'then' if false }}]{{ 'a' if false else 'b' }}{{ (nothing or 'fallback') }}{{ "
     "messages[0].get('missing', 'dflt') }}{{ messages[0].get('missing') }}",
     "then[]bfallbackdfltNone"},
};

static const template_case operators_cases[] = {
    {"{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 "
     "// 2 }} {{ 1 + 1.5 }} {{ true + 1 }} {{ 2 * 3 - 1 }}",
     "3 3 -4 3.5 2.0 2 1024 0.5 3.0 2.5 2 5"},
    {"{{ 'ab' + 'cd' }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ [0] * 3 }} {{ 'a' ~ 1 ~ none ~ 1.0 ~ true }} {{ -(3) }} {{ "
     "1e3 }} {{ 1_000 }} {{ 0x1f }}",
     "abcd abab [1, 2] [0, 0, 0] a1None1.0True -3 1000.0 1000 31"},
    {"{{ 1 == 1.0 }}{{ 'a' != 'b' }}{{ [1, 2] < [1, 3] }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 'b' >= 'a' }}{{ none == none "
     "}}{{ (1, 2) == [1, 2] }}",
     "TrueTrueTrueTrueFalseTrueTrueFalse"},
    {"{{ not true }}{{ true and 'x' }}{{ false or 'y' }}{{ 0 or '' }}|{{ 'ell' in 'hello' }}{{ 'z' not in ['a'] }}{{ "
     "'role' in messages[0] }}{{ 2 in [1, 2] }}",
     "Falsexy|TrueTrueTrueTrue"},
    {"{{ 1 is number }}{{ 1.0 is float }}{{ true is boolean }}{{ 1 is integer }}{{ true is integer }}{{ 'x' is string "
     "}}{{ messages[0] is mapping }}{{ messages is iterable }}{{ none is none }}{{ 3 is odd }}{{ 4 is divisibleby 2 "
     "}}{{ 3 is gt 2 }}{{ 'a' is in 'abc' }}{{ messages[2].content is none }}{{ false is false }}{{ true is true }}",
     "TrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue"},
};

static const template_case literals_cases[] = {
    {"{{ \"double \\\"quoted\\\"\" }}{{ 'single \\'quoted\\'' }}{{ 'tab\\there' }}{{ 'uni \\u00e9 \\x41' }}{{ 'kept "
     "\\d' }}{{ 'adjacent' ' ' \"strings\" }}",
     "double \"quoted\"single 'quoted'tab\thereuni é Akept \\dadjacent strings"},
    {"{{ none }}{{ None }}{{ true }}{{ True }}{{ false }}{{ 1.0 }}{{ 0.1 + 0.2 }}{{ 1e16 }}{{ 1e-5 }}{{ 123.0 }}{{ "
     "-0.0 }}",
     "NoneNoneTrueTrueFalse1.00.300000000000000041e+161e-05123.0-0.0"},
    {"{{ [1, 'a', none, 1.5, {'k': \"it's\"}, (1,), ()] }}{{ {'a': 1, 'b': [true]} }}{{ [\"a'b\", 'a\"b', \"a'\\\"b\", "
     "\"\n é \\x01\"] }}",
     "[1, 'a', None, 1.5, {'k': \"it's\"}, (1,), ()]{'a': 1, 'b': [True]}[\"a'b\", 'a\"b', 'a\\'\"b', '\\n é \\x01']"},
    {"{{ 'a\\é' }}{{ 'b\\🙂' }}{{ 'c\\\\é' }}", "a\\xe9b\\U0001f642c\\é"},
};

static const template_case regressions_cases[] = {
    {"{% if false | safe %}safe makes text{% endif %}|{{ 1 | safe | last }}|{{ false | map('string') | list }}{{ none "
     "| select | list }}{{ 0 | reject | list }}",
     "safe makes text|1|[][][]"},
    {"{{ 0.5 is odd }}{{ 0.5 is even }}{{ 3.0 is odd }}{{ -3 is odd }}|{% set y %}{% set leaked = 1 %}{% endset %}{{ "
     "leaked is defined }}|{% filter upper %}{% set leaked2 = 1 %}{% endfilter %}{{ leaked2 is defined }}",
     "FalseFalseTrueTrue|False|False"},
    {"{{ '%s and %r' % ('a', 'b') }}|{{ '%d%%' % 42.9 }}|{{ 'no args' % [] }}|{{ '%s' % [1, 2] }}|{{ 'x=%s' | "
     "format(nothing) }}|{{ [nothing, nothing, 1] | unique | list | length }}",
     "a and 'b'|42%|no args|[1, 2]|x=|2"},
};

static void test_whitespace(void **state) {
    (void)state;
    RUN_CASES(whitespace_cases);
    /* Jinja reads \r\n and \r as \n and drops one final newline */
    expect_render("a\r\nb\rc{% if true %}\r\nd{% endif %}\n", "a\nb\ncd");
}
static void test_loops(void **state) {
    (void)state;
    RUN_CASES(loops_cases);
}
static void test_scoping(void **state) {
    (void)state;
    RUN_CASES(scoping_cases);
}
static void test_indexing(void **state) {
    (void)state;
    RUN_CASES(indexing_cases);
}
static void test_filters(void **state) {
    (void)state;
    RUN_CASES(filters_cases);
}
static void test_tojson(void **state) {
    (void)state;
    RUN_CASES(tojson_cases);
}
static void test_string_methods(void **state) {
    (void)state;
    RUN_CASES(strings_cases);
}
static void test_undefined(void **state) {
    (void)state;
    RUN_CASES(undefined_cases);
}
static void test_operators(void **state) {
    (void)state;
    RUN_CASES(operators_cases);
}
static void test_literals(void **state) {
    (void)state;
    RUN_CASES(literals_cases);
}
/* Jinja details found by comparing random templates with Jinja2 */
static void test_regressions(void **state) {
    (void)state;
    RUN_CASES(regressions_cases);
}

/* Python's json.loads: 1 stays an int, 1.0 and 1e2 are floats, large ints stay
 * exact, a repeated key keeps its first place and its last value. */
static void test_json_numbers(void **state) {
    (void)state;
    const char *messages = "[{\"role\":\"user\",\"content\":\"x \\u00e9 \\ud83d\\ude42\",\"n\":1,\"f\":1.0,\"e\":1e2,"
                           "\"neg\":-0,\"big\":-9007199254740993,\"a\":1,\"b\":2,\"a\":3}]";
    char *got = render_ok("{{ messages[0].n }} {{ messages[0].f }} {{ messages[0].e }} {{ messages[0].neg }} "
                          "{{ messages[0].big }} {{ messages[0].content }}|{{ messages[0] | tojson }}",
                          messages);
    const char *want = "1 1.0 100.0 0 -9007199254740993 x \xc3\xa9 \xf0\x9f\x99\x82|{\"role\": \"user\", \"content\": "
                       "\"x \xc3\xa9 \xf0\x9f\x99\x82\", \"n\": 1, \"f\": 1.0, \"e\": 100.0, \"neg\": 0, \"big\": "
                       "-9007199254740993, \"a\": 3, \"b\": 2}";
    if (strcmp(got, want)) show_difference("numbers", got, want);
    assert_string_equal(got, want);
    free(got);
}

static void test_variables(void **state) {
    (void)state;
    const char *probe =
        "{{ tools is none }}{{ tools is defined }}|{{ documents is none }}|{{ enable_thinking is defined }}|"
        "{{ add_generation_prompt }}|{{ bos_token is defined }}{{ eos_token is defined }}";
    /* transformers passes tools=None (defined, None) when there are none */
    fm_status st;
    char *got = render_full(probe, "[]", NULL, NULL, &st);
    assert_non_null(got);
    assert_string_equal(got, "TrueTrue|True|False|False|FalseFalse");
    free(got);
    got = render_full(probe, "[]", "null", NULL, &st);
    assert_non_null(got);
    assert_string_equal(got, "TrueTrue|True|False|False|FalseFalse");
    free(got);
    fm_chat_options options = {
        .add_generation_prompt = 1, .enable_thinking = 0, .bos_token = "<s>", .eos_token = "</s>"};
    got = render_full(
        "{{ tools | tojson }}|{{ enable_thinking }}|{{ add_generation_prompt }}|{{ bos_token }}{{ eos_token }}", "[]",
        "[{\"type\": \"function\"}]", &options, &st);
    assert_non_null(got);
    assert_string_equal(got, "[{\"type\": \"function\"}]|False|True|<s></s>");
    free(got);
    options.enable_thinking = 1;
    got = render_full("{{ enable_thinking }}", "[]", NULL, &options, &st);
    assert_non_null(got);
    assert_string_equal(got, "True");
    free(got);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void test_syntax_errors(void **state) {
    (void)state;
    static const struct {
        const char *source;
        fm_status status;
        const char *where, *what;
    } cases[] = {
        {"{% if x %}", FM_ERR_FORMAT, "line 1 column 11", "not closed by '{% endif %}'"},
        {"{{ 1 + }}", FM_ERR_FORMAT, "line 1 column 8", "expected an expression, got '}}'"},
        {"line one\n  {% for %}", FM_ERR_FORMAT, "line 2 column 10", "expected a name to assign to"},
        {"{% endif %}", FM_ERR_FORMAT, "line 1 column 4", "unexpected 'endif'"},
        {"a\nb\n{% for x in y %}{% endif %}{% endfor %}", FM_ERR_FORMAT, "line 3 column 20",
         "inside the 'for' opened at line 3"},
        {"{{ 'abc }}", FM_ERR_FORMAT, "line 1 column 4", "unterminated string"},
        {"{# never closed", FM_ERR_FORMAT, "line 1 column 1", "never closed"},
        {"{{ x", FM_ERR_FORMAT, "line 1 column 1", "never closed"},
        {"{% raw %}", FM_ERR_FORMAT, "line 1 column 1", "endraw"},
        {"{% break %}", FM_ERR_FORMAT, "line 1 column 4", "outside a for loop"},
        {"{{ (1 }}", FM_ERR_FORMAT, "line 1 column 7", "expected ')'"},
        {"{{ x | }}", FM_ERR_FORMAT, "line 1 column 8", "expected a name"},
        {"{% set 1 = 2 %}", FM_ERR_FORMAT, "line 1 column 8", "assign"},
        {"{% macro m(a=1, b) %}{% endmacro %}", FM_ERR_FORMAT, "line 1 column 18", "default"},
        {"{{ \"\\x4\" }}", FM_ERR_FORMAT, "line 1 column 4", "escape"},
        {"{{ 99999999999999999999 }}", FM_ERR_FORMAT, "line 1 column 4", "too large"},
        {"{{ @ }}", FM_ERR_FORMAT, "line 1 column 4", "unexpected character '@'"},
        {"{{ f(a=1, 2) }}", FM_ERR_FORMAT, "line 1 column 11", "positional argument after a keyword"},
        {"{% foo %}", FM_ERR_FORMAT, "line 1 column 4", "unknown tag 'foo'"},
        {"\n{% include 'other.jinja' %}", FM_ERR_UNSUPPORTED, "line 2 column 4", "include"},
        {"{% for x in y recursive %}{% endfor %}", FM_ERR_UNSUPPORTED, "line 1 column 15", "recursive"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fm_chat_template *t = (fm_chat_template *)&t; /* must be reset to NULL */
        fm_status st = fm_chat_template_new(cases[i].source, &t);
        const char *msg = fm_last_error();
        if (st != cases[i].status)
            fail_msg("%s: status %s, want %s (%s)", cases[i].source, fm_status_name(st),
                     fm_status_name(cases[i].status), msg);
        assert_null(t);
        if (!strstr(msg, cases[i].where) || !strstr(msg, cases[i].what))
            fail_msg("%s: message \"%s\" lacks \"%s\" or \"%s\"", cases[i].source, msg, cases[i].where, cases[i].what);
    }
}

static void test_raise_exception(void **state) {
    (void)state;
    const char *source =
        "{% if messages | length > 1 %}\n{{ raise_exception('Only ' ~ 1 ~ ' message, please.') }}{% endif %}";
    expect_error(source, NULL, FM_ERR_ARGUMENT, NULL, NULL);
    assert_string_equal(fm_last_error(), "Only 1 message, please.");
    char *got = render_ok(source, "[{\"role\": \"user\", \"content\": \"one\"}]");
    assert_string_equal(got, "");
    free(got);
}

static void test_runtime_errors(void **state) {
    (void)state;
    expect_error("{{ 'x' + messages[2].content }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "can only concatenate str (not \"NoneType\")");
    expect_error("{{ messages[2].content + 'x' }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "unsupported operand type(s) for +: 'NoneType' and 'str'");
    expect_error("one\n\n{{ nothing.attr }}", NULL, FM_ERR_ARGUMENT, "line 3", "'nothing' is undefined");
    expect_error("{{ nothing + 1 }}", NULL, FM_ERR_ARGUMENT, "line 1", "'nothing' is undefined");
    expect_error("{{ 1 / 0 }}", NULL, FM_ERR_ARGUMENT, "line 1", "division by zero");
    /* str.format field indices: out of range, overflowing int (once read out of bounds), not all digits */
    expect_error("{{ '{44444444444444444}'.format('x') }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "format field '44444444444444444' has no argument");
    expect_error("{{ '{4294967295}'.format('x') }}", NULL, FM_ERR_ARGUMENT, "line 1", "has no argument");
    expect_error("{{ '{1}'.format('x') }}", NULL, FM_ERR_ARGUMENT, "line 1", "format field '1' has no argument");
    expect_error("{{ '{0x}'.format('x') }}", NULL, FM_ERR_ARGUMENT, "line 1", "format field '0x' has no argument");
    expect_error("{{ 1 < 'a' }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "'<' not supported between instances of 'int' and 'str'");
    expect_error("{{ 'x' | nosuch }}", NULL, FM_ERR_UNSUPPORTED, "line 1", "unknown filter 'nosuch'");
    expect_error("{{ 'x' is nosuch }}", NULL, FM_ERR_UNSUPPORTED, "line 1", "unknown test 'nosuch'");
    expect_error("{% for x in 5 %}{% endfor %}", NULL, FM_ERR_ARGUMENT, "line 1", "'int' object is not iterable");
    expect_error("{{ [1, 2].append(3) }}", NULL, FM_ERR_ARGUMENT, "line 1", "cannot be modified");
    expect_error("{% set a, b = [1] %}", NULL, FM_ERR_ARGUMENT, "line 1", "not enough values to unpack");
    expect_error("{% set x = 1 %}{% set x.y = 2 %}", NULL, FM_ERR_ARGUMENT, "line 1", "not a namespace");
    expect_error("{{ messages[0].content.split('') }}", NULL, FM_ERR_ARGUMENT, "line 1", "empty separator");
    expect_error("{{ nothing() }}", NULL, FM_ERR_ARGUMENT, "line 1", "'nothing' is undefined");
    expect_error("{{ {[1]: 2} }}", NULL, FM_ERR_ARGUMENT, "line 1", "unhashable type: 'list'");
    expect_error("{{ 'abc'[::0] }}", NULL, FM_ERR_ARGUMENT, "line 1", "slice step cannot be zero");
    /* slices use Python's subscript, not Jinja's forgiving item lookup */
    expect_error("{{ messages[0][1:] }}", NULL, FM_ERR_ARGUMENT, "line 1", "unhashable type: 'slice'");
    expect_error("{{ messages[2].content[1:] }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "'NoneType' object is not subscriptable");
    expect_error("{{ messages['a':] }}", NULL, FM_ERR_ARGUMENT, "line 1", "slice indices must be integers");
    expect_error("{{ nothing | int }}", NULL, FM_ERR_ARGUMENT, "line 1", "'nothing' is undefined");
    expect_error("{{ '%s %s' % ('a',) }}", NULL, FM_ERR_ARGUMENT, "line 1", "not enough arguments");
    expect_error("{{ '%s' % ('a', 'b') }}", NULL, FM_ERR_ARGUMENT, "line 1", "not all arguments converted");
    expect_error("{{ '%5.2f' % 1.5 }}", NULL, FM_ERR_UNSUPPORTED, "line 1", "%s %r %d %i only");
    expect_error("{{ namespace() | tojson }}", NULL, FM_ERR_ARGUMENT, "line 1", "not JSON serializable");
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, FM_ERR_ARGUMENT, "line 1", "64 bits");
}

static void test_bad_json(void **state) {
    (void)state;
    fm_status st;
    static const struct {
        const char *messages, *tools, *needle1, *needle2;
    } cases[] = {
        {"[{\"role\": \"user\",}]", NULL, "messages_json", "invalid JSON at line 1 column"},
        {"[{\"role\": \"user\"},\n  oops]", NULL, "messages_json", "line 2 column 3"},
        {"[] trailing", NULL, "messages_json", "invalid JSON"},
        {"", NULL, "messages_json", "invalid JSON"},
        {"{\"role\": \"user\"}", NULL, "must be a JSON array", "an object"},
        {"[{\"role\": \"user\"}, \"text\"]", NULL, "message 1", "a string"},
        {"[]", "{\"type\": \"function\"}", "tools_json must be a JSON array", "an object"},
        {"[]", "[", "tools_json", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = render_full("{{ messages }}", cases[i].messages, cases[i].tools, NULL, &st);
        if (out) fail_msg("%s accepted", cases[i].messages);
        const char *msg = fm_last_error();
        assert_int_equal(st, FM_ERR_ARGUMENT);
        if (!strstr(msg, cases[i].needle1) || !strstr(msg, cases[i].needle2))
            fail_msg("\"%s\" lacks \"%s\" or \"%s\"", msg, cases[i].needle1, cases[i].needle2);
    }
}

/* A template is untrusted input: whatever it does ends in text or an error. */
static void test_limits(void **state) {
    (void)state;
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL,
                 FM_ERR_ARGUMENT, "line 1", "work budget");
    expect_error(
        "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s + 'abcdefghij' %}{% endfor %}",
        NULL, FM_ERR_ARGUMENT, "line 1", "work budget");
    expect_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "work budget");
    /* the budget grows with the input; the output stops at 64 MiB */
    size_t big = 4u << 20;
    char *messages = malloc(big + 64);
    assert_non_null(messages);
    size_t len = (size_t)sprintf(messages, "[{\"role\": \"user\", \"content\": \"");
    memset(messages + len, 'x', big);
    strcpy(messages + len + big, "\"}]");
    expect_error("{% for i in range(20) %}{{ messages[0].content }}{% endfor %}", messages, FM_ERR_ARGUMENT, "line 1",
                 "64 MiB");
    char *out = render_ok("{% for i in range(15) %}{{ messages[0].content }}{% endfor %}", messages);
    assert_int_equal(strlen(out), 15 * big);
    free(out);
    free(messages);
    expect_error("{{ 'x' * 100000000 }}", NULL, FM_ERR_ARGUMENT, "line 1", "64 MiB");
    expect_error("{{ range(100001) | length }}", NULL, FM_ERR_ARGUMENT, "line 1", "range too big");
    expect_error("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "macro calls nested");
    expect_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, FM_ERR_ARGUMENT, "line 1",
                 "containing itself");
    expect_error("{% set ns = namespace(v=[]) %}{% for i in range(5000) %}{% set ns.v = [ns.v] %}{% endfor %}", NULL,
                 FM_ERR_ARGUMENT, "line 1", "nested deeper");
    /* macro recursion through a long filter chain: bounded by the evaluation depth, not the stack */
    char deep[4096];
    len = (size_t)snprintf(deep, sizeof deep, "{%% macro r(n) %%}{{ (r(n - 1) if n > 0 else '')");
    for (int i = 0; i < 140; i++) len += (size_t)snprintf(deep + len, sizeof deep - len, " | string");
    snprintf(deep + len, sizeof deep - len, " }}{%% endmacro %%}{{ r(60) }}");
    expect_error(deep, NULL, FM_ERR_ARGUMENT, "line 1", "nested more than");
    /* nesting deeper than the evaluator's bound is refused when parsing */
    char source[4096];
    const char *shapes[][3] = {{"{{ ", "(", "1"}, {"{{ ", "[", "1"}, {"{{ ", "-", "1"}, {"{{ ", "not ", "1"}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = 0;
        n += (size_t)snprintf(source + n, sizeof source - n, "%s", shapes[s][0]);
        for (int i = 0; i < 300; i++) n += (size_t)snprintf(source + n, sizeof source - n, "%s", shapes[s][1]);
        n += (size_t)snprintf(source + n, sizeof source - n, "%s", shapes[s][2]);
        for (int i = 0; i < 300 && shapes[s][1][0] == '('; i++) source[n++] = ')';
        for (int i = 0; i < 300 && shapes[s][1][0] == '['; i++) source[n++] = ']';
        snprintf(source + n, sizeof source - n, " }}");
        fm_chat_template *t;
        assert_int_equal(fm_chat_template_new(source, &t), FM_ERR_FORMAT);
    }
    size_t n = 0;
    for (int i = 0; i < 200; i++) n += (size_t)snprintf(source + n, sizeof source - n, "{%% if true %%}");
    fm_chat_template *t;
    assert_int_equal(fm_chat_template_new(source, &t), FM_ERR_FORMAT);
    assert_non_null(strstr(fm_last_error(), "nested"));
    /* a long flat chain nests its syntax tree as deep as it is long */
    n = (size_t)snprintf(source, sizeof source, "{{ 1");
    for (int i = 0; i < 400; i++) n += (size_t)snprintf(source + n, sizeof source - n, " + 1");
    snprintf(source + n, sizeof source - n, " }}");
    assert_int_equal(fm_chat_template_new(source, &t), FM_ERR_FORMAT);
}

static void test_api_arguments(void **state) {
    (void)state;
    fm_chat_template *t = NULL;
    char *out = (char *)"not reset";
    assert_int_equal(fm_chat_template_new(NULL, &t), FM_ERR_ARGUMENT);
    assert_int_equal(fm_chat_template_new("x", NULL), FM_ERR_ARGUMENT);
    assert_int_equal(fm_chat_template_new("{{ messages | length }}", &t), FM_OK);
    assert_int_equal(fm_chat_template_render(t, NULL, NULL, NULL, &out), FM_ERR_ARGUMENT);
    assert_null(out);
    assert_int_equal(fm_chat_template_render(NULL, "[]", NULL, NULL, &out), FM_ERR_ARGUMENT);
    assert_int_equal(fm_chat_template_render(t, "[]", NULL, NULL, NULL), FM_ERR_ARGUMENT);
    fm_chat_options bad = {.enable_thinking = 2};
    assert_int_equal(fm_chat_template_render(t, "[]", NULL, &bad, &out), FM_ERR_ARGUMENT);
    /* one template, many renders */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fm_chat_template_render(t, MESSAGES, NULL, NULL, &out), FM_OK);
        assert_string_equal(out, "3");
        free(out);
    }
    fm_chat_template_free(t);
    fm_chat_template_free(NULL);
    /* an empty template renders nothing */
    out = render_ok("", "[]");
    assert_string_equal(out, "");
    free(out);
}

/* Renders share a template's constants; several threads at once must agree. */
typedef struct {
    const fm_chat_template *t;
    char *out;
    fm_status st;
} render_job;

static void *render_thread(void *arg) {
    render_job *job = arg;
    for (int i = 0; i < 20 && !job->st; i++) {
        free(job->out);
        job->out = NULL;
        job->st = fm_chat_template_render(job->t, MESSAGES, NULL, NULL, &job->out);
    }
    return NULL;
}

static void test_concurrent_renders(void **state) {
    (void)state;
    fm_chat_template *t;
    assert_int_equal(
        fm_chat_template_new("{% for m in messages %}{{ '<' + m.role + '>' }}{{ m.content | string | upper }}"
                             "{{ m | tojson }}{% endfor %}",
                             &t),
        FM_OK);
    char *want;
    assert_int_equal(fm_chat_template_render(t, MESSAGES, NULL, NULL, &want), FM_OK);
    render_job jobs[4] = {{.t = t}, {.t = t}, {.t = t}, {.t = t}};
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&threads[i], NULL, render_thread, &jobs[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].st, FM_OK);
        assert_string_equal(jobs[i].out, want);
        free(jobs[i].out);
    }
    free(want);
    fm_chat_template_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_references),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_loops),
        cmocka_unit_test(test_scoping),
        cmocka_unit_test(test_indexing),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_tojson),
        cmocka_unit_test(test_string_methods),
        cmocka_unit_test(test_undefined),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_regressions),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_raise_exception),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_api_arguments),
        cmocka_unit_test(test_concurrent_renders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
