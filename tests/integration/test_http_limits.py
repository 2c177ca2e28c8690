"""The HTTP layer's response-size limit against a real loopback server: a declared Content-Length
over the limit, a chunked body that crosses it, and a gzip bomb (small on the wire, large once
inflated) are each refused with one line naming the source, the endpoint and the limit, never the
body; a body under the limit is read whole."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cxloop.extract.http_client import HttpClient, SourceHTTPError

LIMIT = 64 * 1024
SECRET = b"CANARY-BODY-" * 8


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/small"):
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/declared"):
            body = SECRET * (2 * LIMIT // len(SECRET))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = SECRET * 64
            try:
                for _ in range(4 * LIMIT // len(piece)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path.startswith("/gzip"):
            body = gzip.compress(SECRET + b"\0" * (50 * LIMIT))  # ~5 KB on the wire, 3.2 MB inflated
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _client(base):
    return HttpClient(base, "token-not-shown", source="qualtrics", max_response_bytes=LIMIT)


def test_a_body_under_the_limit_is_read_whole(server):
    assert _client(server).get("small").content == b'{"ok": true}'


@pytest.mark.parametrize("path", ["declared", "chunked", "gzip"])
def test_a_body_over_the_limit_is_refused_in_one_line(server, path):
    expected = rf"qualtrics: response body larger than the limit response_bytes={LIMIT}"
    with pytest.raises(SourceHTTPError, match=expected):
        _client(server).get(path)
    try:
        _client(server).get(path)
    except SourceHTTPError as exc:
        text = str(exc)
    assert f"/{path}" in text, "the endpoint is named"
    assert "CANARY" not in text and "token-not-shown" not in text, "neither the body nor the token is quoted"
    assert "\n" not in text


# --------------------------------------------------------------------------- Qualtrics export zips


def _export_zip(document: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("survey.json", document)
    return buf.getvalue()


def test_an_export_under_the_limits_yields_its_responses():
    from cxloop.extract.qualtrics import iter_export
    from cxloop.source_config import Limits

    doc = b'{"responses": [{"responseId": "R_1", "values": {"QID1": 9}}]}'
    got = list(iter_export(_export_zip(doc), "SV_1", Limits()))
    assert [r["responseId"] for r in got] == ["R_1"]


def test_a_zip_bomb_is_refused_on_its_ratio_in_bounded_memory():
    import tracemalloc

    from cxloop.extract.qualtrics import iter_export
    from cxloop.source_config import Limits

    bomb = _export_zip(b'{"responses": [{"responseId": "R_1", "pad": "' + b"0" * (200 * 1024 * 1024) + b'"}]}')
    assert len(bomb) < 1024 * 1024  # under a megabyte on the wire, 200 MB inflated
    tracemalloc.start()
    with pytest.raises(SourceHTTPError, match=r"qualtrics: export member survey.json declares \d+ bytes from \d+ "
                       r"compressed: beyond the limit compression_ratio=200; refused"):
        list(iter_export(bomb, "SV_1", Limits()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 1024 * 1024, f"refusing the bomb took {peak / 1e6:.0f} MB"


def test_an_export_past_the_uncompressed_limit_is_refused():
    from cxloop.extract.qualtrics import iter_export
    from cxloop.source_config import Limits

    doc = b'{"responses": [' + b",".join(b'{"responseId": "R_%d"}' % i for i in range(5000)) + b"]}"
    with pytest.raises(SourceHTTPError, match=r"more than the limit uncompressed_bytes=1000; refused"):
        list(iter_export(_export_zip(doc), "SV_1", Limits(uncompressed_bytes=1000)))


def test_export_numbers_keep_their_text_so_the_gate_judges_them():
    """An oversized score, a NaN and an inexact float in a Qualtrics export land as their literal
    text (no OverflowError, no null, no rounding to 7), and the gate then rejects each one."""
    import pandas as pd
    from cxloop.extract.qualtrics import iter_export
    from cxloop.gate.coerce import coerce_column
    from cxloop.source_config import Limits

    doc = (
        b'{"responses": [{"responseId": "R_1", "values": {"QID1": 12345678901234567890123}},'
        b' {"responseId": "R_2", "values": {"QID1": NaN}},'
        b' {"responseId": "R_3", "values": {"QID1": 6.9999999999999999}},'
        b' {"responseId": "R_4", "values": {"QID1": 9}}]}'
    )
    scores = [r["values"]["QID1"] for r in iter_export(_export_zip(doc), "SV_1", Limits())]
    assert [str(s) for s in scores] == ["12345678901234567890123", "NaN", "6.9999999999999999", "9"]
    typed, failed = coerce_column(pd.Series([str(s) for s in scores], dtype=object), "int")
    assert failed.tolist() == [True, True, True, False]
    assert typed.iloc[3] == 9
