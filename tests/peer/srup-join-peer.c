/* srup-join-peer: the C2 server's half of the observed join, for tests,
 * benchmarks and the demo (not installed).
 *
 * It answers OBS_JOIN_REQ as a pySRUP server does (JOIN-FLOW.md section 2):
 * a fresh confirmation value (uuid4().hex, 32 ASCII hex bytes), OBSERVE_REQ
 * to the observer, OBS_JOIN_RESP to the device; then it matches the
 * observer's RESPONSE to the join by the echoed token (which pySRUP does
 * not) and sends the device its verdict: JOIN_SUCCESS on 0x60, JOIN_REFUSED
 * on 0x6E, JOIN_FAIL on 0x6F or on its own timeout.
 *
 * It also answers the device-initiated requests a server receives: JOIN_REQ
 * (unmediated; verdict by --join-policy), HM_JOIN_REQ (human-mediated: a
 * fresh value sealed to the device in HM_JOIN_RESP, and the verdict when
 * the person types the value at the server, the hm_confirm command),
 * RESIGN_REQ (--resign-status) and DEREGISTER_REQ (--deregister-status).
 * Every verdict echoes the token of the request it answers.
 *
 * One line per event on stdout, for the harness to read:
 *   READY server=<id16>
 *   JOIN_REQUEST device=<id16> observer=<id16>
 *   OUTCOME device=<id16> observer=<id16> observer_status=0x60|none
 *           status=0x50 server_ms=<ms from request to verdict>
 *   JOIN_REQUEST device=<id16> mode=unmediated|human
 *   HM_VALUE device=<id16> value=<text>
 *   OUTCOME device=<id16> mode=unmediated|human status=0x%02x
 *   RESIGN device=<id16> status=0x%02x
 *   DEREGISTER device=<id16> status=0x%02x
 *
 * With --commands it reads one command per line on stdin (end of input is
 * quit) and plays the server's side of every other message:
 *   watch DEV16                     control DEV (subscribe SRUP/<dev>/#)
 *   send DEV16 TYPE [k=v ...]       publish a TYPE (srup-msg's name) on SRUP/<dev>
 *   send_group GROUP TYPE [k=v ...] the same on SRUP/groups/<GROUP>; device_id=
 *                                   names the peer whose sequence ID is used
 *   replay N                        publish the Nth message sent again, byte for byte
 *   hm_confirm DEV16 VALUE          the person typed VALUE for DEV's human join
 *   quit
 * Fields: token=TEXT (default a fresh uuid4), token_hex=HEX, and each field
 * of the type by its srup-msg name: an ID as hex (device_id=, default DEV),
 * a small integer (action_id=, status=), bytes as text (url=, digest=,
 * data_id=, data=, group_id=) or as hex with _hex appended (digest_hex=);
 * plaintext=TEXT seals TEXT to DEV's key for a type with a blob.
 * Command-mode events:
 *   SENT n=<N> type=<name> device=<id16> token=<t> seq=<16 hex> topic=<topic>
 *        (every message the peer publishes, its own answers included;
 *        N counts from 1 and is what replay takes)
 *   REPLAYED n=<N> topic=<topic>
 *   WATCHING device=<id16>
 *   RESPONSE device=<id16> token=<t> status=0x%02x
 *   DATA device=<id16> token=<t> data_id=<text> data_hex=<hex>
 *   ERROR <what was wrong>      (a bad command; the peer keeps running)
 * A token or data ID that is not printable ASCII without spaces is shown as
 * hex:<hex>.
 *
 * With --keyex URL (and --keyex-ca FILE for its TLS certificate), the key of
 * a sender the --peers directory does not hold is asked of that key service
 * (REGISTRATION.md: GET URL/KeyEx/register/get_key/<ID as "%02x">) before
 * the message is verified, as a pySRUP server looks keys up; each lookup
 * prints
 *   KEYEX device=<id16> found|missing (<why>)
 * --broker takes one URL or several in one argument, separated by blanks
 * ("tcp://a:1883 tcp://b:1883"), as the [mqtt] broker key does.
 * --ca-file, --cert-file and --key-file are the broker's TLS files
 * (mqtts:// brokers). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>
#include <openssl/crypto.h>

#include <openssl/pem.h>

#include "srup_broker_list.h"
#include "reg_answer.h"
#include "reg_http.h"
#include "srup.h"
#include "srup_hex.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_msg_layout.h"
#include "srup_node.h"

#define MAX_JOINS 4096
#define UUID_TEXT_LEN SRUP_UUID_TEXT_LEN
#define VALUE_LEN SRUP_UUID_HEX_LEN
#define TOKEN_KEEP_MAX 64   /* longest request token a pending human join keeps */
#define COMMAND_LINE_MAX 8192

enum join_mode { JOIN_OBSERVED, JOIN_HUMAN };

struct join {
	bool used;
	enum join_mode mode;
	uint64_t device;
	uint64_t observer;
	char response_token[UUID_TEXT_LEN + 1]; /* OBS_JOIN_RESP's: the verdict echoes it */
	char observe_token[UUID_TEXT_LEN + 1];  /* OBSERVE_REQ's: the observer echoes it */
	uint64_t started_us;
	sd_event_source *timer;
	/* Human-mediated: the value sent to the device, and the request's
	 * token, which the verdict echoes. */
	char value[VALUE_LEN + 1];
	uint8_t request_token[TOKEN_KEEP_MAX];
	size_t request_token_len;
};

/* A message as published, for replay. */
struct sent {
	uint8_t *wire;
	size_t len;
	char topic[SRUP_TOPIC_MAX + 80];
};

struct peer {
	sd_event *loop;
	struct srup_node *node;
	struct srup_keystore *keys;
	EVP_PKEY *identity;
	uint64_t id;
	unsigned timeout_s;
	unsigned joins_wanted; /* exit after this many outcomes; 0 = run until signalled */
	unsigned outcomes;
	bool ready_printed;
	bool accept_joins;      /* --join-policy */
	uint8_t resign_status;
	uint8_t deregister_status;
	char broker[256];
	/* Devices this server controls (watched): joined, --watch, watch. */
	uint64_t *controlled;
	size_t n_controlled, cap_controlled;
	/* Command mode. */
	bool commands;
	char line[COMMAND_LINE_MAX];
	size_t line_len;
	bool line_too_long;
	struct sent *sent;
	size_t n_sent, cap_sent;
	MQTTAsync replay_client; /* a plain MQTT client: replays bypass the node */
	struct reg_http keyex;   /* --keyex: base URL set when used */
	struct join joins[MAX_JOINS];
};

