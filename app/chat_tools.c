/* chat --shell (see chat_tools.h). */
#include "chat_tools.h"

#include "server/tool_calls.h"
#include "shell_tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *error_json(const char *message) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int chat_shell_calls(cJSON *messages, const char *tools_json, const char *answer, FILE *in, FILE *out,
                     volatile sig_atomic_t *cancel) {
    assistant_output parsed;
    uint64_t rng = (uint64_t)getpid();
    if (assistant_parse(answer, strlen(answer), tools_json, 0, &rng, &parsed)) return 0;
    if (parsed.error) fprintf(out, "(the model wrote an invalid tool call: %s)\n", parsed.error);
    int added = 0;
    for (int i = 0; i < parsed.n_calls; i++) {
        if (strcmp(parsed.calls[i].name, "shell")) continue; /* other tools: the user answers with /tool */
        cJSON *args = cJSON_Parse(parsed.calls[i].arguments);
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(args, "command");
        char *result;
        if (!cJSON_IsString(cmd)) {
            result = error_json("the shell tool needs a string argument 'command'");
        } else if (!shell_confirm(cmd->valuestring, in, out)) {
            result = error_json("the user declined to run this command");
        } else {
            shell_result r;
            if (cancel) *cancel = 0;
            shell_limits lim = {.cancel = cancel};
            if (shell_run(cmd->valuestring, &lim, &r)) {
                char msg[256];
                snprintf(msg, sizeof msg, "cannot run the command: %s", strerror(errno));
                result = error_json(msg);
            } else {
                result = shell_result_json(&r);
                fprintf(out, "(exit %d; %zu bytes of output)\n", r.exit_code, r.out_total + r.err_total);
            }
            shell_result_free(&r);
        }
        cJSON_Delete(args);
        if (result) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", "tool");
            cJSON_AddStringToObject(m, "content", result);
            cJSON_AddItemToArray(messages, m);
            added++;
        }
        cJSON_free(result);
    }
    assistant_output_free(&parsed);
    return added;
}
