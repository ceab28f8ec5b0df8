/* The observer's operator modules without the daemon: the control
 * request parser, the audit log (records, hashes, rotation, keep) and the
 * metrics exposition and its atomic write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "obs_audit.h"
#include "obs_control_proto.h"
#include "obs_metrics.h"

static char dir[64];

static int group_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/srup-obs-operator-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- the request parser -------------------------------------------------- */

static int parse(const char *line, struct obs_ctl_request *req, char *err)
{
	return obs_ctl_parse(line, strlen(line), req, err, 200);
}

static void expect_refused(const char *line, const char *what)
{
	struct obs_ctl_request req;
	char err[200] = "";

	assert_int_equal(parse(line, &req, err), -1);
	if (!strstr(err, what))
		fail_msg("'%s': error \"%s\" does not mention \"%s\"", line, err, what);
}

static void test_parse_good(void **state)
{
	struct obs_ctl_request req;
	char err[200];

	(void)state;
	assert_int_equal(parse("status", &req, err), 0);
	assert_int_equal(req.command, OBS_CTL_STATUS);
	assert_int_equal(parse("  list  ", &req, err), 0);
	assert_int_equal(req.command, OBS_CTL_LIST);
	assert_int_equal(parse("cancel 00000000DEADbeef", &req, err), 0);
	assert_int_equal(req.command, OBS_CTL_CANCEL);
	assert_int_equal(req.device_id, 0xdeadbeef);
	assert_int_equal(parse("history", &req, err), 0);
	assert_int_equal(req.count, OBS_CTL_HISTORY_DEFAULT);
	assert_int_equal(parse("history 256\r", &req, err), 0);
	assert_int_equal(req.count, 256);
	assert_string_equal(obs_ctl_command_name(OBS_CTL_HISTORY), "history");
}

static void test_parse_bad(void **state)
{
	char big[OBS_CTL_REQUEST_MAX + 8];

	(void)state;
	expect_refused("", "empty request");
	expect_refused("   ", "empty request");
	expect_refused("stat", "unknown command 'stat'");
	expect_refused("status now", "takes no argument");
	expect_refused("cancel", "one device ID");
	expect_refused("cancel 0x12", "not a device ID");
	expect_refused("cancel 12345678901234567", "not a device ID");
	expect_refused("history 0", "not a count");
	expect_refused("history 257", "not a count");
	expect_refused("history -1", "not a count");
	expect_refused("history 1 2", "at most one count");
	expect_refused("status\tx", "not printable ASCII");
	expect_refused("list \xff", "byte 0xff at offset 5");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_refused(big, "over the limit");
	memset(big, 'a', 40);
	big[40] = '\0';
	expect_refused(big, "at most 32");
	/* NUL inside the line: not printable. */
	{
		struct obs_ctl_request req;
		char err[200];

		assert_int_equal(obs_ctl_parse("list\0x", 6, &req, err, sizeof(err)), -1);
	}
}

