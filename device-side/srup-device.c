/* srup-device: the device agent.
 *
 *   srup-device --config FILE join [--mode observed|human|unmediated]
 *                                  [--observer ID] [--channel sim|ble|nfc]
 *                                  [--timeout S] [--print-value]
 *   srup-device --config FILE resign [--timeout S]
 *   srup-device --config FILE deregister [--timeout S]
 *   srup-device --config FILE present --device ID --value HEX [--channel ...]
 *   srup-device --config FILE run
 *   srup-device --config FILE [run] --check-config
 *
 * join --mode observed (the default) runs the device's half of the
 * observed join (JOIN-FLOW.md): send OBS_JOIN_REQ naming the observer, open
 * the server's OBS_JOIN_RESP, present the confirmation frame to the
 * observer on the channel, and wait for the server's verdict. With
 * --print-value the agent prints the value instead of presenting it, for
 * devices that present it by other means (a screen, a QR code, their own
 * radio firmware).
 *
 * join --mode human sends HM_JOIN_REQ, opens the server's HM_JOIN_RESP and
 * prints the confirmation value for a person to compare with what the
 * server shows them, then waits for the verdict; --mode unmediated sends
 * JOIN_REQ and waits for the verdict (seed 7.1, 7.2). Joins travel on
 * SRUP/servers/<s>/<d>; resign (RESIGN_REQ, seed 8.1) and deregister
 * (DEREGISTER_REQ, seed 9.1) on the device's own topic SRUP/<d>, which the
 * server watches once the device joined. A verdict counts only from the
 * configured server, fresh (the node's pipeline) and echoing our request's
 * token (or, for the two joins with a response stage, the response's).
 * After DEREGISTER_SUCCESS the server's key is deleted: the in-memory store
 * forgets it and the [server] public_key file is unlinked.
 *
 * Exit status 0 only on success (JOIN_SUCCESS, RESIGN_SUCCESS,
 * DEREGISTER_SUCCESS with the key deleted).
 *
 * present sends one frame of the caller's choosing on a channel, without
 * SRUP: for checking a channel at provisioning time (and for tests).
 *
 * run is the resident device agent (srup_device_run.h). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "radio.h"
#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_config.h"
#include "srup_device_run.h"
#include "srup_exit.h"
#include "srup_hex.h"
#include "srup_identity.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_node.h"

/* Exit statuses of the one-shot commands. */
enum {
	EXIT_SUCCEEDED = 0,  /* joined, resigned, deregistered */
	EXIT_REFUSED = 1,    /* refused, failed, or the channel failed */
	EXIT_USAGE = 2,
	EXIT_SETUP = 3,      /* configuration, keys, broker */
	EXIT_TIMEOUT = 4,
};

#define DEFAULT_TIMEOUT_S 150
/* The observer may not hold the OBSERVE_REQ yet when the device presents
 * (both leave the server at once): a frame answered "not compared" is
 * presented again after this pause, for up to PRESENT_ATTEMPT_MS (one BLE
 * presentation alone, scan to disconnect, takes seconds). */
#define PRESENT_RETRY_MS 200
#define PRESENT_ATTEMPT_MS 30000

/* One request to the server and the RESPONSE that answers it. */
struct exchange {
	const char *name;      /* the request, as logs name it */
	uint8_t type;
	bool on_server_topic;  /* SRUP/servers/<s>/<d> (joins), else SRUP/<d> */
	uint8_t success;       /* the verdict statuses */
	uint8_t refused;
	uint8_t failed;
};

enum exchange_kind { EX_OBSERVED, EX_HUMAN, EX_UNMEDIATED, EX_RESIGN, EX_DEREGISTER };

