/* libFuzzer target: the assistant output parser (app/server/tool_calls.c).
 * Input: one flags byte (bit 0: the prompt opened <think>), then the text;
 * when the text holds "\n====\n", what precedes it is the tools JSON and
 * what follows the model output. Checks: every call has a well-formed id, a
 * name and JSON object arguments; with a tools list, names come from it;
 * assistant_stream_safe stays within the text, stops before any <tool_call>
 * and never decreases as the text grows. */
#include "server/tool_calls.h"

#include <cjson/cJSON.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int is_tool_name(const cJSON *tools, const char *name) {
    const cJSON *e;
    cJSON_ArrayForEach(e, tools) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "function");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_IsObject(f) ? f : e, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int think_open = data[0] & 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *tools = NULL;
    const char *sep = memmem(in, n, "\n====\n", 6);
    if (sep) {
        size_t tl = (size_t)(sep - in);
        tools = malloc(tl + 1);
        if (!tools) return 0;
        memcpy(tools, in, tl);
        tools[tl] = 0;
        n -= tl + 6;
        in = sep + 6;
    }
    /* An exact-size copy, so ASan catches any read past the end. */
    char *text = malloc(n ? n : 1);
    if (!text) abort();
    memcpy(text, in, n);

    assistant_output o;
    uint64_t rng = 1;
    if (assistant_parse(text, n, tools, think_open, &rng, &o) == 0) {
        cJSON *list = tools ? cJSON_Parse(tools) : NULL;
        if (!o.content) abort();
        if (o.n_calls < 0 || (o.n_calls > 0 && !o.calls)) abort();
        for (int i = 0; i < o.n_calls; i++) {
            const tool_call *c = &o.calls[i];
            if (!c->id || strlen(c->id) != 29 || strncmp(c->id, "call_", 5)) abort();
            if (!c->name || !c->name[0]) abort();
            if (cJSON_IsArray(list) && !is_tool_name(list, c->name)) abort();
            cJSON *a = cJSON_Parse(c->arguments);
            if (!cJSON_IsObject(a)) abort();
            cJSON_Delete(a);
        }
        if (o.reasoning && !o.reasoning[0]) abort(); /* empty reasoning is NULL */
        cJSON_Delete(list);
        assistant_output_free(&o);
    }

    size_t safe = assistant_stream_safe(text, n);
    if (safe > n || memmem(text, safe, "<tool_call>", 11)) abort();
    size_t prev = 0;
    for (size_t k = 0; k <= n; k += 1 + n / 16) { /* a few prefixes: cheap */
        size_t s = assistant_stream_safe(text, k);
        if (s < prev || s > k || s > safe) abort();
        prev = s;
    }
    free(text);
    free(tools);
    return 0;
}
