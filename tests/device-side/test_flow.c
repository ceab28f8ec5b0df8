/* The device-initiated flows (srup_flow.h): the exchange table, verdict
 * and token matching, the value as shown; then whole flows between a
 * device node and a server node on one real Mosquitto, with the sim
 * channel's observer side on the same loop as the flow. That observer
 * can only answer while the loop runs, so an observed join that succeeds
 * here proves that presenting does not block the loop.
 *
 * The loop is driven with sd_event_run() until a condition holds; the
 * deadlines only bound the wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <systemd/sd-event.h>

#include "radio.h"
#include "srup.h"
#include "srup_config.h"
#include "srup_flow.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_msg_layout.h"
#include "srup_node.h"
#include "test_broker.h"

#define SERVER_ID 0x5e5e5e01ull
#define DEVICE_ID 0xd0d0d0d0d0d0d002ull
#define OBSERVER_ID 0x0b5e0001ull
#define WAIT_MS 20000u
#define RESPONSE_TOKEN "response-token-of-the-server"

static EVP_PKEY *server_key, *device_key;

/* ---- parts ---------------------------------------------------------------- */

static void test_exchange_table(void **state)
{
	const struct srup_flow_exchange *ex;

	(void)state;
	ex = srup_flow_exchange(SRUP_FLOW_OBSERVED);
	assert_string_equal(ex->name, "OBS_JOIN_REQ");
	assert_int_equal(ex->type, SRUP_TYPE_OBS_JOIN_REQUEST);
	assert_int_equal(ex->response_type, SRUP_TYPE_OBS_JOIN_RESPONSE);
	assert_true(ex->on_server_topic);
	ex = srup_flow_exchange(SRUP_FLOW_HUMAN);
	assert_string_equal(ex->name, "HM_JOIN_REQ");
	assert_int_equal(ex->response_type, SRUP_TYPE_HM_JOIN_RESPONSE);
	assert_true(ex->on_server_topic);
	ex = srup_flow_exchange(SRUP_FLOW_UNMEDIATED);
	assert_string_equal(ex->name, "JOIN_REQ");
	assert_int_equal(ex->type, SRUP_TYPE_JOIN_REQUEST);
	assert_int_equal(ex->response_type, 0);
	assert_true(ex->on_server_topic);
	ex = srup_flow_exchange(SRUP_FLOW_RESIGN);
	assert_string_equal(ex->name, "RESIGN_REQ");
	assert_false(ex->on_server_topic);
	assert_int_equal(ex->success, SRUP_STATUS_RESIGN_SUCCESS);
	ex = srup_flow_exchange(SRUP_FLOW_DEREGISTER);
	assert_string_equal(ex->name, "DEREGISTER_REQ");
	assert_false(ex->on_server_topic);
	assert_int_equal(ex->success, SRUP_STATUS_DEREGISTER_SUCCESS);
	assert_null(srup_flow_exchange(SRUP_FLOW__COUNT));
	assert_null(srup_flow_exchange((enum srup_flow_kind)-1));
	assert_true(srup_flow_hears(SRUP_TYPE_RESPONSE));
	assert_true(srup_flow_hears(SRUP_TYPE_OBS_JOIN_RESPONSE));
	assert_true(srup_flow_hears(SRUP_TYPE_HM_JOIN_RESPONSE));
	assert_false(srup_flow_hears(SRUP_TYPE_DATA));
}

