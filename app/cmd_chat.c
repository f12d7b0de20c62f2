/* flashmoe chat: a multi-turn conversation in the terminal, with line editing
 * and history (libedit). The session's KV and linear-attention state is kept
 * across turns, so each turn prefills only its new tokens:
 *   - when the template renders the conversation so far as exactly the text the
 *     session holds, only the rest of the new rendering is fed;
 *   - ChatML templates rewrite earlier turns (Qwen3 drops old <think> blocks), so
 *     then the new turn alone is rendered and appended after <|im_end|>;
 *   - otherwise the conversation is prefilled again (reported by /stats). */
#include "engine.h"

#include <cjson/cJSON.h>
#include <editline/readline.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct {
    cJSON *messages;
    char *consumed; /* the text the session holds */
    size_t consumed_len;
    int ended_turn; /* the session ends with <|im_end|> */
    int n_refills;
    engine_result last;
    int have_last;
} chat_state;

static void add_message(cJSON *messages, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(messages, m);
}

static int append(chat_state *c, const char *s, size_t n) {
    char *p = realloc(c->consumed, c->consumed_len + n + 1);
    if (!p) return -1;
    memcpy(p + c->consumed_len, s, n);
    c->consumed = p;
    c->consumed_len += n;
    p[c->consumed_len] = 0;
    return 0;
}

/* Empties the session (and what the penalties remember); the messages stay. */
static void forget_state(chat_state *c, engine *e) {
    free(c->consumed);
    c->consumed = NULL;
    c->consumed_len = 0;
    c->ended_turn = 0;
    fm_session_reset(e->session);
    fm_sampler_reset(e->sampler);
}

static void reset(chat_state *c, engine *e, const char *system) {
    cJSON_Delete(c->messages);
    c->messages = cJSON_CreateArray();
    if (system) add_message(c->messages, "system", system);
    forget_state(c, e);
}

/* The text to feed for the new turn (a user message, or a tool's result)
 * (malloc'd); sets *refill if the session must start over. */
static int turn_text(chat_state *c, engine *e, const engine_options *o, const char *role, const char *text,
                     char **out, int *refill) {
    *refill = 0;
    char *json = cJSON_PrintUnformatted(c->messages), *full = NULL;
    int rc = json ? engine_render(e, json, o, &full) : cli_fail("out of memory");
    cJSON_free(json);
    if (rc) return rc;
    if (!c->consumed_len || !strncmp(full, c->consumed, c->consumed_len)) {
        *out = strdup(full + c->consumed_len);
        free(full);
        return *out ? 0 : cli_fail("out of memory");
    }
    if (e->tmpl && strstr(full, "<|im_start|>")) {
        cJSON *one = cJSON_CreateArray();
        add_message(one, role, text);
        json = cJSON_PrintUnformatted(one);
        cJSON_Delete(one);
        char *turn = NULL;
        rc = json ? engine_render(e, json, o, &turn) : cli_fail("out of memory");
        cJSON_free(json);
        if (!rc) {
            const char *close = c->ended_turn ? "\n" : "<|im_end|>\n";
            *out = malloc(strlen(close) + strlen(turn) + 1);
            if (*out) sprintf(*out, "%s%s", close, turn);
            else rc = cli_fail("out of memory");
        }
        free(turn);
        free(full);
        return rc;
    }
    *refill = 1;
    *out = full;
    return 0;
}

static void print_stats(const chat_state *c, const engine *e) {
    if (!c->have_last) {
        printf("no answer yet; context %d tokens\n", fm_session_position(e->session));
        return;
    }
    const engine_result *r = &c->last;
    printf("last turn: prefill %d tokens in %.3f s (%.1f tok/s), decode %d tokens in %.3f s (%.1f tok/s), "
           "finish: %s\ncontext: %d tokens; conversation re-prefilled %d time%s\n",
           r->n_prompt, r->prefill_s, r->n_prompt / (r->prefill_s > 0 ? r->prefill_s : 1e-9), r->n_generated,
           r->decode_s, r->n_generated / (r->decode_s > 0 ? r->decode_s : 1e-9), r->finish,
           fm_session_position(e->session), c->n_refills, c->n_refills == 1 ? "" : "s");
    if (e->opt_timing) {
        fflush(stdout);
        cli_print_timing(e->session);
    }
}

