/* libFuzzer target: the input is a packed model's flashmoe.json for
 * pack_manifest_parse. On success the manifest must be what the loader relies
 * on: a layout whose extents hold their components, relative file names
 * without "..", one checksum per expert. */
#include "pack/pack_format.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    pack_manifest m;
    if (pack_manifest_parse(text, size, "fuzz/flashmoe.json", &m) == FM_OK) {
        const pack_expert_layout *l = &m.layout;
        if (m.n_experts < 0 || m.n_layers < 0 || (m.n_layers && !m.layers)) abort();
        if (l->stride % PACK_EXTENT_ALIGN || l->expert_bytes > l->stride) abort();
        if (l->down.weight_offset + l->down.weight_bytes > l->expert_bytes) abort();
        for (int i = 0; i < m.n_layers; i++) {
            if (!m.layers[i].file || m.layers[i].file[0] == '/' || strstr(m.layers[i].file, "..")) abort();
            for (int e = 0; e < m.n_experts; e++) (void)m.layers[i].checksums[e];
        }
        pack_manifest_free(&m);
    } else if (m.layers || m.source) {
        abort(); /* freed on failure */
    }
    free(text);
    return 0;
}