static void test_verdict_statuses(void **state)
{
	const struct srup_flow_exchange *join = srup_flow_exchange(SRUP_FLOW_HUMAN);
	const struct srup_flow_exchange *resign = srup_flow_exchange(SRUP_FLOW_RESIGN);
	const struct srup_flow_exchange *dereg = srup_flow_exchange(SRUP_FLOW_DEREGISTER);

	(void)state;
	assert_int_equal(srup_flow_verdict(join, SRUP_STATUS_JOIN_SUCCESS), 1);
	assert_int_equal(srup_flow_verdict(join, SRUP_STATUS_JOIN_REFUSED), 0);
	assert_int_equal(srup_flow_verdict(join, SRUP_STATUS_JOIN_FAIL), 0);
	/* Another exchange's statuses are no answer to this one. */
	assert_int_equal(srup_flow_verdict(join, SRUP_STATUS_RESIGN_SUCCESS), -1);
	assert_int_equal(srup_flow_verdict(resign, SRUP_STATUS_JOIN_SUCCESS), -1);
	assert_int_equal(srup_flow_verdict(resign, SRUP_STATUS_RESIGN_SUCCESS), 1);
	assert_int_equal(srup_flow_verdict(resign, SRUP_STATUS_RESIGN_FAIL), 0);
	assert_int_equal(srup_flow_verdict(dereg, SRUP_STATUS_DEREGISTER_SUCCESS), 1);
	assert_int_equal(srup_flow_verdict(dereg, SRUP_STATUS_DEREGISTER_FAIL), 0);
	assert_int_equal(srup_flow_verdict(dereg, SRUP_STATUS_RESIGN_SUCCESS), -1);
	assert_int_equal(srup_flow_verdict(NULL, 0x50), -1);
}

static void test_token_matching(void **state)
{
	const char *request = "6f1c2b1e-4d8a-4c55-9a77-0f1e2d3c4b5a";
	const uint8_t response[] = "resp";
	struct srup_bytes t = {0};

	(void)state;
	t.data = (uint8_t *)request;
	t.len = strlen(request);
	assert_true(srup_flow_token_matches(&t, request, NULL, 0));
	assert_true(srup_flow_token_matches(&t, request, response, 4));
	t.data = (uint8_t *)response;
	t.len = 4;
	assert_true(srup_flow_token_matches(&t, request, response, 4));
	assert_false(srup_flow_token_matches(&t, request, NULL, 0));
	/* A prefix of the token, or a longer one, is another token. */
	t.len = 3;
	assert_false(srup_flow_token_matches(&t, request, response, 4));
	t.data = (uint8_t *)request;
	t.len = strlen(request) - 1;
	assert_false(srup_flow_token_matches(&t, request, response, 4));
	/* An empty token matches nothing, not even an empty pending one. */
	t.len = 0;
	assert_false(srup_flow_token_matches(&t, "", (const uint8_t *)"", 0));
	assert_false(srup_flow_token_matches(NULL, request, response, 4));
}

static void test_value_text(void **state)
{
	const uint8_t printable[] = "0123456789abcdef0123456789abcdef";
	const uint8_t binary[] = {0x00, 0x01, 0xab, 0xff, 0x20, 0x7f};
	char text[2 * 64 + 1], grouped[3 * 64 + 1];

	(void)state;
	srup_flow_value_text(printable, 32, false, text, grouped);
	assert_string_equal(text, "0123456789abcdef0123456789abcdef");
	assert_string_equal(grouped, "0123 4567 89ab cdef 0123 4567 89ab cdef");
	srup_flow_value_text(binary, sizeof(binary), false, text, grouped);
	assert_string_equal(text, "0001abff207f");
	assert_string_equal(grouped, "0001 abff 207f");
	/* Forced hex, and a last group shorter than four. */
	srup_flow_value_text((const uint8_t *)"AbC", 3, true, text, grouped);
	assert_string_equal(text, "416243");
	assert_string_equal(grouped, "4162 43");
	srup_flow_value_text((const uint8_t *)"xyz", 3, false, text, grouped);
	assert_string_equal(text, "xyz");
	assert_string_equal(grouped, "xyz");
}

/* ---- whole flows ------------------------------------------------------------ */

struct world {
	struct test_broker *broker; /* NULL: the nodes never connect */
	sd_event *loop;
	char dir[4096];
	struct srup_config *cfg;
	struct srup_keystore *server_peers, *device_peers;
	struct srup_node *server, *device;
	struct radio_channel *observer;
	struct srup_flow *flow;
	/* the server's script */
	uint8_t verdict_status;
	uint8_t value[32];
	size_t value_len;
	unsigned not_compared_first; /* the observer's "not compared" answers before a match */
	bool verdict_then_not_compared; /* the server decides, the presenter hears "not compared" */
	bool cancel_in_frame;
	/* what happened */
	unsigned requests_at_server;
	char request_topic[SRUP_TOPIC_MAX];
	unsigned frames;
	unsigned done_count, sent_events, presenting_events, presented_events, shows;
	uint8_t presented_result;
	char token[64], topic[SRUP_TOPIC_MAX], shown[256];
	struct srup_flow_result result;
	char result_detail[768];
	unsigned not_taken;
	unsigned server_connects;
};

