#!/usr/bin/env bash
# The packages installed as a site operator would: in a clean Debian 12
# minbase root, with apt resolving their dependencies from the archive the
# host's apt sources name; then configured, upgraded, removed and purged.
#   - the service users, the modes of the state directories and the key,
#     the conffiles and the drop-in directories, the units where Debian
#     12's systemd and dh_installsystemd look, the maintainer scripts'
#     service snippets;
#   - the units are not enabled by the install (not started before they are
#     configured); an enabled unit stays enabled over a reinstall;
#   - --check-config of the shipped example, as the service user, names
#     what is left to fill in; with the key made by srup-keygen --owner and
#     the operator's settings in a drop-in (observer.conf.d/50-site.conf) it
#     passes, observer.conf itself untouched;
#   - an upgrade as unattended-upgrades runs it (standard input closed,
#     DEBIAN_FRONTEND=noninteractive, no --force-conf*) to packages whose
#     example configurations changed (a second build in this test, version
#     bumped) asks nothing and exits 0: the examples are replaced by the
#     new ones, the drop-ins kept, the check passes with the operator's
#     settings, the enabled unit stays enabled;
#   - a purge leaves no wants link, no /var/lib/srup-observer or
#     /var/lib/srup-device, and nothing of the packages but what Debian
#     policy keeps: the system users and groups, and the files the operator
#     made (keys, drop-ins);
#   - a device maker's program builds in the root from libsrup-device-dev
#     alone: the example device it ships, once with its Makefile
#     (pkg-config) and once with its CMakeLists.txt (find_package), each
#     then run there against a Mosquitto and the test peer on the host
#     (tests/packaging/test_example_device.py; a chroot shares the host's
#     network), answering ID_REQ, ACTION and DATA.
# The clean root comes from tests/packaging/clean_root.sh (cached).
# Usage: test_install.sh [BUILD_DIR] (the build tree with srup-join-peer and
# srup-keygen, for the example device's run; default build/). SRUP_DEBS_DIR:
# use the .debs there instead of building them; SRUP_INSTALL_PACKAGES: the
# packages to install.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$top/build}
work=$(mktemp -d /var/tmp/srup-install.XXXXXX)
root=$work/root
fail=0 passed=0

log() { printf '%s\n' "$*"; }
check() { # description, then a command that must succeed
	local what=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		log "ok: $what"
	else
		fail=$((fail + 1))
		log "FAIL: $what"
	fi
}
# shellcheck source=clean_root.sh
. "$top/tests/packaging/clean_root.sh"
as_service_user() { in_root setpriv --reuid=srup-observer --regid=srup-observer --init-groups "$@"; }
cleanup() {
	set +e
	clean_root_umount
	if ((fail)) || [ -n "${SRUP_KEEP_WORKDIR:-}" ]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { log "test_install.sh must run as root (chroot, debootstrap)"; exit 1; }

clean_root || { fail=1; exit 1; }

# ---- the packages ----------------------------------------------------------
if [ -n "${SRUP_DEBS_DIR:-}" ]; then
	debs_dir=$SRUP_DEBS_DIR
else
	"$top/packaging/build-deb.sh" "$work/debs" >/dev/null
	debs_dir=$work/debs
fi
# SRUP_INSTALL_PACKAGES: another set (e.g. the packages of an older tree).
read -r -a packages <<<"${SRUP_INSTALL_PACKAGES:-libsrup1 libsrup-dev libsrup-device1 libsrup-device-dev srup-tools srup-observer srup-device}"
mkdir -p "$root/var/tmp/debs"
for p in "${packages[@]}"; do
	cp "$debs_dir/${p}_"*.deb "$root/var/tmp/debs/"
done

with_device_dev=
[[ " ${packages[*]} " == *" libsrup-device-dev "* ]] && with_device_dev=1
# A device maker's tools, installed before the snapshot: the purge of the
# packages does not remove them.
if [ -n "$with_device_dev" ]; then
	log "installing a device maker's tools: gcc libc6-dev make cmake"
	in_root apt-get install -y -q --no-install-recommends gcc libc6-dev make cmake \
		>"$work/apt-tools.log" 2>&1 || {
		tail -n 40 "$work/apt-tools.log"
		fail=1
		exit 1
	}
fi

# What the root holds before: the purge must come back to it.
snapshot() { # what may change anyway is left out: apt's and dpkg's own state,
	# logs, caches, /tmp, and the files whose content (not presence) changes
	(cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./run -o -path ./tmp \
		-o -path ./var/tmp -o -path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./var/cache \
		-o -path ./var/log \) -prune -o -print | sort)
}
snapshot >"$work/before.txt"

