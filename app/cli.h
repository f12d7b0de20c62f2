/* The flashmoe command line: a thin client of flashmoe.h. Each command is one
 * file (cmd_*.c); shared option parsing lives in cli.c. Only app/ exits. */
#ifndef FM_APP_CLI_H
#define FM_APP_CLI_H

#include "flashmoe.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *model_dir;
    int n_threads;
    int max_context;
    int batch;              /* --batch: prompt tokens per micro-batch (0 = the library's default) */
    int timing;             /* --timing: per-layer breakdown and totals on stderr at the end */
    fm_model_options model; /* --experts and the expert-store options */
} cli_common;

/* The help lines of the options cli_parse_common takes. */
extern const char cli_common_help[];
/* --timing's report: per-layer breakdown and run totals, to stderr. */
void cli_print_timing(const fm_session *s);
/* "8G", "512M", "1.5GB", "123456" → bytes; 0 if invalid. */
uint64_t cli_parse_size(const char *text);

/* Prints "flashmoe: <message>" to stderr; returns 1 (the exit code). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, with fm_last_error() after the message. */
int cli_fail_lib(const char *what);

/* Handles -m/--model, -t/--threads, --ctx, --timing and the expert options
 * (--experts, --io, --direct, --cache, --cache-size, --memory-budget,
 * --preload, --verify-reads, --io-threads). Returns 1 if argv[*i] was one of
 * them (consuming its value), 0 if not, -1 on a bad value. */
int cli_parse_common(int argc, char **argv, int *i, cli_common *c);
/* The model directory: -m, else $FLASHMOE_MODEL (empty: none), else the model
 * shipped beside the binary (its repository's models/, or PREFIX/share/flashmoe
 * after make install); NULL if none. */
const char *cli_model_dir(const cli_common *c);
/* Opens the model of cli_model_dir. 0 on success, else the exit code. */
int cli_open_model(const cli_common *c, fm_model **model, fm_session **session);
/* Parses --ids, then opens the model and a session (score, generate). 0 on
 * success, else the exit code with nothing left allocated. */
int cli_open_with_ids(const cli_common *c, const char *ids_text, int32_t **ids, int *n, fm_model **model,
                      fm_session **session);
/* "1,2,3" → ids, the value of option `opt`. 0 on success, else the exit code
 * (message printed, naming opt and the first bad id). */
int cli_parse_ids(const char *opt, const char *text, int32_t **ids, int *n);
/* Non-negative integer option value; -1 if invalid. */
long cli_parse_count(const char *text);
/* An integer option value in [min, max] into *out: 0, or -1 with a message that
 * says what is wrong (not a number, too small, too large, and the limit). */
int cli_count_option(const char *opt, const char *text, long min, long max, long *out);

int cmd_info(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_verify(int argc, char **argv);

#endif
