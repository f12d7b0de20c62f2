/* safetensors reader and checkpoint directories on crafted inputs:
 *   - a valid file parses: names, dtypes, shapes, offsets, data pointers
 *   - every malformed header is refused with FM_ERR_FORMAT (or FM_ERR_IO for
 *     files that cannot be opened) and a message naming the file and, where
 *     one is at fault, the tensor
 *   - sharded checkpoints (model.safetensors.index.json): tensors found in
 *     every shard; missing shards, path-like shard names, duplicated tensors
 *     and directories without weights refused
 * Files are written under test_tmp_dir() and removed afterwards. */
#include "test_util.h"

#include "core/error.h"
#include "load/checkpoint.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

#define assert_msg_has(s)                                                                                  \
    do {                                                                                                   \
        if (!strstr(fm_last_error(), (s))) fail_msg("message \"%s\" does not mention \"%s\"", fm_last_error(), (s)); \
    } while (0)

/* Forget the previous message so a check cannot pass on a stale one. */
static void clear_error(void) { fm_error(FM_OK, "%s", ""); }

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 1); }

/* Writes a safetensors image: `len_field` as the 8-byte little-endian header
 * length, the header text, then `data_size` bytes of pattern(i). */
static void write_st_raw(const char *path, uint64_t len_field, const char *header, size_t data_size) {
    size_t hlen = strlen(header);
    size_t total = 8 + hlen + data_size;
    unsigned char *buf = malloc(total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len_field >> (8 * i));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < data_size; i++) buf[8 + hlen + i] = pattern(i);
    assert_int_equal(write_file(path, buf, total), 0);
    free(buf);
}

/* A well-formed image: the header padded with spaces to a multiple of 8 bytes
 * (as every writer does) and the length field matching it. */
static void write_st(const char *path, const char *header, size_t data_size) {
    size_t len = strlen(header), padded = (len + 7) / 8 * 8;
    char *text = malloc(padded + 1);
    assert_non_null(text);
    memcpy(text, header, len);
    memset(text + len, ' ', padded - len);
    text[padded] = 0;
    write_st_raw(path, padded, text, data_size);
    free(text);
}

/* Header bytes as write_st stores them. */
static size_t padded_len(const char *header) { return (strlen(header) + 7) / 8 * 8; }

static void tmp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", test_tmp_dir(), name);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh empty directory under the scratch directory. */
static void make_dir(char *buf, size_t size, const char *name) {
    tmp_path(buf, size, name);
    remove_tree(buf);
    assert_int_equal(mkdir(buf, 0755), 0);
}

/* Frees what st_parse_header filled in (the caller's st_file is not heap-allocated). */
static void free_parsed(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
}

/* Writes `header` + data into a scratch file `name`, opens it and expects
 * failure with `status`; the message must name the file and each of `needles`
 * (NULL-terminated). */
static void expect_open_fails(const char *name, const char *header, size_t data_size, fm_status status, ...) {
    char path[1024];
    tmp_path(path, sizeof path, name);
    write_st(path, header, data_size);
    st_file *f = (st_file *)0x1;
    clear_error();
    fm_status st = st_file_open(path, &f);
    if (st != status)
        fail_msg("%s: got %s (%s), expected %s", name, fm_status_name(st), fm_last_error(), fm_status_name(status));
    assert_null(f);
    assert_msg_has(path);
    va_list ap;
    va_start(ap, status);
    for (const char *s; (s = va_arg(ap, const char *));) assert_msg_has(s);
    va_end(ap);

    /* st_parse_header alone reports the same, under the label it is given. */
    st_file parsed;
    clear_error();
    assert_int_equal(st_parse_header(header, strlen(header), data_size, "LABEL", &parsed), status);
    assert_null(parsed.tensors);
    assert_int_equal(parsed.n_tensors, 0);
    assert_msg_has("LABEL");
    assert_int_equal(unlink(path), 0);
}

/* ---- valid files ---------------------------------------------------------- */

