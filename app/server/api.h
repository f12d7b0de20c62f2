/* The APIs' request parsing and response formatting. A parser turns a JSON
 * body into a job (prompt tokens, sampling, stop strings, tools); a formatter
 * turns the job's output into the API's response, whole or as server-sent
 * events. */
#ifndef FM_APP_SERVER_API_H
#define FM_APP_SERVER_API_H

#include "server/job.h"
#include "server/server.h"
#include "server/strbuf.h"

#include <cjson/cJSON.h>

typedef enum { API_CHAT, API_COMPLETIONS, API_MESSAGES } api_kind;

typedef struct {
    api_kind kind;
    int stream;
    int include_usage;       /* OpenAI stream_options.include_usage */
    char model[128];
    char id[48];             /* response id */
    long created;
    job *job;
    /* Streaming progress. */
    size_t sent_reasoning, sent_content;
    int started, finished;
    int block;               /* Anthropic: index of the open content block, -1 none */
    int block_kind;          /* 0 none, 1 thinking, 2 text */
    int n_blocks;
} api_request;

/* An error to answer with: HTTP status and message. */
typedef struct {
    int status;
    char message[512];
    const char *type; /* "invalid_request_error", "authentication_error", ... */
} api_error;

int api_fail(api_error *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The request body as a JSON object, or NULL with a 400 in err (not JSON, not an
 * object, or a NUL byte or \u0000 in it: the message names the field). */
cJSON *api_parse_body(const char *data, size_t n, api_error *err);

/* Parsers: 0, or -1 with err set. On success req->job holds the request. */
int openai_chat_parse(server *srv, cJSON *body, api_request *req, api_error *err);
int openai_completions_parse(server *srv, cJSON *body, api_request *req, api_error *err);
int anthropic_parse(server *srv, cJSON *body, api_request *req, api_error *err);

/* Shared by the parsers: "model" (echoed back; the served model's name when absent) and
 * "stream"; sampling fields; stop strings; the prompt from template-ready messages (OpenAI
 * shape) and tools, or a raw prompt. */
int api_parse_model_stream(server *srv, const cJSON *body, api_request *req, api_error *err);
int api_parse_sampling(server *srv, const cJSON *body, job *j, api_error *err);
/* Text content (OpenAI message content, Anthropic system and tool results): a string, null, or
 * an array of {"type": "text", "text"} parts, appended to out; anything else is a 400 naming `where`. */
int api_text_content(const cJSON *content, const char *where, strbuf *out, api_error *err);
int api_add_stop(job *j, const cJSON *stop, const char *field, api_error *err);
/* prefill: text that begins the answer (Anthropic's last assistant message), or NULL. */
int api_render_chat(server *srv, cJSON *messages, cJSON *tools, int thinking, const char *prefill, job *j,
                    api_error *err);
int api_tokenize_prompt(server *srv, const char *text, job *j, api_error *err);
int api_check_context(server *srv, job *j, int max_tokens_given, api_error *err);

/* Formatters, called with the job's lock held. The whole response (job done): */
char *openai_response(api_request *req);
char *anthropic_response(api_request *req);
/* Appends the events that are ready; sets req->finished after the last one. */
void openai_stream(api_request *req, strbuf *out);
void anthropic_stream(api_request *req, strbuf *out);
/* Error bodies in each API's shape (malloc'd). */
char *openai_error_body(const api_error *err);
char *anthropic_error_body(const api_error *err);

/* Sends a stream's reasoning and content as they become ready, through emit (reasoning: 1 for
 * reasoning, 0 for content; n may be 0); once the job is done, also what the final parse adds beyond
 * what was streamed (text held back as a possible marker). Called with the job's lock held. */
typedef void (*api_emit)(api_request *req, strbuf *out, int reasoning, const char *text, size_t n);
void api_stream_text(api_request *req, api_emit emit, strbuf *out);

#endif
