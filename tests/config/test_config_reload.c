/* Which keys a reload applies (device-side/srup_config_reload.h): every key
 * of the loader's table is classified, restart-only keys keep their running
 * value and are named, the others take the new one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "srup_config.h"
#include "srup_config_reload.h"

/* A key added to srup_config.c without a line in the reload table fails
 * here: it would otherwise be restart-only without anyone deciding so. */
static void test_every_key_is_classified(void **state)
{
	struct srup_config_key k;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; srup_config_key_at(i, &k) == 0; i++, n++) {
		if (!srup_config_reload_classified(k.section, k.name))
			fail_msg("[%s] %s is not in the reload table", k.section, k.name);
		assert_true(k.offset + k.size <= sizeof(struct srup_config));
	}
	assert_int_equal(n, srup_config_key_count());
	assert_true(n > 30);
	assert_true(srup_config_reload_classified("actions", "7"));
	assert_true(srup_config_reload_classified("data", "reboot"));
	assert_false(srup_config_reload_classified("nosuch", "key"));
	assert_false(srup_config_reloadable("nosuch", "key"));
}

static void test_classes(void **state)
{
	(void)state;
	assert_true(srup_config_reloadable("observation", "window_seconds"));
	assert_true(srup_config_reloadable("observation", "max_attempts"));
	assert_true(srup_config_reloadable("audit", "file"));
	assert_true(srup_config_reloadable("metrics", "interval_seconds"));
	assert_true(srup_config_reloadable("actions", "3"));
	assert_true(srup_config_reloadable("update", "activate"));
	assert_true(srup_config_reloadable("identification", "text"));
	assert_true(srup_config_reloadable("join", "command"));
	assert_false(srup_config_reloadable("observation", "channel"));
	assert_false(srup_config_reloadable("mqtt", "broker"));
	assert_false(srup_config_reloadable("identity", "private_key"));
	assert_false(srup_config_reloadable("server", "id"));
	assert_false(srup_config_reloadable("sim", "socket"));
	assert_false(srup_config_reloadable("state", "dir"));
	assert_false(srup_config_reloadable("control", "socket"));
}

static void test_merge_keeps_restart_only_and_names_them(void **state)
{
	static struct srup_config running, next;
	char restart[256];

	(void)state;
	memset(&running, 0, sizeof(running));
	running.window_seconds = 120;
	running.channels[0] = &radio_ble_driver;
	running.n_channels = 1;
	snprintf(running.mqtt_broker, sizeof(running.mqtt_broker), "mqtt://a:1883");
	snprintf(running.radio.sim.socket_path, sizeof(running.radio.sim.socket_path), "/run/a");
	running.identity_id = 0x10;
	next = running;

	/* Nothing changed: nothing named. */
	srup_config_reload_merge(&running, &next, restart, sizeof(restart));
	assert_string_equal(restart, "");

	next.window_seconds = 30;
	next.n_actions = 1;
	next.actions[0].action_id = 4;
	snprintf(next.actions[0].command, sizeof(next.actions[0].command), "/bin/true");
	/* ble -> ble nfc */
	next.channels[1] = &radio_nfc_driver;
	next.n_channels = 2;
	snprintf(next.mqtt_broker, sizeof(next.mqtt_broker), "mqtt://b:1883");
	snprintf(next.radio.sim.socket_path, sizeof(next.radio.sim.socket_path), "/run/b");
	srup_config_reload_merge(&running, &next, restart, sizeof(restart));
	assert_string_equal(restart, "[mqtt] broker, [observation] channel, [sim] socket");
	assert_int_equal(next.window_seconds, 30);
	assert_int_equal(next.n_actions, 1);
	assert_string_equal(next.actions[0].command, "/bin/true");
	assert_string_equal(next.mqtt_broker, "mqtt://a:1883");
	assert_int_equal(next.n_channels, 1);
	assert_ptr_equal(next.channels[0], &radio_ble_driver);
	assert_null(next.channels[1]);
	assert_string_equal(next.radio.sim.socket_path, "/run/a");
	assert_int_equal(next.identity_id, 0x10);

	/* A list longer than the buffer is cut, not overrun. */
	next.identity_id = 0x11;
	snprintf(next.mqtt_broker, sizeof(next.mqtt_broker), "mqtt://b:1883");
	srup_config_reload_merge(&running, &next, restart, 12);
	assert_int_equal(strlen(restart), 11);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_key_is_classified),
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_merge_keeps_restart_only_and_names_them),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
