"""Query-string helpers shared by the list endpoints."""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest


def page_args(default_per_page: int = 50, max_per_page: int = 500) -> tuple[int, int]:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", default_per_page))
    except ValueError:
        raise BadRequest("page and per_page must be whole numbers") from None
    if page < 1 or not 1 <= per_page <= max_per_page:
        raise BadRequest(f"page must be >= 1 and per_page between 1 and {max_per_page}")
    return page, per_page


def choice_arg(name: str, choices: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise BadRequest(f"{name} must be one of: {', '.join(choices)}")
    return value
