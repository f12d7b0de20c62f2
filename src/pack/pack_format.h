/* flashmoe's packed model (docs/FORMAT.md): a directory with
 *   flashmoe.json            the manifest, written last: its presence marks a complete model
 *   config.json, ...         the source's config, generation config and tokenizer files
 *   dense.safetensors        every non-expert tensor (mapped at run time)
 *   experts/layer_NNN.bin    the routed experts of MoE layer NNN, one aligned extent each
 * This module knows the layout of one expert extent and reads and writes the
 * manifest. */
#ifndef FM_PACK_PACK_FORMAT_H
#define FM_PACK_PACK_FORMAT_H

#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

#define PACK_FORMAT_NAME "flashmoe-packed"
#define PACK_FORMAT_VERSION 1
#define PACK_MANIFEST "flashmoe.json"
#define PACK_DENSE "dense.safetensors"
#define PACK_CONVERT_STATE ".convert-state.json" /* present while a conversion is unfinished */
#define PACK_EXTENT_ALIGN 4096
#define PACK_COMPONENT_ALIGN 64

/* One projection inside an extent: codes (or bf16 weights), then scales and
 * biases when quantized. Offsets are from the start of the extent. */
typedef struct {
    int rows, cols;
    size_t weight_offset, weight_bytes;
    size_t scales_offset, biases_offset, scales_bytes; /* quantized only */
} pack_component;

/* Where gate, up and down live inside one expert extent. bits 16 = bf16. */
typedef struct {
    int hidden, ffn, bits, group;
    pack_component gate, up, down;
    size_t expert_bytes; /* bytes that matter (checksummed) */
    size_t stride;       /* expert_bytes rounded up to PACK_EXTENT_ALIGN */
} pack_expert_layout;

/* Fails (FM_ERR_UNSUPPORTED) when bits/group do not fit the shapes. */
fm_status pack_layout_init(pack_expert_layout *lay, int hidden, int ffn, int bits, int group);
/* Views the three projections of the expert whose extent starts at `blob`. */
void pack_expert_view(const pack_expert_layout *lay, const void *blob, fm_ffn *out);

typedef struct {
    int layer;          /* model layer index */
    char *file;         /* relative path, e.g. experts/layer_003.bin */
    uint64_t *checksums; /* [n_experts] XXH3-64 of each expert's expert_bytes */
} pack_layer;

typedef struct pack_manifest {
    int version;
    char *source;
    uint64_t dense_bytes, dense_xxh3;
    int n_experts;
    pack_expert_layout layout;
    int n_layers;       /* MoE layers listed */
    pack_layer *layers;
} pack_manifest;

/* Reads DIR/flashmoe.json and checks it against the files on disk: version,
 * layout recomputed from (hidden, ffn, bits, group), every file present with
 * the size the manifest states (a shorter one is named as truncated). */
fm_status pack_manifest_read(const char *dir, pack_manifest *m);
/* Parses manifest text only (no file checks); used by the fuzz target. */
fm_status pack_manifest_parse(const char *text, size_t len, const char *label, pack_manifest *m);
/* Writes DIR/flashmoe.json through a temporary name and a rename. */
fm_status pack_manifest_write(const char *dir, const pack_manifest *m);
void pack_manifest_free(pack_manifest *m);
/* 1 if DIR holds a packed model's manifest. */
int pack_is_packed(const char *dir);
/* Whether dir holds a conversion that was started and has not finished. */
int pack_is_unfinished(const char *dir);
/* XXH3-64 of a whole file read in large blocks (for `verify`); *bytes gets its size. */
fm_status pack_hash_file(const char *path, uint64_t *hash, uint64_t *bytes);

#endif
