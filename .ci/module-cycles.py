#!/usr/bin/env python3
"""Fails when the top-level modules of a Rust crate's src/ import each other in a cycle.

A top-level module is `src/NAME.rs` or `src/NAME/` (with all its submodules: one node). An edge
A -> B is any `crate::B` path (or `super::B` in a top-level file) in A's code, comments and string
literals stripped. Test code counts too: a test that reaches up the pipeline is still an arrow.

Usage: module-cycles.py [SRC_DIR]   (default: src/ beside .ci/). Prints the graph with --graph.
Exit 1 and prints every cycle (as strongly connected components) when there is one.
`--self-test` checks the checker on small crates written to a temporary folder (one with a cycle
through a `use crate::{..}` group, one whose only back-arrow is in a comment or a string).
"""
import re
import sys
from pathlib import Path

ROOT_FILES = {"lib.rs", "main.rs"}


def strip(text: str) -> str:
    """Drops comments and the contents of string and char literals (paths in docs do not count)."""
    out, i, n = [], 0, len(text)
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
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:]).group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(body: str) -> list[str]:
    """The first segment of each path in a `{a, b::c, d::{e, f}}` use group."""
    heads, depth, cur = [], 0, ""
    for c in body:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            heads.append(cur)
            cur = ""
            continue
        if depth == 0:
            cur += c
    heads.append(cur)
    return [re.split(r"\s*::|\s+as\s+", h.strip())[0].strip() for h in heads if h.strip()]


def group_body(code: str, start: int) -> str:
    depth, i = 0, start
    while i < len(code):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return code[start + 1:i]
        i += 1
    return ""


def edges_of(code: str, prefixes: tuple[str, ...]) -> set[str]:
    found = set()
    for prefix in prefixes:
        for m in re.finditer(r"(?<![A-Za-z0-9_])" + prefix + r"::\s*(\{|[a-z_][a-z0-9_]*)", code):
            if m.group(1) == "{":
                found.update(group_heads(group_body(code, m.start(1))))
            else:
                found.add(m.group(1))
    return found


def graph(src: Path) -> dict[str, set[str]]:
    nodes: dict[str, list[Path]] = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if len(rel.parts) == 1 and rel.name in ROOT_FILES:
            continue
        name = rel.parts[0].removesuffix(".rs")
        nodes.setdefault(name, []).append(path)
    g: dict[str, set[str]] = {name: set() for name in nodes}
    for name, files in nodes.items():
        for path in files:
            rel = path.relative_to(src)
            top_file = len(rel.parts) == 1 or (len(rel.parts) == 2 and rel.name == "mod.rs")
            prefixes = ("crate", "super") if top_file else ("crate",)
            for target in edges_of(strip(path.read_text()), prefixes):
                if target in g and target != name:
                    g[name].add(target)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def self_test() -> int:
    import tempfile

    def crate(files: dict[str, str]) -> dict[str, set[str]]:
        root = Path(tempfile.mkdtemp(prefix="module-cycles-"))
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return graph(root)

    acyclic = crate({
        "lib.rs": "pub mod a; pub mod b; pub mod c;",
        "a.rs": "use crate::{b::X, c};\n",
        "b/mod.rs": "pub mod inner;\n/// see [`crate::a`]\nconst S: &str = \"crate::a::Y\";\n",
        "b/inner.rs": "use super::X; // crate::a\nfn f() -> char { 'a' }\n",
        "c.rs": "/* crate::a */ pub struct C;\n",
    })
    cyclic = crate({
        "lib.rs": "pub mod a; pub mod b; pub mod c;",
        "a.rs": "use crate::{\n    b::X,\n};\n",
        "b/mod.rs": "pub mod inner;\n",
        "b/inner.rs": "fn f() { crate::c::g() }\n",
        "c.rs": "use crate::a as alias;\n",
    })
    checks = [
        (acyclic == {"a": {"b", "c"}, "b": set(), "c": set()}, f"acyclic graph read as {acyclic}"),
        (cycles(acyclic) == [], "a cycle found where there is none"),
        (cycles(cyclic) == [["a", "b", "c"]], f"cycle a -> b -> c -> a not found: {cyclic}"),
    ]
    failed = [why for ok, why in checks if not ok]
    for why in failed:
        print(f"module-cycles self-test: {why}")
    if not failed:
        print("module-cycles self-test: ok (a cycle is caught, comments and strings are not arrows)")
    return 1 if failed else 0


def main() -> int:
    if "--self-test" in sys.argv:
        return self_test()
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "src"
    g = graph(src)
    if "--graph" in sys.argv:
        for name in sorted(g):
            print(f"{name} -> {', '.join(sorted(g[name])) or '(nothing)'}")
    found = cycles(g)
    for comp in found:
        inner = {v: sorted(w for w in g[v] if w in comp) for v in comp}
        detail = "; ".join(f"{v} -> {', '.join(ws)}" for v, ws in inner.items())
        print(f"import cycle between top-level modules of {src}: {{{', '.join(comp)}}} ({detail})")
    if found:
        print("Arrows run one way: see docs/architecture.md.")
        return 1
    print(f"module-cycles: {len(g)} top-level modules of {src}, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
