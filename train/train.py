#!/usr/bin/env python3
"""Train the tiny Qwen3.5-MoE assistant, save it, and measure it on the held-out split.

Usage: python3 train/train.py DATA_DIR TOKENIZER_DIR OUT_DIR [--steps N] [--seed 0]
           [--batch-size B] [--lr LR] [--eval-n N] [--no-eval] [--cpu]

DATA_DIR holds train.jsonl/test.jsonl (make_data.py), TOKENIZER_DIR the output of
train_tokenizer.py. Needs torch and transformers >= 5 (Qwen3_5MoeForCausalLM). Writes to OUT_DIR:

  model.safetensors, config.json, generation_config.json   the model, bf16 (save_pretrained)
  tokenizer.json, tokenizer_config.json                     its tokenizer
  loss.png, loss.tsv                                        the training loss curve
  reference.safetensors   held-out token ids and transformers' float32 logits for the engine's
                          tests (computed from the saved bf16 weights, as in
                          shared/fixtures/make_models.py)
  results.json            test perplexity over assistant tokens, greedy exact-answer rates
  train_log.txt           what was printed

Every conversation is rendered with the tokenizer's chat template; the loss is taken only on
assistant tokens (from after "<|im_start|>assistant\\n" through "<|im_end|>").
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import sys
import time
import zlib

# ----------------------------------------------------------------------------- configuration

CONFIG = {
    "model": dict(  # Qwen3_5MoeTextConfig (model_type qwen3_5_moe_text); vocab_size from the tokenizer
        hidden_size=256,
        num_hidden_layers=6,
        layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention",
                     "linear_attention", "full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=64,
        linear_value_head_dim=64,
        linear_conv_kernel_dim=4,
        num_experts=16,
        num_experts_per_tok=4,
        # 256 (with 16 experts, 6 layers) would be ~45 MB in bf16; 128 keeps it at ~27 MB
        moe_intermediate_size=128,
        shared_expert_intermediate_size=256,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                         "mrope_section": [3, 3, 2], "mrope_interleaved": True},
        router_aux_loss_coef=0.001,
        output_router_logits=True,
        initializer_range=0.02,
    ),
    "train": dict(
        steps=2000,              # ~7 min on one H200 without flash-linear-attention (~260k tok/s)
        batch_size=256,          # sequences per step (~13 epochs of the default data in 2000 steps)
        lr=2e-3,
        min_lr_ratio=0.05,       # cosine decays to lr * this
        warmup_steps=100,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        grad_clip=1.0,
        max_len=1024,            # longer rendered conversations are dropped
        log_every=50,
    ),
    "eval": dict(
        n_per_kind=300,          # held-out definitions / calculator prompts for greedy generation
        n_train_definitions=300,  # training definitions, to measure memorisation
        max_new_tokens=128,
        ppl_batch=64,
        reference_conversations=3,
        reference_gen_len=24,
    ),
}

LOG = None


def log(*args):
    s = " ".join(str(a) for a in args)
    print(s, flush=True)
    if LOG:
        LOG.write(s + "\n")
        LOG.flush()


def fail(msg):
    sys.exit("train.py: " + msg)


# ----------------------------------------------------------------------------- data

ASSISTANT_OPEN = "<|im_start|>assistant\n"
TURN_END = "<|im_end|>"


def read_jsonl(path):
    if not os.path.exists(path):
        fail(f"{path} not found: run train/make_data.py first")
    with open(path, encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    if not recs:
        fail(f"{path} is empty")
    return recs


def assistant_spans(text, last_only=False):
    """Character spans [start, end) of assistant turns: after 'assistant\\n' through <|im_end|>."""
    spans, i = [], 0
    while True:
        j = text.find(ASSISTANT_OPEN, i)
        if j < 0:
            break
        s = j + len(ASSISTANT_OPEN)
        e = text.find(TURN_END, s)
        if e < 0:
            fail("an assistant turn without <|im_end|> in: " + text[:200])
        e += len(TURN_END)
        spans.append((s, e))
        i = e
    if not spans:
        fail("no assistant turn in: " + text[:200])
    return spans[-1:] if last_only else spans


class Renderer:
    def __init__(self, hf_tok):
        self.tok = hf_tok
        self.thinking_flag = "enable_thinking" in (hf_tok.chat_template or "")

    def __call__(self, messages, tools=None, add_generation_prompt=False):
        kw = {"enable_thinking": False} if self.thinking_flag else {}
        text = self.tok.apply_chat_template(messages, tools=tools, tokenize=False,
                                            add_generation_prompt=add_generation_prompt, **kw)
        if not isinstance(text, str):
            fail(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not str")
        return text


def training_texts(recs, render):
    """(text, spans) pairs. Every conversation once, loss on all its assistant turns; and for a
    conversation with a tool call, the conversation cut after the call as well, loss on the call
    only: there the call is the last turn, so the template gives it the empty think block that
    the generation prompt (enable_thinking=False) ends with, which is how it is generated."""
    out = []
    for r in recs:
        msgs, tools = r["messages"], r.get("tools")
        text = render(msgs, tools)
        out.append((text, assistant_spans(text)))
        for k, m in enumerate(msgs[:-1]):
            if m["role"] == "assistant":
                t2 = render(msgs[:k + 1], tools)
                out.append((t2, assistant_spans(t2, last_only=True)))
    return out


def encode(fast_tok, items, max_len):
    """Token ids and labels (-100 outside the spans). fast_tok is a tokenizers.Tokenizer."""
    encs = fast_tok.encode_batch([t for t, _ in items], add_special_tokens=False)
    seqs, dropped = [], 0
    for (text, spans), enc in zip(items, encs):
        ids = enc.ids
        if len(ids) > max_len:
            dropped += 1
            continue
        labels = [-100] * len(ids)
        for n, (s, _e) in enumerate(enc.offsets):
            if any(a <= s < b for a, b in spans):
                labels[n] = ids[n]
        seqs.append((ids, labels))
    return seqs, dropped


def batches(seqs, batch_size, rng):
    """Endless batches of similar lengths: shuffle, sort within windows of 50 batches, shuffle."""
    while True:
        order = list(range(len(seqs)))
        rng.shuffle(order)
        window = batch_size * 50
        bs = []
        for w in range(0, len(order), window):
            chunk = sorted(order[w:w + window], key=lambda i: len(seqs[i][0]))
            bs += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(bs)
        for b in bs:
            yield b


def collate(seqs, idx, pad_id, torch, device):
    T = max(len(seqs[i][0]) for i in idx)
    ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
    lab = torch.full((len(idx), T), -100, dtype=torch.long)
    for r, i in enumerate(idx):
        a, b = seqs[i]
        ids[r, :len(a)] = torch.tensor(a)
        lab[r, :len(b)] = torch.tensor(b)
    return ids.to(device, non_blocking=True), lab.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- plotting

def write_png_plot(path, ys, width=800, height=400):
    """A grayscale line plot of ys (log scale) as a PNG, with zlib only (no matplotlib)."""
    img = [[255] * width for _ in range(height)]
    m = 20
    for x in range(m, width - m):
        img[height - m][x] = 0
    for y in range(m, height - m + 1):
        img[y][m] = 0
    vals = [math.log(max(v, 1e-6)) for v in ys]
    lo, hi = min(vals), max(vals)
    hi = hi if hi > lo else lo + 1
    pts = []
    for i, v in enumerate(vals):
        x = m + int((width - 2 * m - 1) * i / max(1, len(vals) - 1))
        y = (height - m) - int((height - 2 * m) * (v - lo) / (hi - lo))
        pts.append((x, y))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(n + 1):
            img[y0 + (y1 - y0) * k // n][x0 + (x1 - x0) * k // n] = 40
    raw = b"".join(b"\x00" + bytes(row) for row in img)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def plot_loss(path, steps, losses):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        write_png_plot(path, losses)
        return "zlib PNG writer (no matplotlib)"
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot(steps, losses)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return "matplotlib"


# ----------------------------------------------------------------------------- evaluation

def perplexity(model, seqs, pad_id, torch, device, batch):
    nll, n = 0.0, 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    with torch.no_grad():
        for s in range(0, len(order), batch):
            ids, lab = collate(seqs, order[s:s + batch], pad_id, torch, device)
            logits = model(input_ids=ids).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1)
            tgt = lab[:, 1:]
            mask = tgt != -100
            tok_lp = lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            nll -= tok_lp[mask].sum().item()
            n += mask.sum().item()
    return math.exp(nll / n), n


def greedy(model, fast_tok, prompts, eos_ids, pad_id, torch, device, max_new):
    """Greedy continuations of text prompts. Prompts of equal token length go in one batch, so
    there is no padding at all (hybrid linear-attention models and left padding do not mix
    well). Returns decoded texts, cut at the first end-of-turn token."""
    encs = [e.ids for e in fast_tok.encode_batch(prompts, add_special_tokens=False)]
    groups = {}
    for i, ids in enumerate(encs):
        groups.setdefault(len(ids), []).append(i)
    out = [None] * len(prompts)
    with torch.no_grad():
        for _, idx in sorted(groups.items()):
            for s in range(0, len(idx), 64):
                part = idx[s:s + 64]
                x = torch.tensor([encs[i] for i in part], device=device)
                g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new,
                                   do_sample=False, eos_token_id=eos_ids, pad_token_id=pad_id)
                for r, i in enumerate(part):
                    new = g[r, x.shape[1]:].tolist()
                    cut = next((k for k, t in enumerate(new) if t in eos_ids), len(new))
                    out[i] = fast_tok.decode(new[:cut], skip_special_tokens=False)
    return out


def strip_think(text):
    """The answer without a leading (empty) think block."""
    t = text
    if "</think>" in t:
        t = t.split("</think>", 1)[1]
    return t.strip()


def parse_tool_call(text):
    t = strip_think(text)
    if not t.startswith("<tool_call>") or "</tool_call>" not in t:
        return None
    body = t[len("<tool_call>"):t.index("</tool_call>")].strip()
    try:
        call = json.loads(body)
    except ValueError:
        return None
    if not isinstance(call, dict) or "name" not in call or not isinstance(call.get("arguments"), dict):
        return None
    return {"name": call["name"], "arguments": call["arguments"]}


def prompt_messages(rec):
    """The messages up to (not including) the first assistant turn."""
    k = next(i for i, m in enumerate(rec["messages"]) if m["role"] == "assistant")
    return rec["messages"][:k]


def evaluate_generation(model, fast_tok, render, test, train, ev, eos_ids, pad_id, torch, device, rng):
    res, examples = {}, []
    defs = [r for r in test if r["kind"] == "definition"]
    calcs = [r for r in test if r["kind"] == "calculator"]
    rng.shuffle(defs)
    rng.shuffle(calcs)
    unseen = [r for r in test if r["kind"] == "definition_unseen"]
    defs, calcs, unseen = defs[:ev["n_per_kind"]], calcs[:ev["n_per_kind"]], unseen[:ev["n_per_kind"]]
    tdefs = [r for r in train if r["kind"] == "definition"]
    rng.shuffle(tdefs)
    tdefs = tdefs[:ev["n_train_definitions"]]

    for name, recs in (("definition_test", defs), ("definition_train", tdefs), ("definition_unseen", unseen)):
        if not recs:
            continue
        t0 = time.time()
        outs = greedy(model, fast_tok, [render(prompt_messages(r), r.get("tools"), True) for r in recs],
                      eos_ids, pad_id, torch, device, ev["max_new_tokens"])
        exact = fmt = 0
        for r, o in zip(recs, outs):
            a = strip_think(o)
            exact += a == r["answer"]
            fmt += a.startswith(f"**{r['word']}** ({r['pos']}): ")
        res[name] = {"n": len(recs), "exact": exact / len(recs), "format_ok": fmt / len(recs)}
        examples += [{"kind": name, "question": prompt_messages(r)[-1]["content"], "expected": r["answer"],
                      "got": strip_think(o)} for r, o in list(zip(recs, outs))[:5]]
        log(f"  {name}: exact {exact}/{len(recs)}, format ok {fmt}/{len(recs)} ({time.time() - t0:.0f}s)")

    if calcs:
        t0 = time.time()
        outs = greedy(model, fast_tok, [render(prompt_messages(r), r["tools"], True) for r in calcs],
                      eos_ids, pad_id, torch, device, ev["max_new_tokens"])
        calls = [parse_tool_call(o) for o in outs]
        # second turn: the conversation with the (expected) call and the tool's result
        prompts2 = [render(r["messages"][:-1], r["tools"], True) for r in calcs]
        outs2 = greedy(model, fast_tok, prompts2, eos_ids, pad_id, torch, device, ev["max_new_tokens"])
        parsed = sum(c is not None for c in calls)
        call_ok = [c == r["expected_call"] for c, r in zip(calls, calcs)]
        final_ok = [strip_think(o) == r["answer"] for o, r in zip(outs2, calcs)]
        n = len(calcs)
        res["calculator_test"] = {"n": n, "call_parses": parsed / n, "call_exact": sum(call_ok) / n,
                                  "final_exact_given_result": sum(final_ok) / n,
                                  "end_to_end_exact": sum(a and b for a, b in zip(call_ok, final_ok)) / n}
        examples += [{"kind": "calculator_test", "question": prompt_messages(r)[-1]["content"],
                      "expected_call": r["expected_call"], "got_call_text": strip_think(o),
                      "expected": r["answer"], "got": strip_think(o2)}
                     for r, o, o2 in list(zip(calcs, outs, outs2))[:5]]
        log(f"  calculator_test: call parses {parsed}/{n}, call exact {sum(call_ok)}/{n}, "
            f"final exact {sum(final_ok)}/{n} ({time.time() - t0:.0f}s)")
    return res, examples


def write_reference(model, fast_tok, render, test, eos_ids, ev, torch, device, path, rng):
    """Held-out token ids and float32 logits: a prompt with its greedy continuation (the key names
    of shared/fixtures' reference.safetensors) and a few whole held-out conversations."""
    from safetensors.torch import save_file
    defs = [r for r in test if r["kind"] == "definition" and "tools" not in r]
    calcs = [r for r in test if r["kind"] == "calculator"]
    if not defs or not calcs:
        fail("the test split needs definitions and calculator conversations for the reference")
    first = defs[0]
    prompt = render(prompt_messages(first), None, True)
    ids = torch.tensor([fast_tok.encode(prompt, add_special_tokens=False).ids], device=device)
    T, gen_len = ids.shape[1], ev["reference_gen_len"]
    t = {}
    with torch.no_grad():
        o = model(input_ids=ids, output_hidden_states=True)
        t["input_ids"] = ids[0].to(torch.int32).cpu().contiguous()
        t["logits"] = o.logits[0].float().cpu().contiguous()
        t["hidden_states"] = torch.stack([h[0] for h in o.hidden_states]).float().cpu().contiguous()
        g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_len,
                           min_new_tokens=gen_len, do_sample=False, eos_token_id=None, pad_token_id=0)
        full = g[:, :T + gen_len]
        t["greedy_tokens"] = g[0, T:].to(torch.int32).cpu().contiguous()
        t["full_ids"] = full[0].to(torch.int32).cpu().contiguous()
        t["full_logits"] = model(input_ids=full).logits[0].float().cpu().contiguous()
        convs = [defs[1 % len(defs)], calcs[0]] + [r for r in test if r not in (first, defs[1 % len(defs)], calcs[0])][
            :max(0, ev["reference_conversations"] - 2)]
        for k, r in enumerate(convs[:ev["reference_conversations"]]):
            cid = torch.tensor([fast_tok.encode(render(r["messages"], r.get("tools")),
                                                add_special_tokens=False).ids], device=device)
            t[f"conv{k}_ids"] = cid[0].to(torch.int32).cpu().contiguous()
            t[f"conv{k}_logits"] = model(input_ids=cid).logits[0].float().cpu().contiguous()
    save_file(t, path)
    return {k: list(v.shape) for k, v in t.items()}, fast_tok.decode(t["greedy_tokens"].tolist(),
                                                                       skip_special_tokens=False)


