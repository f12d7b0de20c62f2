/* Model + tokenizer + chat template + sampler, and the streaming generation
 * loop used by `run` and `chat` (see engine.h). */
#include "engine.h"
#include "think_filter.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A plain ChatML template for models without one (or with one flashmoe cannot run). */
static const char chatml_template[] =
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void engine_options_init(engine_options *o) {
    memset(o, 0, sizeof *o);
    o->thinking = -1;
    o->max_tokens = 512;
    o->sampling = fm_sampler_default_params();
    o->sampling.temperature = 0.7f;
    o->sampling.top_k = 20;
    o->sampling.top_p = 0.8f;
}

const char *engine_options_help(void) {
    return "  -n N                  at most N new tokens per answer (default 512)\n"
           "  Sampling defaults are the model's generation_config.json, else the values shown:\n"
           "  --temp T              temperature (0.7; 0 = greedy)\n"
           "  --top-k K             keep the K most likely tokens (20; 0 = off)\n"
           "  --top-p P             nucleus sampling (0.8; 1 = off)\n"
           "  --min-p P             drop tokens below P x the most likely (0 = off)\n"
           "  --repeat-penalty R    repetition penalty (1 = off)\n"
           "  --presence-penalty P  presence penalty (default 0 = off)\n"
           "  --seed S              random seed (default: from the clock; give one to repeat a run)\n"
           "  --think | --no-think  turn the model's thinking on or off (default: the template's)\n"
           "  --show-think          run: print the model's reasoning to stderr (not shown otherwise)\n"
           "  --system TEXT         system prompt\n"
           "  --tools FILE          tools the model may call: a JSON array of function definitions\n"
           "                        (as in the OpenAI API), passed to the chat template\n"
           "  --stop STR            stop when STR appears (up to 8)\n"
           "  --tokenizer PATH      tokenizer.json or its directory (default: the model directory)\n"
           "  --template T          chat template: the model's (default), 'chatml', 'none' (raw prompt),\n"
           "                        or a file holding a jinja template\n";
}

static int parse_float(const char *opt, const char *v, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        return cli_fail("%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi), -1;
    *out = (float)d;
    return 1;
}

int engine_parse_option(int argc, char **argv, int *i, engine_options *o) {
    int r = cli_parse_common(argc, argv, i, &o->common);
    if (r) return r;
    const char *a = argv[*i];
    if (!strcmp(a, "--think")) return o->thinking = 1;
    if (!strcmp(a, "--no-think")) return o->thinking = 0, 1;
    if (!strcmp(a, "--show-think")) return o->show_think = 1;
    static const char *const valued[] = {"-n", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                                         "--presence-penalty", "--seed", "--system", "--tools", "--stop", "--tokenizer",
                                         "--template", "-p", "--prompt"};
    int known = 0;
    for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
    if (!known) return 0;
    if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) return 0; /* the command's own */
    if (*i + 1 >= argc) return cli_fail("%s needs a value", a), -1;
    const char *v = argv[++*i];
    long n;
    if (!strcmp(a, "-n")) {
        if (cli_count_option("-n", v, 1, INT_MAX, &n)) return -1;
        o->max_tokens = (int)n;
        return 1;
    }
    if (!strcmp(a, "--top-k")) {
        if (cli_count_option("--top-k", v, 0, INT_MAX, &n)) return -1;
        o->sampling.top_k = (int)n;
        o->sampling_given |= ENGINE_SET_TOP_K;
        return 1;
    }
    if (!strcmp(a, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end) return cli_fail("--seed: '%s' is not a number", v), -1;
        o->sampling.seed = s;
        o->seed_given = 1;
        return 1;
    }
    if (!strcmp(a, "--temp"))
        return o->sampling_given |= ENGINE_SET_TEMP, parse_float(a, v, 0, 100, &o->sampling.temperature);
    if (!strcmp(a, "--top-p")) return o->sampling_given |= ENGINE_SET_TOP_P, parse_float(a, v, 0, 1, &o->sampling.top_p);
    if (!strcmp(a, "--min-p")) return o->sampling_given |= ENGINE_SET_MIN_P, parse_float(a, v, 0, 1, &o->sampling.min_p);
    if (!strcmp(a, "--repeat-penalty"))
        return o->sampling_given |= ENGINE_SET_REPEAT, parse_float(a, v, 0.01f, 100, &o->sampling.repetition_penalty);
    if (!strcmp(a, "--presence-penalty")) return parse_float(a, v, -100, 100, &o->sampling.presence_penalty);
    if (!strcmp(a, "--system")) o->system = v;
    else if (!strcmp(a, "--tools")) o->tools_path = v;
    else if (!strcmp(a, "--tokenizer")) o->tokenizer_path = v;
    else if (!strcmp(a, "--template")) o->template_arg = v;
    else if (!strcmp(a, "--stop")) {
        if (o->n_stop == 8) return cli_fail("--stop: at most 8 stop strings"), -1;
        if (!*v) return cli_fail("--stop: empty stop string"), -1;
        o->stop[o->n_stop++] = v;
    }
    return 1;
}

