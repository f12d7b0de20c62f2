/* The model on the GPU: device checks, the upload of the resident weights
 * into one allocation, and the VRAM expert tier of packed models. */
#include "backend/cuda/cuda_internal.h"
#include "core/error.h"
#include "quant/affine.h"
#include "store/expert_store.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cuda_built(void) { return 1; }

/* The runtime reports a missing driver as an old one: tell them apart. */
static const char *driver_problem(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_LAZY);
    if (!lib) return "no NVIDIA driver is installed (libcuda.so.1 not found)";
    dlclose(lib);
    return "the NVIDIA driver is older than this build's CUDA runtime needs";
}

fm_status cuda_fail(cudaError_t err, const char *what) {
    if (err == cudaErrorMemoryAllocation)
        return fm_error(FM_ERR_NOMEM, "CUDA: out of GPU memory (%s)", what);
    if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorUnsupportedPtxVersion)
        return fm_error(FM_ERR_UNSUPPORTED,
                        "CUDA: this flashmoe has no GPU code for this card (%s); rebuild it with the card's "
                        "architecture (make CUDA_ARCHS=...)",
                        cudaGetErrorString(err));
    if (err == cudaErrorInsufficientDriver)
        return fm_error(FM_ERR_UNSUPPORTED, "CUDA: %s (CUDA runtime %d.%d)", driver_problem(), CUDART_VERSION / 1000,
                        CUDART_VERSION % 1000 / 10);
    return fm_error(FM_ERR_IO, "CUDA: %s (%s)", cudaGetErrorString(err), what);
}

int cuda_device_count(char *why, size_t why_size) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaSuccess && n > 0) return n;
    if (err == cudaErrorNoDevice || (err == cudaSuccess && n == 0))
        snprintf(why, why_size, "no CUDA GPU found");
    else if (err == cudaErrorInsufficientDriver)
        snprintf(why, why_size, "%s (CUDA runtime %d.%d)", driver_problem(), CUDART_VERSION / 1000,
                 CUDART_VERSION % 1000 / 10);
    else
        snprintf(why, why_size, "CUDA cannot start: %s", cudaGetErrorString(err));
    return 0;
}

/* ---- the upload ---------------------------------------------------------- */

/* Two passes over the same walk: the first sums the bytes, the second copies
 * into one allocation of that size. */
typedef struct {
    int copying;
    char *base;
    size_t used;
    cudaError_t err;
} arena;

static void *put(arena *a, const void *host, size_t bytes) {
    if (!host || !bytes) return NULL;
    size_t at = (a->used + 255) & ~(size_t)255;
    a->used = at + bytes;
    if (!a->copying) return (void *)(uintptr_t)1; /* not dereferenced in the sizing pass */
    if (a->err == cudaSuccess) a->err = cudaMemcpy(a->base + at, host, bytes, cudaMemcpyHostToDevice);
    return a->base + at;
}

static float *put_f32(arena *a, const float *host, size_t n) { return put(a, host, n * sizeof(float)); }


static fm_mat put_mat(arena *a, const fm_mat *w) {
    fm_mat d = *w;
    if (!w->data) return d;
    if (!w->bits) {
        d.data = put(a, w->data, (size_t)w->rows * w->cols * fm_dtype_size(w->dtype));
    } else {
        d.data = put(a, w->data, fm_quant_weight_bytes(w->rows, w->cols, w->bits));
        const size_t sb = fm_quant_scales_bytes(w->rows, w->cols, w->group);
        d.scales = put(a, w->scales, sb);
        d.biases = put(a, w->biases, sb);
    }
    return d;
}

static fm_ffn put_ffn(arena *a, const fm_ffn *f) {
    fm_ffn d = {put_mat(a, &f->gate), put_mat(a, &f->up), put_mat(a, &f->down)};
    return d;
}