static int group_setup(void **state)
{
	(void)state;
	if (srup_key_generate(2048, &server_key) != SRUP_KEYS_OK ||
	    srup_key_generate(2048, &device_key) != SRUP_KEYS_OK)
		return -1;
	srup_log_set_level(LOG_DEBUG);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(server_key);
	EVP_PKEY_free(device_key);
	return 0;
}

static void server_send(struct world *w, uint8_t type, const void *token, size_t token_len,
			uint8_t status)
{
	struct srup_msg *msg = srup_msg_new(type);
	char topic[SRUP_TOPIC_MAX];

	assert_non_null(msg);
	assert_int_equal(srup_bytes_set(&msg->token, token, token_len), SRUP_OK);
	msg->status = status;
	if (type == SRUP_TYPE_OBS_JOIN_RESPONSE || type == SRUP_TYPE_HM_JOIN_RESPONSE)
		assert_int_equal(srup_msg_seal(msg, device_key, w->value, w->value_len), SRUP_OK);
	srup_topic_device(DEVICE_ID, topic);
	assert_int_equal(srup_node_send(w->server, msg, DEVICE_ID, topic), SRUP_NODE_OK);
	srup_msg_free(msg);
}

/* The server: a join with a response stage gets its sealed value (and, for
 * a human join, the verdict at once, as if the person confirmed); the
 * others their verdict. An observed join's verdict follows the observer's
 * match (on_frame). */
static void at_server(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		      void *user)
{
	struct world *w = user;

	(void)node;
	w->requests_at_server++;
	snprintf(w->request_topic, sizeof(w->request_topic), "%s", topic);
	switch (msg->type) {
	case SRUP_TYPE_OBS_JOIN_REQUEST:
		assert_int_equal(msg->observer_id, OBSERVER_ID);
		server_send(w, SRUP_TYPE_OBS_JOIN_RESPONSE, RESPONSE_TOKEN, strlen(RESPONSE_TOKEN),
			    0);
		break;
	case SRUP_TYPE_HM_JOIN_REQUEST:
		server_send(w, SRUP_TYPE_HM_JOIN_RESPONSE, RESPONSE_TOKEN, strlen(RESPONSE_TOKEN),
			    0);
		server_send(w, SRUP_TYPE_RESPONSE, RESPONSE_TOKEN, strlen(RESPONSE_TOKEN),
			    w->verdict_status);
		break;
	default:
		server_send(w, SRUP_TYPE_RESPONSE, msg->token.data, msg->token.len,
			    w->verdict_status);
		break;
	}
}

static void at_device(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		      void *user)
{
	struct world *w = user;

	(void)node;
	(void)topic;
	if (!srup_flow_offer(w->flow, msg))
		w->not_taken++;
}

static uint8_t on_frame(const struct srup_frame *frame, void *user)
{
	struct world *w = user;

	w->frames++;
	assert_int_equal(frame->device_id, DEVICE_ID);
	assert_int_equal(frame->value_len, w->value_len);
	assert_memory_equal(frame->value, w->value, w->value_len);
	if (w->cancel_in_frame) {
		srup_flow_free(w->flow);
		w->flow = NULL;
		return RADIO_RESULT_NOT_COMPARED;
	}
	if (w->frames <= w->not_compared_first)
		return RADIO_RESULT_NOT_COMPARED;
	server_send(w, SRUP_TYPE_RESPONSE, RESPONSE_TOKEN, strlen(RESPONSE_TOKEN),
		    w->verdict_status);
	return w->verdict_then_not_compared ? RADIO_RESULT_NOT_COMPARED : RADIO_RESULT_MATCH;
}

static void on_unavailable(const char *why, void *user)
{
	(void)why;
	(void)user;
}