static const char valid_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w.a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"w.b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"w.scalar\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
    "\"w.empty\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[40,40]},"
    "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[1,1,2],\"data_offsets\":[40,44]}}";

static void check_valid_tensors(const st_file *f, int mapped) {
    assert_int_equal(f->n_tensors, 5); /* __metadata__ is not a tensor */
    static const struct {
        const char *name;
        fm_dtype dtype;
        int n_dims;
        int64_t shape[3];
        uint64_t offset, nbytes, numel;
    } want[] = {
        {"w.a", FM_DTYPE_F32, 2, {2, 3}, 0, 24, 6},        {"w.b", FM_DTYPE_BF16, 1, {4}, 24, 8, 4},
        {"w.scalar", FM_DTYPE_I64, 0, {0}, 32, 8, 1},      {"w.empty", FM_DTYPE_U8, 2, {0, 5}, 40, 0, 0},
        {"w.f16", FM_DTYPE_F16, 3, {1, 1, 2}, 40, 4, 2},
    };
    for (int i = 0; i < 5; i++) {
        const st_tensor *t = &f->tensors[i]; /* header order */
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->dtype, want[i].dtype);
        assert_int_equal(t->n_dims, want[i].n_dims);
        for (int d = 0; d < t->n_dims; d++) assert_int_equal(t->shape[d], want[i].shape[d]);
        assert_int_equal(t->offset, want[i].offset);
        assert_int_equal(t->nbytes, want[i].nbytes);
        assert_int_equal(st_tensor_numel(t), want[i].numel);
        assert_ptr_equal(st_file_find(f, want[i].name), t);
        if (!mapped) {
            assert_null(t->data);
            continue;
        }
        const unsigned char *data = (const unsigned char *)f->map + 8 + padded_len(valid_header) + t->offset;
        assert_ptr_equal(t->data, data);
        for (uint64_t b = 0; b < t->nbytes; b++) assert_int_equal(((const unsigned char *)t->data)[b], pattern(t->offset + b));
    }
    assert_null(st_file_find(f, "w.missing"));
    assert_null(st_file_find(f, "__metadata__"));
}

static void test_valid_file(void **state) {
    (void)state;
    char path[1024];
    tmp_path(path, sizeof path, "valid.safetensors");
    write_st(path, valid_header, 44);
    st_file *f = NULL;
    assert_int_equal(st_file_open(path, &f), FM_OK);
    assert_non_null(f);
    assert_string_equal(f->path, path);
    assert_int_equal(f->map_size, 8 + padded_len(valid_header) + 44);
    check_valid_tensors(f, 1);
    /* A float value reads back through the mapping. */
    float a0;
    memcpy(&a0, f->tensors[0].data, sizeof a0);
    uint32_t bits = (uint32_t)pattern(0) | (uint32_t)pattern(1) << 8 | (uint32_t)pattern(2) << 16 |
                    (uint32_t)pattern(3) << 24;
    assert_memory_equal(&a0, &bits, 4);
    st_file_close(f);
    assert_int_equal(unlink(path), 0);
}

/* ST_COPY_TO_RAM: the same tensors and bytes, in 2 MB-aligned anonymous memory. */
static void test_valid_file_in_ram(void **state) {
    (void)state;
    char path[1024];
    tmp_path(path, sizeof path, "valid_ram.safetensors");
    write_st(path, valid_header, 44);
    st_file *f = NULL;
    assert_int_equal(st_file_open_mode(path, ST_COPY_TO_RAM, &f), FM_OK);
    assert_int_equal((uintptr_t)f->map % (2u << 20), 0);
    assert_true(f->map_size >= 8 + padded_len(valid_header) + 44);
    check_valid_tensors(f, 1);
    st_file_close(f);
    f = NULL;
    assert_int_equal(st_file_open_mode("/nonexistent/x.safetensors", ST_COPY_TO_RAM, &f), FM_ERR_IO);
    assert_null(f);
    assert_int_equal(unlink(path), 0);
}

