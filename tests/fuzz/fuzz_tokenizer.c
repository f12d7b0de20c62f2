/* libFuzzer target: tokenizer.json parsing, then encoding and decoding a
 * fixed text with whatever tokenizer the input describes. */
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fm_tokenizer *tok;
    if (tokenizer_from_text((const char *)data, size, "fuzz", &tok) != FM_OK) return 0;
    static const char text[] = "Hello, world! <|im_start|>user\n  numbers 12345 \xc3\xa9\xe6\x97\xa5\xf0\x9f\x99\x82\n\n";
    int32_t *ids;
    int n;
    if (fm_tokenizer_encode(tok, text, sizeof text - 1, &ids, &n) == FM_OK) {
        char *back;
        size_t len;
        if (fm_tokenizer_decode(tok, ids, n, 0, &back, &len) == FM_OK) free(back);
        free(ids);
    }
    fm_tokenizer_close(tok);
    return 0;
}
