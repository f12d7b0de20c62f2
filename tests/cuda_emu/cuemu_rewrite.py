#!/usr/bin/env python3
"""flashmoe CUDA-on-CPU emulator: rewrites a .cu / .cuh file into C++ that g++
compiles against cuda_emu_kernel.h (see README.md).

    cuemu_rewrite.py IN OUT [--name SHOWN_PATH]

Rewrites, keeping every line on its line (a #line directive at the top maps
diagnostics, __FILE__ and debug info back to the original):
  * kernel<tmpl><<<grid, block[, smem[, stream]]>>>(args)
      -> ::cuemu::launch(kernel<tmpl>, "kernel<tmpl>", __FILE__, __LINE__,
                         ::cuemu::cfg(grid, block[, smem[, stream]]), args)
  * the body of every __global__ function gets a first statement
      ::cuemu::kernel_entry(<__launch_bounds__ max threads or 0>, __PRETTY_FUNCTION__);
  * [static] __shared__ T a[N], *b;   (in a function)
      -> static thread_local ::cuemu::SmemSlot s1; auto &a = ::cuemu::shared_var<T[N]>(s1, ...); ...
  * extern __shared__ T buf[];        (in a function)
      -> T *buf = ::cuemu::dyn_smem<T>();
    (at namespace scope both become a macro naming the same expression)
Comments, string and character literals and preprocessor lines are left alone.
The parsing is bracket matching on a copy of the text with those blanked, not
a regex over lines. Stdlib only."""
import re
import sys

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def blank(src):
    """The text with comments, string/char literals and preprocessor lines replaced
    by spaces (newlines kept), so that offsets match the original."""
    out = list(src)
    i, n = 0, len(src)
    line_start = True
    while i < n:
        c = src[i]
        if line_start and c in " \t":
            i += 1
            continue
        if line_start and c == "#":
            # preprocessor directive, with continuations; comments inside are blanked too
            j = i
            while j < n and src[j] != "\n":
                if src[j] == "\\" and j + 1 < n and src[j + 1] == "\n":
                    j += 2
                    continue
                if src.startswith("/*", j):
                    k = src.find("*/", j + 2)
                    k = n if k < 0 else k + 2
                    for m in range(j, k):
                        if src[m] != "\n":
                            out[m] = " "
                    j = k
                    continue
                j += 1
            for m in range(i, j):
                if src[m] != "\n":
                    out[m] = " "
            i = j
            continue
        line_start = False
        if c == "\n":
            line_start = True
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            for m in range(i, j):
                out[m] = " "
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for m in range(i, j):
                if src[m] != "\n":
                    out[m] = " "
            i = j
        elif c == 'R' and src.startswith('R"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            k = src.find("(", i + 2)
            delim = src[i + 2:k]
            end = src.find(")" + delim + '"', k)
            end = n if end < 0 else end + len(delim) + 2
            for m in range(i, end):
                if src[m] != "\n":
                    out[m] = " "
            i = end
        elif c in "\"'":
            if c == "'" and i > 0 and (src[i - 1].isalnum()) and i + 1 < n and src[i + 1].isalnum():
                i += 1  # digit separator 1'000
                continue
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                elif src[j] == "\n":
                    break
                j += 1
            for m in range(i, min(j + 1, n)):
                if src[m] != "\n":
                    out[m] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")": "(", "]": "[", "}": "{"}


def match_forward(b, i):
    """b[i] is an opening bracket: the index of its partner."""
    stack = []
    n = len(b)
    while i < n:
        c = b[i]
        if c in OPEN:
            stack.append(OPEN[c])
        elif c in CLOSE:
            if not stack or stack[-1] != c:
                raise SyntaxError("unbalanced %r at offset %d" % (c, i))
            stack.pop()
            if not stack:
                return i
        i += 1
    raise SyntaxError("unterminated bracket")


def match_backward(b, i):
    """b[i] is a closing bracket ) ] or >: the index of its partner."""
    if b[i] == ">":
        depth = 0
        while i >= 0:
            if b[i] == ">":
                depth += 1
            elif b[i] == "<":
                depth -= 1
                if depth == 0:
                    return i
            elif b[i] in "({[":
                pass
            i -= 1
        raise SyntaxError("unbalanced <>")
    stack = []
    while i >= 0:
        c = b[i]
        if c in CLOSE:
            stack.append(CLOSE[c])
        elif c in OPEN:
            if not stack or stack[-1] != c:
                raise SyntaxError("unbalanced %r" % c)
            stack.pop()
            if not stack:
                return i
        i -= 1
    raise SyntaxError("unbalanced bracket")


def split_top(text, sep=","):
    """Splits at top-level separators (outside () [] {})."""
    parts, depth, cur = [], 0, []
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def one_line(s):
    return " ".join(s.split())


