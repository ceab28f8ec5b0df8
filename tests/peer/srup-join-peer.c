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
 * One line per event on stdout, for the harness to read:
 *   READY server=<id16>
 *   JOIN_REQUEST device=<id16> observer=<id16>
 *   OUTCOME device=<id16> observer=<id16> observer_status=0x60|none
 *           status=0x50 server_ms=<ms from request to verdict> */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "srup.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_node.h"

#define MAX_JOINS 4096
#define UUID_TEXT_LEN SRUP_UUID_TEXT_LEN
#define VALUE_LEN SRUP_UUID_HEX_LEN

struct join {
	bool used;
	uint64_t device;
	uint64_t observer;
	char response_token[UUID_TEXT_LEN + 1]; /* OBS_JOIN_RESP's: the verdict echoes it */
	char observe_token[UUID_TEXT_LEN + 1];  /* OBSERVE_REQ's: the observer echoes it */
	uint64_t started_us;
	sd_event_source *timer;
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
	struct join joins[MAX_JOINS];
};

static uint64_t now_us(struct peer *p)
{
	uint64_t usec = 0;

	sd_event_now(p->loop, CLOCK_MONOTONIC, &usec);
	return usec;
}

static int send_to(struct peer *p, struct srup_msg *msg, uint64_t to, const char *token)
{
	char topic[SRUP_TOPIC_MAX];
	enum srup_node_err err;

	srup_topic_device(to, topic);
	if (srup_bytes_set(&msg->token, token, strlen(token)) != SRUP_OK)
		return -1;
	err = srup_node_send(p->node, msg, to, topic);
	if (err != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot send to %s: %s", topic, srup_node_strerror(err));
		return -1;
	}
	return 0;
}

static void send_verdict(struct peer *p, uint64_t device, const char *token, uint8_t status)
{
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_RESPONSE);

	if (!msg)
		return;
	msg->status = status;
	send_to(p, msg, device, token);
	srup_msg_free(msg);
}

static void end_join(struct peer *p, struct join *j, int observer_status, uint8_t status)
{
	char dev[17], obs[17], ostat[8] = "none";

	send_verdict(p, j->device, j->response_token, status);
	srup_id_format16(j->device, dev);
	srup_id_format16(j->observer, obs);
	if (observer_status >= 0)
		snprintf(ostat, sizeof(ostat), "0x%02x", (unsigned)(observer_status & 0xff));
	printf("OUTCOME device=%s observer=%s observer_status=%s status=0x%02x server_ms=%.3f\n",
	       dev, obs, ostat, status, (double)(now_us(p) - j->started_us) / 1000.0);
	fflush(stdout);
	sd_event_source_disable_unref(j->timer);
	memset(j, 0, sizeof(*j));
	if (p->joins_wanted && ++p->outcomes >= p->joins_wanted)
		sd_event_exit(p->loop, 0);
}

static struct join *find_join_by_observe_token(struct peer *p, uint64_t observer,
					       const struct srup_bytes *token)
{
	for (size_t i = 0; i < MAX_JOINS; i++) {
		struct join *j = &p->joins[i];

		if (j->used && j->observer == observer && token->len == UUID_TEXT_LEN &&
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

	(void)node;
	(void)topic;
	if (!j) {
		char from[17];

		srup_id_format16(msg->sender_id, from);
		srup_log(LOG_WARNING, "RESPONSE 0x%02x from %s matches no pending join (token); "
			 "ignored", msg->status, from);
		return;
	}
	switch (msg->status) {
	case SRUP_STATUS_OBSERVED_JOIN_VALID:
		verdict = SRUP_STATUS_JOIN_SUCCESS;
		/* As pySRUP's accept_join: the device is now one of ours. */
		srup_node_watch_device(p->node, j->device);
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

static void on_obs_join_request(struct srup_node *node, const struct srup_msg *msg,
				const char *topic, void *user)
{
	struct peer *p = user;
	EVP_PKEY *observer_key = srup_keystore_lookup(p->keys, msg->observer_id);
	char expect_topic[SRUP_TOPIC_MAX], dev[17], obs[17];
	char value[VALUE_LEN + 1];
	struct srup_msg *observe = NULL, *resp = NULL;
	struct join *j;
	enum srup_err err;

	(void)node;
	srup_id_format16(msg->sender_id, dev);
	srup_id_format16(msg->observer_id, obs);
	/* The device asks for itself only. */
	srup_topic_server_join(p->id, msg->sender_id, expect_topic);
	if (strcmp(topic, expect_topic) != 0) {
		srup_log(LOG_WARNING, "OBS_JOIN_REQ from %s on %s, not %s; ignored", dev, topic,
			 expect_topic);
		return;
	}
	printf("JOIN_REQUEST device=%s observer=%s\n", dev, obs);
	fflush(stdout);

	j = find_join_by_device(p, msg->sender_id);
	if (j) /* a new request replaces the old join */
		end_join(p, j, -1, SRUP_STATUS_JOIN_FAIL);
	for (j = p->joins; j < p->joins + MAX_JOINS && j->used; j++)
		;
	if (j == p->joins + MAX_JOINS || !observer_key) {
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

	memset(j, 0, sizeof(*j));
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

static void usage(FILE *out)
{
	fprintf(out, "usage: srup-join-peer --broker URL --id HEX --key PRIVATE.pem --peers DIR\n"
		     "                      --state DIR [--watch ID]... [--timeout SECONDS]\n"
		     "                      [--joins N] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"broker", required_argument, NULL, 'b'}, {"id", required_argument, NULL, 'i'},
		{"key", required_argument, NULL, 'k'},	  {"peers", required_argument, NULL, 'p'},
		{"state", required_argument, NULL, 's'},  {"watch", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 't'}, {"joins", required_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},	  {NULL, 0, NULL, 0},
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
	if (srup_key_load_private(key_path, &p.identity, detail, sizeof(detail)) != SRUP_KEYS_OK ||
	    srup_keystore_open(peers_dir, &p.keys, detail, sizeof(detail)) != SRUP_KEYS_OK) {
		srup_log(LOG_ERR, "%s", detail);
		goto out;
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
		srup_node_watch_device(p.node, watch[i]);
	if (srup_node_on(p.node, SRUP_TYPE_OBS_JOIN_REQUEST, SRUP_NODE_ANY_SENDER,
			 on_obs_join_request, &p) != SRUP_NODE_OK ||
	    srup_node_on(p.node, SRUP_TYPE_RESPONSE, SRUP_NODE_ANY_SENDER, on_observer_response,
			 &p) != SRUP_NODE_OK ||
	    srup_node_connect(p.node, on_connected, &p) != SRUP_NODE_OK)
		goto out;
	rc = sd_event_loop(p.loop) < 0 ? 1 : 0;
	srup_node_flush(p.node, 3000);
out:
	for (size_t i = 0; i < MAX_JOINS; i++)
		sd_event_source_disable_unref(p.joins[i].timer);
	srup_node_free(p.node);
	srup_keystore_free(p.keys);
	EVP_PKEY_free(p.identity);
	sd_event_unref(p.loop);
	return rc;
}
