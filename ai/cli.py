"""``python -m ai``: serve the AI HTTP API, or fetch models ahead of time."""

from __future__ import annotations

import argparse
import sys

from ai.config import AISettingsError, apply_model_cache_env, get_ai_settings
from ai.errors import ModelUnavailableError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parallax-ai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the AI HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    dl = sub.add_parser("download-models", help="download the configured models into MODEL_CACHE_DIR")
    dl.add_argument("--depth-model", action="append", help="model id or folder (repeatable); default DEPTH_MODEL")
    dl.add_argument(
        "--segmentation-model", action="append", help="rembg model name (repeatable); default SEGMENTATION_MODEL"
    )
    args = parser.parse_args(argv)
    try:
        settings = get_ai_settings()
    except AISettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    apply_model_cache_env(settings)

    if args.command == "serve":
        from ai.server import create_app

        create_app(settings).run(host=args.host or settings.host, port=args.port or settings.port, threaded=True)
        return 0
    if args.command == "download-models":
        from ai.depth import download_depth_model
        from ai.segmentation import download_segmentation_model

        failed = 0
        for kind, fetch, names in (
            ("depth", download_depth_model, args.depth_model or [settings.depth_model]),
            ("segmentation", download_segmentation_model, args.segmentation_model or [settings.segmentation_model]),
        ):
            for name in names:
                try:
                    print(f"{kind} model {name}: {fetch(name)}")
                except ModelUnavailableError as exc:
                    print(f"{kind} model {name}: could not be downloaded: {exc}", file=sys.stderr)
                    failed = 1
        return failed
    return 1


if __name__ == "__main__":
    sys.exit(main())
