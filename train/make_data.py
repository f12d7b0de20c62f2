#!/usr/bin/env python3
"""Make the training and test conversations of the tiny flashmoe assistant.

Two kinds of ChatML conversations (Hugging Face `messages` lists, rendered later with the
tokenizer's Qwen3 chat template):

  definition  "What does 'lucid' mean?" -> "**lucid** (adjective): transparently clear; easily
              understandable."  The gloss of the word's first (most frequent) WordNet 3.0
              sense, read from the WordNet database files (index.POS for the sense order,
              data.POS for the gloss; format in wndb(5WN)).
  calculator  the user asks for an arithmetic result; the assistant calls the `calculator`
              tool with {"expression": "37 * 12"}, gets {"role": "tool", "content": "444"} back
              and answers "37 × 12 = 444."

Definitions: the --words most used words (WordNet's sense-tag counts), each (word, part of
speech) asked --phrasings ways in train.jsonl and once more, in a way train never uses, in
test.jsonl (kind "definition": a known word and a new question, so exact answers are
measurable), plus --unseen-words words never trained on (kind "definition_unseen": only the
answer's form can be right). Calculator: split by expression (each expression string occurs
once). The output is deterministic for a given --seed and WordNet installation.

Usage: python3 train/make_data.py [--out build/data] [--seed 1] [--words 3000] [--phrasings 3]
                                  [--definition-tests 1000] [--unseen-words 200]
                                  [--calculator 12000] [--test-fraction 0.05]
                                  [--wordnet /usr/share/wordnet]
Standard library only.
"""
import argparse
import json
import os
import random
import re
import sys
from fractions import Fraction

POS_FILES = [("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r")]
POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
WORD_RE = re.compile(r"^[a-z]{3,14}$")

CALCULATOR_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The arithmetic expression to evaluate, using + - * / "
                                   "and parentheses, e.g. \"(3 + 4) * 12\"",
                }
            },
            "required": ["expression"],
        },
    },
}

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a concise assistant that defines words and does arithmetic.",
    "You are flashmoe's tiny assistant. Answer briefly.",
]


# ----------------------------------------------------------------------------- WordNet

def fail(msg):
    sys.exit("make_data.py: " + msg)


def read_index(path, counts=None):
    """lemma -> list of synset offsets, most frequent sense first (index.POS);
    counts[lemma] += tagsense_cnt (how often the lemma was sense-tagged in the
    semantic concordance: a frequency of use)."""
    senses = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # licence header lines start with two spaces
                continue
            parts = line.split()
            if len(parts) < 6:
                continue
            lemma = parts[0]
            try:
                synset_cnt = int(parts[2])
                p_cnt = int(parts[3])
            except ValueError:
                continue
            # lemma pos synset_cnt p_cnt [ptr_symbol]*p_cnt sense_cnt tagsense_cnt offsets...
            offsets = parts[4 + p_cnt + 2:]
            if counts is not None:
                counts[lemma] = counts.get(lemma, 0) + int(parts[4 + p_cnt + 1])
            if len(offsets) != synset_cnt:
                fail(f"{path}: malformed index line for {lemma!r}")
            senses[lemma] = offsets
    return senses


def read_data(path):
    """synset offset -> (list of words as written, gloss)  (data.POS)."""
    synsets = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):
                continue
            head, sep, gloss = line.partition(" | ")
            if not sep:
                continue
            parts = head.split()
            # offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt p_cnt ...
            offset, w_cnt = parts[0], int(parts[3], 16)
            words = [parts[4 + 2 * i] for i in range(w_cnt)]
            synsets[offset] = (words, gloss.strip())
    return synsets


def clean_word(w):
    """data.POS writes adjective markers like 'galore(ip)' and underscores for spaces."""
    return re.sub(r"\((a|p|ip)\)$", "", w)


def definition_of(gloss):
    """The definition part of a gloss: before the first '; "' (where the examples start)."""
    d = gloss.split('; "')[0].strip()
    if d.startswith('"'):
        return None
    d = d.rstrip(" ;:,")
    d = d.replace("`", "'")
    d = re.sub(r"\s+", " ", d)
    if len(d) < 3 or len(d) > 200:
        return None
    return d + ("" if d.endswith((".", "!", "?")) else ".")


