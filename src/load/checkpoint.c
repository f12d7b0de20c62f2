/* Checkpoint directory (see checkpoint.h). */
#include "load/checkpoint.h"

#include "core/error.h"
#include "core/json_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static fm_status index_insert(ckpt *c, const st_file *f, const st_tensor *t) {
    size_t i = hash_name(t->name) & (c->n_slots - 1);
    while (c->slots[i].tensor) {
        if (strcmp(c->slots[i].tensor->name, t->name) == 0)
            return fm_error(FM_ERR_FORMAT, "%s: tensor '%s' appears twice (also in %s)", f->path, t->name,
                            c->slots[i].file->path);
        i = (i + 1) & (c->n_slots - 1);
    }
    c->slots[i].tensor = t;
    c->slots[i].file = f;
    return FM_OK;
}

const ckpt_entry *ckpt_find(const ckpt *c, const char *name) {
    size_t i = hash_name(name) & (c->n_slots - 1);
    while (c->slots[i].tensor) {
        if (strcmp(c->slots[i].tensor->name, name) == 0) return &c->slots[i];
        i = (i + 1) & (c->n_slots - 1);
    }
    return NULL;
}

static fm_status add_file(ckpt *c, const char *name, st_load_mode mode) {
    for (int i = 0; i < c->n_files; i++) {
        const char *base = strrchr(c->files[i]->path, '/');
        if (strcmp(base ? base + 1 : c->files[i]->path, name) == 0) return FM_OK;
    }
    if (strchr(name, '/') || strcmp(name, "..") == 0)
        return fm_error(FM_ERR_FORMAT, "%s: shard name '%s' must be a plain file name", c->dir, name);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", c->dir, name) >= (int)sizeof path)
        return fm_error(FM_ERR_ARGUMENT, "%s: path too long", c->dir);
    st_file **files = realloc(c->files, (size_t)(c->n_files + 1) * sizeof *files);
    if (!files) return fm_error(FM_ERR_NOMEM, "out of memory");
    c->files = files;
    fm_status st = st_file_open_mode(path, mode, &c->files[c->n_files]);
    if (st == FM_OK) c->n_files++;
    return st;
}

/* Sharded checkpoints: open every shard named in the index's weight_map. */
static fm_status open_sharded(ckpt *c, const char *index_path) {
    cJSON *root;
    fm_status st = json_file_read(index_path, &root);
    if (st != FM_OK) return st;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: missing \"weight_map\" object", index_path);
    }
    for (const cJSON *it = map->child; it && st == FM_OK; it = it->next) {
        if (!cJSON_IsString(it)) {
            st = fm_error(FM_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name", index_path, it->string);
            break;
        }
        fm_status s = add_file(c, it->valuestring, ST_MAP_FILE);
        if (s != FM_OK) st = s;
    }
    cJSON_Delete(root);
    return st;
}

static fm_status open_any(const char *dir, const char *file, st_load_mode mode, ckpt **out) {
    *out = NULL;
    ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return fm_error(FM_ERR_NOMEM, "out of memory");
    }
    char path[4096];
    fm_status st;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (file) {
        st = add_file(c, file, mode);
    } else if (access(path, F_OK) == 0) {
        st = open_sharded(c, path);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, F_OK) != 0)
            st = fm_error(FM_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
        else
            st = add_file(c, "model.safetensors", ST_MAP_FILE);
    }
    if (st != FM_OK) goto fail;
    size_t n = 0;
    for (int i = 0; i < c->n_files; i++) n += (size_t)c->files[i]->n_tensors;
    c->n_slots = 16;
    while (c->n_slots < 2 * n) c->n_slots *= 2;
    if (!(c->slots = calloc(c->n_slots, sizeof *c->slots))) {
        st = fm_error(FM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < c->n_files; i++)
        for (int j = 0; j < c->files[i]->n_tensors; j++)
            if ((st = index_insert(c, c->files[i], &c->files[i]->tensors[j])) != FM_OK) goto fail;
    *out = c;
    return FM_OK;
fail:
    ckpt_close(c);
    return st;
}

fm_status ckpt_open(const char *dir, ckpt **out) { return open_any(dir, NULL, ST_MAP_FILE, out); }

fm_status ckpt_open_file(const char *dir, const char *name, st_load_mode mode, ckpt **out) {
    return open_any(dir, name, mode, out);
}

void ckpt_close(ckpt *c) {
    if (!c) return;
    for (int i = 0; i < c->n_files; i++) st_file_close(c->files[i]);
    free(c->files);
    free(c->slots);
    free(c->dir);
    free(c);
}
