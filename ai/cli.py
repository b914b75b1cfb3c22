"""``python -m ai download-models``: fetch models ahead of time, into the folders given as arguments.

Reads no settings: ``python -m backend download-models`` passes the configured ones (MODEL_CACHE_DIR,
DEPTH_MODEL, SEGMENTATION_MODEL).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ai.config import DEFAULT_DEPTH_MODEL, DEFAULT_SEGMENTATION_MODEL, huggingface_cache, rembg_home
from ai.errors import ModelUnavailableError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parallax-ai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download-models", help="download models into a cache folder")
    dl.add_argument("--cache-dir", type=Path, required=True, help="the model cache folder (MODEL_CACHE_DIR)")
    dl.add_argument(
        "--depth-model", action="append", help=f"model id or folder (repeatable); default {DEFAULT_DEPTH_MODEL}"
    )
    dl.add_argument(
        "--segmentation-model",
        action="append",
        help=f"rembg model name (repeatable); default {DEFAULT_SEGMENTATION_MODEL}",
    )
    args = parser.parse_args(argv)

    from ai.depth import download_depth_model
    from ai.segmentation import download_segmentation_model

    cache: Path = args.cache_dir.expanduser()
    failed = 0
    for name in args.depth_model or [DEFAULT_DEPTH_MODEL]:
        failed |= _fetch("depth", name, lambda n: download_depth_model(n, cache_dir=str(huggingface_cache(cache))))
    for name in args.segmentation_model or [DEFAULT_SEGMENTATION_MODEL]:
        failed |= _fetch("segmentation", name, lambda n: download_segmentation_model(n, rembg_home(cache)))
    return failed


def _fetch(kind: str, name: str, fetch) -> int:
    try:
        print(f"{kind} model {name}: {fetch(name)}")
        return 0
    except ModelUnavailableError as exc:
        print(f"{kind} model {name}: could not be downloaded: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
