/* libFuzzer target: the input is a config.json text for fm_config_parse. On
 * success the config must be self-consistent (what the loader relies on). */
#include "load/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy to an exact-size allocation so ASan catches any read past the end. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    fm_config cfg;
    if (fm_config_parse(text, size, "fuzz/config.json", &cfg) == FM_OK) {
        if (!cfg.arch || cfg.n_layers < 1 || !cfg.layer_full_attention || !cfg.layer_moe) abort();
        if (cfg.vocab_size < 1 || cfg.hidden_size < 1 || cfg.n_heads < 1 || cfg.n_kv_heads < 1) abort();
        if (cfg.n_heads % cfg.n_kv_heads) abort();
        if (cfg.n_experts_used < 1 || cfg.n_experts_used > cfg.n_experts) abort();
        if (cfg.rotary_dim < 2 || cfg.rotary_dim % 2 || cfg.rotary_dim > cfg.head_dim) abort();
        if (!(cfg.rope_theta > 0) || !(cfg.rms_norm_eps > 0)) abort();
        if (cfg.n_eos < 0 || cfg.n_eos > FM_MAX_EOS) abort();
        for (int i = 0; i < cfg.n_eos; i++)
            if (cfg.eos[i] < 0 || cfg.eos[i] >= cfg.vocab_size) abort();
        for (int i = 0; i < cfg.n_layers; i++)
            if (cfg.layer_full_attention[i] > 1 || cfg.layer_moe[i] > 1) abort();
        fm_config_free(&cfg);
    } else if (cfg.layer_full_attention || cfg.layer_moe) {
        abort(); /* freed on failure */
    }
    free(text);
    return 0;
}