static void test_valid_parse_from_memory(void **state) {
    (void)state;
    st_file f = {0};
    assert_int_equal(st_parse_header(valid_header, strlen(valid_header), 44, "mem", &f), FM_OK);
    check_valid_tensors(&f, 0);
    free_parsed(&f);
}

/* Writers pad the header with spaces to an 8-byte boundary; no tensors at all is valid. */
static void test_valid_padded_and_empty(void **state) {
    (void)state;
    char path[1024];
    tmp_path(path, sizeof path, "padded.safetensors");
    write_st(path, "{\"x\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}     ", 3);
    st_file *f = NULL;
    assert_int_equal(st_file_open(path, &f), FM_OK);
    assert_int_equal(f->n_tensors, 1);
    assert_int_equal(f->tensors[0].dtype, FM_DTYPE_BOOL);
    st_file_close(f);

    write_st(path, "{}", 0);
    assert_int_equal(st_file_open(path, &f), FM_OK);
    assert_int_equal(f->n_tensors, 0);
    st_file_close(f);

    write_st(path, "{\"__metadata__\":{\"format\":\"pt\"}}", 0);
    assert_int_equal(st_file_open(path, &f), FM_OK);
    assert_int_equal(f->n_tensors, 0);
    st_file_close(f);
    assert_int_equal(unlink(path), 0);
}

/* ---- malformed files ------------------------------------------------------ */

static void test_missing_file(void **state) {
    (void)state;
    char path[1024];
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    st_file *f = (st_file *)0x1;
    clear_error();
    assert_int_equal(st_file_open(path, &f), FM_ERR_IO);
    assert_null(f);
    assert_msg_has(path);
}

static void test_too_short(void **state) {
    (void)state;
    char path[1024];
    tmp_path(path, sizeof path, "short.safetensors");
    for (size_t len = 0; len < 8; len++) {
        static const unsigned char bytes[8] = {2, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(write_file(path, bytes, len), 0);
        st_file *f = (st_file *)0x1;
        clear_error();
        assert_int_equal(st_file_open(path, &f), FM_ERR_FORMAT);
        assert_null(f);
        assert_msg_has(path);
    }
    assert_int_equal(unlink(path), 0);
}

/* An unpadded header leaves F32 data at an offset that is not a multiple of 4. */
static void test_unaligned_data(void **state) {
    (void)state;
    const char *header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    char path[1024];
    tmp_path(path, sizeof path, "unaligned.safetensors");
    assert_true(strlen(header) % 4 != 0);
    write_st_raw(path, strlen(header), header, 8);
    st_file *f = NULL;
    clear_error();
    assert_int_equal(st_file_open(path, &f), FM_ERR_FORMAT);
    assert_null(f);
    assert_msg_has(path);
    assert_msg_has("'w'");
    assert_msg_has("not aligned");
    remove(path);
}

static void test_header_length_past_end(void **state) {
    (void)state;
    char path[1024];
    tmp_path(path, sizeof path, "pastend.safetensors");
    static const uint64_t lengths[] = {3, 100, 1ull << 32, UINT64_MAX, UINT64_MAX - 7};
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; i++) {
        /* "{}" is 2 bytes; a length of 3 runs one byte past the end. */
        write_st_raw(path, lengths[i], "{}", 0);
        st_file *f = (st_file *)0x1;
        clear_error();
        assert_int_equal(st_file_open(path, &f), FM_ERR_FORMAT);
        assert_null(f);
        assert_msg_has(path);
        assert_msg_has("header length");
    }
    /* An 8-byte file with length 0: the header "" is not JSON. */
    write_st_raw(path, 0, "", 0);
    st_file *f = (st_file *)0x1;
    clear_error();
    assert_int_equal(st_file_open(path, &f), FM_ERR_FORMAT);
    assert_msg_has(path);
    assert_int_equal(unlink(path), 0);
}

