/* config.json reader (see config.h). */
#include "load/config.h"

#include "core/error.h"
#include "core/json_file.h"
#include "model/arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cJSON *cfg_item(const cfg_reader *r, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->root, key);
    return cJSON_IsNull(it) ? NULL : it;
}

fm_status cfg_int(const cfg_reader *r, const char *key, int required, int fallback, int min, int *out) {
    const cJSON *it = cfg_item(r, key);
    if (!it) {
        if (required) return fm_error(FM_ERR_FORMAT, "%s: missing required key \"%s\"", r->path, key);
        *out = fallback;
        return FM_OK;
    }
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || v != floor(v) || v < min || v > 1e9)
        return fm_error(FM_ERR_FORMAT, "%s: \"%s\" must be an integer ≥ %d", r->path, key, min);
    *out = (int)v;
    return FM_OK;
}

fm_status cfg_double(const cfg_reader *r, const char *key, int required, double fallback, double *out) {
    const cJSON *it = cfg_item(r, key);
    if (!it) {
        if (required) return fm_error(FM_ERR_FORMAT, "%s: missing required key \"%s\"", r->path, key);
        *out = fallback;
        return FM_OK;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return fm_error(FM_ERR_FORMAT, "%s: \"%s\" must be a number", r->path, key);
    *out = it->valuedouble;
    return FM_OK;
}

fm_status cfg_bool(const cfg_reader *r, const char *key, int fallback, int *out) {
    const cJSON *it = cfg_item(r, key);
    if (!it) {
        *out = fallback;
        return FM_OK;
    }
    if (!cJSON_IsBool(it)) return fm_error(FM_ERR_FORMAT, "%s: \"%s\" must be true or false", r->path, key);
    *out = cJSON_IsTrue(it);
    return FM_OK;
}

fm_status cfg_layer_types(const cfg_reader *r, fm_config *cfg, int default_interval) {
    const cJSON *types = cfg_item(r, "layer_types");
    if (types) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != cfg->n_layers)
            return fm_error(FM_ERR_FORMAT, "%s: \"layer_types\" must list %d layers (num_hidden_layers)",
                            r->path, cfg->n_layers);
        for (int i = 0; i < cfg->n_layers; i++) {
            const cJSON *t = cJSON_GetArrayItem(types, i);
            if (cJSON_IsString(t) && strcmp(t->valuestring, "full_attention") == 0)
                cfg->layer_full_attention[i] = 1;
            else if (cJSON_IsString(t) && strcmp(t->valuestring, "linear_attention") == 0)
                cfg->layer_full_attention[i] = 0;
            else
                return fm_error(FM_ERR_UNSUPPORTED,
                                "%s: layer_types[%d] must be \"full_attention\" or \"linear_attention\"", r->path,
                                i);
        }
        return FM_OK;
    }
    int interval = 0;
    fm_status st = cfg_int(r, "full_attention_interval", CFG_OPTIONAL, default_interval, 1, &interval);
    if (st != FM_OK) return st;
    for (int i = 0; i < cfg->n_layers; i++) cfg->layer_full_attention[i] = (i + 1) % interval == 0;
    return FM_OK;
}

fm_status cfg_sparse_layers(const cfg_reader *r, fm_config *cfg) {
    int step;
    fm_status st = cfg_int(r, "decoder_sparse_step", CFG_OPTIONAL, 1, 1, &step);
    if (st != FM_OK) return st;
    for (int i = 0; i < cfg->n_layers; i++) cfg->layer_moe[i] = cfg->n_experts > 0 && (i + 1) % step == 0;
    const cJSON *only = cfg_item(r, "mlp_only_layers");
    if (only) {
        if (!cJSON_IsArray(only)) return fm_error(FM_ERR_FORMAT, "%s: \"mlp_only_layers\" must be a list", r->path);
        for (const cJSON *it = only->child; it; it = it->next) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= cfg->n_layers)
                return fm_error(FM_ERR_FORMAT, "%s: \"mlp_only_layers\" holds an entry that is not a layer index",
                                r->path);
            cfg->layer_moe[(int)it->valuedouble] = 0;
        }
    }
    if ((st = cfg_int(r, "intermediate_size", CFG_OPTIONAL, 0, 0, &cfg->dense_ffn))) return st;
    for (int i = 0; i < cfg->n_layers; i++)
        if (!cfg->layer_moe[i] && cfg->dense_ffn < 1)
            return fm_error(FM_ERR_FORMAT, "%s: layer %d is a dense MLP but intermediate_size is missing", r->path, i);
    return FM_OK;
}

