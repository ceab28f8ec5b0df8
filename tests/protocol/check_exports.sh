#!/bin/sh
# libsrup.so's dynamic symbols against its version script and the Debian
# symbols file: the three lists of public functions must be one list.
# Usage: check_exports.sh LIBSRUP.so libsrup.map libsrup1.symbols
set -eu
lib=$1 map=$2 symbols=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Defined, global functions, without the version node itself.
nm -D --defined-only "$lib" | awk '$2 == "T" {sub(/@.*/, "", $3); print $3}' | sort >"$work/exported"
sed -n 's/^\t\(srup_[a-z0-9_]*\);$/\1/p' "$map" | sort >"$work/map"
sed -n 's/^ \(srup_[a-z0-9_]*\)@SRUP_1 .*/\1/p' "$symbols" | sort >"$work/symbols"

status=0
if ! diff -u "$work/map" "$work/exported"; then
	echo "FAIL: $lib exports differ from $map (- map, + library)" >&2
	status=1
fi
if ! diff -u "$work/map" "$work/symbols"; then
	echo "FAIL: $symbols differs from $map (- map, + symbols file)" >&2
	status=1
fi
# Anything else defined and dynamic (data, another version node) is a leak.
others=$(nm -D --defined-only "$lib" | awk '$2 != "T" && $3 != "SRUP_1" {print}')
if [ -n "$others" ]; then
	echo "FAIL: $lib exports more than functions:" >&2
	echo "$others" >&2
	status=1
fi
[ $status -eq 0 ] && echo "libsrup exports $(wc -l <"$work/exported") functions, as libsrup.map and $(basename "$symbols")"
exit $status
