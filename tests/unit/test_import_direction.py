"""The stages import one way only: extract -> gate -> store, transform and serve read the store,
and nothing inside a stage imports the orchestrator (``cxloop.pipeline``), the CLI or the demo.

Every ``import`` and ``from ... import`` in the package is read with ``ast`` (including imports
inside functions, where the heavy ones live), so a back-import cannot hide in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "cxloop"
CORE = {"cxloop", "cxloop.config", "cxloop.contract", "cxloop.source_config", "cxloop.program"}
# what each stage may import besides the core (and itself)
ALLOWED = {
    "store": set(),
    "gate": {"store"},
    "extract": {"gate", "store"},
    "transform": {"store"},
    "serve": {"store"},
}
DRIVERS = {"cxloop.pipeline", "cxloop.cli", "cxloop.bench", "cxloop.demo", "cxloop.airflow_home"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # "from cxloop.gate import validation" names a submodule: check it too
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module.startswith("cxloop")]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; write the absolute module name")
    return [(n, m) for n, m in found if m == "cxloop" or m.startswith("cxloop.")]


def _is_core(module: str) -> bool:
    return module in CORE or module.startswith(tuple(c + "." for c in CORE - {"cxloop"}))


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _module_name(path)
        stage = _stage(here)
        for line, target in _imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {target}"
            if any(target == d or target.startswith(d + ".") for d in DRIVERS) and _stage(here):
                bad.append(where + " (a stage never imports a driver)")
                continue
            if stage is None:
                continue  # the drivers and the core may import any stage
            other = _stage(target)
            if other is None and not _is_core(target):
                bad.append(where + " (neither a stage nor the core)")
            if other is None or other == stage:
                continue
            if other not in ALLOWED[stage]:
                bad.append(where + f" ({stage} may import only {sorted(ALLOWED[stage]) or 'the core'})")
    return bad


def test_stages_import_one_way_only():
    assert _violations() == []


def test_the_core_imports_no_stage():
    for name in ("config.py", "contract.py", "source_config.py"):
        for line, target in _imports(PACKAGE / name):
            assert _is_core(target), (
                f"{name}:{line} imports {target}"
            )


def test_the_check_catches_a_back_import(tmp_path, monkeypatch):
    """The check itself can fail: a store module that imports the gate is reported."""
    fake = tmp_path / "cxloop"
    (fake / "store").mkdir(parents=True)
    (fake / "store" / "bad.py").write_text("def f():\n    from cxloop.gate.validation import Gate\n")
    (fake / "serve").mkdir()
    (fake / "serve" / "worse.py").write_text("import cxloop.pipeline\n")
    (fake / "gate").mkdir()
    (fake / "gate" / "sideways.py").write_text("from cxloop import alerts\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    found = _violations()
    assert any("store/bad.py:2" in v and "imports cxloop.gate.validation" in v for v in found), found
    assert any("serve/worse.py:1" in v and "driver" in v for v in found), found
    assert any("gate/sideways.py:1" in v and "neither a stage nor the core" in v for v in found), found


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_every_stage_says_what_it_owns_and_may_import(stage):
    doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "May import" in doc, f"cxloop/{stage}/__init__.py needs a docstring with 'May import'"