fm_status cfg_linear_attention(const cfg_reader *r, fm_config *c) {
    fm_status st;
    if ((st = cfg_int(r, "linear_num_key_heads", CFG_REQUIRED, 0, 1, &c->lin_n_k_heads)) ||
        (st = cfg_int(r, "linear_num_value_heads", CFG_REQUIRED, 0, 1, &c->lin_n_v_heads)) ||
        (st = cfg_int(r, "linear_key_head_dim", CFG_REQUIRED, 0, 1, &c->lin_k_dim)) ||
        (st = cfg_int(r, "linear_value_head_dim", CFG_REQUIRED, 0, 1, &c->lin_v_dim)) ||
        (st = cfg_int(r, "linear_conv_kernel_dim", CFG_OPTIONAL, 4, 1, &c->lin_conv_kernel)))
        return st;
    if (c->lin_n_v_heads % c->lin_n_k_heads)
        return fm_error(FM_ERR_FORMAT, "%s: linear_num_value_heads %d is not a multiple of linear_num_key_heads %d",
                        r->path, c->lin_n_v_heads, c->lin_n_k_heads);
    return FM_OK;
}

/* rope_parameters (new) or rope_scaling (old) + top-level rope_theta. Only
 * plain RoPE is supported; Qwen3.5's MRoPE equals it for text. */
static fm_status read_rope(const cfg_reader *r, fm_config *cfg, double default_partial) {
    const cJSON *params = cfg_item(r, "rope_parameters");
    if (!params) params = cfg_item(r, "rope_scaling");
    if (params && !cJSON_IsObject(params))
        return fm_error(FM_ERR_FORMAT, "%s: \"rope_parameters\" must be an object", r->path);
    cfg_reader pr = {params, r->path};
    if (params) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(params, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(params, "type");
        if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "default") != 0))
            return fm_error(FM_ERR_UNSUPPORTED, "%s: rope_type \"%s\" is not supported (only \"default\")", r->path,
                            cJSON_IsString(type) ? type->valuestring : "?");
    }
    double theta = 0, partial = 0;
    fm_status st = cfg_double(r, "rope_theta", CFG_OPTIONAL, 10000.0, &theta);
    if (st == FM_OK && params) st = cfg_double(&pr, "rope_theta", CFG_OPTIONAL, theta, &theta);
    if (st == FM_OK) st = cfg_double(r, "partial_rotary_factor", CFG_OPTIONAL, default_partial, &partial);
    if (st == FM_OK && params) st = cfg_double(&pr, "partial_rotary_factor", CFG_OPTIONAL, partial, &partial);
    if (st != FM_OK) return st;
    if (!(theta > 0)) return fm_error(FM_ERR_FORMAT, "%s: rope_theta must be positive", r->path);
    cfg->rope_theta = theta;
    cfg->rotary_dim = partial > 0 && partial <= 1 ? (int)(cfg->head_dim * partial) : 0;
    if (!(partial > 0 && partial <= 1) || cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return fm_error(FM_ERR_FORMAT, "%s: partial_rotary_factor %g gives rotary dimension %d (must be even, > 0)",
                        r->path, partial, cfg->rotary_dim);
    return FM_OK;
}

