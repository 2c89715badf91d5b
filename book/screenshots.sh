#!/usr/bin/env bash
# Builds the book and screenshots a few pages with headless Chromium (Debian's `chromium`
# package), into book/screenshots/: a check that the rendered book looks right.
set -euo pipefail
cd "$(dirname "$0")"
mdbook="${MDBOOK:-mdbook}"
"$mdbook" build .
for page in patterns configs accuracy own-model; do
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1600 \
        --screenshot="screenshots/$page.png" "file://$PWD/book/$page.html" >/dev/null 2>&1
    echo "screenshots/$page.png"
done