static uint64_t now_us(struct peer *p)
{
	uint64_t usec = 0;

	sd_event_now(p->loop, CLOCK_MONOTONIC, &usec);
	return usec;
}

/* Text for an event line: printable ASCII without spaces as it is, else hex. */
static void print_text_or_hex(const uint8_t *data, size_t len)
{
	bool plain = true;

	for (size_t i = 0; i < len; i++)
		if (data[i] <= 0x20 || data[i] >= 0x7f)
			plain = false;
	if (plain) {
		fwrite(data, 1, len, stdout);
		return;
	}
	fputs("hex:", stdout);
	for (size_t i = 0; i < len; i++)
		printf("%02x", data[i]);
}

static void record_sent(struct peer *p, const struct srup_msg *msg, uint64_t to,
			const char *topic)
{
	const char *type_text = srup_type_name(msg->type);
	struct sent *e;
	char dev[17];

	if (p->n_sent == p->cap_sent) {
		size_t cap = p->cap_sent ? p->cap_sent * 2 : 64;
		struct sent *grown = realloc(p->sent, cap * sizeof(*grown));

		if (!grown) {
			printf("ERROR out of memory keeping a sent message\n");
			fflush(stdout);
			return;
		}
		p->sent = grown;
		p->cap_sent = cap;
	}
	e = &p->sent[p->n_sent];
	memset(e, 0, sizeof(*e));
	/* The node signed msg in place: encoding it again gives the bytes sent. */
	if (srup_msg_encode(msg, &e->wire, &e->len) != SRUP_OK) {
		printf("ERROR sent a %s on %s but cannot keep it for replay\n",
		       type_text ? type_text : "?", topic);
		fflush(stdout);
		return;
	}
	snprintf(e->topic, sizeof(e->topic), "%s", topic);
	p->n_sent++;
	srup_id_format16(to, dev);
	printf("SENT n=%zu type=%s device=%s token=", p->n_sent, type_text ? type_text : "?", dev);
	print_text_or_hex(msg->token.data, msg->token.len);
	printf(" seq=%016" PRIx64 " topic=%s\n", msg->sequence_id, topic);
	fflush(stdout);
}

/* Send msg with token on topic; to names the peer whose sequence ID it takes. */
static int send_on(struct peer *p, struct srup_msg *msg, uint64_t to, const char *topic,
		   const void *token, size_t token_len)
{
	enum srup_node_err err;

	if (token && srup_bytes_set(&msg->token, token, token_len) != SRUP_OK)
		return -1;
	err = srup_node_send(p->node, msg, to, topic);
	if (err != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot send to %s: %s", topic, srup_node_strerror(err));
		return -1;
	}
	if (p->commands)
		record_sent(p, msg, to, topic);
	return 0;
}

static int send_to(struct peer *p, struct srup_msg *msg, uint64_t to, const char *token)
{
	char topic[SRUP_TOPIC_MAX];

	srup_topic_device(to, topic);
	return send_on(p, msg, to, topic, token, strlen(token));
}

static void send_status(struct peer *p, uint64_t device, const void *token, size_t token_len,
			uint8_t status)
{
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_RESPONSE);
	char topic[SRUP_TOPIC_MAX];

	if (!msg)
		return;
	msg->status = status;
	srup_topic_device(device, topic);
	send_on(p, msg, device, topic, token, token_len);
	srup_msg_free(msg);
}

static void send_verdict(struct peer *p, uint64_t device, const char *token, uint8_t status)
{
	send_status(p, device, token, strlen(token), status);
}

/* ---- the devices this server controls ---------------------------------- */

static bool controlled_find(const struct peer *p, uint64_t dev, size_t *pos)
{
	for (size_t i = 0; i < p->n_controlled; i++)
		if (p->controlled[i] == dev) {
			*pos = i;
			return true;
		}
	return false;
}

static int control(struct peer *p, uint64_t dev)
{
	size_t pos;

	if (srup_node_watch_device(p->node, dev) != SRUP_NODE_OK)
		return -1;
	if (controlled_find(p, dev, &pos))
		return 0;
	if (p->n_controlled == p->cap_controlled) {
		size_t cap = p->cap_controlled ? p->cap_controlled * 2 : 16;
		uint64_t *grown = realloc(p->controlled, cap * sizeof(*grown));

		if (!grown)
			return -1;
		p->controlled = grown;
		p->cap_controlled = cap;
	}
	p->controlled[p->n_controlled++] = dev;
	return 0;
}

/* The node keeps the subscription (it has no unsubscribe); what the device
 * sends from now on is answered as from a device this server does not
 * control. */
static void release(struct peer *p, uint64_t dev)
{
	size_t pos;

	if (controlled_find(p, dev, &pos))
		p->controlled[pos] = p->controlled[--p->n_controlled];
}

static void count_outcome(struct peer *p)
{
	if (p->joins_wanted && ++p->outcomes >= p->joins_wanted)
		sd_event_exit(p->loop, 0);
}

static void end_join(struct peer *p, struct join *j, int observer_status, uint8_t status)
{
	char dev[17], obs[17], ostat[8] = "none";

	srup_id_format16(j->device, dev);
	if (j->mode == JOIN_HUMAN) {
		send_status(p, j->device, j->request_token, j->request_token_len, status);
		printf("OUTCOME device=%s mode=human status=0x%02x\n", dev, status);
	} else {
		send_verdict(p, j->device, j->response_token, status);
		srup_id_format16(j->observer, obs);
		if (observer_status >= 0)
			snprintf(ostat, sizeof(ostat), "0x%02x",
				 (unsigned)(observer_status & 0xff));
		printf("OUTCOME device=%s observer=%s observer_status=%s status=0x%02x "
		       "server_ms=%.3f\n",
		       dev, obs, ostat, status, (double)(now_us(p) - j->started_us) / 1000.0);
	}
	fflush(stdout);
	sd_event_source_disable_unref(j->timer);
	OPENSSL_cleanse(j, sizeof(*j));
	count_outcome(p);
}

