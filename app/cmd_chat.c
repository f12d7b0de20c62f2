/* flashmoe chat: a multi-turn conversation in the terminal, with line editing
 * and history (libedit). The session's KV and linear-attention state is kept
 * across turns, so each turn prefills only its new tokens:
 *   - when the template renders the conversation so far as exactly the text the
 *     session holds, only the rest of the new rendering is fed;
 *   - ChatML templates rewrite earlier turns (Qwen3 drops old <think> blocks), so
 *     then the new turn alone is rendered and appended after <|im_end|>;
 *   - otherwise the conversation is prefilled again (reported by /stats).
 * With --shell the model may run shell commands: each is shown and runs only
 * when the user says yes; its output goes back to the model. Answers are
 * rendered as Markdown on a terminal. --session FILE keeps the conversation in
 * FILE (resumed when it exists: re-prefilled at the next turn, so the model
 * remembers it). */
#include "engine.h"
#include "markdown.h"
#include "output_file.h"
#include "chat_tools.h"
#include "shell_tool.h"
#include "think_filter.h"

#include <cjson/cJSON.h>
#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    int n_dropped; /* messages dropped to fit the context */
    engine_result last;
    int have_last;
} chat_state;

static void add_message(cJSON *messages, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(messages, m);
}

static int has_role(cJSON *m, const char *role) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
    return cJSON_IsString(r) && !strcmp(r->valuestring, role);
}

/* Drops the oldest exchange after the system prompt (a user message and what
 * followed it, up to the next user message), never one of the newest `keep`
 * messages. Returns how many messages went (0: nothing left to drop). */
static int drop_oldest(cJSON *messages, int keep) {
    const int n = cJSON_GetArraySize(messages);
    int first = 0;
    while (first < n && has_role(cJSON_GetArrayItem(messages, first), "system")) first++;
    int end = first + 1;
    while (end < n - keep && !has_role(cJSON_GetArrayItem(messages, end), "user")) end++;
    if (first >= n - keep || end > n - keep) return 0;
    for (int i = first; i < end; i++) cJSON_DeleteItemFromArray(messages, first);
    return end - first;
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

/* The text to feed for the new turn (the last n_new messages: a user message,
 * or tool results) (malloc'd); sets *refill if the session must start over. */
static int turn_text(chat_state *c, engine *e, const engine_options *o, int n_new, char **out, int *refill) {
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
        cJSON *recent = cJSON_CreateArray();
        int total = cJSON_GetArraySize(c->messages);
        for (int i = total - n_new; i < total; i++)
            cJSON_AddItemToArray(recent, cJSON_Duplicate(cJSON_GetArrayItem(c->messages, i), 1));
        json = cJSON_PrintUnformatted(recent);
        cJSON_Delete(recent);
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

/* ---- sessions: the conversation in a file ---------------------------------- */

static int save_session(const chat_state *c, const char *system, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "flashmoe_chat", 1);
    if (system) cJSON_AddStringToObject(root, "system", system);
    cJSON_AddItemToObject(root, "messages", cJSON_Duplicate(c->messages, 1));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return cli_fail("out of memory saving the conversation");
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print leaves room only for its NUL: write the newline over it */
    int rc = output_file_write(path, text, n + 1, "the conversation");
    cJSON_free(text);
    return rc;
}

/* Reads a saved conversation: its messages (and system prompt) replace the current ones. */
static int load_session(chat_state *c, engine *e, char **system, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail("cannot open %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    char buf[65536];
    size_t n;
    while (mem && (n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, mem);
    int read_error = ferror(f);
    fclose(f);
    if (mem) fclose(mem);
    cJSON *root = !read_error && text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(root, "system");
    int valid = cJSON_IsArray(messages);
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        valid &= cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "role")) &&
                 cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content"));
    }
    if (!valid) {
        cJSON_Delete(root);
        return cli_fail("%s: not a saved conversation (a JSON object with a \"messages\" array of {role, content})",
                        path);
    }
    cJSON_Delete(c->messages);
    c->messages = cJSON_DetachItemFromObjectCaseSensitive(root, "messages");
    free(*system);
    *system = cJSON_IsString(sys) ? strdup(sys->valuestring) : NULL;
    cJSON_Delete(root);
    forget_state(c, e); /* the next turn prefills the whole conversation */
    return 0;
}

