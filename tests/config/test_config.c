/* The INI configuration (device-side/srup_config.h): good observer and
 * device files, and one case per malformation class, each checking that
 * the error names the file, the line and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "srup_config.h"

static char dir[64];
static char conf_path[128];
static char err[2048];
static struct srup_config cfg;

/* The key files the test configurations name (relative paths, read in
 * the test's directory): a configuration whose key files cannot be read
 * does not load. */
static const char *const key_files[] = {"k", "p", "dev.key", "server.pub", "observer.key"};

static int group_setup(void **state)
{
	(void)state;
	/* mkdtemp's template ends in six 'X' that the call replaces. */
	snprintf(dir, sizeof(dir), "/tmp/srup-config-test-%6s", "");
	memset(dir + strlen(dir) - 6, 'X', 6);
	if (!mkdtemp(dir) || chdir(dir) != 0)
		return -1;
	snprintf(conf_path, sizeof(conf_path), "%s/test.conf", dir);
	for (size_t i = 0; i < sizeof(key_files) / sizeof(key_files[0]); i++) {
		FILE *f = fopen(key_files[i], "w");

		if (!f || fclose(f) != 0)
			return -1;
	}
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	/* Directories made unreadable by a test get their mode back first. */
	chmod(path, 0700);
	return remove(path) == 0 ? 0 : -1;
}

static void bus_stop(void);

static int group_teardown(void **state)
{
	(void)state;
	bus_stop();
	if (chdir("/") != 0)
		return -1;
	return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_conf(const char *text)
{
	FILE *f = fopen(conf_path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static int load(const char *text, enum srup_config_kind kind)
{
	write_conf(text);
	memset(err, 0, sizeof(err));
	return srup_config_load(conf_path, kind, &cfg, err, sizeof(err));
}

/* The error must start with "FILE:LINE: <where>: " and mention `what`. */
static void expect_error(const char *text, enum srup_config_kind kind, unsigned line,
			 const char *where, const char *what)
{
	char prefix[256];

	assert_int_equal(load(text, kind), -1);
	snprintf(prefix, sizeof(prefix), "%s:%u: %s: ", conf_path, line, where);
	print_message("    %s\n", err);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
	if (what && !strstr(err, what))
		fail_msg("error \"%s\" does not mention \"%s\"", err, what);
	assert_null(strchr(err, '\n'));
}

#define OBSERVER_HEAD                                \
	"[identity]\n"                               \
	"id = 00000000000000a1\n"                    \
	"private_key = observer.key\n"     \
	"[server]\n"                                 \
	"id = 5eed\n"                                \
	"public_key = server.pub\n"        \
	"[mqtt]\n"                                   \
	"broker = mqtt://127.0.0.1:1883\n"           \
	"[state]\n"                                  \
	"dir = /var/lib/srup\n"
/* Lines 1..10 above; the tests' own lines start at 11. */

#define OBSERVATION_SIM                              \
	"[observation]\n"                            \
	"channel = sim\n"                            \
	"[sim]\n"                                    \
	"socket = /run/srup/observer.sock\n"
/* Lines 11..14. */

#define assert_channels(one)                                                   \
	do {                                                                   \
		assert_int_equal(cfg.n_channels, 1);                           \
		assert_ptr_equal(cfg.channels[0], &radio_##one##_driver);      \
	} while (0)

/* ---- Good files ------------------------------------------------------------- */

static void touch(const char *name, char *path, size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fclose(f), 0);
}

static void test_good_observer_full(void **state)
{
	char text[1024], ca[128], cert[128], key[128];

	(void)state;
	/* An mqtts:// broker's files must exist. */
	touch("ca.pem", ca, sizeof(ca));
	touch("client.pem", cert, sizeof(cert));
	touch("client.key", key, sizeof(key));
	snprintf(text, sizeof(text), "; an observer\n"
			      "[identity]\n"
			      "id = 00000000000000A1\n"
			      "private_key = observer.key\n"
			      "\n"
			      "[server]\n"
			      "id = 5eed   ; the C2 server\n"
			      "public_key = server.pub\n"
			      "[mqtt]\n"
			      "broker = mqtts://broker.example:8883\n"
			      "ca_file = %s\n"
			      "cert_file = %s\n"
			      "key_file = %s\n"
			      "[observation]\n"
			      "channel = ble\n"
			      "window_seconds = 30\n"
			      "max_attempts = 5\n"
			      "max_pending = 200\n"
			      "[sim]\n"
			      "socket = /run/srup/observer.sock\n"
			      "[ble]\n"
			      "adapter = hci1\n"
			      "require_encryption = yes\n"
			      "[nfc]\n"
			      "device = pn532_uart:/dev/ttyUSB0\n"
			      "poll_ms = 500\n"
			      "# state\n"
			      "[state]\n"
			      "dir = /var/lib/srup\n",
		 ca, cert, key);
	assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), 0);
	unlink(ca);
	unlink(cert);
	unlink(key);
	assert_string_equal(cfg.path, conf_path);
	assert_int_equal(cfg.identity_id, 0xa1);
	assert_string_equal(cfg.identity_private_key, "observer.key");
	assert_int_equal(cfg.server_id, 0x5eed);
	assert_string_equal(cfg.server_public_key, "server.pub");
	assert_string_equal(cfg.mqtt_broker, "mqtts://broker.example:8883");
	assert_string_equal(cfg.mqtt_ca_file, ca);
	assert_string_equal(cfg.mqtt_cert_file, cert);
	assert_string_equal(cfg.mqtt_key_file, key);
	assert_channels(ble);
	assert_int_equal(cfg.window_seconds, 30);
	assert_int_equal(cfg.max_attempts, 5);
	assert_int_equal(cfg.max_pending, 200);
	assert_string_equal(cfg.radio.sim.socket_path, "/run/srup/observer.sock");
	assert_string_equal(cfg.radio.ble.adapter, "hci1");
	assert_true(cfg.radio.ble.require_encryption);
	assert_int_equal(cfg.radio.ble.observer_id, 0xa1);
	assert_string_equal(cfg.radio.nfc.device, "pn532_uart:/dev/ttyUSB0");
	assert_int_equal(cfg.radio.nfc.poll_ms, 500);
	assert_string_equal(cfg.state_dir, "/var/lib/srup");
}

static void test_good_observer_defaults(void **state)
{
	(void)state;
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), 0);
	assert_channels(sim);
	assert_int_equal(cfg.window_seconds, 120);
	assert_int_equal(cfg.max_attempts, 3);
	assert_int_equal(cfg.max_pending, 1000);
	assert_string_equal(cfg.radio.ble.adapter, "hci0");
	assert_false(cfg.radio.ble.require_encryption);
	assert_int_equal(cfg.radio.ble.bluez_grace_seconds, 10);
	assert_int_equal(cfg.radio.nfc.poll_ms, 200);
	assert_int_equal(cfg.radio.ble.observer_id, 0xa1);
	assert_string_equal(cfg.mqtt_ca_file, "");

	/* BLE needs no section of its own; NFC with its device. */
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = ble\n", SRUP_CONFIG_OBSERVER),
			 0);
	assert_channels(ble);
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = nfc\n[nfc]\ndevice = pn532_uart:/dev/ttyUSB0\n",
			      SRUP_CONFIG_OBSERVER),
			 0);
	assert_channels(nfc);
}

static void test_good_device(void **state)
{
	(void)state;
	assert_int_equal(load("[identity]\n"
			      "id = ffffffffffffffff\n"
			      "private_key = dev.key\n"
			      "[server]\n"
			      "id = 5eed\n"
			      "public_key = server.pub\n"
			      "[mqtt]\n"
			      "broker = tcp://127.0.0.1:18830\n"
			      "[sim]\n"
			      "socket = /tmp/obs.sock\n"
			      "[state]\n"
			      "dir = state\n",
			      SRUP_CONFIG_DEVICE),
			 0);
	assert_int_equal(cfg.identity_id, UINT64_MAX);
	assert_int_equal(cfg.server_id, 0x5eed);
	assert_string_equal(cfg.radio.sim.socket_path, "/tmp/obs.sock");
	assert_string_equal(cfg.mqtt_broker, "tcp://127.0.0.1:18830");
	assert_int_equal(cfg.radio.ble.observer_id, UINT64_MAX);
}

static void test_crlf_and_bom(void **state)
{
	(void)state;
	assert_int_equal(load("\xEF\xBB\xBF[identity]\r\nid = a1\r\nprivate_key = k\r\n"
			      "[server]\r\nid = 1\r\npublic_key = p\r\n[mqtt]\r\n"
			      "broker = mqtt://h:1\r\n[state]\r\ndir = d\r\n"
			      "[observation]\r\nchannel = sim\r\n[sim]\r\nsocket = /s\r\n",
			      SRUP_CONFIG_OBSERVER),
			 0);
	assert_int_equal(cfg.identity_id, 0xa1);
	assert_string_equal(cfg.radio.sim.socket_path, "/s");
}