/* eos_token_id: an integer or a list of integers. */
static fm_status read_eos(const cJSON *root, const char *path, fm_config *cfg) {
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (!eos || cJSON_IsNull(eos)) return FM_OK;
    const cJSON *items = cJSON_IsArray(eos) ? eos->child : eos;
    cfg->n_eos = 0;
    for (const cJSON *it = items; it; it = cJSON_IsArray(eos) ? it->next : NULL) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= cfg->vocab_size)
            return fm_error(FM_ERR_FORMAT, "%s: eos_token_id must be token ids below vocab_size %d", path,
                            cfg->vocab_size);
        if (cfg->n_eos < FM_MAX_EOS) cfg->eos[cfg->n_eos++] = (int32_t)it->valuedouble;
    }
    return FM_OK;
}

/* Sampling defaults a model ships with (temperature, top_p, top_k, min_p,
 * repetition_penalty; do_sample false means greedy). */
static fm_status read_sampling(const cJSON *root, const char *path, fm_config *cfg) {
    cfg_reader r = {root, path};
    double t = -1, p = -1, m = -1, rep = -1;
    int k = -1, sample = 1;
    fm_status st;
    if ((st = cfg_double(&r, "temperature", CFG_OPTIONAL, -1, &t)) || (st = cfg_double(&r, "top_p", CFG_OPTIONAL, -1, &p)) ||
        (st = cfg_double(&r, "min_p", CFG_OPTIONAL, -1, &m)) ||
        (st = cfg_double(&r, "repetition_penalty", CFG_OPTIONAL, -1, &rep)) ||
        (st = cfg_int(&r, "top_k", CFG_OPTIONAL, -1, 0, &k)) || (st = cfg_bool(&r, "do_sample", 1, &sample)))
        return st;
    cfg->gen_temperature = sample ? (float)t : 0.0f;
    cfg->gen_top_p = (float)p;
    cfg->gen_min_p = (float)m;
    cfg->gen_repetition_penalty = (float)rep;
    cfg->gen_top_k = k;
    return FM_OK;
}