static void on_event(struct srup_flow *flow, const struct srup_flow_event *ev, void *user)
{
	struct world *w = user;

	assert_ptr_equal(flow, w->flow);
	switch (ev->kind) {
	case SRUP_FLOW_EVENT_SENT:
		w->sent_events++;
		snprintf(w->token, sizeof(w->token), "%s", ev->token);
		snprintf(w->topic, sizeof(w->topic), "%s", ev->topic);
		break;
	case SRUP_FLOW_EVENT_PRESENTING:
		w->presenting_events++;
		assert_string_equal(ev->channel, "sim");
		break;
	case SRUP_FLOW_EVENT_PRESENTED:
		w->presented_events++;
		w->presented_result = ev->result;
		break;
	}
}

static void on_show(struct srup_flow *flow, const char *text, const char *grouped, void *user)
{
	struct world *w = user;

	(void)flow;
	(void)grouped;
	w->shows++;
	snprintf(w->shown, sizeof(w->shown), "%s", text);
}

static void on_done(struct srup_flow *flow, const struct srup_flow_result *r, void *user)
{
	struct world *w = user;

	(void)flow;
	w->done_count++;
	w->result = *r;
	snprintf(w->result_detail, sizeof(w->result_detail), "%s", r->detail);
	w->result.detail = w->result_detail;
}

static int world_setup(void **state, bool with_broker)
{
	struct world *w = calloc(1, sizeof(*w));
	struct srup_node_config ncfg = {.reconnect_min_seconds = 1, .reconnect_max_seconds = 2};
	char detail[512] = "";

	if (!w)
		return -1;
	*state = w;
	if (test_tmpdir("srup-flow", w->dir) != 0 || sd_event_new(&w->loop) < 0)
		return -1;
	if (with_broker && test_broker_start(&w->broker) != 0)
		return -1;
	w->cfg = calloc(1, sizeof(*w->cfg));
	if (!w->cfg)
		return -1;
	w->cfg->identity_id = DEVICE_ID;
	w->cfg->server_id = SERVER_ID;
	if (snprintf(w->cfg->path, sizeof(w->cfg->path), "%s/device.conf", w->dir) >=
		    (int)sizeof(w->cfg->path) ||
	    snprintf(w->cfg->server_public_key, sizeof(w->cfg->server_public_key),
		     "%s/server.pem", w->dir) >= (int)sizeof(w->cfg->server_public_key) ||
	    snprintf(w->cfg->radio.sim.socket_path, sizeof(w->cfg->radio.sim.socket_path),
		     "%s/sim.sock", w->dir) >= (int)sizeof(w->cfg->radio.sim.socket_path))
		return -1;
	if (srup_key_write_public(w->cfg->server_public_key, server_key, detail,
				  sizeof(detail)) != SRUP_KEYS_OK)
		return -1;
	if (srup_keystore_open(NULL, &w->server_peers, NULL, 0) != SRUP_KEYS_OK ||
	    srup_keystore_open(NULL, &w->device_peers, NULL, 0) != SRUP_KEYS_OK ||
	    srup_keystore_add(w->server_peers, DEVICE_ID, device_key) != SRUP_KEYS_OK ||
	    srup_keystore_add(w->device_peers, SERVER_ID, server_key) != SRUP_KEYS_OK)
		return -1;
	snprintf(ncfg.broker, sizeof(ncfg.broker), "%s",
		 w->broker ? test_broker_url(w->broker) : "tcp://127.0.0.1:1");
	ncfg.role = SRUP_NODE_ROLE_DEVICE;
	ncfg.id = DEVICE_ID;
	if (snprintf(ncfg.state_dir, sizeof(ncfg.state_dir), "%s/device", w->dir) >=
	    (int)sizeof(ncfg.state_dir))
		return -1;
	if (srup_node_new(w->loop, &ncfg, device_key, w->device_peers, &w->device, detail,
			  sizeof(detail)) != SRUP_NODE_OK)
		return -1;
	for (uint8_t type = 0; type < 0xff; type++)
		if (srup_flow_hears(type) &&
		    srup_node_on(w->device, type, SERVER_ID, at_device, w) != SRUP_NODE_OK)
			return -1;
	if (!with_broker)
		return 0;
	ncfg.role = SRUP_NODE_ROLE_SERVER;
	ncfg.id = SERVER_ID;
	if (snprintf(ncfg.state_dir, sizeof(ncfg.state_dir), "%s/server", w->dir) >=
	    (int)sizeof(ncfg.state_dir))
		return -1;
	if (srup_node_new(w->loop, &ncfg, server_key, w->server_peers, &w->server, detail,
			  sizeof(detail)) != SRUP_NODE_OK ||
	    srup_node_watch_device(w->server, DEVICE_ID) != SRUP_NODE_OK)
		return -1;
	static const uint8_t requests[] = {SRUP_TYPE_OBS_JOIN_REQUEST, SRUP_TYPE_HM_JOIN_REQUEST,
					   SRUP_TYPE_JOIN_REQUEST, SRUP_TYPE_RESIGN_REQUEST,
					   SRUP_TYPE_DEREGISTER_REQUEST};
	for (size_t i = 0; i < sizeof(requests); i++)
		if (srup_node_on(w->server, requests[i], DEVICE_ID, at_server, w) != SRUP_NODE_OK)
			return -1;
	return 0;
}

