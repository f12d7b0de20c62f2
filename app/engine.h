/* What `run` and `chat` share: the loaded model with its tokenizer, chat
 * template and sampler, and the streaming generation loop. */
#ifndef FM_APP_ENGINE_H
#define FM_APP_ENGINE_H

#include "cli.h"

#include <signal.h>

typedef struct {
    fm_model *model;
    fm_session *session;
    fm_tokenizer *tok;
    fm_chat_template *tmpl; /* NULL: prompts are used as raw text */
    fm_sampler *sampler;
    const fm_model_info *info;
    int32_t eos[16];
    int n_eos;
    int max_context; /* tokens the session holds at most */
    int opt_timing; /* --timing: /stats in chat adds the per-layer breakdown */
    char *tools;    /* --tools: the JSON array of tool definitions, or NULL */
} engine;

/* Options of `run` and `chat` besides the common ones. */
typedef struct {
    cli_common common;
    const char *tokenizer_path; /* default: the model directory */
    const char *template_arg;   /* NULL (the model's), "chatml", "none" or a file */
    const char *system;
    const char *tools_path;     /* --tools FILE: a JSON array of tool definitions */
    int thinking;               /* -1 template default, 0 off, 1 on */
    int show_think;             /* run: the reasoning to stderr (--show-think); else not shown */
    int max_tokens;
    const char *stop[8];
    int n_stop;
    fm_sampler_params sampling;
    int seed_given;
    unsigned sampling_given; /* ENGINE_SET_* bits: options given on the command line */
} engine_options;

enum { ENGINE_SET_TEMP = 1, ENGINE_SET_TOP_K = 2, ENGINE_SET_TOP_P = 4, ENGINE_SET_MIN_P = 8, ENGINE_SET_REPEAT = 16 };

/* Parses one option of run/chat at argv[*i]: 1 consumed, 0 not ours, -1 error. */
int engine_parse_option(int argc, char **argv, int *i, engine_options *o);
const char *engine_options_help(void);
void engine_options_init(engine_options *o);
int engine_open(engine *e, const engine_options *o); /* 0 or the exit code */
void engine_close(engine *e);

/* Renders messages (a JSON array) with the template and the generation prompt. */
int engine_render(engine *e, const char *messages_json, const engine_options *o, char **text);

typedef struct {
    int n_prompt, n_generated;
    double prefill_s, decode_s;
    const char *finish; /* "stop" (EOS), "stop string", "length" (-n), "context" (the context is full), "cancelled" */
    const char *stop_hit; /* the stop string met (one of generate_params.stop) */
    char *text;         /* everything generated, stop string excluded (malloc'd) */
    int32_t *tokens;    /* the generated tokens fed to the session, EOS included (malloc'd) */
    int n_tokens;
    int ate_eos;        /* the EOS token was fed into the session */
    char error[512];    /* why it failed (also printed), when the call returned non-zero */
} engine_result;
void engine_result_free(engine_result *r);

/* One generation: where, how, and who hears about it. */
typedef struct {
    fm_session *session;
    fm_sampler *sampler;
    int max_tokens;
    const char *const *stop; /* stop strings (not included in the text) */
    int n_stop;
    /* Text as it becomes final (what may begin a stop string is held back). */
    void (*on_text)(void *user, const char *text, size_t len);
    /* Polled between prompt chunks and tokens: nonzero stops ("cancelled"). */
    int (*cancelled)(void *user);
    /* Once the prompt is in the session, before the first token is sampled. */
    void (*on_prefilled)(void *user);
    /* Once the first `checkpoint` prompt tokens are in (0 < checkpoint < n_prompt), e.g. to snapshot
     * the conversation before the template's generation prompt. */
    int checkpoint;
    void (*on_checkpoint)(void *user);
    void *user;
} generate_params;

/* Feeds `prompt` after what the session holds (and to the sampler's history),
 * then samples until EOS, a stop string, max_tokens or cancellation. The EOS
 * token is fed too, so the session ends on a complete turn. 0 or the exit code
 * (r->error says why). */
int engine_generate_with(engine *e, const int32_t *prompt, int n_prompt, const generate_params *p, engine_result *r);

/* The same on the engine's session and sampler with run/chat's options, streaming text to `out`. */
/* Reasoning (a leading <think> block; prompt_in_think: the prompt opened it)
 * is not written to `out`: it goes to stderr with o->show_think, else nowhere. */
int engine_generate(engine *e, const int32_t *prompt, int n_prompt, int prompt_in_think, const engine_options *o,
                    volatile sig_atomic_t *cancel, FILE *out, engine_result *r);

#endif
