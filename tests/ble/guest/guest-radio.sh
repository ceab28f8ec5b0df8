#!/bin/bash
# Guest test of the radio layer alone (radio-checks.sh).
#   guest-radio.sh SRC BUILD OUT
set -u
src=$1 build=$2 out=$3
. "$src/tests/ble/guest/bluez-up.sh"
. "$src/tests/ble/guest/radio-checks.sh"
radio_checks
bluez_down
[[ $radio_failures == 0 ]]
