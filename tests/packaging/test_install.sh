#!/usr/bin/env bash
# The packages installed as a site operator would: in a clean Debian 12
# minbase root, with apt resolving their dependencies from the archive the
# host's apt sources name; then configured, removed and purged.
#   - the service user, the modes of the state directory and the key, the
#     conffile, the unit where Debian 12's systemd and dh_installsystemd
#     look, the maintainer scripts' service snippets;
#   - the unit is not enabled by the install (not started before it is
#     configured); an enabled unit stays enabled over a reinstall;
#   - --check-config of the shipped example, as the service user, names
#     what is left to fill in; filled in with srup-keygen --owner it passes;
#   - a purge leaves no wants link and no
#     /var/lib/srup-observer, and nothing of the packages
#     but what Debian policy keeps: the system user and group, and the files
#     the operator made.
# The minbase root is made once by debootstrap and cached in
# /var/cache/srup-tests/install-base-<key>, key = a hash of what goes into
# it (suite, variant, architecture, mirror, debootstrap version, this
# recipe); rm -rf /var/cache/srup-tests/install-base-* clears it. Each run
# works on a copy.
# Usage: test_install.sh [BUILD_DIR]. SRUP_DEBS_DIR: use the .debs there
# instead of building them; SRUP_INSTALL_PACKAGES: the packages to install.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=/var/cache/srup-tests
suite=bookworm
arch=$(dpkg --print-architecture)
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
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
	DEBIAN_FRONTEND=noninteractive "$@"; }
as_service_user() { in_root setpriv --reuid=srup-observer --regid=srup-observer --init-groups "$@"; }
cleanup() {
	set +e
	mountpoint -q "$root/proc" && umount "$root/proc"
	if ((fail)) || [ -n "${SRUP_KEEP_WORKDIR:-}" ]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { log "test_install.sh must run as root (chroot, debootstrap)"; exit 1; }
"$top/packaging/install-deps.sh" debootstrap >/dev/null

# ---- the archive: the first source of the host naming $suite main -------
# One-line (sources.list, *.list) and deb822 (*.sources) formats.
mirror=$(python3 - "$suite" <<'EOF'
import glob, sys
suite = sys.argv[1]
entries = []
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = line.split("#")[0].split()
        if words[:1] != ["deb"]:
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words.pop(0)
        if len(words) >= 3:
            entries.append((words[0], [words[1]], words[2:]))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith((" ", "#")):
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            for uri in fields.get("uris", []):
                entries.append((uri, fields.get("suites", []), fields.get("components", [])))
for uri, suites, components in entries:
    if suite in suites and "main" in components:
        print(uri)
        break
EOF
)
[ -n "$mirror" ] || { log "no apt source of the host names $suite main"; exit 1; }

# ---- the clean root, cached ----------------------------------------------
make_base() { # DIR: Debian $suite minbase, nothing else
	debootstrap --variant=minbase --arch="$arch" "$suite" "$1" "$mirror"
}
key=$( {
	echo "$suite minbase $arch $mirror"
	dpkg-query -W -f='${Version}\n' debootstrap
	declare -f make_base
} | sha256sum | cut -c1-16)
base=$cache/install-base-$key
mkdir -p "$cache"
# One run makes the root; another run waiting here then finds it made.
exec 9>"$cache/install-base.lock"
flock 9
if [ ! -d "$base" ]; then
	log "clean root: debootstrap $suite minbase from $mirror (cached in $base)"
	rm -rf "$base.tmp"
	make_base "$base.tmp" >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log"
		rm -rf "$base.tmp"
		exit 1
	}
	mv "$base.tmp" "$base"
fi
flock -u 9
cp -a "$base" "$root"
mount -t proc proc "$root/proc"

# The host's apt sources (and the keyrings they name) and resolver.
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && cp "$f" "$root$f"
	[ -f "$f" ] && grep -ohiE '(signed-by[=:] *)/[^] ]+' "$f" | sed -E 's/^signed-by[=:] *//I' |
		while read -r ring; do
			[ -f "$ring" ] && mkdir -p "$root$(dirname "$ring")" && cp "$ring" "$root$ring"
		done
done
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
in_root apt-get update -qq >"$work/apt-update.log" 2>&1 || {
	cat "$work/apt-update.log"
	exit 1
}

# ---- the packages ----------------------------------------------------------
if [ -n "${SRUP_DEBS_DIR:-}" ]; then
	debs_dir=$SRUP_DEBS_DIR
else
	"$top/packaging/build-deb.sh" "$work/debs" >/dev/null
	debs_dir=$work/debs
fi
# SRUP_INSTALL_PACKAGES: another set (e.g. the packages of an older tree).
read -r -a packages <<<"${SRUP_INSTALL_PACKAGES:-libsrup1 libsrup-dev srup-tools srup-observer srup-device}"
mkdir -p "$root/var/tmp/debs"
for p in "${packages[@]}"; do
	cp "$debs_dir/${p}_"*.deb "$root/var/tmp/debs/"
done

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

# The service user and its directories.
pw=$(in_root getent passwd srup-observer || true)
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
check "user srup-observer exists" test -n "$pw"
check "srup-observer is a system user (uid $uid < 1000)" test "${uid:-1000}" -lt 1000
check "its group is srup-observer" sh -c "chroot '$root' getent group srup-observer | cut -d: -f3 | grep -qx '$gid'"
check "its home is /var/lib/srup-observer" test "$home" = /var/lib/srup-observer
check "it has no login shell ($shell)" test "$shell" = /usr/sbin/nologin
mode() { in_root stat -c '%a %U:%G' "$1"; }
check "/var/lib/srup-observer is 700 srup-observer:srup-observer" \
	test "$(mode /var/lib/srup-observer)" = "700 srup-observer:srup-observer"
