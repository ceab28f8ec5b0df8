#!/usr/bin/env bash
# Boots the BLE test guest (build-rootfs.sh) under qemu (TCG) and runs one
# test script in it, with the source tree, the build tree and an output
# folder shared over 9p.
#
#   run-guest.sh BUILD_DIR SCRIPT [ARGS...]
#
# SCRIPT is a file in tests/ble/guest/, run by bash inside the guest as
#   SCRIPT /srup/src /srup/build /srup/out ARGS...
# Its exit status is this script's. The guest's console and the logs the
# script leaves in its output folder are printed at the end.
set -euo pipefail

build=$(cd "${1:?usage: run-guest.sh BUILD_DIR SCRIPT [ARGS...]}" && pwd)
script=${2:?usage: run-guest.sh BUILD_DIR SCRIPT [ARGS...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
# The guest root takes minutes to make: it is kept outside the build and the
# clone, so fresh clones and CI runs on this machine reuse it
# (build-rootfs.sh rebuilds it when its inputs change).
cache=${SRUP_GUEST_CACHE:-/var/cache/srup-tests/ble-guest}

t0=$(date +%s.%N)
if [[ ${SRUP_GUEST_NO_INSTALL:-} != 1 ]]; then
	"$src/packaging/install-deps.sh" qemu-system-x86 debootstrap e2fsprogs
fi
for tool in qemu-system-x86_64 debootstrap mkfs.ext4; do
	command -v "$tool" >/dev/null || { echo "run-guest: $tool is missing" >&2; exit 1; }
done
"$here/build-rootfs.sh" "$cache"

out=$(mktemp -d "$build/ble-guest-out.XXXXXX")
# SRUP_GUEST_KEEP_OUT=1 keeps the output folder (logs) for a look after.
[[ ${SRUP_GUEST_KEEP_OUT:-} == 1 ]] || trap 'rm -rf "$out"' EXIT
{
	printf 'export SRUP_GUEST_SCRIPT=%q\n' "$script"
	# Tests of the controllers' bring-up retry only (bluez-up.sh).
	printf 'export SRUP_GUEST_BRINGUP_FAULTS=%q\n' "${SRUP_GUEST_BRINGUP_FAULTS:-0}"
	printf 'exec /bin/bash /srup/src/tests/ble/guest/%q /srup/src /srup/build /srup/out' "$script"
	printf ' %q' "$@"
	printf '\n'
} >"$out/run"

echo "run-guest: booting the guest for $script"
t1=$(date +%s.%N)
# TCG: KVM is not available on these machines. The guest powers itself off
# (sysrq o) when the script ends; the timeout is a last resort.
timeout --kill-after=10 "${SRUP_GUEST_TIMEOUT:-900}" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
	-nic none -no-reboot -display none -monitor none -serial "file:$out/console.log" \
	-snapshot \
	-kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 panic=-1 loglevel=4 init=/sbin/srup-guest-init" \
	-drive "file=$cache/rootfs.img,format=raw,if=virtio" \
	-virtfs "local,path=$src,mount_tag=src,security_model=none,readonly=on" \
	-virtfs "local,path=$build,mount_tag=build,security_model=none,readonly=on" \
	-virtfs "local,path=$out,mount_tag=out,security_model=none" </dev/null || true
t2=$(date +%s.%N)

rc=$(cat "$out/rc" 2>/dev/null || echo "none")
echo "---- guest console ----"
cat "$out/console.log" 2>/dev/null || true
for f in "$out"/*.log; do
	[[ -f $f ]] || continue
	case $(basename "$f") in
	console.log) continue ;;
	# bluetoothd -d is verbose: its end, and only when something failed.
	bluetoothd.log) [[ $rc == 0 ]] && continue
		echo "---- bluetoothd.log (last 300 lines) ----"; tail -n 300 "$f"; continue ;;
	esac
	echo "---- $(basename "$f") ----"
	cat "$f"
done
awk -v a="$t0" -v b="$t1" -v c="$t2" -v rc="$rc" 'BEGIN {
	printf "run-guest: guest ran %.1f s, whole run %.1f s, script exit status %s\n", c - b, c - a, rc }'
[[ ${SRUP_GUEST_KEEP_OUT:-} == 1 ]] && echo "run-guest: output kept in $out"
[[ $rc == 0 ]]
