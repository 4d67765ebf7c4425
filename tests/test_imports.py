"""The package's imports go only down DESIGN.md's layers and form no cycle, deferred imports included.

Every module under src/genpt is parsed (not imported): each `import` and `from ... import`, at module level
or inside a function or an `if TYPE_CHECKING:` block, is an edge to the genpt module it names.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ("base", "data", "kernels", "model", "formats", "training", "workflows", "faces")
# Module or folder -> layer (DESIGN.md's table); the longest matching name decides.
LAYER_OF = {
    "genpt.config": "base", "genpt.tokenizer": "base", "genpt.gpt1_tokenizer": "base", "genpt.gpt1_release": "base",
    "genpt.fast_bpe": "base", "genpt.metrics": "base", "genpt.errors": "base", "genpt.io": "base",
    "genpt.labels": "base", "genpt.pickles": "base", "genpt.outputs": "base", "genpt.recipes": "base",
    "genpt.data": "data", "genpt.datasets": "data",
    "genpt.kernels": "kernels",
    "genpt.architectures": "model",
    "genpt.model": "model", "genpt.lstm": "model", "genpt.objectives": "model", "genpt.generate": "model",
    "genpt.scoring": "model", "genpt.evaluation": "model",
    "genpt.checkpoint": "formats", "genpt.load": "formats", "genpt.interop": "formats",
    "genpt.train": "training",
    "genpt.demo": "workflows", "genpt.predict": "workflows", "genpt.study": "workflows", "genpt.doctor": "workflows",
    "genpt.cli": "faces", "genpt.serve": "faces", "genpt.__main__": "faces",
    "genpt": "faces",  # the package's own __init__: re-exports for users
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((SRC / "genpt").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The genpt modules `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # `from genpt import kernels` names a module; `from genpt.x import f` does not
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def layer(name: str) -> str:
    match = max((key for key in LAYER_OF if name == key or name.startswith(key + ".")), key=len, default=None)
    assert match is not None, f"{name} is in no layer: add it to LAYER_OF (DESIGN.md's table)"
    return LAYER_OF[match]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def folder(name: str) -> str:
    """A module's folder (genpt.data, genpt.kernels, ...), or the module itself at the top level."""
    parts = name.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_layer():
    for name in graph():
        layer(name)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, targets in graph().items() for b in sorted(targets)
              if LAYERS.index(layer(b)) > LAYERS.index(layer(a))]
    assert not upward, "imports going up DESIGN.md's layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    assert cycles(graph()) == []


def test_no_import_cycle_between_folders():
    edges: dict[str, set[str]] = {}
    for a, targets in graph().items():
        edges.setdefault(folder(a), set()).update(folder(b) for b in targets if folder(b) != folder(a))
    assert cycles(edges) == []


def test_the_walk_sees_deferred_imports_and_relative_ones(tmp_path):
    pkg = tmp_path / "genpt"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from genpt.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\nfrom . import c\n")
    (pkg / "sub" / "c.py").write_text("")
    modules = {"genpt": pkg / "__init__.py", "genpt.a": pkg / "a.py", "genpt.sub": pkg / "sub" / "__init__.py",
               "genpt.sub.b": pkg / "sub" / "b.py", "genpt.sub.c": pkg / "sub" / "c.py"}
    edges = {name: imports(name, path, modules) for name, path in modules.items()}
    assert edges["genpt.a"] == {"genpt.sub.b"} and edges["genpt.sub.b"] == {"genpt.a", "genpt.sub.c"}
    assert cycles(edges) == [["genpt.a", "genpt.sub.b"]]
