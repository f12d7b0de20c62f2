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
    const char *finish; /* "stop" (EOS), "stop string", "length", "cancelled" */
    char *text;         /* everything generated, stop string excluded (malloc'd) */
    int ate_eos;        /* the EOS token was fed into the session */
} engine_result;

/* Feeds `prompt` after what the session holds, then samples until EOS, a stop
 * string, max_tokens or *cancel, streaming text to `out`. The EOS token is fed
 * too, so the session ends on a complete turn. 0 or the exit code. */
int engine_generate(engine *e, const int32_t *prompt, int n_prompt, const engine_options *o,
                    volatile sig_atomic_t *cancel, FILE *out, engine_result *r);

#endif
