#!/usr/bin/env python3
"""Fails when a file of a crate imports, directly or through others, from a file that imports it.

Usage: scripts/check-import-cycles.py [CRATE_SRC_DIR ...]   (default: src raft/src jepsen/src)
       scripts/check-import-cycles.py --self-test

The unit is a file, not a module: `a.rs` depends on `b.rs` when it names an item that `b.rs`
defines, through a `use` or an inline path (`crate::x::Y`, `super::Y`, `child::Y`). A name that
a file only imports (`use` or `pub use`) is followed to the file that defines it, so a parent's
re-export of its child's type is not a dependency of the parent's other children on the parent.
A `mod x;` declaration is not an import. Items of external crates are ignored.

Approximate by design (no macro expansion, no `#[path]`), cheap (well under a second), and exact
enough for the code of this repository; `--self-test` shows it finding a planted cycle.
"""
import os
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Blank out comments, string and char literals (keeping newlines) so that only code is parsed."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 300]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only literals are skipped.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(" ")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b::C, d, self}` -> [(['a','b','C'], 'C'), (['a','d'], 'd'), (['a'], 'a')]."""
    tree = re.sub(r"\s+", "", tree)
    results = []

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def walk(prefix, s):
        if not s:
            return
        brace = s.find("{")
        if brace >= 0 and s.endswith("}"):
            head = s[:brace].rstrip(":")
            segs = prefix + ([x for x in head.split("::") if x] if head else [])
            for part in split_top(s[brace + 1:-1]):
                walk(segs, part)
            return
        segs = prefix + [x for x in s.split("::") if x]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if segs and segs[-1] == "*":
            results.append((segs[:-1], "*"))
            return
        if segs:
            results.append((segs, segs[-1]))

    walk([], tree)
    return results


USE_RE = re.compile(r"(?:^|[;{}\]\s])(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]+);", re.S)
MOD_DECL_RE = re.compile(r"(?:^|[;{}\]\s])(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;")
INLINE_MOD_RE = re.compile(r"(?:^|[;{}\]\s])mod\s+(" + IDENT + r")\s*\{")
INLINE_RE = re.compile(r"(?<![A-Za-z0-9_:])((?:crate|super|self|" + IDENT + r")(?:\s*::\s*" + IDENT + r")+)")


def parse_use(raw):
    """Split `a::b as c` pairs before whitespace is removed; return [(segments, bound name)]."""
    # Protect `as` by turning `X as Y` into `X@Y` so that whitespace removal keeps it.
    raw = re.sub(r"\s+as\s+", "@", raw)
    out = []
    for segs, name in expand_use_tree(raw):
        if segs and "@" in segs[-1]:
            last, alias = segs[-1].split("@", 1)
            segs = segs[:-1] + [last]
            name = alias
        out.append((segs, name))
    return out


class Crate:
    def __init__(self, root):
        self.root = root
        self.files = {}  # module path tuple -> file path
        self.code = {}  # file path -> stripped code
        self.module_of = {}  # file path -> module path tuple
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)[:-3].split(os.sep)
                if rel == ["main"]:
                    continue  # the binary's root: it uses the library as an external crate
                if rel == ["lib"]:
                    module = ()
                elif rel[-1] == "mod":
                    module = tuple(rel[:-1])
                else:
                    module = tuple(rel)
                self.files[module] = path
                self.module_of[path] = module
        for path in self.module_of:
            with open(path, encoding="utf-8") as f:
                self.code[path] = strip_comments_and_strings(f.read())
        self.imports = {path: self._imports(path) for path in self.module_of}

    def _child_modules(self, module):
        return {m[-1] for m in self.files if len(m) == len(module) + 1 and m[:-1] == module}

    def absolute(self, module, segs):
        """Make a path absolute from `module`; None for an external crate or std."""
        if not segs:
            return None
        head, rest = segs[0], list(segs[1:])
        if head == "crate":
            return rest
        if head == "self":
            return list(module) + rest
        if head == "super":
            base = list(module)
            while head == "super":
                if not base:
                    return None
                base = base[:-1]
                if rest and rest[0] == "super":
                    head, rest = rest[0], rest[1:]
                else:
                    head = None
            return base + rest
        if head in self._child_modules(module):
            return list(module) + [head] + rest
        return None

    def _imports(self, path):
        """name -> absolute path, for every name a file binds with `use`."""
        module = self.module_of[path]
        bound = {}
        for m in USE_RE.finditer(self.code[path]):
            for segs, name in parse_use(m.group(2)):
                absolute = self.absolute(module, segs)
                if absolute is not None and name != "*":
                    bound[name] = absolute
        return bound

    def resolve(self, absolute, seen=None):
        """The file that defines what an absolute path names (following imports), or None."""
        seen = seen or set()
        key = tuple(absolute)
        if key in seen:
            return None
        seen.add(key)
        module = ()
        i = 0
        while i < len(absolute) and module + (absolute[i],) in self.files:
            module += (absolute[i],)
            i += 1
        path = self.files.get(module)
        if path is None:
            return None
        if i < len(absolute):
            name = absolute[i]
            target = self.imports[path].get(name)
            if target is not None:
                return self.resolve(target + list(absolute[i + 1:]), seen) or path
        return path

    def edges(self):
        graph = {path: set() for path in self.module_of}
        for path, code in self.code.items():
            for module, part in split_inline_modules(self.module_of[path], code):
                for segs in named_paths(part):
                    absolute = self.absolute(module, segs)
                    if absolute is None:
                        continue
                    target = self.resolve(absolute)
                    if target and target != path:
                        graph[path].add(target)
        return graph


