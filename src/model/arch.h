/* One table row per architecture: what a model_type means. Everything
 * specific to an architecture lives in its file in model/arch/; adding one is
 * one file plus one row in arch.c. */
#ifndef FM_MODEL_ARCH_H
#define FM_MODEL_ARCH_H

#include "load/config.h"

typedef struct fm_model fm_model;

typedef struct fm_arch {
    const char *name; /* human name for `info` */
    const char *model_types[3];
    /* Reads the architecture's keys and sets its behaviour flags.
     * *default_partial_rotary is the rotary fraction when the config names none. */
    fm_status (*read_config)(const cfg_reader *r, fm_config *cfg, double *default_partial_rotary);
    /* Binds the tensors of one layer (names and layout are the arch's). */
    fm_status (*load_layer)(fm_model *m, int layer);
    const char *prefixes[3]; /* tensor-name prefixes tried in order */
} fm_arch;

const fm_arch *arch_find(const char *model_type);
const char *arch_supported_list(void);

extern const fm_arch fm_arch_qwen35moe, fm_arch_qwen3next, fm_arch_qwen3moe, fm_arch_mixtral;

#endif