static char *read_small_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

int engine_open(engine *e, const engine_options *o) {
    memset(e, 0, sizeof *e);
    int rc = cli_open_model(&o->common, &e->model, &e->session);
    e->opt_timing = o->common.timing;
    if (rc) return rc;
    e->info = fm_model_get_info(e->model);
    e->max_context = o->common.max_context > 0 ? o->common.max_context : e->info->max_position_embeddings;
    const char *tp = o->tokenizer_path ? o->tokenizer_path : cli_model_dir(&o->common);
    if (fm_tokenizer_open(tp, &e->tok) != FM_OK) {
        engine_close(e);
        return cli_fail("cannot open the tokenizer (%s); give one with --tokenizer PATH", fm_last_error());
    }
    if (fm_tokenizer_vocab_size(e->tok) > e->info->vocab_size) {
        const int n = fm_tokenizer_vocab_size(e->tok), v = e->info->vocab_size; /* engine_close frees info */
        engine_close(e);
        return cli_fail("%s: the tokenizer has %d ids but the model's vocabulary only %d", tp, n, v);
    }
    if (o->tools_path) {
        e->tools = read_small_file(o->tools_path);
        cJSON *t = e->tools ? cJSON_Parse(e->tools) : NULL;
        int ok = cJSON_IsArray(t);
        cJSON_Delete(t);
        if (!ok) {
            const char *why = e->tools ? "not a JSON array of tools" : "cannot read the file";
            engine_close(e);
            return cli_fail("%s: %s", o->tools_path, why);
        }
    }
    for (int i = 0; i < e->info->n_eos && e->n_eos < 15; i++) e->eos[e->n_eos++] = e->info->eos_ids[i];
    int32_t im_end = fm_tokenizer_token_id(e->tok, "<|im_end|>");
    if (im_end >= 0 && e->n_eos < 16) e->eos[e->n_eos++] = im_end;

    const char *source = fm_tokenizer_chat_template(e->tok);
    char *file_text = NULL;
    if (o->template_arg && !strcmp(o->template_arg, "none")) source = NULL;
    else if (o->template_arg && !strcmp(o->template_arg, "chatml")) source = chatml_template;
    else if (o->template_arg && !(source = file_text = read_small_file(o->template_arg))) {
        engine_close(e);
        return cli_fail("--template: cannot read %s: %s", o->template_arg, strerror(errno));
    } else if (!o->template_arg && !source) {
        engine_close(e);
        return cli_fail("the model has no chat template (tokenizer_config.json); use --template chatml, "
                        "--template none (raw prompt) or --template FILE");
    }
    if (source && fm_chat_template_new(source, &e->tmpl) != FM_OK) {
        rc = cli_fail("cannot use the chat template: %s\n  (use --template chatml or --template none)", fm_last_error());
        free(file_text);
        engine_close(e);
        return rc;
    }
    free(file_text);
    /* The model's own defaults (generation_config.json) unless the command line says otherwise. */
    fm_sampler_params sp = o->sampling;
    const fm_model_info *in = e->info;
    if (!(o->sampling_given & ENGINE_SET_TEMP) && in->default_temperature >= 0) sp.temperature = in->default_temperature;
    if (!(o->sampling_given & ENGINE_SET_TOP_K) && in->default_top_k >= 0) sp.top_k = in->default_top_k;
    if (!(o->sampling_given & ENGINE_SET_TOP_P) && in->default_top_p > 0) sp.top_p = in->default_top_p;
    if (!(o->sampling_given & ENGINE_SET_MIN_P) && in->default_min_p >= 0) sp.min_p = in->default_min_p;
    if (!(o->sampling_given & ENGINE_SET_REPEAT) && in->default_repetition_penalty > 0)
        sp.repetition_penalty = in->default_repetition_penalty;
    if (!o->seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    if (fm_sampler_new(&sp, e->info->vocab_size, &e->sampler) != FM_OK) {
        engine_close(e);
        return cli_fail_lib("sampler");
    }
    return 0;
}

void engine_close(engine *e) {
    free(e->tools);
    fm_sampler_free(e->sampler);
    fm_chat_template_free(e->tmpl);
    fm_tokenizer_close(e->tok);
    fm_session_free(e->session);
    fm_model_close(e->model);
    memset(e, 0, sizeof *e);
}

int engine_render(engine *e, const char *messages_json, const engine_options *o, char **text) {
    if (!e->tmpl) { /* raw: the contents one after another */
        cJSON *m = cJSON_Parse(messages_json);
        size_t cap = strlen(messages_json) + 1, n = 0;
        char *out = malloc(cap);
        for (const cJSON *it = m ? m->child : NULL; it && out; it = it->next) {
            const cJSON *c = cJSON_GetObjectItem(it, "content");
            if (!cJSON_IsString(c)) continue;
            size_t l = strlen(c->valuestring);
            memcpy(out + n, c->valuestring, l); /* content is shorter than its JSON */
            n += l;
        }
        cJSON_Delete(m);
        if (!out) return cli_fail("out of memory");
        out[n] = 0;
        *text = out;
        return 0;
    }
    fm_chat_options co = {.add_generation_prompt = 1, .enable_thinking = o->thinking};
    if (fm_chat_template_render(e->tmpl, messages_json, e->tools, &co, text) != FM_OK)
        return cli_fail_lib("chat template");
    return 0;
}

static int is_eos(const engine *e, int32_t tok) {
    for (int i = 0; i < e->n_eos; i++)
        if (tok == e->eos[i]) return 1;
    return 0;
}

/* Length of the longest suffix of s[0, n) that is a proper prefix of a stop string. */
static size_t stop_prefix_tail(const char *s, size_t n, const generate_params *p) {
    size_t best = 0;
    for (int k = 0; k < p->n_stop; k++) {
        size_t sl = strlen(p->stop[k]);
        for (size_t l = sl - 1; l > best; l--)
            if (l <= n && !memcmp(s + n - l, p->stop[k], l)) {
                best = l;
                break;
            }
    }
    return best;
}

void engine_result_free(engine_result *r) {
    free(r->text);
    free(r->tokens);
    r->text = NULL;
    r->tokens = NULL;
}

static int result_fail(engine_result *r, const char *what) {
    snprintf(r->error, sizeof r->error, "%s: %s", what, fm_last_error());
    return cli_fail("%s", r->error);
}

/* Prompt tokens per eval call: cancellation is checked between them. */
enum { PREFILL_CHUNK = 512 };

int engine_generate_with(engine *e, const int32_t *prompt, int n_prompt, const generate_params *p, engine_result *r) {
    memset(r, 0, sizeof *r);
    r->n_prompt = n_prompt;
    const int V = e->info->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    size_t cap = 4096, len = 0, shown = 0;
    char *text = malloc(cap);
    int32_t *toks = malloc(((size_t)p->max_tokens + 1) * sizeof *toks);
    fm_detokenizer *detok = NULL;
    if (!logits || !text || !toks || fm_detokenizer_new(e->tok, 1, &detok) != FM_OK) {
        free(logits);
        free(text);
        free(toks);
        snprintf(r->error, sizeof r->error, "out of memory");
        return cli_fail("out of memory");
    }
    text[0] = 0; /* an answer may hold no text at all (EOS first, cancelled, failed) */
    for (int i = 0; i < n_prompt; i++) fm_sampler_accept(p->sampler, prompt[i]);
    int rc = 0;
    const int used = fm_session_position(p->session);
    if (used + n_prompt > e->max_context) {
        snprintf(r->error, sizeof r->error, "the prompt (%d tokens) does not fit the context: %d of its %d tokens are in use",
                 n_prompt, used, e->max_context);
        rc = cli_fail("%s (--ctx sets the context)", r->error);
    }
    double t0 = now_seconds();
    r->finish = "length";
    /* A long prompt chunk can take seconds: the session checks for cancellation between its
     * layers too (and resets itself if it stops midway). Not while decoding: a token is short,
     * and a reset would lose the conversation's state. */
    if (p->cancelled) fm_session_set_cancel(p->session, p->cancelled, p->user);
    for (int done = 0; !rc && done < n_prompt;) {
        if (p->cancelled && p->cancelled(p->user)) {
            r->finish = "cancelled";
            break;
        }
        int n = n_prompt - done < PREFILL_CHUNK ? n_prompt - done : PREFILL_CHUNK;
        if (p->on_checkpoint && p->checkpoint > done && p->checkpoint < done + n) n = p->checkpoint - done;
        fm_logits_mode mode = done + n == n_prompt ? FM_LOGITS_LAST : FM_LOGITS_NONE;
        fm_status st = fm_session_eval(p->session, prompt + done, n, mode, logits);
        if (st == FM_ERR_CANCELLED) {
            r->finish = "cancelled"; /* the session was reset: callers see it in its position */
            break;
        }
        if (st != FM_OK) rc = result_fail(r, "prefill");
        done += n;
        if (!rc && p->on_checkpoint && done == p->checkpoint && done < n_prompt) p->on_checkpoint(p->user);
    }
    fm_session_set_cancel(p->session, NULL, NULL);
    double t1 = now_seconds();
    if (!rc && p->on_prefilled && strcmp(r->finish, "cancelled")) p->on_prefilled(p->user);
    while (!rc && strcmp(r->finish, "cancelled")) {
        if (p->cancelled && p->cancelled(p->user)) {
            r->finish = "cancelled";
            break;
        }
        if (r->n_generated == p->max_tokens) break;
        if (fm_session_position(p->session) >= e->max_context) { /* a clean stop: the session stays usable */
            r->finish = "context";
            break;
        }
        int32_t tok = fm_sampler_sample(p->sampler, logits);
        fm_sampler_accept(p->sampler, tok);
        r->n_generated++;
        int eos = is_eos(e, tok);
        /* Feed every token, EOS included, so the session ends on a whole turn. */
        if (fm_session_eval(p->session, &tok, 1, FM_LOGITS_LAST, logits) != FM_OK) {
            rc = result_fail(r, "decode");
            break;
        }
        toks[r->n_tokens++] = tok;
        if (eos) {
            r->finish = "stop";
            r->ate_eos = 1;
            break;
        }
        size_t n;
        const char *piece = fm_detokenizer_push(detok, tok, &n);
        if (len + n + 1 > cap) {
            char *t = realloc(text, cap = 2 * (len + n + 1));
            if (!t) {
                snprintf(r->error, sizeof r->error, "out of memory");
                rc = cli_fail("out of memory");
                break;
            }
            text = t;
        }
        memcpy(text + len, piece, n);
        len += n;
        text[len] = 0;
        /* Stop strings: stop at the first one; hold back what may begin one. */
        const char *hit = NULL;
        for (int k = 0; k < p->n_stop; k++) {
            const char *h = strstr(text + (shown > 64 ? shown - 64 : 0), p->stop[k]);
            if (h && (!hit || h < hit)) hit = h, r->stop_hit = p->stop[k];
        }
        size_t safe = hit ? (size_t)(hit - text) : len - stop_prefix_tail(text, len, p);
        if (safe > shown && p->on_text) p->on_text(p->user, text + shown, safe - shown);
        if (safe > shown) shown = safe;
        if (hit) {
            len = (size_t)(hit - text);
            text[len] = 0;
            r->finish = "stop string";
            break;
        }
    }
    size_t tail_n;
    const char *tail = fm_detokenizer_flush(detok, &tail_n); /* an unfinished character */
    if (!rc && tail_n && len + tail_n + 1 <= cap) {
        memcpy(text + len, tail, tail_n);
        text[len += tail_n] = 0;
    }
    if (!rc && p->on_text && len > shown) /* held back as a possible stop string that never completed */
        p->on_text(p->user, text + shown, len - shown);
    double t2 = now_seconds();
    r->prefill_s = t1 - t0;
    r->decode_s = t2 - t1;
    r->text = text;
    r->tokens = toks;
    fm_detokenizer_free(detok);
    free(logits);
    return rc;
}

typedef struct {
    FILE *out;
    volatile sig_atomic_t *cancel;
    think_filter think;
    int show_think, reasoning_open; /* reasoning went to stderr without its last newline */
} terminal_sink;

static void terminal_part(void *user, int is_reasoning, const char *text, size_t len) {
    terminal_sink *t = user;
    if (is_reasoning) {
        if (t->show_think) fwrite(text, 1, len, stderr), t->reasoning_open = 1;
        return;
    }
    if (t->reasoning_open) fputc('\n', stderr), t->reasoning_open = 0;
    fwrite(text, 1, len, t->out);
    fflush(t->out);
}

static void terminal_text(void *user, const char *text, size_t len) {
    terminal_sink *t = user;
    think_filter_push(&t->think, text, len);
}

static int terminal_cancelled(void *user) {
    terminal_sink *t = user;
    return t->cancel && *t->cancel;
}

int engine_generate(engine *e, const int32_t *prompt, int n_prompt, int prompt_in_think, const engine_options *o,
                    volatile sig_atomic_t *cancel, FILE *out, engine_result *r) {
    terminal_sink sink = {.out = out, .cancel = cancel, .show_think = o->show_think};
    think_filter_init(&sink.think, prompt_in_think, terminal_part, &sink);
    generate_params p = {.session = e->session,
                         .sampler = e->sampler,
                         .max_tokens = o->max_tokens,
                         .stop = o->stop,
                         .n_stop = o->n_stop,
                         .on_text = out ? terminal_text : NULL,
                         .cancelled = terminal_cancelled,
                         .user = &sink};
    int rc = engine_generate_with(e, prompt, n_prompt, &p, r);
    if (out) think_filter_finish(&sink.think);
    if (sink.reasoning_open) fputc('\n', stderr);
    return rc;
}
