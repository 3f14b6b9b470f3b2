#!/usr/bin/env bash
# Interop peers for the sacn backend: OLA's olad (E1.31 plugin; the tests enable only that one),
# tshark (ACN dissector) and PyPI sacn. Idempotent; run as root on Debian with the venv active.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v olad >/dev/null || missing+=(ola)
command -v tshark >/dev/null || missing+=(tshark)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    # policy-rc.d or not: the tests start their own olad, never the system service
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
# a system olad (started by the package) would hold port 9090 outside the lab; tests use their own
if command -v systemctl >/dev/null && systemctl is-active --quiet olad 2>/dev/null; then
    systemctl stop olad || true
fi
python -c "import sacn" 2>/dev/null || pip install --quiet "sacn==1.11.0"
python -c "import numpy" 2>/dev/null || pip install --quiet "numpy>=1.24"
