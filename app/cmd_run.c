/* flashmoe run: one prompt through the chat template, the answer streamed. */
#include "engine.h"
#include "think_filter.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* [{"role": "system", ...}, {"role": "user", "content": prompt}] as JSON text. */
static char *messages_json(const char *system, const char *prompt) {
    cJSON *msgs = cJSON_CreateArray();
    if (system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", system);
        cJSON_AddItemToArray(msgs, m);
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", prompt);
    cJSON_AddItemToArray(msgs, m);
    char *s = cJSON_PrintUnformatted(msgs);
    cJSON_Delete(msgs);
    return s;
}

int cmd_run(int argc, char **argv) {
    engine_options o;
    engine_options_init(&o);
    const char *prompt = NULL;
    int stats = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: flashmoe run -m DIR -p \"prompt\" [options]\n"
                   "Renders the prompt with the model's chat template, streams the answer to stdout and\n"
                   "prints prefill and decode speed to stderr.\n"
                   "  -p, --prompt TEXT     the user message\n"
                   "  --quiet               no speed line on stderr\n%s"
                   "%s",
                   engine_options_help(), cli_common_help);
            return 0;
        }
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (i + 1 >= argc) return cli_fail("%s needs a value", a);
            prompt = argv[++i];
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            stats = 0;
            continue;
        }
        int r = engine_parse_option(argc, argv, &i, &o);
        if (r < 0) return 1;
        if (!r) return cli_fail("run: unknown option '%s'", a);
    }
    if (!prompt) return cli_fail("run: missing -p \"prompt\"");
    engine e;
    int rc = engine_open(&e, &o);
    if (rc) return rc;
    char *msgs = messages_json(o.system, prompt), *text = NULL;
    int32_t *ids = NULL;
    int n = 0;
    engine_result res = {0};
    if (!msgs) rc = cli_fail("out of memory");
    else if (!(rc = engine_render(&e, msgs, &o, &text)) && fm_tokenizer_encode(e.tok, text, strlen(text), &ids, &n))
        rc = cli_fail_lib("tokenize");
    if (!rc && !(rc = engine_generate(&e, ids, n, think_prompt_is_inside(text), &o, NULL, stdout, &res))) {
        printf("\n");
        fflush(stdout);
        if (!strcmp(res.finish, "context"))
            fprintf(stderr, "flashmoe: the answer stopped where the context of %d tokens is full (--ctx sets it)\n",
                    e.max_context);
        if (stats)
            fprintf(stderr, "prefill: %d tokens, %.1f tok/s; decode: %d tokens, %.1f tok/s; finish: %s\n",
                    res.n_prompt, res.n_prompt / (res.prefill_s > 0 ? res.prefill_s : 1e-9), res.n_generated,
                    res.n_generated / (res.decode_s > 0 ? res.decode_s : 1e-9), res.finish);
        if (o.common.timing) cli_print_timing(e.session);
    }
    engine_result_free(&res);
    free(ids);
    free(text);
    cJSON_free(msgs);
    engine_close(&e);
    return rc;
}
