#!/bin/bash
# The layer-2 BLE test, run by ctest (ble_guest): in one guest boot, the
# radio layer alone (radio-checks.sh), then the whole observed join
# (ble_join.py), both against real bluetoothd with btvirt controllers.
#   guest-ble.sh SRC BUILD OUT
set -u
src=$1 build=$2 out=$3
. "$src/tests/ble/guest/bluez-up.sh"
. "$src/tests/ble/guest/radio-checks.sh"
radio_checks
guest_log "running ble_join.py"
/usr/bin/python3 -u "$src/tests/ble/guest/ble_join.py" "$build" "$out"
join_rc=$?
bluez_down
guest_log "guest BLE test: radio checks $radio_failures failure(s), join test exit $join_rc"
[[ $radio_failures == 0 && $join_rc == 0 ]]