static void test_booleans(void **state)
{
	static const char *const yes[] = {"true", "yes", "1", "TRUE", "Yes"};
	static const char *const no[] = {"false", "no", "0", "False", "NO"};
	char text[1024];

	(void)state;
	for (size_t i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), OBSERVER_HEAD OBSERVATION_SIM "[ble]\nrequire_encryption = %s\n",
			 yes[i]);
		assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), 0);
		assert_true(cfg.radio.ble.require_encryption);
		snprintf(text, sizeof(text), OBSERVER_HEAD OBSERVATION_SIM "[ble]\nrequire_encryption = %s\n",
			 no[i]);
		assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), 0);
		assert_false(cfg.radio.ble.require_encryption);
	}
}

static void expect_bad_value(const char *section_and_key_lines, unsigned line, const char *where,
			     const char *what);

static void test_channel_names(void **state)
{
	char names[64];

	(void)state;
	for (size_t i = 0; radio_channel_drivers[i]; i++)
		assert_ptr_equal(radio_channel_find(radio_channel_drivers[i]->name),
				 radio_channel_drivers[i]);
	assert_ptr_equal(radio_channel_find("sim"), &radio_sim_driver);
	assert_ptr_equal(radio_channel_find("ble"), &radio_ble_driver);
	assert_ptr_equal(radio_channel_find("nfc"), &radio_nfc_driver);
	assert_null(radio_channel_find("SIM"));
	assert_null(radio_channel_find(""));
	assert_null(radio_channel_find("wifi"));
	assert_null(radio_channel_find(NULL));
	assert_string_equal(radio_channel_names(names, sizeof(names)), "sim, ble, nfc");
}

/* [observation] channel takes a list: blanks between, each at most once,
 * in the order given; one name stays valid. */
static void test_channel_list(void **state)
{
	char list[300];

	(void)state;
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = ble nfc\n"
			      "[nfc]\ndevice = pn532_uart:/dev/ttyUSB0\n", SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(cfg.n_channels, 2);
	assert_ptr_equal(cfg.channels[0], &radio_ble_driver);
	assert_ptr_equal(cfg.channels[1], &radio_nfc_driver);
	assert_true(srup_config_lists(&cfg, &radio_nfc_driver));
	assert_false(srup_config_lists(&cfg, &radio_sim_driver));
	assert_string_equal(srup_config_channel_list(&cfg, ", ", list, sizeof(list)), "ble, nfc");

	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel =  nfc\t sim   ble \n"
			      "[nfc]\ndevice = pn532_uart:/dev/ttyUSB0\n[sim]\nsocket = /s\n",
			      SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(cfg.n_channels, 3);
	assert_ptr_equal(cfg.channels[0], &radio_nfc_driver);
	assert_ptr_equal(cfg.channels[1], &radio_sim_driver);
	assert_ptr_equal(cfg.channels[2], &radio_ble_driver);

	expect_bad_value("[observation]\nchannel = ble ble\n", 12, "[observation] channel",
			 "'ble' is listed twice (each channel at most once)");
	expect_bad_value("[observation]\nchannel = sim nfc sim\n", 12, "[observation] channel",
			 "'sim' is listed twice");
	expect_bad_value("[observation]\nchannel = ble wifi\n", 12, "[observation] channel",
			 "'wifi' is not a channel (sim, ble, nfc)");
	expect_bad_value("[observation]\nchannel = ble,nfc\n", 12, "[observation] channel",
			 "'ble,nfc' is not a channel");
	expect_bad_value("[observation]\nchannel =\n", 12, "[observation] channel",
			 "empty; name one or more channels (sim, ble, nfc), blanks between");

	/* Every listed channel's required key, each reported. */
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = ble nfc sim\n",
			      SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	snprintf(list, sizeof(list), "%s:12: [nfc] device: ", conf_path);
	assert_int_equal(strncmp(err, list, strlen(list)), 0);
	assert_non_null(strstr(err, "[nfc] device: missing; channel = ble nfc sim (line 12) "
				    "lists nfc, which needs it\n"));
	assert_non_null(strstr(err, ":12: [sim] socket: missing; channel = ble nfc sim (line 12) "
				    "lists sim, which needs it"));
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = ble sim\n[sim]\nsocket = /s\n",
			      SRUP_CONFIG_OBSERVER), 0);
}

/* ---- Structure ------------------------------------------------------------------- */

static void test_unknown_section(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD OBSERVATION_SIM "[radio]\nx = 1\n", SRUP_CONFIG_OBSERVER, 15,
		     "[radio]", "unknown section");
	/* Even when it holds no key. */
	expect_error(OBSERVER_HEAD "[extra]\n" OBSERVATION_SIM, SRUP_CONFIG_OBSERVER, 11, "[extra]",
		     "unknown section");
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD "[observation]\nchannel = sim\nwindow = 5\n[sim]\nsocket = /s\n",
		     SRUP_CONFIG_OBSERVER, 13, "[observation] window", "unknown key");
	expect_error(OBSERVER_HEAD OBSERVATION_SIM "[ble]\nobserver_id = 12\n", SRUP_CONFIG_OBSERVER,
		     16, "[ble] observer_id", "unknown key");
}

static void test_duplicate_section(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD OBSERVATION_SIM "[observation]\n", SRUP_CONFIG_OBSERVER, 15,
		     "[observation]", "appears twice (first at line 11)");
	expect_error(OBSERVER_HEAD "[mqtt]\n", SRUP_CONFIG_OBSERVER, 11, "[mqtt]", "appears twice");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD "[observation]\nchannel = sim\nmax_attempts = 3\nmax_attempts = 4\n"
				   "[sim]\nsocket = /s\n",
		     SRUP_CONFIG_OBSERVER, 14, "[observation] max_attempts", "first at line 13");
}

static void test_key_outside_section(void **state)
{
	(void)state;
	expect_error("id = 12\n" OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER, 1, "id",
		     "outside any [section]");
}

static void test_indented_continuation(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD "[observation]\nchannel = sim\n  max_pending = 4\n[sim]\nsocket = /s\n",
		     SRUP_CONFIG_OBSERVER, 13, "[observation] channel", "indented");
	expect_error(OBSERVER_HEAD "[observation]\nchannel = sim\n  [sim]\nsocket = /s\n",
		     SRUP_CONFIG_OBSERVER, 13, "[observation] channel", "indented");
	/* Indented keys right after a header are keys, not continuations. */
	assert_int_equal(load(OBSERVER_HEAD "[observation]\n  channel = sim\n[sim]\n\tsocket = /s\n",
			      SRUP_CONFIG_OBSERVER),
			 0);
	assert_string_equal(cfg.radio.sim.socket_path, "/s");
}

static void test_syntax_error_line(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD "[observation]\nchannel sim\n[sim]\nsocket = /s\n",
		     SRUP_CONFIG_OBSERVER, 12, "[observation]", "'channel sim'");
	expect_error(OBSERVER_HEAD "[observation\nchannel = sim\n", SRUP_CONFIG_OBSERVER, 11,
		     "'[observation'", "without ']'");
	expect_error(OBSERVER_HEAD "[observation] extra\nchannel = sim\n", SRUP_CONFIG_OBSERVER, 11,
		     "[observation]", "unexpected text");
	expect_error(OBSERVER_HEAD "[observation]\n= sim\n", SRUP_CONFIG_OBSERVER, 12,
		     "[observation]", "no key name");
}

static void test_line_too_long(void **state)
{
	char text[2048], path[300];

	(void)state;
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	snprintf(text, sizeof(text), OBSERVER_HEAD "[observation]\nchannel = sim\n[sim]\nsocket = %s\n",
		 path);
	expect_error(text, SRUP_CONFIG_OBSERVER, 14, "[sim] socket", "characters long");
}

