#!/usr/bin/env bash
# Builds the Debian packages (srup-observer, srup-tools) from this checkout
# into ../ of a temporary copy; prints where they are.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/packaging/install-deps.sh" debhelper dpkg-dev fakeroot
work=$(mktemp -d)
git -C "$top" archive --format=tar --prefix=srup/ HEAD | tar -x -C "$work"
cp -r "$top/packaging/debian" "$work/srup/debian"
(cd "$work/srup" && dpkg-buildpackage -b -us -uc >/dev/null)
ls "$work"/*.deb
