"""The on-disk layout of a saved index: `index.faiss` plus `manifest.json`, and the load errors.

The manifest pins the index to the embedding model that made its vectors (model id, dim,
metric) and to the exact index file it was saved with (sha256), so a reader can tell a good
pair from a damaged file, an interrupted save or vectors from another model. Both files are
replaced atomically and the manifest last: a crash between the two renames leaves a new index
file beside the old manifest, which the checksum exposes. This module needs no FAISS, so the
CLI can read a manifest without loading the index.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
METRIC = "cosine"

IndexKind = Literal["flat", "hnsw", "ivf"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Temp files older than this are leftovers of a crashed save, not a save in progress.
_STALE_TEMP_SECONDS = 3600.0


class IndexLoadError(Exception):
    """The saved index cannot be used as it is; the entry store can always rebuild it."""

    def __init__(self, directory: Path, reason: str) -> None:
        reason = " ".join(reason.split())  # one readable line, whatever the cause said
        super().__init__(f"index in {directory}: {reason}")
        self.directory = directory
        self.reason = reason


class IndexMissing(IndexLoadError):
    """Nothing was ever saved there (neither file exists): build a fresh index."""


class IndexCorrupt(IndexLoadError):
    """Unreadable, damaged, half-saved or of an unknown format: rebuild from the store."""


class IndexModelMismatch(IndexLoadError):
    """The vectors were made by another model (or dimension) than the configured one.

    Rebuilding from the stored embeddings would not help: the entries must be re-embedded.
    """

    def __init__(
        self,
        directory: Path,
        *,
        found_model_id: str,
        expected_model_id: str,
        found_dim: int,
        expected_dim: int,
    ) -> None:
        super().__init__(
            directory,
            f"built with model {found_model_id!r} (dim {found_dim}) but model "
            f"{expected_model_id!r} (dim {expected_dim}) is configured; "
            "re-embed the entries to rebuild it",
        )
        self.found_model_id = found_model_id
        self.expected_model_id = expected_model_id
        self.found_dim = found_dim
        self.expected_dim = expected_dim


@dataclass(frozen=True)
class Manifest:
    format_version: int
    model_id: str
    dim: int
    metric: str
    kind: IndexKind
    count: int  # live entries, excluding HNSW tombstones
    index_sha256: str
    saved_at: str  # ISO 8601, UTC

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and validate; raise `ValueError` naming the first problem."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"manifest.json is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ValueError("manifest.json is not a JSON object")
        version = _field(raw, "format_version", int)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported format_version {version} (this build reads {FORMAT_VERSION})"
            )
        manifest = cls(
            format_version=version,
            model_id=_field(raw, "model_id", str),
            dim=_field(raw, "dim", int),
            metric=_field(raw, "metric", str),
            kind=_field(raw, "kind", str),  # checked against INDEX_KINDS below
            count=_field(raw, "count", int),
            index_sha256=_field(raw, "index_sha256", str),
            saved_at=_field(raw, "saved_at", str),
        )
        if not manifest.model_id:
            raise ValueError("manifest model_id is empty")
        if manifest.dim < 1 or manifest.count < 0:
            raise ValueError(f"manifest dim {manifest.dim} / count {manifest.count} out of range")
        if manifest.metric != METRIC:
            raise ValueError(f"manifest metric is {manifest.metric!r}, expected {METRIC!r}")
        if manifest.kind not in INDEX_KINDS:
            raise ValueError(f"manifest kind is {manifest.kind!r}, expected one of {INDEX_KINDS}")
        if not _SHA256_HEX.fullmatch(manifest.index_sha256):
            raise ValueError("manifest index_sha256 is not a sha256 hex digest")
        try:
            datetime.fromisoformat(manifest.saved_at)
        except ValueError as exc:
            raise ValueError(f"manifest saved_at {manifest.saved_at!r} is not an ISO time") from exc
        return manifest


def _field(raw: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = raw.get(name)
    # bool is an int subclass; `"dim": true` is still a broken manifest.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"manifest field {name!r} is missing or not of type {kind.__name__}")
    return value


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the index saved in `directory`.

    Raises `IndexMissing` when neither file exists, `IndexCorrupt` for a half-saved pair
    (one file without the other) or a manifest that does not parse.
    """
    manifest_path = directory / MANIFEST_FILE
    index_exists = (directory / INDEX_FILE).exists()
    try:
        data = manifest_path.read_bytes()
    except FileNotFoundError:
        if index_exists:
            raise IndexCorrupt(directory, f"{INDEX_FILE} exists without {MANIFEST_FILE}") from None
        raise IndexMissing(directory, "no saved index") from None
    except OSError as exc:
        raise IndexCorrupt(directory, f"cannot read {MANIFEST_FILE}: {exc.strerror}") from exc
    try:
        manifest = Manifest.from_json(data)
    except ValueError as exc:
        raise IndexCorrupt(directory, str(exc)) from exc
    if not index_exists:
        raise IndexCorrupt(directory, f"{MANIFEST_FILE} exists but {INDEX_FILE} is missing")
    return manifest


def temp_path(directory: Path, final_name: str) -> Path:
    """A fresh temp file beside `final_name`, so `os.replace` stays on one filesystem."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{final_name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def commit_file(temp: Path, final: Path) -> None:
    """Make `temp` durable, rename it over `final`, and make the rename durable."""
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically replace `manifest.json`; call only after the index file is committed."""
    temp = temp_path(directory, MANIFEST_FILE)
    try:
        temp.write_bytes(manifest.to_json())
        commit_file(temp, directory / MANIFEST_FILE)
    finally:
        temp.unlink(missing_ok=True)


def remove_stale_temps(directory: Path) -> None:
    """Delete temp files that crashed saves left behind (a large index makes large ones)."""
    cutoff = time.time() - _STALE_TEMP_SECONDS
    for final_name in (INDEX_FILE, MANIFEST_FILE):
        for path in directory.glob(f".{final_name}.*.tmp"):
            with contextlib.suppress(OSError):  # raced with another cleaner: fine
                if path.stat().st_mtime < cutoff:
                    path.unlink()
