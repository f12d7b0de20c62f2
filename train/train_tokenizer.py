#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of the tiny flashmoe assistant.

Usage: python3 train/train_tokenizer.py DATA_DIR OUT_DIR [--vocab 4096]

Reads DATA_DIR/train.jsonl (from make_data.py), renders every conversation with Qwen3's chat
template (jinja2) and trains a byte-level BPE on the text with the `tokenizers` library. The
normalizer (NFC), pre-tokenizer (Qwen2/Qwen3 Split regex + ByteLevel), post-processor and
decoder are the ones Qwen3's tokenizer.json uses, so any tokenizer that handles Qwen3 handles
this one. The 9 added tokens follow the BPE vocabulary, in Qwen's order, so --vocab is the
total size.

Writes to OUT_DIR:
  tokenizer.json         the tokenizer
  tokenizer_config.json  Qwen3's: chat_template, eos_token <|im_end|>, pad_token <|endoftext|>
  special_ids.json       bos/eos/pad ids and the vocabulary size, read by train.py for
                         config.json and generation_config.json
"""
import argparse
import json
import os
import sys

# Qwen3's tokenizer.json sections (tests/data/tokenizers/qwen3/tokenizer.json.zst), verbatim.
QWEN_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
NORMALIZER = {"type": "NFC"}
PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": QWEN_SPLIT_REGEX}, "behavior": "Isolated", "invert": False},
    dict(BYTE_LEVEL)]}
POST_PROCESSOR = dict(BYTE_LEVEL)
DECODER = dict(BYTE_LEVEL)

# (content, special) in Qwen's order; Qwen marks the tool and think tags as non-special
# added tokens (they stay in decoded text with skip_special_tokens).
ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
         ("<tool_call>", False), ("</tool_call>", False),
         ("<tool_response>", False), ("</tool_response>", False),
         ("<think>", False), ("</think>", False)]

# Qwen3's chat template (tests/data/tokenizers/qwen3/tokenizer_config.json), verbatim.
CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0].role == 'system' %}\n"
    "        {{- messages[0].content + '\\n\\n' }}\n    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
    "{%- for message in messages[::-1] %}\n"
    "    {%- set index = (messages|length - 1) - loop.index0 %}\n"
    "    {%- if ns.multi_step_tool and message.role == \"user\" and not(message.content.startswith('<tool_response>')"
    " and message.content.endswith('</tool_response>')) %}\n"
    "        {%- set ns.multi_step_tool = false %}\n        {%- set ns.last_query_index = index %}\n"
    "    {%- endif %}\n{%- endfor %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {%- set content = message.content %}\n"
    "        {%- set reasoning_content = '' %}\n"
    "        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
    "            {%- set reasoning_content = message.reasoning_content %}\n        {%- else %}\n"
    "            {%- if '</think>' in message.content %}\n"
    "                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
    "                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n')"
    ".split('<think>')[-1].lstrip('\\n') %}\n"
    "            {%- endif %}\n        {%- endif %}\n"
    "        {%- if loop.index0 > ns.last_query_index %}\n"
    "            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
    "                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n')"
    " + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
    "            {%- else %}\n                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "            {%- endif %}\n        {%- else %}\n"
    "            {{- '<|im_start|>' + message.role + '\\n' + content }}\n        {%- endif %}\n"
    "        {%- if message.tool_calls %}\n            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n            {%- endfor %}\n        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}\n{%- endif %}")


def fail(msg):
    sys.exit("train_tokenizer.py: " + msg)


def check_template_against_repo():
    """When run inside the flashmoe checkout, make sure CHAT_TEMPLATE is Qwen3's, byte for byte."""
    here = os.path.dirname(os.path.abspath(__file__))
    p = os.path.join(here, "..", "tests", "data", "tokenizers", "qwen3", "tokenizer_config.json")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as f:
            if json.load(f)["chat_template"] != CHAT_TEMPLATE:
                fail(f"CHAT_TEMPLATE differs from {p}")


def renderer():
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        fail("jinja2 is needed to render the chat template (it comes with transformers)")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(CHAT_TEMPLATE)


