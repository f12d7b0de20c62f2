/* Quality of the trained assistant (train/) as flashmoe runs it: the same
 * measurements as train/train.py's evaluation, through the public API only.
 *   eval_assistant -m MODEL_DIR --data build/data/test.jsonl [-n N] [--experts K]
 *                  [-t THREADS] [--cache os|ram] [--cache-size BYTES] [--preload] [--ppl-only] [-v]
 * For each kind of test.jsonl (definition, definition_unseen, calculator) the
 * first N records in file order (default 200) are used:
 *   - generation: the messages before the first assistant turn, rendered with
 *     the model's chat template (its tools, add_generation_prompt, enable_thinking
 *     false), greedy (argmax) up to 128 new tokens or an end token (the model's
 *     EOS ids and <|im_end|>); the empty think block is stripped.
 *     Definitions: exact answer and the "**word** (pos): " prefix. Calculator: the
 *     first turn must be a <tool_call> whose JSON is {"name", "arguments"} equal to
 *     expected_call; then messages[:-1] (the expected call and the tool's result)
 *     is rendered and the final answer generated and compared exactly.
 *   - perplexity over assistant tokens of the same conversations rendered whole:
 *     tokens whose first byte lies after "<|im_start|>assistant\n" up to and
 *     including "<|im_end|>" (train.py's assistant_spans), each scored with the
 *     logits of the position before it.
 * Prints a table and one machine-readable line starting "quality:". --ppl-only
 * skips generation (rates print as nan); -v prints every miss. */
#include "bench_common.h"
#include "flashmoe.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NEW 128
#define ASSISTANT_OPEN "<|im_start|>assistant\n"
#define TURN_END "<|im_end|>"

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("eval_assistant: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void check(fm_status st, const char *what) {
    if (st != FM_OK) die("%s: %s: %s", what, fm_status_name(st), fm_last_error());
}

typedef struct {
    fm_model *model;
    fm_session *sess;
    fm_tokenizer *tok;
    fm_chat_template *tmpl;
    const fm_model_info *info;
    int V;
    int32_t eos[16];
    int n_eos;
    float *logits;     /* [V] */
    float *all_logits; /* [cap_all * V] */
    int cap_all;
    /* throughput */
    double prefill_s, decode_s, ppl_s;
    long prefill_tokens, decode_tokens, ppl_tokens;
} evaluator;

static int is_eos(const evaluator *e, int32_t t) {
    for (int i = 0; i < e->n_eos; i++)
        if (e->eos[i] == t) return 1;
    return 0;
}

/* Renders messages (a cJSON array) with tools (array or NULL). */
static char *render(evaluator *e, const cJSON *messages, const cJSON *tools, int add_generation_prompt) {
    char *mj = cJSON_PrintUnformatted(messages);
    char *tj = tools ? cJSON_PrintUnformatted(tools) : NULL;
    if (!mj || (tools && !tj)) die("out of memory");
    fm_chat_options co = {.add_generation_prompt = add_generation_prompt, .enable_thinking = 0};
    char *out = NULL;
    check(fm_chat_template_render(e->tmpl, mj, tj, &co, &out), "chat template");
    free(mj);
    free(tj);
    return out;
}

/* Greedy continuation of `prompt` (text), cut before the first end token; malloc'd text. */
static char *generate(evaluator *e, const char *prompt) {
    int32_t *ids = NULL;
    int n = 0;
    check(fm_tokenizer_encode(e->tok, prompt, strlen(prompt), &ids, &n), "encode");
    fm_session_reset(e->sess);
    double t0 = fm_seconds();
    check(fm_session_eval(e->sess, ids, n, FM_LOGITS_LAST, e->logits), "prefill");
    double t1 = fm_seconds();
    e->prefill_s += t1 - t0;
    e->prefill_tokens += n;
    int32_t gen[MAX_NEW];
    int n_gen = 0, n_fed = 0;
    while (n_gen < MAX_NEW) {
        int32_t best = 0;
        for (int v = 1; v < e->V; v++)
            if (e->logits[v] > e->logits[best]) best = v; /* first maximum, as torch.argmax */
        if (is_eos(e, best)) break;
        gen[n_gen++] = best;
        if (n_gen == MAX_NEW) break;
        check(fm_session_eval(e->sess, &best, 1, FM_LOGITS_LAST, e->logits), "decode");
        n_fed++;
    }
    e->decode_s += fm_seconds() - t1;
    e->decode_tokens += n_fed + 1; /* tokens sampled: the fed ones and the last (end or 128th) */
    char *text = NULL;
    size_t len;
    check(fm_tokenizer_decode(e->tok, gen, n_gen, 0, &text, &len), "decode text");
    free(ids);
    return text;
}