static const struct exchange exchanges[] = {
	[EX_OBSERVED] = {"OBS_JOIN_REQ", SRUP_TYPE_OBS_JOIN_REQUEST, true,
			 SRUP_STATUS_JOIN_SUCCESS, SRUP_STATUS_JOIN_REFUSED, SRUP_STATUS_JOIN_FAIL},
	[EX_HUMAN] = {"HM_JOIN_REQ", SRUP_TYPE_HM_JOIN_REQUEST, true, SRUP_STATUS_JOIN_SUCCESS,
		      SRUP_STATUS_JOIN_REFUSED, SRUP_STATUS_JOIN_FAIL},
	[EX_UNMEDIATED] = {"JOIN_REQ", SRUP_TYPE_JOIN_REQUEST, true, SRUP_STATUS_JOIN_SUCCESS,
			   SRUP_STATUS_JOIN_REFUSED, SRUP_STATUS_JOIN_FAIL},
	[EX_RESIGN] = {"RESIGN_REQ", SRUP_TYPE_RESIGN_REQUEST, false, SRUP_STATUS_RESIGN_SUCCESS,
		       SRUP_STATUS_RESIGN_FAIL, SRUP_STATUS_RESIGN_FAIL},
	[EX_DEREGISTER] = {"DEREGISTER_REQ", SRUP_TYPE_DEREGISTER_REQUEST, false,
			   SRUP_STATUS_DEREGISTER_SUCCESS, SRUP_STATUS_DEREGISTER_FAIL,
			   SRUP_STATUS_DEREGISTER_FAIL},
};

/* Largest confirmation value shown to a person (pySRUP sends 32 bytes). */
#define HUMAN_VALUE_MAX 128

struct agent {
	sd_event *loop;
	struct srup_config cfg;
	struct srup_identity id;
	struct srup_node *node;
	const struct exchange *ex;
	const struct radio_channel_driver *channel;
	uint64_t observer_id;
	bool print_value;
	bool request_sent;
	bool value_received; /* OBS_JOIN_RESP / HM_JOIN_RESP handled */
	bool deregistered;
	char request_token[SRUP_UUID_TEXT_LEN + 1];
	struct srup_bytes response_token; /* OBS_JOIN_RESP's / HM_JOIN_RESP's token */
	struct timespec started;
	struct timespec armed;  /* when --timeout started counting */
	double timeout_ms;
	int exit_status;
};

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Present until the observer compared the frame, for PRESENT_ATTEMPT_MS
 * but not past --timeout (this blocks the loop, so its timer cannot fire):
 * RADIO_E_TIMEOUT when --timeout ran out first. */
static enum radio_err present_until_compared(struct agent *a, const struct srup_frame *frame,
					     uint8_t *result)
{
	struct timespec t0;
	char detail[256] = "";
	enum radio_err err;
	double limit = a->timeout_ms - ms_since(&a->armed);

	if (limit > PRESENT_ATTEMPT_MS)
		limit = PRESENT_ATTEMPT_MS;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		double left = limit - ms_since(&t0);

		*result = RADIO_RESULT_NOT_COMPARED;
		err = a->channel->present(&a->cfg.radio, a->observer_id, frame,
					  left > 1000 ? (unsigned)left : 1000, result, detail,
					  sizeof(detail));
		if (err == RADIO_OK && (*result != RADIO_RESULT_NOT_COMPARED ||
					!a->channel->present_learns_result))
			return RADIO_OK;
		if (err != RADIO_OK && err != RADIO_E_REFUSED)
			break;
		if (ms_since(&t0) + PRESENT_RETRY_MS >= limit)
			break;
		nanosleep(&(struct timespec){0, PRESENT_RETRY_MS * 1000000L}, NULL);
	}
	if (limit < PRESENT_ATTEMPT_MS && ms_since(&a->armed) + PRESENT_RETRY_MS >= a->timeout_ms) {
		srup_log(LOG_ERR, "presenting on %s: --timeout ran out before the observer "
			 "compared the frame%s%s", a->channel->name, detail[0] ? ": " : "", detail);
		return RADIO_E_TIMEOUT;
	}
	if (err != RADIO_OK)
		srup_log(LOG_ERR, "presenting on %s failed: %s%s%s", a->channel->name,
			 radio_strerror(err), detail[0] ? ": " : "", detail);
	else
		srup_log(LOG_ERR, "the observer did not compare the frame (no observation "
			 "pending for this device)");
	return err != RADIO_OK ? err : RADIO_E_REFUSED;
}

