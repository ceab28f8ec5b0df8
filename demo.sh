#!/usr/bin/env bash
# The demo: installs what it needs, builds, and runs one observed join and
# its three outcomes (valid, wrong value, absent device) on one machine.
set -euo pipefail
cd "$(dirname "$0")"
packaging/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec python3 tests/lib/demo.py build