static int setup_offline(void **state)
{
	return world_setup(state, false);
}

static int setup_broker(void **state)
{
	return world_setup(state, true);
}

static int teardown(void **state)
{
	struct world *w = *state;

	if (!w)
		return 0;
	srup_flow_free(w->flow);
	radio_channel_free(w->observer);
	srup_node_free(w->server);
	srup_node_free(w->device);
	if (w->server_peers)
		srup_keystore_free(w->server_peers);
	if (w->device_peers)
		srup_keystore_free(w->device_peers);
	sd_event_unref(w->loop);
	test_broker_free(w->broker);
	if (w->dir[0])
		test_rm_rf(w->dir);
	free(w->cfg);
	free(w);
	return 0;
}

static bool run_until(struct world *w, bool (*cond)(struct world *w), unsigned timeout_ms)
{
	uint64_t deadline = test_now_ms() + timeout_ms;

	while (!cond(w)) {
		if (test_now_ms() >= deadline)
			return false;
		sd_event_run(w->loop, 50 * 1000);
	}
	return true;
}

static bool flow_done(struct world *w)
{
	return w->done_count > 0;
}

static bool connected(struct world *w)
{
	return srup_node_is_connected(w->device) &&
	       (!w->server || srup_node_is_connected(w->server));
}

static void on_connected(struct srup_node *node, void *user)
{
	struct world *w = user;

	(void)node;
	srup_flow_connected(w->flow);
}

static struct srup_flow_params params(struct world *w, enum srup_flow_kind kind,
				      unsigned timeout_ms)
{
	return (struct srup_flow_params){
		.kind = kind, .loop = w->loop, .node = w->device, .cfg = w->cfg,
		.private_key = device_key, .peers = w->device_peers, .observer = OBSERVER_ID,
		.channel = kind == SRUP_FLOW_OBSERVED ? &radio_sim_driver : NULL,
		.timeout_ms = timeout_ms, .show = on_show, .event = on_event, .done = on_done,
		.user = w,
	};
}

static void on_server_connected(struct srup_node *node, void *user)
{
	struct world *w = user;

	(void)node;
	w->server_connects++;
}

static bool server_connected(struct world *w)
{
	return w->server_connects > 0;
}

/* The server listens before the device may send. */
static void connect_server(struct world *w)
{
	assert_int_equal(srup_node_connect(w->server, on_server_connected, w), SRUP_NODE_OK);
	assert_true(run_until(w, server_connected, WAIT_MS));
}

static void start(struct world *w, const struct srup_flow_params *p)
{
	char detail[256] = "";

	if (w->broker)
		connect_server(w);
	if (srup_flow_new(p, &w->flow, detail, sizeof(detail)) != SRUP_DEVICE_OK)
		fail_msg("srup_flow_new: %s", detail);
	if (w->broker)
		assert_int_equal(srup_node_connect(w->device, on_connected, w), SRUP_NODE_OK);
}

static void open_observer(struct world *w)
{
	struct radio_channel_callbacks cb = {.frame = on_frame, .unavailable = on_unavailable,
					     .user = w};

	assert_int_equal(radio_sim_channel_new(w->loop, &w->cfg->radio.sim, &cb, &w->observer),
			 RADIO_OK);
	assert_int_equal(radio_channel_start(w->observer), RADIO_OK);
}