static void finish(struct agent *a, int status)
{
	a->exit_status = status;
	sd_event_exit(a->loop, 0);
}

/* Open the confirmation value of a join response (OBS_JOIN_RESP or
 * HM_JOIN_RESP) of at most max_len bytes and keep the response's token.
 * On failure the join is over. */
static int open_join_response(struct agent *a, const struct srup_msg *msg, const char *what,
			      size_t max_len, struct srup_bytes *value)
{
	enum srup_err err;

	if (!a->request_sent || a->value_received) {
		srup_log(LOG_WARNING, "unexpected %s ignored", what);
		return -1;
	}
	err = srup_msg_open(msg, a->id.private_key, value);
	if (err != SRUP_OK) {
		srup_log(LOG_ERR, "%s: the confirmation value does not decrypt: %s", what,
			 srup_strerror(err));
		finish(a, EXIT_REFUSED);
		return -1;
	}
	if (value->len == 0 || value->len > max_len) {
		srup_log(LOG_ERR, "%s: confirmation value of %zu bytes cannot be shown or "
			 "presented (1..%zu)", what, value->len, max_len);
		srup_bytes_clear(value);
		finish(a, EXIT_REFUSED);
		return -1;
	}
	if (srup_bytes_set(&a->response_token, msg->token.data, msg->token.len) != SRUP_OK) {
		srup_bytes_clear(value);
		finish(a, EXIT_SETUP);
		return -1;
	}
	a->value_received = true;
	return 0;
}

static void on_obs_join_response(struct srup_node *node, const struct srup_msg *msg,
				 const char *topic, void *user)
{
	struct agent *a = user;
	struct srup_bytes value = {0};
	struct srup_frame frame = {0};
	uint8_t result = RADIO_RESULT_NOT_COMPARED;
	enum radio_err rerr;

	(void)node;
	(void)topic;
	if (open_join_response(a, msg, "OBS_JOIN_RESP", SRUP_FRAME_VALUE_MAX, &value) != 0)
		return;
	if (a->print_value) {
		printf("OBS_JOIN_RESP received after %.1f ms; confirmation value: ",
		       ms_since(&a->started));
		for (size_t i = 0; i < value.len; i++)
			printf("%02x", value.data[i]);
		printf("\nwaiting for the server's verdict\n");
		fflush(stdout);
		srup_bytes_clear(&value);
		return;
	}
	frame.device_id = a->cfg.identity_id;
	frame.value_len = (uint16_t)value.len;
	memcpy(frame.value, value.data, value.len);
	srup_bytes_clear(&value);

	printf("OBS_JOIN_RESP received after %.1f ms; presenting the confirmation value on "
	       "%s\n", ms_since(&a->started), a->channel->name);
	fflush(stdout);
	rerr = present_until_compared(a, &frame, &result);
	if (rerr != RADIO_OK) {
		srup_frame_wipe(&frame);
		if (rerr == RADIO_E_TIMEOUT) {
			printf("timeout: the observer did not compare the value\n");
			fflush(stdout);
		}
		finish(a, rerr == RADIO_E_TIMEOUT ? EXIT_TIMEOUT : EXIT_REFUSED);
		return;
	}
	srup_frame_wipe(&frame);
	if (result != RADIO_RESULT_NOT_COMPARED)
		printf("observer compared the value: %s\n",
		       result == RADIO_RESULT_MATCH ? "match" : "mismatch");
	else
		printf("the observer read the value\n");
	printf("waiting for the server's verdict\n");
	fflush(stdout);
}

/* The value for a person: as text when it is printable ASCII (pySRUP
 * sends uuid4().hex, 32 hex characters), else as lowercase hex; then the
 * same in groups of four characters, easier to compare by eye. */
