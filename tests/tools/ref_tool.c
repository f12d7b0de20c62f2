/* Helper for the shell tests: reads reference.safetensors tensors.
 *   ref_tool ids FILE NAME                 prints an int32 tensor as "1,2,3"
 *   ref_tool tokens FILE NAME              prints it space-separated
 *   ref_tool compare RAW FILE NAME TOL     RAW (float32 [.., V]) against the tensor's rows
 *                                          (its last rows if the tensor keeps fewer); exit 0 if
 *                                          relative L2 ≤ TOL */
#include "load/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: ref_tool ids|tokens|compare ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    int is_compare = !strcmp(cmd, "compare");
    st_file *f;
    if (st_file_open(argv[is_compare ? 3 : 2], &f) != FM_OK) {
        fprintf(stderr, "%s\n", fm_last_error());
        return 2;
    }
    const st_tensor *t = st_file_find(f, argv[is_compare ? 4 : 3]);
    if (!t) {
        fprintf(stderr, "no tensor %s\n", argv[is_compare ? 4 : 3]);
        return 2;
    }
    if (!is_compare) {
        const int32_t *v = t->data;
        for (uint64_t i = 0; i < st_tensor_numel(t); i++)
            printf("%s%d", i ? (!strcmp(cmd, "ids") ? "," : " ") : "", v[i]);
        printf("\n");
        st_file_close(f);
        return 0;
    }
    if (argc < 6) return 2;
    FILE *raw = fopen(argv[2], "rb");
    if (!raw) {
        perror(argv[2]);
        return 1;
    }
    fseek(raw, 0, SEEK_END);
    long size = ftell(raw);
    rewind(raw);
    size_t want_n = st_tensor_numel(t), got_n = (size_t)size / 4;
    if (got_n < want_n || got_n % (size_t)t->shape[1]) {
        fprintf(stderr, "%s: %ld bytes do not hold the %zu reference values\n", argv[2], size, want_n);
        return 1;
    }
    float *got = malloc((size_t)size);
    if (!got || fread(got, 4, got_n, raw) != got_n) return 1;
    fclose(raw);
    const float *g = got + (got_n - want_n), *w = t->data;
    double num = 0, den = 0;
    for (size_t i = 0; i < want_n; i++) {
        num += ((double)g[i] - w[i]) * ((double)g[i] - w[i]);
        den += (double)w[i] * w[i];
    }
    double rel = sqrt(num / den);
    printf("relative L2 %.3e\n", rel);
    free(got);
    st_file_close(f);
    return rel <= atof(argv[5]) ? 0 : 1;
}
