#!/usr/bin/python3
"""Turns a tiny Hugging Face fixture checkpoint (bf16 safetensors) into what
`mlx_lm.convert -q` writes for it: an mlx-community-style affine-quantized
checkpoint. numpy only; written from the documented MLX layout
(shared/docs/model-math.md §4), not from MLX's code.

    make_mlx_fixture.py SRC_DIR DST_DIR [--bits 4] [--group 64]
    make_mlx_fixture.py SRC_DIR DST_DIR --check

Supported: model_type qwen3_5_moe (multimodal layout) and qwen3_next.

Output (DST_DIR):
  model.safetensors                (header "__metadata__": {"format": "mlx"})
  model.safetensors.index.json     (weight_map, metadata.total_size)
  config.json                      ("quantization" + "quantization_config" added)
  generation_config.json, tokenizer files (copied when present)
  reference.safetensors            (transformers' float32 reference, copied as is)
  keys.txt                         (every tensor with its shape and dtype)

Names after mlx-lm's sanitize (§4.2):
  qwen3_5_moe: model.language_model.X -> language_model.model.X,
               lm_head.weight -> language_model.lm_head.weight,
               model.visual.*, vision_tower.*, mtp.* dropped
  qwen3_next:  names kept, mtp.* dropped
  experts: mlp.experts.N.{gate,up,down}_proj.weight stacked, or the fused
           mlp.experts.gate_up_proj [E, 2I, H] split (gate = first I rows) and
           mlp.experts.down_proj, into mlp.switch_mlp.{gate,up,down}_proj.weight
  +1.0 added to input_layernorm, post_attention_layernorm, the final norm,
  q_norm, k_norm (not linear_attn.norm); conv1d.weight [C, 1, K] -> [C, K, 1].

Quantization (§4.1, §4.3): every 2-D `.weight` (Linear, Embedding) and every
stacked switch_mlp weight whose input (last) dim is divisible by the group size
becomes weight (uint32 [..., out, in*bits/32]), scales and biases (bf16
[..., out, in/group]); mlp.gate and shared_expert_gate at 8 bits group 64
through per-module entries in config.json "quantization".
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys

import numpy as np

# ----------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, data.

ST_DTYPES = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits, kept as uint16
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}


class Tensor:
    """A tensor as stored: safetensors dtype name and a numpy array holding
    the stored values (BF16 as its uint16 bit patterns)."""

    def __init__(self, dtype, array):
        if dtype not in ST_DTYPES:
            raise ValueError("unsupported dtype %s" % dtype)
        self.dtype = dtype
        self.array = np.ascontiguousarray(array, dtype=ST_DTYPES[dtype])

    @property
    def shape(self):
        return list(self.array.shape)

    def f32(self):
        """Values widened to float32 (exact for BF16/F16)."""
        if self.dtype == "BF16":
            return bf16_to_f32(self.array)
        return self.array.astype(np.float32)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        dt = ST_DTYPES[e["dtype"]]
        a, b = e["data_offsets"]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if b - a != count * dt.itemsize:
            raise ValueError("%s: %s: size mismatch" % (path, name))
        arr = np.frombuffer(blob, dtype=dt, count=count, offset=base + a).reshape(e["shape"])
        out[name] = Tensor(e["dtype"], arr)
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Tensors in name order, data contiguous; header padded with spaces to a
    multiple of 8 bytes so the data starts aligned."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        nbytes = t.array.nbytes
        header[name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - (8 + len(hb)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name in names:
            f.write(tensors[name].array.tobytes())
    return off


# ----------------------------------------------------------------------------
# bf16

def bf16_to_f32(u16):
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16(x):
    """float32 -> bf16 bits, round to nearest even; NaN stays (quiet) NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (rounded >> np.uint32(16)).astype(np.uint16)
    return np.where(nan, ((bits >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16), out)


def cast_float(t, dtype):
    """Float tensor t converted to dtype ("BF16", "F16" or "F32")."""
    if t.dtype == dtype:
        return t
    v = t.f32()
    if dtype == "BF16":
        return Tensor("BF16", f32_to_bf16(v))
    return Tensor(dtype, v.astype(ST_DTYPES[dtype]))


# ----------------------------------------------------------------------------
# MLX affine quantization (§4.1), vectorised over [..., in].

def quantize(w, bits, group, dtype="BF16"):
    """w: float32 [..., in] -> (packed uint32 [..., in*bits/32], scales
    [..., in/group], biases [..., in/group]), scales and biases as Tensors of
    `dtype` (the weight's dtype; bf16 for these models).

    Per group: the edge of larger magnitude (min or max) is the bias, the step
    (max-min)/(2^bits-1) runs from it towards the other edge (negative when
    the edge is the max). The step is then nudged to edge/rint(edge/step) so
    that 0.0 also falls on a code. Scale and bias are rounded to bf16 and the
    codes q = clip(rint((w - bias)/scale), 0, 2^bits-1) computed against the
    rounded values. Arithmetic in float32."""
    w = np.asarray(w, dtype=np.float32)
    n_in = w.shape[-1]
    if n_in % group or (n_in * bits) % 32:
        raise ValueError("input dim %d not divisible by group %d" % (n_in, group))
    n_bins = np.float32((1 << bits) - 1)
    g = w.reshape(w.shape[:-1] + (n_in // group, group))
    hi = g.max(axis=-1)
    lo = g.min(axis=-1)
    min_is_edge = np.abs(lo) > np.abs(hi)
    edge = np.where(min_is_edge, lo, hi)
    step = np.maximum((hi - lo) / n_bins, np.float32(1e-7))
    step = np.where(min_is_edge, step, -step)
    with np.errstate(divide="ignore", invalid="ignore"):
        q0 = np.rint(edge / step)
        scale = np.where(q0 != 0, edge / q0, step).astype(np.float32)
    bias = np.where(q0 != 0, edge, np.float32(0)).astype(np.float32)
    st = cast_float(Tensor("F32", scale), dtype)
    bt = cast_float(Tensor("F32", bias), dtype)
    sr = st.f32()
    br = bt.f32()
    sr = np.where(sr == 0, np.float32(1), sr)  # scale rounded to 0: every code is the bias
    q = np.rint((g - br[..., None]) / sr[..., None])
    q = np.nan_to_num(q, nan=0.0)
    q = np.clip(q, 0, n_bins).astype(np.uint32).reshape(w.shape)
    return pack(q, bits), st, bt


def pack(q, bits):
    """Codes [..., in] -> uint32 [..., in*bits/32]: each row a little-endian
    bit stream, code c at bits [c*bits, (c+1)*bits), LSB first."""
    shp = q.shape
    b = ((q[..., None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    b = b.reshape(shp[:-1] + (shp[-1] * bits,))
    by = np.packbits(b, axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u4").reshape(shp[:-1] + (shp[-1] * bits // 32,))


def unpack(packed, bits, n_in):
    """Inverse of pack. For bits 2/4/8 reads word c*bits/32 >> (c*bits)%32 (the
    formula a C kernel uses); other widths go through the bit stream."""
    packed = np.asarray(packed, dtype=np.uint32)
    c = np.arange(n_in, dtype=np.uint64) * np.uint64(bits)
    if 32 % bits == 0:
        words = packed[..., (c >> np.uint64(5)).astype(np.int64)]
        return (words >> (c & np.uint64(31)).astype(np.uint32)) & np.uint32((1 << bits) - 1)
    by = np.ascontiguousarray(packed).view(np.uint8)
    b = np.unpackbits(by, axis=-1, bitorder="little")[..., :n_in * bits]
    b = b.reshape(packed.shape[:-1] + (n_in, bits)).astype(np.uint32)
    return (b << np.arange(bits, dtype=np.uint32)).sum(axis=-1, dtype=np.uint32)


def dequantize(packed, scales, biases, bits, group):
    """scales, biases: Tensors. w = scale * q + bias in float32."""
    n_in = packed.shape[-1] * 32 // bits
    q = unpack(packed, bits, n_in).astype(np.float32)
    s = np.repeat(scales.f32(), group, axis=-1)
    b = np.repeat(biases.f32(), group, axis=-1)
    return s * q + b


# ----------------------------------------------------------------------------
# mlx-lm sanitize (§4.2)

EXPERT_RE = re.compile(r"^(.*\.mlp)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")
FUSED_RE = re.compile(r"^(.*\.mlp)\.experts\.(gate_up_proj|down_proj)$")
PLUS_ONE = (".input_layernorm.weight", ".post_attention_layernorm.weight",
            ".q_norm.weight", ".k_norm.weight")


def rename(name, model_type):
    """HF name -> MLX name, or None when mlx-lm drops the tensor."""
    if name.startswith("mtp.") or ".mtp." in name:
        return None
    if model_type == "qwen3_5_moe":
        if name.startswith(("model.visual", "vision_tower", "model.vision_tower")):
            return None
        if name.startswith("model.language_model."):
            return "language_model.model." + name[len("model.language_model."):]
        if name == "lm_head.weight":
            return "language_model.lm_head.weight"
        raise ValueError("unexpected tensor %s in a qwen3_5_moe checkpoint" % name)
    return name


def sanitize(src, model_type):
    """HF tensors -> dict of MLX-named Tensors (before quantization, before
    the dtype cast). Returns (tensors, final_norm_name)."""
    out = {}
    experts = {}  # (prefix, proj) -> {index: Tensor}
    for name, t in src.items():
        new = rename(name, model_type)
        if new is None:
            continue
        m = EXPERT_RE.match(new)
        if m:
            experts.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = t
            continue
        m = FUSED_RE.match(new)
        if m:
            pfx = m.group(1)
            if m.group(2) == "gate_up_proj":
                two_i = t.shape[1]
                if two_i % 2:
                    raise ValueError("%s: odd gate_up rows" % name)
                out[pfx + ".switch_mlp.gate_proj.weight"] = Tensor(t.dtype, t.array[:, :two_i // 2, :])
                out[pfx + ".switch_mlp.up_proj.weight"] = Tensor(t.dtype, t.array[:, two_i // 2:, :])
            else:
                out[pfx + ".switch_mlp.down_proj.weight"] = t
            continue
        out[new] = t
    for (pfx, proj), per in experts.items():
        n = len(per)
        if sorted(per) != list(range(n)):
            raise ValueError("%s: experts not numbered 0..%d" % (pfx, n - 1))
        dts = {per[i].dtype for i in range(n)}
        if len(dts) != 1:
            raise ValueError("%s: mixed expert dtypes" % pfx)
        out[pfx + ".switch_mlp.%s.weight" % proj] = Tensor(dts.pop(), np.stack([per[i].array for i in range(n)]))

    final_norm = ("language_model.model.norm.weight" if model_type == "qwen3_5_moe" else "model.norm.weight")
    for name in list(out):
        t = out[name]
        if name.endswith(PLUS_ONE) or name == final_norm:
            v = t.f32() + np.float32(1.0)
            out[name] = Tensor("BF16", f32_to_bf16(v)) if t.dtype == "BF16" else Tensor(t.dtype, v.astype(ST_DTYPES[t.dtype]))
        elif name.endswith(".conv1d.weight") and t.array.ndim == 3 and t.shape[-1] != 1:
            out[name] = Tensor(t.dtype, np.moveaxis(t.array, 2, 1))
    return out, final_norm


def is_quantizable(name, t):
    """A Linear / Embedding / SwitchLinear weight (what mlx-lm quantizes)."""
    if not name.endswith(".weight") or t.dtype not in ("BF16", "F16", "F32"):
        return False
    if name.endswith(".conv1d.weight"):
        return False
    nd = t.array.ndim
    return nd == 2 or (nd == 3 and ".switch_mlp." in name)


def override_for(path):
    """Per-module quantization of the model's quant_predicate (§4.3)."""
    if path.endswith("mlp.gate") or path.endswith("shared_expert_gate"):
        return {"group_size": 64, "bits": 8}
    return None


def kind_of(path):
    """Module path with the layer prefix removed: 'mlp.switch_mlp.gate_proj'."""
    base = re.sub(r"^(language_model\.)?model\.layers\.\d+\.", "", path)
    base = re.sub(r"^language_model\.", "", base)
    return base


def load_source(src_dir):
    with open(os.path.join(src_dir, "config.json")) as f:
        config = json.load(f)
    model_type = config.get("model_type")
    if model_type not in ("qwen3_5_moe", "qwen3_next"):
        sys.exit("model_type %r: only qwen3_5_moe and qwen3_next are supported" % model_type)
    idx = os.path.join(src_dir, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for fn in files:
        t, _ = read_safetensors(os.path.join(src_dir, fn))
        tensors.update(t)
    return config, model_type, tensors


def target_dtype(config):
    tc = config.get("text_config", config)
    d = tc.get("dtype") or tc.get("torch_dtype") or config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    return {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[d]


COPY_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
              "reference.safetensors")


def convert(src_dir, dst_dir, bits, group):
    config, model_type, src = load_source(src_dir)
    tensors, _ = sanitize(src, model_type)
    dtype = target_dtype(config)
    qcfg = {"group_size": group, "bits": bits, "mode": "affine"}
    out = {}
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype in ("F16", "F32", "BF16") and not name.endswith(".A_log"):
            t = cast_float(t, dtype)  # A_log keeps its stored dtype
        path = name[:-len(".weight")] if name.endswith(".weight") else name
        ov = override_for(path) if is_quantizable(name, t) else None
        b, g = (ov["bits"], ov["group_size"]) if ov else (bits, group)
        if is_quantizable(name, t) and t.shape[-1] % g == 0 and (t.shape[-1] * b) % 32 == 0:
            wq, st, bt = quantize(t.f32(), b, g, t.dtype)
            out[path + ".weight"] = Tensor("U32", wq)
            out[path + ".scales"], out[path + ".biases"] = st, bt
            if ov:
                qcfg[path] = dict(ov)
        else:
            out[name] = t

    os.makedirs(dst_dir, exist_ok=True)
    total = write_safetensors(os.path.join(dst_dir, "model.safetensors"), out, {"format": "mlx"})
    with open(os.path.join(dst_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": {k: "model.safetensors" for k in sorted(out)}}, f, indent=4)
        f.write("\n")
    # mlx-lm puts the entry at the top level of the config it loaded (for the
    # multimodal qwen3_5_moe: of config.json, not of text_config).
    config["quantization"] = qcfg
    config["quantization_config"] = dict(qcfg)
    with open(os.path.join(dst_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=4)
        f.write("\n")
    for fn in COPY_FILES:
        p = os.path.join(src_dir, fn)
        if os.path.exists(p):
            shutil.copyfile(p, os.path.join(dst_dir, fn))
    with open(os.path.join(dst_dir, "keys.txt"), "w") as f:
        for k in sorted(out):
            f.write("model.safetensors %s %s %s\n" % (k, out[k].shape, out[k].dtype))
    nq = sum(1 for k in out if k.endswith(".scales"))
    print("%s: %d tensors (%d quantized), %d bytes of data, %d per-module overrides"
          % (dst_dir, len(out), nq, total, len(qcfg) - 3))


# ----------------------------------------------------------------------------
# --check

def check(src_dir, dst_dir):
    """Dequantizes every quantized tensor of DST and compares with the bf16
    source; checks every other tensor equals the sanitized source exactly."""
    config, model_type, src = load_source(src_dir)
    ref, _ = sanitize(src, model_type)
    with open(os.path.join(dst_dir, "config.json")) as f:
        dcfg = json.load(f)
    q = dcfg["quantization"]
    assert dcfg.get("quantization_config") == q, "quantization_config differs from quantization"
    out, meta = read_safetensors(os.path.join(dst_dir, "model.safetensors"))
    print("metadata:", meta)
    ok = True
    seen = set()
    kinds = {}
    sums = []
    for name in sorted(out):
        if not name.endswith(".scales"):
            continue
        path = name[:-len(".scales")]
        w, s, b = out[path + ".weight"], out[path + ".scales"], out[path + ".biases"]
        ent = q.get(path)
        bits, gs = (ent["bits"], ent["group_size"]) if isinstance(ent, dict) else (q["bits"], q["group_size"])
        if w.dtype != "U32" or 32 * w.shape[-1] != bits * s.shape[-1] * gs:
            print("BAD %s: weight %s %s, scales %s, bits %d group %d" % (path, w.dtype, w.shape, s.shape, bits, gs))
            ok = False
            continue
        deq = dequantize(w.array, s, b, bits, gs)
        src_w = ref[path + ".weight"].f32()
        if list(deq.shape) != list(src_w.shape):
            print("BAD %s: shape %s vs source %s" % (path, deq.shape, src_w.shape))
            ok = False
            continue
        err = np.abs(deq - src_w)
        step = np.repeat(np.abs(s.f32()), gs, axis=-1)
        in_steps = err / np.where(step > 0, step, 1)
        codes = unpack(w.array, bits, src_w.shape[-1])
        inner = (codes > 0) & (codes < (1 << bits) - 1)
        k = kinds.setdefault((kind_of(path), bits, gs),
                             {"n": 0, "max": 0.0, "inner": 0.0, "edge": 0.0, "over": 0, "cnt": 0})
        k["n"] += 1
        k["max"] = max(k["max"], float(err.max()))
        k["inner"] = max(k["inner"], float(in_steps[inner].max(initial=0.0)))
        k["edge"] = max(k["edge"], float(in_steps[~inner].max(initial=0.0)))
        k["over"] += int((in_steps > 0.5 + 1e-3).sum())
        k["cnt"] += err.size
        seen.update([path + ".weight", path + ".scales", path + ".biases"])
        if re.search(r"(embed_tokens|layers\.0\.mlp\.switch_mlp\.down_proj|layers\.0\.mlp\.gate)$", path):
            sums.append((path, bits, gs, float(deq.astype(np.float64).sum())))
    # Error in units of the group's |scale|: codes strictly inside (0, 2^bits-1)
    # must be within half a step; the end codes can be clipped (the far edge
    # can need one code more than there are, plus bf16 rounding of the scale).
    print("max |dequantized - bf16 source| per tensor kind; in steps (|scale|) for inner codes and end codes")
    print("%-28s %4s %5s %5s %11s %9s %9s  %s" % ("kind", "bits", "group", "count", "max|err|", "inner", "end",
                                                "elements > 0.5 step"))
    for (kind, bits, gs), k in sorted(kinds.items()):
        print("%-28s %4d %5d %5d %11.6g %9.4f %9.4f  %d of %d" % (kind, bits, gs, k["n"], k["max"], k["inner"],
                                                                k["edge"], k["over"], k["cnt"]))
        if k["inner"] > 0.5 + 1e-3 or k["edge"] > 1.5 + 1e-3:
            ok = False
    for path, bits, gs, total in sums:
        print("sum of the dequantized values %s (bits %d group %d): %.9g" % (path, bits, gs, total))
    # everything else: exact equality with the sanitized source
    dtype = target_dtype(config)
    plain = 0
    for name in sorted(out):
        if name in seen:
            continue
        if name not in ref:
            print("BAD %s: not in the source" % name)
            ok = False
            continue
        r = ref[name]
        if r.dtype in ("F16", "F32", "BF16") and not name.endswith(".A_log"):
            r = cast_float(r, dtype)
        t = out[name]
        if t.dtype != r.dtype or t.shape != r.shape or not np.array_equal(t.array, r.array):
            print("BAD %s: differs from the sanitized source" % name)
            ok = False
        plain += 1
    missing = set(ref) - seen - set(out)
    for name in sorted(missing):
        print("BAD %s: missing from the output" % name)
        ok = False
    print("%d quantized tensors, %d stored as is; %s" % (len(seen) // 3, plain, "OK" if ok else "FAILED"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--bits", type=int, default=4, choices=(2, 3, 4, 5, 6, 8))
    ap.add_argument("--group", type=int, default=64, choices=(32, 64, 128))
    ap.add_argument("--check", action="store_true", help="verify DST against SRC instead of writing it")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check(a.src, a.dst) else 1)
    convert(a.src, a.dst, a.bits, a.group)


if __name__ == "__main__":
    main()