static void print_for_person(const struct srup_bytes *value)
{
	char text[2 * HUMAN_VALUE_MAX + 1];
	size_t len = 0;
	bool printable = true;

	for (size_t i = 0; i < value->len; i++)
		if (value->data[i] < 0x21 || value->data[i] > 0x7e)
			printable = false;
	for (size_t i = 0; i < value->len; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, printable ? "%c" : "%02x",
					value->data[i]);
	printf("CONFIRMATION VALUE: %s\nCONFIRMATION VALUE (grouped):", text);
	for (size_t i = 0; i < len; i += 4)
		printf(" %.4s", text + i);
	printf("\n");
	fflush(stdout);
	OPENSSL_cleanse(text, sizeof(text));
}

static void on_hm_join_response(struct srup_node *node, const struct srup_msg *msg,
				const char *topic, void *user)
{
	struct agent *a = user;
	struct srup_bytes value = {0};

	(void)node;
	(void)topic;
	if (open_join_response(a, msg, "HM_JOIN_RESP", HUMAN_VALUE_MAX, &value) != 0)
		return;
	printf("HM_JOIN_RESP received after %.1f ms; compare this value with the one the "
	       "server shows:\n", ms_since(&a->started));
	print_for_person(&value);
	srup_bytes_clear(&value);
	printf("waiting for the server's verdict\n");
	fflush(stdout);
}

static bool token_is(const struct srup_bytes *token, const void *want, size_t want_len)
{
	return token->len == want_len && want_len > 0 && memcmp(token->data, want, want_len) == 0;
}

static void on_response(struct srup_node *node, const struct srup_msg *msg, const char *topic,
			void *user)
{
	struct agent *a = user;
	const struct exchange *ex = a->ex;
	const char *name = srup_status_name(msg->status);

	(void)node;
	(void)topic;
	/* The verdict echoes the pending token: pySRUP servers send the join
	 * response's token, others may echo the request's. */
	if (!a->request_sent ||
	    (!token_is(&msg->token, a->request_token, strlen(a->request_token)) &&
	     !token_is(&msg->token, a->response_token.data, a->response_token.len))) {
		srup_log(LOG_WARNING, "RESPONSE 0x%02x with a token of no %s of ours ignored",
			 msg->status, ex->name);
		return;
	}
	if (msg->status != ex->success && msg->status != ex->refused &&
	    msg->status != ex->failed) {
		srup_log(LOG_WARNING, "RESPONSE with status 0x%02x (%s) is no answer to %s; ignored",
			 msg->status, name ? name : "unknown", ex->name);
		return;
	}
	printf("%s (0x%02x) after %.1f ms\n", name, msg->status, ms_since(&a->started));
	fflush(stdout);
	if (msg->status == ex->success && ex == &exchanges[EX_DEREGISTER]) {
		/* Nothing from that server counts from now on (seed 9: remove
		 * the server keys); the key file goes after the loop. */
		srup_keystore_remove(a->id.peers, a->cfg.server_id);
		a->deregistered = true;
	}
	finish(a, msg->status == ex->success ? EXIT_SUCCEEDED : EXIT_REFUSED);
}

static void on_connected(struct srup_node *node, void *user)
{
	struct agent *a = user;
	const struct exchange *ex = a->ex;
	struct srup_msg *msg;
	char topic[SRUP_TOPIC_MAX];
	char observer[17];
	enum srup_node_err err;

	if (a->request_sent)
		return;
	msg = srup_msg_new(ex->type);
	if (!msg || srup_uuid4_text(a->request_token) != SRUP_OK ||
	    srup_bytes_set(&msg->token, a->request_token, SRUP_UUID_TEXT_LEN) != SRUP_OK) {
		srup_msg_free(msg);
		finish(a, EXIT_SETUP);
		return;
	}
	msg->observer_id = a->observer_id;
	if (ex->on_server_topic)
		srup_topic_server_join(a->cfg.server_id, a->cfg.identity_id, topic);
	else
		srup_topic_device(a->cfg.identity_id, topic);
	clock_gettime(CLOCK_MONOTONIC, &a->started);
	err = srup_node_send(node, msg, a->cfg.server_id, topic);
	srup_msg_free(msg);
	if (err != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot send %s: %s", ex->name, srup_node_strerror(err));
		finish(a, EXIT_SETUP);
		return;
	}
	a->request_sent = true;
	if (ex == &exchanges[EX_OBSERVED]) {
		srup_id_format16(a->observer_id, observer);
		printf("OBS_JOIN_REQ sent on %s naming observer %s (token %s)\n", topic, observer,
		       a->request_token);
	} else {
		printf("%s sent on %s (token %s)\n", ex->name, topic, a->request_token);
	}
	fflush(stdout);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *user)
{
	struct agent *a = user;

	(void)s;
	(void)usec;
	printf("timeout: no answer to %s from the server\n", a->ex->name);
	fflush(stdout);
	finish(a, EXIT_TIMEOUT);
	return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	(void)s;
	(void)si;
	finish(user, EXIT_REFUSED);
	return 0;
}

