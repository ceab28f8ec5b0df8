/* libsrup-device without a broker: every error has its text, settings are
 * checked as the INI file is (detail naming the key), calls out of order
 * are refused, and the log handler receives lines without the prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "srup_device.h"
#include "srup_log.h"

static void strerror_covers_every_error(void **state)
{
	(void)state;
	for (int e = 0; e < SRUP_DEVICE_E__COUNT; e++) {
		const char *text = srup_device_strerror((enum srup_device_err)e);

		assert_non_null(text);
		assert_string_not_equal(text, "unknown error");
		for (int f = 0; f < e; f++)
			assert_string_not_equal(text, srup_device_strerror((enum srup_device_err)f));
	}
	assert_string_equal(srup_device_strerror(SRUP_DEVICE_E__COUNT), "unknown error");
	assert_string_equal(srup_device_strerror((enum srup_device_err)-1), "unknown error");
	assert_string_equal(srup_device_version(), "1.0.0");
}

static void settings_missing_are_named(void **state)
{
	struct srup_device_settings st = {.size = sizeof(st)};
	struct srup_device *dev = (void *)1;
	char detail[1024] = "";

	(void)state;
	assert_int_equal(srup_device_new(&st, &dev, detail, sizeof(detail)), SRUP_DEVICE_E_CONFIG);
	assert_null(dev);
	assert_non_null(strstr(detail, "[identity] id"));
	assert_non_null(strstr(detail, "missing"));
}

static void settings_bad_values_are_named(void **state)
{
	struct srup_device_settings st = {
		.size = sizeof(st),
		.id = 0x1234,
		.private_key = "/nonexistent/private.pem",
		.server_id = 0x99,
		.server_public_key = "/nonexistent/server.pem",
		.broker = "ftp://127.0.0.1:1883",
		.state_dir = "/tmp",
	};
	struct srup_device *dev = NULL;
	char detail[1024] = "";

	(void)state;
	assert_int_equal(srup_device_new(&st, &dev, detail, sizeof(detail)), SRUP_DEVICE_E_CONFIG);
	assert_null(dev);
	assert_non_null(strstr(detail, "srup_device_settings"));
	assert_non_null(strstr(detail, "[mqtt] broker"));

	/* Good values, but no key behind them: the loader's file check. */
	st.broker = "tcp://127.0.0.1:1883";
	detail[0] = '\0';
	assert_int_equal(srup_device_new(&st, &dev, detail, sizeof(detail)), SRUP_DEVICE_E_CONFIG);
	assert_null(dev);
	assert_non_null(strstr(detail, "/nonexistent/private.pem"));
}

static void arguments_checked(void **state)
{
	struct srup_device *dev = (void *)1;
	char detail[256] = "";
	struct srup_device_settings tiny = {.size = 0};

	(void)state;
	assert_int_equal(srup_device_new(NULL, &dev, detail, sizeof(detail)), SRUP_DEVICE_E_ARG);
	assert_null(dev);
	assert_int_equal(srup_device_new(&tiny, &dev, detail, sizeof(detail)), SRUP_DEVICE_E_ARG);
	assert_int_equal(srup_device_new_from_file(NULL, &dev, detail, sizeof(detail)),
			 SRUP_DEVICE_E_ARG);
	assert_int_equal(srup_device_new_from_file("/nonexistent/srup.conf", &dev, detail,
						   sizeof(detail)),
			 SRUP_DEVICE_E_CONFIG);
	assert_non_null(strstr(detail, "/nonexistent/srup.conf"));
	assert_int_equal(srup_device_request_complete(NULL, 0x20), SRUP_DEVICE_E_ARG);
	assert_int_equal(srup_device_process(NULL), SRUP_DEVICE_E_ARG);
	assert_int_equal(srup_device_start(NULL), SRUP_DEVICE_E_ARG);
	srup_device_free(NULL);
}

struct captured {
	int priority;
	char line[256];
	int calls;
};

static void capture(int priority, const char *line, void *user)
{
	struct captured *c = user;

	c->priority = priority;
	snprintf(c->line, sizeof(c->line), "%s", line);
	c->calls++;
}

static void log_handler_gets_lines(void **state)
{
	struct captured c = {0};

	(void)state;
	srup_device_set_log_handler(capture, &c, LOG_INFO);
	srup_log(LOG_WARNING, "a line\nwith %d parts", 2);
	srup_log(LOG_DEBUG, "not formatted");
	srup_device_set_log_handler(NULL, NULL, LOG_INFO);
	srup_log(LOG_ERR, "back on stderr");
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.priority, LOG_WARNING);
	assert_string_equal(c.line, "a line with 2 parts");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(strerror_covers_every_error),
		cmocka_unit_test(settings_missing_are_named),
		cmocka_unit_test(settings_bad_values_are_named),
		cmocka_unit_test(arguments_checked),
		cmocka_unit_test(log_handler_gets_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
