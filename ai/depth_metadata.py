"""Depth PNGs that say what they are: polarity, bit depth, model and normalisation inside the file.

Written into every depth PNG as an iTXt chunk ``parallax:depth`` (JSON), plus the Google Depth Map
XMP fields (``GDepth:Format/Near/Far/Mime``) where they apply: GDepth's ``RangeInverse`` stores
values linear in inverse depth with 0 at the near end, which is exactly a ``near_dark`` map of the
model's inverse depth mapped linearly from ``[low, high]`` (``Near = 1/high``, ``Far = 1/low``): a
photo's min-max map. The model's inverse depth is relative (affine-invariant), so Near/Far are in
arbitrary units, not metres. ``near_bright`` maps (1 = near) and stabilised video frames (soft knees
at both ends: not linear over the whole range) do not fit GDepth and carry only the JSON chunk.
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

DEPTH_TEXT_KEY = "parallax:depth"
XMP_KEY = "XML:com.adobe.xmp"
GDEPTH_NAMESPACE = "http://ns.google.com/photos/1.0/depthmap/"
_GDEPTH_FIELD = re.compile(r'GDepth:(\w+)="([^"]*)"')


def depth_metadata(
    *,
    polarity: str,
    bit_depth: int,
    model: str,
    normalization: dict[str, Any],
    raw_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The fields stored in a depth PNG (``raw_range``: the raw inverse depth mapped onto 0..max)."""
    return {
        "polarity": polarity,
        "bit_depth": int(bit_depth),
        "model": model,
        "normalization": normalization,
        "raw_range": [float(raw_range[0]), float(raw_range[1])] if raw_range else None,
        "depth_kind": "relative_inverse_depth",
    }


def _gdepth_xmp(metadata: dict[str, Any]) -> str | None:
    raw_range = metadata.get("raw_range")
    linear = (metadata.get("normalization") or {}).get("method") == "min-max"
    if not linear or metadata.get("polarity") != "near_dark" or not raw_range or not 0 < raw_range[0] < raw_range[1]:
        return None
    low, high = raw_range
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:GDepth="{GDEPTH_NAMESPACE}" GDepth:Format="RangeInverse" '
        f'GDepth:Near="{1.0 / high:.9g}" GDepth:Far="{1.0 / low:.9g}" GDepth:Mime="image/png"/>'
        "</rdf:RDF></x:xmpmeta>"
    )


def depth_pnginfo(metadata: dict[str, Any]) -> PngImagePlugin.PngInfo:
    """PNG chunks for :func:`depth_metadata`'s fields (pass as ``pnginfo=`` to ``Image.save``)."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(DEPTH_TEXT_KEY, json.dumps(metadata, sort_keys=True))
    xmp = _gdepth_xmp(metadata)
    if xmp:
        info.add_itxt(XMP_KEY, xmp)
    return info


def read_depth_metadata(source: Path | str | bytes) -> dict[str, Any] | None:
    """What a depth PNG says about itself (a path or the PNG's bytes), or None when it says nothing.

    Returns the stored fields, plus ``gdepth`` (``{"Format", "Near", "Far", "Mime"}``) when the
    PNG has GDepth XMP fields. PNGs written by other tools with only GDepth XMP give just that.
    """
    with Image.open(BytesIO(source) if isinstance(source, bytes) else source) as image:
        text = dict(getattr(image, "text", {}) or {})
    result: dict[str, Any] | None = None
    if DEPTH_TEXT_KEY in text:
        try:
            result = json.loads(text[DEPTH_TEXT_KEY])
        except json.JSONDecodeError:
            result = None
    xmp = text.get(XMP_KEY)
    if xmp and GDEPTH_NAMESPACE in xmp:
        fields = dict(_GDEPTH_FIELD.findall(xmp))
        gdepth: dict[str, Any] = {k: fields[k] for k in ("Format", "Mime") if k in fields}
        for key in ("Near", "Far"):
            if key in fields:
                gdepth[key] = float(fields[key])
        result = {**(result or {}), "gdepth": gdepth}
    return result


def read_nearness(source: Path | str | bytes, polarity: str | None = None) -> np.ndarray:
    """A depth PNG as nearness, HxW float32 0..1 with 1 = nearest, whatever its polarity and bit
    depth: ``polarity`` if given, else what the PNG says, else ``near_dark`` (Parallax's default)."""
    if polarity is None:
        polarity = (read_depth_metadata(source) or {}).get("polarity") or "near_dark"
    with Image.open(BytesIO(source) if isinstance(source, bytes) else source) as image:
        maximum = 65535.0 if image.mode.startswith("I") else 255.0
        grey = image if image.mode.startswith("I") or image.mode == "L" else image.convert("L")
        values = np.asarray(grey, dtype=np.float32) / np.float32(maximum)
    return values if polarity == "near_bright" else 1.0 - values