static struct join *find_join_by_observe_token(struct peer *p, uint64_t observer,
					       const struct srup_bytes *token)
{
	for (size_t i = 0; i < MAX_JOINS; i++) {
		struct join *j = &p->joins[i];

		if (j->used && j->mode == JOIN_OBSERVED && j->observer == observer &&
		    token->len == UUID_TEXT_LEN &&
		    memcmp(token->data, j->observe_token, UUID_TEXT_LEN) == 0)
			return j;
	}
	return NULL;
}

static struct join *find_join_by_device(struct peer *p, uint64_t device)
{
	for (size_t i = 0; i < MAX_JOINS; i++)
		if (p->joins[i].used && p->joins[i].device == device)
			return &p->joins[i];
	return NULL;
}

static void on_observer_response(struct srup_node *node, const struct srup_msg *msg,
				 const char *topic, void *user)
{
	struct peer *p = user;
	struct join *j = find_join_by_observe_token(p, msg->sender_id, &msg->token);
	uint8_t verdict;
	char from[17];

	(void)node;
	(void)topic;
	srup_id_format16(msg->sender_id, from);
	if (p->commands) {
		printf("RESPONSE device=%s token=", from);
		print_text_or_hex(msg->token.data, msg->token.len);
		printf(" status=0x%02x\n", msg->status);
		fflush(stdout);
	}
	if (!j) {
		if (p->commands)
			return; /* the command mode's tests read it */
		srup_log(LOG_WARNING, "RESPONSE 0x%02x from %s matches no pending join (token); "
			 "ignored", msg->status, from);
		return;
	}
	switch (msg->status) {
	case SRUP_STATUS_OBSERVED_JOIN_VALID:
		verdict = SRUP_STATUS_JOIN_SUCCESS;
		/* As pySRUP's accept_join: the device is now one of ours. */
		control(p, j->device);
		break;
	case SRUP_STATUS_OBSERVED_JOIN_INVALID:
		verdict = SRUP_STATUS_JOIN_REFUSED;
		break;
	case SRUP_STATUS_OBSERVED_JOIN_FAIL:
		verdict = SRUP_STATUS_JOIN_FAIL;
		break;
	default:
		srup_log(LOG_WARNING, "RESPONSE 0x%02x from the observer is no observation "
			 "outcome; ignored", msg->status);
		return;
	}
	end_join(p, j, msg->status, verdict);
}

static struct peer *timeout_peer; /* the one peer of this process */

static int on_timeout(sd_event_source *s, uint64_t usec, void *user)
{
	struct join *j = user;

	(void)s;
	(void)usec;
	j->timer = sd_event_source_unref(j->timer);
	end_join(timeout_peer, j, -1, SRUP_STATUS_JOIN_FAIL);
	return 0;
}

/* A join request travels on SRUP/servers/<s>/<d>, and a device asks for
 * itself only. */
static bool on_join_topic(struct peer *p, const struct srup_msg *msg, const char *topic,
			  const char *what)
{
	char expect[SRUP_TOPIC_MAX], dev[17];

	srup_topic_server_join(p->id, msg->sender_id, expect);
	if (strcmp(topic, expect) == 0)
		return true;
	srup_id_format16(msg->sender_id, dev);
	srup_log(LOG_WARNING, "%s from %s on %s, not %s; ignored", what, dev, topic, expect);
	return false;
}

/* A cleared join slot for device (a new request replaces its old join), or
 * NULL when every slot is taken. */
static struct join *take_join_slot(struct peer *p, uint64_t device)
{
	struct join *j = find_join_by_device(p, device);

	if (j)
		end_join(p, j, -1, SRUP_STATUS_JOIN_FAIL);
	for (j = p->joins; j < p->joins + MAX_JOINS; j++)
		if (!j->used) {
			memset(j, 0, sizeof(*j));
			return j;
		}
	return NULL;
}

static void on_obs_join_request(struct srup_node *node, const struct srup_msg *msg,
				const char *topic, void *user)
{
	struct peer *p = user;
	EVP_PKEY *observer_key = srup_keystore_lookup(p->keys, msg->observer_id);
	char dev[17], obs[17];
	char value[VALUE_LEN + 1];
	struct srup_msg *observe = NULL, *resp = NULL;
	struct join *j;
	enum srup_err err;

	(void)node;
	srup_id_format16(msg->sender_id, dev);
	srup_id_format16(msg->observer_id, obs);
	if (!on_join_topic(p, msg, topic, "OBS_JOIN_REQ"))
		return;
	printf("JOIN_REQUEST device=%s observer=%s\n", dev, obs);
	fflush(stdout);

	j = take_join_slot(p, msg->sender_id);
	if (!j || !observer_key) {
		char token[UUID_TEXT_LEN + 1] = "";

		srup_log(LOG_WARNING, "OBS_JOIN_REQ from %s: %s; JOIN_FAIL", dev,
			 observer_key ? "too many joins pending" : "observer unknown");
		if (srup_uuid4_text(token) == SRUP_OK) {
			struct srup_msg *v = srup_msg_new(SRUP_TYPE_RESPONSE);

			if (v) {
				v->status = SRUP_STATUS_JOIN_FAIL;
				send_to(p, v, msg->sender_id, token);
				srup_msg_free(v);
			}
		}
		return;
	}

	j->device = msg->sender_id;
	j->observer = msg->observer_id;
	j->started_us = now_us(p);
	if (srup_uuid4_text(j->response_token) || srup_uuid4_text(j->observe_token) ||
	    srup_uuid4_hex(value))
		return;
	observe = srup_msg_new(SRUP_TYPE_OBSERVE_REQUEST);
	resp = srup_msg_new(SRUP_TYPE_OBS_JOIN_RESPONSE);
	if (!observe || !resp)
		goto out;
	observe->joining_device_id = msg->sender_id;
	/* The pipeline verified the request, so the sender's key is known. */
	err = srup_msg_seal(observe, observer_key, (const uint8_t *)value, VALUE_LEN);
	if (err == SRUP_OK)
		err = srup_msg_seal(resp, srup_keystore_lookup(p->keys, msg->sender_id),
				    (const uint8_t *)value, VALUE_LEN);
	OPENSSL_cleanse(value, sizeof(value));
	if (err != SRUP_OK) {
		srup_log(LOG_ERR, "cannot encrypt the confirmation value: %s", srup_strerror(err));
		goto out;
	}
	j->used = true;
	if (sd_event_add_time_relative(p->loop, &j->timer, CLOCK_MONOTONIC,
				       (uint64_t)p->timeout_s * 1000000, 1000, on_timeout, j) < 0)
		srup_log(LOG_ERR, "cannot arm the join timeout");
	/* The observer first, so that it is ready when the device presents. */
	srup_node_watch_device(p->node, msg->observer_id);
	send_to(p, observe, msg->observer_id, j->observe_token);
	send_to(p, resp, msg->sender_id, j->response_token);
out:
	srup_msg_free(observe);
	srup_msg_free(resp);
}