log "installing with apt: ${packages[*]}"
debs=()
for f in "$root"/var/tmp/debs/*.deb; do debs+=("/var/tmp/debs/$(basename "$f")"); done
in_root apt-get install -y -q --no-install-recommends "${debs[@]}" >"$work/apt-install.log" 2>&1 || {
	tail -n 40 "$work/apt-install.log"
	fail=1
	exit 1
}
check "apt resolved every dependency (apt-get check)" in_root apt-get check -qq
for p in "${packages[@]}"; do
	check "$p installed" sh -c "chroot '$root' dpkg-query -W -f='\${Status}' $p | grep -qx 'install ok installed'"
done
check "programs find their libraries" sh -c "! chroot '$root' ldd /usr/sbin/srup-observerd /usr/bin/srup-device \
	/usr/bin/srup-msg /usr/bin/srup-keygen | grep -q 'not found'"

# ---- a device maker's program on libsrup-device-dev -------------------------
# The example device as the package ships it, built in the root with
# nothing but the installed packages, then run there against a private
# Mosquitto and the test peer started on the host (the same network).
if [ -n "$with_device_dev" ]; then
	examples=/usr/share/doc/libsrup-device-dev/examples
	in_root sh -c "rm -rf /var/tmp/example-make && cp -r $examples /var/tmp/example-make &&
		make -C /var/tmp/example-make" >"$work/example-make.log" 2>&1 && rc=0 || rc=$?
	check "the example device builds in the root with its Makefile, pkg-config srup-device (exit $rc)" \
		test "$rc" = 0
	((rc == 0)) || tail -n 30 "$work/example-make.log" | sed 's/^/    /'
	in_root sh -c "rm -rf /var/tmp/example-cmake && cmake -S $examples -B /var/tmp/example-cmake &&
		cmake --build /var/tmp/example-cmake" >"$work/example-cmake.log" 2>&1 && rc=0 || rc=$?
	check "the example device builds in the root with its CMakeLists.txt, find_package(srup-device) (exit $rc)" \
		test "$rc" = 0
	((rc == 0)) || tail -n 30 "$work/example-cmake.log" | sed 's/^/    /'
	for prog in /var/tmp/example-make/example-device /var/tmp/example-cmake/example-device; do
		[ -x "$root$prog" ] || continue
		check "$prog uses the installed libsrup-device.so.1" \
			sh -c "chroot '$root' ldd '$prog' | grep -Eq 'libsrup-device\.so\.1 => (/usr)?/lib/[^/]+/libsrup-device\.so\.1 '"
		python3 "$top/tests/packaging/test_example_device.py" "$build" "$prog" --root "$root" \
			>"$work/example-run.log" 2>&1 && rc=0 || rc=$?
		check "$prog, run in the root, answers ID_REQ, ACTION (0x20, 0x2E) and DATA (file written; 0x3F) (exit $rc)" \
			test "$rc" = 0
		((rc == 0)) || tail -n 40 "$work/example-run.log" | sed 's/^/    /'
	done
fi

# The service users and their directories.
mode() { in_root stat -c '%a %U:%G' "$1"; }
service_user() { # user, its package, its state directory
	local pw uid gid home shell
	pw=$(in_root getent passwd "$1" || true)
	IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
	check "user $1 exists" test -n "$pw"
	check "$1 is a system user (uid $uid < 1000)" test "${uid:-1000}" -lt 1000
	check "its group is $1" sh -c "chroot '$root' getent group $1 | cut -d: -f3 | grep -qx '$gid'"
	check "its home is $3" test "$home" = "$3"
	check "it has no login shell ($shell)" test "$shell" = /usr/sbin/nologin
	check "$3 is 700 $1:$1" test "$(mode "$3")" = "700 $1:$1"
}
with_device=
[[ " ${packages[*]} " == *" srup-device "* ]] && with_device=1
service_user srup-observer srup-observer /var/lib/srup-observer
[ -z "$with_device" ] || service_user srup-device srup-device /var/lib/srup-device
check "/etc/srup/observer.conf is 644 root:root" test "$(mode /etc/srup/observer.conf)" = "644 root:root"
check "/usr/sbin/srup-observerd is 755 root:root" test "$(mode /usr/sbin/srup-observerd)" = "755 root:root"
conffile_md5() { # package, conffile: the md5sum dpkg recorded for it
	chroot "$root" dpkg-query -W -f='${Conffiles}\n' "$1" | awk -v f="$2" '$1 == f {print $2}'
}
check "/etc/srup/observer.conf is a conffile of srup-observer" test -n "$(conffile_md5 srup-observer /etc/srup/observer.conf)"
# The operator's settings go in drop-ins beside the examples.
check "/etc/srup/observer.conf.d/ is shipped, 755 root:root" \
	test "$(mode /etc/srup/observer.conf.d)" = "755 root:root"
if [ -n "$with_device" ]; then
	check "/etc/srup/device.conf is a conffile of srup-device" test -n "$(conffile_md5 srup-device /etc/srup/device.conf)"
	check "/etc/srup/device.conf.d/ is shipped, 755 root:root" \
		test "$(mode /etc/srup/device.conf.d)" = "755 root:root"
fi

# The unit and the maintainer scripts.
unit=/lib/systemd/system/srup-observerd.service
wants=/etc/systemd/system/multi-user.target.wants/srup-observerd.service
check "the unit is installed as $unit" test -f "$root$unit"
info=$root/var/lib/dpkg/info/srup-observer
check "postinst has the unit's systemd snippet" grep -q "deb-systemd-helper update-state 'srup-observerd.service'" "$info.postinst"
check "prerm stops the unit" grep -q "deb-systemd-invoke stop 'srup-observerd.service'" "$info.prerm"
check "postrm purges the unit's links" grep -q "deb-systemd-helper purge 'srup-observerd.service'" "$info.postrm"
check "the install did not enable the unit (it is not configured yet)" test ! -e "$root$wants" -a ! -L "$root$wants"
if [ -n "$with_device" ]; then
	check "srup-device.service is installed in /lib/systemd/system" test -f "$root/lib/systemd/system/srup-device.service"
	check "the install did not enable srup-device.service" \
		test ! -e "$root/etc/systemd/system/multi-user.target.wants/srup-device.service"
	check "srup-device's postrm purges the unit's links" \
		grep -q "deb-systemd-helper purge 'srup-device.service'" "$root/var/lib/dpkg/info/srup-device.postrm"
fi

# The shipped example, checked as the service user, names what is left.
as_service_user srup-observerd --config /etc/srup/observer.conf --check-config >"$work/check.txt" 2>&1 && rc=0 || rc=$?
log "--check-config of the shipped example (exit $rc):"
sed 's/^/    /' "$work/check.txt"
check "the shipped example fails --check-config with exit 78" test "$rc" = 78
for k in "\[identity\] id" "\[server\] id" "\[mqtt\] broker"; do
	check "its output names /etc/srup/observer.conf:LINE: $k" \
		grep -Eq "/etc/srup/observer.conf:[0-9]+: .*$k" "$work/check.txt"
done

# Configured as README.Debian says: the keys made for the service users,
# the operator's settings in a drop-in, the shipped examples untouched.
# (Packages without the drop-in directories leave the operator only the
# example itself to edit; that is what made upgrades ask.)
id=$(in_root srup-keygen --owner srup-observer --out /etc/srup/observer) || id=
server_id=$(in_root srup-keygen --out /root/server) || server_id=
check "srup-keygen --owner srup-observer made the observer's key" test -n "$id"
[ -z "$server_id" ] || cp "$root/root/server/$server_id.pem" "$root/etc/srup/server-public.pem"
check "the observer's key is 600 srup-observer:srup-observer" \
	test "$(mode /etc/srup/observer/private.pem)" = "600 srup-observer:srup-observer"
check "its directory is 700 srup-observer:srup-observer" \
	test "$(mode /etc/srup/observer)" = "700 srup-observer:srup-observer"
site_settings() { # name (observer, device), ID: the operator's settings
	printf '[identity]\nid = %s\n\n[server]\nid = %s\n\n[mqtt]\nbroker = tcp://127.0.0.1:1883\n' "$2" "$server_id"
	# The chroot has no system bus, so --check-config rightly says ble (the
	# example's channel) cannot work here; sim needs nothing.
	[ "$1" = device ] || printf '\n[observation]\nchannel = sim\n'
}
configure() { # name (observer, device)
	if [ -d "$root/etc/srup/$1.conf.d" ]; then
		site_settings "$1" "$2" >"$root/etc/srup/$1.conf.d/50-site.conf"
	else
		log "no /etc/srup/$1.conf.d: configuring in /etc/srup/$1.conf itself"
		sed -i -e "/^\[identity\]/,/^\[/ s/^id = .*/id = $2/" -e "/^\[server\]/,/^\[/ s/^id = .*/id = $server_id/" \
			-e "s|^broker = .*|broker = tcp://127.0.0.1:1883|" -e "s|^channel = .*|channel = sim|" "$root/etc/srup/$1.conf"
	fi
}
configure observer "$id"
as_service_user srup-observerd --config /etc/srup/observer.conf --check-config >"$work/check2.txt" 2>&1 && rc=0 || rc=$?
check "with the drop-in, --check-config passes as the service user (exit $rc)" test "$rc" = 0
sed 's/^/    /' "$work/check2.txt"
check "--check-config names the drop-in it read" grep -q '/etc/srup/observer.conf.d/50-site.conf' "$work/check2.txt"
check "--check-config reports the operator's observer ID $id" grep -qi "$id" "$work/check2.txt"
example_kept() { # package, conffile
	test "$(in_root md5sum "$2" | cut -d' ' -f1)" = "$(conffile_md5 "$1" "$2")"
}
check "/etc/srup/observer.conf is as shipped" example_kept srup-observer /etc/srup/observer.conf
as_device_user() { in_root setpriv --reuid=srup-device --regid=srup-device --init-groups "$@"; }
if [ -n "$with_device" ]; then
	device_id=$(in_root srup-keygen --owner srup-device --out /etc/srup/device) || device_id=
	check "srup-keygen --owner srup-device made the device's key" test -n "$device_id"
	check "the device's key is 600 srup-device:srup-device" \
		test "$(mode /etc/srup/device/private.pem)" = "600 srup-device:srup-device"
	configure device "$device_id"
	as_device_user srup-device --config /etc/srup/device.conf --check-config >"$work/check-device.txt" 2>&1 && rc=0 || rc=$?
	check "with the drop-in, srup-device --check-config passes as srup-device (exit $rc)" test "$rc" = 0
	sed 's/^/    /' "$work/check-device.txt"
	check "/etc/srup/device.conf is as shipped" example_kept srup-device /etc/srup/device.conf
