"""The peer of bench_tokenizer: Hugging Face `tokenizers` on the same corpus.
    python3 bench/hf_tokenizer_bench.py TOKENIZER_JSON CORPUS FLASHMOE_IDS
Prints MB/s for encode() of the whole text (one thread, as flashmoe's
single-threaded number) and for encode_batch() over its lines (all threads),
and checks that flashmoe's ids (int32 little-endian) are identical."""
import sys, time, array
from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8", newline="").read()
mb = len(text.encode("utf-8")) / 1e6
best = 1e30
for _ in range(3):
    t0 = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    best = min(best, time.perf_counter() - t0)
print(f"hf tokenizers  encode        {mb / best:8.2f} MB/s  ({len(ids)} tokens, best of 3: {best:.3f} s)")
lines = text.splitlines(keepends=True)
best = 1e30
for _ in range(3):
    t0 = time.perf_counter()
    batch = tok.encode_batch(lines, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
print(f"hf tokenizers  encode_batch  {mb / best:8.2f} MB/s  (lines, all threads, best of 3: {best:.3f} s)")
ours = array.array("i")
ours.frombytes(open(sys.argv[3], "rb").read())
same = list(ours) == ids
first = next((i for i, (a, b) in enumerate(zip(ours, ids)) if a != b), min(len(ours), len(ids)))
print(f"ids identical  {same} ({len(ours)} vs {len(ids)} tokens" + ("" if same else f", first difference at {first}") + ")")