static void print_stats(const chat_state *c, const engine *e) {
    if (!c->have_last) {
        printf("no answer yet; context %d tokens\n", fm_session_position(e->session));
        return;
    }
    const engine_result *r = &c->last;
    printf("last turn: prefill %d tokens in %.3f s (%.1f tok/s), decode %d tokens in %.3f s (%.1f tok/s), "
           "finish: %s\ncontext: %d of %d tokens; conversation re-prefilled %d time%s; %d oldest message%s "
           "dropped to fit the context\n",
           r->n_prompt, r->prefill_s, r->n_prompt / (r->prefill_s > 0 ? r->prefill_s : 1e-9), r->n_generated,
           r->decode_s, r->n_generated / (r->decode_s > 0 ? r->decode_s : 1e-9), r->finish,
           fm_session_position(e->session), e->max_context, c->n_refills, c->n_refills == 1 ? "" : "s", c->n_dropped,
           c->n_dropped == 1 ? "" : "s");
    if (e->opt_timing) {
        fflush(stdout);
        cli_print_timing(e->session);
    }
}

static void help(void) {
    puts("commands: /reset (new conversation)  /system TEXT (new conversation with this system prompt)\n"
         "          /think (toggle thinking)  /stats  /help  /quit (or Ctrl-D)\n"
         "          /save FILE  /load FILE (the conversation; --session FILE saves after every turn)\n"
         "          /tool RESULT (answer the model's tool call with RESULT; see --tools)\n"
         "Ctrl-C stops the answer being written (or the command running).");
}

static const char chat_help[] =
    "  --shell               let the model run shell commands; each is shown first and runs only\n"
    "                        when you answer y (output is kept to 16 KB per stream, 60 s at most)\n"
    "  --session FILE        keep the conversation in FILE: resumed if it exists, saved after every turn\n"
    "  --plain               print answers as they are (default: Markdown rendered on a terminal)\n";

typedef struct {
    md_renderer *md; /* NULL: plain */
    think_filter think;
    int in_reasoning; /* reasoning is being shown */
} chat_output;

/* Reasoning is shown dimmed on a terminal, between <think> tags otherwise;
 * an empty one not at all. */
static void chat_part(void *user, int is_reasoning, const char *text, size_t len) {
    chat_output *out = user;
    if (is_reasoning) {
        if (!out->in_reasoning) fputs(out->md ? "\033[2m" : "<think>\n", stdout), out->in_reasoning = 1;
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        return;
    }
    if (out->in_reasoning) fputs(out->md ? "\033[0m\n\n" : "\n</think>\n\n", stdout), out->in_reasoning = 0;
    if (out->md) md_feed(out->md, text, len);
    else fwrite(text, 1, len, stdout), fflush(stdout);
}

static void chat_text(void *user, const char *text, size_t len) {
    chat_output *out = user;
    think_filter_push(&out->think, text, len);
}

static int chat_cancelled(void *user) {
    (void)user;
    return interrupted;
}

/* Adds the tool definitions of --shell to e->tools. */
static int add_shell_tool(engine *e) {
    cJSON *tools = e->tools ? cJSON_Parse(e->tools) : cJSON_CreateArray();
    cJSON *shell = cJSON_Parse(shell_tool_definition());
    if (!tools || !shell) return cJSON_Delete(tools), cJSON_Delete(shell), cli_fail("out of memory");
    cJSON_AddItemToArray(tools, shell);
    free(e->tools);
    e->tools = cJSON_PrintUnformatted(tools);
    cJSON_Delete(tools);
    return e->tools ? 0 : cli_fail("out of memory");
}

