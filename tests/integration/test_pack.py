"""The governance pack (cxloop.serve.pack): one offline page per section, accounts by name,
no contact data, escaped business text, deterministic outside the run block, and every page
drawn by real headless Chromium at 1400 px with no console error, no blank chart and no
colliding tick labels."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from _warehouse_fixture import find_pii, pii_needles, warehouse_copy
from cxloop.serve.exports import sha256_file
from cxloop.serve.pack import (
    OWNER_NAMES_ENV,
    PAGES,
    PLOTLY_FILE,
    _promoter_rows,
    build_pack,
    load_pack_data,
    render_pack,
)
from cxloop.serve.report import RUN_BLOCK_END, RUN_BLOCK_START

pytestmark = pytest.mark.e2e

PAGE_FILES = [f"{slug}.html" for slug, _ in PAGES]
BLOCK = re.compile(re.escape(RUN_BLOCK_START) + ".*?" + re.escape(RUN_BLOCK_END), re.S)
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">=HYPERLINK("http://x.test")'

# Run in each page after plotly drew: which charts have marks, which tick labels (or legend and
# tick labels) intersect, and whether injected markup ran. The verdict goes into the DOM for
# --dump-dom to carry out.
CHECK_JS = """
<script>
setTimeout(function () {
  function hit(a, b) { return a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5
                              && b.top < a.bottom - 0.5; }
  var out = {charts: {}, overlaps: [], pwned: window.__pwned || 0, width: window.innerWidth};
  document.querySelectorAll('div[id^="chart-"]').forEach(function (el) {
    var marks = 0;
    el.querySelectorAll('.cartesianlayer .scatterlayer path, .cartesianlayer .barlayer path').forEach(function (p) {
      var d = p.getAttribute('d') || ''; if (d.length > 4 && !/^M0,0Z?$/.test(d)) marks++; });
    out.charts[el.id] = {plotly: el.classList.contains('js-plotly-plot'),
                         svg: el.querySelectorAll('svg.main-svg').length, marks: marks};
    ['.xtick text', '.ytick text'].forEach(function (sel) {
      var boxes = Array.prototype.map.call(el.querySelectorAll(sel), function (t) { return t.getBoundingClientRect(); })
        .filter(function (r) { return r.width > 0; });
      for (var i = 0; i < boxes.length; i++) for (var j = i + 1; j < boxes.length; j++)
        if (hit(boxes[i], boxes[j])) out.overlaps.push(el.id + ' ' + sel + ' ' + i + '/' + j);
      var legend = el.querySelector('.legend');
      if (legend) { var l = legend.getBoundingClientRect();
        boxes.forEach(function (b, i) { if (hit(l, b)) out.overlaps.push(el.id + ' legend/' + sel + ' ' + i); }); }
    });
  });
  var pre = document.createElement('pre'); pre.id = 'pack-verdict'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 300);
</script>
"""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=6000",
    "--window-size=1400,1000",
]


@pytest.fixture(scope="module")
def pack(demo_warehouse, tmp_path_factory):
    wh = demo_warehouse
    folder = tmp_path_factory.mktemp("pack-export")
    (folder / "manifest.json").write_text("{}")
    return wh, build_pack(wh.settings, wh.as_of, "scheduled__pack-a", folder, "inv-a")


def _pages(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text(encoding="utf-8") for name in PAGE_FILES}


def test_every_page_exists_links_plotly_locally_and_is_in_the_manifest(pack):
    _, folder = pack
    assert sorted(p.name for p in folder.iterdir()) == sorted([*PAGE_FILES, PLOTLY_FILE])
    for name, text in _pages(folder).items():
        assert f'<script type="text/javascript" src="{PLOTLY_FILE}"></script>' in text, name
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I), f"{name} references the network"
        assert len(BLOCK.findall(text)) == 1, name
        assert all(f'href="{other}"' in text for other in PAGE_FILES), f"{name}: navigation incomplete"
    manifest = json.loads((folder.parent / "manifest.json").read_text())
    listed = {f["file"]: f["sha256"] for f in manifest["pack"]["files"]}
    assert listed == {f"pack/{p.name}": sha256_file(p) for p in folder.iterdir()}


def test_accounts_appear_by_name_and_no_contact_data_or_owner_name_does(pack):
    wh, folder = pack
    pages = _pages(folder)
    with duckdb.connect(str(wh.settings.warehouse_path)) as con:
        names = [
            r[0]
            for r in con.execute(
                """select distinct a.account_name from marts.account_nps n
               join staging.stg_crm__accounts a using (account_id)
               where n.survey_type = 'relationship'
                 and n.period_start = (select max(period_start) from marts.account_nps)
               order by 1"""
            ).fetchall()
        ]
    assert len(names) >= 10
    missing = [n for n in names if html.escape(n, quote=True) not in pages["account-nps.html"]]
    assert missing == [], missing
    needles = pii_needles(wh.source_dir, wh.settings.warehouse_path)
    assert all(needles.values())
    leaks = {name: find_pii(text, needles)[:5] for name, text in pages.items()}
    assert {k: v for k, v in leaks.items() if v} == {}
    # owners by CRM id and team unless the setting allows names
    assert "(Enterprise CSM)" in pages["owners.html"] or "CSM)" in pages["owners.html"]


def test_owner_names_only_when_the_setting_allows(pack, monkeypatch):
    wh, _ = pack
    data = load_pack_data(wh.settings, wh.as_of)
    owner_names = {str(n) for n in data["owners"].owner_name.dropna()}
    monkeypatch.setenv(OWNER_NAMES_ENV, "1")
    shown = render_pack(data, as_of=wh.as_of, run_id="r")["owners.html"]
    assert any(html.escape(n) in shown for n in owner_names)
    monkeypatch.setenv(OWNER_NAMES_ENV, "0")
    hidden = render_pack(data, as_of=wh.as_of, run_id="r")["owners.html"]
    assert not any(html.escape(n) in hidden for n in owner_names)


def test_two_builds_are_byte_identical_outside_the_run_block(pack, tmp_path):
    wh, folder = pack
    other = build_pack(wh.settings, wh.as_of, "manual__pack-b", tmp_path, "inv-b")
    assert (other / PLOTLY_FILE).read_bytes() == (folder / PLOTLY_FILE).read_bytes()
    for name, text in _pages(folder).items():
        again = (other / name).read_text(encoding="utf-8")
        assert "manual__pack-b" in BLOCK.search(again).group(0)
        assert BLOCK.sub("", again) == BLOCK.sub("", text), name
        assert "pack-a" not in BLOCK.sub("", text)


# Independent of the marts the pack reads (portfolio_nps, account_nps): the latest period's
# counted relationship responses and the accounts' attributes at its close, straight from the
# intermediate models; an account is a promoter account when its role-weighted mean raw score
# is 9 or more (contract 3.2), a decision maker a promoter when the counted score class is.
PROMOTERS_SQL = """
with latest as (select max(period_start) as p from marts.account_nps where survey_type = 'relationship'),
counted as (
    select r.account_id, r.buying_role, r.nps_score, r.score_class
    from intermediate.int_responses_counted r join latest on r.period_start = latest.p
    where r.survey_type = 'relationship'),
attrs as (
    select a.account_id, coalesce(a.segment, 'unknown') as segment, a.owner_id
    from intermediate.int_account_periods a join latest on a.period_start = latest.p),
weighted as (
    select counted.account_id, sum(w.weight * counted.nps_score) / sum(w.weight) as m
    from counted join seeds.role_weights w on w.role = case
        when counted.buying_role in (select role from seeds.role_weights) then counted.buying_role else 'other' end
    group by counted.account_id),
accounts as (
    select coalesce(attrs.{dim}, 'unknown') as g, count(*) as n_accounts, count(*) filter (where m >= 9) as pa
    from weighted left join attrs using (account_id) group by 1),
dms as (
    select coalesce(attrs.{dim}, 'unknown') as g, count(*) as n_dm,
           count(*) filter (where counted.score_class = 'promoter') as pdm
    from counted left join attrs using (account_id)
    where counted.buying_role = 'decision_maker' group by 1)
select g, n_accounts, pa, coalesce(n_dm, 0) as n_dm, coalesce(pdm, 0) as pdm
from accounts full join dms using (g) order by g
"""


@pytest.mark.parametrize("min_n", [5, 8])
def test_where_the_promoters_are_agrees_with_an_independent_count_and_suppresses_small_groups(pack, min_n):
    wh, _ = pack
    data = load_pack_data(wh.settings, wh.as_of, min_n=min_n)
    groups = _promoter_rows(data)
    with duckdb.connect(str(wh.settings.warehouse_path), read_only=True) as con:
        expected = {dim: con.execute(PROMOTERS_SQL.format(dim=dim)).fetchall() for dim in ("segment", "owner_id")}
    checked = suppressed = 0
    for group_type, dim in (("segment", "segment"), ("owner", "owner_id")):
        rows = {r["label"]: r for r in groups[group_type]}
        assert len(rows) == len(expected[dim]) >= 2, (group_type, sorted(rows))
        for value, n_accounts, pa, n_dm, pdm in expected[dim]:
            label = value if group_type == "segment" else next(k for k in rows if k.startswith(f"{value} ("))
            r = rows[label]
            assert (r["n_accounts"], r["dm_respondents"]) == (n_accounts, n_dm), label
            if n_dm < min_n:
                assert r["dm_suppressed"] and r["promoter_dms"] is None and r["dm_share"] is None, label
                suppressed += 1
            else:
                assert r["promoter_dms"] == pdm and r["dm_share"] == pytest.approx(pdm / n_dm), label
            if r["account_suppressed"]:
                assert r["promoter_accounts"] is None and r["account_share"] is None
                suppressed += 1
            else:
                assert n_accounts >= min_n and r["promoter_accounts"] == pa, label
            checked += 1
    assert checked >= 5
    if min_n == 8:
        assert suppressed >= 1, "some group of the demo is under 8 respondents"
    page = render_pack(data, as_of=wh.as_of, run_id="r")["account-nps.html"]
    section = page[page.index("<h2>Where the promoters are</h2>") :].split("</section>")[0]
    for r in groups["segment"]:
        cell = "suppressed" if r["dm_suppressed"] else str(r["promoter_dms"])
        assert f"<td>{html.escape(r['label'])}</td>" in section and f'<td class="num">{cell}</td>' in section
    assert 'id="chart-promoters-0"' in section and 'id="chart-promoters-1"' in section


@pytest.fixture(scope="module")
def hostile_pack(demo_warehouse, tmp_path_factory):
    """A copy of the warehouse where an account with NPS in the latest period is named with
    markup and a spreadsheet formula."""
    var = tmp_path_factory.mktemp("pack-hostile")
    settings = warehouse_copy(demo_warehouse, var)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        account = con.execute(
            """select account_id from marts.account_nps where survey_type = 'relationship' and nps is not null
               and period_start = (select max(period_start) from marts.account_nps) order by account_id limit 1"""
        ).fetchone()[0]
        # the pack reads names from the account dimension mart (marts/directory), never staging
        con.execute("update marts.account_directory set account_name = ? where account_id = ?", [PAYLOAD, account])
        con.execute("update raw.follow_ups set closed_at = null where account_id = ?", [account])
    folder = build_pack(settings, demo_warehouse.as_of, "hostile", var / "export")
    return folder


def test_a_hostile_account_name_is_escaped(hostile_pack):
    pages = _pages(hostile_pack)
    escaped = html.escape(PAYLOAD, quote=True)
    assert escaped in pages["account-nps.html"]
    for name, text in pages.items():
        assert "window.__pwned=1</script>" not in text and "<img src=x" not in text, name


def _control_page(folder: Path) -> Path:
    """A page of the pack's own layout with one crowded chart (long unrotated category labels)
    and one empty chart: the browser check must flag both."""
    import plotly.graph_objects as go
    from cxloop.serve.pack import _chart, _legend_above, _page

    crowded = go.Figure(go.Bar(x=[f"a rather long category label {i}" for i in range(40)], y=list(range(40))))
    crowded.update_xaxes(tickangle=0)
    body = _chart(_legend_above(crowded, "crowded", 400), "crowded") + _chart(_legend_above(go.Figure(), "e", 300), "e")
    path = folder / "_control.html"
    path.write_text(_page("index", "control", body, as_of=datetime(2026, 10, 1), min_n=5, run_meta=""), "utf-8")
    return path


def _chromium_verdict(page: Path, profile: Path) -> tuple[dict | None, list[str], str]:
    check = page.with_name(f"_check-{page.name}")
    check.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_JS + "</body>"), encoding="utf-8")
    run = subprocess.run(
        [shutil.which("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", check.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    check.unlink()
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    found = re.search(r'<pre id="pack-verdict">(.*?)</pre>', run.stdout, re.S)
    return (json.loads(html.unescape(found.group(1))) if found else None), console, run.stderr[-2000:]


def test_every_page_renders_in_headless_chromium_at_1400px(pack, hostile_pack, tmp_path):
    if not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (Debian package `chromium`)")
        pytest.skip("chromium is not installed")
    _, folder = pack
    jobs = [folder / name for name in PAGE_FILES] + [
        hostile_pack / "account-nps.html",
        hostile_pack / "follow-ups.html",
    ]
    jobs.append(_control_page(hostile_pack))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda ip: _chromium_verdict(ip[1], tmp_path / f"profile-{ip[0]}"), enumerate(jobs)))
    # the check itself can fail: the control page's crowded axis and empty chart are caught
    verdict, _, stderr = results.pop()
    jobs.pop()
    assert verdict is not None, stderr
    assert verdict["charts"]["chart-e"]["marks"] == 0 and verdict["charts"]["chart-crowded"]["marks"] > 0
    assert any(o.startswith("chart-crowded .xtick text") for o in verdict["overlaps"]), verdict["overlaps"][:3]
    charts_total = 0
    for page, (verdict, console, stderr) in zip(jobs, results, strict=True):
        label = f"{page.parent.name}/{page.name}"
        assert verdict is not None, f"{label}: no verdict\n{stderr}"
        assert console == [], f"{label}: console output {console[:5]}"
        assert verdict["width"] == 1400
        assert verdict["pwned"] == 0, f"{label}: injected markup ran"
        expected = len(re.findall(r'<div id="chart-', page.read_text(encoding="utf-8")))
        assert len(verdict["charts"]) == expected
        for chart, info in verdict["charts"].items():
            assert info["plotly"] and info["svg"] >= 1, f"{label} {chart} not drawn by plotly"
            assert info["marks"] > 0, f"{label} {chart} is blank"
        assert verdict["overlaps"] == [], f"{label}: overlapping labels {verdict['overlaps'][:5]}"
        charts_total += expected
    # every section page with data has charts (the index and the data-quality tables aside)
    assert charts_total >= 20