fi

# The operator enables the units (as systemctl enable does, without a
# running systemd) and the daemons keep state; a reinstall keeps all.
device_unit=/lib/systemd/system/srup-device.service
device_wants=/etc/systemd/system/multi-user.target.wants/srup-device.service
mkdir -p "$(dirname "$root$wants")"
ln -s "$unit" "$root$wants"
[ -z "$with_device" ] || ln -s "$device_unit" "$root$device_wants"
# (StateDirectory= makes the directory at the first start if it is missing.)
[ -d "$root/var/lib/srup-observer" ] || in_root install -d -m 700 -o srup-observer -g srup-observer /var/lib/srup-observer
as_service_user sh -c 'echo state >/var/lib/srup-observer/seq' || true
in_root apt-get install -y -q --reinstall "$(printf '%s\n' "${debs[@]}" | grep /srup-observer_)" >"$work/apt-reinstall.log" 2>&1 ||
	tail -n 20 "$work/apt-reinstall.log"
check "a reinstall keeps the unit enabled" test -L "$root$wants"
check "a reinstall keeps the state" test -f "$root/var/lib/srup-observer/seq"
check "a reinstall keeps the operator's settings" sh -c "grep -qs '^id = $id' '$root/etc/srup/observer.conf.d/50-site.conf' '$root/etc/srup/observer.conf'"