static void test_path_too_long_for_buffer(void **state)
{
	char text[1024], path[121];

	(void)state;
	/* 120 bytes: a line inih takes, a path sun_path cannot hold. */
	memset(path, 's', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	snprintf(text, sizeof(text), OBSERVER_HEAD "[observation]\nchannel = sim\n[sim]\nsocket = %s\n",
		 path);
	expect_error(text, SRUP_CONFIG_OBSERVER, 14, "[sim] socket", "at most 107");
}

static void test_empty_path(void **state)
{
	(void)state;
	expect_error("[identity]\nid = 1\nprivate_key =\n", SRUP_CONFIG_OBSERVER, 3,
		     "[identity] private_key", "empty");
}

static void test_nul_byte(void **state)
{
	FILE *f = fopen(conf_path, "w");

	(void)state;
	assert_non_null(f);
	assert_int_equal(fwrite("[identity]\nid = 1\0\n", 1, 19, f), 19);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(srup_config_load(conf_path, SRUP_CONFIG_OBSERVER, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":2: "));
	assert_non_null(strstr(err, "NUL"));
}

/* ---- Missing required keys --------------------------------------------------------- */

static void expect_missing(const char *text, unsigned line, const char *where)
{
	expect_error(text, SRUP_CONFIG_OBSERVER, line, where, "missing");
}

static void test_missing_identity_keys(void **state)
{
	(void)state;
	expect_missing("[identity]\nprivate_key = k\n[server]\nid = 1\npublic_key = p\n"
		       "[mqtt]\nbroker = mqtt://h:1\n[state]\ndir = d\n" OBSERVATION_SIM,
		       1, "[identity] id");
	expect_missing("[identity]\nid = 1\n[server]\nid = 1\npublic_key = p\n"
		       "[mqtt]\nbroker = mqtt://h:1\n[state]\ndir = d\n" OBSERVATION_SIM,
		       1, "[identity] private_key");
}

static void test_missing_server_keys(void **state)
{
	(void)state;
	expect_missing("[identity]\nid = 1\nprivate_key = k\n[server]\npublic_key = p\n"
		       "[mqtt]\nbroker = mqtt://h:1\n[state]\ndir = d\n" OBSERVATION_SIM,
		       4, "[server] id");
	expect_missing("[identity]\nid = 1\nprivate_key = k\n[server]\nid = 1\n"
		       "[mqtt]\nbroker = mqtt://h:1\n[state]\ndir = d\n" OBSERVATION_SIM,
		       4, "[server] public_key");
}

static void test_missing_mqtt_broker(void **state)
{
	(void)state;
	expect_missing("[identity]\nid = 1\nprivate_key = k\n[server]\nid = 1\npublic_key = p\n"
		       "[mqtt]\nca_file = c\n[state]\ndir = d\n" OBSERVATION_SIM,
		       7, "[mqtt] broker");
}

static void test_missing_state_dir(void **state)
{
	/* A section absent altogether: the line is the file's last. */
	(void)state;
	expect_error("[identity]\nid = 1\nprivate_key = k\n[server]\nid = 1\npublic_key = p\n"
		     "[mqtt]\nbroker = mqtt://h:1\n" OBSERVATION_SIM,
		     SRUP_CONFIG_OBSERVER, 12, "[state] dir", "no [state] section");
}

static void test_missing_observation_channel(void **state)
{
	(void)state;
	expect_missing(OBSERVER_HEAD "[observation]\nwindow_seconds = 5\n", 11, "[observation] channel");
	expect_error(OBSERVER_HEAD, SRUP_CONFIG_OBSERVER, 10, "[observation] channel",
		     "no [observation] section");
}

static void test_missing_sim_socket(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD "[observation]\nchannel = sim\n", SRUP_CONFIG_OBSERVER, 12,
		     "[sim] socket", "channel = sim");
	expect_error(OBSERVER_HEAD "[observation]\nchannel = sim\n[sim]\n", SRUP_CONFIG_OBSERVER, 13,
		     "[sim] socket", "missing");
}

static void test_missing_nfc_device(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD "[observation]\nchannel = nfc\n[nfc]\npoll_ms = 100\n",
		     SRUP_CONFIG_OBSERVER, 13, "[nfc] device", "channel = nfc");
}

static void test_mqtts_needs_ca_file(void **state)
{
	(void)state;
	expect_error("[identity]\nid = 1\nprivate_key = k\n[server]\nid = 1\npublic_key = p\n"
		     "[mqtt]\nbroker = mqtts://h:8883\n[state]\ndir = d\n" OBSERVATION_SIM,
		     SRUP_CONFIG_OBSERVER, 8, "[mqtt] ca_file", "TLS");
}

/* ---- What cannot work (all reported together) -------------------------------------- */

/* err holds exactly `count` lines, and one of them starts with
 * "FILE:LINE: <where>: " and mentions `what`. */
static void expect_line(unsigned count, unsigned line, const char *where, const char *what)
{
	char prefix[256];
	unsigned lines = 1;
	const char *l = err;

	for (const char *c = err; *c; c++)
		lines += *c == '\n';
	if (lines != count)
		fail_msg("expected %u error lines, got %u: \"%s\"", count, lines, err);
	snprintf(prefix, sizeof(prefix), "%s:%u: %s: ", conf_path, line, where);
	for (; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char one[512];

		snprintf(one, sizeof(one), "%.*s", (int)strcspn(l, "\n"), l);
		if (strncmp(one, prefix, strlen(prefix)) == 0 && strstr(one, what))
			return;
	}
	fail_msg("no line of \"%s\" starts with \"%s\" and mentions \"%s\"", err, prefix, what);
}

#define HEAD_WITH_IDS(observer, server, broker)        \
	"[identity]\n"                                  \
	"id = " observer "\n"                           \
	"private_key = k\n"                             \
	"[server]\n"                                    \
	"id = " server "\n"                             \
	"public_key = p\n"                              \
	"[mqtt]\n"                                      \
	"broker = " broker "\n"                         \
	"[state]\n"                                     \
	"dir = d\n"

static void test_observer_id_zero(void **state)
{
	(void)state;
	assert_int_equal(load(HEAD_WITH_IDS("0", "5eed", "tcp://127.0.0.1:1883") OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 -1);
	print_message("    %s\n", err);
	expect_line(1, 2, "[identity] id", "0 is no node's ID");
	assert_int_equal(load(HEAD_WITH_IDS("a1", "0000", "tcp://127.0.0.1:1883") OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 -1);
	expect_line(1, 5, "[server] id", "C2 server");
	/* Both, in one answer. */
	assert_int_equal(load(HEAD_WITH_IDS("0", "0", "tcp://127.0.0.1:1883") OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 -1);
	expect_line(2, 2, "[identity] id", "observer's ID");
	expect_line(2, 5, "[server] id", "C2 server");
}

static void test_placeholder_broker(void **state)
{
	static const char *const placeholders[] = {
		HEAD_WITH_IDS("a1", "5eed", "tcp://c2.example.net:1883") OBSERVATION_SIM,
		HEAD_WITH_IDS("a1", "5eed", "mqtt://EXAMPLE.com") OBSERVATION_SIM,
		HEAD_WITH_IDS("a1", "5eed", "tcp://broker.site.invalid:1883/") OBSERVATION_SIM,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++) {
		assert_int_equal(load(placeholders[i], SRUP_CONFIG_OBSERVER), -1);
		print_message("    %s\n", err);
		expect_line(1, 8, "[mqtt] broker", "placeholder");
	}
	/* Names that merely resemble them are real hosts. */
	assert_int_equal(load(HEAD_WITH_IDS("a1", "5eed", "tcp://myexample.net:1883") OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 0);
}

static void test_mqtts_files_must_be_readable(void **state)
{
	char text[1024], ca[128];

	(void)state;
	touch("ca.pem", ca, sizeof(ca));
	snprintf(text, sizeof(text),
		 "[identity]\nid = a1\nprivate_key = k\n[server]\nid = 5eed\npublic_key = p\n"
		 "[mqtt]\nbroker = mqtts://broker.site.test:8883\nca_file = %s\n"
		 "cert_file = %s/absent-cert.pem\nkey_file = %s/absent-key.pem\n"
		 "[state]\ndir = d\n" OBSERVATION_SIM,
		 ca, dir, dir);
	assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	expect_line(2, 10, "[mqtt] cert_file", "absent-cert.pem': No such file");
	expect_line(2, 11, "[mqtt] key_file", "absent-key.pem': No such file");
	/* The same files are not looked at for a plain TCP broker. */
	snprintf(text, sizeof(text),
		 "[identity]\nid = a1\nprivate_key = k\n[server]\nid = 5eed\npublic_key = p\n"
		 "[mqtt]\nbroker = tcp://127.0.0.1:1883\ncert_file = %s/absent-cert.pem\n"
		 "[state]\ndir = d\n" OBSERVATION_SIM,
		 dir);
	assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), 0);
	unlink(ca);
}

/* err has a line "FILE:LINE: text..." (whatever the line number: the
 * examples change). */
static bool has_line_at_some_line(const char *file, const char *text)
{
	size_t flen = strlen(file);

	for (const char *l = err; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		const char *c = l + flen;

		if (strncmp(l, file, flen) != 0 || *c != ':' || c[1] < '1' || c[1] > '9')
			continue;
		for (c++; *c >= '0' && *c <= '9'; c++)
			;
		if (strncmp(c, ": ", 2) == 0 && strncmp(c + 2, text, strlen(text)) == 0)
			return true;
	}
	return false;
}

/* The shipped example must not pass until the operator has filled it in,
 * and must name everything that is left. */
static void test_shipped_example_names_what_is_left(void **state)
{
	(void)state;
	memset(err, 0, sizeof(err));
	assert_int_equal(srup_config_load(SRUP_SHIPPED_OBSERVER_CONF, SRUP_CONFIG_OBSERVER, &cfg,
					  err, sizeof(err)),
			 -1);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "[identity] id: 0 is no node's ID"));
	assert_non_null(strstr(err, "[server] id: 0 is no node's ID"));
	assert_non_null(strstr(err, "[mqtt] broker: 'c2.example.net' is a placeholder"));
	assert_non_null(strstr(err, "[mqtt] ca_file: cannot read '/etc/srup/ca.pem'"));
	/* The key files in the same pass, with their lines (they used to be
	 * reported only once the rest was filled in, and with no line). */
	assert_true(has_line_at_some_line(SRUP_SHIPPED_OBSERVER_CONF,
					  "[identity] private_key: cannot read "
					  "'/etc/srup/observer/private.pem'"));
	assert_true(has_line_at_some_line(SRUP_SHIPPED_OBSERVER_CONF,
					  "[server] public_key: cannot read "
					  "'/etc/srup/server-public.pem'"));
}

