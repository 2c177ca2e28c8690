"""The governance report: one self-contained HTML file that renders offline in headless
Chromium, and that (like every export and the BI snapshot) carries no personal data."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _warehouse_fixture import find_pii, pii_needles
from cxloop.serve.exports import MARTS, export_marts, min_n_group
from cxloop.serve.publish import publish_snapshot
from cxloop.serve.report import build_report, revenue_note
from plotly.offline import get_plotlyjs

pytestmark = pytest.mark.e2e

CHART_IDS = (
    "chart-nps-trend", "chart-coverage", "chart-response-rate", "chart-sla", "chart-revenue", "chart-renewal",
)
WINDOW_SIZE = "--window-size=1400,4600"  # every section of the page fits in one screenshot
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # no network at all: every host name fails to resolve, so nothing can be fetched
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
]
# Chromium's own background requests (time sync, updates, account check) that it logs even
# with the flags above; they fail to resolve. Anything else in the net log came from the page.
BROWSER_HOSTS = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)(/|$)")


@pytest.fixture(scope="module")
def report(demo_warehouse, tmp_path_factory):
    wh = demo_warehouse
    out = tmp_path_factory.mktemp("report")
    path = build_report(wh.settings, wh.as_of, "scheduled__2026-10-01", out, wh.build_report["invocation_id"])
    return wh, path


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.scripts = 0
        self.ids: dict[str, str] = {}
        self.text_outside_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "srcset", "data", "poster", "action"):
            if attrs.get(name):
                self.refs.append((tag, name, attrs[name]))
        if attrs.get("style"):
            self.text_outside_scripts.append(attrs["style"])
        if attrs.get("id"):
            self.ids[attrs["id"]] = attrs.get("class") or ""
        if tag == "script":
            self.scripts += 1
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if not self._in_script:
            self.text_outside_scripts.append(data)


def test_report_is_one_self_contained_file_with_plotly_embedded_once(report):
    _, path = report
    text = path.read_text(encoding="utf-8")
    plotly_js = get_plotlyjs()
    assert text.count(plotly_js) == 1, "plotly.js must be embedded exactly once"
    parser = _Refs()
    parser.feed(text)
    assert parser.refs == [], f"the report references other files or URLs: {parser.refs[:5]}"
    outside = "\n".join(parser.text_outside_scripts)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|url\(", outside, re.I)
    rest = text.replace(plotly_js, "")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", rest, re.I)
    assert "cdn" not in rest.lower()
    assert rest.count("Plotly.newPlot(") == len(CHART_IDS)
    assert all(chart in parser.ids for chart in CHART_IDS)
    print(f"\nreport {path.stat().st_size} bytes, plotly.js {len(plotly_js)} of them")  # noqa: T201


def _decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG as a (height, width, channels) array (stdlib zlib
    plus numpy; no imaging library needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum per channel
            cur = (np.cumsum(line.reshape(width, bpp).astype(np.int64), axis=0) % 256).astype(np.uint8).reshape(-1)
        elif kind == 2:  # Up
            cur = (line.astype(np.int64) + prev) % 256
            cur = cur.astype(np.uint8)
        else:  # Average / Paeth depend on the reconstructed left neighbour: one pass in Python
            cur_list = [0] * (width * bpp)
            line_l, prev_l = line.tolist(), prev.tolist()
            for i in range(width * bpp):
                a = cur_list[i - bpp] if i >= bpp else 0
                b = prev_l[i]
                if kind == 3:
                    cur_list[i] = (line_l[i] + ((a + b) >> 1)) & 0xFF
                else:
                    c = prev_l[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur_list[i] = (line_l[i] + pred) & 0xFF
            cur = np.array(cur_list, dtype=np.uint8)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def _colour_bands(image: np.ndarray, min_gap: int = 100) -> list[tuple[int, int, int]]:
    """Horizontal bands of the page that hold coloured (chart) pixels: (top, bottom, pixels).
    Text, rules and backgrounds are grey; plotted data (lines, bands, bars, heat cells) is
    coloured."""
    rgb = image.astype(np.int16)
    colourful = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    per_row = colourful.sum(axis=1)
    rows = np.flatnonzero(per_row > 0)
    bands: list[list[int]] = []
    for y in rows:
        if bands and y - bands[-1][1] <= min_gap:
            bands[-1][1] = y
        else:
            bands.append([y, y])
    return [(top, bottom, int(per_row[top : bottom + 1].sum())) for top, bottom in bands]


def _chromium(*args: str, user_data_dir: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_revenue_sections_show_the_marts_figures(report):
    """The revenue at risk and renewal sections quote governance_kpis and nps_renewal_outcomes
    as the warehouse holds them (the demo world has both a renewal window and decided renewals)."""
    from cxloop.serve.reader import WarehouseReader

    wh, path = report
    text = path.read_text(encoding="utf-8")
    with WarehouseReader(wh.settings) as reader:
        kpi = reader.df(
            """select value, n from marts.governance_kpis where kpi = 'arr_at_risk' and group_type = 'company'
               order by period_start desc limit 1"""
        )
        outcome = reader.df(
            """select renewal_rate, renewal_rate_ci_low, renewal_rate_ci_high, is_reportable
               from marts.nps_renewal_outcomes where account_class = 'promoter_minus_detractor'"""
        )
    arr, n = float(kpi.value.iloc[0]), int(kpi.n.iloc[0])
    diff = tuple(outcome.iloc[0]) if len(outcome) else None
    assert arr > 0 and diff is not None and diff[3], "the demo world should have renewals to show"
    if n >= min_n_group(wh.settings):
        assert f"ARR at risk: {arr:,.0f} across {n} accounts renewing soon" in text
    else:  # the governance rules suppress a KPI of fewer accounts than min_n, the figure too
        assert f"ARR at risk: not shown ({n} accounts, fewer than the minimum group size)." in text
        # not in the section's notes (the at-risk table may list an account of that very ARR)
        section = text[text.index("<h2>Does NPS predict renewal?</h2>"):]
        notes = section[section.index('<p class="note">'):section.index("</section>")]
        assert f"{arr:,.0f}" not in notes
    assert f"{100 * diff[0]:+.1f} points of renewal rate (95% Newcombe interval {100 * diff[1]:+.1f} to" in text


def test_revenue_note_quotes_a_reportable_kpi_and_names_a_suppressed_one():
    """Both ways of the ARR-at-risk line, on governed rows as the report receives them."""
    kpis = pd.DataFrame({
        "kpi": ["arr_at_risk", "arr_at_risk_rate", "arr_at_risk"],
        "group_type": ["company", "company", "segment"],
        "period_start": pd.to_datetime(["2026-07-01"] * 3),
        "value": [1573553.4, 0.381, 999.0],
        "n": [26, 42, 3],
    })
    outcomes = pd.DataFrame({
        "account_class": ["promoter_minus_detractor"], "renewal_rate": [0.698952],
        "renewal_rate_ci_low": [0.526686], "renewal_rate_ci_high": [0.807598],
    })
    text = revenue_note(kpis, outcomes)
    assert "ARR at risk: 1,573,553 across 26 accounts renewing soon (38.1% of the ARR renewing in the window)" in text
    assert "+69.9 points of renewal rate (95% Newcombe interval +52.7 to +80.8)" in text
    kpis.loc[0, "value"] = None  # what govern leaves of a KPI with n < min_n
    outcomes.loc[0, "renewal_rate"] = None
    text = revenue_note(kpis, outcomes)
    assert "ARR at risk: not shown (26 accounts, fewer than the minimum group size)." in text
    assert "1,573,553" not in text and "Promoter minus detractor: not reportable" in text


def test_report_renders_offline_in_headless_chromium(report, tmp_path):
    _, path = report
    if not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (Debian package `chromium`)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    url = path.resolve().as_uri()
    png = tmp_path / "report.png"
    netlog = tmp_path / "net.json"
    shot = _chromium(
        f"--screenshot={png}", WINDOW_SIZE, f"--log-net-log={netlog}", url,
        user_data_dir=tmp_path / "profile-shot",
    )
    assert png.exists(), shot.stderr[-3000:]
    dom = _chromium("--dump-dom", url, user_data_dir=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]

    # no console output at all: no uncaught error, no failed load, no plotly warning
    console = [line for line in (shot.stderr + dom.stderr).splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console[:10])

    # the page itself requested nothing from the network
    urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text(errors="replace"))) if netlog.exists() else set()
    remote = (u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:")))
    page_requests = sorted(u for u in remote if not BROWSER_HOSTS.match(u))
    assert page_requests == [], page_requests

    # plotly drew every chart: each chart div was turned into a plot with its SVG layers
    parser = _Refs()
    parser.feed(dom.stdout)
    for chart in CHART_IDS:
        assert "js-plotly-plot" in parser.ids.get(chart, ""), f"{chart} was not rendered by plotly"
    assert dom.stdout.count('class="main-svg"') >= 2 * len(CHART_IDS)
    assert dom.stdout.count('class="heatmaplayer') >= 1 or "hm" in dom.stdout

    # the screenshot shows four coloured chart areas (not blank boxes)
    image = _decode_png(png.read_bytes())
    assert image.shape[1] == 1400
    bands = [b for b in _colour_bands(image) if b[1] - b[0] >= 60]
    assert len(bands) >= len(CHART_IDS), f"expected {len(CHART_IDS)} chart areas with colour, found {bands}"
    for top, bottom, pixels in bands[: len(CHART_IDS)]:
        assert pixels / ((bottom - top + 1) * image.shape[1]) > 0.01, f"chart area {top}-{bottom} is nearly blank"
    print(f"\nchart areas (top, bottom, coloured pixels): {bands}")  # noqa: T201


def test_no_email_or_contact_name_in_any_export_the_report_or_the_snapshot(report, tmp_path):
    wh, path = report
    needles = pii_needles(wh.source_dir, wh.settings.warehouse_path)
    assert all(needles.values()), "the scan needs something to look for"
    folder = export_marts(wh.settings, tmp_path / "exports", as_of=wh.as_of, run_id="pii-scan")
    snapshot = publish_snapshot(wh.settings, wh.as_of, "pii-scan", target=tmp_path / "published" / "cx.duckdb")
    found: dict[str, list[str]] = {}
    # the account teams' worklists keep the CRM contact id of whom to call (and nothing else
    # about the person): scanned for everything but contact ids
    crm_ok = {k: v for k, v in needles.items() if k != "contact id"}
    worklists = sorted((folder / "worklists").glob("*.csv"))
    assert worklists, "the export writes one worklist per owner"
    for file in [*sorted(p for p in folder.iterdir() if p.is_file()), *worklists]:
        if file.suffix == ".parquet":
            text = pd.read_parquet(file).to_csv(index=False)
        else:
            text = file.read_text(encoding="utf-8")
        in_worklists = file.parent.name == "worklists"
        found[f"worklists/{file.name}" if in_worklists else file.name] = find_pii(
            text, crm_ok if in_worklists else needles
        )
    html_text = path.read_text(encoding="utf-8").replace(get_plotlyjs(), "")  # plotly's licence names its authors
    found[path.name] = find_pii(html_text, needles)
    import duckdb

    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        tables = con.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        dump = "\n".join(con.execute(f'select * from "{s}"."{t}"').df().to_csv(index=False) for s, t in tables)
    finally:
        con.close()
    # The BI snapshot is internal (the warehouse's audience): follow_up_sla keeps its
    # response-level rows there, so CSMs can work the call-back list by CRM contact id. Still no
    # e-mail address, e-mail hash, contact name or owner name.
    internal = {k: v for k, v in needles.items() if k not in {"contact id", "response id"}}
    found[snapshot.name] = find_pii(dump, internal)
    leaks = {name: hits[:5] for name, hits in found.items() if hits}
    assert leaks == {}, json.dumps(leaks, indent=2)
    # every export file (CSV and Parquet of each mart), the manifest, README and SHA256SUMS, the
    # report, the snapshot
    assert len(found) == 2 * len(MARTS) + 3 + len(worklists) + 1 + 1


def test_the_render_check_catches_a_report_whose_charts_did_not_draw(report, tmp_path):
    """The same checks on a copy without plotly.js: blank chart boxes and an uncaught error."""
    _, path = report
    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed")
    broken = tmp_path / "broken.html"
    broken.write_text(path.read_text(encoding="utf-8").replace(get_plotlyjs(), ""), encoding="utf-8")
    png = tmp_path / "broken.png"
    shot = _chromium(f"--screenshot={png}", WINDOW_SIZE, broken.as_uri(), user_data_dir=tmp_path / "p")
    assert any(":CONSOLE" in line and "Uncaught" in line for line in shot.stderr.splitlines())
    bands = [b for b in _colour_bands(_decode_png(png.read_bytes())) if b[1] - b[0] >= 60]
    assert len(bands) < len(CHART_IDS)
