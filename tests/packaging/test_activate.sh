#!/usr/bin/env bash
# Update activation without systemd: the hook (srup-observer-activate-request,
# run as an unprivileged user as srup-observerd runs it) asks, the installer
# (srup-observer-activate-install, root) installs a tiny .deb into a private
# dpkg root, and the hook's exit status carries the result. Also: a package
# changed after the hook recorded its digest, a path outside the staging
# directory and a symbolic link are refused, and nothing is installed.
# Usage: test_activate.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: test_activate.sh BUILD_DIR}" && pwd)
hook=$build/observer/activate/srup-observer-activate-request
installer=$build/observer/activate/srup-observer-activate-install
work=$(mktemp -d /var/tmp/srup-activate.XXXXXX)
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
fail=0
check() {
	local what=$1
	shift
	if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
fails() { ! "$@"; }

# The daemon's side: a staging directory and the request directory, owned
# by the unprivileged user the hook runs as.
user=nobody
stage=$work/state
mkdir -p "$stage/updates"
chown -R "$user" "$stage"
as_user() { setpriv --reuid="$user" --regid=nogroup --clear-groups -- "$@"; }

# A dpkg root to install into, and a package for it.
dpkg_root=$work/dpkg-root
mkdir -p "$dpkg_root/var/lib/dpkg/info" "$dpkg_root/var/lib/dpkg/updates"
touch "$dpkg_root/var/lib/dpkg/status"
make_deb() { # name version out
	local pkg=$work/pkg-$1
	mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/$1"
	printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: SRUP tests <tests@srup.invalid>\nDescription: activation test package\n' \
		"$1" "$2" >"$pkg/DEBIAN/control"
	echo "$1 $2" >"$pkg/usr/share/$1/version"
	dpkg-deb --root-owner-group --build "$pkg" "$3" >/dev/null
	chown "$user" "$3"
}
install_once() { # run the installer as the path unit would, once a request exists
	for _ in $(seq 100); do
		[ -e "$stage/activate/request" ] && break
		sleep 0.1
	done
	"$installer" --dir "$stage/activate" --staging "$stage" --work "$work/run" \
		--dpkg-root "$dpkg_root" >>"$work/installer.log" 2>&1 || true
}
installed() { dpkg --root="$dpkg_root" -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }
export SRUP_ACTIVATE_DIR=$stage/activate SRUP_ACTIVATE_TIMEOUT=60

# 1. request -> install -> result 0.
make_deb srup-activate-probe 1.0 "$stage/updates/probe.deb"
install_once &
check "a verified package is installed: the hook exits 0" \
	as_user "$hook" "$stage/updates/probe.deb" "token-1"
wait
check "  dpkg has it" installed srup-activate-probe
check "  its file is in the root" grep -qx "srup-activate-probe 1.0" "$dpkg_root/usr/share/srup-activate-probe/version"
check "  the request was taken" fails test -e "$stage/activate/request" -o -e "$stage/activate/taken"

# 2. The staged file changes after the hook recorded its digest.
make_deb srup-activate-other 1.0 "$stage/updates/other.deb"
( for _ in $(seq 100); do [ -e "$stage/activate/request" ] && break; sleep 0.1; done
  make_deb srup-activate-other 2.0 "$stage/updates/other.deb"
  install_once ) &
check "a package changed after its digest was recorded is refused: the hook exits 1" \
	fails as_user "$hook" "$stage/updates/other.deb" token-2
wait
check "  and not installed" fails installed srup-activate-other
check "  the installer says why" grep -q "refused: .*other.deb has sha256" "$work/installer.log"

# 3. Outside the staging directory, and through a symbolic link.
outside=$work/outside.deb
make_deb srup-activate-outside 1.0 "$outside"
install_once &
check "a package outside the staging directory is refused" \
	fails as_user "$hook" "$outside" token-3
wait
# The hook opens no link itself; the installer must not follow one either
# when the request comes straight from the daemon's user: a linked file, or
# a linked directory on the way.
sha=$(sha256sum "$outside" | cut -d' ' -f1)
ln -s "$outside" "$stage/updates/link.deb"
ln -s "$work" "$stage/linkdir"
chown -h "$user" "$stage/updates/link.deb" "$stage/linkdir"
for file in "$stage/updates/link.deb" "$stage/linkdir/outside.deb"; do
	as_user sh -c 'printf "file=%s\nsha256=%s\ntoken=t\n" "$1" "$2" >"$3"' sh "$file" "$sha" \
		"$stage/activate/request"
	install_once
	check "a request through a symbolic link ($(basename "$(dirname "$file")")/$(basename "$file")) is refused" \
		grep -qx "status=1" "$stage/activate/result"
	check "  the result says so" grep -q "^message=refused: cannot open .* without links" "$stage/activate/result"
done
check "  nothing from outside was installed" fails installed srup-activate-outside

# 4. No installer: the hook gives up at its timeout and withdraws its request.
check "without an installer the hook fails at its timeout" \
	fails env SRUP_ACTIVATE_TIMEOUT=2 setpriv --reuid="$user" --regid=nogroup --clear-groups -- "$hook" "$stage/updates/probe.deb" token-5
check "  and withdraws its request" test ! -e "$stage/activate/request"

((fail)) && cat "$work/installer.log"
((fail == 0)) && echo "activation: all checks passed"
exit $fail