/* ---- the audit log ---------------------------------------------------------- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void record(struct obs_audit *a, unsigned i)
{
	static const uint8_t token[] = "abc";
	char err[256];
	const struct obs_audit_field fields[] = {
		{.name = "device", .type = OBS_AUDIT_STR, .str = "00000000000000a1"},
		{.name = "attempts", .type = OBS_AUDIT_UINT, .num = i},
		{.name = "token_sha256", .type = OBS_AUDIT_SHA256, .bytes = token, .len = 3},
	};

	assert_int_equal(obs_audit_record(a, "observation", 5, "m", fields, 3, err, sizeof(err)), 0);
}

static void test_audit_record_and_rotation(void **state)
{
	char path[128], p1[140], p2[140], p3[140], *text;
	struct obs_audit_config cfg = {.path = path, .max_bytes = 4096, .keep = 2};
	struct obs_audit *a = NULL;
	char err[256];
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	snprintf(p1, sizeof(p1), "%s.1", path);
	snprintf(p2, sizeof(p2), "%s.2", path);
	snprintf(p3, sizeof(p3), "%s.3", path);
	assert_int_equal(obs_audit_open(&cfg, &a, err, sizeof(err)), 0);
	record(a, 0);
	text = slurp(path);
	assert_non_null(text);
	/* SHA-256("abc"), never the bytes. */
	assert_non_null(strstr(text, "\"token_sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a3"
				     "96177a9cb410ff61f20015ad\""));
	assert_non_null(strstr(text, "\"kind\":\"observation\",\"device\":\"00000000000000a1\","
				     "\"attempts\":0,"));
	assert_int_equal(text[strlen(text) - 1], '\n');
	free(text);
	for (unsigned i = 1; i < 200; i++)
		record(a, i);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size <= 4096);
	assert_int_equal(stat(p1, &st), 0);
	assert_true(st.st_size <= 4096 && st.st_size > 2048);
	assert_int_equal(stat(p2, &st), 0);
	assert_int_equal(stat(p3, &st), -1);
	/* The last record is the last line of the live file. */
	text = slurp(path);
	assert_non_null(strstr(text, "\"attempts\":199,"));
	free(text);
	obs_audit_free(a);

	/* Reopened, it appends. keep = 0: the file starts afresh. */
	cfg.keep = 0;
	assert_int_equal(obs_audit_open(&cfg, &a, err, sizeof(err)), 0);
	for (unsigned i = 200; i < 260; i++)
		record(a, i);
	text = slurp(path);
	assert_non_null(strstr(text, "\"attempts\":259,"));
	assert_null(strstr(text, "\"attempts\":199,"));
	free(text);
	/* Bad names are refused, nothing written. */
	{
		const struct obs_audit_field bad = {.name = "Bad-Name", .type = OBS_AUDIT_STR,
						    .str = "x"};

		assert_int_equal(obs_audit_record(a, "observation", 5, NULL, &bad, 1, err,
						  sizeof(err)), -1);
		assert_int_equal(obs_audit_record(a, "no spaces", 5, NULL, NULL, 0, err,
						  sizeof(err)), -1);
	}
	obs_audit_free(a);
	unlink(path);
	unlink(p1);
	unlink(p2);
}

/* With fsync on, a record is written at once and synced by obs_audit_sync
 * (srup-observerd's 50 ms timer), every record since the last in one;
 * with fsync off nothing waits for a sync. */