static void test_params_checked(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_HUMAN, 0);
	struct srup_flow *flow = (struct srup_flow *)1;
	char detail[256] = "";

	p.show = NULL;
	assert_int_equal(srup_flow_new(&p, &flow, detail, sizeof(detail)), SRUP_DEVICE_E_ARG);
	assert_null(flow);
	assert_non_null(strstr(detail, "show"));
	p = params(w, SRUP_FLOW_RESIGN, 0);
	p.channel = &radio_sim_driver;
	assert_int_equal(srup_flow_new(&p, &flow, detail, sizeof(detail)), SRUP_DEVICE_E_ARG);
	p = params(w, SRUP_FLOW_RESIGN, 0);
	p.done = NULL;
	assert_int_equal(srup_flow_new(&p, &flow, detail, sizeof(detail)), SRUP_DEVICE_E_ARG);
	p = params(w, (enum srup_flow_kind)SRUP_FLOW__COUNT, 0);
	assert_int_equal(srup_flow_new(&p, &flow, detail, sizeof(detail)), SRUP_DEVICE_E_ARG);
	assert_int_equal(w->done_count, 0);
}

/* No broker: the request never leaves, and the flow's timeout ends it. */
static void test_timeout_before_sending(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_RESIGN, 300);

	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->done_count, 1);
	assert_int_equal(w->result.outcome, SRUP_DEVICE_FAILED);
	assert_int_equal(w->result.err, SRUP_DEVICE_E_TIMEOUT);
	assert_int_equal(w->result.stage, SRUP_FLOW_STAGE_SENDING);
	assert_string_equal(w->result.detail, "no answer to RESIGN_REQ from the server");
	assert_int_equal(w->sent_events, 0);
	assert_true(srup_flow_ended(w->flow));
	srup_flow_free(w->flow);
	w->flow = NULL;
	assert_int_equal(w->done_count, 1);
}

/* Freed while running: done once, as a cancellation. */
static void test_cancel(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_HUMAN, 0);
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_RESPONSE);

	start(w, &p);
	/* Nothing was sent: no verdict can be the flow's. */
	msg->status = SRUP_STATUS_JOIN_SUCCESS;
	assert_false(srup_flow_offer(w->flow, msg));
	srup_msg_free(msg);
	assert_false(srup_flow_ended(w->flow));
	srup_flow_free(w->flow);
	w->flow = NULL;
	assert_int_equal(w->done_count, 1);
	assert_int_equal(w->result.outcome, SRUP_DEVICE_FAILED);
	assert_int_equal(w->result.err, SRUP_DEVICE_E_STATE_ORDER);
	assert_string_equal(w->result.detail, "cancelled");
}

static void test_unmediated_join_accepted(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_UNMEDIATED, 0);
	char want[SRUP_TOPIC_MAX];

	w->verdict_status = SRUP_STATUS_JOIN_SUCCESS;
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->done_count, 1);
	assert_int_equal(w->sent_events, 1);
	srup_topic_server_join(SERVER_ID, DEVICE_ID, want);
	assert_string_equal(w->topic, want);
	assert_string_equal(w->request_topic, want);
	assert_int_equal(strlen(w->token), SRUP_UUID_TEXT_LEN);
	assert_int_equal(w->result.outcome, SRUP_DEVICE_ACCEPTED);
	assert_int_equal(w->result.status, SRUP_STATUS_JOIN_SUCCESS);
	assert_non_null(strstr(w->result.detail, "JOIN_SUCCESS (0x50) after "));
	assert_int_equal(w->result.key_file, SRUP_FLOW_KEY_FILE_UNTOUCHED);
}

static bool request_sent(struct world *w)
{
	return w->sent_events > 0;
}

/* A RESPONSE with another token is not the flow's; one with its token but
 * another exchange's status is taken and ignored; the real verdict ends it. */
