#!/usr/bin/env bash
# Interop peers for the rtpmidi backend: tshark (packet validator), node rtpmidi (initiator and
# responder) and pymidi (participant). Idempotent; run as root on Debian with the venv active.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v tshark >/dev/null; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y --no-install-recommends tshark nodejs npm
fi
if ! command -v npm >/dev/null; then
    apt-get install -y --no-install-recommends nodejs npm
fi
if [ ! -f "$here/node_modules/rtpmidi/package.json" ]; then
    npm install --prefix "$here" --omit=optional --no-audit --no-fund --no-save rtpmidi@1.0.0
fi
python -c "import pymidi" 2>/dev/null || pip install --quiet "pymidi==0.5.0"
