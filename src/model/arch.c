/* The architecture table (see arch.h). */
#include "model/arch.h"

#include <string.h>

static const fm_arch *const arch_table[] = {
    &fm_arch_qwen35moe,
    &fm_arch_qwen3next,
    &fm_arch_qwen3moe,
    &fm_arch_mixtral,
};

const fm_arch *arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof arch_table / sizeof *arch_table; i++)
        for (int j = 0; j < 3 && arch_table[i]->model_types[j]; j++)
            if (strcmp(arch_table[i]->model_types[j], model_type) == 0) return arch_table[i];
    return NULL;
}

const char *arch_supported_list(void) { return "qwen3_5_moe, qwen3_5_moe_text, qwen3_next, qwen3_moe, mixtral"; }