static int load_agent_config(struct agent *a, const char *path)
{
	char err[4096];

	if (srup_config_load(path, SRUP_CONFIG_DEVICE, &a->cfg, err, sizeof(err)) != 0) {
		srup_log_lines(LOG_ERR, err);
		return -1;
	}
	return 0;
}

/* --check-config: the checks srup-observerd makes of its own (shared). */
static int check_config(const char *path)
{
	struct srup_config *cfg = calloc(1, sizeof(*cfg));
	struct srup_identity id;
	char hex[17];
	int rc = SRUP_EXIT_CONFIG;

	if (!cfg) {
		srup_log(LOG_ERR, "%s: cannot check: out of memory", path);
		return SRUP_EXIT_FAILURE;
	}
	if (srup_setup_load(path, SRUP_CONFIG_DEVICE, true, cfg, &id) == 0) {
		srup_id_format16(cfg->identity_id, hex);
		printf("%s: configuration valid (device %s)\n", path, hex);
		srup_identity_free(&id);
		/* Root reads every file; the service need not run as root. */
		if (geteuid() == 0)
			fprintf(stderr, "note: checked as root; check as the service user too\n");
		rc = SRUP_EXIT_OK;
	}
	free(cfg);
	return rc;
}

/* After DEREGISTER_SUCCESS: the server's key file goes (seed 9: "Devices
 * should also remove the Server public keys that they hold"). A file that
 * cannot be unlinked is left, and said so: the deregistration itself
 * stands. */
static int delete_server_key_file(const struct agent *a)
{
	const char *path = a->cfg.server_public_key;

	if (unlink(path) == 0) {
		printf("deleted the server's public key %s\n", path);
		fflush(stdout);
		return EXIT_SUCCEEDED;
	}
	if (errno == ENOENT) {
		printf("the server's public key %s is already gone\n", path);
		fflush(stdout);
		return EXIT_SUCCEEDED;
	}
	char where[SRUP_CONFIG_PATH_MAX + 16];
	int e = errno;

	srup_log(LOG_ERR, "%s: [server] public_key: the server deregistered this device, but "
		 "its key %s cannot be deleted (%s): delete it by hand",
		 srup_config_where(&a->cfg, "server", "public_key", where, sizeof(where)), path,
		 strerror(e));
	return EXIT_SETUP;
}

