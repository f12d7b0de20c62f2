/* libFuzzer target: an HTTP request body for the server's APIs. The first
 * byte picks the endpoint (OpenAI chat, completions, Anthropic messages), the
 * rest is the body. A body that parses becomes a job; it is then "answered"
 * with one of a few model outputs (plain, reasoning, tool calls in both forms,
 * a broken call) and formatted as a whole response and as a stream. Bodies
 * are untrusted: they may be refused with an error, never crash or leak. */
#include "server/api.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char template_source[] =
    "{%- if tools %}{{- '<|im_start|>system\\n' + (tools | tojson) + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content }}"
    "{%- if message.tool_calls %}{%- for call in message.tool_calls %}{{- '<tool_call>' + (call.function | tojson) + "
    "'</tool_call>' }}{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking %}{{- '<think>\\n' }}"
    "{%- endif %}{%- endif %}";

static const char *const outputs[] = {
    "Hello there.",
    "reasoning here</think>\n\nThe answer.",
    "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nKoln\n</parameter>\n</function>\n</tool_call>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call>",
};

static engine eng;
static fm_model_info info;
static server srv;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    FILE *f = fopen("tests/fuzz/corpus/tokenizer/gpt2_string_merges.json", "rb");
    static char text[1 << 16];
    size_t n = f ? fread(text, 1, sizeof text, f) : 0;
    if (f) fclose(f);
    if (!n || tokenizer_from_text(text, n, "fuzz", &eng.tok) != FM_OK ||
        fm_chat_template_new(template_source, &eng.tmpl) != FM_OK) {
        fprintf(stderr, "fuzz_api_request: run from the repository root (needs tests/fuzz/corpus/tokenizer)\n");
        abort();
    }
    info.vocab_size = fm_tokenizer_vocab_size(eng.tok);
    info.default_temperature = info.default_top_p = info.default_min_p = info.default_repetition_penalty = -1;
    info.default_top_k = -1;
    eng.info = &info;
    eng.max_context = 256;
    srv.e = &eng;
    srv.cfg.model_id = "fuzz";
    srv.cfg.default_max_tokens = 16;
    srv.cfg.thinking = -1;
    pthread_mutex_init(&srv.text_mu, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const api_kind kind = data[0] % 3 == 0 ? API_CHAT : data[0] % 3 == 1 ? API_COMPLETIONS : API_MESSAGES;
    api_error perr = {0};
    cJSON *body = api_parse_body((const char *)data + 1, size - 1, &perr); /* NUL checks, then cJSON */
    if (!body) return 0;
    api_request req = {.kind = kind, .block = -1};
    snprintf(req.id, sizeof req.id, "fuzz");
    req.job = job_new();
    api_error err = {0};
    int rc = kind == API_CHAT ? openai_chat_parse(&srv, body, &req, &err)
             : kind == API_COMPLETIONS ? openai_completions_parse(&srv, body, &req, &err)
                                       : anthropic_parse(&srv, body, &req, &err);
    cJSON_Delete(body);
    char *s = kind == API_MESSAGES ? anthropic_error_body(&err) : openai_error_body(&err);
    cJSON_free(s);
    if (!rc) { /* answer it: streamed piece by piece, then whole */
        job *j = req.job;
        const char *out = outputs[data[size - 1] % (sizeof outputs / sizeof *outputs)];
        strbuf events = {0};
        j->started = 1;
        const size_t len = strlen(out);
        for (size_t i = 0; i < len; i += 5) {
            job_add_text(j, out + i, len - i < 5 ? len - i : 5);
            if (kind == API_MESSAGES) anthropic_stream(&req, &events);
            else openai_stream(&req, &events);
        }
        uint64_t rng = 1;
        if (assistant_parse(out, strlen(out), j->tools_json, j->think_open, &rng, &j->out)) abort();
        j->finish = j->out.n_calls ? "tool_calls" : "stop";
        j->done = 1;
        if (kind == API_MESSAGES) anthropic_stream(&req, &events);
        else openai_stream(&req, &events);
        if (events.failed || !req.finished) abort();
        sb_free(&events);
        s = kind == API_MESSAGES ? anthropic_response(&req) : openai_response(&req);
        if (!s) abort();
        cJSON_free(s);
    }
    job_unref(req.job);
    return 0;
}
