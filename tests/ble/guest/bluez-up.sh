# Sourced by the guest test scripts: starts the system bus, bluetoothd and
# two virtual LE controllers on one virtual air (btvirt -L -l2), powers
# both on and waits until BlueZ shows them as hci0 and hci1.
# Expects $out (the output folder); defines guest_log, wait_for and
# bluez_down.

guest_t0=$(date +%s.%N)
guest_log() {
	awk -v t0="$guest_t0" -v now="$(date +%s.%N)" -v msg="$*" \
		'BEGIN { printf "[%7.2f] %s\n", now - t0, msg }'
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
	local limit=$1 what=$2 end
	shift 2
	end=$(($(date +%s) + limit))
	until "$@" >/dev/null 2>&1; do
		if (($(date +%s) >= end)); then
			guest_log "timed out after ${limit}s waiting for $what"
			return 1
		fi
		sleep 0.1
	done
}

ip link set lo up || { guest_log "cannot bring up lo"; exit 1; }
mkdir -p /run/dbus /var/lib/bluetooth
dbus-daemon --system --fork || { guest_log "dbus-daemon failed"; exit 1; }
modprobe hci_vhci || { guest_log "modprobe hci_vhci failed"; exit 1; }
bluez_on_bus() {
	dbus-send --system --print-reply --dest=org.bluez / \
		org.freedesktop.DBus.ObjectManager.GetManagedObjects
}
/usr/libexec/bluetooth/bluetoothd -n -d >"$out/bluetoothd.log" 2>&1 &
bluetoothd_pid=$!
wait_for 10 "org.bluez on the bus" bluez_on_bus || exit 1
btvirt -L -l2 >"$out/btvirt.log" 2>&1 &
btvirt_pid=$!
two_controllers() { [[ $(bluetoothctl list 2>/dev/null | grep -c '^Controller') -ge 2 ]]; }
wait_for 15 "two controllers" two_controllers || exit 1
btmgmt --index 0 power on >/dev/null && btmgmt --index 1 power on >/dev/null ||
	{ guest_log "btmgmt power on failed"; exit 1; }
powered() {
	dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Powered |
		grep -q 'boolean true'
}
wait_for 10 "hci0 powered" powered hci0 && wait_for 10 "hci1 powered" powered hci1 || exit 1
guest_log "BlueZ up: $(bluetoothctl list | tr '\n' ';')"

bluez_down() {
	kill "$btvirt_pid" "$bluetoothd_pid" 2>/dev/null
	wait "$btvirt_pid" "$bluetoothd_pid" 2>/dev/null
}

# bluetoothd stops and starts again, as a package upgrade would do it.
bluez_restart() {
	kill "$bluetoothd_pid"
	wait "$bluetoothd_pid" 2>/dev/null
	/usr/libexec/bluetooth/bluetoothd -n -d >>"$out/bluetoothd.log" 2>&1 &
	bluetoothd_pid=$!
	wait_for 10 "org.bluez back on the bus" bluez_on_bus &&
		wait_for 10 "hci0 powered again" powered hci0 &&
		wait_for 10 "hci1 powered again" powered hci1
}
