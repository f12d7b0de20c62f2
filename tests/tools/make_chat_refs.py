"""Renders tests/data/chat/conversations.json with transformers'
apply_chat_template (the model's own jinja chat_template) and writes the
reference strings. Runs where transformers is installed (the GPU machine):
    python3 make_chat_refs.py TOKENIZER_DIR conversations.json OUT.json"""
import json, sys
import transformers
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(sys.argv[1])
convs = json.load(open(sys.argv[2]))
out = []
for c in convs:
    kw = {"add_generation_prompt": c.get("add_generation_prompt", False)}
    if "enable_thinking" in c:
        kw["enable_thinking"] = c["enable_thinking"]
    text = tok.apply_chat_template(c["messages"], tools=c.get("tools"), tokenize=False, **kw)
    ids = tok.apply_chat_template(c["messages"], tools=c.get("tools"), tokenize=True, **kw)
    if isinstance(ids, dict):
        ids = ids["input_ids"]
    out.append({"name": c["name"], "text": text, "ids": list(ids)})
json.dump({"transformers": transformers.__version__, "renderings": out}, open(sys.argv[3], "w"),
          ensure_ascii=False, indent=1)
print(len(out), "renderings")