static void test_verdict_by_token(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_RESIGN, 0);
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_RESPONSE);

	w->verdict_status = SRUP_STATUS_RESIGN_FAIL;
	/* Connected first, so that the flow sends from the loop, not from
	 * on_connected. */
	connect_server(w);
	assert_int_equal(srup_node_connect(w->device, NULL, NULL), SRUP_NODE_OK);
	assert_true(run_until(w, connected, WAIT_MS));
	char detail[256] = "";

	assert_int_equal(srup_flow_new(&p, &w->flow, detail, sizeof(detail)), SRUP_DEVICE_OK);
	assert_int_equal(w->sent_events, 0); /* never inside srup_flow_new */
	assert_true(run_until(w, request_sent, WAIT_MS));
	assert_int_equal(srup_bytes_set(&msg->token, "someone else's", 14), SRUP_OK);
	msg->status = SRUP_STATUS_RESIGN_SUCCESS;
	assert_false(srup_flow_offer(w->flow, msg));
	assert_int_equal(srup_bytes_set(&msg->token, w->token, strlen(w->token)), SRUP_OK);
	msg->status = SRUP_STATUS_JOIN_SUCCESS;
	assert_true(srup_flow_offer(w->flow, msg));
	assert_int_equal(w->done_count, 0);
	/* Not a join: a join response is no concern of a resign. */
	msg->type = SRUP_TYPE_HM_JOIN_RESPONSE;
	assert_false(srup_flow_offer(w->flow, msg));
	srup_msg_free(msg);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->result.outcome, SRUP_DEVICE_REFUSED);
	assert_int_equal(w->result.status, SRUP_STATUS_RESIGN_FAIL);
	char want[SRUP_TOPIC_MAX];

	srup_topic_device(DEVICE_ID, want);
	assert_string_equal(w->topic, want);
}

static void test_human_join_shows_value(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_HUMAN, 0);

	memcpy(w->value, "0123456789abcdef0123456789abcdef", 32);
	w->value_len = 32;
	w->verdict_status = SRUP_STATUS_JOIN_REFUSED;
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->shows, 1);
	assert_string_equal(w->shown, "0123456789abcdef0123456789abcdef");
	/* The verdict echoed the HM_JOIN_RESP's token. */
	assert_int_equal(w->result.outcome, SRUP_DEVICE_REFUSED);
	assert_int_equal(w->result.status, SRUP_STATUS_JOIN_REFUSED);
}

/* The observer answers "not compared" twice, then matches: three
 * presentations, each answered by the observer on the flow's own loop. */
static void test_observed_join_presents_without_blocking(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_OBSERVED, 0);

	for (size_t i = 0; i < sizeof(w->value); i++)
		w->value[i] = (uint8_t)(0xa0 + i);
	w->value_len = sizeof(w->value);
	w->not_compared_first = 2;
	w->verdict_status = SRUP_STATUS_JOIN_SUCCESS;
	open_observer(w);
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->frames, 3);
	assert_int_equal(w->presenting_events, 1);
	assert_int_equal(w->presented_events, 1);
	assert_int_equal(w->presented_result, RADIO_RESULT_MATCH);
	assert_int_equal(w->result.outcome, SRUP_DEVICE_ACCEPTED);
	assert_int_equal(w->result.status, SRUP_STATUS_JOIN_SUCCESS);
}

/* The server's verdict can reach the device before the presenter hears
 * the observer's answer: the flow waits for that attempt, and an answer
 * that is not final ends it with the verdict, without presenting again. */
static void test_verdict_before_the_attempt_ends(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_OBSERVED, 0);

	memset(w->value, 0x3c, 16);
	w->value_len = 16;
	w->verdict_then_not_compared = true;
	w->verdict_status = SRUP_STATUS_JOIN_REFUSED;
	open_observer(w);
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->frames, 1);
	assert_int_equal(w->presenting_events, 1);
	assert_int_equal(w->presented_events, 0);
	assert_int_equal(w->result.outcome, SRUP_DEVICE_REFUSED);
	assert_int_equal(w->result.status, SRUP_STATUS_JOIN_REFUSED);
}

static bool value_shown(struct world *w)
{
	return w->shows > 0 || w->done_count > 0;
}

/* Without a channel, the value is shown as hex. */
static void test_observed_join_shown(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_OBSERVED, 0);

	p.channel = NULL;
	memcpy(w->value, "\x01\x02\xfe", 3);
	w->value_len = 3;
	start(w, &p);
	assert_true(run_until(w, value_shown, WAIT_MS));
	assert_int_equal(w->shows, 1);
	assert_string_equal(w->shown, "0102fe");
	assert_int_equal(w->presenting_events, 0);
}

