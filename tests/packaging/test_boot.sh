#!/usr/bin/env bash
# The packaged observer under systemd as PID 1: a Debian 12 root with the
# packages, systemd and Mosquitto booted with systemd-nspawn -b. Checks, as
# an operator would meet them:
#   - the shipped example fails at start with exit 78, the errors in the
#     journal, and is not restarted;
#   - a key only root can read stops the start with exit 78 naming it, and
#     srup-keygen --owner makes one the service user reads (12.3);
#   - the unit names no group that may not exist: bluez is not installed and
#     the service starts (12.2);
#   - Type=notify: activating until the broker session is up, then active,
#     STATUS= in systemctl status;
#   - an observed join through it answers 0x60 (sim channel);
#   - kill -9 is followed by a restart; a bad config fails `systemctl
#     reload` and leaves the daemon running; `systemctl restart` with it
#     exits 78 and stays stopped (12.4);
#   - with channel = ble nfc sim the sandboxed unit takes one join over each
#     channel, and its STATUS= and journal name them;
#   - `systemctl reload` (check, then SIGHUP) applies a new window to the
#     next observation in the same process; a bad file, by reload or by
#     `systemctl kill -s HUP`, is refused and the old window stays;
#   - the event loop feeds the watchdog, a stopped loop is restarted, and
#     restarts are bounded (StartLimitBurst).
# Usage: test_boot.sh BUILD_DIR (for srup-join-peer and srup-keygen, which
# run on the host). SRUP_DEBS_DIR: use the .debs there instead of building.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: test_boot.sh BUILD_DIR}" && pwd)
cache=/var/cache/srup-tests
base=$cache/boot-base
work=$(mktemp -d /var/tmp/srup-boot.XXXXXX)
root=$work/root
nspawn_pid=
peer_pid=
nfc_emu_pid=
fail=0

log() { printf '%s\n' "$*"; }
check() { # description, then a command that must succeed
	local what=$1
	shift
	if "$@"; then
		log "ok: $what"
	else
		log "FAIL: $what"
		fail=1
	fi
}

