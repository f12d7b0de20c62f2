/* flashmoe info: what a model directory holds. */
#include "cli.h"

#include <string.h>

static void print_count(const char *label, uint64_t params, uint64_t bytes) {
    static const char *const units[] = {"", " K", " M", " B", " T"};
    double p = (double)params, b = (double)bytes / (1024.0 * 1024.0);
    int u = 0;
    while (p >= 1000.0 && u < 4) {
        p /= 1000.0;
        u++;
    }
    printf("  %-22s %10.2f%s params  %14llu  (%.1f MiB)\n", label, p, units[u], (unsigned long long)params, b);
}

int cmd_info(int argc, char **argv) {
    cli_common c = {0};
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_common(argc, argv, &i, &c);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: flashmoe info -m DIR\n"
                 "Prints the architecture, dimensions, layer schedule and parameter/byte counts.");
            return 0;
        }
        return cli_fail("info: unknown option '%s'", argv[i]);
    }
    fm_model *m;
    int rc = cli_open_model(&c, &m, NULL);
    if (rc) return rc;
    const fm_model_info *in = fm_model_get_info(m);
    printf("model          %s\n", cli_model_dir(&c));
    printf("architecture   %s (model_type %s)\n", in->architecture, in->model_type);
    if (!strcmp(in->backend, "cuda"))
        printf("backend        cuda: %s; %.2f GB of weights in VRAM, VRAM expert cache %.2f GB\n", in->device_name,
               in->vram_dense_bytes / 1e9, in->vram_cache_bytes / 1e9);
    else
        printf("backend        cpu (%s kernels)\n", in->device_name);
    printf("vocab          %d\n", in->vocab_size);
    printf("hidden         %d\n", in->hidden_size);
    printf("context        %d (max_position_embeddings)\n", in->max_position_embeddings);
    printf("attention      %d query heads, %d KV heads, head dim %d, rotary dim %d, rope theta %g\n", in->n_heads,
           in->n_kv_heads, in->head_dim, in->rotary_dim, in->rope_theta);
    if (in->linear_n_value_heads)
        printf("linear attn    GatedDeltaNet: %d key heads x %d, %d value heads x %d, conv kernel %d\n",
               in->linear_n_key_heads, in->linear_key_dim, in->linear_n_value_heads, in->linear_value_dim,
               in->linear_conv_kernel);
    printf("experts        %d per MoE layer, %d per token, FFN width %d", in->n_experts, in->n_experts_per_token,
           in->expert_ffn);
    if (in->shared_expert_ffn) printf("; shared expert FFN width %d", in->shared_expert_ffn);
    printf("\n");
    if (in->dense_ffn) printf("dense MLP      FFN width %d (layers without experts)\n", in->dense_ffn);
    printf("eos ids       ");
    if (!in->n_eos) printf(" none");
    for (int i = 0; i < in->n_eos; i++) printf(" %d", in->eos_ids[i]);
    printf("\n");

    int n_full = 0, n_dense = 0;
    printf("layers         %d:", in->n_layers);
    for (int i = 0; i < in->n_layers; i++) {
        int full = fm_model_layer_kind(m, i) == FM_LAYER_FULL_ATTENTION, moe = fm_model_layer_is_moe(m, i);
        n_full += full;
        n_dense += !moe;
        printf(" %s%s", full ? "A" : "L", moe ? "" : "d");
    }
    printf("\n               (A = full attention, L = linear attention; d = dense MLP, else MoE)\n");
    printf("               %d full attention, %d linear attention, %d MoE, %d dense MLP\n", n_full,
           in->n_layers - n_full, in->n_layers - n_dense, n_dense);
    printf("size (text model; embeddings and LM head counted as dense)\n");
    print_count("total", in->params_total, in->bytes_total);
    print_count("dense (non-expert)", in->params_dense, in->bytes_dense);
    print_count("routed experts", in->params_experts, in->bytes_experts);
    print_count("active per token", in->params_active, in->bytes_active);
    if (in->expert_bits)
        printf("packed         experts at %d bits, %llu bytes each on disk; %d run per token\n", in->expert_bits,
               (unsigned long long)in->expert_bytes, in->n_experts_run);
    fm_model_close(m);
    return 0;
}
