"""HTML data docs of one validated batch: GX's validation-results pages and an index page.

Every value that came from data (unexpected values, value sets, reasons, batch ids, entity
names, record text) is HTML-escaped (``html.escape(..., quote=True)``) before it reaches a
page: GX's page templates do not escape the values they render, so a ``<script>`` received
in a field would otherwise run in the data docs. Values from data are also cut to
:data:`cxloop.gate.messages.SHOW_VALUE_MAX_CHARS` characters there.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxloop.gate.messages import SHOW_VALUE_MAX_CHARS
from cxloop.gate.outcome import ValidationOutcome
from cxloop.store.base import RESULT_COLUMNS


def build_data_docs(outcome: ValidationOutcome, folder: str | Path) -> Path:
    """Write GX Data Docs pages (one validation-results page per entity, rendered by GX's own
    ValidationResultsPageRenderer + DefaultJinjaPageView) and an index page with the gate's
    result table, reconciliation counts and quarantine sample, into ``folder``.

    Long value sets (the parent keys of reference checks) are shortened in the rendered pages.
    Returns the index page's path."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pages = {}
    renderer = ValidationResultsPageRenderer()
    view = DefaultJinjaPageView()
    for name, result in outcome.gx_results.items():
        shown = copy.deepcopy(result)
        for r in shown.results:
            vs = r.expectation_config.kwargs.get("value_set")
            if isinstance(vs, list) and len(vs) > 20:
                r.expectation_config.kwargs["value_set"] = sorted(map(str, vs))[:20] + [
                    f"... ({len(vs)} keys)"
                ]
            if isinstance(r.result, dict):
                for k in ("unexpected_list", "unexpected_index_list", "partial_unexpected_index_list"):
                    if isinstance(r.result.get(k), list) and len(r.result[k]) > 50:
                        r.result[k] = r.result[k][:50]
                r.result = _safe(r.result)
            kwargs = r.expectation_config.kwargs
            for k in list(kwargs):
                if k not in _SUITE_NAMES:
                    kwargs[k] = _safe(kwargs[k])
            if r.expectation_config.meta:
                r.expectation_config.meta = _safe(dict(r.expectation_config.meta))
            r.exception_info = _safe(r.exception_info)
        shown.meta = _safe(dict(shown.meta or {}))
        page = folder / f"{name}.html"
        try:
            page.write_text(view.render(renderer.render(shown)), encoding="utf-8")
            pages[name] = page.name
        except Exception as exc:  # noqa: BLE001 - docs are a convenience; the index still lists results
            pages[name] = None
            page.write_text(f"<p>GX rendering failed: {html.escape(str(exc))}</p>", encoding="utf-8")
    index = folder / "index.html"
    index.write_text(_summary_html(outcome, pages), encoding="utf-8")
    return index


_SUITE_NAMES = ("column", "column_A", "column_B", "column_list", "column_set")  # names from the suite, not data


def _escape(text: str) -> str:
    if len(text) > SHOW_VALUE_MAX_CHARS:
        text = text[:SHOW_VALUE_MAX_CHARS] + "..."
    return html.escape(text, quote=True)


def _safe(v: Any) -> Any:
    """v with every string in it (keys too) cut and HTML-escaped; other values unchanged."""
    if isinstance(v, str):
        return _escape(v)
    if isinstance(v, Mapping):
        return {(_escape(k) if isinstance(k, str) else k): _safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_safe(x) for x in v)
    return v


def _summary_html(outcome: ValidationOutcome, pages: Mapping[str, str | None]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>cxloop validation {esc(outcome.batch_id)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.fail{background:#fdd}.warn{background:#ffd}</style>",
        "</head><body>",
        f"<h1>Batch {esc(outcome.batch_id)} ({esc(outcome.source)})</h1>",
        f"<p>as_of {esc(str(outcome.as_of))}, checked at {esc(str(outcome.checked_at))}</p>",
        "<h2>Reconciliation</h2><table><tr><th>entity</th><th>received</th><th>loaded</th>"
        "<th>quarantined</th><th>GX Data Docs</th></tr>",
    ]
    for name, c in outcome.counts.items():
        link = pages.get(name)
        cell = f"<a href='{esc(link)}'>{esc(link)}</a>" if link else ""
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{c['received']}</td><td>{c['loaded']}</td>"
            f"<td>{c['quarantined']}</td><td>{cell}</td></tr>"
        )
    parts.append("</table><h2>Expectations</h2><table><tr>")
    parts.extend(f"<th>{esc(c)}</th>" for c in RESULT_COLUMNS[2:9])
    parts.append("</tr>")
    for r in outcome.results.itertuples(index=False):
        cls = "" if r.success else (" class='fail'" if r.severity == "error" else " class='warn'")
        column = r.column if isinstance(r.column, str) and r.column else "(whole table)"  # not NaN/None
        cells = [r.entity, r.expectation, column, r.severity, r.success, r.rows_checked, r.unexpected_count]
        parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(str(x))}</td>" for x in cells) + "</tr>")
    parts.append("</table><h2>Quarantine (first 200 rows)</h2><table><tr>")
    qcols = ["entity", "primary_key", "row_number", "field", "expectation", "reason"]
    parts.extend(f"<th>{c}</th>" for c in qcols)
    parts.append("</tr>")
    for r in outcome.quarantine.head(200).itertuples(index=False):
        parts.append("<tr>" + "".join(f"<td>{esc(str(getattr(r, c)))}</td>" for c in qcols) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
