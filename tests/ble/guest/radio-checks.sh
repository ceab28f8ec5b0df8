# Sourced by the guest scripts: radio_checks runs the radio layer alone
# against real bluetoothd and btvirt: ble_observer_driver (the channel,
# radio_ble.c) on hci0 and ble_present_driver (the central,
# radio_ble_present.c) on hci1. Sets radio_failures.
# Expects $build and $out, and bluez-up.sh sourced.

radio_checks() {
	local observer_id device value drivers observer_pid rc
	observer_id=0a0b0c0d0e0f1011
	device=0102030405060708
	value="correct horse battery"
	drivers=$build/tests/ble
	radio_failures=0

	check() { # check DESCRIPTION EXPECTED-GREP FILE
		if grep -q -- "$2" "$3"; then
			guest_log "PASS $1"
		else
			guest_log "FAIL $1 (wanted '$2'):"
			sed 's/^/    /' "$3"
			radio_failures=$((radio_failures + 1))
		fi
	}

	mkfifo /tmp/observer.in
	"$drivers/ble_observer_driver" --adapter hci0 --observer-id $observer_id --device $device \
		--value "$value" </tmp/observer.in >"$out/observer.out" 2>"$out/observer.log" &
	observer_pid=$!
	exec 3>/tmp/observer.in
	wait_for 10 "the GATT application registered" grep -q "GATT application registered" \
		"$out/observer.log" || radio_failures=$((radio_failures + 1))

	present() { # present NAME TIMEOUT_MS EXPECTED_OBSERVER VALUE [DRIVER OPTIONS...]
		local t0 t1 name=$1 timeout=$2 expect=$3 val=$4
		shift 4
		t0=$(date +%s.%N)
		"$drivers/ble_present_driver" --adapter hci1 --expect "$expect" --device $device \
			--value "$val" --timeout-ms "$timeout" "$@" >"/tmp/$name.out" \
			2>"$out/present-$name.log"
		t1=$(date +%s.%N)
		awk -v a="$t0" -v b="$t1" -v n="$name" \
			'BEGIN { printf "present %s took %.2f s\n", n, b - a }' >>"$out/timings.txt"
		cat "/tmp/$name.out" >>"$out/present-$name.log"
	}

	# Nothing pending: no advertisement, the central finds nothing.
	present idle 6000 $observer_id "$value"
	check "no observer found while nothing is pending" "err=8 " /tmp/idle.out
	check "the failure names the discovery step" "detail=discovery:" /tmp/idle.out

	echo start >&3
	wait_for 10 "advertising" grep -q "advertising started" "$out/observer.log" ||
		radio_failures=$((radio_failures + 1))
	present valid 30000 $observer_id "$value"
	check "valid frame matches" "result=0x60" /tmp/valid.out
	present wrong 30000 $observer_id "not the value"
	check "wrong value mismatches" "result=0x6E" /tmp/wrong.out
	present other 30000 0000000000000bad "$value"
	check "another observer is refused" "err=11 " /tmp/other.out

	# bluetoothd restarts while an observation is pending: the channel
	# registers the application and the advertisement again.
	guest_log "restarting bluetoothd"
	bluez_restart || radio_failures=$((radio_failures + 1))
	registered_twice() { [[ $(grep -c "GATT application registered" "$out/observer.log") -ge 2 ]]; }
	advertising_twice() { [[ $(grep -c "advertising started" "$out/observer.log") -ge 2 ]]; }
	wait_for 15 "the application registered again" registered_twice &&
		wait_for 15 "advertising again" advertising_twice ||
		radio_failures=$((radio_failures + 1))
	present restarted 30000 $observer_id "$value"
	check "valid frame matches after bluetoothd restarted" "result=0x60" /tmp/restarted.out

	echo stop >&3
	wait_for 10 "advertising stopped" grep -q "advertising stopped" "$out/observer.log" ||
		radio_failures=$((radio_failures + 1))
	present after 6000 $observer_id "$value"
	check "no observer found after listening stopped" "err=8 " /tmp/after.out

	echo quit >&3
	exec 3>&-
	wait "$observer_pid"
	rc=$?
	[[ $rc == 0 ]] || { guest_log "FAIL observer driver exited $rc"; radio_failures=$((radio_failures + 1)); }
	grep -E "advertising (started|stopped)|compared|refused" "$out/observer.log" |
		sed 's/^/observer: /'

	# require_encryption: Confirmation is encrypt-write, BlueZ pairs (Just
	# Works) with both sides' agents consenting, then the write goes through.
	"$drivers/ble_observer_driver" --adapter hci0 --observer-id $observer_id --device $device \
		--value "$value" --encrypt </tmp/observer.in >"$out/observer-encrypt.out" \
		2>"$out/observer-encrypt.log" &
	observer_pid=$!
	exec 3>/tmp/observer.in
	echo start >&3
	wait_for 10 "advertising (encrypted)" grep -q "advertising started" \
		"$out/observer-encrypt.log" || radio_failures=$((radio_failures + 1))
	present encrypted 30000 $observer_id "$value" --encrypt yes
	check "valid frame matches through an encrypt-write Confirmation" "result=0x60" \
		/tmp/encrypted.out
	echo quit >&3
	exec 3>&-
	wait "$observer_pid"
	grep -E "agent|compared" "$out/observer-encrypt.log" | sed 's/^/observer: /'
	cat "$out/timings.txt"
	guest_log "radio checks: $radio_failures failure(s)"
}