/* Unmediated join (seed 7.1.1): accept by subscribing to the device's
 * topic (0x50, or 0x5F if that fails), or refuse (0x5E). */
static void on_join_request(struct srup_node *node, const struct srup_msg *msg,
			    const char *topic, void *user)
{
	struct peer *p = user;
	uint8_t status = SRUP_STATUS_JOIN_REFUSED;
	char dev[17];

	(void)node;
	if (!on_join_topic(p, msg, topic, "JOIN_REQ"))
		return;
	srup_id_format16(msg->sender_id, dev);
	printf("JOIN_REQUEST device=%s mode=unmediated\n", dev);
	fflush(stdout);
	if (p->accept_joins)
		status = control(p, msg->sender_id) == 0 ? SRUP_STATUS_JOIN_SUCCESS
							 : SRUP_STATUS_JOIN_FAIL;
	send_status(p, msg->sender_id, msg->token.data, msg->token.len, status);
	printf("OUTCOME device=%s mode=unmediated status=0x%02x\n", dev, status);
	fflush(stdout);
	count_outcome(p);
}

/* Human-mediated join (seed 7.2): a fresh value sealed to the device; the
 * verdict waits for the person (hm_confirm) or the timeout. */
static void on_hm_join_request(struct srup_node *node, const struct srup_msg *msg,
			       const char *topic, void *user)
{
	struct peer *p = user;
	char dev[17], token[UUID_TEXT_LEN + 1];
	struct srup_msg *resp = NULL;
	struct join *j;
	enum srup_err err;

	(void)node;
	if (!on_join_topic(p, msg, topic, "HM_JOIN_REQ"))
		return;
	srup_id_format16(msg->sender_id, dev);
	printf("JOIN_REQUEST device=%s mode=human\n", dev);
	fflush(stdout);
	j = take_join_slot(p, msg->sender_id);
	if (!j || msg->token.len == 0 || msg->token.len > TOKEN_KEEP_MAX) {
		srup_log(LOG_WARNING, "HM_JOIN_REQ from %s: %s; JOIN_FAIL", dev,
			 j ? "token empty or too long to keep" : "too many joins pending");
		send_status(p, msg->sender_id, msg->token.data, msg->token.len,
			    SRUP_STATUS_JOIN_FAIL);
		return;
	}
	j->mode = JOIN_HUMAN;
	j->device = msg->sender_id;
	j->started_us = now_us(p);
	memcpy(j->request_token, msg->token.data, msg->token.len);
	j->request_token_len = msg->token.len;
	resp = srup_msg_new(SRUP_TYPE_HM_JOIN_RESPONSE);
	if (!resp || srup_uuid4_hex(j->value) != SRUP_OK || srup_uuid4_text(token) != SRUP_OK) {
		srup_msg_free(resp);
		OPENSSL_cleanse(j, sizeof(*j));
		return;
	}
	err = srup_msg_seal(resp, srup_keystore_lookup(p->keys, msg->sender_id),
			    (const uint8_t *)j->value, VALUE_LEN);
	if (err != SRUP_OK) {
		srup_log(LOG_ERR, "cannot encrypt the confirmation value: %s", srup_strerror(err));
		srup_msg_free(resp);
		OPENSSL_cleanse(j, sizeof(*j));
		return;
	}
	j->used = true;
	if (sd_event_add_time_relative(p->loop, &j->timer, CLOCK_MONOTONIC,
				       (uint64_t)p->timeout_s * 1000000, 1000, on_timeout, j) < 0)
		srup_log(LOG_ERR, "cannot arm the join timeout");
	send_to(p, resp, msg->sender_id, token);
	srup_msg_free(resp);
	/* "sent separately by the C2 system to the user" (seed 7.2.2). */
	printf("HM_VALUE device=%s value=%s\n", dev, j->value);
	fflush(stdout);
}

/* RESIGN_REQ and DEREGISTER_REQ come on the device's own topic; a device
 * this server no longer controls is answered with the failure status. */
static void answer_leave(struct peer *p, const struct srup_msg *msg, const char *topic,
			 const char *what, uint8_t ok_status, uint8_t fail_status,
			 uint8_t configured)
{
	char expect[SRUP_TOPIC_MAX], dev[17];
	size_t pos;
	uint8_t status = configured;

	srup_id_format16(msg->sender_id, dev);
	srup_topic_device(msg->sender_id, expect);
	if (strcmp(topic, expect) != 0) {
		srup_log(LOG_WARNING, "%s from %s on %s, not %s; ignored", what, dev, topic,
			 expect);
		return;
	}
	if (!controlled_find(p, msg->sender_id, &pos)) {
		srup_log(LOG_WARNING, "%s from %s, which this server does not control", what,
			 dev);
		status = fail_status;
	}
	send_status(p, msg->sender_id, msg->token.data, msg->token.len, status);
	if (status == ok_status)
		release(p, msg->sender_id);
	printf("%s device=%s status=0x%02x\n", what, dev, status);
	fflush(stdout);
}

