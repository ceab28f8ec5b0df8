#!/usr/bin/env bash
# Builds the guest for the real-BlueZ test: a Debian 12 minbase root with
# the stock kernel, BlueZ, btvirt, dbus, Mosquitto and the runtime libraries
# of the project's binaries, as an ext4 image plus the kernel and a small
# initramfs. The result is cached in the given folder and rebuilt only when
# this script or the package list changes.
#
#   build-rootfs.sh CACHE_DIR
#
# Needs root, debootstrap and e2fsprogs.
set -euo pipefail

cache=${1:?usage: build-rootfs.sh CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${SRUP_GUEST_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

packages=(
	linux-image-amd64 kmod udev
	dbus bluez bluez-test-tools
	mosquitto python3
	# spec_central.py, a central written from the spec alone
	python3-dbus python3-gi
	# runtime libraries of srup-observerd, srup-device and the test peer
	libssl3 libpaho-mqtt1.3 libcjson1 libinih1 libnfc6 libsystemd0 libcurl4
	procps iproute2
)

# The cache key: this script, the init it installs, and the package list.
stamp=$( (cat "$0" "$here/guest-init.sh"; printf '%s\n' "${packages[@]}") | sha256sum | cut -c1-16)
if [[ -f $cache/stamp && $(cat "$cache/stamp") == "$stamp" && -f $cache/rootfs.img &&
	-f $cache/vmlinuz && -f $cache/initrd.img ]]; then
	echo "guest root: cached in $cache"
	exit 0
fi

mkdir -p "$cache"
root=$cache/root
rm -rf "$root" "$cache/stamp" "$cache/rootfs.img"
mkdir -p "$root"

start=$(date +%s)
include=$(IFS=,; echo "${packages[*]}")
echo "guest root: debootstrap $suite ($mirror)"
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
	>"$cache/debootstrap.log" 2>&1 || {
	tail -n 30 "$cache/debootstrap.log" >&2
	echo "guest root: debootstrap failed (log: $cache/debootstrap.log)" >&2
	exit 1
}

# A small initramfs: only what mounting a virtio ext4 root needs.
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >"$root/etc/initramfs-tools/modules"
kver=$(basename "$(ls -d "$root"/lib/modules/* | sort | tail -n 1)")
chroot "$root" update-initramfs -u -k "$kver" >"$cache/initramfs.log" 2>&1 || {
	tail -n 30 "$cache/initramfs.log" >&2
	echo "guest root: update-initramfs failed" >&2
	exit 1
}
cp "$root/boot/vmlinuz-$kver" "$cache/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$cache/initrd.img"

chroot "$root" dbus-uuidgen --ensure
install -m 0755 "$here/guest-init.sh" "$root/sbin/srup-guest-init"
mkdir -p "$root/srup/src" "$root/srup/build" "$root/srup/out"
# Neither the distribution's broker nor its Bluetooth service starts by
# itself: there is no systemd in the guest, the test starts what it needs.
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/usr/share/doc" "$root/usr/share/man" \
	"$root/usr/share/locale"

mkfs.ext4 -q -F -L srup-guest -d "$root" "$cache/rootfs.img" 1536M
rm -rf "$root"
echo "$stamp" >"$cache/stamp"
echo "guest root: built in $(($(date +%s) - start)) s"
