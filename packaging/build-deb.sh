#!/usr/bin/env bash
# Builds the Debian source and binary packages (dpkg-buildpackage -us -uc)
# from this checkout's files (tracked and new, not ignored ones, so the
# build dirs stay out) into OUTDIR (default: a new temporary directory);
# prints the path of the .changes file. PREPARE, if given, is a program run
# in the copied tree first (the install test makes a next version with it).
# Usage: build-deb.sh [OUTDIR [PREPARE]]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
"$top/packaging/install-deps.sh" debhelper dpkg-dev fakeroot scdoc systemd >&2
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/srup-$version"
mkdir "$src"
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar --null -T - -cf -) | tar -xf - -C "$src"
if [ -n "${2:-}" ]; then
	(cd "$src" && "$2") >&2
	version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
fi
(cd "$src" && dpkg-buildpackage -us -uc -j"$(nproc)" >"$work/build.log" 2>&1) || {
	tail -n 60 "$work/build.log" >&2
	exit 1
}
mkdir -p "$out"
cp "$work/build.log" "$out/"
find "$work" -maxdepth 1 -type f \( -name '*.deb' -o -name '*.changes' -o -name '*.dsc' \
	-o -name '*.tar.*' -o -name '*.buildinfo' \) -exec cp {} "$out/" \;
ls "$out"/srup_*.changes