static fm_status parse_root(cJSON *root, const char *label, fm_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->gen_temperature = cfg->gen_top_p = cfg->gen_min_p = cfg->gen_repetition_penalty = -1;
    cfg->gen_top_k = -1;
    if (!cJSON_IsObject(root)) return fm_error(FM_ERR_FORMAT, "%s: not a JSON object", label);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (text && !cJSON_IsNull(text) && !cJSON_IsObject(text))
        return fm_error(FM_ERR_FORMAT, "%s: \"text_config\" must be an object", label);
    cfg_reader r = {cJSON_IsObject(text) ? text : root, label};
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(r.root, "model_type");
    if (!cJSON_IsString(type)) return fm_error(FM_ERR_FORMAT, "%s: missing \"model_type\"", label);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type->valuestring);
    cfg->arch = arch_find(type->valuestring);
    if (!cfg->arch)
        return fm_error(FM_ERR_UNSUPPORTED, "%s: model_type \"%s\" is not supported (supported: %s)", label,
                        type->valuestring, arch_supported_list());

    fm_status st;
    int heads_default;
    if ((st = cfg_int(&r, "vocab_size", CFG_REQUIRED, 0, 1, &cfg->vocab_size)) ||
        (st = cfg_int(&r, "hidden_size", CFG_REQUIRED, 0, 1, &cfg->hidden_size)) ||
        (st = cfg_int(&r, "num_hidden_layers", CFG_REQUIRED, 0, 1, &cfg->n_layers)) ||
        (st = cfg_int(&r, "num_attention_heads", CFG_REQUIRED, 0, 1, &cfg->n_heads)) ||
        (st = cfg_int(&r, "num_key_value_heads", CFG_OPTIONAL, cfg->n_heads, 1, &cfg->n_kv_heads)))
        return st;
    /* Far above any real model; keeps a hostile config from asking for huge allocations. */
    if (cfg->n_layers > 4096)
        return fm_error(FM_ERR_FORMAT, "%s: num_hidden_layers %d is implausible (at most 4096)", label, cfg->n_layers);
    heads_default = cfg->hidden_size / cfg->n_heads;
    double eps = 0;
    if ((st = cfg_int(&r, "head_dim", CFG_OPTIONAL, heads_default, 1, &cfg->head_dim)) ||
        (st = cfg_double(&r, "rms_norm_eps", CFG_OPTIONAL, 1e-6, &eps)) ||
        (st = cfg_bool(&r, "tie_word_embeddings", 0, &cfg->tie_word_embeddings)) ||
        (st = cfg_int(&r, "max_position_embeddings", CFG_OPTIONAL, 4096, 1, &cfg->max_position_embeddings)) ||
        (st = cfg_int(&r, "num_experts_per_tok", CFG_REQUIRED, 0, 1, &cfg->n_experts_used)))
        return st;
    if (!(eps >= 1e-30 && eps <= 1.0))
        return fm_error(FM_ERR_FORMAT, "%s: rms_norm_eps %g is out of range (1e-30 .. 1)", label, eps);
    cfg->rms_norm_eps = (float)eps;
    /* A multimodal checkpoint may keep tie_word_embeddings at the top level only. */
    if (r.root != root && !cJSON_GetObjectItemCaseSensitive(r.root, "tie_word_embeddings")) {
        cfg_reader top = {root, label};
        if ((st = cfg_bool(&top, "tie_word_embeddings", 0, &cfg->tie_word_embeddings))) return st;
    }
    if (cfg->n_heads % cfg->n_kv_heads)
        return fm_error(FM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        label, cfg->n_heads, cfg->n_kv_heads);
    const cJSON *act = cfg_item(&r, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return fm_error(FM_ERR_UNSUPPORTED, "%s: hidden_act must be \"silu\"", label);

    cfg->layer_full_attention = calloc((size_t)cfg->n_layers, 1);
    cfg->layer_moe = calloc((size_t)cfg->n_layers, 1);
    if (!cfg->layer_full_attention || !cfg->layer_moe) return fm_error(FM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < cfg->n_layers; i++) cfg->layer_full_attention[i] = cfg->layer_moe[i] = 1;

    double default_partial = 1.0;
    if ((st = cfg->arch->read_config(&r, cfg, &default_partial))) return st;
    if ((st = read_rope(&r, cfg, default_partial))) return st;
    if (cfg->n_experts_used > cfg->n_experts)
        return fm_error(FM_ERR_FORMAT, "%s: num_experts_per_tok %d exceeds the %d experts", label,
                        cfg->n_experts_used, cfg->n_experts);
    return read_eos(r.root, label, cfg);
}

fm_status fm_config_parse(const char *text, size_t len, const char *label, fm_config *cfg) {
    cJSON *root;
    memset(cfg, 0, sizeof *cfg);
    fm_status st = json_parse_text(text, len, label, &root);
    if (st != FM_OK) return st;
    st = parse_root(root, label, cfg);
    cJSON_Delete(root);
    if (st != FM_OK) fm_config_free(cfg);
    return st;
}

fm_status fm_config_load(const char *dir, fm_config *cfg) {
    char path[4096];
    cJSON *root;
    memset(cfg, 0, sizeof *cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    fm_status st = json_file_read(path, &root);
    if (st != FM_OK) return st;
    st = parse_root(root, path, cfg);
    cJSON_Delete(root);
    if (st != FM_OK) {
        fm_config_free(cfg);
        return st;
    }
    /* generation_config.json's eos ids take precedence over config.json's. */
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *probe = fopen(path, "rb");
    if (!probe) return FM_OK;
    fclose(probe);
    if ((st = json_file_read(path, &root)) == FM_OK) {
        if (!cJSON_IsObject(root)) st = fm_error(FM_ERR_FORMAT, "%s: not a JSON object", path);
        else if ((st = read_eos(root, path, cfg)) == FM_OK) st = read_sampling(root, path, cfg);
        cJSON_Delete(root);
    }
    if (st != FM_OK) fm_config_free(cfg);
    return st;
}

void fm_config_free(fm_config *cfg) {
    free(cfg->layer_full_attention);
    free(cfg->layer_moe);
    cfg->layer_full_attention = cfg->layer_moe = NULL;
}