cleanup() {
	set +e
	[ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null
	# The emulator runs in the container through nsenter, which does not
	# pass signals on: its child (the emulator) first, then nsenter.
	if [ -n "$nfc_emu_pid" ]; then
		pkill -KILL -P "$nfc_emu_pid" 2>/dev/null
		kill "$nfc_emu_pid" 2>/dev/null
		wait "$nfc_emu_pid" 2>/dev/null
	fi
	if [ -n "$nspawn_pid" ]; then
		# nspawn turns SIGTERM into an orderly shutdown of the container.
		kill -TERM "$nspawn_pid" 2>/dev/null
		for _ in $(seq 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 1; done
		kill -KILL "$nspawn_pid" 2>/dev/null
		wait "$nspawn_pid" 2>/dev/null
	fi
	if ((fail)) || [ -n "${SRUP_KEEP_WORKDIR:-}" ]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# ---- the root: Debian 12 minbase with systemd and Mosquitto (cached) --------

"$top/packaging/install-deps.sh" debootstrap systemd-container >/dev/null
if [ ! -x "$base/lib/systemd/systemd" ]; then
	mkdir -p "$cache"
	rm -rf "$base.tmp"
	log "boot root: debootstrap bookworm (cached in $base)"
	debootstrap --variant=minbase \
		--include=systemd,systemd-sysv,dbus,mosquitto,adduser,libpaho-mqtt1.3,libcjson1,libinih1,libnfc6,libssl3 \
		bookworm "$base.tmp" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		exit 1
	}
	mv "$base.tmp" "$base"
fi
cp -a "$base" "$root"

if [ -n "${SRUP_DEBS_DIR:-}" ]; then
	debs=("$SRUP_DEBS_DIR"/*.deb)
else
	"$top/packaging/build-deb.sh" "$work/debs" >/dev/null
	debs=("$work/debs"/*.deb)
fi
mkdir -p "$root/var/tmp/debs"
for deb in "${debs[@]}"; do
	case $deb in *-dbgsym_* | */libsrup-dev_*) ;; *) cp "$deb" "$root/var/tmp/debs/" ;; esac
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
log "installing: $(cd "$root/var/tmp/debs" && echo *.deb)"
chroot_run() { systemd-nspawn -q --register=no --keep-unit -D "$root" --pipe "$@"; }
# --no-install-recommends: srup-observer recommends bluez (the example's
# channel is ble); this root checks the observer without it.
chroot_run sh -c 'apt-get install -y -q --no-install-recommends /var/tmp/debs/*.deb' >"$work/apt.log" 2>&1 || {
	tail -n 30 "$work/apt.log" >&2
	exit 1
}
check "bluez is not installed, so no bluetooth group exists" \
	bash -c "! grep -q '^bluetooth:' '$root/etc/group'"

# Mosquitto on a free loopback port (the container shares the host's
# network), named by host name so the daemon resolves it in its sandbox.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$root/etc/mosquitto/conf.d/srup-test.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_packet_size 1048576
EOF

# The server and the device: keys made on the host.
keygen=$build/keys/srup-keygen
server_id=5eed0000000000a1
device_id=de0100000000beef
mkdir -p "$work/server-peers" "$work/server-state"
"$keygen" --id "$server_id" --out "$work/server" >/dev/null 2>&1
"$keygen" --id "$device_id" --out "$work/device" >/dev/null 2>&1
cp "$work/device/$device_id.pem" "$work/server-peers/"
cp "$work/server/$server_id.pem" "$root/etc/srup/server-public.pem"
mkdir -p "$root/root/device"
cp "$work/device/private.pem" "$root/root/device/private.pem"
cat >"$root/root/device.conf" <<EOF
[identity]
id = $device_id
private_key = /root/device/private.pem
[server]
id = $server_id
public_key = /etc/srup/server-public.pem
[mqtt]
broker = tcp://127.0.0.1:$port
[sim]
socket = /run/srup-observer/sim.sock
[state]
dir = /root/device-state
EOF

# ---- boot ---------------------------------------------------------------------

systemd-nspawn -q --register=no --keep-unit -D "$root" -M "srup-boot-$$" --console=read-only -b \
	>"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!
leader=
for _ in $(seq 60); do
	for child in $(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null); do
		[ "$(cat /proc/"$child"/comm 2>/dev/null)" = systemd ] && leader=$child
	done
	[ -n "$leader" ] && break
	sleep 1
done
[ -n "$leader" ] || { log "FAIL: the container did not start"; tail -n 30 "$work/console.log"; fail=1; exit 1; }
inside() { nsenter -t "$leader" -m -u -i -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
export leader
export -f inside
state=$(timeout 180 nsenter -t "$leader" -m -u -i -p -- systemctl is-system-running --wait || true)
log "container booted: $state"

prop() { inside systemctl show -P "$1" srup-observerd.service; }
wait_prop() { # property, value, seconds
	for _ in $(seq "$3"); do
		[ "$(prop "$1")" = "$2" ] && return 0
		sleep 1
	done
	log "  $1 is '$(prop "$1")', not '$2'"
	return 1
}
export -f prop
# journald takes the daemon's stdout through a stream of its own: a line
# logged just before an action returned may reach the journal a little
# later, so look for up to 15 s.
journal_has() {
	local _
	for _ in $(seq 30); do
		inside journalctl -b -u srup-observerd.service --no-pager -o cat | grep -qF -- "$1" &&
			return 0
		sleep 0.5
	done
	return 1
}
# A restart the unit would make comes RestartSec (5 s) after the exit: the
# process that failed must still be the last one started, and the unit failed.
no_restart_follows() {
	local started
	started=$(prop ExecMainStartTimestampMonotonic)
	sleep 8
	[ "$(prop ExecMainStartTimestampMonotonic)" = "$started" ] && [ "$(prop ActiveState)" = failed ]
}
# An inactive unit is unloaded, and reset-failed then has nothing to reset.
reset_failed() { inside systemctl reset-failed srup-observerd.service 2>/dev/null || true; }
conf=$root/etc/srup/observer.conf

# ---- 12.5, 12.4: the shipped example does not start, and is not retried -----------

check "the shipped example fails systemctl start" bash -c "! inside systemctl start srup-observerd.service 2>/dev/null"
check "  with exit status 78" wait_prop ExecMainStatus 78 30
check "  and no restart (RestartPreventExitStatus)" no_restart_follows
check "  the journal names the observer ID left at 0" journal_has "observer.conf:17: [identity] id: 0 is no node's ID"
check "  the journal names the server ID left at 0" journal_has "[server] id: 0 is no node's ID"
check "  the journal names the placeholder broker" journal_has "[mqtt] broker: 'c2.example.net' is a placeholder"

# Fill it in as the README says, but with a key only root can read.
observer_id=$(inside srup-keygen --out /etc/srup/observer 2>/dev/null)
sed -i -e "/^\[identity\]/,/^\[/s/^id = 0\$/id = $observer_id/" \
	-e "/^\[server\]/,/^\[/s/^id = 0\$/id = $server_id/" \
	-e "s|^broker = .*|broker = tcp://localhost:$port|" -e 's/^ca_file = /#ca_file = /' \
	-e 's/^channel = ble/channel = sim/' "$conf"

# ---- 12.3: the key must be the service user's --------------------------------------

reset_failed
check "a root-only key passes --check-config as root" \
	inside srup-observerd --config /etc/srup/observer.conf --check-config
check "  fails it as the service user" bash -c \
	"! inside runuser -u srup-observer -- srup-observerd --config /etc/srup/observer.conf --check-config >/dev/null 2>&1"
check "  and fails the start with exit 78" bash -c "! inside systemctl start srup-observerd.service 2>/dev/null"
check "  naming the key" journal_has "/etc/srup/observer/private.pem"
check "  and is not retried" no_restart_follows
rm -rf "$root/etc/srup/observer"
observer_id2=$(inside srup-keygen --id "$observer_id" --owner srup-observer --out /etc/srup/observer 2>/dev/null)
check "srup-keygen --owner gives the key to the service user" \
	bash -c "[ '$observer_id2' = '$observer_id' ] && [ \"\$(inside stat -c '%U %a' /etc/srup/observer/private.pem)\" = 'srup-observer 600' ]"
cp "$root/etc/srup/observer/$observer_id.pem" "$work/server-peers/"
check "  and the service user's check passes" \
	inside runuser -u srup-observer -- srup-observerd --config /etc/srup/observer.conf --check-config

# ---- READY only once the broker session is up; STATUS= -----------------------------

reset_failed
inside systemctl stop mosquitto.service
inside systemctl start --no-block srup-observerd.service
check "without a broker the unit stays activating" wait_prop SubState start 30
check "  its status says so" bash -c "sleep 3; inside systemctl status srup-observerd.service | grep -q 'Status: \"broker disconnected'"
check "  (not before READY=1: still activating)" wait_prop ActiveState activating 1
inside systemctl start mosquitto.service
check "with the broker up it becomes active (running)" wait_prop SubState running 90
check "systemctl status shows the STATUS= text" \
	bash -c "inside systemctl status srup-observerd.service | grep -q 'Status: \"broker connected to [^;]*; sim channel idle; 0 pending\"'"
inside systemctl status --no-pager srup-observerd.service | sed -n '1,12p'
check "no group that may not exist (12.2): SupplementaryGroups are all real" bash -c '
	for g in $(inside systemctl show -P SupplementaryGroups srup-observerd.service); do
		inside getent group "$g" >/dev/null || exit 1
	done'

# ---- an observed join through the packaged daemon answers 0x60 ----------------------

"$build/tests/peer/srup-join-peer" --broker "tcp://127.0.0.1:$port" --id "$server_id" \
	--key "$work/server/private.pem" --peers "$work/server-peers" --state "$work/server-state" \
	--watch "$observer_id" --timeout 60 >"$work/peer.log" 2>&1 &
peer_pid=$!
for _ in $(seq 30); do grep -q '^READY' "$work/peer.log" && break; sleep 1; done
check "the packaged srup-device joins (JOIN_SUCCESS)" \
	inside timeout 120 srup-device --config /root/device.conf join --observer "$observer_id" --channel sim --timeout 90
check "  the observer answered 0x60" grep -q "^OUTCOME device=$device_id observer=$observer_id observer_status=0x60" "$work/peer.log"
check "  and the journal has the outcome" journal_has "observation device=$device_id outcome="

# ---- kill -9 is followed by a restart ------------------------------------------------

pid=$(prop MainPID)
inside sh -c "kill -9 $pid"
check "kill -9 of the daemon is followed by a restart" wait_prop NRestarts 1 60
check "  back to active (running) with a new process" \
	bash -c "for _ in \$(seq 90); do [ \"\$(inside systemctl show -P SubState srup-observerd.service)\" = running ] && [ \"\$(inside systemctl show -P MainPID srup-observerd.service)\" != $pid ] && exit 0; sleep 1; done; exit 1"

# ---- SIGHUP and systemctl reload apply the file in the same process -----------------------

# An OBSERVE_REQ from the server, as a third party builds it; the device ID
# is made up, so the observation stays pending until its deadline.
raw_seq=$(($(date +%s) * 1000))
observe_request() { # device ID (16 hex digits), token
	raw_seq=$((raw_seq + 1))
	printf '{"type":"observe_request","version":5,"sequence_id":"%016x","sender_id":"%s","token":"%s","joining_device_id":"%s","plaintext":"%s"}\n' \
		"$raw_seq" "$server_id" "$(printf %s "$2" | od -An -tx1 | tr -d ' \n')" "$1" \
		"$(printf 'value-%s' "$1" | od -An -tx1 | tr -d ' \n')" >"$work/req.json"
	"$build/keys/srup-msg" encode --sign "$work/server/private.pem" \
		--encrypt-for "$root/etc/srup/observer/$observer_id.pem" "$work/req.json" >"$work/req.bin"
	mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "SRUP/$(printf %x "0x$observer_id")" -f "$work/req.bin"
}
# Milliseconds until the deadline of device's pending observation (empty if none).
deadline_in() {
	inside srup-observerctl --json list | python3 -c '
import json, sys
a = json.load(sys.stdin)
print(next((str(int(e["deadline_in_ms"])) for e in a["observations"] if e["device"] == sys.argv[1]), ""))' "$1"
}
wait_pending() { # device
	for _ in $(seq 30); do [ -n "$(deadline_in "$1")" ] && return 0; sleep 1; done
	return 1
}
export -f deadline_in wait_pending journal_has

wait_prop SubState running 60 >/dev/null
pid=$(prop MainPID)
observe_request 0bd0000000000001 tok-before
check "an observation pending with the 120 s window" \
	bash -c "wait_pending 0bd0000000000001 && [ \"\$(deadline_in 0bd0000000000001)\" -gt 100000 ]"
mkdir -p "$conf.d"
printf '[observation]\nwindow_seconds = 7\n' >"$conf.d/50-window.conf"
check "systemctl reload after a drop-in with window_seconds = 7 succeeds" inside systemctl reload srup-observerd.service
check "  with the same process (MainPID before = after)" bash -c "[ \"\$(prop MainPID)\" = $pid ] && [ \"\$(prop SubState)\" = running ]"
check "  the journal says it applied window 7s" journal_has "applied: window 7s"
observe_request 0bd0000000000002 tok-after
check "  the next observation has the 7 s window" \
	bash -c "wait_pending 0bd0000000000002 && [ \"\$(deadline_in 0bd0000000000002)\" -le 7000 ]"
check "  the one pending before keeps its 120 s window" \
	bash -c "[ \"\$(deadline_in 0bd0000000000001)\" -gt 90000 ]"
check "  and the new one expires after 7 s" \
	bash -c "for _ in \$(seq 30); do inside journalctl -b -u srup-observerd.service --no-pager -o cat | grep -Eq 'observation device=0bd0000000000002 outcome=expired .*duration_ms=(7|8|9)[0-9]{3}\$' && exit 0; sleep 1; done; exit 1"
inside srup-observerctl cancel 0bd0000000000001 >/dev/null || true

# A bad file: refused by the check before any signal, and by the daemon
# itself when it is sent SIGHUP directly.
printf '[observation]\nwindow_seconds = 0\n' >"$conf.d/60-bad.conf"
check "systemctl reload with a drop-in setting window_seconds = 0 fails" bash -c "! inside systemctl reload srup-observerd.service 2>/dev/null"
check "  the daemon keeps running, same PID" bash -c "[ \"\$(prop MainPID)\" = $pid ] && [ \"\$(prop SubState)\" = running ]"
check "systemctl kill -s HUP with the bad file: same PID, still running" \
	bash -c "inside systemctl kill -s HUP srup-observerd.service && sleep 2 && [ \"\$(prop MainPID)\" = $pid ] && [ \"\$(prop SubState)\" = running ]"
check "  the journal names FILE:LINE of the refusal" \
	journal_has "reload refused: /etc/srup/observer.conf.d/60-bad.conf:2: [observation] window_seconds"
observe_request 0bd0000000000003 tok-bad
check "  the old window (7 s) is still in effect" \
	bash -c "wait_pending 0bd0000000000003 && [ \"\$(deadline_in 0bd0000000000003)\" -le 7000 ]"
check "  no restart happened" bash -c "[ \"\$(prop NRestarts)\" = 1 ]"
rm "$conf.d/50-window.conf" "$conf.d/60-bad.conf"
check "the drop-ins removed: systemctl reload applies window 120s" \
	bash -c "inside systemctl reload srup-observerd.service && [ \"\$(prop MainPID)\" = $pid ] && journal_has 'applied: window 120s'"

# ---- 12.4: a bad config is found before a healthy daemon is stopped --------------------

pid=$(prop MainPID)
cp "$conf" "$work/observer.conf.good"
sed -i "/^\[identity\]/,/^\[/s/^id = .*/id = 0/" "$conf"
check "systemctl reload with a bad config fails" bash -c "! inside systemctl reload srup-observerd.service 2>/dev/null"
check "  and the daemon keeps running" bash -c "[ \"\$(inside systemctl show -P MainPID srup-observerd.service)\" = $pid ] && [ \"\$(inside systemctl show -P SubState srup-observerd.service)\" = running ]"
check "systemctl restart with it exits 78" bash -c "! inside systemctl restart srup-observerd.service 2>/dev/null"
check "  status 78" wait_prop ExecMainStatus 78 30
check "  and stays stopped" no_restart_follows
cp "$work/observer.conf.good" "$conf"

# ---- BLE in the sandbox: org.bluez on the system bus, under bluez's own policy -----------

# bluez for its D-Bus policy (bluetoothd itself cannot run: no controller);
# the stand-in owns org.bluez as bluetoothd would.
inside sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q bluez python3-dbus python3-gi' \
	>"$work/apt-ble.log" 2>&1 || { tail -n 20 "$work/apt-ble.log"; fail=1; }
mkdir -p "$root/root/ble"
cp "$top/tests/ble/bluez_standin.py" "$top/tests/packaging/boot_ble.py" "$root/root/ble/"
inside python3 /root/ble/boot_ble.py "$device_id" /root/ble/value >"$work/ble.log" 2>&1 &
ble_pid=$!
for _ in $(seq 60); do grep -q '^OWNED' "$work/ble.log" && break; sleep 1; done
sed -i 's/^channel = sim/channel = ble/' "$conf"
reset_failed
check "with channel = ble the unit starts" inside systemctl start srup-observerd.service
check "  the daemon, sandboxed, registered its GATT application with org.bluez" \
	bash -c "for _ in \$(seq 60); do grep -q '^REGISTERED' '$work/ble.log' && exit 0; sleep 1; done; exit 1"
inside timeout 120 srup-device --config /root/device.conf join --observer "$observer_id" \
	--channel ble --timeout 90 --print-value >"$work/ble-device.log" 2>&1 &
device_pid=$!
for _ in $(seq 60); do
	value=$(sed -n 's/.*confirmation value: \([0-9a-f]*\)$/\1/p' "$work/ble-device.log")
	[ -n "$value" ] && break
	sleep 1
done
echo "$value" >"$root/root/ble/value"
check "a BLE observed join through the unit: the device is accepted" wait "$device_pid"
check "  the frame was written over BLE" grep -q '^WRITE ok' "$work/ble.log"
check "  and the observer answered 0x60" \
	bash -c "[ \$(grep -c '^OUTCOME device=$device_id observer=$observer_id observer_status=0x60' '$work/peer.log') = 2 ]"
inside systemctl stop srup-observerd.service
touch "$root/root/ble/stop"
wait "$ble_pid" || true
sed -i 's/^channel = ble/channel = sim/' "$conf"

# ---- NFC in the sandbox: libnfc's pn532_uart driver on an emulated PN532 ---------------------

# The emulator's chips are ptys: given to dialout as a serial reader is, and
# allowed by a test drop-in (a real reader is ttyUSB/ttyACM/ttyS, which the
# unit allows; a pty is char-pts). Everything else is the unit's sandbox.
# (Where the container gets no devices cgroup of its own, as under a host
# whose init is not systemd, DevicePolicy= is not enforced at all: the
# device list is then checked by systemd-analyze only.)
mkdir -p "$root/root/nfc"
cp "$top/tests/nfc/pn532_emu.py" "$root/root/nfc/"
inside mkdir -p /run/srup-nfc
inside python3 /root/nfc/pn532_emu.py field --link /run/srup-nfc/observer \
	--link2 /run/srup-nfc/device >"$work/nfc.log" 2>&1 &
nfc_emu_pid=$!
for _ in $(seq 30); do inside test -L /run/srup-nfc/device && break; sleep 1; done
pty=$(inside readlink -f /run/srup-nfc/observer)
inside chgrp dialout "$pty"
inside chmod 0660 "$pty"
mkdir -p "$root/etc/systemd/system/srup-observerd.service.d"
printf '[Service]\nDeviceAllow=char-pts rw\n' >"$root/etc/systemd/system/srup-observerd.service.d/nfc-emulator.conf"
inside systemctl daemon-reload
sed -i -e 's/^channel = sim/channel = nfc/' -e 's|^device = pn532_uart:.*|device = pn532_uart:/run/srup-nfc/observer|' "$conf"
printf '[nfc]\ndevice = pn532_uart:/run/srup-nfc/device\n' >>"$root/root/device.conf"
reset_failed
check "with channel = nfc the unit starts" inside systemctl start srup-observerd.service
check "an NFC observed join through the unit: the device is accepted" \
	inside timeout 120 srup-device --config /root/device.conf join --observer "$observer_id" \
	--channel nfc --timeout 90
check "  and the observer answered 0x60" \
	bash -c "[ \$(grep -c '^OUTCOME device=$device_id observer=$observer_id observer_status=0x60' '$work/peer.log') = 3 ]"
inside systemctl stop srup-observerd.service
rm "$root/etc/systemd/system/srup-observerd.service.d/nfc-emulator.conf"
inside systemctl daemon-reload
sed -i 's/^channel = nfc/channel = sim/' "$conf"

# ---- one unit on ble nfc sim: one observed join over each channel ----------------------------

# The stand-ins of the two blocks above at once: the BLE stand-in owning
# org.bluez (a fresh one, in a directory of its own), the NFC field emulator
# still running, and the sim socket; the unit's own sandbox throughout.
mkdir -p "$root/root/ble-multi"
cp "$top/tests/ble/bluez_standin.py" "$top/tests/packaging/boot_ble.py" "$root/root/ble-multi/"
inside python3 /root/ble-multi/boot_ble.py "$device_id" /root/ble-multi/value \
	>"$work/ble-multi.log" 2>&1 &
multi_ble_pid=$!
for _ in $(seq 60); do grep -q '^OWNED' "$work/ble-multi.log" && break; sleep 1; done
printf '[Service]\nDeviceAllow=char-pts rw\n' >"$root/etc/systemd/system/srup-observerd.service.d/nfc-emulator.conf"
inside systemctl daemon-reload
sed -i 's/^channel = sim/channel = ble nfc sim/' "$conf"
reset_failed
check "with channel = ble nfc sim the unit starts" inside systemctl start srup-observerd.service
multi_pid=$(prop MainPID)
check "  the daemon registered its GATT application with org.bluez" \
	bash -c "for _ in \$(seq 60); do grep -q '^REGISTERED' '$work/ble-multi.log' && exit 0; sleep 1; done; exit 1"
check "  STATUS= names every channel" \
	bash -c "for _ in \$(seq 30); do inside systemctl status srup-observerd.service | grep -q 'Status: \"broker connected to [^;]*; channels ble idle, nfc idle, sim idle; 0 pending\"' && exit 0; sleep 1; done; exit 1"
check "a join over sim through the three-channel unit is accepted" \
	inside timeout 120 srup-device --config /root/device.conf join --observer "$observer_id" \
	--channel sim --timeout 90
check "a join over nfc through the three-channel unit is accepted" \
	inside timeout 120 srup-device --config /root/device.conf join --observer "$observer_id" \
	--channel nfc --timeout 90
inside timeout 120 srup-device --config /root/device.conf join --observer "$observer_id" \
	--channel ble --timeout 90 --print-value >"$work/ble-multi-device.log" 2>&1 &
device_pid=$!
for _ in $(seq 60); do
	value=$(sed -n 's/.*confirmation value: \([0-9a-f]*\)$/\1/p' "$work/ble-multi-device.log")
	[ -n "$value" ] && break
	sleep 1
done
echo "$value" >"$root/root/ble-multi/value"
check "a join over ble through the three-channel unit is accepted" wait "$device_pid"
check "  the frame was written over BLE" grep -q '^WRITE ok' "$work/ble-multi.log"
check "  the observer answered 0x60 to all three" \
	bash -c "[ \$(grep -c '^OUTCOME device=$device_id observer=$observer_id observer_status=0x60' '$work/peer.log') = 6 ]"
for channel in sim nfc ble; do
	check "  the journal names $channel as the channel that decided one" \
		bash -c "inside journalctl -b _PID=$multi_pid --no-pager -o cat | grep -q 'observation device=$device_id outcome=valid status=0x60 .* channel=$channel\$'"
done
inside systemctl stop srup-observerd.service
touch "$root/root/ble-multi/stop"
wait "$multi_ble_pid" || true
rm "$root/etc/systemd/system/srup-observerd.service.d/nfc-emulator.conf"
inside systemctl daemon-reload
sed -i 's/^channel = ble nfc sim/channel = sim/' "$conf"

# ---- update activation through systemd: hook -> path unit -> root installer -> result --------

pkg=$work/pkg-probe
mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/srup-activate-probe"
printf 'Package: srup-activate-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: SRUP tests <tests@srup.invalid>\nDescription: activation test package\n' \
	>"$pkg/DEBIAN/control"
echo probe >"$pkg/usr/share/srup-activate-probe/version"
mkdir -p "$root/var/lib/srup-observer/updates"
dpkg-deb --root-owner-group --build "$pkg" "$root/var/lib/srup-observer/updates/probe.deb" >/dev/null
inside chown -R srup-observer:srup-observer /var/lib/srup-observer/updates
check "the activation path unit is active after install" \
	bash -c "[ \"\$(inside systemctl is-active srup-observer-activate.path)\" = active ]"
# The hook as srup-observerd runs it: the service user, the system read-only.
check "the hook, run as the service user under ProtectSystem=strict, reports the install (exit 0)" \
	inside systemd-run --wait --pipe --quiet -p User=srup-observer -p Group=srup-observer \
	-p ProtectSystem=strict -p StateDirectory=srup-observer -p NoNewPrivileges=yes \
	/usr/libexec/srup/srup-observer-activate-request /var/lib/srup-observer/updates/probe.deb tok-1
check "  the root unit installed the package" \
	bash -c "inside dpkg -s srup-activate-probe | grep -q '^Status: install ok installed'"
check "  and says so in the journal" \
	bash -c "inside journalctl -b -u srup-observer-activate.service --no-pager -o cat | grep -q '^installed /var/lib/srup-observer/updates/probe.deb'"

# ---- watchdog and bounded restarts (drop-in with short times) ---------------------------

mkdir -p "$root/etc/systemd/system/srup-observerd.service.d"
cat >"$root/etc/systemd/system/srup-observerd.service.d/test.conf" <<EOF
[Service]
WatchdogSec=5
RestartSec=1
EOF
inside systemctl daemon-reload
reset_failed
inside systemctl start srup-observerd.service || true
check "with WatchdogSec=5 the event loop keeps it alive" \
	bash -c "sleep 12; [ \"\$(inside systemctl show -P NRestarts srup-observerd.service)\" = 0 ] && [ \"\$(inside systemctl show -P SubState srup-observerd.service)\" = running ]"
inside sh -c "kill -STOP $(prop MainPID)"
check "a stopped event loop is killed by the watchdog and restarted" wait_prop NRestarts 1 60
check "  (the journal says watchdog)" journal_has "Watchdog timeout"
for _ in 1 2 3 4 5 6; do
	wait_prop SubState running 60 >/dev/null || break
	inside sh -c "kill -9 $(prop MainPID)"
	sleep 2
done
check "restarts are bounded: the unit fails after StartLimitBurst restarts" wait_prop ActiveState failed 60
check "  (the journal says start request repeated too quickly)" journal_has "Start request repeated too quickly"

# ---- the installed units pass systemd-analyze; removal stops the daemon (12.1) -------------

rm "$root/etc/systemd/system/srup-observerd.service.d/test.conf"
inside systemctl daemon-reload
units="/lib/systemd/system/srup-observerd.service /lib/systemd/system/srup-observer-activate.path
	/lib/systemd/system/srup-observer-activate.service"
# minbase has no man(1): the pages Documentation= names are looked for by file.
# shellcheck disable=SC2086
check "systemd-analyze verify passes on the installed units" inside systemd-analyze verify --man=no $units
check "  the man pages they name are installed" inside test -e /usr/share/man/man8/srup-observerd.8.gz \
	-a -e /usr/share/man/man5/srup-observer.conf.5.gz
exposure=$(inside systemd-analyze security --offline=true /lib/systemd/system/srup-observerd.service |
	sed -n 's/.*Overall exposure level for srup-observerd.service: \([0-9.]*\).*/\1/p')
log "exposure of srup-observerd.service: $exposure"
check "  its exposure is 2.0 or less" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }'
# ---- srup-device.service: the agent's unit, as the observer's (packaging) -----
device_unit=/lib/systemd/system/srup-device.service
check "systemd-analyze verify passes on $device_unit" inside systemd-analyze verify --man=no "$device_unit"
check "  the man page it names first is installed" inside test -e /usr/share/man/man1/srup-device.1.gz
device_exposure=$(inside systemd-analyze security --offline=true "$device_unit" |
	sed -n 's/.*Overall exposure level for srup-device.service: \([0-9.]*\).*/\1/p')
log "exposure of srup-device.service: $device_exposure"
check "  its exposure is 2.5 or less" awk -v e="$device_exposure" 'BEGIN { exit !(e != "" && e <= 2.5) }'
check "  it runs as srup-device, a system user the package made" bash -c '
	[ "$(inside systemctl show -P User srup-device.service)" = srup-device ] &&
	inside getent passwd srup-device >/dev/null'
check "  Type=notify with a watchdog" bash -c '
	[ "$(inside systemctl show -P Type srup-device.service)" = notify ] &&
	[ "$(inside systemctl show -P WatchdogUSec srup-device.service)" != 0 ]'
# Configured as its README.Debian says (key for the service user, settings
# in a drop-in), it starts: active only once READY=1, as srup-device, and a
# reload keeps its PID.
device_id_svc=$(inside srup-keygen --owner srup-device --out /etc/srup/device 2>/dev/null || true)
mkdir -p "$root/etc/srup/device.conf.d"
printf '[identity]\nid = %s\n\n[server]\nid = %s\n\n[mqtt]\nbroker = tcp://127.0.0.1:%s\n' \
	"$device_id_svc" "$server_id" "$port" >"$root/etc/srup/device.conf.d/50-site.conf"
check "  --check-config of device.conf and its drop-in passes as srup-device" \
	inside runuser -u srup-device -- srup-device --config /etc/srup/device.conf --check-config
check "  systemctl start srup-device returns once the agent is ready" inside timeout 120 systemctl start srup-device.service
device_prop() { inside systemctl show -P "$1" srup-device.service; }
device_pid=$(device_prop MainPID)
check "  it is active (running) as srup-device" bash -c "
	[ \"\$(inside systemctl show -P SubState srup-device.service)\" = running ] &&
	[ \"\$(inside stat -c %U /proc/$device_pid)\" = srup-device ]"
check "  systemctl reload srup-device succeeds and keeps the PID" bash -c "
	inside systemctl reload srup-device.service &&
	[ \"\$(inside systemctl show -P MainPID srup-device.service)\" = '$device_pid' ] &&
	[ \"\$(inside systemctl show -P SubState srup-device.service)\" = running ]"
((fail == 0)) || inside journalctl -b -u srup-device.service --no-pager -o cat | tail -n 20
inside systemctl stop srup-device.service || true
# ---- end of srup-device.service ------------------------------------------------

reset_failed
inside systemctl start srup-observerd.service
check "the daemon runs before removal" wait_prop SubState running 60
inside sh -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q srup-observer' >"$work/apt-remove.log" 2>&1
check "apt-get remove srup-observer stops the daemon" \
	bash -c "[ \"\$(inside systemctl is-active srup-observerd.service)\" != active ]"
check "  no srup-observerd process is left" inside sh -c \
	'for c in /proc/[0-9]*/comm; do [ "$(cat "$c" 2>/dev/null)" = srup-observerd ] && exit 1; done; exit 0'

if ((fail)); then
	log "--- journal of srup-observerd"
	inside journalctl -b -u srup-observerd.service --no-pager -o short-monotonic | tail -n 60
	log "--- peer"
	cat "$work/peer.log"
fi
((fail == 0)) && log "boot: all checks passed"
exit $fail