/* The device's example likewise, with every problem on a line of its own:
 * the IDs of 0 included (they passed for a device), key files included. */
static void test_shipped_device_example_names_what_is_left(void **state)
{
	static const char *const expected[] = {
		"[identity] id: 0 is no node's ID; set this device's ID",
		"[server] id: 0 is no node's ID",
		"[identity] private_key: cannot read '/etc/srup/device/private.pem'",
		"[server] public_key: cannot read '/etc/srup/server-public.pem'",
		"[mqtt] broker: 'c2.example.net' is a placeholder",
		"[mqtt] ca_file: cannot read '/etc/srup/ca.pem'",
	};
	size_t plen = strlen(SRUP_SHIPPED_DEVICE_CONF);
	unsigned lines = 0;

	(void)state;
	memset(err, 0, sizeof(err));
	assert_int_equal(srup_config_load(SRUP_SHIPPED_DEVICE_CONF, SRUP_CONFIG_DEVICE, &cfg, err,
					  sizeof(err)),
			 -1);
	print_message("%s\n", err);
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		if (!has_line_at_some_line(SRUP_SHIPPED_DEVICE_CONF, expected[i]))
			fail_msg("no line \"%s:LINE: %s\" in \"%s\"", SRUP_SHIPPED_DEVICE_CONF,
				 expected[i], err);
	for (const char *l = err; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL, lines++)
		assert_int_equal(strncmp(l, SRUP_SHIPPED_DEVICE_CONF, plen), 0);
	assert_int_equal(lines, sizeof(expected) / sizeof(expected[0]));
}

/* Several problems and a buffer too small for all of them: each line that
 * is there is whole and names the file (a cut line could not). */
static void test_problems_in_small_buffer(void **state)
{
	size_t plen = strlen(SRUP_SHIPPED_OBSERVER_CONF);

	(void)state;
	for (size_t len = 40; len <= 600; len += 7) {
		char small[600];
		unsigned lines = 0;

		memset(small, 0x55, sizeof(small));
		assert_int_equal(srup_config_load(SRUP_SHIPPED_OBSERVER_CONF, SRUP_CONFIG_OBSERVER,
						  &cfg, small, len),
				 -1);
		assert_true(strnlen(small, len) < len);
		for (const char *line = small; *line; lines++) {
			const char *end = strchr(line, '\n');

			/* The first line alone may be cut, and only by the buffer's end. */
			if (lines > 0 || strlen(small) + 1 < len)
				if (strncmp(line, SRUP_SHIPPED_OBSERVER_CONF, plen) != 0 ||
				    line[plen] != ':')
					fail_msg("buffer of %zu: line \"%s\" does not name the file",
						 len, line);
			if (!end)
				break;
			line = end + 1;
		}
	}
}

/* ---- Values ------------------------------------------------------------------------ */

static void expect_bad_value(const char *section_and_key_lines, unsigned line, const char *where,
			     const char *what)
{
	char text[2048];

	snprintf(text, sizeof(text), OBSERVER_HEAD "%s", section_and_key_lines);
	expect_error(text, SRUP_CONFIG_OBSERVER, line, where, what);
}

static void test_bad_ids(void **state)
{
	(void)state;
	expect_error("[identity]\nid = xyz\n", SRUP_CONFIG_OBSERVER, 2, "[identity] id",
		     "'xyz' is not a SRUP ID");
	expect_error("[identity]\nid = 12345678901234567\n", SRUP_CONFIG_OBSERVER, 2,
		     "[identity] id", "17 hex digits");
	expect_error("[identity]\nid =\n", SRUP_CONFIG_OBSERVER, 2, "[identity] id", "empty");
	expect_error("[identity]\nid = 0x12\n", SRUP_CONFIG_OBSERVER, 2, "[identity] id", "0x");
	expect_error("[server]\nid = -1\n", SRUP_CONFIG_OBSERVER, 2, "[server] id",
		     "not a SRUP ID");
	expect_error("[server]\nid = 12 34\n", SRUP_CONFIG_OBSERVER, 2, "[server] id",
		     "not a SRUP ID");
}

static void test_bad_numbers(void **state)
{
	(void)state;
	expect_bad_value("[observation]\nchannel = sim\nwindow_seconds = abc\n", 13,
			 "[observation] window_seconds",
			 "'abc' is not a whole number of seconds (1..86400)");
	expect_bad_value("[observation]\nchannel = sim\nwindow_seconds = 12s\n", 13,
			 "[observation] window_seconds", "not a whole number");
	expect_bad_value("[observation]\nchannel = sim\nmax_attempts = -3\n", 13,
			 "[observation] max_attempts", "not a whole number");
	expect_bad_value("[observation]\nchannel = sim\nmax_pending =\n", 13,
			 "[observation] max_pending", "not a whole number");
	expect_bad_value("[nfc]\npoll_ms = 0.5\n", 12, "[nfc] poll_ms", "not a whole number");
}

static void test_out_of_range_numbers(void **state)
{
	(void)state;
	expect_bad_value("[observation]\nchannel = sim\nwindow_seconds = 0\n", 13,
			 "[observation] window_seconds", "out of range (1..86400");
	expect_bad_value("[observation]\nchannel = sim\nwindow_seconds = 86401\n", 13,
			 "[observation] window_seconds", "out of range");
	expect_bad_value("[observation]\nchannel = sim\nwindow_seconds = 99999999999999999999999\n",
			 13, "[observation] window_seconds", "out of range");
	expect_bad_value("[observation]\nchannel = sim\nmax_attempts = 0\n", 13,
			 "[observation] max_attempts", "out of range");
	expect_bad_value("[observation]\nchannel = sim\nmax_pending = 0\n", 13,
			 "[observation] max_pending", "out of range");
	expect_bad_value("[nfc]\npoll_ms = 0\n", 12, "[nfc] poll_ms", "out of range");
}

static void test_bad_boolean(void **state)
{
	(void)state;
	expect_bad_value("[ble]\nrequire_encryption = maybe\n", 12, "[ble] require_encryption",
			 "'maybe' is not a boolean");
	expect_bad_value("[ble]\nrequire_encryption =\n", 12, "[ble] require_encryption",
			 "not a boolean");
}

static void test_bad_channel(void **state)
{
	(void)state;
	expect_bad_value("[observation]\nchannel = wifi\n", 12, "[observation] channel",
			 "'wifi' is not a channel (sim, ble, nfc)");
	expect_bad_value("[observation]\nchannel = SIM\n", 12, "[observation] channel",
			 "not a channel");
}

/* ---- [control], [audit], [metrics] (srup-observerd's operator interfaces) ---- */

static void test_operator_sections_defaults(void **state)
{
	(void)state;
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), 0);
	assert_string_equal(cfg.control_socket, "/run/srup-observer/control");
	assert_string_equal(cfg.audit_file, "");
	assert_int_equal(cfg.audit_max_bytes, 10 * 1024 * 1024);
	assert_int_equal(cfg.audit_keep, 5);
	assert_true(cfg.audit_fsync);
	assert_true(cfg.audit_journal);
	assert_string_equal(cfg.metrics_file, "");
	assert_int_equal(cfg.metrics_interval_seconds, 15);
}

static void test_operator_sections_set(void **state)
{
	(void)state;
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM
			      "[control]\nsocket = /run/o/ctl\n"
			      "[audit]\nfile = /var/log/srup/audit.log\nmax_bytes = 65536\nkeep = 0\n"
			      "fsync = no\njournal = false\n"
			      "[metrics]\nfile = /var/lib/node_exporter/srup.prom\ninterval_seconds = 5\n",
			      SRUP_CONFIG_OBSERVER),
			 0);
	assert_string_equal(cfg.control_socket, "/run/o/ctl");
	assert_string_equal(cfg.audit_file, "/var/log/srup/audit.log");
	assert_int_equal(cfg.audit_max_bytes, 65536);
	assert_int_equal(cfg.audit_keep, 0);
	assert_false(cfg.audit_fsync);
	assert_false(cfg.audit_journal);
	assert_string_equal(cfg.metrics_file, "/var/lib/node_exporter/srup.prom");
	assert_int_equal(cfg.metrics_interval_seconds, 5);
}

static void test_operator_sections_bad(void **state)
{
	char text[512], path[160];

	(void)state;
	expect_bad_value("[audit]\nmax_bytes = 100\n", 12, "[audit] max_bytes", "out of range");
	expect_bad_value("[audit]\nkeep = 101\n", 12, "[audit] keep", "out of range");
	expect_bad_value("[audit]\nfsync = sometimes\n", 12, "[audit] fsync", "not a boolean");
	expect_bad_value("[metrics]\ninterval_seconds = 0\n", 12, "[metrics] interval_seconds",
			 "out of range");
	expect_bad_value("[metrics]\nfile =\n", 12, "[metrics] file", "empty");
	expect_bad_value("[control]\nport = 4\n", 12, "[control] port", "unknown key");
	/* A UNIX socket path longer than sun_path can hold. */
	memset(path, 'a', 120);
	path[0] = '/';
	path[120] = '\0';
	snprintf(text, sizeof(text), "[control]\nsocket = %s\n", path);
	expect_bad_value(text, 12, "[control] socket", "too long");
	/* Observer only. */
	expect_error("[identity]\nid = 1\nprivate_key = k\n[server]\nid = 2\npublic_key = p\n"
		     "[mqtt]\nbroker = tcp://127.0.0.1:1\n[state]\ndir = d\n[metrics]\nfile = m\n",
		     SRUP_CONFIG_DEVICE, 11, "[metrics]", "only the observer");
}

