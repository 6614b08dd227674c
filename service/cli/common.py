"""Options every command takes (`--data-dir`, `--config`) and turning them into Settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from service.config import Settings, load_settings


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory (default ./.promptcache)")
    parser.add_argument("--config", type=Path, help="TOML config file")


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        values["data_dir"] = str(args.data_dir)
    return load_settings(getattr(args, "config", None), overrides=values)