check "/etc/srup/observer.conf is 644 root:root" test "$(mode /etc/srup/observer.conf)" = "644 root:root"
check "/usr/sbin/srup-observerd is 755 root:root" test "$(mode /usr/sbin/srup-observerd)" = "755 root:root"
check "/etc/srup/observer.conf is a conffile of srup-observer" \
	sh -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' srup-observer | grep -q '^ /etc/srup/observer.conf '"

# The unit and the maintainer scripts.
unit=/lib/systemd/system/srup-observerd.service
wants=/etc/systemd/system/multi-user.target.wants/srup-observerd.service
check "the unit is installed as $unit" test -f "$root$unit"
info=$root/var/lib/dpkg/info/srup-observer
check "postinst has the unit's systemd snippet" grep -q "deb-systemd-helper update-state 'srup-observerd.service'" "$info.postinst"
check "prerm stops the unit" grep -q "deb-systemd-invoke stop 'srup-observerd.service'" "$info.prerm"
check "postrm purges the unit's links" grep -q "deb-systemd-helper purge 'srup-observerd.service'" "$info.postrm"
check "the install did not enable the unit (it is not configured yet)" test ! -e "$root$wants" -a ! -L "$root$wants"

# The shipped example, checked as the service user, names what is left.
as_service_user srup-observerd --config /etc/srup/observer.conf --check-config >"$work/check.txt" 2>&1 && rc=0 || rc=$?
log "--check-config of the shipped example (exit $rc):"
sed 's/^/    /' "$work/check.txt"
check "the shipped example fails --check-config with exit 78" test "$rc" = 78
for k in "\[identity\] id" "\[server\] id" "\[mqtt\] broker"; do
	check "its output names /etc/srup/observer.conf:LINE: $k" \
		grep -Eq "/etc/srup/observer.conf:[0-9]+: .*$k" "$work/check.txt"
done

# Filled in as the README says: the key made for the service user.
id=$(in_root srup-keygen --owner srup-observer --out /etc/srup/observer) || id=
server_id=$(in_root srup-keygen --out /root/server) || server_id=
check "srup-keygen --owner srup-observer made the observer's key" test -n "$id"
[ -z "$server_id" ] || cp "$root/root/server/$server_id.pem" "$root/etc/srup/server-public.pem"
check "the observer's key is 600 srup-observer:srup-observer" \
	test "$(mode /etc/srup/observer/private.pem)" = "600 srup-observer:srup-observer"
check "its directory is 700 srup-observer:srup-observer" \
	test "$(mode /etc/srup/observer)" = "700 srup-observer:srup-observer"
sed -i -e "/^\[identity\]/,/^\[/ s/^id = .*/id = $id/" -e "/^\[server\]/,/^\[/ s/^id = .*/id = $server_id/" \
	-e "s|^broker = .*|broker = tcp://127.0.0.1:1883|" "$root/etc/srup/observer.conf"
as_service_user srup-observerd --config /etc/srup/observer.conf --check-config >"$work/check2.txt" 2>&1 && rc=0 || rc=$?
check "filled in, --check-config passes as the service user (exit $rc)" test "$rc" = 0
[ "$rc" = 0 ] || sed 's/^/    /' "$work/check2.txt"

# The operator enables the unit (as systemctl enable does, without a
# running systemd) and the daemon keeps state; a reinstall keeps both.
mkdir -p "$(dirname "$root$wants")"
ln -s "$unit" "$root$wants"
# (StateDirectory= makes the directory at the first start if it is missing.)
[ -d "$root/var/lib/srup-observer" ] || in_root install -d -m 700 -o srup-observer -g srup-observer /var/lib/srup-observer
as_service_user sh -c 'echo state >/var/lib/srup-observer/seq' || true
in_root apt-get install -y -q --reinstall "$(printf '%s\n' "${debs[@]}" | grep /srup-observer_)" >"$work/apt-reinstall.log" 2>&1 ||
	tail -n 20 "$work/apt-reinstall.log"
check "a reinstall keeps the unit enabled" test -L "$root$wants"
check "a reinstall keeps the state" test -f "$root/var/lib/srup-observer/seq"
check "a reinstall keeps the edited configuration" grep -q "^id = $id" "$root/etc/srup/observer.conf"

# Remove, then purge.
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

# Nothing else is left: only what the operator made (keys, and /etc/srup
# holding them) and the user's entries in the account files.
snapshot | grep -vxE '\./etc/(passwd|group|shadow|gshadow)-?' >"$work/after.txt"
grep -vxE '\./etc/(passwd|group|shadow|gshadow)-?' "$work/before.txt" >"$work/before-clean.txt"
kept='\./etc/srup|\./etc/srup/observer(/.*)?|\./etc/srup/server-public\.pem|\./root/server(/.*)?'
comm -13 "$work/before-clean.txt" "$work/after.txt" | grep -vxE "$kept" >"$work/left.txt" || true
comm -23 "$work/before-clean.txt" "$work/after.txt" >"$work/gone.txt" || true
check "purge leaves nothing but the operator's files" test ! -s "$work/left.txt"
sed 's/^/    left: /' "$work/left.txt"
check "purge removes nothing that was there before" test ! -s "$work/gone.txt"
sed 's/^/    gone: /' "$work/gone.txt"

log "packaging_install: $passed passed, $fail failed"
((fail == 0))