static void test_bad_broker(void **state)
{
	(void)state;
	expect_error("[mqtt]\nbroker = 127.0.0.1:1883\n", SRUP_CONFIG_OBSERVER, 2, "[mqtt] broker",
		     "not a broker URL");
	expect_error("[mqtt]\nbroker = mqtt://\n", SRUP_CONFIG_OBSERVER, 2, "[mqtt] broker",
		     "not a broker URL");
}

/* A port is digits only, 1..65535: caught at load with FILE:LINE, not by
 * the MQTT library at connect. */
static void test_broker_ports(void **state)
{
	static const struct {
		const char *url, *what;
	} bad[] = {
		{"mqtt://host:99999", "port 99999 is out of range (1..65535)"},
		{"mqtt://host:65536", "port 65536 is out of range"},
		{"tcp://host:0", "port 0 is out of range"},
		{"mqtt://host:1883000000000000000000", "out of range"},
		{"mqtt://host:http", "port 'http' is not a number"},
		{"mqtts://host:", "the port after ':' is empty"},
		{"mqtt://host:/", "the port after ':' is empty"},
		{"mqtt://host:+1883", "not a number"},
		{"mqtt://host:18 83", "entry 2 '83' is not a broker URL"}, /* blanks split a list */
		{"mqtt://host:1883x", "not a number"},
		{"mqtt://[::1]:http", "not a number"},
		{"mqtt://[::1", "IPv6"},
		{"mqtt://[::1]x", "not a broker URL"},
	};
	static const char *const good[] = {"mqtt://host:1", "mqtt://host:65535", "tcp://host",
					   "mqtt://[::1]:1883", "mqtt://host:1883/",
					   "mqtt://127.0.0.1:01883"};
	char text[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[mqtt]\nbroker = %s\n", bad[i].url);
		expect_error(text, SRUP_CONFIG_OBSERVER, 2, "[mqtt] broker", bad[i].what);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text),
			 "[identity]\nid = 1\nprivate_key = k\n[server]\nid = 2\npublic_key = p\n"
			 "[mqtt]\nbroker = %s\n[state]\ndir = d\n",
			 good[i]);
		if (load(text, SRUP_CONFIG_DEVICE) != 0)
			fail_msg("%s refused: %s", good[i], err);
	}
}

/* "[mqtt] broker" is a blank-separated list: each entry checked as one
 * URL is, other separators, empty entries and duplicates refused with
 * FILE:LINE, and the list kept as written for the node to split. */
