#!/usr/bin/env bash
# The source package builds on a clean Debian 12 machine with only what it
# declares: in a copy of the cached minbase root (tests/packaging/
# clean_root.sh), `apt-get build-dep ./` installs Build-Depends (and
# build-essential), then `dpkg-buildpackage -us -uc` runs as an ordinary
# user, as Debian's build daemons do, unit tests included (dh_auto_test);
# the .debs land in the directory above the source tree. A build
# dependency missing from debian/control fails here, wherever the
# developer's own machine has it installed.
# Usage: test_source_build.sh [BUILD_DIR] (unused; the tree is the checkout).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/srup-srcbuild.XXXXXX)
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
[ "$(id -u)" = 0 ] || { log "test_source_build.sh must run as root (chroot, debootstrap)"; exit 1; }
clean_root || { fail=1; exit 1; }

# The source tree as a clean clone has it: tracked and new files, not
# ignored ones (no build directories).
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
src=/home/builder/srup-$version
in_root useradd --create-home --home-dir /home/builder builder
mkdir -p "$root$src"
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar --null -T - -cf -) | tar -xf - -C "$root$src"
in_root chown -R builder:builder /home/builder

# What the root had before build-dep: nothing of the package's own choice.
in_root dpkg-query -W -f='${Package}\n' | sort >"$work/before.txt"
check "the clean root has no compiler, cmake or debhelper" \
	sh -c "! grep -qxE 'gcc|cmake|debhelper|libcurl4-openssl-dev|python3' '$work/before.txt'"

log "apt-get build-dep ./ in the clean root"
in_root sh -c "cd '$src' && apt-get build-dep -y -q ./" >"$work/build-dep.log" 2>&1 && rc=0 || rc=$?
check "apt-get build-dep ./ installs the Build-Depends (exit $rc)" test "$rc" = 0
((rc == 0)) || tail -n 30 "$work/build-dep.log"
in_root dpkg-query -W -f='${Package}\n' | sort >"$work/after.txt"
log "build-dep installed $(comm -13 "$work/before.txt" "$work/after.txt" | wc -l) packages"

(cd "$root$src" && find . -type f | sed 's,^\./,,' | sort) >"$work/source-files.txt"
log "dpkg-buildpackage -us -uc as user builder"
in_root setpriv --reuid=builder --regid=builder --init-groups env HOME=/home/builder \
	sh -c "cd '$src' && dpkg-buildpackage -us -uc -j2" >"$work/build.log" 2>&1 && rc=0 || rc=$?
check "dpkg-buildpackage -us -uc succeeds with only the Build-Depends (exit $rc)" test "$rc" = 0
((rc == 0)) || grep -E -B2 -A8 'CMake Error|error:|Error [0-9]|FAILED|make.*\*\*\*' "$work/build.log" | tail -n 60
check "the unit tests ran in the build (dh_auto_test)" \
	grep -Eq '[0-9]+% tests passed, 0 tests failed out of [1-9]' "$work/build.log"
(cd "$root$src" && find . -type f | sed 's,^\./,,' | sort) | comm -13 "$work/source-files.txt" - >"$work/new-files.txt"
for p in libsrup1 libsrup-dev libsrup-device1 libsrup-device-dev srup-tools srup-observer srup-device; do
	check "$p .deb is in the directory above the source tree" \
		sh -c "ls '$root/home/builder/${p}_${version}_'*.deb >/dev/null 2>&1"
done
check "the .changes is beside them" sh -c "ls '$root/home/builder/srup_${version}_'*.changes >/dev/null 2>&1"

# What the build left in the tree is what .gitignore names, so a package
# build in a clone leaves git status clean.
git -C "$top" check-ignore --no-index --stdin <"$work/new-files.txt" >"$work/ignored.txt" || true
left=$(grep -vxF -f "$work/ignored.txt" "$work/new-files.txt" || true)
check ".gitignore covers the $(wc -l <"$work/new-files.txt") files the package build left in the tree" test -z "$left"
[ -z "$left" ] || printf '%s\n' "$left" | head -n 30 | sed 's/^/    not ignored: /'

log "packaging_source_build: $passed passed, $fail failed"
((fail == 0))
