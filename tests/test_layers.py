"""The architecture as a test: layers point downward, no cycles, no private names across modules.

Every module's imports are read from its source (module level and inside functions, so a lazy import
cannot hide an upward arrow) and checked against DESIGN §2:

    viz < engine < zoo < analysis < bench < service < API (__init__, __main__, cli)

A module imports its own layer and the layers below it, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modelgif_core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "modelgif_core"
LAYERS = ("viz", "engine", "zoo", "analysis", "bench", "service", "api")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "api"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative levels resolved against `module`)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports() -> dict[str, list[tuple[str, str | None, int]]]:
    """module -> [(imported module, imported name or None, line)] for every import inside the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        edges = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("modelgif_core")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                if target.startswith("modelgif_core"):
                    for alias in node.names:
                        sub = f"{target}.{alias.name}"
                        # `from . import zoo` imports a module; `from .x import y` a name of module x
                        is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).is_file() or \
                            (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                        edges.append((sub, None, node.lineno) if is_module else (target, alias.name, node.lineno))
        modules[name] = edges
    return modules


IMPORTS = _imports()


def test_the_reader_sees_every_module_and_its_imports():
    # guards the test itself: a reader that saw nothing would pass everything
    assert {"modelgif_core.engine.fields", "modelgif_core.zoo.build", "modelgif_core.analysis.triage",
            "modelgif_core.bench.ip", "modelgif_core.service.worker", "modelgif_core.viz.figures",
            "modelgif_core.cli", "modelgif_core"} <= set(IMPORTS)
    fields_imports = {(m, n) for m, n, _ in IMPORTS["modelgif_core.engine.fields"]}
    assert ("modelgif_core.engine.models", "ModelHandle") in fields_imports
    assert _layer("modelgif_core.engine.fields") == "engine" and _layer("modelgif_core.cli") == "api"
    assert _layer("modelgif_core.zoo") == "zoo" and _layer("modelgif_core") == "api"


def test_no_module_imports_a_higher_layer():
    upward = [f"{m} (line {line}, {_layer(m)}) imports {target} ({_layer(target)})"
              for m, edges in IMPORTS.items() for target, _name, line in edges
              if LAYERS.index(_layer(target)) > LAYERS.index(_layer(m))]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    graph = {m: {t for t, _, _ in edges if t in IMPORTS and t != m} for m, edges in IMPORTS.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            pytest.fail("import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]):]))


def test_no_private_name_is_imported_across_modules():
    private = [f"{m} (line {line}) imports {name} from {target}" for m, edges in IMPORTS.items()
               for target, name, line in edges
               if name and name.startswith("_") and not name.endswith("__") and target != m]
    assert not private, "\n".join(private)


def test_the_core_never_imports_streamlit():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "streamlit"], path


def test_all_lists_every_public_name_and_each_resolves():
    names = modelgif_core.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(modelgif_core, name) is not None, name
    # every name bound at the top of the package that is not private, a submodule or typing help is listed
    public = {n for n in vars(modelgif_core) if not n.startswith("_")} - {"annotations", "importlib", "version",
                                                                           "PackageNotFoundError", "TYPE_CHECKING"}
    # submodules (layers, and cli once another test imported it) are bound as attributes too
    public -= {n for n in public if getattr(getattr(modelgif_core, n), "__name__", "") == f"modelgif_core.{n}"}
    assert public <= set(names), sorted(public - set(names))
    assert set(modelgif_core._LAZY) <= set(names)


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert modelgif_core.__version__ == version("modelgif-explorer")


def test_there_is_no_pages_folder_beside_the_entry_point():
    # Streamlit runs the scripts of a `pages/` folder beside app.py as a legacy multipage app (each page on
    # its own, without app.py's navigation and sidebar) until st.navigation has run once in the process:
    # a bookmark of a page as the first request of a fresh server then crashed. Pages live in app_pages/.
    assert not (ROOT / "pages").exists()
    assert (ROOT / "app_pages").is_dir()
