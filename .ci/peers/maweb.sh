#!/bin/bash
# Interop peers for the maweb backend: none to install. No grandMA2/dot2 console or onPC runs
# on Linux (MA ships Windows installers only, from its own site), so the tests talk to
# netmidi.testing.fakeconsole, which needs only autobahn (already an install requirement).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
python -c "import autobahn.twisted.websocket, txaio" \
    || python -m pip install --quiet "autobahn>=24.4" "txaio>=23.1"
