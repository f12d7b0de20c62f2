/* libFuzzer target: the input is a chat template, compiled and rendered
 * against a fixed small conversation (system, user, assistant with a tool
 * call, tool result) with a tool list, with and without the generation
 * prompt. Templates are untrusted: parsing or rendering may fail, never
 * crash, hang, leak or touch memory it should not. */
#include "flashmoe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const messages =
    "[{\"role\": \"system\", \"content\": \"You are terse.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in K\xc3\xb6ln? \\\"now\\\"\"},"
    " {\"role\": \"assistant\", \"content\": null, \"reasoning_content\": \"call it\", \"tool_calls\": [{\"type\": "
    "\"function\","
    " \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"K\xc3\xb6ln\", \"days\": 2, \"scale\": "
    "1.5}}}]},"
    " {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 15}\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nok\\n</think>\\n\\n15 degrees.\"}]";

static const char *const tools =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather for a city.\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\":"
    " \"integer\", \"minimum\": 1}}, \"required\": [\"city\"]}}}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so ASan catches any read past the end */
    char *source = malloc(size + 1);
    if (!source) return 0;
    memcpy(source, data, size);
    source[size] = 0;
    fm_chat_template *t = NULL;
    if (fm_chat_template_new(source, &t) == FM_OK) {
        for (int variant = 0; variant < 2; variant++) {
            fm_chat_options options = {.add_generation_prompt = variant,
                                       .enable_thinking = variant ? 0 : -1,
                                       .bos_token = variant ? "<s>" : NULL,
                                       .eos_token = "</s>"};
            char *out = NULL;
            if (fm_chat_template_render(t, messages, variant ? tools : NULL, &options, &out) == FM_OK) {
                if (!out) abort();
                free(out);
            } else if (out) {
                abort(); /* nothing is returned on failure */
            }
        }
        fm_chat_template_free(t);
    } else if (t) {
        abort();
    }
    free(source);
    return 0;
}