int cmd_chat(int argc, char **argv) {
    engine_options o;
    engine_options_init(&o);
    int use_shell = 0, plain = 0;
    const char *session_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: flashmoe chat -m DIR [options]\n"
                   "A conversation with line editing and history; the model's state is kept across turns.\n%s%s%s",
                   chat_help, engine_options_help(), cli_common_help);
            help();
            return 0;
        }
        if (!strcmp(argv[i], "--shell")) {
            use_shell = 1;
            continue;
        }
        if (!strcmp(argv[i], "--plain")) {
            plain = 1;
            continue;
        }
        if (!strcmp(argv[i], "--session")) {
            if (i + 1 >= argc) return cli_fail("--session needs a file");
            session_path = argv[++i];
            continue;
        }
        int r = engine_parse_option(argc, argv, &i, &o);
        if (r < 0) return 1;
        if (!r) return cli_fail("chat: unknown option '%s'", argv[i]);
    }
    engine e;
    int rc = engine_open(&e, &o);
    if (rc) return rc;
    if (use_shell && (rc = add_shell_tool(&e))) {
        engine_close(&e);
        return rc;
    }
    char *system = o.system ? strdup(o.system) : NULL;
    chat_state c = {0};
    reset(&c, &e, system);
    if (session_path && access(session_path, F_OK) == 0) {
        if ((rc = load_session(&c, &e, &system, session_path))) {
            cJSON_Delete(c.messages);
            free(system);
            engine_close(&e);
            return rc;
        }
        printf("(resumed %d messages from %s)\n", cJSON_GetArraySize(c.messages), session_path);
    }
    const char *no_color = getenv("NO_COLOR"); /* no-color.org: any non-empty value */
    chat_output output = {.md = plain || !isatty(STDOUT_FILENO) || (no_color && *no_color) ? NULL : md_new(stdout, 1)};
    /* Shell confirmations read stdin with stdio, the line editor reads it directly: unbuffered,
     * stdio cannot swallow the lines after the answer (piped input). */
    if (use_shell) setvbuf(stdin, NULL, _IONBF, 0);
    printf("flashmoe chat: %s (%s). /help for commands, Ctrl-D to leave.\n", cli_model_dir(&o.common),
           e.info->architecture);
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    double last_ctrl_c = -10;
    for (char *line; !rc;) {
        /* Ctrl-C at the prompt clears the line, as in a shell; twice within a second leaves. */
        interrupted = 0;
        sigaction(SIGINT, &sa, &old);
        line = readline("> ");
        sigaction(SIGINT, &old, NULL);
        if (interrupted) {
            free(line);
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            const double now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
            if (now - last_ctrl_c < 1.0) {
                printf("\n");
                break;
            }
            last_ctrl_c = now;
            printf("\n(Ctrl-C again or Ctrl-D to leave)\n");
            fflush(stdout);
            continue;
        }
        if (!line) break; /* Ctrl-D or the end of the input */
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
            } else if (!strncmp(line, "/save ", 6) && line[6]) {
                if (!save_session(&c, system, line + 6)) printf("(saved to %s)\n", line + 6);
            } else if (!strncmp(line, "/load ", 6) && line[6]) {
                if (!load_session(&c, &e, &system, line + 6))
                    printf("(loaded %d messages; the model reads them at your next message)\n",
                           cJSON_GetArraySize(c.messages));
            } else {
                help();
            }
            free(line);
            continue;
        }
        /* "/tool RESULT": what the tool the model called returned; else a user message. */
        const int is_tool = !strncmp(line, "/tool ", 6);
        add_message(c.messages, is_tool ? "tool" : "user", is_tool ? line + 6 : line);
        free(line);
        /* One answer, and more while the model calls the shell and the user lets it. */
        for (int n_new = 1; !rc && n_new > 0;) {
            char *feed = NULL;
            int refill;
            if ((rc = turn_text(&c, &e, &o, n_new, &feed, &refill))) break;
            if (refill) {
                forget_state(&c, &e);
                c.n_refills++;
            }
            int32_t *ids = NULL;
            int n = 0;
            if (fm_tokenizer_encode(e.tok, feed, strlen(feed), &ids, &n) != FM_OK) rc = cli_fail_lib("tokenize");
            /* A full context: drop the oldest exchanges and prefill what remains, leaving a
             * quarter of the context for the answer (or what there is, when nothing more can go). */
            const int room = e.max_context / 4 > 0 ? e.max_context / 4 : 1;
            int dropped = 0, skip = 0, partial = 0; /* partial: cancelled inside the prompt */
            while (!rc && fm_session_position(e.session) + n + room > e.max_context) {
                const int d = drop_oldest(c.messages, n_new);
                if (!d) {
                    if (fm_session_position(e.session) + n < e.max_context) break;
                    fprintf(stderr, "flashmoe: this message (%d tokens with the system prompt) does not fit the context "
                                    "of %d tokens; not sent (--ctx sets the context)\n",
                            n, e.max_context);
                    for (int k = 0; k < n_new; k++)
                        cJSON_DeleteItemFromArray(c.messages, cJSON_GetArraySize(c.messages) - 1);
                    skip = 1;
                    break;
                }
                dropped += d;
                forget_state(&c, &e);
                c.n_refills++;
                free(feed);
                free(ids);
                feed = NULL, ids = NULL, n = 0;
                if ((rc = turn_text(&c, &e, &o, n_new, &feed, &refill))) break;
                if (fm_tokenizer_encode(e.tok, feed, strlen(feed), &ids, &n) != FM_OK) rc = cli_fail_lib("tokenize");
            }
            if (dropped) {
                c.n_dropped += dropped;
                fprintf(stderr, "(the context of %d tokens is full: dropped the %d oldest message%s, %d tokens now)\n",
                        e.max_context, dropped, dropped == 1 ? "" : "s", n);
            }
            if (!rc && !skip) {
                interrupted = 0;
                sigaction(SIGINT, &sa, &old);
                if (c.have_last) engine_result_free(&c.last);
                generate_params p = {.session = e.session,
                                     .sampler = e.sampler,
                                     .max_tokens = o.max_tokens,
                                     .stop = o.stop,
                                     .n_stop = o.n_stop,
                                     .on_text = chat_text,
                                     .cancelled = chat_cancelled,
                                     .user = &output};
                think_filter_init(&output.think, think_prompt_is_inside(feed), chat_part, &output);
                const int pos_before = fm_session_position(e.session);
                rc = engine_generate_with(&e, ids, n, &p, &c.last);
                /* Cancelled inside the prompt: the session holds part of it. The user's message
                 * stays; the next turn prefills the conversation again. */
                if (!rc && fm_session_position(e.session) < pos_before + n) partial = 1;
                think_filter_finish(&output.think);
                if (output.in_reasoning) fputs(output.md ? "\033[0m" : "\n</think>", stdout), output.in_reasoning = 0;
                c.have_last = !rc;
                if (output.md) md_finish(output.md);
                sigaction(SIGINT, &old, NULL);
                printf(interrupted ? "\n(stopped)\n" : "\n");
                fflush(stdout);
                if (!rc && !strcmp(c.last.finish, "context"))
                    fprintf(stderr, "(the answer stopped: the context of %d tokens is full; the next message drops the "
                                    "oldest ones)\n",
                            e.max_context);
                fflush(stdout);
            }
            n_new = 0;
            if (!rc && partial) forget_state(&c, &e), c.n_refills++; /* see above */
            if (!rc && !skip && !partial) {
                add_message(c.messages, "assistant", c.last.text);
                append(&c, feed, strlen(feed));
                append(&c, c.last.text, strlen(c.last.text));
                c.ended_turn = c.last.ate_eos;
                if (c.last.ate_eos) append(&c, "<|im_end|>", 10);
                if (use_shell && !interrupted) {
                    sigaction(SIGINT, &sa, &old);
                    n_new = chat_shell_calls(c.messages, e.tools, c.last.text, stdin, stdout, &interrupted);
                    sigaction(SIGINT, &old, NULL);
                }
            }
            free(ids);
            free(feed);
        }
        if (!rc && session_path) save_session(&c, system, session_path);
    }
    if (c.have_last) engine_result_free(&c.last);
    md_free(output.md);
    cJSON_Delete(c.messages);
    free(c.consumed);
    free(system);
    engine_close(&e);
    return rc;
}
