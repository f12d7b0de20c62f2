/* Opening a model directory: config, checkpoint, tensor binding, info. */
#include "model/model.h"

#include "backend/cpu/qkernels.h"
#include "backend/cuda/cuda_backend.h"
#include "core/pool.h"

#include "model/arch.h"
#include "model/session.h"
#include "model/weights.h"
#include "pack/pack_format.h"
#include "quant/affine.h"
#include "store/expert_store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

/* Fixed-size buffers in the kernels bound these. */
static fm_status check_limits(const fm_config *c, const char *dir) {
    if (c->rotary_dim > 1024)
        return fm_error(FM_ERR_UNSUPPORTED, "%s: rotary dimension %d exceeds 1024", dir, c->rotary_dim);
    for (int i = 0; i < c->n_layers; i++) {
        if (c->layer_full_attention[i]) continue;
        if (c->lin_conv_kernel < 2 || c->lin_conv_kernel > 16)
            return fm_error(FM_ERR_UNSUPPORTED, "%s: linear_conv_kernel_dim %d (2..16 supported)", dir,
                            c->lin_conv_kernel);
        if (c->lin_v_dim > 1024)
            return fm_error(FM_ERR_UNSUPPORTED, "%s: linear_value_head_dim %d exceeds 1024", dir, c->lin_v_dim);
    }
    return FM_OK;
}

/* mlx-lm's sanitize moves conv1d weights to [C, K, 1] (transformers: [C, 1, K])
 * and adds 1 to the zero-centred norm weights: the conv shape tells. */
static int mlx_layout(fm_model *m) {
    for (int i = 0; i < m->cfg.n_layers; i++) {
        if (m->cfg.layer_full_attention[i]) continue;
        char name[128];
        for (int p = 0; p < 3 && m->cfg.arch->prefixes[p]; p++) {
            snprintf(name, sizeof name, "%slayers.%d.linear_attn.conv1d.weight", m->cfg.arch->prefixes[p], i);
            const ckpt_entry *e = ckpt_find(m->ckpt, name);
            if (e) return e->tensor->n_dims == 3 && e->tensor->shape[2] == 1 && e->tensor->shape[1] > 1;
        }
        return 0;
    }
    return 0;
}

static void fill_info(fm_model *m) {
    const fm_config *c = &m->cfg;
    fm_model_info *in = &m->info;
    in->model_type = c->model_type;
    in->architecture = c->arch->name;
    in->vocab_size = c->vocab_size;
    in->hidden_size = c->hidden_size;
    in->n_layers = c->n_layers;
    in->n_heads = c->n_heads;
    in->n_kv_heads = c->n_kv_heads;
    in->head_dim = c->head_dim;
    in->rotary_dim = c->rotary_dim;
    in->rope_theta = c->rope_theta;
    in->linear_n_key_heads = c->lin_n_k_heads;
    in->linear_n_value_heads = c->lin_n_v_heads;
    in->linear_key_dim = c->lin_k_dim;
    in->linear_value_dim = c->lin_v_dim;
    in->linear_conv_kernel = c->lin_conv_kernel;
    in->n_experts = c->n_experts;
    in->n_experts_per_token = m->n_experts_default;
    in->expert_ffn = c->expert_ffn;
    in->shared_expert_ffn = c->has_shared_expert ? c->shared_ffn : 0;
    in->dense_ffn = c->dense_ffn;
    in->max_position_embeddings = c->max_position_embeddings;
    in->n_eos = c->n_eos;
    memcpy(in->eos_ids, c->eos, sizeof in->eos_ids);
    in->default_temperature = c->gen_temperature;
    in->default_top_p = c->gen_top_p;
    in->default_min_p = c->gen_min_p;
    in->default_repetition_penalty = c->gen_repetition_penalty;
    in->default_top_k = c->gen_top_k;
    in->backend = m->gpu ? "cuda" : "cpu";
    in->device_name = m->gpu ? cuda_model_device_name(m) : cpu_isa_name();
    if (m->gpu) cuda_model_vram(m, &in->vram_dense_bytes, &in->vram_cache_bytes);
    in->n_experts_run = c->n_experts_used;
    if (m->pack) {
        in->expert_bits = m->pack->layout.bits;
        in->expert_bytes = m->pack->layout.expert_bytes;
    }
    in->params_total = in->params_dense + in->params_experts;
    in->bytes_total = in->bytes_dense + in->bytes_experts;
    /* Every MoE layer runs K of its E experts per token. */
    in->params_active = in->params_dense + in->params_experts / (uint64_t)c->n_experts * (uint64_t)c->n_experts_used;
    in->bytes_active = in->bytes_dense + in->bytes_experts / (uint64_t)c->n_experts * (uint64_t)c->n_experts_used;
    uint64_t row = m->embed.bits ? fm_quant_weight_bytes(1, c->hidden_size, m->embed.bits) +
                                       2 * fm_quant_scales_bytes(1, c->hidden_size, m->embed.group)
                                 : (uint64_t)c->hidden_size * fm_dtype_size(m->embed.dtype);
    in->bytes_per_token = in->bytes_active - (c->tie_word_embeddings ? 0 : row * (uint64_t)c->vocab_size - row);
}

