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
    if settings.immich_write_back:
        for permission, why in WRITE_BACK_PERMISSIONS.items():
            needed.setdefault(permission, why)
    return needed


#: What IMMICH_WRITE_BACK needs (see backend/immich/writeback.py).
WRITE_BACK_PERMISSIONS = {
    "asset.upload": "IMMICH_WRITE_BACK: uploading the 3D versions",
    "album.read": "IMMICH_WRITE_BACK: finding the album IMMICH_WRITE_BACK_ALBUM by its name",
    "album.create": "IMMICH_WRITE_BACK: creating that album when there is none",
    "albumAsset.create": "IMMICH_WRITE_BACK: adding the 3D versions to the album",
    "stack.create": "IMMICH_WRITE_BACK: stacking each 3D version with its original",
    "asset.delete": "IMMICH_WRITE_BACK: replacing a 3D version that changed, and undo",
}
#: Optional with IMMICH_WRITE_BACK: without it undo leaves the (empty) album in place.
WRITE_BACK_OPTIONAL_PERMISSIONS = {"album.delete": "IMMICH_WRITE_BACK undo: deleting the album it created"}


def optional_permissions(settings: Settings) -> dict[str, str]:
    """Permission -> what it adds, for the permissions the enabled features can do without."""
    optional = dict(OPTIONAL_PERMISSIONS)
    if settings.immich_write_back:
        optional.update(WRITE_BACK_OPTIONAL_PERMISSIONS)
    return optional


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
        missing_optional={
            p: why for p, why in optional_permissions(settings).items() if p not in needed and not has(p)
        },
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
