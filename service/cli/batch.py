"""`promptcache batch submit | status | results`: Message Batches through a running service.

These commands talk HTTP to `promptcache serve` (never to the data dir, which the server
owns). `--url` defaults to the configured `[server]` host and port; `--api-key` to the
`PROMPTCACHE_API_KEY` environment variable. `submit` reads a JSONL file of
`{"custom_id": ..., "params": {...}}` lines, prints the batch object as JSON and, unless
`--no-wait`, follows it with a progress bar on stderr until it ends. `results` writes the
results JSONL (to stdout or `--out`), in the order of the submitted custom_ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from service.cli.common import add_common, settings_from
from service.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PromptCacheError,
    RateLimited,
    UpstreamError,
)

_BY_STATUS: dict[int, type[PromptCacheError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `batch` and its three subcommands."""
    parser = subparsers.add_parser(
        "batch",
        help="submit Message Batches to a running service and collect their results",
        description="Message Batches, cache-first, through a running promptcache service.",
    )
    commands = parser.add_subparsers(dest="batch_command", required=True)
    submit = commands.add_parser("submit", help="submit a JSONL file of batch requests")
    submit.add_argument("file", type=Path, help='JSONL: {"custom_id": ..., "params": {...}}')
    submit.add_argument("--no-wait", action="store_true", help="print the batch and return")
    submit.add_argument("--poll", type=float, default=2.0, help="seconds between status checks")
    submit.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    status = commands.add_parser("status", help="print a batch object")
    status.add_argument("batch_id")
    results = commands.add_parser("results", help="write a batch's results as JSONL")
    results.add_argument("batch_id")
    results.add_argument("--out", type=Path, help="file to write (default: stdout)")
    for command in (submit, status, results):
        command.add_argument("--url", help="service URL (default: the configured host and port)")
        command.add_argument("--api-key", help="API key (default: $PROMPTCACHE_API_KEY)")
        add_common(command)
        command.set_defaults(func=run)


def read_requests(path: Path) -> list[dict[str, Any]]:
    """The batch requests of a JSONL file; blank lines are skipped, bad ones named."""
    requests: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise InvalidRequest(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(item, dict):
                raise InvalidRequest(f"{path}:{number}: expected a JSON object")
            requests.append(item)
    if not requests:
        raise InvalidRequest(f"{path}: no requests")
    return requests


class _Client:
    """The few calls the commands make, with errors turned into `service.errors`."""

    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._url = url.rstrip("/")
        self._http = httpx.Client(base_url=self._url, headers=headers, timeout=300)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach promptcache at {self._url}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = str(response.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                message = response.text[:200] or response.reason_phrase
            raise _BY_STATUS.get(response.status_code, UpstreamError)(message)
        return response


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    server = settings_from(args).server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    return f"http://{host}:{server.port}"


def _wait(client: _Client, batch: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    counts = batch["request_counts"]
    total = sum(counts.values())
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with tqdm(total=total, unit="req", desc=batch["id"], file=sys.stderr, disable=None) as bar:
        while True:
            bar.update(total - batch["request_counts"]["processing"] - bar.n)
            if batch["processing_status"] == "ended":
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch['id']} did not end in {args.timeout:g} s")
            time.sleep(max(args.poll, 0.01))
            batch = client.call("GET", f"/v1/messages/batches/{batch['id']}").json()


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    api_key = args.api_key or os.environ.get("PROMPTCACHE_API_KEY")
    with _Client(_url(args), api_key) as client:
        if args.batch_command == "submit":
            requests = read_requests(args.file)
            batch = client.call("POST", "/v1/messages/batches", {"requests": requests}).json()
            if not args.no_wait:
                batch = _wait(client, batch, args)
            out.write(json.dumps(batch, indent=2) + "\n")
        elif args.batch_command == "status":
            batch = client.call("GET", f"/v1/messages/batches/{args.batch_id}").json()
            out.write(json.dumps(batch, indent=2) + "\n")
        else:
            response = client.call("GET", f"/v1/messages/batches/{args.batch_id}/results")
            if args.out is not None:
                args.out.write_bytes(response.content)
            else:
                out.write(response.text)
    return 0