/* train.py's strip_think: what follows the first "</think>", stripped of white space; in place. */
static char *strip_think(char *t) {
    char *p = strstr(t, "</think>");
    if (p) t = p + strlen("</think>");
    while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r' || *t == '\f' || *t == '\v') t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == '\f' ||
                 t[n - 1] == '\v'))
        t[--n] = 0;
    return t;
}

/* train.py's parse_tool_call on stripped text: {"name", "arguments"} or NULL (caller frees). */
static cJSON *parse_tool_call(const char *t) {
    static const char open[] = "<tool_call>", close[] = "</tool_call>";
    if (strncmp(t, open, strlen(open))) return NULL;
    const char *end = strstr(t, close);
    if (!end) return NULL;
    const char *b = t + strlen(open);
    if (end < b) return NULL;
    size_t n = (size_t)(end - b);
    char *body = malloc(n + 1);
    if (!body) die("out of memory");
    memcpy(body, b, n);
    body[n] = 0;
    cJSON *call = cJSON_ParseWithOpts(body, NULL, 1); /* white space around is allowed, nothing else */
    free(body);
    if (!call) return NULL;
    cJSON *name = cJSON_GetObjectItemCaseSensitive(call, "name");
    cJSON *args = cJSON_GetObjectItemCaseSensitive(call, "arguments");
    cJSON *out = NULL;
    if (cJSON_IsObject(call) && name && cJSON_IsObject(args)) {
        out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "name", cJSON_Duplicate(name, 1));
        cJSON_AddItemToObject(out, "arguments", cJSON_Duplicate(args, 1));
    }
    cJSON_Delete(call);
    return out;
}

/* The first `k` messages of `messages` (a new array). */
static cJSON *first_messages(const cJSON *messages, int k) {
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *m = messages->child; m && i < k; m = m->next, i++)
        cJSON_AddItemToArray(out, cJSON_Duplicate(m, 1));
    return out;
}

static int first_assistant(const cJSON *messages) {
    int i = 0;
    for (const cJSON *m = messages->child; m; m = m->next, i++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(r) && !strcmp(r->valuestring, "assistant")) return i;
    }
    return -1;
}

/* Σ −log p over the assistant tokens of one whole conversation; adds to *nll, *n. */
static void conversation_nll(evaluator *e, const char *text, double *nll, long *count) {
    int32_t *ids = NULL;
    int n = 0;
    check(fm_tokenizer_encode(e->tok, text, strlen(text), &ids, &n), "encode");
    /* Offsets: the byte where each token starts in the decoded text (which is the rendered
     * text after the tokenizer's normalization). A token starting inside a multi-byte
     * character gets that character's start: the span boundaries are ASCII. */
    char *full = NULL;
    size_t full_len;
    check(fm_tokenizer_decode(e->tok, ids, n, 0, &full, &full_len), "decode");
    size_t *start = malloc((size_t)(n + 1) * sizeof *start);
    char *in_span = calloc(full_len + 1, 1);
    if (!start || !in_span) die("out of memory");
    start[0] = 0;
    for (int k = 1; k < n; k++) {
        char *pre = NULL;
        size_t pl;
        check(fm_tokenizer_decode(e->tok, ids, k, 0, &pre, &pl), "decode");
        start[k] = (pl <= full_len && !memcmp(pre, full, pl)) ? pl : start[k - 1];
        free(pre);
    }
    for (const char *p = full; (p = strstr(p, ASSISTANT_OPEN));) {
        const char *s = p + strlen(ASSISTANT_OPEN);
        const char *q = strstr(s, TURN_END);
        if (!q) die("an assistant turn without " TURN_END);
        q += strlen(TURN_END);
        memset(in_span + (s - full), 1, (size_t)(q - s));
        p = q;
    }
    if (n > e->cap_all) {
        free(e->all_logits);
        e->cap_all = n;
        e->all_logits = malloc((size_t)n * e->V * sizeof *e->all_logits);
        if (!e->all_logits) die("out of memory");
    }
    fm_session_reset(e->sess);
    double t0 = fm_seconds();
    check(fm_session_eval(e->sess, ids, n, FM_LOGITS_ALL, e->all_logits), "eval");
    e->ppl_s += fm_seconds() - t0;
    e->ppl_tokens += n;
    for (int k = 1; k < n; k++) {
        if (!in_span[start[k]]) continue;
        const float *l = e->all_logits + (size_t)(k - 1) * e->V;
        float mx = l[0];
        for (int v = 1; v < e->V; v++) mx = l[v] > mx ? l[v] : mx;
        double s = 0;
        for (int v = 0; v < e->V; v++) s += exp((double)l[v] - mx);
        *nll -= (double)l[ids[k]] - mx - log(s);
        (*count)++;
    }
    free(in_span);
    free(start);
    free(full);
    free(ids);
}