/* MemAvailable (free memory plus what the kernel can reclaim), 1 GiB if unknown. */
static uint64_t available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long kb = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb) return (uint64_t)kb * 1024;
    struct sysinfo si;
    return sysinfo(&si) == 0 ? (uint64_t)si.freeram * si.mem_unit : (1ull << 30);
}

/* Bytes the RAM expert cache may hold: as given, or what the memory budget
 * leaves, or all experts to preload them, or half the available memory; never
 * more than all the experts. */
static fm_status cache_budget(const fm_model *m, const fm_model_options *opt, uint64_t *out) {
    const fm_config *c = &m->cfg;
    const pack_expert_layout *lay = &m->pack->layout;
    const uint64_t all = (uint64_t)m->pack->n_layers * c->n_experts * lay->stride;
    const uint64_t available = available_memory();
    uint64_t bytes = available / 2;
    if (opt && opt->preload && !opt->cache_bytes && !opt->memory_budget) { /* all in RAM, if it fits */
        if (all > available)
            return fm_error(FM_ERR_ARGUMENT, "cannot preload %.2f GB of experts: %.2f GB of memory are available",
                            all / 1e9, available / 1e9);
        bytes = all;
    } else if (opt && opt->cache_bytes) {
        bytes = opt->cache_bytes;
    } else if (opt && opt->memory_budget) {
        /* Dense weights are mapped and will be resident; the store's in-flight
         * buffers, a session's scratch and 128 MiB for the rest (program,
         * threads, KV cache) come off the budget too. */
        const uint64_t dense = m->ckpt->files[0]->map_size;
        const uint64_t reserved = dense + (128ull << 20) + 16 * lay->stride + session_scratch_bytes(c, FM_UBATCH_STREAMED);
        if (opt->memory_budget <= reserved + lay->stride * (uint64_t)c->n_experts_used)
            return fm_error(FM_ERR_ARGUMENT,
                            "memory budget of %.2f GB is too small: the dense weights (%.2f GB), buffers and scratch "
                            "need %.2f GB, plus room for at least one layer's experts",
                            opt->memory_budget / 1e9, dense / 1e9, reserved / 1e9);
        bytes = opt->memory_budget - reserved;
    }
    *out = bytes < all ? bytes : all;
    return FM_OK;
}

/* Checks the manifest against the config, counts the experts for `info` and
 * opens the store the routed experts will be read through. */