/* Everything the forward pass reads except a packed model's experts. */
static void upload(arena *a, const fm_model *m, cuda_model *g) {
    const fm_config *c = &m->cfg;
    const int H = c->hidden_size;
    g->embed = put_mat(a, &m->embed);
    g->lm_head = m->lm_head.data == m->embed.data ? g->embed : put_mat(a, &m->lm_head);
    g->final_norm = put_f32(a, m->final_norm, (size_t)H);
    g->rope_inv_freq = put_f32(a, m->rope_inv_freq, (size_t)c->rotary_dim / 2);
    for (int i = 0; i < c->n_layers; i++) {
        const fm_layer *l = &m->layers[i];
        fm_layer *d = &g->layers[i];
        fm_ffn *experts = d->experts; /* kept across passes */
        *d = (fm_layer){.experts = experts}; /* no host pointer may stay in a device layer */
        d->input_norm = put_f32(a, l->input_norm, (size_t)H);
        d->post_norm = put_f32(a, l->post_norm, (size_t)H);
        if (c->layer_full_attention[i]) {
            d->q = put_mat(a, &l->q);
            d->k = put_mat(a, &l->k);
            d->v = put_mat(a, &l->v);
            d->o = put_mat(a, &l->o);
            d->q_norm = put_f32(a, l->q_norm, (size_t)c->head_dim);
            d->k_norm = put_f32(a, l->k_norm, (size_t)c->head_dim);
        } else {
            d->in_qkv = put_mat(a, &l->in_qkv);
            d->in_z = put_mat(a, &l->in_z);
            d->in_b = put_mat(a, &l->in_b);
            d->in_a = put_mat(a, &l->in_a);
            d->in_qkvz = put_mat(a, &l->in_qkvz);
            d->in_ba = put_mat(a, &l->in_ba);
            d->conv = put_f32(a, l->conv, (size_t)fm_config_conv_dim(c) * c->lin_conv_kernel);
            d->neg_exp_a = put_f32(a, l->neg_exp_a, (size_t)c->lin_n_v_heads);
            d->dt_bias = put_f32(a, l->dt_bias, (size_t)c->lin_n_v_heads);
            d->lin_norm = put_f32(a, l->lin_norm, (size_t)c->lin_v_dim);
            d->out_proj = put_mat(a, &l->out_proj);
        }
        if (c->layer_moe[i]) {
            d->router = put_mat(a, &l->router);
            if (c->has_shared_expert) {
                d->shared = put_ffn(a, &l->shared);
                d->shared_gate = put_mat(a, &l->shared_gate);
            }
            for (int e = 0; l->experts && e < c->n_experts; e++) experts[e] = put_ffn(a, &l->experts[e]);
        } else {
            d->dense = put_ffn(a, &l->dense);
        }
    }
}

const char *cuda_model_device_name(const fm_model *m) { return m->gpu->name; }

void cuda_model_vram(const fm_model *m, uint64_t *dense_bytes, uint64_t *cache_bytes) {
    *dense_bytes = m->gpu->arena_bytes;
    *cache_bytes = (uint64_t)m->gpu->n_slots * m->gpu->slot_bytes;
}

/* VRAM kept free for sessions when the expert cache is sized automatically:
 * scratch of 256-token micro-batches, logits and KV caches. */
static uint64_t session_reserve(const fm_config *c, uint64_t total) {
    uint64_t reserve = (uint64_t)2 << 30;
    if (total / 20 > reserve) reserve = total / 20;
    uint64_t scratch = session_scratch_bytes(c, FM_UBATCH_STREAMED) * 2 +
                       (uint64_t)FM_UBATCH_STREAMED * c->vocab_size * sizeof(float);
    return reserve + scratch;
}