static void test_header_not_json(void **state) {
    (void)state;
    expect_open_fails("notjson.safetensors", "{\"a\": {\"dtype\": ", 16, FM_ERR_FORMAT, "JSON", NULL);
    expect_open_fails("garbage.safetensors", "\x01\x02\x03 binary", 0, FM_ERR_FORMAT, NULL);
}

static void test_header_not_object(void **state) {
    (void)state;
    expect_open_fails("array.safetensors", "[1, 2, 3]", 0, FM_ERR_FORMAT, "JSON object", NULL);
    expect_open_fails("string.safetensors", "\"tensors\"", 0, FM_ERR_FORMAT, "JSON object", NULL);
    expect_open_fails("number.safetensors", "42", 0, FM_ERR_FORMAT, "JSON object", NULL);
    expect_open_fails("null.safetensors", "null", 0, FM_ERR_FORMAT, "JSON object", NULL);
}

static void test_entry_not_object(void **state) {
    (void)state;
    expect_open_fails("entry_number.safetensors", "{\"w.x\": 5}", 0, FM_ERR_FORMAT, "'w.x'", NULL);
    expect_open_fails("entry_nodtype.safetensors", "{\"w.x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
                      FM_ERR_FORMAT, "'w.x'", "dtype", NULL);
    expect_open_fails("entry_noshape.safetensors", "{\"w.x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4,
                      FM_ERR_FORMAT, "'w.x'", NULL);
    expect_open_fails("entry_nooffsets.safetensors", "{\"w.x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4,
                      FM_ERR_FORMAT, "'w.x'", NULL);
    expect_open_fails("entry_dtypenum.safetensors", "{\"w.x\": {\"dtype\": 7, \"shape\": [1], \"data_offsets\": [0, 4]}}",
                      4, FM_ERR_FORMAT, "'w.x'", NULL);
}

static void test_offsets_out_of_range(void **state) {
    (void)state;
    /* The data section holds 16 bytes; the tensor claims [8, 24). */
    expect_open_fails("range.safetensors",
                      "{\"ok\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"w.far\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                      16, FM_ERR_FORMAT, "'w.far'", "out of range", NULL);
    /* Entirely past the end, and an end beyond 2^53 (not exactly representable). */
    expect_open_fails("range2.safetensors", "{\"w.x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[100,101]}}", 16,
                      FM_ERR_FORMAT, "'w.x'", NULL);
    expect_open_fails("range3.safetensors",
                      "{\"w.x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 16,
                      FM_ERR_FORMAT, "'w.x'", NULL);
}

static void test_begin_after_end(void **state) {
    (void)state;
    expect_open_fails("reversed.safetensors", "{\"w.rev\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16,
                      FM_ERR_FORMAT, "'w.rev'", NULL);
}