static fm_status open_expert_store(fm_model *m, const char *dir, const fm_model_options *opt) {
    const fm_config *c = &m->cfg;
    const pack_manifest *p = m->pack;
    const pack_expert_layout *lay = &p->layout;
    if (p->n_experts != c->n_experts || lay->hidden != c->hidden_size || lay->ffn != c->expert_ffn)
        return fm_error(FM_ERR_FORMAT, "%s/%s: experts are %d of [%d x %d], config.json says %d of [%d x %d]", dir,
                        PACK_MANIFEST, p->n_experts, lay->ffn, lay->hidden, c->n_experts, c->expert_ffn, c->hidden_size);
    const char **paths = calloc((size_t)c->n_layers, sizeof *paths);
    uint64_t *sums = calloc((size_t)c->n_layers * c->n_experts, sizeof *sums);
    char **owned = calloc((size_t)p->n_layers + 1, sizeof *owned);
    fm_status st = FM_OK;
    if (!paths || !sums || !owned) st = fm_error(FM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == FM_OK && i < p->n_layers; i++) {
        const pack_layer *pl = &p->layers[i];
        if (pl->layer < 0 || pl->layer >= c->n_layers || !c->layer_moe[pl->layer] || paths[pl->layer]) {
            st = fm_error(FM_ERR_FORMAT, "%s/%s: experts listed for layer %d, which is not a (single) MoE layer", dir,
                          PACK_MANIFEST, pl->layer);
            break;
        }
        size_t n = strlen(dir) + strlen(pl->file) + 2;
        if (!(owned[i] = malloc(n))) {
            st = fm_error(FM_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(owned[i], n, "%s/%s", dir, pl->file);
        paths[pl->layer] = owned[i];
        memcpy(sums + (size_t)pl->layer * c->n_experts, pl->checksums, (size_t)c->n_experts * sizeof *sums);
        m->info.params_experts += (uint64_t)c->n_experts * 3 * c->hidden_size * c->expert_ffn;
        m->info.bytes_experts += (uint64_t)c->n_experts * lay->expert_bytes;
    }
    for (int i = 0; st == FM_OK && i < c->n_layers; i++)
        if (c->layer_moe[i] && !paths[i])
            st = fm_error(FM_ERR_FORMAT, "%s/%s: no experts listed for MoE layer %d", dir, PACK_MANIFEST, i);
    if (st == FM_OK) {
        store_options so = {
            .engine = opt && opt->io_uring ? FM_IO_URING : FM_IO_PREAD,
            .direct = opt && opt->direct_io,
            .cache = opt && opt->cache == FM_EXPERT_CACHE_OS ? FM_CACHE_OS : FM_CACHE_RAM,
            .io_threads = opt ? opt->io_threads : 0,
            .verify = opt && opt->verify,
        };
        if (so.cache == FM_CACHE_RAM) st = cache_budget(m, opt, &so.cache_bytes);
        else if (opt && (opt->memory_budget || opt->cache_bytes || opt->preload))
            st = fm_error(FM_ERR_ARGUMENT, "a memory budget, a cache size and preloading need the ram expert cache");
        store_layout sl = {.n_layers = c->n_layers, .paths = paths, .n_experts = c->n_experts,
                           .expert_bytes = lay->expert_bytes, .stride = lay->stride, .checksums = sums};
        if (st == FM_OK) st = store_open(&sl, &so, &m->store);
        if (st == FM_OK && opt && opt->preload) st = store_preload(m->store);
    }
    for (int i = 0; owned && i < p->n_layers; i++) free(owned[i]);
    free(owned);
    free(paths);
    free(sums);
    return st;
}

/* A packed model's dense weights are read every token: on the CPU backend
 * they are copied into RAM in 2 MB pages (decode of a 4-layer Qwen3.5-397B-
 * shaped model: 20.9-24.5 tok/s against 19.9-23.5 mapped, attention and LM
 * head faster); with a GPU they are uploaded and the file mapping's pages
 * can go back to the page cache. The converter (rec) maps. */
static st_load_mode dense_mode(const fm_model_options *opt, const struct weights_record *rec) {
    const fm_backend want = opt ? opt->backend : FM_BACKEND_AUTO;
    if (rec || want == FM_BACKEND_CUDA) return ST_MAP_FILE;
    char why[512];
    return want == FM_BACKEND_CPU || cuda_device_count(why, sizeof why) == 0 ? ST_COPY_TO_RAM : ST_MAP_FILE;
}

/* CUDA when asked, or by default when a GPU is present; the default falls
 * back to the CPU when the weights do not fit in VRAM. The converter (which
 * records what it loads) never uses the GPU. */
static fm_status choose_backend(fm_model *m, const fm_model_options *opt) {
    fm_backend want = opt ? opt->backend : FM_BACKEND_AUTO;
    if (m->record || want == FM_BACKEND_CPU) return FM_OK;
    char why[512];
    if (cuda_device_count(why, sizeof why) == 0) {
        if (want == FM_BACKEND_CUDA) return fm_error(FM_ERR_UNSUPPORTED, "the cuda backend cannot run: %s", why);
        return FM_OK;
    }
    fm_status st = cuda_model_open(m, opt);
    if (st == FM_ERR_NOMEM && want == FM_BACKEND_AUTO) {
        cuda_model_close(m);
        return FM_OK;
    }
    return st;
}

fm_status fm_model_open(const char *dir, const fm_model_options *opt, fm_model **out) {
    return model_open_recording(dir, opt, NULL, out);
}

fm_status model_open_recording(const char *dir, const fm_model_options *opt, struct weights_record *rec,
                               fm_model **out) {
    *out = NULL;
    if (!pack_is_packed(dir) && pack_is_unfinished(dir))
        return fm_error(FM_ERR_ARGUMENT,
                        "%s: a conversion into this folder did not finish; run the same flashmoe convert again to resume it",
                        dir);
    fm_model *m = calloc(1, sizeof *m);
    if (!m) return fm_error(FM_ERR_NOMEM, "out of memory");
    m->record = rec;
    fm_status st = fm_config_load(dir, &m->cfg);
    if (st != FM_OK) {
        free(m);
        return st;
    }
    const fm_config *c = &m->cfg;
    if ((st = check_limits(c, dir))) goto fail;
    if (pack_is_packed(dir)) {
        if (!(m->pack = calloc(1, sizeof *m->pack))) {
            st = fm_error(FM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if ((st = pack_manifest_read(dir, m->pack)) ||
            (st = ckpt_open_file(dir, PACK_DENSE, dense_mode(opt, rec), &m->ckpt)))
            goto fail;
    } else if ((st = ckpt_open(dir, &m->ckpt))) {
        goto fail;
    }
    m->n_experts_default = c->n_experts_used;
    if (opt && opt->n_experts_per_token) {
        if (opt->n_experts_per_token < 0 || opt->n_experts_per_token > c->n_experts) {
            st = fm_error(FM_ERR_ARGUMENT, "%s: cannot run %d experts per token: the model has %d experts", dir,
                          opt->n_experts_per_token, c->n_experts);
            goto fail;
        }
        m->cfg.n_experts_used = opt->n_experts_per_token;
    }
    if (!(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers)) ||
        !(m->rope_inv_freq = malloc((size_t)c->rotary_dim / 2 * sizeof(float)))) {
        st = fm_error(FM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->norm_add = c->norm_zero_centred && !mlx_layout(m) ? 1.0f : 0.0f;
    if ((st = weights_mat(m, &m->embed, c->vocab_size, c->hidden_size, 0, "embed_tokens.weight")) ||
        (st = weights_f32(m, &m->final_norm, c->hidden_size, m->norm_add, "norm.weight")))
        goto fail;
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if ((st = weights_mat(m, &m->lm_head, c->vocab_size, c->hidden_size, W_ROOT, "lm_head.weight")))
        goto fail;
    for (int i = 0; i < c->n_layers; i++)
        if ((st = c->arch->load_layer(m, i))) goto fail;
    if (m->pack && (st = open_expert_store(m, dir, opt))) goto fail;
    /* As transformers: inv_freq = 1 / theta^(2i/d) in float32. */
    for (int i = 0; i < c->rotary_dim / 2; i++)
        m->rope_inv_freq[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)c->rotary_dim);
    if ((st = choose_backend(m, opt))) goto fail;
    fill_info(m);
    m->record = NULL;
    if (opt && opt->n_threads > 0) pool_set_threads(opt->n_threads); /* also the tokenizer's team size */
    *out = m;
    return FM_OK;
fail:
    fm_model_close(m);
    return st;
}

void fm_model_close(fm_model *m) {
    if (!m) return;
    cuda_model_close(m);
    for (int i = 0; m->layers && i < m->cfg.n_layers; i++) free(m->layers[i].experts);
    free(m->layers);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->rope_inv_freq);
    store_close(m->store);
    if (m->pack) pack_manifest_free(m->pack);
    free(m->pack);
    ckpt_close(m->ckpt);
    fm_config_free(&m->cfg);
    free(m);
}

const fm_model_info *fm_model_get_info(const fm_model *m) { return &m->info; }

fm_layer_kind fm_model_layer_kind(const fm_model *m, int layer) {
    return m->cfg.layer_full_attention[layer] ? FM_LAYER_FULL_ATTENTION : FM_LAYER_LINEAR_ATTENTION;
}

int fm_model_layer_is_moe(const fm_model *m, int layer) { return m->cfg.layer_moe[layer]; }