enum { K_DEF, K_UNSEEN, K_CALC, N_KINDS };
static const char *const kind_names[N_KINDS] = {"definition", "definition_unseen", "calculator"};

static void usage(void) {
    fputs("usage: eval_assistant -m MODEL_DIR --data TEST_JSONL [-n N per kind (200)] [--experts K]\n"
          "                      [-t THREADS] [--cache os|ram] [--cache-size BYTES] [--preload]\n"
          "                      [--ppl-only] [-v (print the misses)]\n",
          stderr);
    exit(2);
}

static long parse_count(const char *opt, const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 0) die("%s: '%s' is not a count", opt, v);
    return n;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL;
    int per_kind = 200, verbose = 0, generate_too = 1;
    fm_model_options mo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--preload")) {
            mo.preload = 1;
            continue;
        }
        if (!strcmp(a, "--ppl-only")) {
            generate_too = 0;
            continue;
        }
        if (!strcmp(a, "-v")) {
            verbose = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage();
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "-n")) per_kind = (int)parse_count(a, v);
        else if (!strcmp(a, "--experts")) mo.n_experts_per_token = (int)parse_count(a, v);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) mo.n_threads = (int)parse_count(a, v);
        else if (!strcmp(a, "--cache-size")) mo.cache_bytes = (uint64_t)parse_count(a, v);
        else if (!strcmp(a, "--cache")) {
            if (!strcmp(v, "os")) mo.cache = FM_EXPERT_CACHE_OS;
            else if (!strcmp(v, "ram")) mo.cache = FM_EXPERT_CACHE_RAM;
            else die("--cache: '%s' (os or ram)", v);
        } else usage();
    }
    if (!model_dir || !data) usage();

    evaluator e = {0};
    double t_open = fm_seconds();
    check(fm_model_open(model_dir, &mo, &e.model), model_dir);
    e.info = fm_model_get_info(e.model);
    e.V = e.info->vocab_size;
    check(fm_session_new(e.model, NULL, &e.sess), "session");
    check(fm_tokenizer_open(model_dir, &e.tok), "tokenizer");
    const char *src = fm_tokenizer_chat_template(e.tok);
    if (!src) die("%s has no chat template", model_dir);
    check(fm_chat_template_new(src, &e.tmpl), "chat template");
    for (int i = 0; i < e.info->n_eos && e.n_eos < 15; i++) e.eos[e.n_eos++] = e.info->eos_ids[i];
    int32_t im_end = fm_tokenizer_token_id(e.tok, TURN_END);
    if (im_end >= 0) e.eos[e.n_eos++] = im_end;
    e.logits = malloc((size_t)e.V * sizeof *e.logits);
    if (!e.logits) die("out of memory");
    t_open = fm_seconds() - t_open;

    /* The first per_kind records of each kind, in file order. */
    FILE *f = fopen(data, "rb");
    if (!f) die("cannot open %s (run train/make_data.py)", data);
    cJSON **recs[N_KINDS];
    int n_recs[N_KINDS] = {0};
    for (int k = 0; k < N_KINDS; k++)
        if (!(recs[k] = calloc((size_t)per_kind + 1, sizeof **recs))) die("out of memory");
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)got) continue;
        cJSON *r = cJSON_Parse(line);
        if (!r) die("%s:%ld: not JSON", data, lineno);
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(r, "kind");
        int k = -1;
        for (int j = 0; j < N_KINDS && cJSON_IsString(kind); j++)
            if (!strcmp(kind->valuestring, kind_names[j])) k = j;
        if (k < 0 || n_recs[k] >= per_kind) {
            cJSON_Delete(r);
            continue;
        }
        if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r, "messages")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "answer")))
            die("%s:%ld: no messages or answer", data, lineno);
        recs[k][n_recs[k]++] = r;
    }
    free(line);
    fclose(f);

    /* Generation. */
    int def_exact[N_KINDS] = {0}, def_format[N_KINDS] = {0};
    int calc_emitted = 0, calc_parses = 0, calc_args = 0, calc_final = 0, calc_e2e = 0;
    double t_gen = fm_seconds();
    for (int k = 0; k < N_KINDS && generate_too; k++)
        for (int i = 0; i < n_recs[k]; i++) {
            cJSON *r = recs[k][i];
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(r, "messages");
            const cJSON *tools = cJSON_GetObjectItemCaseSensitive(r, "tools");
            if (tools && !cJSON_IsArray(tools)) tools = NULL;
            const char *answer = cJSON_GetObjectItemCaseSensitive(r, "answer")->valuestring;
            int fa = first_assistant(msgs);
            if (fa < 0) die("a %s record without an assistant turn", kind_names[k]);
            cJSON *pm = first_messages(msgs, fa);
            char *prompt = render(&e, pm, tools, 1);
            cJSON_Delete(pm);
            char *out = generate(&e, prompt);
            char *a = strip_think(out);
            if (k != K_CALC) {
                const cJSON *w = cJSON_GetObjectItemCaseSensitive(r, "word");
                const cJSON *p = cJSON_GetObjectItemCaseSensitive(r, "pos");
                if (!cJSON_IsString(w) || !cJSON_IsString(p)) die("a definition without word/pos");
                char prefix[512];
                snprintf(prefix, sizeof prefix, "**%s** (%s): ", w->valuestring, p->valuestring);
                int ex = !strcmp(a, answer), fm = !strncmp(a, prefix, strlen(prefix));
                def_exact[k] += ex;
                def_format[k] += fm;
                if (verbose && !ex) printf("  [%s %d] want %s\n  [%s %d] got  %s\n", kind_names[k], i, answer,
                                           kind_names[k], i, a);
            } else {
                const cJSON *want = cJSON_GetObjectItemCaseSensitive(r, "expected_call");
                cJSON *call = parse_tool_call(a);
                int emitted = strstr(a, "<tool_call>") != NULL;
                int args_ok = call && want && cJSON_Compare(call, want, 1);
                calc_emitted += emitted;
                calc_parses += call != NULL;
                calc_args += args_ok;
                /* Second turn: the conversation with the expected call and the tool's result. */
                int nm = cJSON_GetArraySize(msgs);
                cJSON *m2 = first_messages(msgs, nm - 1);
                char *prompt2 = render(&e, m2, tools, 1);
                cJSON_Delete(m2);
                char *out2 = generate(&e, prompt2);
                char *a2 = strip_think(out2);
                int final_ok = !strcmp(a2, answer);
                calc_final += final_ok;
                calc_e2e += args_ok && final_ok;
                if (verbose && !(args_ok && final_ok))
                    printf("  [calculator %d] call %s\n  [calculator %d] want %s, got %s\n", i, a, i, answer, a2);
                cJSON_Delete(call);
                free(out2);
                free(prompt2);
            }
            free(out);
            free(prompt);
        }
    t_gen = fm_seconds() - t_gen;

    /* Perplexity over assistant tokens. */
    double nll = 0, kind_nll[N_KINDS] = {0};
    long n_tok = 0, kind_tok[N_KINDS] = {0};
    int n_conv = 0;
    double t_ppl = fm_seconds();
    for (int k = 0; k < N_KINDS; k++) {
        for (int i = 0; i < n_recs[k]; i++) {
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(recs[k][i], "messages");
            const cJSON *tools = cJSON_GetObjectItemCaseSensitive(recs[k][i], "tools");
            char *text = render(&e, msgs, cJSON_IsArray(tools) ? tools : NULL, 0);
            conversation_nll(&e, text, &kind_nll[k], &kind_tok[k]);
            n_conv++;
            free(text);
        }
        nll += kind_nll[k];
        n_tok += kind_tok[k];
    }
    t_ppl = fm_seconds() - t_ppl;
    double ppl = n_tok ? exp(nll / (double)n_tok) : NAN;

    /* Report. */
    const fm_model_info *in = e.info;
    /* With --ppl-only nothing was generated: the rates print as nan. */
    int nd = generate_too ? n_recs[K_DEF] : 0, nu = generate_too ? n_recs[K_UNSEEN] : 0,
        nc = generate_too ? n_recs[K_CALC] : 0;