static void test_overlapping(void **state) {
    (void)state;
    /* Listed out of order on purpose: the check is on sorted offsets. */
    expect_open_fails("overlap.safetensors",
                      "{\"w.second\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                      "\"w.first\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      16, FM_ERR_FORMAT, "'w.first'", "'w.second'", "overlap", NULL);
    /* Same range twice. */
    expect_open_fails("overlap2.safetensors",
                      "{\"w.p\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                      "\"w.q\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                      4, FM_ERR_FORMAT, "'w.p'", "'w.q'", NULL);
    /* A tensor inside another. */
    expect_open_fails("overlap3.safetensors",
                      "{\"w.outer\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                      "\"w.inner\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
                      8, FM_ERR_FORMAT, "'w.outer'", "'w.inner'", NULL);
}

static void test_unknown_dtype(void **state) {
    (void)state;
    expect_open_fails("q7.safetensors", "{\"w.q7\":{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                      FM_ERR_FORMAT, "'w.q7'", "Q7", NULL);
    expect_open_fails("lower.safetensors", "{\"w.lc\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      FM_ERR_FORMAT, "'w.lc'", "f32", NULL);
}

static void test_byte_count_mismatch(void **state) {
    (void)state;
    /* [2, 3] F32 needs 24 bytes; 20 are claimed. */
    expect_open_fails("count.safetensors", "{\"w.short\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
                      24, FM_ERR_FORMAT, "'w.short'", "24", NULL);
    /* Too many bytes for a BF16 [4]. */
    expect_open_fails("count2.safetensors", "{\"w.long\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                      16, FM_ERR_FORMAT, "'w.long'", "BF16", NULL);
    /* A product that overflows 64 bits must not wrap around to a match. */
    expect_open_fails("count3.safetensors",
                      "{\"w.huge\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,16],"
                      "\"data_offsets\":[0,0]}}",
                      0, FM_ERR_FORMAT, "'w.huge'", NULL);
    expect_open_fails("count4.safetensors",
                      "{\"w.big\":{\"dtype\":\"U8\",\"shape\":[1099511627777],\"data_offsets\":[0,0]}}", 0,
                      FM_ERR_FORMAT, "'w.big'", NULL);
}

static void test_bad_shape_entries(void **state) {
    (void)state;
    expect_open_fails("neg.safetensors", "{\"w.neg\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 16,
                      FM_ERR_FORMAT, "'w.neg'", "shape", NULL);
    expect_open_fails("frac.safetensors", "{\"w.frac\":{\"dtype\":\"U8\",\"shape\":[1.5,2],\"data_offsets\":[0,3]}}",
                      3, FM_ERR_FORMAT, "'w.frac'", "shape", NULL);
    expect_open_fails("str.safetensors", "{\"w.str\":{\"dtype\":\"U8\",\"shape\":[\"4\"],\"data_offsets\":[0,4]}}", 4,
                      FM_ERR_FORMAT, "'w.str'", NULL);
    expect_open_fails("nested.safetensors", "{\"w.nest\":{\"dtype\":\"U8\",\"shape\":[[4]],\"data_offsets\":[0,4]}}",
                      4, FM_ERR_FORMAT, "'w.nest'", NULL);
    expect_open_fails("shapeobj.safetensors", "{\"w.obj\":{\"dtype\":\"U8\",\"shape\":{\"n\":4},\"data_offsets\":[0,4]}}",
                      4, FM_ERR_FORMAT, "'w.obj'", NULL);
    expect_open_fails("dims.safetensors",
                      "{\"w.dims\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
                      FM_ERR_FORMAT, "'w.dims'", "dimensions", NULL);
}

static void test_bad_data_offsets(void **state) {
    (void)state;
    static const char *const offsets[] = {
        "[0]", "[0, 4, 8]", "[]", "[\"0\", \"4\"]", "[0.5, 4.5]", "[-4, 0]", "[0, null]", "{\"begin\": 0}", "4",
    };
    for (size_t i = 0; i < sizeof offsets / sizeof *offsets; i++) {
        char header[256], name[64];
        snprintf(header, sizeof header, "{\"w.off\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":%s}}", offsets[i]);
        snprintf(name, sizeof name, "offsets%zu.safetensors", i);
        expect_open_fails(name, header, 8, FM_ERR_FORMAT, "'w.off'", NULL);
    }
}

/* The first bad entry is reported even when good ones precede it, and nothing leaks. */
static void test_error_after_good_entries(void **state) {
    (void)state;
    expect_open_fails("late.safetensors",
                      "{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w.1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                      "\"w.bad\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                      12, FM_ERR_FORMAT, "'w.bad'", NULL);
}

/* ---- checkpoint directories ----------------------------------------------- */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static const char shard1_header[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                                    "\"model.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                    "\"model.b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}";
static const char shard2_header[] = "{\"model.c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}";
static const char index_json[] = "{\"metadata\":{\"total_size\":22},\"weight_map\":{"
                                 "\"model.a\":\"" SHARD1 "\",\"model.b\":\"" SHARD1 "\",\"model.c\":\"" SHARD2 "\"}}";

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(write_file(path, text, strlen(text)), 0);
}

static void write_st_in(const char *dir, const char *name, const char *header, size_t data_size) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_st(path, header, data_size);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void expect_ckpt_fails(const char *dir, fm_status status, ...) {
    ckpt *c = (ckpt *)0x1;
    clear_error();
    fm_status st = ckpt_open(dir, &c);
    if (st != status)
        fail_msg("%s: got %s (%s), expected %s", dir, fm_status_name(st), fm_last_error(), fm_status_name(status));
    assert_null(c);
    va_list ap;
    va_start(ap, status);
    for (const char *s; (s = va_arg(ap, const char *));) assert_msg_has(s);
    va_end(ap);
}

static void test_ckpt_single_file(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_single");
    write_st_in(dir, "model.safetensors", valid_header, 44);
    ckpt *c = NULL;
    assert_int_equal(ckpt_open(dir, &c), FM_OK);
    assert_int_equal(c->n_files, 1);
    const ckpt_entry *e = ckpt_find(c, "w.b");
    assert_non_null(e);
    assert_string_equal(e->tensor->name, "w.b");
    assert_ptr_equal(e->file, c->files[0]);
    assert_null(ckpt_find(c, "w.nope"));
    ckpt_close(c);
    remove_tree(dir);
}

static void test_ckpt_sharded(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_sharded");
    write_st_in(dir, SHARD1, shard1_header, 16);
    write_st_in(dir, SHARD2, shard2_header, 6);
    write_text(dir, "model.safetensors.index.json", index_json);
    ckpt *c = NULL;
    if (ckpt_open(dir, &c) != FM_OK) fail_msg("%s", fm_last_error());
    assert_int_equal(c->n_files, 2); /* each shard opened once, however many tensors name it */
    static const struct { const char *tensor, *shard; uint64_t offset; } want[] = {
        {"model.a", SHARD1, 0}, {"model.b", SHARD1, 8}, {"model.c", SHARD2, 0}};
    for (int i = 0; i < 3; i++) {
        const ckpt_entry *e = ckpt_find(c, want[i].tensor);
        if (!e) fail_msg("tensor %s not found", want[i].tensor);
        assert_string_equal(e->tensor->name, want[i].tensor);
        assert_string_equal(base_name(e->file->path), want[i].shard);
        assert_int_equal(e->tensor->offset, want[i].offset);
        assert_int_equal(((const unsigned char *)e->tensor->data)[0], pattern(want[i].offset));
    }
    assert_int_equal(ckpt_find(c, "model.c")->tensor->dtype, FM_DTYPE_F16);
    assert_null(ckpt_find(c, "model.d"));
    ckpt_close(c);
    remove_tree(dir);
}

static void test_ckpt_missing_shard(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_missing");
    write_st_in(dir, SHARD1, shard1_header, 16);
    write_text(dir, "model.safetensors.index.json", index_json); /* SHARD2 never written */
    expect_ckpt_fails(dir, FM_ERR_IO, dir, SHARD2, NULL);
    remove_tree(dir);
}

static void test_ckpt_shard_name_with_slash(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_slash");
    write_st_in(dir, SHARD1, shard1_header, 16);
    /* The shard exists one level up: a plain-name rule must refuse it anyway. */
    char outside[1100];
    snprintf(outside, sizeof outside, "%s/outside.safetensors", test_tmp_dir());
    write_st(outside, shard2_header, 6);
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"model.a\":\"" SHARD1 "\",\"model.c\":\"../outside.safetensors\"}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, dir, "../outside.safetensors", NULL);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\":{\"model.a\":\"sub/" SHARD1 "\"}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, dir, "sub/" SHARD1, NULL);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\":{\"model.a\":\"/etc/passwd\"}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, dir, "/etc/passwd", NULL);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\":{\"model.a\":\"..\"}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, dir, NULL);
    assert_int_equal(unlink(outside), 0);
    remove_tree(dir);
}

static void test_ckpt_duplicate_across_shards(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_dup");
    write_st_in(dir, SHARD1, shard1_header, 16);
    write_st_in(dir, SHARD2,
                "{\"model.c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                "\"model.b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[6,14]}}",
                14);
    write_text(dir, "model.safetensors.index.json", index_json);
    expect_ckpt_fails(dir, FM_ERR_FORMAT, "'model.b'", SHARD1, SHARD2, NULL);
    remove_tree(dir);
}

/* Two header entries with the same name in one file (JSON allows repeated keys). */
static void test_ckpt_duplicate_in_one_file(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_dup1");
    write_st_in(dir, "model.safetensors",
                "{\"model.x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                "\"model.x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
                4);
    expect_ckpt_fails(dir, FM_ERR_FORMAT, "'model.x'", "model.safetensors", NULL);
    remove_tree(dir);
}

static void test_ckpt_no_weights(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_empty");
    write_text(dir, "config.json", "{}");
    write_text(dir, "model.bin", "not safetensors");
    expect_ckpt_fails(dir, FM_ERR_IO, dir, "model.safetensors", NULL);
    remove_tree(dir);

    char missing[1100];
    snprintf(missing, sizeof missing, "%s/no-such-dir", test_tmp_dir());
    expect_ckpt_fails(missing, FM_ERR_IO, missing, NULL);
}

static void test_ckpt_bad_index(void **state) {
    (void)state;
    char dir[1024], index[1100];
    make_dir(dir, sizeof dir, "ckpt_badindex");
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_st_in(dir, SHARD1, shard1_header, 16);

    write_text(dir, "model.safetensors.index.json", "{\n\"weight_map\": {\n\"model.a\": ,\n}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, index, "line 3", NULL);
    write_text(dir, "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, index, "weight_map", NULL);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": [\"" SHARD1 "\"]}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, index, "weight_map", NULL);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"model.a\": 3}}");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, index, "'model.a'", NULL);
    write_text(dir, "model.safetensors.index.json", "[]");
    expect_ckpt_fails(dir, FM_ERR_FORMAT, index, NULL);
    remove_tree(dir);
}

/* A corrupt shard: the message names that shard and its bad tensor. */
static void test_ckpt_corrupt_shard(void **state) {
    (void)state;
    char dir[1024];
    make_dir(dir, sizeof dir, "ckpt_corrupt");
    write_st_in(dir, SHARD1, shard1_header, 16);
    write_st_in(dir, SHARD2, "{\"model.c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,60]}}", 6);
    write_text(dir, "model.safetensors.index.json", index_json);
    expect_ckpt_fails(dir, FM_ERR_FORMAT, SHARD2, "'model.c'", NULL);
    remove_tree(dir);
}

static int teardown_group(void **state) {
    (void)state;
    remove_tree(test_tmp_dir());
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_valid_file_in_ram),
        cmocka_unit_test(test_valid_parse_from_memory),
        cmocka_unit_test(test_valid_padded_and_empty),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_too_short),
        cmocka_unit_test(test_header_length_past_end),
        cmocka_unit_test(test_unaligned_data),
        cmocka_unit_test(test_header_not_json),
        cmocka_unit_test(test_header_not_object),
        cmocka_unit_test(test_entry_not_object),
        cmocka_unit_test(test_offsets_out_of_range),
        cmocka_unit_test(test_begin_after_end),
        cmocka_unit_test(test_overlapping),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_byte_count_mismatch),
        cmocka_unit_test(test_bad_shape_entries),
        cmocka_unit_test(test_bad_data_offsets),
        cmocka_unit_test(test_error_after_good_entries),
        cmocka_unit_test(test_ckpt_single_file),
        cmocka_unit_test(test_ckpt_sharded),
        cmocka_unit_test(test_ckpt_missing_shard),
        cmocka_unit_test(test_ckpt_shard_name_with_slash),
        cmocka_unit_test(test_ckpt_duplicate_across_shards),
        cmocka_unit_test(test_ckpt_duplicate_in_one_file),
        cmocka_unit_test(test_ckpt_no_weights),
        cmocka_unit_test(test_ckpt_bad_index),
        cmocka_unit_test(test_ckpt_corrupt_shard),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, teardown_group);
}
