"""HTML data docs of one validated batch: GX's validation-results pages and an index page.

Every value that came from data (unexpected values, value sets, reasons, batch ids, entity
names, record text) is HTML-escaped (``html.escape(..., quote=True)``) before it reaches a
page: GX's page templates do not escape the values they render, so a ``<script>`` received
in a field would otherwise run in the data docs. Values from data are also cut to
:data:`cxloop.gate.messages.SHOW_VALUE_MAX_CHARS` characters there.

The pages work offline (:func:`offline_page`): GX's templates load Bootstrap, jQuery, Vega and
fonts from CDNs and its logo from a web server, so a page opened without the network (or behind
a proxy) came out unstyled with a broken image. Every external stylesheet, script and image is
removed, the page's own scripts with them (they only drive those libraries), and GX's own data
docs stylesheet plus a small layout sheet are inlined. Each page names its batch and entity
("Data asset: <source> / <entity> (batch <id>)"), not "None".
"""

from __future__ import annotations

import copy
import html
import re
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
        # GX escapes this in one place and not in another (the title): only plain characters
        asset = f"{_plain(outcome.source)} / {_plain(name)} (batch {_plain(outcome.batch_id)})"
        shown.meta["batch_spec"] = {"data_asset_name": asset}
        page = folder / f"{name}.html"
        try:
            page.write_text(offline_page(view.render(renderer.render(shown))), encoding="utf-8")
            pages[name] = page.name
        except Exception as exc:  # noqa: BLE001 - docs are a convenience; the index still lists results
            pages[name] = None
            page.write_text(f"<p>GX rendering failed: {html.escape(str(exc))}</p>", encoding="utf-8")
    index = folder / "index.html"
    index.write_text(_summary_html(outcome, pages), encoding="utf-8")
    return index


_EXTERNAL = re.compile(
    r"<link\b[^>]*\bhref=[\"']?https?://[^>]*>"  # CDN stylesheets
    r"|<script\b[^>]*>.*?</script>"  # CDN libraries, and the inline scripts that drive them
    r"|<img\b[^>]*\bsrc=[\"']?https?://[^>]*>",  # GX's logo on its web server
    re.IGNORECASE | re.DOTALL,
)
_CSS_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.IGNORECASE)
#: What Bootstrap gave GX's templates, as far as a validation-results page uses it.
_LAYOUT_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#212529;line-height:1.5}
.navbar{display:flex;align-items:center;padding:0 1rem;background:#fff;border-bottom:1px solid #dee2e6}
.cx-brand{font-weight:600;font-size:1.1rem}
.container-fluid,.container{padding:0 1rem}.row{display:flex;flex-wrap:wrap;margin:0 -0.5rem}
[class*="col-"]{padding:0 0.5rem;box-sizing:border-box;flex:1 1 0}
.col-md-2,.col-lg-2{flex:0 0 16.6%;max-width:16.6%}.col-12{flex:0 0 100%}
.card{border:1px solid #dee2e6;border-radius:0.25rem;margin-bottom:1rem;background:#fff}
.card-header{padding:0.5rem 1rem;background:#f7f7f9;border-bottom:1px solid #dee2e6}
.card-body{padding:0.75rem 1rem}
table,.table{border-collapse:collapse;width:100%;margin-bottom:1rem}
th,td{border-top:1px solid #dee2e6;padding:0.3rem 0.5rem;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #dee2e6}
.table-sm th,.table-sm td{padding:0.2rem 0.4rem}
.text-success{color:#198754}.text-danger{color:#dc3545}.text-muted{color:#6c757d}
.badge{display:inline-block;padding:0.15em 0.4em;font-size:75%;border-radius:0.25rem;background:#e9ecef}
.badge-info{background:#0dcaf0}.badge-secondary{background:#6c757d;color:#fff}
.list-group{padding-left:0}.list-group-item{list-style:none;padding:0.3rem 0.6rem;border:1px solid #dee2e6}
.collapse:not(.show){display:block}.sticky{position:sticky;top:0}
.nav{display:flex;flex-direction:column;padding-left:0}.nav-link{display:block;padding:0.2rem 0.5rem}
.d-none{display:none}.d-md-block{display:block}.float-left{float:left}.m-0{margin:0}
.fas{font-style:normal}.fa-check-circle::before{content:"\\2714"}.fa-times::before{content:"\\2716"}
.fa-exclamation-triangle::before{content:"\\26A0"}
.alert{padding:0.5rem 1rem;border:1px solid #ffe69c;background:#fff3cd;border-radius:0.25rem}
"""


def _plain(text: object) -> str:
    """``text`` cut, with every character but letters, digits and ``._:+-`` shown as ``?``: safe
    in any HTML context, escaped or not."""
    return re.sub(r"[^A-Za-z0-9._:+-]", "?", str(text)[:SHOW_VALUE_MAX_CHARS])


def _gx_styles() -> str:
    """GX's own data docs stylesheet (shipped in the package), '' when it is not there."""
    try:
        import great_expectations

        path = Path(great_expectations.__file__).parent / "render/view/static/styles/data_docs_default_styles.css"
        css = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    return css


def offline_page(page: str) -> str:
    """A rendered GX page that needs nothing from the network: external stylesheets, scripts and
    images removed (the logo becomes text), the styles inlined."""
    page = _EXTERNAL.sub("", page)
    page = _CSS_URL.sub("none", page)  # GX's logo as a background, on its web server
    page = re.sub(
        r"<a\b[^>]*>\s*</a>", "<span class='cx-brand'>cxloop data docs (Great Expectations)</span>", page, count=1
    )
    style = "<style>" + _LAYOUT_CSS + "\n" + _CSS_URL.sub("none", _gx_styles()) + "</style>"
    return page.replace("</head>", style + "</head>", 1) if "</head>" in page else style + page


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