def corpus(data_dir):
    path = os.path.join(data_dir, "train.jsonl")
    if not os.path.exists(path):
        fail(f"{path} not found: run train/make_data.py first")
    tpl = renderer()
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            text = tpl.render(messages=rec["messages"], tools=rec.get("tools"),
                              add_generation_prompt=False)
            # the added tokens are matched before BPE: keep them out of the merges
            for tok, _ in ADDED:
                text = text.replace(tok, "\n")
            n += 1
            yield text
    if n == 0:
        fail(f"{path} is empty")


def main():
    ap = argparse.ArgumentParser(description="Train the byte-level BPE tokenizer (Qwen3 layout).")
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--vocab", type=int, default=4096, help="total size, added tokens included")
    ap.add_argument("--min-frequency", type=int, default=2)
    a = ap.parse_args()
    check_template_against_repo()
    try:
        from tokenizers import Tokenizer, models, trainers, pre_tokenizers, AddedToken
    except ImportError:
        fail("the `tokenizers` library is needed (pip package tokenizers)")
    if a.vocab < 256 + len(ADDED) + 1:
        fail("--vocab is too small")

    tok = Tokenizer(models.BPE())
    # configure from JSON so the sections are exactly Qwen's, whatever the library's defaults
    spec = json.loads(tok.to_str())
    spec.update(normalizer=NORMALIZER, pre_tokenizer=PRE_TOKENIZER,
                post_processor=POST_PROCESSOR, decoder=DECODER)
    tok = Tokenizer.from_str(json.dumps(spec))
    trainer = trainers.BpeTrainer(vocab_size=a.vocab - len(ADDED), min_frequency=a.min_frequency,
                                  show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(a.data_dir), trainer=trainer)
    n_bpe = tok.get_vocab_size()
    for content, special in ADDED:
        t = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False,
                       special=special)
        (tok.add_special_tokens if special else tok.add_tokens)([t])

    spec = json.loads(tok.to_str())
    spec.update(normalizer=NORMALIZER, pre_tokenizer=PRE_TOKENIZER,
                post_processor=POST_PROCESSOR, decoder=DECODER)
    spec["model"].update(dropout=None, unk_token=None, continuing_subword_prefix="",
                         end_of_word_suffix="", fuse_unk=False, byte_fallback=False, ignore_merges=False)
    ids = {}
    for i, (content, special) in enumerate(ADDED):
        entry = next(e for e in spec["added_tokens"] if e["content"] == content)
        if entry["id"] != n_bpe + i:
            fail(f"{content} got id {entry['id']}, expected {n_bpe + i}")
        entry["special"] = special
        ids[content] = entry["id"]
    total = n_bpe + len(ADDED)

    os.makedirs(a.out_dir, exist_ok=True)
    tj = os.path.join(a.out_dir, "tokenizer.json")
    with open(tj, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=2)
    check = Tokenizer.from_file(tj)
    sample = "<|im_start|>user\nWhat does 'lucid' mean? 37 × 12<|im_end|>\n<tool_call>"
    enc = check.encode(sample, add_special_tokens=False)
    if check.decode(enc.ids, skip_special_tokens=False) != sample:
        fail("round trip of a sample text failed")
    if enc.ids[0] != ids["<|im_start|>"] or enc.ids[-1] != ids["<tool_call>"]:
        fail("added tokens are not matched as single tokens")

    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(ids[c]): {"content": c, "lstrip": False, "normalized": False,
                                               "rstrip": False, "single_word": False, "special": s}
                                 for c, s in ADDED},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 2048,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    with open(os.path.join(a.out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    # as Qwen3: config bos = eos-of-document <|endoftext|>, generation stops at <|im_end|> or
    # <|endoftext|>, padding with <|endoftext|>
    special = {"vocab_size": total, "bpe_vocab_size": n_bpe,
               "bos_token_id": ids["<|endoftext|>"],
               "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
               "pad_token_id": ids["<|endoftext|>"],
               "added_tokens": ids}
    with open(os.path.join(a.out_dir, "special_ids.json"), "w") as f:
        json.dump(special, f, indent=2)
    print(f"tokenizer: {n_bpe} BPE tokens + {len(ADDED)} added = {total}; wrote {a.out_dir}/"
          f"{{tokenizer.json,tokenizer_config.json,special_ids.json}}")
    print(f"sample {sample!r} -> {len(enc.ids)} tokens")


if __name__ == "__main__":
    main()
