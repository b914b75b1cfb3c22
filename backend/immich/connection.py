"""The connection test (``POST /api/immich/test``, ``parallax immich-test``): does the URL answer
like Immich, is the key accepted, and does it carry every permission the enabled features need?

The key's permissions come from ``GET /api/api-keys/me`` (any key may read itself), so a missing
permission is named before an import fails on it. Optional details (the key's user, asset
counts, albums) never fail the test: when one cannot be had, the report says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from backend.immich.client import (
    ImmichAlbum,
    ImmichAuthError,
    ImmichClient,
    ImmichError,
    ImmichPermissionError,
    ImmichStatistics,
    ImmichUser,
)
from backend.settings import Settings

T = TypeVar("T")

ALL_PERMISSIONS = "all"  # what a key created with "All" permissions reports
#: What the connection test shows when present; the test passes without them.
OPTIONAL_PERMISSIONS = {
    "user.read": "showing which Immich user the key belongs to",
    "asset.statistics": "photo and video counts (import progress)",
    "album.read": "listing albums to choose from",
}


def needed_permissions(settings: Settings) -> dict[str, str]:
    """Permission -> what it is needed for, for the features enabled in ``settings``."""
    needed = {
        "asset.read": "listing assets and noticing trash, archive and deletions",
        "asset.download": "downloading originals",
        "asset.view": "Immich's full-size JPEG of RAW photos and of originals Parallax cannot decode",
    }
    if settings.immich_album_ids:
        needed["album.read"] = "IMMICH_ALBUM_IDS: reading the albums to notice new members"
    return needed


@dataclass
class ConnectionReport:
    version: tuple[int, int, int]
    permissions: frozenset[str] | None  # None: the server cannot tell (no /api/api-keys/me)
    missing: dict[str, str]  # needed permission -> what for
    missing_optional: dict[str, str]
    user: ImmichUser | None = None
    statistics: ImmichStatistics | None = None
    albums: list[ImmichAlbum] | None = None
    warnings: list[str] = field(default_factory=list)  # optional details that could not be had

    @property
    def ok(self) -> bool:
        return not self.missing

    def missing_message(self) -> str:
        listed = "; ".join(f"{name} ({why})" for name, why in self.missing.items())
        return f"The API key lacks {listed}. Edit the key's permissions in Immich (Account Settings > API Keys)."


def check_connection(client: ImmichClient, settings: Settings) -> ConnectionReport:
    """Raises ImmichError when the server cannot be reached, is not Immich, or rejects the key."""
    version = client.server_version()
    permissions = client.key_permissions()  # also the first authenticated call: a wrong key fails here

    def has(permission: str) -> bool:
        return permissions is None or ALL_PERMISSIONS in permissions or permission in permissions

    needed = needed_permissions(settings)
    report = ConnectionReport(
        version=version,
        permissions=permissions,
        missing={p: why for p, why in needed.items() if not has(p)},
        missing_optional={p: why for p, why in OPTIONAL_PERMISSIONS.items() if p not in needed and not has(p)},
    )

    def optional(what: str, permission: str, call: Callable[[], T]) -> T | None:
        if not has(permission):
            return None
        try:
            return call()
        except ImmichAuthError:
            raise
        except ImmichPermissionError:
            return None
        except ImmichError as exc:
            report.warnings.append(f"{what} unavailable: {exc}")
            return None

    report.user = optional("the key's user", "user.read", client.me)
    report.statistics = optional("asset counts", "asset.statistics", client.statistics)
    report.albums = optional("albums", "album.read", client.albums)
    return report