def named_paths(code):
    """The paths a piece of code names: in its `use`s (re-exports excepted) and inline."""
    paths = []
    for m in USE_RE.finditer(code):
        if m.group(1) and not m.group(1).strip().startswith("pub(super"):
            continue  # a re-export: a facade for others, followed when they use it
        paths += [segs for segs, _ in parse_use(m.group(2))]
    without_uses = USE_RE.sub(";", code)
    for m in INLINE_RE.finditer(without_uses):
        paths.append(re.sub(r"\s+", "", m.group(1)).split("::"))
    return paths


def split_inline_modules(module, code):
    """[(module path, code)]: a file's code outside inline modules, then the code of each inline
    `mod name { ... }` (nested ones too) under its own path, so that `super` and `self` inside
    `mod tests { use super::*; }` name the file's module, not its parent."""
    parts, outside, pos = [], [], 0
    for m in INLINE_MOD_RE.finditer(code):
        if m.start() < pos:
            continue  # inside an inline module already split off
        depth, end = 1, m.end()
        while end < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            end += 1
        outside.append(code[pos:m.start()])
        parts += split_inline_modules(module + (m.group(1),), code[m.end():end - 1])
        pos = end
    outside.append(code[pos:])
    return [(module, "".join(outside))] + parts


def cycles(graph):
    """Strongly connected components with more than one file (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(roots):
    found = []
    for root in roots:
        crate = Crate(root)
        graph = crate.edges()
        for component in cycles(graph):
            lines = []
            for f in component:
                deps = sorted(d for d in graph[f] if d in component)
                lines.append(f"    {f} -> {', '.join(deps)}")
            found.append("\n".join(lines))
    return found


def self_test():
    """The checker must find a planted cycle, follow re-exports, and pass a clean tree."""
    with tempfile.TemporaryDirectory() as tmp:
        def write(rel, text):
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

        write("src/lib.rs", "mod a;\nmod node;\npub use node::Thing;\n")
        write("src/a.rs", "use crate::Thing; // a comment naming crate::b::X\nfn f() { let s = \"crate::b::Y\"; }\n")
        write("src/node/mod.rs", "mod core;\nmod child;\npub use core::Thing;\npub struct Parent;\n")
        write("src/node/core.rs", "pub struct Thing;\n")
        write("src/node/child.rs", "use super::Thing;\nfn g(_: &'static str) -> char { '\"' }\n")
        assert check([os.path.join(tmp, "src")]) == [], "a clean tree reported a cycle"
        # Re-exports are followed: child -> core, not child -> node/mod.rs.
        crate = Crate(os.path.join(tmp, "src"))
        g = crate.edges()
        assert g[os.path.join(tmp, "src/node/child.rs")] == {os.path.join(tmp, "src/node/core.rs")}, g
        # Plant a cycle: core names Parent, defined in node/mod.rs, which imports core.
        write("src/node/core.rs", "pub struct Thing(super::Parent);\n")
        write("src/node/mod.rs", "mod core;\nmod child;\npub use core::Thing;\npub struct Parent;\nfn h() -> Thing { core::make() }\n")
        found = check([os.path.join(tmp, "src")])
        assert len(found) == 1 and "core.rs" in found[0] and "mod.rs" in found[0], found
        # A three-file loop through `use crate::..::{..}` trees and aliases.
        write("src/node/mod.rs", "mod core;\nmod child;\npub use core::Thing;\npub struct Parent;\n")
        write("src/node/core.rs", "use crate::{a::{helper as h}};\npub struct Thing;\n")
        write("src/a.rs", "use crate::node::child::C;\npub fn helper() {}\n")
        write("src/node/child.rs", "pub struct C(crate::node::Thing);\n")
        found = check([os.path.join(tmp, "src")])
        assert len(found) == 1 and found[0].count("->") == 3, found
        # `super` inside a file's inline test module names the file itself, not its parent.
        write("src/a.rs", "pub fn helper() {}\n")
        write("src/node/child.rs", "pub struct C;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n")
        write("src/node/mod.rs", "mod core;\nmod child;\npub use core::Thing;\nfn f(_: child::C) {}\n")
        assert check([os.path.join(tmp, "src")]) == [], check([os.path.join(tmp, "src")])
    print("self-test passed")


def main(argv):
    if argv == ["--self-test"]:
        self_test()
        return 0
    roots = argv or ["src", "raft/src", "jepsen/src"]
    found = check(roots)
    if found:
        print(f"import cycles between files ({len(found)}):")
        for c in found:
            print(c)
        return 1
    print(f"no import cycle between files in {', '.join(roots)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
