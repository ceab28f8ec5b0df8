#!/usr/bin/env bash
# The Debian packages, built the Debian way (packaging/build-deb.sh runs
# dpkg-buildpackage -us -uc, source and binaries) into OUTDIR, which the
# install and boot tests then use:
#   - lintian --pedantic on the .changes: 0 errors, 0 warnings;
#   - each package holds its files; the unit is where Debian 12's
#     dh_installsystemd looks, so the maintainer scripts carry its snippets
#    ; the purge cleans the state directory;
#   - libsrup1 exports exactly the functions of libsrup.map (the installed
#     headers' API) under SONAME libsrup.so.1;
#   - a device maker's program builds against libsrup-dev both with
#     pkg-config and with find_package(srup), and runs;
#   - the same for libsrup-device1 (libsrup-device.map, SONAME
#     libsrup-device.so.1) and libsrup-device-dev, whose example device
#     builds with its Makefile (pkg-config srup-device) and its
#     CMakeLists.txt (find_package(srup-device)); test_install.sh builds
#     and runs it in a clean root.
# Usage: test_deb.sh OUTDIR
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "${1:?usage: test_deb.sh OUTDIR}" && cd "$1" && pwd)
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.dsc "$out"/*.tar.* "$out"/*.buildinfo
"$top/packaging/install-deps.sh" lintian >/dev/null
changes=$("$top/packaging/build-deb.sh" "$out" | tail -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0 passed=0
check() { # description, then a command that must succeed
	local what=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
	else
		echo "FAIL: $what"
		fail=$((fail + 1))
	fi
}
deb() { ls "$out/$1"_*.deb; }
has() { # package, path
	dpkg-deb -c "$(deb "$1")" | awk '{print $6}' | sed 's,^\./,/,; s,/$,,' | grep -qx "$2"
}
script_has() { # package, control file, extended regexp
	dpkg-deb -I "$(deb "$1")" "$2" 2>/dev/null | grep -Eq -- "$3"
}
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

# lintian: every tag of error or warning severity fails.
lintian --pedantic --tag-display-limit 0 "$changes" >"$work/lintian.txt" 2>&1 || true
grep -E '^[EW]: ' "$work/lintian.txt" >"$work/lintian-ew.txt" || true
echo "lintian --pedantic: $(grep -c '^E: ' "$work/lintian.txt" || true) errors," \
	"$(grep -c '^W: ' "$work/lintian.txt" || true) warnings," \
	"$(grep -c '^[IPX]: ' "$work/lintian.txt" || true) other tags"
cat "$work/lintian.txt" | grep -v '^running with root privileges' || true
check "lintian: no error or warning" test ! -s "$work/lintian-ew.txt"

for f in libsrup1:/usr/lib/$ma/libsrup.so.1 \
	libsrup-dev:/usr/lib/$ma/libsrup.so libsrup-dev:/usr/include/srup/srup.h \
	libsrup-dev:/usr/include/srup/srup_keys.h \
	libsrup-dev:/usr/lib/$ma/pkgconfig/srup.pc libsrup-dev:/usr/lib/$ma/cmake/srup/srupConfig.cmake \
	libsrup-dev:/usr/lib/$ma/cmake/srup/srupTargets.cmake \
	srup-tools:/usr/bin/srup-msg srup-tools:/usr/bin/srup-keygen srup-tools:/usr/bin/srup-register \
	srup-tools:/usr/share/man/man1/srup-register.1.gz \
	srup-tools:/usr/share/man/man1/srup-msg.1.gz srup-tools:/usr/share/man/man1/srup-keygen.1.gz \
	srup-observer:/usr/sbin/srup-observerd srup-observer:/etc/srup/observer.conf \
	srup-observer:/lib/systemd/system/srup-observerd.service \
	srup-observer:/usr/share/man/man8/srup-observerd.8.gz \
	srup-observer:/usr/share/man/man5/srup-observer.conf.5.gz \
	srup-observer:/usr/bin/srup-observerctl srup-observer:/usr/share/man/man1/srup-observerctl.1.gz \
	srup-device:/usr/bin/srup-device srup-device:/usr/share/man/man1/srup-device.1.gz \
	srup-device:/etc/srup/device.conf \
	libsrup-device1:/usr/lib/$ma/libsrup-device.so.1 libsrup-device-dev:/usr/lib/$ma/libsrup-device.so \
	libsrup-device-dev:/usr/include/srup/srup_device.h libsrup-device-dev:/usr/lib/$ma/pkgconfig/srup-device.pc \
	libsrup-device-dev:/usr/lib/$ma/cmake/srup-device/srup-deviceConfig.cmake \
	libsrup-device-dev:/usr/lib/$ma/cmake/srup-device/srup-deviceTargets.cmake \
	libsrup-device-dev:/usr/share/doc/libsrup-device-dev/examples/example-device.c \
	libsrup-device-dev:/usr/share/doc/libsrup-device-dev/examples/CMakeLists.txt \
	libsrup-device-dev:/usr/share/doc/libsrup-device-dev/examples/Makefile; do
	check "${f%%:*} holds ${f#*:}" has "${f%%:*}" "${f#*:}"
done
for unit in "$top"/packaging/srup-device*.service; do
	[ -e "$unit" ] || continue
	check "srup-device holds its unit $(basename "$unit")" has srup-device "/lib/systemd/system/$(basename "$unit")"
	check "srup-device does not enable $(basename "$unit") on install" \
		script_has srup-device postinst "deb-systemd-helper update-state '$(basename "$unit")'"
done
hasnt() { ! has "$@"; }
check "libsrup-dev leaves srup_device.h to libsrup-device-dev" hasnt libsrup-dev /usr/include/srup/srup_device.h
check "no unit under /usr/lib/systemd/system, which dh_installsystemd of Debian 12 does not scan" \
	sh -c "! dpkg-deb -c '$(deb srup-observer)' | grep -q ' ./usr/lib/systemd/system/'"
check "observer.conf is a conffile" script_has srup-observer conffiles '^/etc/srup/observer.conf$'
check "device.conf is a conffile" script_has srup-device conffiles '^/etc/srup/device.conf$'
check "postinst makes the service user" script_has srup-observer postinst 'adduser --system'
check "postinst records the unit's links without enabling it" \
	script_has srup-observer postinst "deb-systemd-helper update-state 'srup-observerd.service'"
# deb-systemd-invoke starts only enabled units: a first install starts
# nothing, an upgrade restarts what the operator enabled.
check "postinst enables the unit only if it was enabled before" \
	sh -c "dpkg-deb -I '$(deb srup-observer)' postinst | grep -B2 \"deb-systemd-helper enable 'srup-observerd.service'\" | grep -q was-enabled"
check "postinst (re)starts the unit through deb-systemd-invoke" \
	script_has srup-observer postinst "deb-systemd-invoke \\\$_dh_action 'srup-observerd.service'"
check "prerm stops the unit" script_has srup-observer prerm "deb-systemd-invoke stop 'srup-observerd.service'"
check "postrm purges the unit's links" script_has srup-observer postrm "deb-systemd-helper purge 'srup-observerd.service'"
# The activation oneshot may be running dpkg itself: no script touches it.
for script in postinst prerm postrm preinst; do
	check "$script never starts, stops or restarts srup-observer-activate.service" \
		sh -c "! dpkg-deb -I '$(deb srup-observer)' $script 2>/dev/null | grep -q 'srup-observer-activate.service'"
done
check "postrm removes /var/lib/srup-observer on purge" script_has srup-observer postrm 'rm -rf /var/lib/srup-observer'
check "srup-device's postinst makes its service user" script_has srup-device postinst 'adduser --system'
check "srup-device's postrm removes /var/lib/srup-device on purge" script_has srup-device postrm 'rm -rf /var/lib/srup-device'
# The operator's settings go in drop-ins, so the examples stay as shipped.
for d in srup-observer:/etc/srup/observer.conf.d srup-device:/etc/srup/device.conf.d \
	srup-observer:/usr/share/doc/srup-observer/README.Debian \
	srup-device:/usr/share/doc/srup-device/README.Debian; do
	check "${d%%:*} holds ${d#*:}" has "${d%%:*}" "${d#*:}"
done
# The installed headers are the interface: struct srup_msg's layout, the
# codec table and the hex helpers stay in the source tree.
dev_headers() {
	dpkg-deb -c "$(deb libsrup-dev)" | awk '{print $6}' |
		sed -n 's,.*/include/srup/\([^/][^/]*\)$,\1,p' | sort | tr '\n' ' '
}
check "libsrup-dev installs srup.h and srup_keys.h only" test "$(dev_headers)" = "srup.h srup_keys.h "
check "srup-observer recommends bluez (the example's channel is ble)" \
	sh -c "dpkg-deb -f '$(deb srup-observer)' Recommends | grep -qw bluez"

