# Sourced by the packaging tests: a clean Debian 12 minbase root at $root,
# copied from a cache, with the host's apt sources and an updated index.
# The minbase root is made once by debootstrap and cached in
# /var/cache/srup-tests/install-base-<key>, key = a hash of what goes into
# it (suite, variant, architecture, mirror, debootstrap version, this
# recipe); rm -rf /var/cache/srup-tests/install-base-* clears it. Making it
# is serialised by a lock and finished by a rename, so runs in parallel
# (this test, the source build, another developer's) share one copy.
# The sourcing script defines log(), $top, $work and $root.
cache=/var/cache/srup-tests
suite=bookworm
arch=$(dpkg --print-architecture)

# The archive: the first source of the host naming $suite main (one-line
# sources.list, *.list and deb822 *.sources formats).
host_mirror() {
	python3 - "$suite" <<'PY'
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
PY
}

make_base() { # DIR: Debian $suite minbase, nothing else
	debootstrap --variant=minbase --arch="$arch" "$suite" "$1" "$mirror"
}

# clean_root: makes $root (and mounts /proc in it; clean_root_umount undoes).
clean_root() {
	"$top/packaging/install-deps.sh" debootstrap >/dev/null
	mirror=$(host_mirror)
	[ -n "$mirror" ] || { log "no apt source of the host names $suite main"; return 1; }
	local key base
	key=$( {
		echo "$suite minbase $arch $mirror"
		dpkg-query -W -f='${Version}\n' debootstrap
		declare -f make_base
	} | sha256sum | cut -c1-16)
	base=$cache/install-base-$key
	mkdir -p "$cache"
	# One run makes the root; another run waiting here then finds it made.
	(
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
	) 9>"$cache/install-base.lock" || return 1
	cp -a "$base" "$root"
	mount -t proc proc "$root/proc"

	# The host's apt sources (and the keyrings they name) and resolver.
	rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
	local f ring
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		cp "$f" "$root$f"
		grep -ohiE '(signed-by[=:] *)/[^] ]+' "$f" | sed -E 's/^signed-by[=:] *//I' |
			while read -r ring; do
				[ -f "$ring" ] && mkdir -p "$root$(dirname "$ring")" && cp "$ring" "$root$ring"
			done
	done
	cp -L /etc/resolv.conf "$root/etc/resolv.conf"
	in_root apt-get update -qq >"$work/apt-update.log" 2>&1 || {
		cat "$work/apt-update.log"
		return 1
	}
}

clean_root_umount() {
	mountpoint -q "$root/proc" && umount "$root/proc"
	return 0
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
	DEBIAN_FRONTEND=noninteractive "$@"; }
