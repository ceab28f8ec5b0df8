#!/usr/bin/env bash
# The Debian packages build from the committed tree and hold what a site
# operator needs: the daemon, its unit, its example config, the tools.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$("$top/packaging/build-deb.sh" | tail -n 4)
observer=$(grep '/srup-observer_' <<<"$out")
tools=$(grep '/srup-tools_' <<<"$out")
fail=0
expect() { # package path
	if ! dpkg-deb -c "$1" | awk '{print $6}' | grep -qx "./$2"; then
		echo "FAIL: $(basename "$1") lacks /$2"; fail=1
	fi
}
expect "$observer" usr/sbin/srup-observerd
expect "$observer" usr/bin/srup-observerctl
expect "$observer" usr/lib/systemd/system/srup-observerd.service
expect "$observer" etc/srup/observer.conf
expect "$tools" usr/bin/srup-device
expect "$tools" usr/bin/srup-msg
expect "$tools" usr/bin/srup-keygen
# The config is a conffile and the service user is made on install.
dpkg-deb -I "$observer" conffiles | grep -qx /etc/srup/observer.conf || { echo "FAIL: observer.conf is no conffile"; fail=1; }
dpkg-deb -I "$observer" postinst | grep -q 'adduser --system' || { echo "FAIL: postinst makes no service user"; fail=1; }
# The packaged daemon runs and reads its packaged example config.
dir=$(mktemp -d)
dpkg-deb -x "$observer" "$dir"
"$dir/usr/sbin/srup-observerd" --help >/dev/null || { echo "FAIL: packaged srup-observerd does not run"; fail=1; }
rm -rf "$dir" "$(dirname "$observer")"
((fail == 0)) && echo "packages: 1 passed, 0 failed"
exit $fail