static void test_broker_list(void **state)
{
	static const struct {
		const char *list, *what;
	} bad[] = {
		{"tcp://a:1883,tcp://b:1883", "',' in entry 1: separate broker URLs with blanks only"},
		{"tcp://a:1883, tcp://b:1883", "',' in entry 1"},
		{"tcp://a:1883; tcp://b:1883", "';' in entry 1"},
		{"tcp://a:1883 tcp://b:1883|tcp://c:1", "'|' in entry 2"},
		{"tcp://a:1883 , tcp://b:1883", "entry 2 is empty (',' alone)"},
		{"tcp://a:1883 tcp://a:1883", "entries 1 and 2 name the same broker"},
		{"tcp://a:1883 mqtt://A:1883", "entries 1 and 2 name the same broker"},
		{"tcp://b:1 tcp://a tcp://a:1883", "entries 2 and 3 name the same broker"},
		{"tcp://a:1883 mqtt://b:99999", "entry 2 'mqtt://b:99999': port 99999 is out of range"},
		{"tcp://a:1883 b:1883", "entry 2 'b:1883' is not a broker URL"},
		{"mqtts://a:8883 tcp://b:1883", "entry 2 'tcp://b:1883' mixes TLS and plain"},
		{"t:1 t:2 t:3 t:4 t:5 t:6 t:7 t:8 t:9", "more than 8 broker URLs"},
	};
	static const char *const good[] = {
		"tcp://127.0.0.1:1883 tcp://127.0.0.1:1884",
		"  mqtt://a:1\ttcp://b:1   mqtt://[::1]:1883  ",
		"tcp://a:1883 tcp://a:1884 tcp://b:1883",
	};
	char text[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[mqtt]\nbroker = %s\n", bad[i].list);
		expect_error(text, SRUP_CONFIG_OBSERVER, 2, "[mqtt] broker", bad[i].what);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text),
			 "[identity]\nid = 1\nprivate_key = k\n[server]\nid = 2\npublic_key = p\n"
			 "[mqtt]\nbroker = %s\n[state]\ndir = d\n",
			 good[i]);
		if (load(text, SRUP_CONFIG_DEVICE) != 0)
			fail_msg("%s refused: %s", good[i], err);
	}
	assert_string_equal(cfg.mqtt_broker, "tcp://a:1883 tcp://a:1884 tcp://b:1883");
	/* A placeholder anywhere in the list is named. */
	assert_int_equal(load(HEAD_WITH_IDS("a1", "5eed", "tcp://10.0.0.1:1883 tcp://c2.example.net:1883")
				      OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 -1);
	expect_line(1, 8, "[mqtt] broker", "'c2.example.net' is a placeholder");
	/* mqtts:// in a list needs the CA file as a single mqtts:// URL does. */
	assert_int_equal(load(HEAD_WITH_IDS("a1", "5eed", "mqtts://h1:8883 mqtts://h2:8883")
				      OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 -1);
	expect_line(1, 8, "[mqtt] ca_file", "needs a CA file");
}

/* ---- The device role's sections ------------------------------------------------------- */

static void test_role_sections(void **state)
{
	(void)state;
	/* Defaults when absent. */
	assert_int_equal(load(OBSERVER_HEAD, SRUP_CONFIG_DEVICE), 0);
	assert_int_equal(cfg.server_join, SRUP_CONFIG_JOIN_OFF);
	assert_int_equal(cfg.update.max_bytes, 64u * 1024u * 1024u);
	assert_int_equal(cfg.update.connect_timeout_seconds, 10);
	assert_int_equal(cfg.update.timeout_seconds, 300);
	assert_int_equal(cfg.update.max_redirects, 5);
	assert_string_equal(cfg.update.activate, "");
	assert_int_equal(cfg.hook_timeout_seconds, 120);
	assert_int_equal(cfg.groups_max, 8);
	assert_int_equal(cfg.join_command, SRUP_CONFIG_JOIN_COMMAND_ACCEPT);
	assert_int_equal(cfg.n_actions, 0);
	assert_int_equal(cfg.n_data, 0);

	assert_int_equal(load("[identity]\nid = 1\nprivate_key = k\n"
			      "[server]\nid = 1\npublic_key = p\njoin = auto\n"
			      "[mqtt]\nbroker = mqtt://h:1\n[state]\ndir = d\n"
			      "[identification]\ntext = Acme sensor 2.1; board rev C\n"
			      "[update]\nca_file = /etc/ca.pem\nmax_bytes = 1000\n"
			      "connect_timeout_seconds = 3\ntimeout_seconds = 60\nmax_redirects = 0\n"
			      "activate = /usr/lib/acme/apply --verbose\n"
			      "[hooks]\ntimeout_seconds = 9\n"
			      "[actions]\n0 = /bin/true\n255 = /usr/bin/logger  -t  srup\n"
			      "[data]\nconfig.v1 = /usr/bin/tee /tmp/x\n"
			      "[groups]\nmax = 0\n[join]\ncommand = refuse\n",
			      SRUP_CONFIG_DEVICE),
			 0);
	assert_int_equal(cfg.server_join, SRUP_CONFIG_JOIN_AUTO);
	assert_string_equal(cfg.identification, "Acme sensor 2.1; board rev C");
	assert_string_equal(cfg.update.ca_file, "/etc/ca.pem");
	assert_int_equal(cfg.update.max_bytes, 1000);
	assert_int_equal(cfg.update.connect_timeout_seconds, 3);
	assert_int_equal(cfg.update.timeout_seconds, 60);
	assert_int_equal(cfg.update.max_redirects, 0);
	assert_string_equal(cfg.update.activate, "/usr/lib/acme/apply --verbose");
	assert_int_equal(cfg.hook_timeout_seconds, 9);
	assert_int_equal(cfg.n_actions, 2);
	assert_int_equal(cfg.actions[0].action_id, 0);
	assert_int_equal(cfg.actions[1].action_id, 255);
	assert_string_equal(cfg.actions[1].command, "/usr/bin/logger  -t  srup");
	assert_int_equal(cfg.n_data, 1);
	assert_string_equal(cfg.data[0].id, "config.v1");
	assert_int_equal(cfg.groups_max, 0);
	assert_int_equal(cfg.join_command, SRUP_CONFIG_JOIN_COMMAND_REFUSE);
}

static void test_split_command(void **state)
{
	char buf[64];
	char *argv[5];

	(void)state;
	assert_int_equal(srup_config_split_command("  /bin/echo \t a   'b c'  ", buf, sizeof(buf),
						   argv, 5),
			 4);
	assert_string_equal(argv[0], "/bin/echo");
	assert_string_equal(argv[1], "a");
	/* No quoting: quotes are ordinary characters. */
	assert_string_equal(argv[2], "'b");
	assert_string_equal(argv[3], "c'");
	assert_null(argv[4]);
	assert_int_equal(srup_config_split_command("/a b c d e", buf, sizeof(buf), argv, 5), -1);
	assert_int_equal(srup_config_split_command("   ", buf, sizeof(buf), argv, 5), -1);
	assert_int_equal(srup_config_split_command("/a", buf, 2, argv, 5), -1);
}

static void test_role_bad_values(void **state)
{
	(void)state;
	expect_error("[server]\njoin = yes\n", SRUP_CONFIG_DEVICE, 2, "[server] join",
		     "'yes' is not one of off|auto");
	expect_bad_value("[join]\ncommand = maybe\n", 12, "[join] command",
			 "not one of accept|refuse");
	expect_bad_value("[update]\nactivate = apply.sh\n", 12, "[update] activate",
			 "absolute path");
	expect_bad_value("[update]\nactivate =\n", 12, "[update] activate", "not a command");
	expect_bad_value("[update]\nmax_bytes = 0\n", 12, "[update] max_bytes", "out of range");
	expect_bad_value("[update]\nmax_redirects = 21\n", 12, "[update] max_redirects",
			 "out of range");
	expect_bad_value("[update]\nurl = x\n", 12, "[update] url", "unknown key");
	expect_bad_value("[hooks]\ntimeout_seconds = 0\n", 12, "[hooks] timeout_seconds",
			 "out of range");
	expect_bad_value("[groups]\nmax = 65\n", 12, "[groups] max", "out of range");
	expect_bad_value("[identification]\ntext =\n", 12, "[identification] text", "empty");
	expect_bad_value("[actions]\n256 = /bin/true\n", 12, "[actions] 256", "not an action ID");
	expect_bad_value("[actions]\nreboot = /bin/true\n", 12, "[actions] reboot",
			 "not an action ID");
	expect_bad_value("[actions]\n7 = /bin/true\n7 = /bin/false\n", 13, "[actions] 7",
			 "set twice");
	expect_bad_value("[actions]\n7 = true\n", 12, "[actions] 7", "absolute path");
	expect_bad_value("[data]\nconfig = /bin/true\nconf ig = /bin/true\n", 13,
			 "[data] conf ig", "not a data ID");
	expect_bad_value("[data]\nx = /bin/true\nx = /bin/cat\n", 13, "[data] x", "set twice");
	expect_bad_value("[data]\nx =\n", 12, "[data] x", "not a command");
}

static void test_observation_in_device_config(void **state)
{
	(void)state;
	expect_error(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_DEVICE, 11, "[observation]",
		     "device configuration");
}

static void test_first_error_wins(void **state)
{
	(void)state;
	/* A syntax error before a bad value, then a bad value before a
	 * syntax error. */
	expect_error("[identity]\nnonsense\nid = zz\n", SRUP_CONFIG_OBSERVER, 2, "[identity]",
		     "'nonsense'");
	expect_error("[identity]\nid = zz\nnonsense\n", SRUP_CONFIG_OBSERVER, 2, "[identity] id",
		     "'zz'");
}

/* ---- The file itself ------------------------------------------------------------------ */

static void test_unreadable_file(void **state)
{
	char missing[160];

	(void)state;
	snprintf(missing, sizeof(missing), "%s/absent.conf", dir);
	assert_int_equal(srup_config_load(missing, SRUP_CONFIG_OBSERVER, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "No such file"));
	/* A directory is no configuration file either. */
	assert_int_equal(srup_config_load(dir, SRUP_CONFIG_OBSERVER, &cfg, err, sizeof(err)), -1);
	assert_true(strncmp(err, dir, strlen(dir)) == 0);
	assert_non_null(strstr(err, "directory"));
}

static void test_small_error_buffer(void **state)
{
	char tiny[16];

	(void)state;
	write_conf("[bogus]\n");
	assert_int_equal(srup_config_load(conf_path, SRUP_CONFIG_OBSERVER, &cfg, tiny, sizeof(tiny)),
			 -1);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_int_equal(srup_config_load(conf_path, SRUP_CONFIG_OBSERVER, &cfg, NULL, 0), -1);
}

/* ---- Drop-ins: the .conf files of FILE.d, after FILE ---------------------------- */

static char dropin_dir[160];

/* Writes FILE.d/name (FILE.d made if need be); path gets its path. */
static void write_dropin(const char *name, const char *text, char *path, size_t len)
{
	FILE *f;

	snprintf(dropin_dir, sizeof(dropin_dir), "%s.d", conf_path);
	mkdir(dropin_dir, 0755);
	snprintf(path, len, "%s/%s", dropin_dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static void remove_dropins(void)
{
	snprintf(dropin_dir, sizeof(dropin_dir), "%s.d", conf_path);
	nftw(dropin_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* err starts with "PATH:LINE: <where>: " and mentions `what`. */
static void expect_error_in(const char *path, unsigned line, const char *where, const char *what)
{
	char prefix[320];

	print_message("    %s\n", err);
	snprintf(prefix, sizeof(prefix), "%s:%u: %s: ", path, line, where);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
	if (what && !strstr(err, what))
		fail_msg("error \"%s\" does not mention \"%s\"", err, what);
}

static void test_dropins_in_byte_order_later_wins(void **state)
{
	char a[256], b[256], c[256], ignored[256], where[320];

	(void)state;
	remove_dropins();
	/* "10-" sorts before "9-" byte by byte: 9-last.conf is read last. */
	write_dropin("10-first.conf", "[observation]\nwindow_seconds = 10\n[actions]\n1 = /bin/ten\n",
		     a, sizeof(a));
	write_dropin("50-middle.conf", "; the operator's\n[observation]\nmax_attempts = 7\n"
				       "window_seconds = 50\n[data]\nsetpoint = /bin/fifty\n",
		     b, sizeof(b));
	write_dropin("9-last.conf", "[actions]\n\n1 = /bin/nine\n2 = /bin/two\n", c, sizeof(c));
	/* Not drop-ins: other names, hidden files, editors' leftovers. */
	write_dropin(".hidden.conf", "[bogus]\n", ignored, sizeof(ignored));
	write_dropin("60-x.conf.dpkg-old", "[bogus]\n", ignored, sizeof(ignored));
	write_dropin("70-x.conf~", "[bogus]\n", ignored, sizeof(ignored));
	write_dropin("README", "[bogus]\n", ignored, sizeof(ignored));
	write_dropin(".conf", "[bogus]\n", ignored, sizeof(ignored));
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = sim\nwindow_seconds = 5\n"
					    "[sim]\nsocket = /run/srup/observer.sock\n"
					    "[actions]\n1 = /bin/main\n[data]\n"
					    "setpoint = /bin/main-data\n",
			      SRUP_CONFIG_OBSERVER),
			 0);
	remove_dropins();
	assert_int_equal(cfg.n_files, 4);
	assert_string_equal(cfg.files[0], conf_path);
	assert_string_equal(cfg.files[1], a);
	assert_string_equal(cfg.files[2], b);
	assert_string_equal(cfg.files[3], c);
	assert_int_equal(cfg.window_seconds, 50);
	assert_int_equal(cfg.max_attempts, 7);
	/* The main file's sim socket stays: a drop-in replaces what it sets only. */
	assert_string_equal(cfg.radio.sim.socket_path, "/run/srup/observer.sock");
	assert_int_equal(cfg.n_actions, 2);
	assert_int_equal(cfg.actions[0].action_id, 1);
	assert_string_equal(cfg.actions[0].command, "/bin/nine");
	assert_int_equal(cfg.actions[1].action_id, 2);
	assert_int_equal(cfg.n_data, 1);
	assert_string_equal(cfg.data[0].command, "/bin/fifty");
	snprintf(where, sizeof(where), "%s:4", b);
	assert_string_equal(srup_config_where(&cfg, "observation", "window_seconds", where + 200,
					      120), where);
	snprintf(where, sizeof(where), "%s:3", c);
	assert_string_equal(srup_config_where(&cfg, "actions", "1", where + 200, 120), where);
	snprintf(where, sizeof(where), "%s:2", conf_path);
	assert_string_equal(srup_config_where(&cfg, "identity", "id", where + 200, 120), where);
	/* Not set anywhere: the main file. */
	assert_string_equal(srup_config_where(&cfg, "metrics", "file", where + 200, 120),
			    conf_path);
}

static void test_dropin_errors_name_the_dropin(void **state)
{
	char a[256], b[256];

	(void)state;
	remove_dropins();
	write_dropin("10-ok.conf", "[observation]\nwindow_seconds = 10\n", a, sizeof(a));
	write_dropin("20-bad.conf", "# comment\n[observation]\nwindow_seconds = soon\n", b,
		     sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	expect_error_in(b, 3, "[observation] window_seconds", "soon");
	assert_int_equal(cfg.n_files, 3);
	remove_dropins();

	/* Once per file, as in the main file; again in another file is fine. */
	write_dropin("20-twice.conf", "[observation]\nwindow_seconds = 1\nwindow_seconds = 2\n", b,
		     sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	expect_error_in(b, 3, "[observation] window_seconds", "set twice (first at line 2)");
	remove_dropins();
	write_dropin("20-twice.conf", "[actions]\n3 = /bin/a\n3 = /bin/b\n", b, sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	expect_error_in(b, 3, "[actions] 3", "set twice (first at line 2)");
	remove_dropins();
	write_dropin("20-sections.conf", "[observation]\n[sim]\n[observation]\n", b, sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	expect_error_in(b, 3, "[observation]", "section appears twice");
	remove_dropins();

	/* Syntax, unknown keys and observer-only sections in a device's drop-in. */
	write_dropin("20-syntax.conf", "[mqtt]\nbroker\n", b, sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	expect_error_in(b, 2, "[mqtt]", "not a 'key = value' line");
	remove_dropins();
	write_dropin("20-obs.conf", "[observation]\nchannel = sim\n", b, sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD, SRUP_CONFIG_DEVICE), -1);
	expect_error_in(b, 1, "[observation]", "only the observer has it");
	remove_dropins();
}

/* A key is required of the files together: a drop-in may set it; when
 * none does, the error says so. The checks made after parsing name the
 * file and line where the value was set. */
static void test_dropin_required_and_checks(void **state)
{
	char a[256], b[256];

	(void)state;
	remove_dropins();
	write_dropin("50-broker.conf", "[mqtt]\nbroker = tcp://127.0.0.1:1883\n", a, sizeof(a));
	assert_int_equal(load("[identity]\nid = a1\nprivate_key = k\n[server]\nid = 5eed\n"
			      "public_key = p\n[state]\ndir = d\n" OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 0);
	assert_string_equal(cfg.mqtt_broker, "tcp://127.0.0.1:1883");
	remove_dropins();
	write_dropin("50-nothing.conf", "[state]\ndir = /var/lib/x\n", a, sizeof(a));
	assert_int_equal(load("[identity]\nid = a1\nprivate_key = k\n[server]\nid = 5eed\n"
			      "public_key = p\n[state]\ndir = d\n" OBSERVATION_SIM,
			      SRUP_CONFIG_OBSERVER),
			 -1);
	expect_error_in(conf_path, 12, "[mqtt] broker", "none of the 2 files read has a [mqtt] section");
	remove_dropins();

	/* The example left as it is, the operator's values in a drop-in; what
	 * is still wrong is named where it was set, all in one pass. */
	write_dropin("50-site.conf", "[identity]\nid = 0\n[mqtt]\nbroker = mqtt://c2.example.org:1883\n",
		     a, sizeof(a));
	write_dropin("60-keys.conf", "[server]\npublic_key = /nonexistent/server.pem\n", b,
		     sizeof(b));
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	{
		char line[400];

		snprintf(line, sizeof(line), "%s:2: [identity] id: 0 is no node's ID", a);
		assert_non_null(strstr(err, line));
		snprintf(line, sizeof(line), "%s:4: [mqtt] broker: 'c2.example.org' is a placeholder", a);
		assert_non_null(strstr(err, line));
		snprintf(line, sizeof(line),
			 "%s:2: [server] public_key: cannot read '/nonexistent/server.pem'", b);
		assert_non_null(strstr(err, line));
	}
	remove_dropins();
}

static void test_dropin_files_that_cannot_be_read(void **state)
{
	char path[256], fifo[256];

	(void)state;
	remove_dropins();
	/* A directory and a FIFO named like drop-ins: errors naming them
	 * (and a FIFO must not hang the load). */
	write_dropin("10-ok.conf", "", path, sizeof(path));
	snprintf(path, sizeof(path), "%s/20-dir.conf", dropin_dir);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "is a directory"));
	remove_dropins();
	write_dropin("10-ok.conf", "", path, sizeof(path));
	snprintf(fifo, sizeof(fifo), "%s/20-fifo.conf", dropin_dir);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	assert_non_null(strstr(err, fifo));
	assert_non_null(strstr(err, "not a regular file"));
	remove_dropins();
	/* A dangling link. */
	write_dropin("10-ok.conf", "", path, sizeof(path));
	snprintf(path, sizeof(path), "%s/30-gone.conf", dropin_dir);
	assert_int_equal(symlink("/nonexistent/srup.conf", path), 0);
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	assert_non_null(strstr(err, path));
	remove_dropins();

	/* FILE.d that is not a directory. */
	snprintf(path, sizeof(path), "%s.d", conf_path);
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fclose(f);
	}
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
	print_message("    %s\n", err);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "drop-in directory"));
	unlink(path);
	/* One that cannot be listed (root lists any directory: checked only
	 * when the test runs as another user). */
	if (geteuid() != 0) {
		write_dropin("10-ok.conf", "", path, sizeof(path));
		assert_int_equal(chmod(dropin_dir, 0), 0);
		assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), -1);
		print_message("    %s\n", err);
		assert_non_null(strstr(err, dropin_dir));
		chmod(dropin_dir, 0755);
		remove_dropins();
	}
	/* No FILE.d at all: just the file. */
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(cfg.n_files, 1);
}

/* ---- What the machine lacks for a channel ---------------------------------------------- */

/* A dbus-daemon of the test's own, standing in for the system bus
 * (DBUS_SYSTEM_BUS_ADDRESS, which sd-bus honours): BlueZ is what owns
 * org.bluez there or can be started there, as on a real system. */
static pid_t bus_pid;
static char bus_dir[160];

static void bus_call(const char *method, const char *signature, const char *arg)
{
	sd_bus *bus = NULL;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	assert_int_equal(sd_bus_open_system(&bus), 0);
	if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			       "org.freedesktop.DBus", method, &e, NULL, signature, arg) < 0)
		fail_msg("%s: %s", method, e.message);
	sd_bus_flush_close_unref(bus);
}