/* The observer never compares: the flow's timeout ends the presenting
 * (it does not go on for the 30 s of presenting again). */
static void test_timeout_while_presenting(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_OBSERVED, 2500);

	memset(w->value, 0x5a, 16);
	w->value_len = 16;
	w->not_compared_first = UINT32_MAX;
	p.timeout_name = "--timeout";
	open_observer(w);
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->result.outcome, SRUP_DEVICE_FAILED);
	assert_int_equal(w->result.err, SRUP_DEVICE_E_TIMEOUT);
	assert_int_equal(w->result.stage, SRUP_FLOW_STAGE_PRESENTING);
	assert_non_null(strstr(w->result.detail,
			       "presenting on sim: --timeout ran out before the observer compared"));
	assert_true(w->frames >= 1);
}

static bool frame_seen(struct world *w)
{
	return w->frames > 0;
}

/* Freed while the presenter waits for the observer's answer. */
static void test_cancel_while_presenting(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_OBSERVED, 0);

	memset(w->value, 0x11, 8);
	w->value_len = 8;
	w->cancel_in_frame = true;
	open_observer(w);
	start(w, &p);
	assert_true(run_until(w, frame_seen, WAIT_MS));
	assert_null(w->flow);
	assert_int_equal(w->done_count, 1);
	assert_int_equal(w->result.err, SRUP_DEVICE_E_STATE_ORDER);
	assert_int_equal(w->result.stage, SRUP_FLOW_STAGE_PRESENTING);
}

/* DEREGISTER_SUCCESS: the server's key leaves the store and its file. */
static void test_deregister_deletes_server_key(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_DEREGISTER, 0);
	struct stat st;

	w->verdict_status = SRUP_STATUS_DEREGISTER_SUCCESS;
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->result.outcome, SRUP_DEVICE_ACCEPTED);
	assert_int_equal(w->result.key_file, SRUP_FLOW_KEY_FILE_DELETED);
	assert_int_equal(stat(w->cfg->server_public_key, &st), -1);
	assert_null(srup_keystore_lookup(w->device_peers, SERVER_ID));
}

/* A refused deregistration keeps the key. */
static void test_deregister_refused_keeps_key(void **state)
{
	struct world *w = *state;
	struct srup_flow_params p = params(w, SRUP_FLOW_DEREGISTER, 0);
	struct stat st;

	w->verdict_status = SRUP_STATUS_DEREGISTER_FAIL;
	start(w, &p);
	assert_true(run_until(w, flow_done, WAIT_MS));
	assert_int_equal(w->result.outcome, SRUP_DEVICE_REFUSED);
	assert_int_equal(w->result.key_file, SRUP_FLOW_KEY_FILE_UNTOUCHED);
	assert_int_equal(stat(w->cfg->server_public_key, &st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_table),
		cmocka_unit_test(test_verdict_statuses),
		cmocka_unit_test(test_token_matching),
		cmocka_unit_test(test_value_text),
		cmocka_unit_test_setup_teardown(test_params_checked, setup_offline, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_before_sending, setup_offline,
						teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup_offline, teardown),
		cmocka_unit_test_setup_teardown(test_unmediated_join_accepted, setup_broker,
						teardown),
		cmocka_unit_test_setup_teardown(test_verdict_by_token, setup_broker, teardown),
		cmocka_unit_test_setup_teardown(test_human_join_shows_value, setup_broker, teardown),
		cmocka_unit_test_setup_teardown(test_observed_join_presents_without_blocking,
						setup_broker, teardown),
		cmocka_unit_test_setup_teardown(test_verdict_before_the_attempt_ends, setup_broker,
						teardown),
		cmocka_unit_test_setup_teardown(test_observed_join_shown, setup_broker, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_while_presenting, setup_broker,
						teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_presenting, setup_broker,
						teardown),
		cmocka_unit_test_setup_teardown(test_deregister_deletes_server_key, setup_broker,
						teardown),
		cmocka_unit_test_setup_teardown(test_deregister_refused_keeps_key, setup_broker,
						teardown),
	};

	if (getenv("SRUP_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SRUP_TEST_FILTER"));
	return cmocka_run_group_tests_name("flow", tests, group_setup, group_teardown);
}
