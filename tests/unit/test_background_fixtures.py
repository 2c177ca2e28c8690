"""A fixture body registered with ``_background.prestart(name)`` starts early only when the tests
ask for a fixture of that very name (tests/conftest.py matches item.fixturenames). A module
whose fixture has another name never starts early: its tests run in collection order and the
pytest process waits on the body (2.5 min of an idle main process, once). Checked by reading
the test files."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _prestarted_and_fixtures(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    registered, fixtures = set(), set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            name = ast.unparse(target)
            if name.endswith("prestart") and isinstance(deco, ast.Call):
                registered.add(deco.args[0].value)
            if name in {"pytest.fixture", "fixture"}:
                fixtures.add(node.name)
    return registered, fixtures


def _unmatched(paths, fixtures_for) -> tuple[int, list[str]]:
    """(bodies registered in ``paths``, one line per file whose bodies have no fixture of their
    name among ``fixtures_for(own fixtures of the file)``)."""
    seen, problems = 0, []
    for path in paths:
        registered, own = _prestarted_and_fixtures(path)
        seen += len(registered)
        missing = registered - fixtures_for(own)
        if missing:
            problems.append(f"{path.relative_to(TESTS)}: prestart({sorted(missing)}) has no fixture of that name")
    return seen, problems


def test_every_prestarted_body_is_asked_for_by_a_fixture_of_its_name():
    seen, problems = _unmatched(sorted(TESTS.rglob("test_*.py")), lambda own: own)
    assert problems == []
    assert seen >= 4, "the check found no prestarted fixture: has the convention changed?"


def test_a_body_registered_outside_the_test_files_has_its_fixture_in_conftest():
    """The shared warehouse's build is registered in a helper module; its fixture is conftest's."""
    _, conftest_fixtures = _prestarted_and_fixtures(TESTS / "conftest.py")
    seen, problems = _unmatched(sorted(TESTS.glob("_*.py")), lambda own: conftest_fixtures)
    assert problems == []
    assert seen >= 1, "no helper registers a prestarted body: is the shared warehouse built in the pytest process?"
