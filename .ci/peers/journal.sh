#!/usr/bin/env bash
# Peers for the recovery journal and mDNS tests: tshark validates every journal the sender
# builds (Wireshark's rtpmidi dissector knows all chapters); zeroconf is a netmidi dependency.
# Idempotent; run as root on Debian with the venv active and apt-get update done.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v tshark >/dev/null; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y --no-install-recommends tshark
fi
