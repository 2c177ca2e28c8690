"""Guard rails of a run's as_of and the command line's one-line errors.

A malformed as_of, an as_of too far in the future, an unknown argument, a missing or rejected
configuration: one line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cxloop import cli
from cxloop.check import max_as_of_skew, refuse_future_as_of
from cxloop_airflow import INTERVAL, resolve_as_of

NOW = datetime(2026, 11, 5, 12, 0, 0)


def test_an_as_of_within_the_skew_passes_and_beyond_it_is_refused():
    assert refuse_future_as_of(NOW + timedelta(hours=23), env={}, now=NOW) == NOW + timedelta(hours=23)
    assert refuse_future_as_of(NOW - timedelta(days=400), env={}, now=NOW) == NOW - timedelta(days=400)
    with pytest.raises(ValueError, match=r"^as_of 2026-11-06T13:00:00 is more than 24 h in the future") as err:
        refuse_future_as_of(NOW + timedelta(hours=25), env={}, now=NOW)
    assert "CXLOOP_MAX_AS_OF_SKEW_HOURS" in str(err.value) and "\n" not in str(err.value)


def test_the_skew_is_a_setting():
    env = {"CXLOOP_MAX_AS_OF_SKEW_HOURS": "48"}
    assert max_as_of_skew(env) == timedelta(hours=48)
    assert refuse_future_as_of(NOW + timedelta(hours=47), env=env, now=NOW)
    with pytest.raises(ValueError, match="more than 0 h in the future"):
        refuse_future_as_of(NOW + timedelta(minutes=1), env={"CXLOOP_MAX_AS_OF_SKEW_HOURS": "0"}, now=NOW)
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match=r"^CXLOOP_MAX_AS_OF_SKEW_HOURS='.*' is not a number of hours >= 0$"):
            max_as_of_skew({"CXLOOP_MAX_AS_OF_SKEW_HOURS": bad})


def test_resolve_as_of_refuses_a_future_param_and_interval():
    future = (datetime.now(UTC) + timedelta(days=3)).replace(tzinfo=None).isoformat()
    with pytest.raises(ValueError, match="in the future"):
        resolve_as_of({"as_of": future}, fallback=INTERVAL)
    with pytest.raises(ValueError, match="in the future"):
        resolve_as_of(None, fallback=INTERVAL, data_interval_end=datetime.now(UTC) + timedelta(days=2))
    assert resolve_as_of({"as_of": "2026-10-01T00:00:00"}, fallback=INTERVAL) == "2026-10-01T00:00:00"


def test_run_as_of_defaults_to_the_start_of_the_utc_day():
    tz = timezone(timedelta(hours=-5))
    assert cli.default_as_of(datetime(2026, 11, 5, 22, 30, tzinfo=tz)) == "2026-11-06T00:00:00"
    assert cli.run_as_of(None) == cli.default_as_of()
    assert cli.run_as_of("2026-10-01T02:00:00+02:00") == "2026-10-01T00:00:00"


def test_cxloop_run_with_a_malformed_as_of_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cxloop")), "run", "--as-of", "garbage"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "CXLOOP_VAR": str(tmp_path / "var"), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert proc.stderr == "cxloop: as_of 'garbage' is not an ISO timestamp (e.g. 2026-10-01T00:00:00)\n"
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was made


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--as-of", "2999-01-01"], "cxloop: as_of 2999-01-01T00:00:00 is more than 24 h in the future"),
        (["run", "--bogus"], "cxloop run: No such option '--bogus'. (see `cxloop run --help`)"),
        (["frobnicate"], "cxloop: No such command 'frobnicate'. (see `cxloop --help`)"),
        (["prune", "--days"], "cxloop prune: Option '--days' requires an argument. (see `cxloop prune --help`)"),
        (["prune", "--days", "soon"], "cxloop prune: Invalid value for '--days': 'soon' is not a valid integer."),
        (["demo", "--crm", "<script>"], "cxloop demo: Invalid value for '--crm': '<script>' is not one of"),
        (["completion", "tcsh"], "cxloop completion: Invalid value for '{bash|zsh|fish}': 'tcsh' is not one of"),
        (["check", "--config", "/nonexistent/sources.yml"], "cxloop: --config /nonexistent/sources.yml: no such file"),
    ],
)
def test_argument_errors_are_one_line_exit_2(argv, expected, capsys):
    rc, out, err = _main(argv, capsys)
    assert rc == 2
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert "Traceback" not in out + err and "usage:" not in err.lower()


def test_every_option_has_help_and_shows_its_default(capsys):
    """`cxloop COMMAND --help` explains every option; one with a default shows it."""
    group = cli.build_cli()
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            assert param.help, f"cxloop {name} {param.opts[0]} has no help text"
            has_default = param.default not in (None, False)
            assert has_default == bool(param.show_default) or "[default:" in param.help, (name, param.opts)
        rc, out, err = _main([name, "--help"], capsys)
        assert rc == 0 and err == "" and out.startswith(f"Usage: cxloop {name}"), (name, err)
    rc, out, _ = _main(["demo", "--help"], capsys)
    assert "[default: 42]" in out and "[default: 2026-10-01T00:00:00]" in out


def test_shell_completion_script_and_completions():
    """`cxloop completion bash` prints click's script; the script's protocol (the
    _CXLOOP_COMPLETE variable the entry point answers) completes commands and options."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    script = subprocess.run(
        [sys.executable, "-m", "cxloop.cli", "completion", "bash"], capture_output=True, text=True, env=env, timeout=60
    )
    assert script.returncode == 0 and "_CXLOOP_COMPLETE=bash_complete" in script.stdout, script.stderr
    for words, cword, expected in (("cxloop de", "1", "plain,demo"), ("cxloop demo --cr", "2", "plain,--crm")):
        done = subprocess.run(
            [sys.executable, "-m", "cxloop.cli"], capture_output=True, text=True, timeout=60,
            env={**env, "_CXLOOP_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword},
        )
        assert done.stdout.split() == [expected], (words, done.stdout, done.stderr)


def test_a_rejected_configuration_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    config = tmp_path / "sources.yml"
    config.write_text("crm: sap\n")
    monkeypatch.setenv("CXLOOP_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("CXLOOP_SOURCES_CONFIG", str(config))  # --config sets it: restored after the test
    rc, out, err = _main(["run", "--as-of", "2026-10-01", "--config", str(config)], capsys)
    assert rc == 2
    assert err == f"cxloop: {config}: crm source 'sap' is not one of salesforce, hubspot, files, landed\n"
    monkeypatch.setenv("CXLOOP_TARGET", "oracle")
    rc, out, err = _main(["run", "--as-of", "2026-10-01"], capsys)
    assert rc == 2 and err == "cxloop: CXLOOP_TARGET='oracle' is not one of duckdb, postgres\n"


def test_run_without_credentials_stops_before_airflow(tmp_path, monkeypatch, capsys):
    config = tmp_path / "sources.yml"
    config.write_text("crm: salesforce\nsurvey: files\n")
    for var in ("CXLOOP_SALESFORCE_TOKEN", "AIRFLOW_CONN_CX_SALESFORCE", "CXLOOP_CRM_SOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CXLOOP_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("CXLOOP_SALESFORCE_BASE_URL", "https://acme.my.salesforce.com")
    monkeypatch.setenv("CXLOOP_SOURCES_CONFIG", str(config))
    rc, out, err = _main(["run", "--as-of", "2026-10-01", "--config", str(config)], capsys)
    assert rc == 2
    assert err == (
        "cxloop: salesforce: CXLOOP_SALESFORCE_TOKEN not set (nor the Airflow connection cx_salesforce); "
        "`cxloop check` lists everything still missing\n"
    )
    assert not (tmp_path / "var" / "airflow").exists()  # Airflow never started
