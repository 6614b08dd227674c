"""`bench startup`: a populated cache opened again, every entry back."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.startup import startup_figure, startup_markdown
from embeddings.routed import RoutedEmbedder
from service.cli.main import main
from tests.conftest import make_settings


def test_startup_figure_reopens_every_entry(tmp_path: Path, routed: RoutedEmbedder) -> None:
    figure = startup_figure(make_settings(tmp_path / "unused"), routed, entries=60, opens=2)
    assert figure["entries"] == 61 and len(figure["open_s"]) == 2  # 60 fillers + one prompt
    assert figure["open_p50_s"] > 0 and figure["data_dir_mb"] > 0 and figure["open_peak_mb"] > 0
    assert len(figure["records_read_s"]) == len(figure["full_read_s"]) == 2
    assert figure["records_over_full_read"] > 0
    text = startup_markdown(figure)
    assert "Opening a cache of 61 entries (flat index" in text
    assert "Reading every start-up record" in text


def test_startup_command_refuses_a_bad_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "startup", "--entries", "0"]) != 0
    err = capsys.readouterr().err
    assert "--entries and --opens must be at least 1" in err and err.count("\n") == 1