static void on_resign_request(struct srup_node *node, const struct srup_msg *msg,
			      const char *topic, void *user)
{
	struct peer *p = user;

	(void)node;
	answer_leave(p, msg, topic, "RESIGN", SRUP_STATUS_RESIGN_SUCCESS,
		     SRUP_STATUS_RESIGN_FAIL, p->resign_status);
}

static void on_deregister_request(struct srup_node *node, const struct srup_msg *msg,
				  const char *topic, void *user)
{
	struct peer *p = user;

	(void)node;
	answer_leave(p, msg, topic, "DEREGISTER", SRUP_STATUS_DEREGISTER_SUCCESS,
		     SRUP_STATUS_DEREGISTER_FAIL, p->deregister_status);
}

static void on_data(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		    void *user)
{
	char dev[17];

	(void)node;
	(void)topic;
	(void)user;
	srup_id_format16(msg->sender_id, dev);
	printf("DATA device=%s token=", dev);
	print_text_or_hex(msg->token.data, msg->token.len);
	printf(" data_id=");
	print_text_or_hex(msg->data_id.data, msg->data_id.len);
	printf(" data_hex=");
	for (size_t i = 0; i < msg->data.len; i++)
		printf("%02x", msg->data.data[i]);
	printf("\n");
	fflush(stdout);
}

/* ---- command mode ------------------------------------------------------ */