static void test_audit_sync_deferred(void **state)
{
	char path[128], *text;
	struct obs_audit_config cfg = {.path = path, .max_bytes = 1 << 20, .keep = 1,
				       .fsync = true};
	struct obs_audit *a = NULL;
	char err[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/audit-sync.log", dir);
	assert_int_equal(obs_audit_open(&cfg, &a, err, sizeof(err)), 0);
	assert_false(obs_audit_unsynced(a));
	assert_int_equal(obs_audit_sync(a, err, sizeof(err)), 0); /* nothing to do */
	record(a, 1);
	record(a, 2);
	assert_true(obs_audit_unsynced(a));
	text = slurp(path);
	assert_non_null(strstr(text, "\"attempts\":2"));
	free(text);
	assert_int_equal(obs_audit_sync(a, err, sizeof(err)), 0);
	assert_false(obs_audit_unsynced(a));
	record(a, 3);
	obs_audit_free(a); /* syncs what is left */

	cfg.fsync = false;
	assert_int_equal(obs_audit_open(&cfg, &a, err, sizeof(err)), 0);
	record(a, 4);
	assert_false(obs_audit_unsynced(a));
	obs_audit_free(a);
	text = slurp(path);
	assert_non_null(strstr(text, "\"attempts\":3"));
	assert_non_null(strstr(text, "\"attempts\":4"));
	free(text);
	assert_false(obs_audit_unsynced(NULL));
}

static void test_audit_open_errors(void **state)
{
	char path[128], err[256] = "";
	struct obs_audit_config cfg = {.path = path, .max_bytes = 4096};
	struct obs_audit *a = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%s/no/such/dir/audit.log", dir);
	assert_int_equal(obs_audit_open(&cfg, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
	assert_non_null(strstr(err, path));
	snprintf(path, sizeof(path), "%s", dir);
	assert_int_equal(obs_audit_open(&cfg, &a, err, sizeof(err)), -1);
}

static void test_format_time(void **state)
{
	char out[32];

	(void)state;
	obs_audit_format_time(1764753011123ull, out);
	assert_string_equal(out, "2025-12-03T09:10:11.123Z");
}

/* ---- metrics ------------------------------------------------------------------ */

/* Frames and frame-decided outcomes per channel, beside the totals; each
 * channel's state as labelled gauges. */
static void test_metrics_per_channel(void **state)
{
	static const char *const names[] = {"ble", "nfc", "sim"};
	const struct obs_metrics_channel_state states[] = {
		{"ble", "unavailable"}, {"nfc", "listening"}, {"sim", "listening"}};
	struct obs_metrics m = {0};
	struct obs_metrics_gauges g = {.channels = states, .n_channels = 3};
	char *text;

	(void)state;
	obs_metrics_channels(&m, names, 3);
	obs_metrics_frame(&m, 0, 0x6E);
	obs_metrics_frame(&m, 1, 0x6E);
	obs_metrics_frame(&m, 1, 0x00);
	obs_metrics_frame(&m, 2, 0x60);
	obs_metrics_outcome(&m, OBS_OUTCOME_VALID, 40);
	obs_metrics_channel_outcome(&m, 2, OBS_OUTCOME_VALID);
	text = obs_metrics_render(&m, &g);
	assert_non_null(text);
	assert_non_null(strstr(text, "srup_observer_frames_total{result=\"mismatch\"} 2\n"));
	assert_non_null(strstr(text, "srup_observer_frames_total{result=\"match\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_frames_total{channel=\"ble\",result=\"mismatch\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_frames_total{channel=\"nfc\",result=\"mismatch\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_frames_total{channel=\"nfc\",result=\"not_compared\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_frames_total{channel=\"sim\",result=\"match\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_outcomes_total{channel=\"sim\",outcome=\"valid\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_outcomes_total{channel=\"ble\",outcome=\"valid\"} 0\n"));
	assert_non_null(strstr(text, "srup_observer_channel_listening{channel=\"ble\"} 0\n"));
	assert_non_null(strstr(text, "srup_observer_channel_listening{channel=\"nfc\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_channel_unavailable{channel=\"ble\"} 1\n"));
	assert_null(strstr(text, "srup_observer_channel_listening 0\n"));
	free(text);
}

static void test_metrics_render_and_write(void **state)
{
	struct obs_metrics m = {0};
	struct srup_node_stats node = {.received = 9};
	struct obs_metrics_gauges g = {.pending = 4, .broker_connected = 1, .node = &node};
	char path[128], tmp[140], err[256], *text, *file;

	(void)state;
	node.dropped_by[SRUP_NODE_DROP_REPLAY] = 2;
	obs_metrics_outcome(&m, OBS_OUTCOME_VALID, 40);      /* <= 0.05 */
	obs_metrics_outcome(&m, OBS_OUTCOME_VALID, 50);      /* <= 0.05 (le is inclusive) */
	obs_metrics_outcome(&m, OBS_OUTCOME_EXPIRED, 120000); /* <= 120 */
	obs_metrics_outcome(&m, OBS_OUTCOME_CANCELLED, 999999); /* +Inf only */
	text = obs_metrics_render(&m, &g);
	assert_non_null(text);
	assert_non_null(strstr(text, "srup_observer_outcomes_total{outcome=\"valid\"} 2\n"));
	assert_non_null(strstr(text, "srup_observer_outcomes_total{outcome=\"cancelled\"} 1\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_bucket{le=\"0.05\"} 2\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_bucket{le=\"60\"} 2\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_bucket{le=\"120\"} 3\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_bucket{le=\"300\"} 3\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_bucket{le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_count 4\n"));
	assert_non_null(strstr(text, "srup_observer_join_latency_seconds_sum 1120.089\n"));
	assert_non_null(strstr(text, "srup_observer_messages_dropped_total{reason=\"replay\"} 2\n"));
	assert_non_null(strstr(text, "srup_observer_pending 4\n"));
	assert_non_null(strstr(text, "# TYPE srup_observer_join_latency_seconds histogram\n"));

	snprintf(path, sizeof(path), "%s/srup.prom", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(obs_metrics_write(path, text, err, sizeof(err)), 0);
	file = slurp(path);
	assert_string_equal(file, text);
	free(file);
	assert_int_equal(access(tmp, F_OK), -1);
	free(text);
	unlink(path);
	snprintf(path, sizeof(path), "%s/missing/srup.prom", dir);
	assert_int_equal(obs_metrics_write(path, "x\n", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot create"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_audit_record_and_rotation),
		cmocka_unit_test(test_audit_sync_deferred),
		cmocka_unit_test(test_audit_open_errors),
		cmocka_unit_test(test_format_time),
		cmocka_unit_test(test_metrics_per_channel),
		cmocka_unit_test(test_metrics_render_and_write),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