#define RATE(x, n) ((n) ? (double)(x) / (n) : NAN)
    char weights[32];
    if (in->expert_bits) snprintf(weights, sizeof weights, "packed, experts %d-bit", in->expert_bits);
    else snprintf(weights, sizeof weights, "checkpoint");
    printf("model        %s (%s, %s; %d of %d experts per token)\n", model_dir, in->architecture, weights,
           in->n_experts_run, in->n_experts);
    printf("data         %s: first %d per kind (definition %d, definition_unseen %d, calculator %d)\n", data, per_kind,
           n_recs[K_DEF], n_recs[K_UNSEEN], n_recs[K_CALC]);
    printf("%-50s %5s %8s\n", "measure", "n", "value");
    printf("%-50s %5d %8.3f\n", "definitions, held-out phrasing: exact", nd, RATE(def_exact[K_DEF], nd));
    printf("%-50s %5d %8.3f\n", "definitions, held-out phrasing: format", nd, RATE(def_format[K_DEF], nd));
    printf("%-50s %5d %8.3f\n", "unseen words: format", nu, RATE(def_format[K_UNSEEN], nu));
    printf("%-50s %5d %8.3f\n", "unseen words: exact", nu, RATE(def_exact[K_UNSEEN], nu));
    printf("%-50s %5d %8.3f\n", "calculator: tool call emitted", nc, RATE(calc_emitted, nc));
    printf("%-50s %5d %8.3f\n", "calculator: call is valid JSON {name, arguments}", nc, RATE(calc_parses, nc));
    printf("%-50s %5d %8.3f\n", "calculator: right name + arguments", nc, RATE(calc_args, nc));
    printf("%-50s %5d %8.3f\n", "calculator: final answer exact given the result", nc, RATE(calc_final, nc));
    printf("%-50s %5d %8.3f\n", "calculator: end-to-end exact", nc, RATE(calc_e2e, nc));
    printf("%-50s %5d %8.4f  (%ld assistant tokens)\n", "test perplexity, assistant tokens", n_conv, ppl, n_tok);
    for (int k = 0; k < N_KINDS; k++) {
        char label[64];
        snprintf(label, sizeof label, "  of which %s", kind_names[k]);
        printf("%-50s %5d %8.4f  (%ld assistant tokens)\n", label, n_recs[k],
               kind_tok[k] ? exp(kind_nll[k] / (double)kind_tok[k]) : NAN, kind_tok[k]);
    }
    double dec_tps = e.decode_s > 0 ? e.decode_tokens / e.decode_s : 0;
    double pre_tps = e.prefill_s > 0 ? e.prefill_tokens / e.prefill_s : 0;
    double ppl_tps = e.ppl_s > 0 ? e.ppl_tokens / e.ppl_s : 0;
    printf("speed        decode %.1f tok/s (%ld tokens), prefill %.1f tok/s (%ld tokens), scoring %.1f tok/s "
           "(%ld tokens); open %.2fs, generation %.1fs, perplexity %.1fs\n",
           dec_tps, e.decode_tokens, pre_tps, e.prefill_tokens, ppl_tps, e.ppl_tokens, t_open, t_gen, t_ppl);
    printf("quality: model=%s bits=%d experts=%d n=%d ppl=%.4f ppl_tokens=%ld def_exact=%.3f def_format=%.3f "
           "unseen_format=%.3f calc_emitted=%.3f calc_valid_json=%.3f calc_args=%.3f calc_final=%.3f calc_e2e=%.3f "
           "ppl_def=%.4f ppl_unseen=%.4f ppl_calc=%.4f decode_tok_s=%.1f prefill_tok_s=%.1f\n",
           model_dir, in->expert_bits ? in->expert_bits : 16, in->n_experts_run, per_kind, ppl, n_tok,
           RATE(def_exact[K_DEF], nd), RATE(def_format[K_DEF], nd), RATE(def_format[K_UNSEEN], nu),
           RATE(calc_emitted, nc), RATE(calc_parses, nc), RATE(calc_args, nc), RATE(calc_final, nc),
           RATE(calc_e2e, nc), exp(kind_nll[K_DEF] / (double)kind_tok[K_DEF]),
           exp(kind_nll[K_UNSEEN] / (double)kind_tok[K_UNSEEN]), exp(kind_nll[K_CALC] / (double)kind_tok[K_CALC]),
           dec_tps, pre_tps);

    for (int k = 0; k < N_KINDS; k++) {
        for (int i = 0; i < n_recs[k]; i++) cJSON_Delete(recs[k][i]);
        free(recs[k]);
    }
    free(e.all_logits);
    free(e.logits);
    fm_chat_template_free(e.tmpl);
    fm_tokenizer_close(e.tok);
    fm_session_free(e.sess);
    fm_model_close(e.model);
    return 0;
}
