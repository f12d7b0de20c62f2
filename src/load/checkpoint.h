/* A Hugging Face checkpoint directory: one model.safetensors, or shards listed
 * by model.safetensors.index.json. Tensor names are indexed across all shards
 * (hash table; real checkpoints hold ~100k per-expert tensors). */
#ifndef FM_LOAD_CHECKPOINT_H
#define FM_LOAD_CHECKPOINT_H

#include "load/safetensors.h"

typedef struct {
    const st_tensor *tensor;
    const st_file *file;
} ckpt_entry;

typedef struct ckpt {
    char *dir;
    st_file **files;
    int n_files;
    ckpt_entry *slots; /* open-addressing hash table */
    size_t n_slots;
} ckpt;

fm_status ckpt_open(const char *dir, ckpt **out);
/* One safetensors file `name` inside dir (a packed model's dense weights),
 * mapped or copied into RAM (safetensors.h's st_load_mode). */
fm_status ckpt_open_file(const char *dir, const char *name, st_load_mode mode, ckpt **out);
void ckpt_close(ckpt *c); /* accepts NULL */

/* NULL if absent. */
const ckpt_entry *ckpt_find(const ckpt *c, const char *name);

#endif
