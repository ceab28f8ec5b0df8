#!/bin/bash
# Guest test of the whole observed join over BLE (ble_join.py).
#   guest-join.sh SRC BUILD OUT
set -u
src=$1 build=$2 out=$3
. "$src/tests/ble/guest/bluez-up.sh"
/usr/bin/python3 -u "$src/tests/ble/guest/ble_join.py" "$build" "$out"
rc=$?
bluez_down
exit $rc
