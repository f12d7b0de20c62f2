/* flashmoe verify: recompute every checksum of a packed model. */
#include "core/error.h"
#include "core/fileio.h"
#include "pack/pack_format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

fm_status fm_verify(const char *dir, void (*progress)(void *user, uint64_t done, uint64_t total, const char *what),
                    void *user) {
    pack_manifest m;
    fm_status st = pack_manifest_read(dir, &m);
    if (st != FM_OK) return st;
    const pack_expert_layout *lay = &m.layout;
    uint64_t total = m.dense_bytes + (uint64_t)m.n_layers * m.n_experts * lay->stride, done = 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, PACK_DENSE);
    uint64_t hash, bytes;
    if (progress) progress(user, done, total, "dense weights");
    if ((st = pack_hash_file(path, &hash, &bytes)) == FM_OK && hash != m.dense_xxh3)
        st = fm_error(FM_ERR_FORMAT, "%s: checksum mismatch: the dense weights are corrupt", path);
    done += m.dense_bytes;
    char *buf = st == FM_OK ? malloc(lay->stride) : NULL;
    if (st == FM_OK && !buf) st = fm_error(FM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == FM_OK && i < m.n_layers; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, m.layers[i].file);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            st = fm_error(FM_ERR_IO, "%s: %s", path, strerror(errno));
            break;
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (int e = 0; st == FM_OK && e < m.n_experts; e++) {
            if ((st = fm_pread_full(fd, buf, lay->expert_bytes, (uint64_t)e * lay->stride, path))) break;
            if (XXH3_64bits(buf, lay->expert_bytes) != m.layers[i].checksums[e])
                st = fm_error(FM_ERR_FORMAT, "%s: checksum mismatch in layer %d expert %d: the packed model is corrupt",
                              path, m.layers[i].layer, e);
            done += lay->stride;
        }
        close(fd);
        if (progress) {
            char what[64];
            snprintf(what, sizeof what, "layer %d experts", m.layers[i].layer);
            progress(user, done, total, what);
        }
    }
    free(buf);
    pack_manifest_free(&m);
    return st;
}