static bool bus_answers(void)
{
	sd_bus *bus = NULL;
	bool ok = sd_bus_open_system(&bus) >= 0 &&
		  sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
				     "org.freedesktop.DBus", "GetId", NULL, NULL, "") >= 0;

	sd_bus_flush_close_unref(bus);
	return ok;
}

static void bus_start(void)
{
	char conf[256], sock[256], text[1024], address[300];
	struct timespec pause = {0, 10 * 1000 * 1000};
	FILE *f;

	snprintf(bus_dir, sizeof(bus_dir), "%s/bus", dir);
	snprintf(conf, sizeof(conf), "%s/bus.conf", bus_dir);
	snprintf(sock, sizeof(sock), "%s/socket", bus_dir);
	mkdir(bus_dir, 0755);
	snprintf(text, sizeof(text), "%s/services", bus_dir);
	mkdir(text, 0755);
	snprintf(text, sizeof(text),
		 "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
		 " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
		 "<busconfig><type>custom</type><listen>unix:path=%s</listen>"
		 "<auth>EXTERNAL</auth><servicedir>%s/services</servicedir>"
		 "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
		 "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
		 "</policy></busconfig>\n",
		 sock, bus_dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	bus_pid = fork();
	assert_true(bus_pid >= 0);
	if (bus_pid == 0) {
		char arg[300];
		int null = open("/dev/null", O_RDWR);

		/* Not the test's output: a pipe reader would wait for the bus too. */
		dup2(null, 1);
		dup2(null, 2);
		snprintf(arg, sizeof(arg), "--config-file=%s", conf);
		execlp("dbus-daemon", "dbus-daemon", "--nofork", "--nopidfile", arg, (char *)NULL);
		_exit(127);
	}
	/* Ready when it answers a call (or it has exited): its socket file
	 * exists a moment before it listens, and a check that cannot connect
	 * falls back to this machine's own BlueZ service file. */
	snprintf(address, sizeof(address), "unix:path=%s", sock);
	setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1);
	for (int i = 0; i < 3000 && !bus_answers(); i++) {
		if (waitpid(bus_pid, NULL, WNOHANG) == bus_pid) {
			bus_pid = 0;
			unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
			skip(); /* no dbus-daemon on this machine */
		}
		nanosleep(&pause, NULL);
	}
	assert_true(bus_answers());
}

static void bus_stop(void)
{
	unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
	if (bus_pid > 0) {
		kill(bus_pid, SIGTERM);
		waitpid(bus_pid, NULL, 0);
		bus_pid = 0;
	}
}

#define OBSERVATION_BLE "[observation]\nchannel = ble\n"   /* lines 11..12 */

static int channel_problems(enum srup_config_kind kind)
{
	int n;

	memset(err, 0, sizeof(err));
	n = srup_config_check_channels(&cfg, kind, err, sizeof(err));
	print_message("    %d: %s\n", n, err);
	return n;
}

/* dbus-daemon may apply a service directory change after ReloadConfig has
 * returned (its inotify watch reloads on its own schedule): wait, bounded,
 * for the answer the bus will settle on. */