# ---- the upgrade, as unattended-upgrades runs it ---------------------------
# The next version's packages: this tree with its changelog bumped and both
# example configurations changed (a conffile the package changes is the
# case dpkg asks about when the operator has changed it too). nocheck: the
# unit tests ran in the first build.
version=$(chroot "$root" dpkg-query -W -f='${Version}' srup-observer)
next=$version+upgrade1
cat >"$work/next-version.sh" <<EOS
#!/bin/sh
set -e
{
	printf 'srup (%s) bookworm; urgency=medium\n\n  * The upgrade test: example configurations changed.\n\n' '$next'
	printf ' -- SRUP maintainers <maintainers@srup.invalid>  %s\n\n' "\$(date -R)"
	cat debian/changelog
} >debian/changelog.new
mv debian/changelog.new debian/changelog
for f in packaging/observer.conf packaging/device.conf; do
	printf '\n# An example changed in %s.\n' '$next' >>"\$f"
done
EOS
chmod +x "$work/next-version.sh"
log "building $next"
DEB_BUILD_OPTIONS=nocheck "$top/packaging/build-deb.sh" "$work/debs-next" "$work/next-version.sh" >"$work/build-next.log" 2>&1 || {
	tail -n 40 "$work/build-next.log"
	fail=$((fail + 1))
	exit 1
}
mkdir -p "$root/var/tmp/debs-next"
next_debs=()
for p in "${packages[@]}"; do
	f=$(ls "$work/debs-next/${p}_${next}_"*.deb)
	cp "$f" "$root/var/tmp/debs-next/"
	next_debs+=("/var/tmp/debs-next/$(basename "$f")")