# The library: its SONAME, and exports equal to the version script.
dpkg-deb -x "$(deb libsrup1)" "$work/root"
dpkg-deb -x "$(deb libsrup-dev)" "$work/root"
lib=$work/root/usr/lib/$ma/libsrup.so.1
check "SONAME libsrup.so.1" sh -c "objdump -p '$lib' | grep -q 'SONAME *libsrup.so.1\$'"
objdump -T "$lib" | awk '$2 == "g" && $4 != "*UND*" && $NF != "SRUP_1" {print $NF}' | sort >"$work/exported"
sed -n 's/^\t\(srup_[a-z0-9_]*\);$/\1/p' "$top/protocol/libsrup.map" | sort >"$work/public"
check "exports are exactly libsrup.map's $(wc -l <"$work/public") functions" \
	diff -u "$work/public" "$work/exported"
check "every export is versioned SRUP_1" \
	sh -c "! objdump -T '$lib' | awk '\$4 != \"*UND*\" && \$2 == \"g\"' | grep -v ' SRUP_1 ' | grep -q ."

# A device maker's program: pkg-config, then find_package(srup).
export PKG_CONFIG_SYSROOT_DIR=$work/root
export PKG_CONFIG_PATH=$work/root/usr/lib/$ma/pkgconfig
src=$top/tests/packaging/consumer
check "pkg-config --cflags --libs srup builds a program" \
	sh -c "cc -o '$work/consumer-pc' '$src/consumer.c' \$(pkg-config --cflags --libs srup)"
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
check "find_package(srup) builds a program" \
	sh -c "cmake -S '$src' -B '$work/consumer' -DCMAKE_PREFIX_PATH='$work/root/usr' >'$work/cmake.log' 2>&1 &&
		cmake --build '$work/consumer' >>'$work/cmake.log' 2>&1 || { cat '$work/cmake.log'; false; }"