static int channel_problems_settled(enum srup_config_kind kind, int expected)
{
	struct timespec pause = {0, 20 * 1000 * 1000};
	int n = channel_problems(kind);

	for (int i = 0; i < 250 && n != expected; i++) {
		nanosleep(&pause, NULL);
		n = channel_problems(kind);
	}
	return n;
}

static void test_ble_needs_bluez_on_the_system_bus(void **state)
{
	char service[256], prefix[300];
	sd_bus *bluez = NULL;
	FILE *f;

	(void)state;
	bus_start();
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_BLE, SRUP_CONFIG_OBSERVER), 0);
	/* Nothing owns org.bluez and nothing can start it: BlueZ is not installed. */
	assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 1);
	snprintf(prefix, sizeof(prefix), "%s:12: [observation] channel: ble cannot work on this machine",
		 conf_path);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	assert_non_null(strstr(err, "install bluez"));

	/* Installed: its D-Bus service file makes org.bluez activatable. */
	snprintf(service, sizeof(service), "%s/services/org.bluez.service", bus_dir);
	f = fopen(service, "w");
	assert_non_null(f);
	fputs("[D-BUS Service]\nName=org.bluez\nExec=/bin/false\nUser=root\n", f);
	assert_int_equal(fclose(f), 0);
	bus_call("ReloadConfig", "", NULL);
	assert_int_equal(channel_problems_settled(SRUP_CONFIG_OBSERVER, 0), 0);
	unlink(service);
	bus_call("ReloadConfig", "", NULL);
	assert_int_equal(channel_problems_settled(SRUP_CONFIG_OBSERVER, 1), 1);

	/* Running (owning the name) is enough as well. */
	assert_int_equal(sd_bus_open_system(&bluez), 0);
	assert_true(sd_bus_request_name(bluez, "org.bluez", 0) >= 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 0);
	sd_bus_flush_close_unref(bluez);

	/* A device names no channel: its [ble] section is what it would use. */
	assert_int_equal(load(OBSERVER_HEAD "[ble]\nadapter = hci0\n", SRUP_CONFIG_DEVICE), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_DEVICE), 1);
	snprintf(prefix, sizeof(prefix), "%s:11: [ble]: join --channel ble cannot work", conf_path);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	assert_int_equal(load(OBSERVER_HEAD, SRUP_CONFIG_DEVICE), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_DEVICE), 0);
	/* sim needs no BlueZ. */
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_SIM, SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 0);
	/* A list: every listed channel is checked, each problem on its line. */
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = sim ble nfc\n[sim]\n"
			      "socket = /s\n[nfc]\ndevice = pn532_uart:/nonexistent/ttyUSB3\n",
			      SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 2);
	snprintf(prefix, sizeof(prefix), "%s:12: [observation] channel: ble cannot work on this "
		 "machine", conf_path);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	snprintf(prefix, sizeof(prefix), "\n%s:16: [nfc] device: 'pn532_uart:/nonexistent/ttyUSB3'",
		 conf_path);
	assert_non_null(strstr(err, prefix));
	assert_int_equal(load(OBSERVER_HEAD "[observation]\nchannel = sim nfc\n[sim]\n"
			      "socket = /s\n[nfc]\ndevice = pn532_uart:/dev/null\n",
			      SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 0);
	bus_stop();

	/* No system bus to ask (a chroot): the service file the bluez package
	 * installs says whether BlueZ is there; this machine's answer. */
	setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/srup-test-bus", 1);
	assert_int_equal(load(OBSERVER_HEAD OBSERVATION_BLE, SRUP_CONFIG_OBSERVER), 0);
	if (access("/usr/share/dbus-1/system-services/org.bluez.service", F_OK) == 0 ||
	    access("/usr/local/share/dbus-1/system-services/org.bluez.service", F_OK) == 0 ||
	    access("/lib/dbus-1/system-services/org.bluez.service", F_OK) == 0) {
		assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 0);
	} else {
		assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 1);
		assert_non_null(strstr(err, "BlueZ is not installed"));
		assert_non_null(strstr(err, "system bus cannot be asked"));
	}
	unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
}

static void test_nfc_serial_device_node_must_exist(void **state)
{
	static const struct {
		const char *connstring;
		const char *what; /* NULL: no problem */
	} cases[] = {
		{"pn532_uart:/nonexistent/ttyUSB7", "/nonexistent/ttyUSB7: No such file or directory"},
		{"pn532_uart:/nonexistent/ttyUSB7:115200", "/nonexistent/ttyUSB7: No such file"},
		{"arygon:/nonexistent/ttyS9", "No such file"},
		{"acr122s:/nonexistent/ttyS9", "No such file"},
		{"pn532_i2c:/nonexistent/i2c-1", "No such file"},
		{"pn532_spi:/nonexistent/spidev0.0", "No such file"},
		{"pn532_uart:/dev/null", NULL},
		{"pn532_uart:/dev/null:115200", NULL},
		{"acr122_usb", NULL},           /* USB: nothing on disk to check */
		{"pn53x_usb:002:003", NULL},
	};
	char text[1024], prefix[300], plain[200];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), OBSERVER_HEAD "[observation]\nchannel = nfc\n[nfc]\n"
						   "device = %s\n", cases[i].connstring);
		assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), 0);
		if (!cases[i].what) {
			assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 0);
			continue;
		}
		assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 1);
		snprintf(prefix, sizeof(prefix), "%s:14: [nfc] device: '%s': ", conf_path,
			 cases[i].connstring);
		if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, cases[i].what) ||
		    !strstr(err, "nfc channel cannot work on this machine"))
			fail_msg("%s: \"%s\"", cases[i].connstring, err);
	}
	/* A path that is there but no device node. */
	touch("not-a-tty", plain, sizeof(plain));
	snprintf(text, sizeof(text), OBSERVER_HEAD "[observation]\nchannel = nfc\n[nfc]\n"
					   "device = pn532_uart:%s\n", plain);
	assert_int_equal(load(text, SRUP_CONFIG_OBSERVER), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_OBSERVER), 1);
	assert_non_null(strstr(err, "is not a device node"));
	/* A device: its [nfc] device, set in a drop-in, named there. */
	remove_dropins();
	write_dropin("50-nfc.conf", "[nfc]\ndevice = pn532_uart:/nonexistent/ttyACM0\n", plain,
		     sizeof(plain));
	assert_int_equal(load(OBSERVER_HEAD, SRUP_CONFIG_DEVICE), 0);
	assert_int_equal(channel_problems(SRUP_CONFIG_DEVICE), 1);
	snprintf(prefix, sizeof(prefix), "%s:2: [nfc] device: ", plain);
	assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	remove_dropins();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_observer_full),
		cmocka_unit_test(test_ble_needs_bluez_on_the_system_bus),
		cmocka_unit_test(test_nfc_serial_device_node_must_exist),
		cmocka_unit_test(test_dropins_in_byte_order_later_wins),
		cmocka_unit_test(test_dropin_errors_name_the_dropin),
		cmocka_unit_test(test_dropin_required_and_checks),
		cmocka_unit_test(test_dropin_files_that_cannot_be_read),
		cmocka_unit_test(test_role_sections),
		cmocka_unit_test(test_split_command),
		cmocka_unit_test(test_role_bad_values),
		cmocka_unit_test(test_good_observer_defaults),
		cmocka_unit_test(test_good_device),
		cmocka_unit_test(test_crlf_and_bom),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_channel_names),
		cmocka_unit_test(test_channel_list),
		cmocka_unit_test(test_unknown_section),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_duplicate_section),
		cmocka_unit_test(test_key_outside_section),
		cmocka_unit_test(test_indented_continuation),
		cmocka_unit_test(test_syntax_error_line),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_path_too_long_for_buffer),
		cmocka_unit_test(test_empty_path),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_missing_identity_keys),
		cmocka_unit_test(test_missing_server_keys),
		cmocka_unit_test(test_missing_mqtt_broker),
		cmocka_unit_test(test_broker_list),
		cmocka_unit_test(test_missing_state_dir),
		cmocka_unit_test(test_missing_observation_channel),
		cmocka_unit_test(test_missing_sim_socket),
		cmocka_unit_test(test_missing_nfc_device),
		cmocka_unit_test(test_mqtts_needs_ca_file),
		cmocka_unit_test(test_observer_id_zero),
		cmocka_unit_test(test_placeholder_broker),
		cmocka_unit_test(test_problems_in_small_buffer),
		cmocka_unit_test(test_mqtts_files_must_be_readable),
		cmocka_unit_test(test_shipped_example_names_what_is_left),
		cmocka_unit_test(test_shipped_device_example_names_what_is_left),
		cmocka_unit_test(test_bad_ids),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_out_of_range_numbers),
		cmocka_unit_test(test_bad_boolean),
		cmocka_unit_test(test_bad_channel),
		cmocka_unit_test(test_operator_sections_defaults),
		cmocka_unit_test(test_operator_sections_set),
		cmocka_unit_test(test_operator_sections_bad),
		cmocka_unit_test(test_bad_broker),
		cmocka_unit_test(test_broker_ports),
		cmocka_unit_test(test_observation_in_device_config),
		cmocka_unit_test(test_first_error_wins),
		cmocka_unit_test(test_unreadable_file),
		cmocka_unit_test(test_small_error_buffer),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