# ----------------------------------------------------------------------------- main

def main():
    global LOG
    tr, ev = CONFIG["train"], CONFIG["eval"]
    ap = argparse.ArgumentParser(description="Train the tiny Qwen3.5-MoE assistant.")
    ap.add_argument("data_dir")
    ap.add_argument("tokenizer_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, default=tr["steps"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=tr["batch_size"])
    ap.add_argument("--lr", type=float, default=tr["lr"])
    ap.add_argument("--eval-n", type=int, default=ev["n_per_kind"],
                    help="held-out prompts per kind for greedy generation")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training conversations")
    ap.add_argument("--no-eval", action="store_true", help="skip greedy generation (perplexity, "
                    "reference still computed)")
    ap.add_argument("--cpu", action="store_true", help="allow running without a GPU (slow; for debugging)")
    a = ap.parse_args()
    tr.update(steps=a.steps, batch_size=a.batch_size, lr=a.lr)
    ev.update(n_per_kind=a.eval_n, n_train_definitions=a.eval_n)

    try:
        import torch
        import transformers
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer, GenerationConfig
        from transformers.models.qwen3_5_moe import Qwen3_5MoeTextConfig, Qwen3_5MoeForCausalLM
    except ImportError as e:
        fail(f"{e}: needs torch, tokenizers, safetensors and transformers >= 5 (with Qwen3.5-MoE)")
    if int(transformers.__version__.split(".")[0]) < 5:
        fail(f"transformers {transformers.__version__} found, >= 5 needed")
    if torch.cuda.is_available():
        device = torch.device("cuda")
    elif a.cpu:
        device = torch.device("cpu")
    else:
        fail("no CUDA device (pass --cpu to run on the CPU anyway)")

    os.makedirs(a.out_dir, exist_ok=True)
    LOG = open(os.path.join(a.out_dir, "train_log.txt"), "w")
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    random.seed(a.seed)
    torch.manual_seed(a.seed)

    # tokenizer
    sp = os.path.join(a.tokenizer_dir, "special_ids.json")
    tj = os.path.join(a.tokenizer_dir, "tokenizer.json")
    for p in (sp, tj, os.path.join(a.tokenizer_dir, "tokenizer_config.json")):
        if not os.path.exists(p):
            fail(f"{p} not found: run train/train_tokenizer.py first")
    with open(sp) as f:
        special = json.load(f)
    hf_tok = AutoTokenizer.from_pretrained(a.tokenizer_dir)
    fast_tok = Tokenizer.from_file(tj)
    vocab, pad_id, eos_ids = special["vocab_size"], special["pad_token_id"], special["eos_token_id"]
    if fast_tok.get_vocab_size() != vocab or len(hf_tok) != vocab:
        fail(f"tokenizer sizes disagree: special_ids.json {vocab}, tokenizer.json "
             f"{fast_tok.get_vocab_size()}, transformers {len(hf_tok)}")
    render_ = Renderer(hf_tok)

    def render(msgs, tools=None, gen=False):
        return render_(msgs, tools, gen)

    # data
    t0 = time.time()
    train = read_jsonl(os.path.join(a.data_dir, "train.jsonl"))
    test = read_jsonl(os.path.join(a.data_dir, "test.jsonl"))
    if a.limit:
        train = train[:a.limit]
    items = training_texts(train, render)
    seqs, dropped = encode(fast_tok, items, tr["max_len"])
    sample_text = items[0][0]
    if hf_tok(sample_text, add_special_tokens=False)["input_ids"] != fast_tok.encode(
            sample_text, add_special_tokens=False).ids:
        fail("transformers' tokenizer and tokenizers' tokenizer.json give different ids")
    test_seqs, _ = encode(fast_tok, [(render(r["messages"], r.get("tools")),
                                      assistant_spans(render(r["messages"], r.get("tools"))))
                                     for r in test], 10 ** 9)
    n_tok = sum(len(s[0]) for s in seqs)
    n_sup = sum(sum(l != -100 for l in s[1]) for s in seqs)
    log(f"data: {len(train)} train conversations -> {len(seqs)} sequences ({dropped} over "
        f"{tr['max_len']} tokens dropped), {n_tok} tokens, {n_sup} supervised; {len(test)} test; "
        f"longest {max(len(s[0]) for s in seqs)}; rendered+encoded in {time.time() - t0:.0f}s")
    log("example (supervised part in [[ ]]):")
    ids, lab = seqs[0]
    shown, inside = [], False
    for i, l in zip(ids, lab):
        if (l != -100) != inside:
            shown.append("[[" if not inside else "]]")
            inside = not inside
        shown.append(fast_tok.decode([i], skip_special_tokens=False))
    log("".join(shown) + ("]]" if inside else ""))

    # model
    mc = dict(CONFIG["model"], vocab_size=vocab, bos_token_id=special["bos_token_id"],
              eos_token_id=eos_ids[0], pad_token_id=pad_id)
    cfg = Qwen3_5MoeTextConfig(**mc)
    model = Qwen3_5MoeForCausalLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters ({n_params * 2 / 2**20:.1f} MiB in bf16), "
        f"layer types {cfg.layer_types}")
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=tr["lr"], betas=tr["betas"], fused=device.type == "cuda")

    def lr_at(step):
        if step < tr["warmup_steps"]:
            return tr["lr"] * (step + 1) / tr["warmup_steps"]
        p = (step - tr["warmup_steps"]) / max(1, tr["steps"] - tr["warmup_steps"])
        return tr["lr"] * (tr["min_lr_ratio"] + (1 - tr["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * p)))

    # training
    rng = random.Random(a.seed)
    it = batches(seqs, tr["batch_size"], rng)
    hist_steps, hist_loss = [], []
    run_loss, run_aux, run_n, run_tok = 0.0, 0.0, 0, 0
    t0 = tlast = time.time()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    for step in range(tr["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        ids, lab = collate(seqs, next(it), pad_id, torch, device)
        with autocast:
            out = model(input_ids=ids, labels=lab)  # right padding, causal: no mask needed
        aux = out.aux_loss.float() if getattr(out, "aux_loss", None) is not None else None
        loss = out.loss
        if not torch.isfinite(loss):
            fail(f"loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"])
        opt.step()
        lm = loss.detach().float() - (cfg.router_aux_loss_coef * aux.detach() if aux is not None else 0)
        run_loss += lm.item()
        run_aux += aux.item() if aux is not None else 0.0
        run_n += 1
        run_tok += ids.numel()
        if (step + 1) % tr["log_every"] == 0 or step + 1 == tr["steps"]:
            now = time.time()
            hist_steps.append(step + 1)
            hist_loss.append(run_loss / run_n)
            log(f"step {step + 1}/{tr['steps']} loss {run_loss / run_n:.4f} aux {run_aux / run_n:.3f} "
                f"lr {lr_at(step):.2e} {run_tok / (now - tlast):.0f} tok/s elapsed {now - t0:.0f}s")
            run_loss, run_aux, run_n, run_tok, tlast = 0.0, 0.0, 0, 0, now
    log(f"trained {tr['steps']} steps in {time.time() - t0:.0f}s")
    with open(os.path.join(a.out_dir, "loss.tsv"), "w") as f:
        f.write("step\tloss\n" + "".join(f"{s}\t{l:.5f}\n" for s, l in zip(hist_steps, hist_loss)))
    how = plot_loss(os.path.join(a.out_dir, "loss.png"), hist_steps, hist_loss)
    log(f"loss curve: loss.png ({how})")

    # save: bf16 safetensors, generation config, tokenizer
    model.config.output_router_logits = False
    model.generation_config = GenerationConfig(bos_token_id=special["bos_token_id"], eos_token_id=eos_ids,
                                               pad_token_id=pad_id, do_sample=False)
    model.to(torch.bfloat16).save_pretrained(a.out_dir)
    # the tokenizer files as train_tokenizer.py wrote them: transformers 5's save_pretrained
    # would move the chat template out of tokenizer_config.json into chat_template.jinja
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(a.tokenizer_dir, fn), os.path.join(a.out_dir, fn))
    del model, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    size = os.path.getsize(os.path.join(a.out_dir, "model.safetensors"))
    log(f"saved {a.out_dir}: model.safetensors {size / 2**20:.1f} MiB")

    # evaluation, in float32, from the saved bf16 weights
    model = Qwen3_5MoeForCausalLM.from_pretrained(a.out_dir, dtype=torch.float32).to(device).eval()
    t0 = time.time()
    ppl, n_eval = perplexity(model, test_seqs, pad_id, torch, device, ev["ppl_batch"])
    log(f"test perplexity over {n_eval} assistant tokens: {ppl:.4f} ({time.time() - t0:.0f}s)")
    shapes, ref_text = write_reference(model, fast_tok, render, test, eos_ids, ev, torch, device,
                                       os.path.join(a.out_dir, "reference.safetensors"),
                                       random.Random(a.seed))
    log(f"reference.safetensors: {shapes}; greedy continuation {ref_text!r}")
    results = {"test_perplexity_assistant_tokens": ppl, "test_assistant_tokens": n_eval,
               "steps": tr["steps"], "batch_size": tr["batch_size"], "lr": tr["lr"], "seed": a.seed,
               "parameters": n_params, "train_sequences": len(seqs), "train_tokens_per_epoch": n_tok,
               "torch": torch.__version__, "transformers": transformers.__version__}
    if not a.no_eval:
        log("greedy generation (enable_thinking=False):")
        gen, examples = evaluate_generation(model, fast_tok, render, test, train, ev, eos_ids, pad_id,
                                            torch, device, random.Random(a.seed + 1))
        results.update(gen)
        results["examples"] = examples
        for e in examples:
            log("  " + json.dumps(e, ensure_ascii=False))
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    log(f"wrote {os.path.join(a.out_dir, 'results.json')}")


if __name__ == "__main__":
    main()