done
# Standard input closed, no terminal, no --force-conf* option: any
# question dpkg asks ends the upgrade ("end of file on stdin at conffile
# prompt").
log "upgrading to $next with standard input closed"
in_root apt-get install -y -q "${next_debs[@]}" </dev/null >"$work/apt-upgrade.log" 2>&1 && rc=0 || rc=$?
check "the upgrade exits 0 (exit $rc)" test "$rc" = 0
check "the upgrade asked nothing" sh -c "! grep -Eiq 'conffile prompt|Configuration file .* modified' '$work/apt-upgrade.log'"
((rc == 0)) || grep -Ei -B2 -A10 'conffile|error' "$work/apt-upgrade.log" | tail -n 40 | sed 's/^/    /'
for p in "${packages[@]}"; do
	check "$p is at $next" sh -c "chroot '$root' dpkg-query -W -f='\${Version} \${Status}' $p | grep -qx '$next install ok installed'"
done
check "/etc/srup/observer.conf is the new example" grep -q "^# An example changed in $next" "$root/etc/srup/observer.conf"
site_settings observer "$id" >"$work/site.conf"
check "the operator's drop-in is kept as written" cmp -s "$work/site.conf" "$root/etc/srup/observer.conf.d/50-site.conf"
check "no .dpkg-dist, .dpkg-old or .dpkg-new is left in /etc/srup" \
	sh -c "! find '$root/etc/srup' -name '*.dpkg-*' | grep -q ."
as_service_user srup-observerd --config /etc/srup/observer.conf --check-config >"$work/check3.txt" 2>&1 && rc=0 || rc=$?
check "after the upgrade, --check-config passes as the service user with the operator's settings (exit $rc)" \
	sh -c "test '$rc' = 0 && grep -qi '$id' '$work/check3.txt'"
[ "$rc" = 0 ] || sed 's/^/    /' "$work/check3.txt"
check "the upgrade keeps the unit enabled (so its postinst restarts it)" test -L "$root$wants"
check "the upgrade's postinst restarts an enabled unit (deb-systemd-invoke restart)" \
	grep -q "deb-systemd-invoke \$_dh_action 'srup-observerd.service'" "$info.postinst"