def load_wordnet(wndir, counts=None):
    """[(word, pos_letter, definition)] for single-word lowercase lemmas, first sense."""
    entries = []
    for fname, pos in POS_FILES:
        ipath, dpath = os.path.join(wndir, "index." + fname), os.path.join(wndir, "data." + fname)
        for p in (ipath, dpath):
            if not os.path.exists(p):
                fail(f"{p} not found: install WordNet with `apt-get install -y wordnet-base` "
                     f"(or pass --wordnet DIR)")
        index, data = read_index(ipath, counts), read_data(dpath)
        for lemma, offsets in index.items():
            if not WORD_RE.match(lemma):
                continue
            first = data.get(offsets[0])
            if first is None:
                fail(f"{dpath}: synset {offsets[0]} of {lemma!r} is missing")
            words, gloss = first
            # the lemma as written in its first synset: skip proper nouns ('Paris') and
            # abbreviations, which index.POS lowercases
            written = [clean_word(w) for w in words if clean_word(w).lower() == lemma]
            if not written or written[0] != lemma:
                continue
            d = definition_of(gloss)
            if d is None:
                continue
            entries.append((lemma, pos, d))
    return entries


DEF_QUESTIONS = [
    "What does '{w}' mean?",
    "What does \"{w}\" mean?",
    "Define {w}.",
    "Define '{w}'.",
    "What is the meaning of the word {w}?",
    "What is the meaning of '{w}'?",
    "What's the definition of {w}?",
    "Can you define the word \"{w}\"?",
    "Give me the definition of {w}.",
    "Meaning of {w}?",
    "define {w}",
    "I came across the word '{w}'. What does it mean?",
    "Explain the word {w}.",
    "What is meant by '{w}'?",
]
DEF_QUESTIONS_POS = [
    "What does the {p} '{w}' mean?",
    "What does '{w}' mean as a {p}?",
    "Define the {p} {w}.",
    "Define '{w}' ({p}).",
    "What is the meaning of the {p} {w}?",
    "What's the definition of {w} as a {p}?",
    "Can you define the {p} \"{w}\"?",
    "Give me the definition of the {p} {w}.",
    "Meaning of {w} ({p})?",
    "define {w} ({p})",
    "Explain the {p} {w}.",
]


def definition_questions(rng, word, pos, ambiguous, k):
    """k distinct phrasings of the question about (word, pos)."""
    p = POS_NAME[pos]
    pool = [t.format(w=word, p=p) for t in DEF_QUESTIONS_POS]
    if not ambiguous:  # one part of speech: the question need not say which
        pool += [t.format(w=word) for t in DEF_QUESTIONS]
    return rng.sample(pool, k)


