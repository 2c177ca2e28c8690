"""The calibration bench (cxloop.bench_stats): its coverage is measured right, and its Python
maths is the SQL's. The SQL side is pinned by the literal expectations of the dbt unit tests in
account_nps.yml / account_nps_prior.yml (run by tests/integration/test_dbt_project.py); here the
bench's functions must reproduce those same literals from the same given rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from cxloop import bench_stats as bs

MARTS = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "marts" / "nps"


def _unit_tests(name: str) -> list[dict]:
    return yaml.safe_load((MARTS / f"{name}.yml").read_text(encoding="utf-8"))["unit_tests"]


def _given(test: dict, ref: str) -> list[dict]:
    for given in test["given"]:
        if given["input"] == f"ref('{ref}')":
            return given["rows"] if isinstance(given["rows"], list) else []  # format sql: no rows here
    return []


def test_the_python_model_reproduces_the_dbt_unit_test_expectations():
    checked = 0
    for test in _unit_tests("account_nps"):
        weights = {r["role"]: float(r["weight"]) for r in _given(test, "role_weights")}
        segment = {
            (r["period_start"], r["account_id"]): r["group_value"]
            for r in _given(test, "int_account_groups")
            if r["group_type"] == "segment"
        }
        prior = {
            (r["period_start"], r["survey_type"], r["segment"]): (
                r["alpha_promoter"],
                r["alpha_passive"],
                r["alpha_detractor"],
            )
            for r in _given(test, "account_nps_prior")
        }
        answered = {
            (r["period_start"], r["survey_type"], r["account_id"], r["contact_id"])
            for r in _given(test, "int_responses_counted")
        }
        eligible = defaultdict(list)
        for c in _given(test, "int_contact_periods"):
            if c["is_active"] and not c["opted_out"]:
                eligible[(c["period_start"], c["account_id"])].append(
                    (c["contact_id"], weights.get(c["buying_role"], weights["other"]))
                )
        expected = {
            (r.get("period_start"), r["account_id"]): r for r in test["expect"]["rows"] if r["method"] == "bayes"
        }
        for s in _given(test, "int_account_period_scores"):
            key = (s["period_start"], s["survey_type"], s["account_id"])
            non = [w for c, w in eligible[(s["period_start"], s["account_id"])] if (*key, c) not in answered]
            alpha = prior.get(
                (s["period_start"], s["survey_type"], segment.get((s["period_start"], s["account_id"]), "unknown")),
                bs.DEFAULT_ALPHA,
            )
            mean, var, lo, hi = bs.bayes_population_nps(
                s["promoters"],
                s["passives"],
                s["detractors"],
                np.array(alpha),
                s["sum_weight"],
                s["role_weighted_nps"] * s["sum_weight"] / 100.0,
                sum(non),
                sum(w * w for w in non),
            )
            want = expected.get((s["period_start"], s["account_id"])) or expected[(None, s["account_id"])]
            assert (float(mean), float(var), float(lo), float(hi)) == pytest.approx(
                (want["nps"], want["var_pts"], want["ci_low"], want["ci_high"]), abs=1e-8
            ), (test["name"], key)
            checked += 1
    assert checked >= 7


def test_the_python_prior_fit_reproduces_the_dbt_unit_test_expectations():
    (test,) = _unit_tests("account_nps_prior")
    segment = {
        (r["period_start"], r["account_id"]): r["group_value"]
        for r in _given(test, "int_account_groups")
        if r["group_type"] == "segment"
    }
    groups, pooled = defaultdict(list), defaultdict(list)
    for s in _given(test, "int_account_period_scores"):
        counts = (s["promoters"], s["passives"], s["detractors"])
        groups[
            (s["period_start"], s["survey_type"], segment.get((s["period_start"], s["account_id"]), "unknown"))
        ].append(counts)
        pooled[(s["period_start"], s["survey_type"])].append(counts)
    expected = {(r["period_start"], r["survey_type"], r["segment"]): r for r in test["expect"]["rows"]}
    assert set(expected) == set(groups)
    for key, counts in groups.items():
        fit = bs.fit_prior(np.array(counts))
        if not fit.fitted:
            fit = bs.fit_prior(np.array(pooled[key[:2]]))
        want = expected[key]
        alpha = fit.alpha if fit.fitted else np.array(bs.DEFAULT_ALPHA)
        assert (want["prior_source"] == "default") == (not fit.fitted)
        assert tuple(alpha) == pytest.approx(
            (want["alpha_promoter"], want["alpha_passive"], want["alpha_detractor"]), abs=1e-8
        )
        if fit.fitted:
            assert float(fit.rho) == pytest.approx(want["rho_moment"], abs=1e-8)


def test_coverage_of_a_correct_and_a_degenerate_interval():
    rng = np.random.default_rng(7)
    truth = np.zeros(20000)
    estimate = rng.normal(0.0, 1.0, size=truth.size)
    assert 0.94 < bs.coverage(truth, estimate - 1.96, estimate + 1.96) < 0.96
    assert bs.coverage(truth, estimate, estimate) == 0.0  # a point at a continuous estimate never covers
    assert bs.coverage([1.0, 2.0], [1.0, 0.0], [1.5, 1.999]) == 0.5  # closed interval: the bound counts


def test_a_tiny_grid_run_is_deterministic_and_honest_where_it_must_be():
    cells = [(3, 1), (10, 3), (5, 5)]
    first = bs.run(segments=40, seed=3, cells=cells)
    again = bs.run(segments=40, seed=3, cells=cells)
    assert first["frame"].equals(again["frame"])
    frame = first["frame"]
    # a census (n = N): Bayes is exact, zero width, covers every time
    census = frame[frame.n == frame.N]
    assert (census.bayes_hi - census.bayes_lo).abs().max() == 0.0 and np.allclose(
        census.bayes_mean, census.truth, atol=1e-9
    )
    # the bootstrap of one response resamples that response only: zero width
    one = frame[frame.n == 1]
    assert (one.boot_hi - one.boot_lo).abs().max() == 0.0
    cells_table = first["cells"].set_index(["n", "N"])
    assert cells_table.loc[(5, 5), "bayes_cover"] == 1.0
    assert 0.5 < cells_table.loc[(1, 3), "bayes_cover"] <= 1.0
    assert "| n <= 5 |" in bs.report(first)