static int run_exchange(struct agent *a, unsigned timeout_s)
{
	struct srup_node_config ncfg;
	char detail[768] = "";
	enum srup_node_err nerr;
	sigset_t mask;
	uint64_t now;

	if (srup_identity_load(&a->cfg, &a->id, detail, sizeof(detail)) != 0) {
		srup_log_lines(LOG_ERR, detail);
		return EXIT_SETUP;
	}
	if (sd_event_new(&a->loop) < 0)
		return EXIT_SETUP;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sd_event_add_signal(a->loop, NULL, SIGTERM, on_signal, a);
	sd_event_add_signal(a->loop, NULL, SIGINT, on_signal, a);
	sd_event_now(a->loop, CLOCK_MONOTONIC, &now);
	clock_gettime(CLOCK_MONOTONIC, &a->armed);
	a->timeout_ms = (double)timeout_s * 1000.0;
	if (sd_event_add_time(a->loop, NULL, CLOCK_MONOTONIC, now + (uint64_t)timeout_s * 1000000,
			      0, on_timeout, a) < 0)
		return EXIT_SETUP;

	srup_node_config_from(&a->cfg, SRUP_NODE_ROLE_DEVICE, &ncfg);
	nerr = srup_node_new(a->loop, &ncfg, a->id.private_key, a->id.peers, &a->node, detail,
			     sizeof(detail));
	if (nerr != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "%s: %s", srup_node_strerror(nerr), detail);
		return EXIT_SETUP;
	}
	/* Only the configured server is heard, and only the messages this
	 * exchange expects (the pipeline drops any other type). */
	if ((a->ex == &exchanges[EX_OBSERVED] &&
	     srup_node_on(a->node, SRUP_TYPE_OBS_JOIN_RESPONSE, a->cfg.server_id,
			  on_obs_join_response, a) != SRUP_NODE_OK) ||
	    (a->ex == &exchanges[EX_HUMAN] &&
	     srup_node_on(a->node, SRUP_TYPE_HM_JOIN_RESPONSE, a->cfg.server_id,
			  on_hm_join_response, a) != SRUP_NODE_OK) ||
	    srup_node_on(a->node, SRUP_TYPE_RESPONSE, a->cfg.server_id, on_response, a) !=
		    SRUP_NODE_OK)
		return EXIT_SETUP;
	nerr = srup_node_connect(a->node, on_connected, a);
	if (nerr != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot connect to %s: %s", a->cfg.mqtt_broker,
			 srup_node_strerror(nerr));
		return EXIT_SETUP;
	}
	a->exit_status = EXIT_REFUSED;
	if (sd_event_loop(a->loop) < 0)
		return EXIT_SETUP;
	srup_node_flush(a->node, 2000);
	if (a->deregistered)
		return delete_server_key_file(a);
	return a->exit_status;
}

static int run_present(struct agent *a, uint64_t device, const char *value_hex,
		       unsigned timeout_s)
{
	struct srup_frame frame = {.device_id = device};
	uint8_t result = RADIO_RESULT_NOT_COMPARED;
	char detail[256] = "";
	uint8_t *value = NULL;
	size_t len = 0, bad_at;
	enum radio_err err;

	if (srup_hex_decode(value_hex, strlen(value_hex), false, &value, &len, &bad_at) != 0 ||
	    len == 0 || len > sizeof(frame.value)) {
		srup_log(LOG_ERR, "--value: '%s' is not 1..%zu bytes of hex", value_hex,
			 sizeof(frame.value));
		free(value);
		return EXIT_USAGE;
	}
	memcpy(frame.value, value, len);
	frame.value_len = (uint16_t)len;
	OPENSSL_cleanse(value, len);
	free(value);
	err = a->channel->present(&a->cfg.radio, a->observer_id, &frame, timeout_s * 1000,
				  &result, detail, sizeof(detail));
	srup_frame_wipe(&frame);
	if (err == RADIO_E_REFUSED) {
		/* The observer answered, but did not compare the value. */
		printf("result 0x00 (not compared: %s)\n", detail);
		return EXIT_REFUSED;
	}
	if (err != RADIO_OK) {
		printf("present failed: %s%s%s\n", radio_strerror(err), detail[0] ? ": " : "",
		       detail);
		return EXIT_REFUSED;
	}
	printf("result 0x%02x (%s)\n", result,
	       result == RADIO_RESULT_MATCH	  ? "match"
	       : result == RADIO_RESULT_MISMATCH ? "mismatch"
						 : "not compared");
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: srup-device --config FILE join [--mode observed|human|unmediated]\n"
		"                   [--observer ID] [--channel sim|ble|nfc] [--timeout SECONDS]\n"
		"                   [--print-value]\n"
		"       srup-device --config FILE resign [--timeout SECONDS]\n"
		"       srup-device --config FILE deregister [--timeout SECONDS]\n"
		"       srup-device --config FILE present --device ID --value HEX\n"
		"                   [--channel sim|ble|nfc] [--observer ID] [--timeout SECONDS]\n"
		"       srup-device --config FILE run [--verbose]\n"
		"       srup-device --config FILE [run] --check-config\n"
		"\n"
		"join: ask the configured C2 server to join, and wait for its verdict.\n"
		"      --mode observed (default): under the eye of observer ID (--observer,\n"
		"      required); present the confirmation value on the channel (default\n"
		"      sim), or with --print-value print it (hex) to present it by other\n"
		"      means. --mode human: print the confirmation value for a person, as\n"
		"      'CONFIRMATION VALUE: <value>' and in groups of four, to compare with\n"
		"      what the server shows them. --mode unmediated: just ask.\n"
		"resign: ask the server to release this device (RESIGN_REQ).\n"
		"deregister: ask the server to deregister this device (DEREGISTER_REQ); on\n"
		"      success the server's public key ([server] public_key) is deleted.\n"
		"      Exit status of join, resign and deregister: 0 success, 1 refused or\n"
		"      failed, 2 usage, 3 configuration/keys/broker, 4 timeout (default %u s).\n"
		"present: send one confirmation frame (device ID, value) on a channel and\n"
		"      print the observer's answer; for checking a channel.\n"
		"run: the resident device agent: answer the server's commands until\n"
		"      stopped (SIGTERM); logs with syslog priority prefixes.\n"
		"--check-config: print the files read (the file, then FILE.d/*.conf),\n"
		"      check the configuration and the key files it names, report every\n"
		"      problem (one line each, FILE:LINE), then exit: 0 valid, 78 not.\n",
		DEFAULT_TIMEOUT_S);
}

