#!/usr/bin/env bash
# The demo: installs what it needs, builds, registers an observer and a
# device with a local key service, and runs one observed join and its three
# outcomes (valid, wrong value, absent device) over mqtts on one machine.
# Debian's python3: the key service stand-in needs python3-cryptography.
set -euo pipefail
cd "$(dirname "$0")"
packaging/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec /usr/bin/python3 tests/lib/demo.py build
