"""Configuration shown in the docs must load as pasted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import load_settings

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(block, id=f"{doc.name}#{n}")
    for doc in DOCS
    for n, block in enumerate(re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S))
]


@pytest.mark.parametrize("block", BLOCKS)
def test_toml_examples_load(block: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(block)
    load_settings(config, env={})
