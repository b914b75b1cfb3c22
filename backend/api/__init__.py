"""HTTP blueprints, one per resource."""


def immich_paths() -> dict:
    """OpenAPI paths of the Immich blueprint, when that feature is installed."""
    try:
        from backend.api.immich import OPENAPI_PATHS
    except ImportError:
        return {}
    return OPENAPI_PATHS