if [ -n "$with_device" ]; then
	check "/etc/srup/device.conf is the new example" grep -q "^# An example changed in $next" "$root/etc/srup/device.conf"
	check "the device's drop-in is kept" grep -q "^id = $device_id" "$root/etc/srup/device.conf.d/50-site.conf"
	as_device_user srup-device --config /etc/srup/device.conf --check-config >"$work/check-device2.txt" 2>&1 && rc=0 || rc=$?
	check "after the upgrade, srup-device --check-config passes as srup-device (exit $rc)" test "$rc" = 0
	check "the upgrade keeps srup-device.service enabled" test -L "$root$device_wants"
fi

# ---- remove, then purge -----------------------------------------------------
if [ -n "$with_device" ]; then
	# The agent's state, as its unit leaves it (StateDirectory= makes the
	# directory at the first start, owned by User=, if the package did not).
	owner=root
	in_root getent passwd srup-device >/dev/null && owner=srup-device
	[ -d "$root/var/lib/srup-device" ] || in_root install -d -m 700 -o "$owner" -g "$owner" /var/lib/srup-device
	in_root setpriv --reuid="$owner" --regid="$owner" --init-groups sh -c 'echo state >/var/lib/srup-device/seq'
	check "the agent has state in /var/lib/srup-device before the purge" test -f "$root/var/lib/srup-device/seq"
fi
in_root apt-get remove -y -q srup-observer >"$work/apt-remove.log" 2>&1 || tail -n 20 "$work/apt-remove.log"
check "remove keeps the configuration" test -f "$root/etc/srup/observer.conf"
check "remove keeps the state" test -d "$root/var/lib/srup-observer"
in_root apt-get purge -y -q --autoremove "${packages[@]}" >"$work/apt-purge.log" 2>&1 || tail -n 20 "$work/apt-purge.log"
for p in "${packages[@]}"; do
	check "$p purged" sh -c "! chroot '$root' dpkg-query -W -f='\${Status}' $p 2>/dev/null | grep -q ."
done
check "purge removes the wants link" test ! -e "$root$wants" -a ! -L "$root$wants"
check "purge removes /var/lib/srup-observer" test ! -e "$root/var/lib/srup-observer"
check "purge removes the conffile" test ! -e "$root/etc/srup/observer.conf"
check "the system user stays (Debian keeps it: files may still be its)" sh -c "chroot '$root' getent passwd srup-observer >/dev/null"
if [ -n "$with_device" ]; then
	check "purge removes srup-device.service's wants link" test ! -e "$root$device_wants" -a ! -L "$root$device_wants"
	check "purge removes /var/lib/srup-device" test ! -e "$root/var/lib/srup-device"
	check "purge removes /etc/srup/device.conf" test ! -e "$root/etc/srup/device.conf"
	check "the system user srup-device stays" sh -c "chroot '$root' getent passwd srup-device >/dev/null"
fi

# Nothing else is left: only what the operator made (keys, drop-ins, and
# the directories holding them) and the users' entries in the account files.
snapshot | grep -vxE '\./etc/(passwd|group|shadow|gshadow)-?' >"$work/after.txt"
grep -vxE '\./etc/(passwd|group|shadow|gshadow)-?' "$work/before.txt" >"$work/before-clean.txt"
kept='\./etc/srup|\./etc/srup/(observer|device)(/.*)?|\./etc/srup/(observer|device)\.conf\.d(/50-site\.conf)?|\./etc/srup/server-public\.pem|\./root/server(/.*)?'
comm -13 "$work/before-clean.txt" "$work/after.txt" | grep -vxE "$kept" >"$work/left.txt" || true
comm -23 "$work/before-clean.txt" "$work/after.txt" >"$work/gone.txt" || true
check "purge leaves nothing but the operator's files" test ! -s "$work/left.txt"
sed 's/^/    left: /' "$work/left.txt"
check "purge removes nothing that was there before" test ! -s "$work/gone.txt"
sed 's/^/    gone: /' "$work/gone.txt"

log "packaging_install: $passed passed, $fail failed"
((fail == 0))