for prog in "$work/consumer-pc" "$work/consumer/consumer"; do
	check "$(basename "$prog") runs against the packaged library" \
		sh -c "export LD_LIBRARY_PATH='$work/root/usr/lib/$ma'; '$prog' >/dev/null &&
			ldd '$prog' | grep -q '$work/root/usr/lib/$ma/libsrup.so.1'"
done

# libsrup-device: its SONAME, its exports equal to its version script (all
# at the script's version node), and the example device built from the
# -dev package's files with its Makefile and its CMakeLists.txt.
dpkg-deb -x "$(deb libsrup-device1)" "$work/root"
dpkg-deb -x "$(deb libsrup-device-dev)" "$work/root"
lib=$work/root/usr/lib/$ma/libsrup-device.so.1
map=$top/device-side/libsrup-device.map
node=$(sed -n 's/^\([A-Z0-9_]*\) *{.*/\1/p' "$map" | head -n 1)
check "SONAME libsrup-device.so.1" sh -c "objdump -p '$lib' | grep -q 'SONAME *libsrup-device.so.1\$'"
objdump -T "$lib" | awk -v node="$node" '$2 == "g" && $4 != "*UND*" && $NF != node {print $NF}' | sort >"$work/exported-device"
sed -n 's/^\t\(srup_[a-z0-9_]*\);$/\1/p' "$map" | sort >"$work/public-device"
check "libsrup-device exports are exactly libsrup-device.map's $(wc -l <"$work/public-device") functions" \
	diff -u "$work/public-device" "$work/exported-device"
check "every export of libsrup-device is versioned ${node:-(no node in $map)}" \
	sh -c "test -n '$node' && ! objdump -T '$lib' | awk '\$4 != \"*UND*\" && \$2 == \"g\"' | grep -v ' $node ' | grep -q ."
examples=$work/root/usr/share/doc/libsrup-device-dev/examples
cp -r "$examples" "$work/example-make"
# libsrup-device.so needs libsrup.so.1: the linker looks for it where the
# loader would (LD_LIBRARY_PATH), not in -L's directory. (CMake's build
# RPATH names that directory, so the CMake build finds it without.)
check "the example device builds with its Makefile (pkg-config srup-device)" \
	sh -c "PKG_CONFIG_SYSROOT_DIR='$work/root' PKG_CONFIG_PATH='$work/root/usr/lib/$ma/pkgconfig' \
		LD_LIBRARY_PATH='$work/root/usr/lib/$ma' make -C '$work/example-make' >'$work/example-make.log' 2>&1 || { cat '$work/example-make.log'; false; }"
check "the example device builds with its CMakeLists.txt (find_package(srup-device))" \
	sh -c "cmake -S '$examples' -B '$work/example-cmake' -DCMAKE_PREFIX_PATH='$work/root/usr' >'$work/example-cmake.log' 2>&1 &&
		cmake --build '$work/example-cmake' >>'$work/example-cmake.log' 2>&1 || { cat '$work/example-cmake.log'; false; }"
for prog in "$work/example-make/example-device" "$work/example-cmake/example-device"; do
	check "$prog links the packaged libsrup-device.so.1" \
		sh -c "LD_LIBRARY_PATH='$work/root/usr/lib/$ma' ldd '$prog' | grep -q '$work/root/usr/lib/$ma/libsrup-device.so.1'"
done

echo "packages ($(cd "$out" && ls *.deb | grep -vc dbgsym) binary, source $(basename "$changes" _amd64.changes)):"
(cd "$out" && for d in *.deb; do printf '  %-40s %6d bytes\n' "$d" "$(stat -c %s "$d")"; done)
echo "packaging_deb: $passed passed, $fail failed"
((fail == 0))
