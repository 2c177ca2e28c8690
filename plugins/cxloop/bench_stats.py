"""``make bench-stats``: is the account NPS interval honest for small accounts?

A calibration study of the three intervals an account NPS can carry (contract 3.3 and the
``bayes`` method of 3.1), on simulated accounts whose truth is known:

- adjusted Wald with the finite-population correction (the contract's interval, macros in
  ``dbt_project/macros/nps_math.sql``), point estimate the raw 100 (P - D) / n;
- ``bayes``: the Dirichlet-multinomial model of ``account_nps`` (macros in
  ``dbt_project/macros/nps_bayes.sql``): a Dirichlet prior per segment fitted by empirical
  Bayes (method of moments), responders known, non-responders from the posterior predictive,
  a normal interval from the closed-form posterior-predictive mean and variance of the
  eligible population's NPS, clipped to [-100, 100];
- a percentile bootstrap of the responses (B resamples), shrunk around the raw estimate by
  sqrt(fpc) so that it targets the same finite population.

Simulation: segments, each with its own Dirichlet of class shares (mean shares drawn from a
Dirichlet(2, 2, 2), concentration log-uniform in [1, 60]); per segment one account per grid
cell (eligible population N, responses n <= N); each account draws its true shares from the
segment's Dirichlet, its N contacts' classes from those shares (the finite population), and n
responders at random without replacement. The truth is the NPS of the account's N eligible
contacts. Bayes fits its prior on the segment's simulated accounts, exactly as the mart fits
it on a segment's responding accounts. All weights are 1 here (the role weights enter the
mart's formula only through W and Q; see docs/nps-calibration.md).

Measured per grid cell and per n band (n <= 5, 6-10, 11-20): coverage of the nominal 95%
interval (truth inside the closed interval), mean width in points, and the RMSE of the point
estimate. Census cells (n = N) are reported but left out of the band summaries: there the
truth is observed and every honest interval has width 0.

Pure numpy / pandas, one fixed seed: identical arguments give identical results. Output:
``bench/results/calibration-<UTC time>.md`` (and printed).

The Python maths here is the same formula as the SQL; ``tests/unit/test_bench_stats.py``
checks it against the literal expectations of the dbt unit tests in ``account_nps.yml`` and
``account_nps_prior.yml``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

Z = 1.96

# --- the model's constants (the same numbers as dbt_project/macros/nps_bayes.sql) ----------
DEFAULT_ALPHA = (1.0, 1.0, 1.0)  # weak default prior: uniform on the simplex (concentration 3)
MIN_ACCOUNTS = 10  # responding accounts a fit needs (segment, else all segments of the period)
S_MIN = 1.0  # concentration bounds of a fitted prior
S_MAX = 20.0
MEAN_PSEUDO = 0.5  # pseudo-responses per class in the fitted prior mean

SEED = 20261202
GRID_N = (3, 5, 10, 20, 40, 60)
GRID_SMALL_N = (1, 2, 3, 5, 8, 12, 20)
BANDS = (("n <= 5", 1, 5), ("n 6-10", 6, 10), ("n 11-20", 11, 20))


# =========================================================================================
# The model (vectorised; every argument broadcasts)
# =========================================================================================


@dataclass(frozen=True)
class PriorFit:
    alpha: np.ndarray  # (..., 3) promoter, passive, detractor
    rho: np.ndarray  # raw moment estimate of the intra-account correlation (nan when none)
    n_accounts: np.ndarray
    fitted: np.ndarray  # bool: the moment fit was usable (else the caller falls back)


def fit_prior(counts: np.ndarray, mask: np.ndarray | None = None) -> PriorFit:
    """Method-of-moments Dirichlet-multinomial fit over the accounts of the last-but-one axis.

    ``counts``: (..., m, 3) class counts (promoter, passive, detractor) of m accounts;
    ``mask``: (..., m) which accounts take part (default all with n >= 1).

    pi_k = (C_k + 0.5) / (T + 1.5), C_k the class total, T = sum n_i;
    X2 = sum_k (sum_i c_ik^2 / n_i) / pi_k - T   (Pearson statistic of the pooled mean);
    rho = (X2 / 2 - (m - 1)) / sum_i (n_i - 1)(1 - n_i / T);   E[X2] = 2 [(m - 1) + rho * that];
    s = (1 - rho) / rho clipped to [S_MIN, S_MAX] (s = S_MAX when rho <= 0);  alpha = s * pi.
    Usable when m >= MIN_ACCOUNTS and the denominator is > 0 (some account has n >= 2).
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=-1)
    if mask is None:
        mask = n >= 1
    mask = np.asarray(mask, dtype=bool) & (n >= 1)
    c = np.where(mask[..., None], counts, 0.0)
    n = np.where(mask, n, 0.0)
    m = mask.sum(axis=-1).astype(float)
    T = n.sum(axis=-1)
    C = c.sum(axis=-2)
    pi = (C + MEAN_PSEUDO) / (T[..., None] + 3 * MEAN_PSEUDO)
    safe_n = np.where(n > 0, n, 1.0)
    sq = (c**2 / safe_n[..., None]).sum(axis=-2)
    x2 = (sq / pi).sum(axis=-1) - T
    safe_T = np.where(T > 0, T, 1.0)
    denom = (np.where(mask, (n - 1) * (1 - n / safe_T[..., None]), 0.0)).sum(axis=-1)
    fitted = (m >= MIN_ACCOUNTS) & (denom > 1e-12)
    safe_denom = np.where(denom > 1e-12, denom, 1.0)
    rho = np.where(fitted, (x2 / 2.0 - (m - 1)) / safe_denom, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(rho > 0, (1 - rho) / np.where(rho > 0, rho, 1.0), S_MAX)
    s = np.clip(s, S_MIN, S_MAX)
    alpha = np.where(fitted[..., None], s[..., None] * pi, np.asarray(DEFAULT_ALPHA))
    return PriorFit(alpha=alpha, rho=rho, n_accounts=m, fitted=fitted)


def bayes_population_nps(
    promoters, passives, detractors, alpha, w_resp, s_resp, w_non, q_non
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Posterior-predictive mean, variance (points^2) and 95% interval of the eligible
    population's (role-weighted) NPS.

    Posterior shares theta ~ Dirichlet(a), a = alpha + (P, passive, D), A = sum a;
    mu_p = a_P / A, mu_d = a_D / A, e = mu_p - mu_d, g = mu_p + mu_d - e^2.
    Responders contribute their known sum S_R = sum w s over weight W_R; non-responders
    (weights w_j, W_M = sum w_j, Q_M = sum w_j^2) are drawn from the posterior predictive:
    E[Y] = W_M e,  Var[Y] = g (Q_M A + W_M^2) / (A + 1)   (Y = sum_j w_j s_j).
    nps = 100 (S_R + W_M e) / (W_R + W_M),  var_pts = 10000 Var[Y] / (W_R + W_M)^2,
    ci = nps -/+ 1.96 sqrt(var_pts) clipped to [-100, 100]. Unweighted: W = Q = count.
    """
    alpha = np.asarray(alpha, dtype=float)
    a_p = alpha[..., 0] + np.asarray(promoters, dtype=float)
    a_a = alpha[..., 1] + np.asarray(passives, dtype=float)
    a_d = alpha[..., 2] + np.asarray(detractors, dtype=float)
    A = a_p + a_a + a_d
    mu_p, mu_d = a_p / A, a_d / A
    e = mu_p - mu_d
    g = mu_p + mu_d - e**2
    w_resp, s_resp = np.asarray(w_resp, dtype=float), np.asarray(s_resp, dtype=float)
    w_non, q_non = np.asarray(w_non, dtype=float), np.asarray(q_non, dtype=float)
    W = w_resp + w_non
    mean = 100.0 * (s_resp + w_non * e) / W
    var_pts = 10000.0 * g * (q_non * A + w_non**2) / (A + 1.0) / W**2
    sd = np.sqrt(var_pts)
    return mean, var_pts, np.clip(mean - Z * sd, -100, 100), np.clip(mean + Z * sd, -100, 100)


def adjusted_wald_fpc(promoters, detractors, n, population):
    """The contract's interval (3.3): centre, var_pts, ci_low, ci_high."""
    P, D, n, N = (np.asarray(x, dtype=float) for x in (promoters, detractors, n, population))
    n2 = n + 3.0
    p, d = (P + 0.75) / n2, (D + 0.75) / n2
    fpc = np.where((N > 1) & (n <= N), (N - n) / np.where(N > 1, N - 1, 1.0), 1.0)
    var = (p + d - (p - d) ** 2) / n2 * fpc
    centre = p - d
    return (
        100.0 * centre,
        10000.0 * var,
        np.clip(100.0 * (centre - Z * np.sqrt(var)), -100, 100),
        np.clip(100.0 * (centre + Z * np.sqrt(var)), -100, 100),
    )


def bootstrap_fpc(promoters, passives, detractors, population, rng, resamples=1000, chunk=4000):
    """Percentile bootstrap of the raw NPS (resample the n responses with replacement), the
    2.5/97.5% quantiles shrunk around the raw estimate by sqrt(fpc). n = 1 gives width 0."""
    P, A, D = (np.asarray(x, dtype=np.int64).ravel() for x in (promoters, passives, detractors))
    N = np.asarray(population, dtype=float).ravel()
    n = P + A + D
    est = 100.0 * (P - D) / n
    lo, hi = np.empty(len(n)), np.empty(len(n))
    for start in range(0, len(n), chunk):
        sl = slice(start, start + chunk)
        nn = n[sl][:, None]
        p = (P[sl] / n[sl])[:, None]
        rest = np.where(P[sl] < n[sl], D[sl] / np.maximum(n[sl] - P[sl], 1), 0.0)[:, None]
        bp = rng.binomial(np.broadcast_to(nn, (len(nn), resamples)), np.broadcast_to(p, (len(nn), resamples)))
        bd = rng.binomial(nn - bp, np.broadcast_to(rest, bp.shape))
        boot = 100.0 * (bp - bd) / nn
        q_lo, q_hi = np.quantile(boot, [0.025, 0.975], axis=1)
        lo[sl], hi[sl] = q_lo, q_hi
    nf = n.astype(float)
    fpc = np.where((N > 1) & (nf <= N), (N - nf) / np.where(N > 1, N - 1, 1.0), 1.0)
    shrink = np.sqrt(fpc)
    return est, np.clip(est - shrink * (est - lo), -100, 100), np.clip(est + shrink * (hi - est), -100, 100)


def coverage(truth, low, high, tol=1e-9) -> float:
    """Share of cases whose truth lies inside the closed interval [low, high]."""
    truth, low, high = (np.asarray(x, dtype=float) for x in (truth, low, high))
    return float(np.mean((truth >= low - tol) & (truth <= high + tol)))


# =========================================================================================
# The simulation
# =========================================================================================


def grid(populations=GRID_N, responses=GRID_SMALL_N) -> list[tuple[int, int]]:
    """The (N, n) cells with n <= N."""
    return [(N, n) for N in populations for n in responses if n <= N]


def simulate(
    segments: int, cells: list[tuple[int, int]], rng: np.random.Generator, concentration_range=(1.0, 60.0)
) -> pd.DataFrame:
    """One account per cell per segment; returns one row per account with its counts, truth
    and the three methods' point estimates and intervals."""
    N = np.array([c[0] for c in cells])[None, :].repeat(segments, axis=0)
    n = np.array([c[1] for c in cells])[None, :].repeat(segments, axis=0)
    mean_shares = rng.dirichlet((2.0, 2.0, 2.0), size=segments)
    lo_s, hi_s = concentration_range
    concentration = np.exp(rng.uniform(np.log(lo_s), np.log(hi_s), size=segments))
    hyper = mean_shares * concentration[:, None]
    m = len(cells)
    # true shares of each account: gamma draws normalised (a Dirichlet per segment)
    gam = rng.gamma(np.broadcast_to(hyper[:, None, :], (segments, m, 3)))
    gam = np.maximum(gam, 1e-300)
    theta = gam / gam.sum(axis=-1, keepdims=True)
    # the finite population of N contacts, then n responders without replacement
    pop = rng.multinomial(N, theta)
    pop_p, pop_a, pop_d = pop[..., 0], pop[..., 1], pop[..., 2]
    c_p = rng.hypergeometric(pop_p, pop_a + pop_d, n)
    c_a = rng.hypergeometric(pop_a, pop_d, n - c_p)
    c_d = n - c_p - c_a
    truth = 100.0 * (pop_p - pop_d) / N

    counts = np.stack([c_p, c_a, c_d], axis=-1)
    prior = fit_prior(counts)
    alpha = np.broadcast_to(prior.alpha[:, None, :], (segments, m, 3))
    M = N - n
    b_mean, b_var, b_lo, b_hi = bayes_population_nps(c_p, c_a, c_d, alpha, n, c_p - c_d, M, M)
    w_centre, w_var, w_lo, w_hi = adjusted_wald_fpc(c_p, c_d, n, N)
    boot_est, boot_lo, boot_hi = bootstrap_fpc(c_p, c_a, c_d, N, rng)
    frame = pd.DataFrame(
        {
            "segment": np.repeat(np.arange(segments), m),
            "N": N.ravel(),
            "n": n.ravel(),
            "truth": truth.ravel(),
            "raw": (100.0 * (c_p - c_d) / n).ravel(),
            "wald_centre": w_centre.ravel(),
            "wald_lo": w_lo.ravel(),
            "wald_hi": w_hi.ravel(),
            "bayes_mean": b_mean.ravel(),
            "bayes_lo": b_lo.ravel(),
            "bayes_hi": b_hi.ravel(),
            "boot_lo": boot_lo.ravel(),
            "boot_hi": boot_hi.ravel(),
            "prior_s": np.repeat(prior.alpha.sum(axis=-1), m),
            "true_s": np.repeat(concentration, m),
        }
    )
    assert np.allclose(boot_est.ravel(), frame["raw"].to_numpy())
    return frame


METHODS = (
    # name, point column, low, high
    ("adjusted Wald + FPC", "raw", "wald_lo", "wald_hi"),
    ("bayes", "bayes_mean", "bayes_lo", "bayes_hi"),
    ("bootstrap + FPC", "raw", "boot_lo", "boot_hi"),
)


def summarise(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = []
    for key, g in frame.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        row["accounts"] = len(g)
        for name, point, lo, hi in METHODS:
            tag = {"adjusted Wald + FPC": "wald", "bayes": "bayes", "bootstrap + FPC": "boot"}[name]
            row[f"{tag}_cover"] = coverage(g["truth"], g[lo], g[hi])
            row[f"{tag}_width"] = float((g[hi] - g[lo]).mean())
            row[f"{tag}_rmse"] = float(np.sqrt(((g[point] - g["truth"]) ** 2).mean()))
        rows.append(row)
    return pd.DataFrame(rows)


def band_of(n: pd.Series) -> pd.Series:
    out = pd.Series("", index=n.index, dtype=object)
    for label, lo, hi in BANDS:
        out[(n >= lo) & (n <= hi)] = label
    return out


def _table(frame: pd.DataFrame, first: list[str]) -> str:
    head = first + [
        "accounts",
        "Wald cover",
        "Wald width",
        "Wald RMSE",
        "Bayes cover",
        "Bayes width",
        "Bayes RMSE",
        "boot cover",
        "boot width",
        "boot RMSE",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        cells = [
            str(int(r[c])) if isinstance(r[c], (int, float, np.integer, np.floating)) else str(r[c]) for c in first
        ] + [str(int(r["accounts"]))]
        for tag in ("wald", "bayes", "boot"):
            cells += [f"{100 * r[f'{tag}_cover']:.1f}%", f"{r[f'{tag}_width']:.1f}", f"{r[f'{tag}_rmse']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SCENARIOS = {
    # name: log-uniform range of the segments' true Dirichlet concentration
    "main": (1.0, 60.0),
    "stress": (0.3, 300.0),
}
TRUE_S_BANDS = ((0.0, 3.0), (3.0, 10.0), (10.0, 30.0), (30.0, 1e9))
S_LABELS = [f"[{lo:g}, {hi:g})" if hi < 1e9 else f">= {lo:g}" for lo, hi in TRUE_S_BANDS]


def _bands(sampled: pd.DataFrame) -> pd.DataFrame:
    present = [b[0] for b in BANDS if b[0] in set(sampled["band"])]
    return summarise(sampled, ["band"]).set_index("band").loc[present].reset_index()


def run(segments: int = 4000, seed: int = SEED, cells: list[tuple[int, int]] | None = None) -> dict:
    """The main scenario on ``segments`` segments, and the stress scenario (a far wider
    spread of true concentrations, outside the prior's bounds) on a quarter as many."""
    rng = np.random.default_rng(seed)
    cells = cells or grid()
    started = time.perf_counter()
    frame = simulate(segments, cells, rng, SCENARIOS["main"])
    stress = simulate(max(segments // 4, 1), cells, rng, SCENARIOS["stress"])
    sampled = frame[frame["n"] < frame["N"]].copy()
    sampled["band"] = band_of(sampled["n"])
    stressed = stress[stress["n"] < stress["N"]].copy()
    stressed["band"] = band_of(stressed["n"])
    stressed["true concentration"] = pd.cut(
        stressed["true_s"],
        [b[0] for b in TRUE_S_BANDS] + [TRUE_S_BANDS[-1][1]],
        right=False,
        labels=S_LABELS,
    ).astype(str)
    return {
        "frame": frame,
        "bands": _bands(sampled),
        "overall": summarise(sampled.assign(all="all n < N"), ["all"]),
        "cells": summarise(frame, ["n", "N"]),
        "stress_bands": _bands(stressed),
        "stress_by_s": summarise(stressed, ["true concentration"])
        .set_index("true concentration")
        .loc[lambda t: [label for label in S_LABELS if label in t.index]]
        .reset_index(),
        "elapsed_s": time.perf_counter() - started,
        "segments": segments,
        "stress_segments": max(segments // 4, 1),
        "seed": seed,
    }


def _cells(frame: pd.DataFrame) -> str:
    return ", ".join(f"(n={int(r.n)}, N={int(r.N)})" for r in frame.itertuples()) or "none"


def report(result: dict) -> str:
    frame = result["frame"]
    cells = result["cells"]
    bayes_cells = cells[cells["n"] < cells["N"]]
    low = bayes_cells[bayes_cells["bayes_cover"] < 0.93]
    high = bayes_cells[bayes_cells["bayes_cover"] > 0.97]
    lines = [
        "# Account NPS interval calibration (`make bench-stats`)",
        "",
        f"Seed {result['seed']}, {result['segments']} simulated segments x {len(cells)} (N, n) cells = "
        f"{len(frame)} accounts; {result['elapsed_s']:.1f} s. Nominal level 95%. Truth = NPS of the "
        "account's N eligible contacts (finite population). Width and RMSE in NPS points. "
        "Wald and bootstrap are scored on the raw NPS 100 (P - D) / n, Bayes on its posterior mean. "
        "Model and simulation: plugins/cxloop/bench_stats.py, docs/nps-calibration.md.",
        "",
        f"## Main scenario: true concentrations log-uniform in {SCENARIOS['main']}, by n band "
        "(census cells n = N left out)",
        "",
        _table(result["bands"], ["band"]),
        "",
        _table(result["overall"], ["all"]),
        "",
        f"Bayes coverage over the non-census cells: min {100 * bayes_cells['bayes_cover'].min():.1f}%, "
        f"max {100 * bayes_cells['bayes_cover'].max():.1f}%; below 93%: {_cells(low)}; above 97%: {_cells(high)}.",
        "",
        f"## Stress: true concentrations log-uniform in {SCENARIOS['stress']} ({result['stress_segments']} segments)",
        "",
        "Outside the fitted prior's bounds [1, 20] on both sides: very heterogeneous and very homogeneous segments.",
        "",
        _table(result["stress_bands"], ["band"]),
        "",
        _table(result["stress_by_s"], ["true concentration"]),
        "",
        "## Per grid cell (main scenario; census cells n = N included)",
        "",
        _table(cells, ["n", "N"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxloop.bench_stats", description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    result = run(args.segments, args.seed)
    text = report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"calibration-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.md"
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