static void agent_free(struct agent *a)
{
	srup_node_free(a->node);
	srup_identity_free(&a->id);
	sd_event_unref(a->loop);
	srup_bytes_clear(&a->response_token);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"observer", required_argument, NULL, 'o'},
		{"channel", required_argument, NULL, 'C'},
		{"timeout", required_argument, NULL, 't'},
		{"device", required_argument, NULL, 'd'},
		{"value", required_argument, NULL, 'V'},
		{"print-value", no_argument, NULL, 'P'},
		{"mode", required_argument, NULL, 'm'},
		{"verbose", no_argument, NULL, 'v'},
		{"check-config", no_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct agent a = {.channel = &radio_sim_driver};
	const char *config_path = NULL, *command = NULL, *value_hex = NULL, *mode = NULL;
	bool have_observer = false, have_device = false, have_channel = false, verbose = false;
	bool have_timeout = false, check_only = false;
	unsigned timeout_s = DEFAULT_TIMEOUT_S;
	uint64_t device = 0;
	int opt, rc;

	/* Options may come before or after the command word (getopt permutes). */
	while ((opt = getopt_long(argc, argv, "c:vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			if (srup_id_parse(optarg, &a.observer_id) != 0) {
				fprintf(stderr, "srup-device: --observer: '%s' is not a SRUP ID "
						"(1..16 hex digits)\n", optarg);
				return EXIT_USAGE;
			}
			have_observer = true;
			break;
		case 'd':
			if (srup_id_parse(optarg, &device) != 0) {
				fprintf(stderr, "srup-device: --device: '%s' is not a SRUP ID "
						"(1..16 hex digits)\n", optarg);
				return EXIT_USAGE;
			}
			have_device = true;
			break;
		case 'C':
			a.channel = radio_channel_find(optarg);
			if (!a.channel) {
				char names[64];

				fprintf(stderr, "srup-device: --channel: '%s' is not a channel (%s)\n",
					optarg, radio_channel_names(names, sizeof(names)));
				return EXIT_USAGE;
			}
			have_channel = true;
			break;
		case 'm':
			mode = optarg;
			break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || v == 0 || v > 86400) {
				fprintf(stderr, "srup-device: --timeout: '%s' is not 1..86400 "
						"seconds\n", optarg);
				return EXIT_USAGE;
			}
			timeout_s = (unsigned)v;
			have_timeout = true;
			break;
		}
		case 'V':
			value_hex = optarg;
			break;
		case 'P':
			a.print_value = true;
			break;
		case 'k':
			check_only = true;
			break;
		case 'v':
			srup_log_set_level(LOG_DEBUG);
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind == argc - 1)
		command = argv[optind];
	if (check_only) {
		/* Alone or with run (the unit's command line plus the option). */
		if (!config_path || optind < argc - 1 || (command && strcmp(command, "run") != 0) ||
		    have_observer || have_channel || have_device || a.print_value || value_hex ||
		    have_timeout || mode) {
			fprintf(stderr, "srup-device: --check-config takes --config FILE and at most "
					"the command run\n");
			return EXIT_USAGE;
		}
		return check_config(config_path);
	}
	if (!config_path || !command) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (mode && strcmp(command, "join") != 0) {
		fprintf(stderr, "srup-device: --mode belongs to join\n");
		return EXIT_USAGE;
	}
	if (strcmp(command, "join") == 0) {
		if (!mode || strcmp(mode, "observed") == 0) {
			a.ex = &exchanges[EX_OBSERVED];
		} else if (strcmp(mode, "human") == 0) {
			a.ex = &exchanges[EX_HUMAN];
		} else if (strcmp(mode, "unmediated") == 0) {
			a.ex = &exchanges[EX_UNMEDIATED];
		} else {
			fprintf(stderr, "srup-device: --mode: '%s' is not observed, human or "
					"unmediated\n", mode);
			return EXIT_USAGE;
		}
		if (a.ex == &exchanges[EX_OBSERVED] && !have_observer) {
			fprintf(stderr, "srup-device: join needs --observer ID\n");
			return EXIT_USAGE;
		}
		if (a.ex != &exchanges[EX_OBSERVED] &&
		    (have_observer || have_channel || a.print_value)) {
			fprintf(stderr, "srup-device: --observer, --channel and --print-value "
					"belong to join --mode observed\n");
			return EXIT_USAGE;
		}
	} else if (strcmp(command, "resign") == 0 || strcmp(command, "deregister") == 0) {
		a.ex = &exchanges[command[0] == 'r' ? EX_RESIGN : EX_DEREGISTER];
		if (have_observer || have_channel || have_device || a.print_value || value_hex) {
			fprintf(stderr, "srup-device: %s takes only --timeout\n", command);
			return EXIT_USAGE;
		}
	} else if (strcmp(command, "present") == 0) {
		if (!have_device || !value_hex) {
			fprintf(stderr, "srup-device: present needs --device ID and --value HEX\n");
			return EXIT_USAGE;
		}
	} else if (strcmp(command, "run") == 0) {
		if (have_observer || have_channel || have_device || a.print_value || value_hex ||
		    have_timeout) {
			fprintf(stderr, "srup-device: run takes only --verbose\n");
			return EXIT_USAGE;
		}
		/* Resident: the exit statuses of srup_exit.h, not the one-shot ones. */
		return srup_device_run(config_path, verbose);
	} else {
		fprintf(stderr, "srup-device: unknown command '%s'\n", command);
		usage(stderr);
		return EXIT_USAGE;
	}

	if (load_agent_config(&a, config_path) != 0)
		return EXIT_SETUP;
	/* A device config names no channel: check the section the chosen one
	 * needs, when one is used (--print-value presents nothing). */
	if ((a.ex == &exchanges[EX_OBSERVED] && !a.print_value) || !a.ex) {
		if (!a.channel->configured(&a.cfg.radio)) {
			srup_log(LOG_ERR, "%s: [%s] %s: needed for --channel %s", a.cfg.path,
				 a.channel->name, a.channel->required_key, a.channel->name);
			return EXIT_SETUP;
		}
	}
	if (a.ex)
		rc = run_exchange(&a, timeout_s);
	else
		rc = run_present(&a, device, value_hex, timeout_s);
	agent_free(&a);
	return rc;
}
