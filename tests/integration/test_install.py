"""`pip install .` into a clean virtualenv: the `cxloop` command works from any directory, and
the package finds the project (dbt project, expectation suites, config/) through CXLOOP_HOME.

Offline and fast: the new virtualenv sees the project virtualenv's packages (the locked
dependencies, pip and setuptools) through a ``.pth`` file, and cxloop itself is built and
installed without dependencies or build isolation from a copy of the checkout (pyproject.toml
and plugins/), so nothing is written into the working tree. The project virtualenv's editable
install of cxloop is not active there: a ``.pth`` file only adds its folder to sys.path, the
``.pth`` files inside that folder are not processed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no project variables, no PYTHONPATH (the session's
    AIRFLOW_HOME stays: nothing here may write an Airflow home elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["CXLOOP_PII_KEY"] = "unused-by-these-commands"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("install")
    src = work / "src"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(ROOT / "plugins", src / "plugins", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = work / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--disable-pip-version-check",
            ".",
        ],
        cwd=src,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    seconds = time.perf_counter() - started
    print(f"clean venv + pip install . took {seconds:.1f} s")
    return {"venv": venv, "python": python, "cxloop": venv / "bin" / "cxloop", "purelib": Path(purelib), "work": work}


def _run(args: list, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_package_is_installed_not_linked_to_the_checkout(installed):
    run = _run(
        [
            installed["python"],
            "-c",
            "import importlib.util, cxloop, cxloop.cli; print(cxloop.__file__); "
            "print(importlib.util.find_spec('cxloop_airflow').origin)",
        ],
        cwd=Path("/"),
        env=_clean_env(),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    for line in run.stdout.strip().splitlines():  # cxloop, and the DAG glue the DAG files import
        location = Path(line)
        assert location.is_relative_to(installed["purelib"]), f"{location} is not in the new venv"
        assert not location.is_relative_to(ROOT)


def test_cxloop_help_works_from_the_root_directory(installed):
    assert installed["cxloop"].exists(), "the console script was not installed"
    run = _run([installed["cxloop"], "--help"], cwd=Path("/"), env=_clean_env())
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("Usage: cxloop")
    for command in ("demo", "generate", "serve", "summary", "airflow"):
        assert command in run.stdout


def test_cxloop_home_points_the_installed_package_at_the_project(installed):
    """From /, with CXLOOP_HOME: the settings, the expectation suites and the source config
    all come from the project folder."""
    code = (
        "from cxloop.config import Settings\n"
        "from cxloop.gate.suites import load_suite_config\n"
        "from cxloop.source_config import load_source_config\n"
        "s = Settings.from_env()\n"
        "print(s.home); print(s.dbt_project_dir); print(s.expectations_dir)\n"
        "print(load_suite_config('responses')['name'])\n"
        "c = load_source_config(); print(c.crm, c.survey)\n"
    )
    run = _run([installed["python"], "-c", code], cwd=Path("/"), env=_clean_env(CXLOOP_HOME=str(ROOT)))
    assert run.returncode == 0, run.stderr[-3000:]
    home, dbt_dir, expectations, suite, sources = run.stdout.strip().splitlines()
    assert Path(home) == ROOT
    assert Path(dbt_dir) == ROOT / "dbt_project" and (Path(dbt_dir) / "dbt_project.yml").exists()
    assert Path(expectations) == ROOT / "expectations"
    assert "responses" in suite
    assert len(sources.split()) == 2


def test_without_cxloop_home_outside_a_project_one_line_names_it(installed):
    elsewhere = installed["work"] / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    run = _run([installed["cxloop"], "demo"], cwd=elsewhere, env=_clean_env())
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "CXLOOP_HOME" in lines[0] and str(elsewhere) in lines[0]
    assert run.stdout == ""
    assert not (elsewhere / "var").exists() and not (installed["venv"] / "lib" / "python3.11" / "var").exists()


def test_a_cxloop_home_that_is_not_a_project_is_named(installed):
    bogus = installed["work"] / "not-a-project"
    bogus.mkdir(exist_ok=True)
    run = _run([installed["cxloop"], "airflow"], cwd=Path("/"), env=_clean_env(CXLOOP_HOME=str(bogus)))
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"cxloop: CXLOOP_HOME={bogus} is not a cxloop project folder "
        "(it needs dbt_project/dbt_project.yml and expectations)"
    )


def test_the_current_directory_is_the_project_when_cxloop_home_is_unset(installed):
    code = "from cxloop.config import project_home; print(project_home())"
    run = _run([installed["python"], "-c", code], cwd=ROOT, env=_clean_env())
    assert run.returncode == 0, run.stderr[-2000:]
    assert Path(run.stdout.strip()) == ROOT