def definition_conversation(rng, word, pos, definition, ambiguous, question=None):
    p = POS_NAME[pos]
    if question is not None:
        q = question
    elif ambiguous or rng.random() < 0.25:  # several parts of speech: the question says which
        q = rng.choice(DEF_QUESTIONS_POS).format(w=word, p=p)
    else:
        q = rng.choice(DEF_QUESTIONS).format(w=word)
    answer = f"**{word}** ({p}): {definition}"
    messages = []
    r = rng.random()
    tools = None
    if r < 0.25:  # with the tool offered: the assistant must not call it for a definition
        tools = [CALCULATOR_TOOL]
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    messages += [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
    rec = {"messages": messages}
    if tools:
        rec["tools"] = tools
    rec.update({"kind": "definition", "answer": answer, "word": word, "pos": p})
    return rec


def make_definitions(rng, entries, counts, n_words, phrasings, n_test, n_unseen):
    """The n_words most used words (WordNet's sense-tag counts), each (word, part
    of speech) asked `phrasings` ways in train and once more, another way, in
    test ("definition": a known word, a new question — exact answers can be
    checked); plus n_unseen words never trained on ("definition_unseen": only the
    answer's form can be right)."""
    by_word = {}
    for w, pos, d in entries:
        by_word.setdefault(w, []).append((pos, d))
    words = sorted(by_word, key=lambda w: (-counts.get(w, 0), w))
    known, unseen = words[:n_words], words[n_words:]
    train, test = [], []
    for w in known:
        senses = by_word[w]
        for pos, d in senses:
            qs = definition_questions(rng, w, pos, len(senses) > 1, phrasings + 1)
            for q in qs[:phrasings]:
                train.append(definition_conversation(rng, w, pos, d, len(senses) > 1, q))
            test.append(definition_conversation(rng, w, pos, d, len(senses) > 1, qs[phrasings]))
    rng.shuffle(test)
    test = test[:n_test]
    rng.shuffle(unseen)
    for w in unseen[:n_unseen]:
        pos, d = by_word[w][0]
        rec = definition_conversation(rng, w, pos, d, len(by_word[w]) > 1)
        rec["kind"] = "definition_unseen"
        test.append(rec)
    return train, test, len(by_word), len(entries)


# ----------------------------------------------------------------------------- arithmetic

PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def random_tree(rng, n_ops):
    if n_ops == 0:
        r = rng.random()
        hi = 9 if r < 0.35 else (99 if r < 0.9 else 999)
        return rng.randint(0 if rng.random() < 0.05 else 1, hi)
    left = rng.randint(0, n_ops - 1)
    op = rng.choices("+-*/", weights=[3, 3, 3, 2])[0]
    return (op, random_tree(rng, left), random_tree(rng, n_ops - 1 - left))


def evaluate(t):
    if isinstance(t, int):
        return Fraction(t)
    op, a, b = t
    a, b = evaluate(a), evaluate(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError
    return a / b


def render(t, mul=" * ", div=" / ", sp=" "):
    """Infix with only the parentheses precedence and left associativity need."""
    if isinstance(t, int):
        return str(t)
    op, a, b = t
    sa, sb = render(a, mul, div, sp), render(b, mul, div, sp)
    if not isinstance(a, int) and PREC[a[0]] < PREC[op]:
        sa = "(" + sa + ")"
    if not isinstance(b, int) and (PREC[b[0]] < PREC[op] or (PREC[b[0]] == PREC[op] and op in "-/")):
        sb = "(" + sb + ")"
    sym = {"+": sp + "+" + sp, "-": sp + "-" + sp, "*": mul, "/": div}[op]
    return sa + sym + sb


def exact_decimal(x, max_places=4):
    """The exact decimal text of a Fraction, or None if it needs more than max_places."""
    sign = "-" if x < 0 else ""
    x = abs(x)
    for places in range(max_places + 1):
        scaled = x * 10 ** places
        if scaled.denominator == 1:
            v = scaled.numerator
            if places == 0:
                return sign + str(v)
            s = str(v).rjust(places + 1, "0")
            return sign + s[:-places] + "." + s[-places:]
    return None


CALC_QUESTIONS = [
    "What is {e}?",
    "What's {e}?",
    "Calculate {e}.",
    "Compute {e}",
    "Please evaluate {e}.",
    "Can you work out {e}?",
    "How much is {e}?",
    "{e} = ?",
    "{e}",
    "Use the calculator to find {e}.",
    "What do you get for {e}?",
    "Solve {e}.",
    "I need the value of {e}.",
]
WORD_OPS = {
    "+": ["What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?"],
    "-": ["What is {a} minus {b}?", "Subtract {b} from {a}.", "What is {a} take away {b}?"],
    "*": ["What is {a} times {b}?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?",
          "What is {a} multiplied by {b}?"],
    "/": ["What is {a} divided by {b}?", "Divide {a} by {b}.", "What is {a} over {b}?"],
}


def calculator_question(rng, t):
    if not isinstance(t, int) and isinstance(t[1], int) and isinstance(t[2], int) and rng.random() < 0.3:
        return rng.choice(WORD_OPS[t[0]]).format(a=t[1], b=t[2])
    r = rng.random()
    if r < 0.6:
        shown = render(t)
    elif r < 0.75:
        shown = render(t, mul=" × ", div=" ÷ ")
    elif r < 0.85:
        shown = render(t, mul="*", div="/", sp="")
    else:
        shown = render(t, mul=" x ", div=" / ")
    return rng.choice(CALC_QUESTIONS).format(e=shown)


def calculator_conversation(rng, t, expr, result):
    q = calculator_question(rng, t)
    answer = f"{render(t, mul=' × ', div=' ÷ ')} = {result}."
    call = {"name": "calculator", "arguments": {"expression": expr}}
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    messages += [
        {"role": "user", "content": q},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": call["name"],
                                                          "arguments": dict(call["arguments"])}}]},
        {"role": "tool", "content": result},
        {"role": "assistant", "content": answer},
    ]
    return {"messages": messages, "tools": [CALCULATOR_TOOL], "kind": "calculator",
            "answer": answer, "expected_call": call, "result": result}


