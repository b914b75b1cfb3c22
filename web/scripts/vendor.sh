#!/bin/sh
# Copy three.js's ES module build and Meta's WebXR emulator (iwer) from
# node_modules into backend/web/vendor/, so the running service needs neither npm nor a CDN.
# iwer is loaded only by the viewer's ?xr-emulate=1 debug flag when the server allows it (tests).
# Usage (from anywhere): sh web/scripts/vendor.sh   — runs `npm ci` first when node_modules is missing.
# three 0.185.0 is pinned: it is the last release that ships the prebuilt *.min.js files.
set -eu

WEB_DIR=$(cd "$(dirname "$0")/.." && pwd)
VENDOR_DIR="$(cd "$WEB_DIR/.." && pwd)/backend/web/vendor"
THREE_DIR="$WEB_DIR/node_modules/three"
IWER_DIR="$WEB_DIR/node_modules/iwer"

if [ ! -d "$THREE_DIR" ] || [ ! -d "$IWER_DIR" ]; then
    (cd "$WEB_DIR" && npm ci --no-audit --no-fund)
fi

mkdir -p "$VENDOR_DIR"
cp "$THREE_DIR/build/three.module.min.js" "$VENDOR_DIR/three.module.min.js"
# three.module.min.js imports './three.core.min.js'; it must sit beside it.
cp "$THREE_DIR/build/three.core.min.js" "$VENDOR_DIR/three.core.min.js"
cp "$THREE_DIR/LICENSE" "$VENDOR_DIR/THREE_LICENSE"

# One self-contained ES module (gl-matrix and the layers polyfill are bundled in).
cp "$IWER_DIR/build/iwer.module.min.js" "$VENDOR_DIR/iwer.module.min.js"
cp "$IWER_DIR/LICENSE" "$VENDOR_DIR/IWER_LICENSE"

VERSION=$(node -p "require('$THREE_DIR/package.json').version")
IWER_VERSION=$(node -p "require('$IWER_DIR/package.json').version")
printf 'three.js %s (MIT, see THREE_LICENSE) and iwer %s (MIT, see IWER_LICENSE), copied by web/scripts/vendor.sh from the npm packages.\n' \
    "$VERSION" "$IWER_VERSION" > "$VENDOR_DIR/VERSION"
echo "vendored three.js $VERSION and iwer $IWER_VERSION into $VENDOR_DIR"
