#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and the demo need,
# only those that are missing (apt-get runs only when something is).
set -euo pipefail

packages=(
	build-essential cmake pkg-config clang libclang-rt-14-dev
	libssl-dev libpaho-mqtt-dev libcjson-dev libcmocka-dev libinih-dev
	libsystemd-dev libnfc-dev libnfc-bin libcurl4-openssl-dev
	mosquitto mosquitto-clients
	rabbitmq-server
	dbus python3 python3-dbus python3-gi python3-cryptography
	"$@"
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The distribution's mosquitto service is not wanted: tests and the demo
# start private brokers on free loopback ports.
