/* An assistant's raw output → reasoning, content text and tool calls, for the
 * HTTP server (OpenAI / Anthropic shapes). Qwen3 / Qwen3.5 family formats:
 *   reasoning   <think>…</think> at the start (or only </think> when the
 *               prompt itself ended inside <think>)
 *   JSON call   <tool_call>{"name": "f", "arguments": {…}}</tool_call>
 *               (arguments may also be a JSON string holding an object)
 *   XML call    <tool_call><function=f><parameter=p>value</parameter>…
 *               </function></tool_call>; raw values are typed by the
 *               tool's JSON schema
 * The model's text is untrusted: nothing here crashes on any input, and a
 * malformed call is reported (error) and left in the content as written. */
#ifndef FM_APP_SERVER_TOOL_CALLS_H
#define FM_APP_SERVER_TOOL_CALLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *id;        /* "call_" + 24 letters and digits */
    char *name;      /* as written, surrounding whitespace removed */
    char *arguments; /* a JSON object, compact (cJSON's rendering) */
} tool_call;

typedef struct {
    char *reasoning; /* trimmed; NULL if no think block or an empty one */
    char *content;   /* the text outside the think and valid tool_call blocks,
                        trimmed; "" if none. Both drop NUL bytes. */
    tool_call *calls; /* the valid calls in order of appearance */
    int n_calls;
    char *error; /* NULL, or the invalid calls, "; "-separated (ten at most,
                    then a count), each "tool call N: what", N counting every
                    <tool_call> block from 1, e.g. "tool call 2: arguments
                    are not valid JSON at byte 17" */
} assistant_output;

/* Parses text[0, len) (need not be NUL-terminated).
 * tools_json: the request's "tools" array (OpenAI shape
 *   [{"type": "function", "function": {"name", "parameters"}}] or bare
 *   {"name", "parameters"} entries), or NULL: then any function name is
 *   accepted and XML values are typed by trying JSON. Text that is not a JSON
 *   array counts as NULL (the server validates the request).
 * think_open: the prompt ended inside <think>, so the output begins in the
 *   reasoning (up to the first </think>, or the end when there is none).
 * rng: state of the call id generator, advanced once per id; seed it per
 *   process (time, pid) for distinct ids, with a constant for reproducible
 *   ones. NULL: a fixed seed.
 * Returns 0, or -1 when out of memory (out then holds nothing). Invalid calls
 * never fail the parse: they set out->error and stay in out->content. */
int assistant_parse(const char *text, size_t len, const char *tools_json, int think_open, uint64_t *rng,
                    assistant_output *out);
void assistant_output_free(assistant_output *o);

/* Streaming: of text[0, len) generated so far, how many bytes are plain text
 * that can be sent now — everything before the first "<tool_call>", "<think>"
 * or "</think>", before a trailing partial one ("<tool_c", "</thi"), and
 * before a trailing incomplete UTF-8 sequence (tokens may split characters).
 * Never decreases as text grows. Usage: in the reasoning, send text up to this
 * point as reasoning and stop at a </think>; after it, send content up to this
 * point and, at a <tool_call>, hold the rest for assistant_parse at the end. */
size_t assistant_stream_safe(const char *text, size_t len);

#endif