static void help(void) {
    puts("commands: /reset (new conversation)  /system TEXT (new conversation with this system prompt)\n"
         "          /think (toggle thinking)  /stats  /help  /quit (or Ctrl-D)\n"
         "          /tool RESULT (answer the model's tool call with RESULT; see --tools)\n"
         "Ctrl-C stops the answer being written.");
}

int cmd_chat(int argc, char **argv) {
    engine_options o;
    engine_options_init(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: flashmoe chat -m DIR [options]\n"
                   "A conversation with line editing and history; the model's state is kept across turns.\n%s%s",
                   engine_options_help(), cli_common_help);
            help();
            return 0;
        }
        int r = engine_parse_option(argc, argv, &i, &o);
        if (r < 0) return 1;
        if (!r) return cli_fail("chat: unknown option '%s'", argv[i]);
    }
    engine e;
    int rc = engine_open(&e, &o);
    if (rc) return rc;
    char *system = o.system ? strdup(o.system) : NULL;
    chat_state c = {0};
    reset(&c, &e, system);
    printf("flashmoe chat: %s (%s). /help for commands, Ctrl-D to leave.\n", cli_model_dir(&o.common),
           e.info->architecture);
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    for (char *line; !rc && (line = readline("> "));) {
        if (!*line) {
            free(line);
            continue;
        }
        add_history(line);
        if (line[0] == '/' && strncmp(line, "/tool ", 6)) {
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) {
                free(line);
                break;
            } else if (!strcmp(line, "/reset")) {
                reset(&c, &e, system);
                puts("(new conversation)");
            } else if (!strncmp(line, "/system", 7) && (line[7] == ' ' || !line[7])) {
                free(system);
                system = line[7] && line[8] ? strdup(line + 8) : NULL;
                reset(&c, &e, system);
                printf("(new conversation%s)\n", system ? " with that system prompt" : ", no system prompt");
            } else if (!strcmp(line, "/think")) {
                o.thinking = o.thinking == 0 ? 1 : 0;
                printf("(thinking %s)\n", o.thinking ? "on" : "off");
            } else if (!strcmp(line, "/stats")) {
                print_stats(&c, &e);
            } else {
                help();
            }
            free(line);
            continue;
        }
        /* "/tool RESULT": what the tool the model called returned; else a user message. */
        const int is_tool = !strncmp(line, "/tool ", 6);
        const char *role = is_tool ? "tool" : "user", *text = is_tool ? line + 6 : line;
        add_message(c.messages, role, text);
        char *feed = NULL;
        int refill;
        if ((rc = turn_text(&c, &e, &o, role, text, &feed, &refill))) {
            free(line);
            break;
        }
        if (refill) {
            forget_state(&c, &e);
            c.n_refills++;
        }
        int32_t *ids = NULL;
        int n = 0;
        if (fm_tokenizer_encode(e.tok, feed, strlen(feed), &ids, &n) != FM_OK) rc = cli_fail_lib("tokenize");
        if (!rc) {
            interrupted = 0;
            sigaction(SIGINT, &sa, &old);
            if (c.have_last) engine_result_free(&c.last);
            rc = engine_generate(&e, ids, n, &o, &interrupted, stdout, &c.last);
            c.have_last = !rc;
            sigaction(SIGINT, &old, NULL);
            printf(interrupted ? "\n(stopped)\n" : "\n");
            fflush(stdout);
        }
        if (!rc) {
            add_message(c.messages, "assistant", c.last.text);
            append(&c, feed, strlen(feed));
            append(&c, c.last.text, strlen(c.last.text));
            c.ended_turn = c.last.ate_eos;
            if (c.last.ate_eos) append(&c, "<|im_end|>", 10);
        }
        free(ids);
        free(feed);
        free(line);
    }
    if (c.have_last) engine_result_free(&c.last);
    cJSON_Delete(c.messages);
    free(c.consumed);
    free(system);
    engine_close(&e);
    return rc;
}