static fm_status open_vram_tier(fm_model *m, const fm_model_options *opt, size_t free_bytes, size_t total) {
    cuda_model *g = m->gpu;
    const fm_config *c = &m->cfg;
    const pack_expert_layout *lay = &m->pack->layout;
    int n_moe = 0;
    for (int i = 0; i < c->n_layers; i++) n_moe += c->layer_moe[i];
    const int all = n_moe * c->n_experts;
    g->slot_bytes = (lay->expert_bytes + 255) & ~(size_t)255;
    uint64_t budget = opt ? opt->vram_cache_bytes : 0;
    if (!budget) {
        uint64_t reserve = session_reserve(c, total);
        budget = free_bytes > reserve ? free_bytes - reserve : 0;
    }
    uint64_t slots = budget / g->slot_bytes;
    if (slots > (uint64_t)all) slots = (uint64_t)all;
    /* One micro-batch of one layer can route to every expert; fewer slots
     * work (in rounds) but need at least K. */
    if (slots < (uint64_t)c->n_experts_used)
        return fm_error(FM_ERR_NOMEM,
                        "the VRAM expert cache holds %llu experts of %zu bytes; it needs at least %d (experts per "
                        "token): give it more VRAM",
                        (unsigned long long)slots, g->slot_bytes, c->n_experts_used);
    g->n_slots = (int)slots;
    CUDA_TRY(cudaMalloc(&g->slab, (size_t)slots * g->slot_bytes), "allocating the VRAM expert cache");
    if (!(g->vram = cache_create_slab(all, g->slab, g->slot_bytes, g->n_slots)))
        return fm_error(FM_ERR_NOMEM, "out of memory");
    return FM_OK;
}

fm_status cuda_model_open(fm_model *m, const fm_model_options *opt) {
    const fm_config *c = &m->cfg;
    cuda_model *g = m->gpu = calloc(1, sizeof *g);
    if (!g || !(g->layers = calloc((size_t)c->n_layers, sizeof *g->layers)))
        return fm_error(FM_ERR_NOMEM, "out of memory");
    g->device = opt ? opt->gpu_device : 0;
    int n = 0;
    CUDA_TRY(cudaGetDeviceCount(&n), "counting GPUs");
    if (g->device < 0 || g->device >= n)
        return fm_error(FM_ERR_ARGUMENT, "GPU %d does not exist (%d found)", g->device, n);
    CUDA_TRY(cudaSetDevice(g->device), "selecting the GPU");
    struct cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, g->device), "reading the GPU's properties");
    snprintf(g->name, sizeof g->name, "%s (GPU %d, compute capability %d.%d)", prop.name, g->device, prop.major,
             prop.minor);
    for (int i = 0; i < c->n_layers; i++)
        if (m->layers[i].experts && !(g->layers[i].experts = calloc((size_t)c->n_experts, sizeof(fm_ffn))))
            return fm_error(FM_ERR_NOMEM, "out of memory");

    arena a = {0};
    upload(&a, m, g);
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), "reading free GPU memory");
    if (a.used > free_b)
        return fm_error(FM_ERR_NOMEM, "the model's resident weights take %.2f GB; %s has %.2f GB free%s", a.used / 1e9,
                        prop.name, free_b / 1e9,
                        m->pack ? "" : " (a checkpoint keeps all its experts in VRAM: `flashmoe convert` it to stream them)");
    g->arena_bytes = a.used;
    CUDA_TRY(cudaMalloc(&g->arena, a.used ? a.used : 1), "allocating the resident weights");
    a = (arena){.copying = 1, .base = g->arena};
    upload(&a, m, g);
    CUDA_TRY(a.err, "copying the weights to the GPU");
    if (m->pack) {
        CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), "reading free GPU memory");
        return open_vram_tier(m, opt, free_b, total_b);
    }
    return FM_OK;
}

void cuda_model_close(fm_model *m) {
    cuda_model *g = m->gpu;
    if (!g) return;
    cache_destroy(g->vram);
    cudaFree(g->slab);
    cudaFree(g->arena);
    for (int i = 0; g->layers && i < m->cfg.n_layers; i++) free(g->layers[i].experts);
    free(g->layers);
    free(g);
    m->gpu = NULL;
}