static void command_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void command_error(const char *fmt, ...)
{
	va_list ap;

	fputs("ERROR ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static int parse_hex_bytes(const char *text, struct srup_bytes *out)
{
	uint8_t *bytes = NULL;
	size_t len = 0, bad_at;
	int rc;

	if (srup_hex_decode(text, strlen(text), false, &bytes, &len, &bad_at) != 0)
		return -1;
	rc = srup_bytes_set(out, bytes, len) == SRUP_OK ? 0 : -1;
	free(bytes);
	return rc;
}

/* The body fields a send command sets, by their JSON names. libsrup's
 * setters refuse a field the message's type does not carry. */
struct peer_field {
	const char *name;
	enum srup_err (*set_u8)(struct srup_msg *, uint8_t);
	enum srup_err (*set_id64)(struct srup_msg *, uint64_t);
	enum srup_err (*set_bytes)(struct srup_msg *, const void *, size_t);
};

static const struct peer_field peer_fields[] = {
	{ "status", .set_u8 = srup_msg_set_status },
	{ "action_id", .set_u8 = srup_msg_set_action_id },
	{ "device_id", .set_id64 = srup_msg_set_device_id },
	{ "observer_id", .set_id64 = srup_msg_set_observer_id },
	{ "joining_device_id", .set_id64 = srup_msg_set_joining_device_id },
	{ "url", .set_bytes = srup_msg_set_url },
	{ "digest", .set_bytes = srup_msg_set_digest },
	{ "data_id", .set_bytes = srup_msg_set_data_id },
	{ "data", .set_bytes = srup_msg_set_data },
	{ "group_id", .set_bytes = srup_msg_set_group_id },
	{ "encrypted", .set_bytes = srup_msg_set_encrypted },
};

/* One k=v of a send command into msg; plaintext is kept for sealing. */
static int set_field(struct srup_msg *msg, const char *key, const char *value,
		     const char **plaintext)
{
	size_t klen = strlen(key);
	bool hex = klen > 4 && strcmp(key + klen - 4, "_hex") == 0;
	char name[64];

	/* An empty blob is accepted only by a type that carries one. */
	if (strcmp(key, "plaintext") == 0 && srup_msg_set_encrypted(msg, NULL, 0) == SRUP_OK) {
		*plaintext = value;
		return 0;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(hex ? klen - 4 : klen), key);
	if (strcmp(name, "token") == 0)
		return hex ? parse_hex_bytes(value, &msg->token)
			   : (srup_bytes_set(&msg->token, value, strlen(value)) == SRUP_OK ? 0 : -1);
	for (size_t i = 0; i < sizeof(peer_fields) / sizeof(peer_fields[0]); i++) {
		const struct peer_field *f = &peer_fields[i];
		struct srup_bytes bytes = {0};
		char *end;
		unsigned long v;
		uint64_t id;
		int rc;

		if (strcmp(f->name, name) != 0)
			continue;
		if (f->set_u8) {
			v = strtoul(value, &end, 0);
			if (hex || *value == '\0' || *end != '\0' || v > 255)
				return -1;
			return f->set_u8(msg, (uint8_t)v) == SRUP_OK ? 0 : -1;
		}
		if (f->set_id64) {
			if (hex || srup_id_parse(value, &id) != 0)
				return -1;
			return f->set_id64(msg, id) == SRUP_OK ? 0 : -1;
		}
		if (!hex)
			return f->set_bytes(msg, value, strlen(value)) == SRUP_OK ? 0 : -1;
		rc = parse_hex_bytes(value, &bytes) == 0 &&
				     f->set_bytes(msg, bytes.data, bytes.len) == SRUP_OK
			     ? 0
			     : -1;
		srup_bytes_clear(&bytes);
		return rc;
	}
	return -1;
}

/* The code of a signed type by its name, or -1. */
static int signed_type_code(const char *name)
{
	for (int code = 0; code <= 0xff; code++) {
		const char *known = srup_type_name((uint8_t)code);

		if (known && strcmp(known, name) == 0)
			return srup_type_is_signed((uint8_t)code) ? code : -1;
	}
	return -1;
}

/* send DEV TYPE k=v... / send_group GROUP TYPE k=v... (args after the command word) */
static void command_send(struct peer *p, bool to_group, char **args, size_t n_args)
{
	const char *type_text;
	int type_code;
	const char *plaintext = NULL;
	char topic[SRUP_TOPIC_MAX + 80], token[UUID_TEXT_LEN + 1];
	struct srup_msg *msg = NULL;
	uint64_t dev = 0;
	bool have_dev = false;

	if (n_args < 2) {
		command_error("%s needs %s TYPE [k=v ...]", to_group ? "send_group" : "send",
			      to_group ? "GROUP" : "DEV16");
		return;
	}
	type_code = signed_type_code(args[1]);
	if (type_code < 0) {
		command_error("'%s' is no signed SRUP message type", args[1]);
		return;
	}
	if (!to_group) {
		if (srup_id_parse(args[0], &dev) != 0) {
			command_error("'%s' is not a device ID", args[0]);
			return;
		}
		have_dev = true;
		srup_topic_device(dev, topic);
	} else if (snprintf(topic, sizeof(topic), "SRUP/groups/%s", args[0]) >=
			   (int)sizeof(topic) ||
		   strpbrk(args[0], "+#") || args[0][0] == '\0') {
		command_error("'%s' cannot be a group topic", args[0]);
		return;
	}
	type_text = srup_type_name((uint8_t)type_code);
	msg = srup_msg_new((uint8_t)type_code);
	if (!msg || srup_uuid4_text(token) != SRUP_OK ||
	    srup_bytes_set(&msg->token, token, UUID_TEXT_LEN) != SRUP_OK) {
		command_error("out of memory");
		goto out;
	}
	/* Types without a device_id refuse it (SRUP_E_NO_FIELD): nothing to set. */
	if (have_dev)
		(void)srup_msg_set_device_id(msg, dev);
	for (size_t i = 2; i < n_args; i++) {
		char *eq = strchr(args[i], '=');

		if (!eq) {
			command_error("'%s' is not k=v", args[i]);
			goto out;
		}
		*eq = '\0';
		if (to_group && strcmp(args[i], "device_id") == 0) {
			if (srup_id_parse(eq + 1, &dev) != 0) {
				command_error("device_id: '%s' is not a device ID", eq + 1);
				goto out;
			}
			have_dev = true;
			(void)srup_msg_set_device_id(msg, dev);
			continue;
		}
		if (set_field(msg, args[i], eq + 1, &plaintext) != 0) {
			command_error("%s: '%s' is no value of a field of %s", args[i], eq + 1,
				      type_text);
			goto out;
		}
	}
	if (!have_dev) {
		command_error("send_group needs device_id=HEX16 (whose sequence ID to use)");
		goto out;
	}
	if (plaintext) {
		EVP_PKEY *key = srup_keystore_lookup(p->keys, dev);

		if (!key || srup_msg_seal(msg, key, (const uint8_t *)plaintext,
					  strlen(plaintext)) != SRUP_OK) {
			command_error("plaintext: cannot seal to %s", args[0]);
			goto out;
		}
	}
	if (send_on(p, msg, dev, topic, NULL, 0) != 0)
		command_error("sending %s on %s failed", type_text, topic);
out:
	srup_msg_free(msg);
}

static int replay_client_connect(struct peer *p)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	struct srup_broker_list brokers;
	char url[300], client_id[64], id[17], why[160];

	/* Replays go to the first broker of the list: enough for the tests
	 * that replay, which use one broker. */
	if (srup_broker_list_split(p->broker, &brokers, why, sizeof(why)) < 0)
		return -1;
	if (strncmp(brokers.url[0], "tcp://", 6) == 0)
		snprintf(url, sizeof(url), "%.255s", brokers.url[0]);
	else if (strncmp(brokers.url[0], "mqtt://", 7) == 0)
		snprintf(url, sizeof(url), "tcp://%.250s", brokers.url[0] + 7);
	else
		return -1;
	srup_id_format16(p->id, id);
	snprintf(client_id, sizeof(client_id), "srup-join-peer-replay-%s", id);
	if (MQTTAsync_create(&p->replay_client, url, client_id, MQTTCLIENT_PERSISTENCE_NONE,
			     NULL) != MQTTASYNC_SUCCESS)
		return -1;
	opts.keepAliveInterval = 20;
	opts.cleansession = 1;
	opts.automaticReconnect = 1;
	return MQTTAsync_connect(p->replay_client, &opts) == MQTTASYNC_SUCCESS ? 0 : -1;
}

/* Publish the Nth message sent again, byte for byte, outside the node (which
 * would give it a new sequence ID and signature). Blocks the loop briefly:
 * this is a test tool. */
static void command_replay(struct peer *p, const char *arg)
{
	MQTTAsync_message pub = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	char *end;
	unsigned long n = strtoul(arg ? arg : "", &end, 10);
	const struct sent *e;

	if (!arg || *arg == '\0' || *end != '\0' || n == 0 || n > p->n_sent) {
		command_error("replay: '%s' is no message sent (1..%zu)", arg ? arg : "",
			      p->n_sent);
		return;
	}
	if (!p->replay_client) {
		command_error("replay: no plain MQTT client for %s", p->broker);
		return;
	}
	for (int i = 0; i < 200 && !MQTTAsync_isConnected(p->replay_client); i++)
		nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
	e = &p->sent[n - 1];
	pub.payload = e->wire;
	pub.payloadlen = (int)e->len;
	pub.qos = 1;
	if (MQTTAsync_sendMessage(p->replay_client, e->topic, &pub, &opts) != MQTTASYNC_SUCCESS ||
	    MQTTAsync_waitForCompletion(p->replay_client, opts.token, 10000) !=
		    MQTTASYNC_SUCCESS) {
		command_error("replay: publishing message %lu on %s failed", n, e->topic);
		return;
	}
	printf("REPLAYED n=%lu topic=%s\n", n, e->topic);
	fflush(stdout);
}

static void command_hm_confirm(struct peer *p, char **args, size_t n_args)
{
	struct join *j;
	uint64_t dev;
	uint8_t status = SRUP_STATUS_JOIN_REFUSED;

	if (n_args != 2 || srup_id_parse(args[0], &dev) != 0) {
		command_error("hm_confirm needs DEV16 VALUE");
		return;
	}
	j = find_join_by_device(p, dev);
	if (!j || j->mode != JOIN_HUMAN) {
		command_error("hm_confirm: no human-mediated join pending for %s", args[0]);
		return;
	}
	if (strlen(args[1]) == VALUE_LEN && CRYPTO_memcmp(args[1], j->value, VALUE_LEN) == 0)
		status = control(p, dev) == 0 ? SRUP_STATUS_JOIN_SUCCESS : SRUP_STATUS_JOIN_FAIL;
	OPENSSL_cleanse(args[1], strlen(args[1]));
	end_join(p, j, -1, status);
}

static void run_command(struct peer *p, char *line)
{
	char *args[64], *save = NULL;
	size_t n = 0;
	uint64_t dev;

	for (char *w = strtok_r(line, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
		if (n == sizeof(args) / sizeof(args[0])) {
			command_error("too many words");
			return;
		}
		args[n++] = w;
	}
	if (n == 0)
		return;
	if (strcmp(args[0], "send") == 0 || strcmp(args[0], "send_group") == 0) {
		command_send(p, args[0][4] == '_', args + 1, n - 1);
	} else if (strcmp(args[0], "replay") == 0 && n <= 2) {
		command_replay(p, n == 2 ? args[1] : NULL);
	} else if (strcmp(args[0], "watch") == 0) {
		char id[17];

		if (n != 2 || srup_id_parse(args[1], &dev) != 0 || control(p, dev) != 0) {
			command_error("watch needs one device ID");
			return;
		}
		srup_id_format16(dev, id);
		printf("WATCHING device=%s\n", id);
		fflush(stdout);
	} else if (strcmp(args[0], "hm_confirm") == 0) {
		command_hm_confirm(p, args + 1, n - 1);
	} else if (strcmp(args[0], "quit") == 0 && n == 1) {
		sd_event_exit(p->loop, 0);
	} else {
		command_error("unknown command '%s'", args[0]);
	}
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct peer *p = user;
	char buf[4096];
	ssize_t got = read(fd, buf, sizeof(buf));

	(void)revents;
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (got <= 0) { /* the harness closed our input: as quit */
		sd_event_source_set_enabled(s, SD_EVENT_OFF);
		sd_event_exit(p->loop, 0);
		return 0;
	}
	for (ssize_t i = 0; i < got; i++) {
		if (buf[i] != '\n') {
			if (p->line_len + 1 < sizeof(p->line))
				p->line[p->line_len++] = buf[i];
			else
				p->line_too_long = true;
			continue;
		}
		p->line[p->line_len] = '\0';
		if (p->line_too_long)
			command_error("command longer than %d bytes", COMMAND_LINE_MAX - 1);
		else
			run_command(p, p->line);
		p->line_len = 0;
		p->line_too_long = false;
	}
	return 0;
}

static void on_connected(struct srup_node *node, void *user)
{
	struct peer *p = user;
	char id[17];

	(void)node;
	if (p->ready_printed)
		return;
	p->ready_printed = true;
	srup_id_format16(p->id, id);
	printf("READY server=%s\n", id);
	fflush(stdout);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	(void)s;
	(void)si;
	sd_event_exit(((struct peer *)user)->loop, 0);
	return 0;
}

/* The key store's resolver: the sender's key from the key service. Runs
 * inside the node's receive path: bounded by the request's deadline. */
static EVP_PKEY *keyex_lookup(uint64_t id, void *user)
{
	struct peer *p = user;
	static struct reg_reply reply; /* large; the loop is single-threaded */
	char route[64], id16[17], why[400] = "";
	unsigned char *pem = NULL;
	size_t pem_len = 0;
	EVP_PKEY *key = NULL;
	enum reg_http_outcome out;

	srup_id_format16(id, id16);
	snprintf(route, sizeof(route), "get_key/%02" PRIx64, id);
	out = reg_http_call(&p->keyex, route, NULL, &reply);
	if (out != REG_HTTP_ANSWERED)
		snprintf(why, sizeof(why), "%s", reply.error);
	else if (reply.status != 200)
		snprintf(why, sizeof(why), "HTTP %ld", reply.status);
	else if (reg_base64_decode(reply.body, reply.len, &pem, &pem_len) != REG_OK)
		snprintf(why, sizeof(why), "the answer is not base64");
	else {
		BIO *bio = pem_len <= INT32_MAX ? BIO_new_mem_buf(pem, (int)pem_len) : NULL;

		key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		if (!key)
			snprintf(why, sizeof(why), "the answer is not a PEM public key");
		else if (srup_key_check(key) != SRUP_OK) {
			snprintf(why, sizeof(why), "not an RSA key of 2048..4096 bits");
			EVP_PKEY_free(key);
			key = NULL;
		}
	}
	free(pem);
	if (key)
		printf("KEYEX device=%s found\n", id16);
	else
		printf("KEYEX device=%s missing (%s)\n", id16, why);
	fflush(stdout);
	return key;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: srup-join-peer --broker \"URL [URL...]\" --id HEX --key PRIVATE.pem --peers DIR\n"
		     "                      --state DIR [--watch ID]... [--timeout SECONDS]\n"
		     "                      [--joins N] [--join-policy accept|refuse]\n"
		     "                      [--resign-status HEX] [--deregister-status HEX]\n"
		     "                      [--commands] [--verbose]\n"
		     "                      [--keyex URL [--keyex-ca FILE]]\n"
		     "                      [--ca-file F] [--cert-file F] [--key-file F]\n");
}

/* A RESPONSE status given as hex ("70", "0x70"). */
static int parse_status(const char *text, uint8_t *out)
{
	char *end;
	unsigned long v = strtoul(text, &end, 16);

	if (*text == '\0' || *end != '\0' || v > 255)
		return -1;
	*out = (uint8_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"broker", required_argument, NULL, 'b'}, {"id", required_argument, NULL, 'i'},
		{"key", required_argument, NULL, 'k'},	  {"peers", required_argument, NULL, 'p'},
		{"state", required_argument, NULL, 's'},  {"watch", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 't'}, {"joins", required_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},
		{"join-policy", required_argument, NULL, 'J'},
		{"resign-status", required_argument, NULL, 'R'},
		{"deregister-status", required_argument, NULL, 'D'},
		{"commands", no_argument, NULL, 'C'},
		{"keyex", required_argument, NULL, 'X'},
		{"keyex-ca", required_argument, NULL, 'Y'},
		{"ca-file", required_argument, NULL, 'A'},
		{"cert-file", required_argument, NULL, 'E'},
		{"key-file", required_argument, NULL, 'K'},
		{NULL, 0, NULL, 0},
	};
	static struct peer p;
	struct srup_node_config ncfg = {.role = SRUP_NODE_ROLE_SERVER};
	const char *key_path = NULL, *peers_dir = NULL;
	uint64_t watch[64];
	size_t n_watch = 0;
	char detail[512] = "";
	bool have_id = false;
	sigset_t mask;
	int opt, rc = 1;

	p.timeout_s = 150;
	p.accept_joins = true;
	p.resign_status = SRUP_STATUS_RESIGN_SUCCESS;
	p.deregister_status = SRUP_STATUS_DEREGISTER_SUCCESS;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'b':
			snprintf(ncfg.broker, sizeof(ncfg.broker), "%s", optarg);
			break;
		case 'i':
			have_id = srup_id_parse(optarg, &p.id) == 0;
			break;
		case 'k':
			key_path = optarg;
			break;
		case 'p':
			peers_dir = optarg;
			break;
		case 's':
			snprintf(ncfg.state_dir, sizeof(ncfg.state_dir), "%s", optarg);
			break;
		case 'w':
			if (n_watch == 64 || srup_id_parse(optarg, &watch[n_watch]) != 0) {
				usage(stderr);
				return 2;
			}
			n_watch++;
			break;
		case 't':
			p.timeout_s = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			p.joins_wanted = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'v':
			srup_log_set_level(LOG_DEBUG);
			break;
		case 'J':
			if (strcmp(optarg, "accept") != 0 && strcmp(optarg, "refuse") != 0) {
				usage(stderr);
				return 2;
			}
			p.accept_joins = optarg[0] == 'a';
			break;
		case 'R':
		case 'D':
			if (parse_status(optarg, opt == 'R' ? &p.resign_status
							    : &p.deregister_status) != 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'C':
			p.commands = true;
			break;
		case 'X':
			if (strncmp(optarg, "https://", 8) != 0) {
				usage(stderr);
				return 2;
			}
			p.keyex.base = optarg;
			p.keyex.timeout_seconds = 5;
			break;
		case 'Y':
			p.keyex.ca_file = optarg;
			break;
		case 'A':
			snprintf(ncfg.ca_file, sizeof(ncfg.ca_file), "%s", optarg);
			break;
		case 'E':
			snprintf(ncfg.cert_file, sizeof(ncfg.cert_file), "%s", optarg);
			break;
		case 'K':
			snprintf(ncfg.key_file, sizeof(ncfg.key_file), "%s", optarg);
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!have_id || !key_path || !peers_dir || !ncfg.broker[0] || !ncfg.state_dir[0] ||
	    p.timeout_s == 0) {
		usage(stderr);
		return 2;
	}
	timeout_peer = &p;
	ncfg.id = p.id;
	snprintf(p.broker, sizeof(p.broker), "%s", ncfg.broker);
	if (srup_key_load_private(key_path, &p.identity, detail, sizeof(detail)) != SRUP_KEYS_OK ||
	    srup_keystore_open(peers_dir, &p.keys, detail, sizeof(detail)) != SRUP_KEYS_OK) {
		srup_log(LOG_ERR, "%s", detail);
		goto out;
	}
	if (p.keyex.base) {
		if (reg_http_init() != 0)
			goto out;
		srup_keystore_set_resolver(p.keys, keyex_lookup, &p);
	}
	if (sd_event_new(&p.loop) < 0)
		goto out;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sd_event_add_signal(p.loop, NULL, SIGTERM, on_signal, &p);
	sd_event_add_signal(p.loop, NULL, SIGINT, on_signal, &p);
	if (srup_node_new(p.loop, &ncfg, p.identity, p.keys, &p.node, detail, sizeof(detail)) !=
	    SRUP_NODE_OK) {
		srup_log(LOG_ERR, "%s", detail);
		goto out;
	}
	for (size_t i = 0; i < n_watch; i++)
		if (control(&p, watch[i]) != 0)
			goto out;
	if (srup_node_on(p.node, SRUP_TYPE_OBS_JOIN_REQUEST, SRUP_NODE_ANY_SENDER,
			 on_obs_join_request, &p) != SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_JOIN_REQUEST, SRUP_NODE_ANY_SENDER, on_join_request,
			 &p) != SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_HM_JOIN_REQUEST, SRUP_NODE_ANY_SENDER,
			 on_hm_join_request, &p) != SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_RESIGN_REQUEST, SRUP_NODE_ANY_SENDER,
			 on_resign_request, &p) != SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_DEREGISTER_REQUEST, SRUP_NODE_ANY_SENDER,
			 on_deregister_request, &p) != SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_DATA, SRUP_NODE_ANY_SENDER, on_data, &p) !=
		    SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_RESPONSE, SRUP_NODE_ANY_SENDER, on_observer_response,
			 &p) != SRUP_NODE_OK)
		goto out;
	if (p.commands) {
		int flags = fcntl(STDIN_FILENO, F_GETFL);

		if (flags < 0 || fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK) < 0 ||
		    sd_event_add_io(p.loop, NULL, STDIN_FILENO, EPOLLIN, on_stdin, &p) < 0) {
			srup_log(LOG_ERR, "--commands: standard input must be a pipe or terminal");
			goto out;
		}
		if (replay_client_connect(&p) != 0)
			srup_log(LOG_WARNING, "no plain MQTT client for %s: replay unavailable",
				 p.broker);
	}
	if (srup_node_connect(p.node, on_connected, &p) != SRUP_NODE_OK)
		goto out;
	rc = sd_event_loop(p.loop) < 0 ? 1 : 0;
	srup_node_flush(p.node, 3000);
out:
	for (size_t i = 0; i < MAX_JOINS; i++)
		sd_event_source_disable_unref(p.joins[i].timer);
	if (p.replay_client) {
		MQTTAsync_disconnect(p.replay_client, NULL);
		MQTTAsync_destroy(&p.replay_client);
	}
	for (size_t i = 0; i < p.n_sent; i++)
		free(p.sent[i].wire);
	free(p.sent);
	free(p.controlled);
	srup_node_free(p.node);
	srup_keystore_free(p.keys);
	EVP_PKEY_free(p.identity);
	sd_event_unref(p.loop);
	return rc;
}
