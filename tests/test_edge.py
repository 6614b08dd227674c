"""The HTTP edge over loopback: encoded bodies, HEAD and 405s, clients that leave mid-body."""

from __future__ import annotations

import gzip
import json
import logging
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from service.config import Settings
from service.ledger import Ledger
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def url(settings: Settings, embedder: CountingEmbedder) -> Iterator[str]:
    with running(create_app(settings, embedder=embedder)) as base:
        yield base


def test_a_compressed_body_is_refused_with_a_reason_not_decoded(url: str) -> None:
    body = gzip.compress(json.dumps({"prompt": "hi", "model": "claude-sonnet-4-6"}).encode())
    for path in ("/v1/messages", "/v1/cache/lookup"):
        reply = httpx.post(
            url + path,
            content=body,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
        assert reply.status_code == 415
        error = reply.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert "Content-Encoding 'gzip' is not supported" in error["message"]
        assert "uncompressed" in error["message"]
    plain = httpx.post(
        url + "/v1/cache/lookup",
        json={"prompt": "hi", "model": "claude-sonnet-4-6"},
        headers={"content-encoding": "identity"},
    )
    assert plain.status_code == 200


def test_head_answers_as_get_and_a_405_names_every_allowed_method(url: str) -> None:
    head = httpx.head(url + "/healthz")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(httpx.get(url + "/healthz").content)
    assert httpx.head(url + "/v1/cache/stats").status_code == 200
    expected = {
        "/v1/messages": "POST",
        "/healthz": "GET, HEAD",
        "/v1/cache/stats": "GET, HEAD",
        "/v1/messages/batches": "GET, HEAD, POST",  # two routes at one path
    }
    for path, allow in expected.items():
        for method in ("OPTIONS", "PUT"):
            reply = httpx.request(method, url + path)
            assert reply.status_code == 405, (method, path)
            assert reply.headers["allow"] == allow
            assert reply.json()["error"]["type"] == "invalid_request_error"
    assert httpx.head(url + "/v1/messages").headers["allow"] == "POST"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += " [traceback]"
        self.lines.append(f"{record.name}: {text}")


def test_a_client_that_leaves_mid_body_is_one_log_line_and_no_row(
    url: str, settings: Settings
) -> None:
    records = Records()
    watched = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "service")]
    old_levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(records)
        logger.setLevel(logging.INFO)
    try:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b'content-length: 1000\r\n\r\n{"model": "claude-'
            )
        deadline = time.monotonic() + 10
        while not any("left before its body" in line for line in records.lines):
            assert time.monotonic() < deadline, records.lines
            time.sleep(0.02)
        assert httpx.get(url + "/healthz").status_code == 200  # and the request has ended
    finally:
        for logger, level in zip(watched, old_levels, strict=True):
            logger.removeHandler(records)
            logger.setLevel(level)
    assert not [line for line in records.lines if "traceback" in line or "Exception" in line]
    with Ledger(settings.ledger_path) as ledger:
        assert ledger.rows(0, math.inf) == []