def make_calculator(rng, n, test_fraction):
    seen, items = set(), []
    attempts = 0
    while len(items) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            fail(f"could not make {n} distinct expressions")
        n_ops = rng.choices([1, 2, 3], weights=[5, 4, 2])[0]
        t = random_tree(rng, n_ops)
        expr = render(t)
        if expr in seen:
            continue
        try:
            value = evaluate(t)
        except ZeroDivisionError:
            continue
        result = exact_decimal(value)
        if result is None or len(result) > 12:
            continue
        seen.add(expr)
        items.append((t, expr, result))
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    test = [calculator_conversation(rng, *it) for it in items[:n_test]]
    train = [calculator_conversation(rng, *it) for it in items[n_test:]]
    return train, test


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="build/data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--words", type=int, default=3000, help="most used words whose definitions are taught")
    ap.add_argument("--phrasings", type=int, default=3, help="questions per word in train (one more in test)")
    ap.add_argument("--definition-tests", type=int, default=1000, help="held-out questions about known words")
    ap.add_argument("--unseen-words", type=int, default=200, help="test words never trained on")
    ap.add_argument("--calculator", type=int, default=12000)
    ap.add_argument("--test-fraction", type=float, default=0.05)
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    a = ap.parse_args()
    if not 0 <= a.test_fraction < 1:
        fail("--test-fraction must be in [0, 1)")

    counts = {}
    entries = load_wordnet(a.wordnet, counts)
    d_train, d_test, n_words, n_pairs = make_definitions(random.Random(f"{a.seed}/def"), entries, counts, a.words,
                                                         a.phrasings, a.definition_tests, a.unseen_words)
    c_train, c_test = make_calculator(random.Random(f"{a.seed}/calc"), a.calculator, a.test_fraction)
    # leakage checks
    # a known word is asked in test in a way train never asks it; unseen words are unseen
    seen_questions = {(r["word"], r["messages"][-2]["content"]) for r in d_train}
    assert not any((r["word"], r["messages"][-2]["content"]) in seen_questions for r in d_test)
    assert not {r["word"] for r in d_train} & {r["word"] for r in d_test if r["kind"] == "definition_unseen"}
    assert not ({r["expected_call"]["arguments"]["expression"] for r in c_train}
                & {r["expected_call"]["arguments"]["expression"] for r in c_test})

    train, test = d_train + c_train, d_test + c_test
    mix = random.Random(f"{a.seed}/mix")
    mix.shuffle(train)
    mix.shuffle(test)
    os.makedirs(a.out, exist_ok=True)
    for name, recs in (("train.jsonl", train), ("test.jsonl", test)):
        tmp = os.path.join(a.out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, os.path.join(a.out, name))
    print(f"WordNet: {n_pairs} (word, part of speech) pairs over {n_words} single-word lemmas")
    unseen = sum(r["kind"] == "definition_unseen" for r in d_test)
    print(f"definitions: {len(d_train)} train ({len({r['word'] for r in d_train})} words x {a.phrasings} "
          f"phrasings), {len(d_test) - unseen} test questions about known words, {unseen} unseen words")
    print(f"calculator:  {len(c_train)} train, {len(c_test)} test")
    print(f"wrote {os.path.join(a.out, 'train.jsonl')} ({len(train)}) and "
          f"{os.path.join(a.out, 'test.jsonl')} ({len(test)})")


if __name__ == "__main__":
    main()
