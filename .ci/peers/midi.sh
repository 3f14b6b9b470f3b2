#!/usr/bin/env bash
# Interop peers for the midi backend: a JACK server with the dummy driver (no sound hardware),
# which the tests and bench/midi.py start under a unique server name, and python-rtmidi.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! command -v jackd >/dev/null || ! command -v jack_wait >/dev/null; then
    # Do not let the package rewrite /etc/security/limits.d (and do not ask about it).
    echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections
    apt-get install -y -q --no-install-recommends jackd2
fi

# python-rtmidi ships wheels for CPython <= 3.12 (it bundles its own libjack).
python -c "import rtmidi" 2>/dev/null || pip install -q "python-rtmidi>=1.5.8"
