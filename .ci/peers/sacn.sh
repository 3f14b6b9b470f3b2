#!/usr/bin/env bash
# Interop peers for the sacn backend: OLA's olad (the tests start their own, inside the lab, with
# only its E1.31 plugin enabled), tshark (ACN dissector) and PyPI sacn.
# Idempotent; run as root on Debian with the venv active and apt-get update done.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v olad >/dev/null || missing+=(ola)
command -v tshark >/dev/null || missing+=(tshark)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
python -c "import sacn" 2>/dev/null || pip install --quiet "sacn==1.11.0"