def c_string(s):
    return '"' + one_line(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def line_of(src, pos):
    return src.count("\n", 0, pos) + 1


class Rewriter:
    def __init__(self, src, name):
        self.src = src
        self.b = blank(src)
        self.name = name
        self.edits = []  # (start, end, text)
        self.slot = 0
        self.notes = []

    def edit(self, start, end, text):
        self.edits.append((start, end, text))

    # ---- scope: is position p inside a function body (vs namespace scope)? ----
    def scopes(self):
        """For every '{' offset: True if it opens a namespace / extern "C" / class body."""
        b = self.b
        kinds = {}
        for m in re.finditer(r"\{", b):
            i = m.start()
            # the text from the previous ; { } to here
            j = i - 1
            while j >= 0 and b[j] not in ";{}":
                j -= 1
            head = self.src[j + 1:i]
            hb = b[j + 1:i]
            if re.search(r"\bnamespace\b", hb) or re.search(r'\bextern\s*"C"', head):
                kinds[i] = "ns"
            elif re.search(r"\b(struct|class|union)\b[^()]*$", hb):
                kinds[i] = "class"
            else:
                kinds[i] = "code"
        return kinds

    def in_function(self, pos, kinds):
        stack = []
        b = self.b
        for i in range(pos):
            c = b[i]
            if c == "{":
                stack.append(kinds.get(i, "code"))
            elif c == "}":
                if stack:
                    stack.pop()
        return any(k == "code" for k in stack)

    # ---- kernels ----
    def kernels(self):
        b, src = self.b, self.src
        for m in re.finditer(r"\b__global__\b", b):
            i = m.end()
            bound = None
            # __launch_bounds__ before __global__ (same declaration)
            j = m.start() - 1
            while j >= 0 and b[j] not in ";{}":
                j -= 1
            lb = re.search(r"\b__launch_bounds__\s*\(", b[j + 1:m.start()])
            if lb:
                o = j + 1 + lb.end() - 1
                bound = split_top(src[o + 1:match_forward(b, o)])[0]
            # walk to the parameter list
            name = None
            while i < len(b):
                mm = IDENT.match(b, i)
                if mm:
                    ident = mm.group(0)
                    k = mm.end()
                    while k < len(b) and b[k].isspace():
                        k += 1
                    if k < len(b) and b[k] == "(":
                        if ident in ("__launch_bounds__", "__attribute__", "alignas", "__align__", "__declspec"):
                            close = match_forward(b, k)
                            if ident == "__launch_bounds__":
                                bound = split_top(src[k + 1:close])[0]
                            i = close + 1
                            continue
                        name = ident
                        params_open = k
                        break
                    i = mm.end()
                    continue
                if b[i] == "<":  # template arguments in the return type
                    depth = 0
                    while i < len(b):
                        if b[i] == "<":
                            depth += 1
                        elif b[i] == ">":
                            depth -= 1
                            if depth == 0:
                                break
                        i += 1
                i += 1
            if not name:
                continue
            close = match_forward(b, params_open)
            k = close + 1
            while k < len(b) and b[k] not in "{;":
                k += 1
            if k >= len(b) or b[k] == ";":
                continue  # a declaration
            bound_expr = "(int)(%s)" % one_line(bound) if bound else "0"
            self.edit(k + 1, k + 1, " ::cuemu::kernel_entry(%s, __PRETTY_FUNCTION__);" % bound_expr)

    # ---- launches ----
    def launches(self):
        b, src = self.b, self.src
        for m in re.finditer(r"<<<", b):
            pos = m.start()
            # the kernel expression before <<<
            j = pos - 1
            while j >= 0 and b[j].isspace():
                j -= 1
            while j >= 0:
                if b[j] in ">)]":
                    j = match_backward(b, j) - 1
                    while j >= 0 and b[j].isspace():
                        j -= 1
                    continue
                if b[j].isalnum() or b[j] == "_":
                    while j >= 0 and (b[j].isalnum() or b[j] == "_"):
                        j -= 1
                    if j >= 1 and b[j] == ":" and b[j - 1] == ":":
                        j -= 2
                        continue
                    if j >= 1 and b[j] == "." or (j >= 1 and b[j] == ">" and b[j - 1] == "-"):
                        j -= 1 if b[j] == "." else 2
                        continue
                    break
                break
            kstart = j + 1
            while b[kstart].isspace():
                kstart += 1
            kexpr = src[kstart:pos]
            # the configuration up to >>> at depth 0
            i, depth = pos + 3, 0
            while i < len(b):
                c = b[i]
                if c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                elif depth == 0 and b.startswith(">>>", i):
                    break
                i += 1
            else:
                raise SyntaxError("%s:%d: <<< without >>>" % (self.name, line_of(src, pos)))
            cfg_end = i
            k = cfg_end + 3
            while k < len(b) and b[k].isspace():
                k += 1
            if b[k] != "(":
                raise SyntaxError("%s:%d: >>> not followed by (" % (self.name, line_of(src, pos)))
            args_close = match_forward(b, k)
            has_args = src[k + 1:args_close].strip() != ""
            self.edit(kstart, kstart, "::cuemu::launch(")
            self.edit(pos, pos + 3, ", %s, __FILE__, __LINE__, ::cuemu::cfg(" % c_string(kexpr))
            gap = src[cfg_end + 3:k]
            self.edit(cfg_end, k + 1, ")" + (", " if has_args else "") + "\n" * gap.count("\n"))

    # ---- __shared__ ----
    def shared(self, kinds):
        b, src = self.b, self.src
        for m in re.finditer(r"\b__shared__\b", b):
            # the declaration statement
            s = m.start() - 1
            while s >= 0 and b[s] not in ";{}":
                s -= 1
            s += 1
            while b[s].isspace():
                s += 1
            e, depth = m.end(), 0
            while e < len(b):
                c = b[e]
                if c in "([{":
                    depth += 1
                elif c in ")]}":
                    depth -= 1
                elif c == ";" and depth == 0:
                    break
                e += 1
            decl = src[s:e]
            lineno = line_of(src, m.start())
            in_fn = self.in_function(s, kinds)
            text = self.shared_decl(decl, in_fn, lineno)
            self.edit(s, e + 1, text)

    def shared_decl(self, decl, in_fn, lineno):
        nl = decl.count("\n")
        d = re.sub(r"\b__shared__\b", " ", decl)
        is_extern = re.search(r"\bextern\b", d) is not None
        d = re.sub(r"\b(extern|static)\b", " ", d)
        # alignment attributes: dropped (the arena aligns to the type; dynamic memory to 16)
        while True:
            mm = re.search(r"\b(__align__|alignas)\s*\(", d)
            if not mm:
                mm = re.search(r"\b__attribute__\s*\(", d)
            if not mm:
                break
            close = match_forward(d, mm.end() - 1)
            d = d[:mm.start()] + " " + d[close + 1:]
        d = one_line(d)
        pieces = split_top(d)
        first = pieces[0]
        # the name of the first declarator: the last identifier outside brackets
        name, name_at = self.declarator_name(first)
        if name is None:
            raise SyntaxError("%s:%d: cannot parse __shared__ declaration %r" % (self.name, lineno, decl))
        # base type: up to the declarator's first * & or the name
        k = name_at
        while k > 0 and first[k - 1] in " *&":
            k -= 1
        base = first[:k].strip()
        decls = [first[k:].strip()] + [p.strip() for p in pieces[1:]]
        out = []
        for dcl in decls:
            nm, at = self.declarator_name(dcl)
            typeid = (base + " " + dcl[:at] + dcl[at + len(nm):]).strip()
            if is_extern:
                # T name[]  ->  T *name
                elem = re.sub(r"\[\s*\]\s*$", "", typeid).strip()
                expr = "::cuemu::dyn_smem<%s>()" % elem
                if in_fn:
                    out.append("%s *%s = %s;" % (elem, nm, expr))
                else:
                    out.append("\n#define %s (%s)\n" % (nm, expr))
            else:
                self.slot += 1
                slot = "cuemu_smem_slot_%d" % self.slot
                expr = '::cuemu::shared_var<%s>(%s, "%s", __FILE__, __LINE__)' % (typeid, slot, nm)
                if in_fn:
                    out.append("static thread_local ::cuemu::SmemSlot %s; auto &%s = %s;" % (slot, nm, expr))
                else:
                    out.append("static thread_local ::cuemu::SmemSlot %s;\n#define %s (%s)\n" % (slot, nm, expr))
        text = " ".join(out)
        if "\n" in text:  # namespace scope: macros, then back to the original line numbering
            text = text + '#line %d "%s"\n' % (lineno + nl, self.name)
            return text
        return text + "\n" * nl

    @staticmethod
    def declarator_name(dcl):
        depth, last, last_at = 0, None, None
        i = 0
        while i < len(dcl):
            c = dcl[i]
            if c in "([{<":
                depth += 1
            elif c in ")]}>":
                depth -= 1
            elif depth == 0:
                mm = IDENT.match(dcl, i)
                if mm and (i == 0 or not (dcl[i - 1].isalnum() or dcl[i - 1] == "_")):
                    if mm.group(0) not in ("const", "volatile", "unsigned", "signed", "__restrict__"):
                        last, last_at = mm.group(0), i
                    i = mm.end()
                    continue
            i += 1
        return last, last_at

    def run(self):
        kinds = self.scopes()
        self.kernels()
        self.launches()
        self.shared(kinds)
        out = self.src
        for start, end, text in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            out = out[:start] + text + out[end:]
        return '#line 1 "%s"\n' % self.name + out


def main():
    args = sys.argv[1:]
    name = None
    if "--name" in args:
        k = args.index("--name")
        name = args[k + 1]
        del args[k:k + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    src = open(args[0], encoding="utf-8").read()
    try:
        out = Rewriter(src, name or args[0]).run()
    except SyntaxError as e:
        sys.exit("cuemu_rewrite: %s: %s" % (args[0], e))
    tmp = args[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(out)
    import os
    os.replace(tmp, args[1])


if __name__ == "__main__":
    main()
