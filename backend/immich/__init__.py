"""Immich integration: the REST client the import job uses. See docs/immich.md."""
from backend.immich.client import (
    ImmichAlbum,
    ImmichAsset,
    ImmichAuthError,
    ImmichClient,
    ImmichConnectionError,
    ImmichDownload,
    ImmichError,
    ImmichIncompleteDownload,
    ImmichNotFound,
    ImmichPermissionError,
    ImmichRequestError,
    ImmichServerError,
    ImmichStatistics,
    ImmichUser,
    format_immich_datetime,
    parse_duration,
    parse_immich_datetime,
)

__all__ = [
    "ImmichAlbum", "ImmichAsset", "ImmichAuthError", "ImmichClient", "ImmichConnectionError",
    "ImmichDownload", "ImmichError", "ImmichIncompleteDownload", "ImmichNotFound",
    "ImmichPermissionError", "ImmichRequestError", "ImmichServerError", "ImmichStatistics",
    "ImmichUser", "format_immich_datetime", "parse_duration", "parse_immich_datetime",
]
