#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds twice (plain, then
# clang with AddressSanitizer + UndefinedBehaviorSanitizer and the libFuzzer
# targets) and runs ctest on both. Both runs always happen; the exit status
# is non-zero if either failed.
set -euo pipefail
cd "$(dirname "$0")"
packaging/install-deps.sh qemu-system-x86 debootstrap e2fsprogs cpio bluez bluez-test-tools \
	debhelper dpkg-dev fakeroot

jobs=$(nproc)
# Most tests wait on brokers, sockets and timers rather than compute: twice
# as many at once as there are cores keeps the cores busy (the heavy ones,
# package builds and the guest, run alone: RUN_SERIAL).
test_jobs=$((jobs * 2))
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSRUP_SANITIZE=ON -DSRUP_FUZZ=ON \
	-DSRUP_GUEST_TESTS=OFF -DSRUP_PACKAGING_TESTS=OFF >/dev/null
# The sanitizer build compiles while the plain tests run, at a lower
# priority: it takes the time they leave (they mostly wait), and the tests
# keep theirs. Its output is shown when it has finished.
nice -n 10 cmake --build build-asan -j "$jobs" >build-asan/build.log 2>&1 &
asan_build=$!

plain=0 sanitized=0
echo "== ctest: plain build (build/)"
(cd build && ctest --output-on-failure -j "$test_jobs") || plain=$?
echo "== build: AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
asan_built=0
wait "$asan_build" || asan_built=$?
grep -E 'error|warning:' build-asan/build.log || true
tail -n 1 build-asan/build.log
if [ "$asan_built" != 0 ]; then
	cat build-asan/build.log
	echo "== sanitizer build: FAILED to build (exit $asan_built)"
	exit 1
fi
echo "== ctest: AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/)"
# Not again under the sanitizers: the benchmarks' smoke runs (figures only)
# and the RabbitMQ cluster (Erlang's code; the node's failover is run under
# them by cluster_two_mosquittos and cluster_bridge).
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j "$test_jobs" \
	-LE bench -E '^cluster_rabbitmq') ||
	sanitized=$?
echo "== plain build: $([ $plain = 0 ] && echo passed || echo FAILED)," \
	"sanitizer build: $([ $sanitized = 0 ] && echo passed || echo FAILED)"
[ $plain = 0 ] && [ $sanitized = 0 ]
