/* chat --shell: the model's shell calls, confirmed by the user, run, and
 * their results added to the conversation as tool messages. */
#ifndef FM_APP_CHAT_TOOLS_H
#define FM_APP_CHAT_TOOLS_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>

/* Finds the calls of the "shell" tool in `answer` (tools_json: the tools
 * offered), asks on in/out before each, runs the confirmed ones (cancel: a
 * SIGINT flag that stops a command) and appends one tool message per call to
 * `messages`: the command's output, or why it did not run. Returns how many
 * messages were added (0: no shell call). */
int chat_shell_calls(cJSON *messages, const char *tools_json, const char *answer, FILE *in, FILE *out,
                     volatile sig_atomic_t *cancel);

#endif
