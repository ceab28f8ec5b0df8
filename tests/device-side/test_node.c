/* The SRUP node against a real Mosquitto started by the test: message
 * exchange both ways, every rejection of the receive pipeline, a broker
 * restart while publishing, and sequence IDs across a node restart.
 *
 * The loop is driven with sd_event_run() until a condition holds or a
 * deadline passes; deadlines only bound the wait, they are never the
 * thing asserted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <systemd/sd-event.h>

#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_inbound.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_node.h"
#include "srup_seqstore.h"
#include "test_broker.h"

#define SERVER_ID 0x5e5e5e01ull
#define DEVICE_ID 0xd0d0d0d0d0d0d002ull
#define OTHER_ID 0x0bad0003ull   /* a known key, but not our server */
#define UNKNOWN_ID 0x77777777ull /* nobody knows its key */
#define WAIT_MS 15000u

static EVP_PKEY *server_key, *device_key, *other_key;

/* What a handler saw. */
struct recorder {
	unsigned count;
	uint8_t type;
	uint8_t status;
	uint64_t sequence_id;
	uint64_t sender_id;
	uint64_t observer_id;
	char topic[SRUP_TOPIC_MAX];
	char token[64];
};

struct world {
	struct test_broker *broker;
	sd_event *loop;
	char dir[4096];
	char log_path[4200];
	int saved_stderr;
	struct srup_keystore *server_peers, *device_peers;
	struct srup_node *server, *device;
	struct recorder at_server, at_device;
	unsigned server_connects, device_connects;
	/* TLS: the CA, and the client certificate both nodes present. */
	char ca_file[256], cert_file[256], key_file[256];
};

static void record(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		   void *user)
{
	struct recorder *r = user;

	(void)node;
	r->count++;
	r->type = msg->type;
	r->status = msg->status;
	r->sequence_id = msg->sequence_id;
	r->sender_id = msg->sender_id;
	r->observer_id = msg->observer_id;
	snprintf(r->topic, sizeof(r->topic), "%s", topic);
	snprintf(r->token, sizeof(r->token), "%.*s", (int)msg->token.len,
		 (const char *)msg->token.data);
}

static void count_connect(struct srup_node *node, void *user)
{
	(void)node;
	(*(unsigned *)user)++;
}

/* ---- world setup ------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	if (srup_key_generate(2048, &server_key) != SRUP_KEYS_OK ||
	    srup_key_generate(2048, &device_key) != SRUP_KEYS_OK ||
	    srup_key_generate(2048, &other_key) != SRUP_KEYS_OK)
		return -1;
	srup_log_set_level(LOG_DEBUG);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(server_key);
	EVP_PKEY_free(device_key);
	EVP_PKEY_free(other_key);
	return 0;
}

/* Certificates for a TLS broker on 127.0.0.1 and a client, made with the
 * openssl tool; -1 if it is not installed. */
static int make_certificates(struct world *w)
{
	static const char *const openssl_paths[] = {"/usr/bin/openssl", "/usr/local/bin/openssl"};
	const char *openssl = NULL;
	char ca_key[300], srv_key[300], srv_csr[300], srv_pem[300], cli_csr[300], serial[300];

	for (size_t i = 0; i < sizeof(openssl_paths) / sizeof(openssl_paths[0]); i++)
		if (access(openssl_paths[i], X_OK) == 0)
			openssl = openssl_paths[i];
	if (!openssl)
		return -1;
#define PATH_IN(buf, name)                                                              \
	do {                                                                            \
		int n_ = snprintf(buf, sizeof(buf), "%s/%s", w->dir, name);             \
		if (n_ < 0 || (size_t)n_ >= sizeof(buf))                                \
			return -1;                                                      \
	} while (0)
	PATH_IN(w->ca_file, "ca.pem");
	PATH_IN(w->cert_file, "client.pem");
	PATH_IN(w->key_file, "client.key");
	PATH_IN(ca_key, "ca.key");
	PATH_IN(srv_key, "server.key");
	PATH_IN(srv_csr, "server.csr");
	PATH_IN(srv_pem, "server.pem");
	PATH_IN(cli_csr, "client.csr");
	PATH_IN(serial, "ca.srl");
#undef PATH_IN
	char *ca[] = {(char *)openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
		      ca_key, "-out", w->ca_file, "-days", "2", "-subj", "/CN=srup-test-ca", NULL};
	char *srv_req[] = {(char *)openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
			   srv_key, "-out", srv_csr, "-subj", "/CN=127.0.0.1", "-addext",
			   "subjectAltName=IP:127.0.0.1", NULL};
	char *srv_sign[] = {(char *)openssl, "x509", "-req", "-in", srv_csr, "-CA", w->ca_file,
			    "-CAkey", ca_key, "-CAserial", serial, "-CAcreateserial", "-out",
			    srv_pem, "-days", "2", "-copy_extensions", "copy", NULL};
	char *cli_req[] = {(char *)openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
			   w->key_file, "-out", cli_csr, "-subj", "/CN=srup-test-client", NULL};
	char *cli_sign[] = {(char *)openssl, "x509", "-req", "-in", cli_csr, "-CA", w->ca_file,
			    "-CAkey", ca_key, "-CAserial", serial, "-out", w->cert_file, "-days",
			    "2", NULL};
	if (test_run(ca, 60000) != 0 || test_run(srv_req, 60000) != 0 ||
	    test_run(srv_sign, 60000) != 0 || test_run(cli_req, 60000) != 0 ||
	    test_run(cli_sign, 60000) != 0)
		return -1;
	struct test_broker_tls tls = {.ca_file = w->ca_file,
				      .cert_file = srv_pem,
				      .key_file = srv_key,
				      .require_certificate = true};
	return test_broker_start_tls(&tls, &w->broker);
}

static int setup_world(void **state, bool tls)
{
	struct world *w = calloc(1, sizeof(*w));
	int fd;

	if (!w || test_tmpdir("srup-node-test", w->dir) != 0)
		return -1;
	/* The node logs every rejection on stderr: capture it to check the
	 * reasons, and replay it at teardown for ctest's output. */
	snprintf(w->log_path, sizeof(w->log_path), "%s/stderr.log", w->dir);
	fflush(stderr);
	w->saved_stderr = dup(STDERR_FILENO);
	fd = open(w->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (fd < 0 || w->saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0)
		return -1;
	close(fd);
	*state = w; /* teardown restores stderr even if the rest fails */
	if (tls ? make_certificates(w) != 0 : test_broker_start(&w->broker) != 0)
		return -1;
	if (sd_event_new(&w->loop) < 0)
		return -1;
	if (srup_keystore_open(NULL, &w->server_peers, NULL, 0) != SRUP_KEYS_OK ||
	    srup_keystore_open(NULL, &w->device_peers, NULL, 0) != SRUP_KEYS_OK)
		return -1;
	/* The server knows the device and the stranger; the device knows
	 * the server and the stranger (so that "not allowed" is reachable). */
	if (srup_keystore_add(w->server_peers, DEVICE_ID, device_key) != SRUP_KEYS_OK ||
	    srup_keystore_add(w->server_peers, OTHER_ID, other_key) != SRUP_KEYS_OK ||
	    srup_keystore_add(w->device_peers, SERVER_ID, server_key) != SRUP_KEYS_OK ||
	    srup_keystore_add(w->device_peers, OTHER_ID, other_key) != SRUP_KEYS_OK ||
	    srup_keystore_add(w->device_peers, DEVICE_ID, device_key) != SRUP_KEYS_OK)
		return -1;
	return 0;
}

static int setup(void **state)
{
	return setup_world(state, false);
}

static int setup_tls(void **state)
{
	return setup_world(state, true);
}

static int teardown(void **state)
{
	struct world *w = *state;
	char buf[4096];
	ssize_t n;
	int fd;

	srup_node_free(w->server);
	srup_node_free(w->device);
	if (w->server_peers)
		srup_keystore_free(w->server_peers);
	if (w->device_peers)
		srup_keystore_free(w->device_peers);
	sd_event_unref(w->loop);
	test_broker_free(w->broker);
	fflush(stderr);
	dup2(w->saved_stderr, STDERR_FILENO);
	close(w->saved_stderr);
	fd = open(w->log_path, O_RDONLY);
	if (fd >= 0) {
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (write(STDERR_FILENO, buf, (size_t)n) != n)
				break;
		close(fd);
	}
	test_rm_rf(w->dir);
	free(w);
	return 0;
}

static bool log_contains(struct world *w, const char *needle)
{
	FILE *f;
	char line[2048];
	bool found = false;

	fflush(stderr);
	f = fopen(w->log_path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static void state_dir(struct world *w, const char *name, char out[256])
{
	int n = snprintf(out, 256, "%s/%s", w->dir, name);

	assert_true(n > 0 && n < 256);
}

static enum srup_node_err make_node(struct world *w, enum srup_node_role role, uint64_t id,
				    EVP_PKEY *key, struct srup_keystore *peers, const char *state,
				    struct srup_node **out, char *detail, size_t detail_len)
{
	struct srup_node_config cfg = {.role = role, .id = id};

	snprintf(cfg.broker, sizeof(cfg.broker), "%s", test_broker_url(w->broker));
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", w->ca_file);
	snprintf(cfg.cert_file, sizeof(cfg.cert_file), "%s", w->cert_file);
	snprintf(cfg.key_file, sizeof(cfg.key_file), "%s", w->key_file);
	state_dir(w, state, cfg.state_dir);
	cfg.reconnect_min_seconds = 1;
	cfg.reconnect_max_seconds = 2;
	return srup_node_new(w->loop, &cfg, key, peers, out, detail, detail_len);
}

static void make_server(struct world *w)
{
	char detail[512] = "";

	if (make_node(w, SRUP_NODE_ROLE_SERVER, SERVER_ID, server_key, w->server_peers, "server",
		      &w->server, detail, sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("server node: %s", detail);
	assert_int_equal(srup_node_watch_device(w->server, DEVICE_ID), SRUP_NODE_OK);
	assert_int_equal(srup_node_on(w->server, SRUP_TYPE_OBS_JOIN_REQUEST, SRUP_NODE_ANY_SENDER,
				      record, &w->at_server),
			 SRUP_NODE_OK);
	assert_int_equal(srup_node_on(w->server, SRUP_TYPE_RESPONSE, SRUP_NODE_ANY_SENDER, record,
				      &w->at_server),
			 SRUP_NODE_OK);
}

static void make_device(struct world *w)
{
	char detail[512] = "";

	if (make_node(w, SRUP_NODE_ROLE_DEVICE, DEVICE_ID, device_key, w->device_peers, "device",
		      &w->device, detail, sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("device node: %s", detail);
	/* RESPONSE only from our server; OBS_JOIN_RESP has no handler. */
	assert_int_equal(srup_node_on(w->device, SRUP_TYPE_RESPONSE, SERVER_ID, record,
				      &w->at_device),
			 SRUP_NODE_OK);
}

/* Run the loop until cond(w) or the deadline; returns cond(w). */
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

static bool both_connected(struct world *w)
{
	return (!w->server || srup_node_is_connected(w->server)) &&
	       (!w->device || srup_node_is_connected(w->device));
}

static void connect_all(struct world *w)
{
	if (w->server)
		assert_int_equal(srup_node_connect(w->server, count_connect, &w->server_connects),
				 SRUP_NODE_OK);
	if (w->device)
		assert_int_equal(srup_node_connect(w->device, count_connect, &w->device_connects),
				 SRUP_NODE_OK);
	assert_true(run_until(w, both_connected, WAIT_MS));
}

static struct srup_node_stats stats_of(struct srup_node *n)
{
	struct srup_node_stats s;

	srup_node_get_stats(n, &s);
	return s;
}

/* ---- messages made by hand, published by mosquitto_pub ---------------- */

/* A signed message, encoded: type, sender, sequence, signed by key. */
static uint8_t *craft(uint8_t type, uint64_t sender, uint64_t seq, EVP_PKEY *key,
		      const char *token, size_t *len)
{
	struct srup_msg *m = srup_msg_new(type);
	uint8_t *wire = NULL;

	assert_non_null(m);
	m->sender_id = sender;
	m->sequence_id = seq;
	m->status = SRUP_STATUS_JOIN_SUCCESS;
	m->observer_id = 0x0b5e;
	assert_int_equal(srup_bytes_set(&m->token, token, strlen(token)), SRUP_OK);
	assert_int_equal(srup_msg_sign(m, key), SRUP_OK);
	assert_int_equal(srup_msg_encode(m, &wire, len), SRUP_OK);
	srup_msg_free(m);
	return wire;
}

static void publish_raw(struct world *w, const char *topic, const void *payload, size_t len)
{
	char file[4300], port[16];
	FILE *f;

	snprintf(file, sizeof(file), "%s/payload.bin", w->dir);
	f = fopen(file, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(payload, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	snprintf(port, sizeof(port), "%u", (unsigned)test_broker_port(w->broker));
	char *argv[] = {"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t",
			(char *)topic, len ? "-f" : "-n", len ? file : NULL, NULL};
	assert_int_equal(test_run(argv, 10000), 0);
}

static void publish_crafted(struct world *w, const char *topic, uint8_t type, uint64_t sender,
			    uint64_t seq, EVP_PKEY *key, const char *token)
{
	size_t len;
	uint8_t *wire = craft(type, sender, seq, key, token, &len);

	publish_raw(w, topic, wire, len);
	free(wire);
}

static unsigned want_device_dropped, want_device_accepted, want_device_own;
static bool device_counts_reached(struct world *w)
{
	struct srup_node_stats s = stats_of(w->device);

	return s.dropped >= want_device_dropped && s.accepted >= want_device_accepted &&
	       s.ignored_own >= want_device_own;
}

static void wait_device_counts(struct world *w, unsigned dropped, unsigned accepted, unsigned own)
{
	struct srup_node_stats s;

	want_device_dropped = dropped;
	want_device_accepted = accepted;
	want_device_own = own;
	run_until(w, device_counts_reached, WAIT_MS);
	s = stats_of(w->device);
	if (s.dropped != dropped || s.accepted != accepted || s.ignored_own != own)
		fail_msg("device: dropped %" PRIu64 " accepted %" PRIu64 " own %" PRIu64
			 ", want %u %u %u",
			 s.dropped, s.accepted, s.ignored_own, dropped, accepted, own);
}

/* ---- tests -------------------------------------------------------------- */

static bool server_got_one(struct world *w)
{
	return w->at_server.count >= 1;
}

static bool device_got_one(struct world *w)
{
	return w->at_device.count >= 1;
}

static bool server_saw_own_echo(struct world *w)
{
	return stats_of(w->server).ignored_own >= 1;
}

/* Sockets of this process connected to port, and how many of them have
 * Nagle's algorithm off. */
static void count_sockets_to(uint16_t port, unsigned *total, unsigned *nodelay)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	*total = *nodelay = 0;
	assert_non_null(d);
	while ((de = readdir(d))) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int fd = atoi(de->d_name), on = 0;
		socklen_t on_len = sizeof(on);

		if (de->d_name[0] == '.' || fd == dirfd(d))
			continue;
		if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 ||
		    peer.sin_family != AF_INET || ntohs(peer.sin_port) != port)
			continue;
		(*total)++;
		if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &on_len) == 0 && on)
			(*nodelay)++;
	}
	closedir(d);
}

static void test_exchange_both_ways(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];
	struct srup_msg *m;

	make_server(w);
	make_device(w);
	connect_all(w);
	assert_int_equal(w->server_connects, 1);
	assert_int_equal(w->device_connects, 1);
	/* Each node's connection runs without Nagle's delay (about 40 ms per
	 * hop otherwise). */
	unsigned sockets, nodelay;
	count_sockets_to(test_broker_port(w->broker), &sockets, &nodelay);
	assert_int_equal(sockets, 2);
	assert_int_equal(nodelay, 2);
	/* GENERIC carries no signature: nothing may act on it. */
	assert_int_equal(srup_node_on(w->device, SRUP_TYPE_GENERIC, SRUP_NODE_ANY_SENDER, record,
				      &w->at_device),
			 SRUP_NODE_E_ARG);

	/* Device -> server: OBS_JOIN_REQ on SRUP/servers/<s>/<d>. */
	m = srup_msg_new(SRUP_TYPE_OBS_JOIN_REQUEST);
	assert_non_null(m);
	assert_int_equal(srup_bytes_set(&m->token, "tok-join", 8), SRUP_OK);
	m->observer_id = 0xb1b2;
	srup_topic_server_join(SERVER_ID, DEVICE_ID, topic);
	assert_string_equal(topic, "SRUP/servers/5e5e5e01/d0d0d0d0d0d0d002");
	assert_int_equal(srup_node_send(w->device, m, SERVER_ID, topic), SRUP_NODE_OK);
	assert_int_equal(m->sender_id, DEVICE_ID);
	assert_int_equal(m->sequence_id, 1);
	srup_msg_free(m);
	assert_true(run_until(w, server_got_one, WAIT_MS));
	assert_int_equal(w->at_server.type, SRUP_TYPE_OBS_JOIN_REQUEST);
	assert_int_equal(w->at_server.sender_id, DEVICE_ID);
	assert_int_equal(w->at_server.sequence_id, 1);
	assert_int_equal(w->at_server.observer_id, 0xb1b2);
	assert_string_equal(w->at_server.token, "tok-join");
	assert_string_equal(w->at_server.topic, topic);

	/* Server -> device: RESPONSE on SRUP/<d>, sequence continuing the
	 * pair's shared counter (accepted 1 from the device -> send 2). */
	m = srup_msg_new(SRUP_TYPE_RESPONSE);
	assert_non_null(m);
	assert_int_equal(srup_bytes_set(&m->token, "tok-join", 8), SRUP_OK);
	m->status = SRUP_STATUS_JOIN_SUCCESS;
	srup_topic_device(DEVICE_ID, topic);
	assert_string_equal(topic, "SRUP/d0d0d0d0d0d0d002");
	assert_int_equal(srup_node_send(w->server, m, DEVICE_ID, topic), SRUP_NODE_OK);
	assert_int_equal(m->sequence_id, 2);
	srup_msg_free(m);
	assert_true(run_until(w, device_got_one, WAIT_MS));
	assert_int_equal(w->at_device.type, SRUP_TYPE_RESPONSE);
	assert_int_equal(w->at_device.status, SRUP_STATUS_JOIN_SUCCESS);
	assert_int_equal(w->at_device.sender_id, SERVER_ID);
	assert_int_equal(w->at_device.sequence_id, 2);

	/* The server watches SRUP/<d>/#, so its own RESPONSE comes back:
	 * ignored, not counted as a rejection. */
	assert_true(run_until(w, server_saw_own_echo, WAIT_MS));
	assert_int_equal(stats_of(w->server).dropped, 0);
	assert_int_equal(stats_of(w->server).accepted, 1);
	assert_int_equal(stats_of(w->server).sent, 1);
	assert_int_equal(stats_of(w->device).accepted, 1);
	assert_int_equal(srup_node_flush(w->server, WAIT_MS), SRUP_NODE_OK);
	assert_int_equal(srup_node_flush(w->device, WAIT_MS), SRUP_NODE_OK);
}

/* A RESPONSE with token and status from one node to peer on topic. */
static void send_response(struct srup_node *from, uint64_t peer, const char *topic,
			  const char *token, uint8_t status)
{
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_RESPONSE);

	assert_non_null(m);
	assert_int_equal(srup_bytes_set(&m->token, token, strlen(token)), SRUP_OK);
	m->status = status;
	assert_int_equal(srup_node_send(from, m, peer, topic), SRUP_NODE_OK);
	srup_msg_free(m);
}

/* A handler that holds what it handles (as srup-observerd does). */
struct holder {
	unsigned count;
	uint64_t hold;
	uint64_t sequence_id;
};

static void hold_it(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		    void *user)
{
	struct holder *h = user;

	(void)topic;
	h->count++;
	h->hold = srup_node_hold(node);
	h->sequence_id = msg->sequence_id;
}

static struct holder *g_holder;

static bool held_once(struct world *w)
{
	(void)w;
	return g_holder->count >= 1;
}

/* Records in the slot file (slots that hold one). */
static unsigned records_in_slots(const char *path)
{
	static uint8_t slot[SRUP_INBOUND_SLOT_SIZE];
	struct srup_inbound_slot v;
	unsigned n = 0;
	FILE *fp = fopen(path, "rb");

	assert_non_null(fp);
	while (fread(slot, 1, sizeof(slot), fp) == sizeof(slot))
		n += srup_inbound_parse_slot(slot, sizeof(slot), &v) == SRUP_INBOUND_OK && v.id;
	fclose(fp);
	return n;
}

/* The device's inbound records on disk: files of their own, and slots of
 * inbound/slots in use. */
static unsigned inbound_files(struct world *w)
{
	char path[4200], slots[4300];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/device/inbound", w->dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, "slots") == 0) {
			snprintf(slots, sizeof(slots), "%s/slots", path);
			n += records_in_slots(slots);
			continue;
		}
		n += de->d_name[0] != '.';
	}
	closedir(d);
	return n;
}

static void make_holding_device(struct world *w, struct holder *h)
{
	char detail[512] = "";

	if (make_node(w, SRUP_NODE_ROLE_DEVICE, DEVICE_ID, device_key, w->device_peers, "device",
		      &w->device, detail, sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("device node: %s", detail);
	assert_int_equal(srup_node_on(w->device, SRUP_TYPE_RESPONSE, SERVER_ID, hold_it, h),
			 SRUP_NODE_OK);
}

static void sent_done(struct srup_node *node, bool acknowledged, void *user)
{
	(void)node;
	*(int *)user = acknowledged ? 1 : -1;
}

static int g_sent_outcome;

static bool sent_settled(struct world *w)
{
	(void)w;
	return g_sent_outcome != 0;
}

/* A message its handler held is on disk until released, and every new
 * node on the same state hands it to the handler again (as accepted: the
 * replay rule does not drop it); released, it is gone. */
static void test_held_message_handled_again_after_restart(void **state)
{
	struct world *w = *state;
	struct holder first = {0}, again = {0}, after = {0};
	char topic[SRUP_TOPIC_MAX];
	struct srup_msg *m;

	make_server(w);
	make_holding_device(w, &first);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	send_response(w->server, DEVICE_ID, topic, "tok-held", SRUP_STATUS_JOIN_SUCCESS);
	g_holder = &first;
	assert_true(run_until(w, held_once, WAIT_MS));
	assert_int_not_equal(first.hold, 0);
	assert_int_equal(inbound_files(w), 1);

	/* As after a crash: the node goes, the record stays. */
	srup_node_free(w->device);
	w->device = NULL;
	make_holding_device(w, &again);
	g_holder = &again;
	assert_true(run_until(w, held_once, WAIT_MS));
	assert_int_equal(again.hold, first.hold);
	assert_int_equal(again.sequence_id, first.sequence_id);
	assert_true(log_contains(w, "accepted before a restart, handled again"));

	/* The device's tracked send hears of the broker's PUBACK. */
	assert_int_equal(srup_node_connect(w->device, count_connect, &w->device_connects),
			 SRUP_NODE_OK);
	assert_true(run_until(w, both_connected, WAIT_MS));
	m = srup_msg_new(SRUP_TYPE_OBS_JOIN_REQUEST);
	assert_non_null(m);
	assert_int_equal(srup_bytes_set(&m->token, "tok-trk", 7), SRUP_OK);
	srup_topic_server_join(SERVER_ID, DEVICE_ID, topic);
	g_sent_outcome = 0;
	assert_int_equal(srup_node_send_tracked(w->device, m, SERVER_ID, topic, sent_done,
						&g_sent_outcome),
			 SRUP_NODE_OK);
	srup_msg_free(m);
	assert_true(run_until(w, sent_settled, WAIT_MS));
	assert_int_equal(g_sent_outcome, 1);

	srup_node_release(w->device, again.hold);
	assert_int_equal(inbound_files(w), 0);
	srup_node_free(w->device);
	w->device = NULL;
	make_holding_device(w, &after);
	connect_all(w);
	assert_int_equal(after.count, 0);
}

static void test_replay_dropped(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];
	size_t len;
	uint8_t *wire;

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	wire = craft(SRUP_TYPE_RESPONSE, SERVER_ID, 5, server_key, "tok-replay", &len);
	publish_raw(w, topic, wire, len);
	wait_device_counts(w, 0, 1, 0);
	/* The same bytes again. */
	publish_raw(w, topic, wire, len);
	wait_device_counts(w, 1, 1, 0);
	free(wire);
	/* And an older sequence ID, validly signed. */
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 4, server_key, "tok-old");
	wait_device_counts(w, 2, 1, 0);
	assert_int_equal(w->at_device.count, 1);
	assert_true(log_contains(w, "dropped message on SRUP/d0d0d0d0d0d0d002: replayed sequence "
				    "id 5 <= last accepted 5"));
	assert_true(log_contains(w, "replayed sequence id 4 <= last accepted 5"));
	assert_int_equal(stats_of(w->device).dropped_by[SRUP_NODE_DROP_REPLAY], 2);
	assert_int_equal(stats_of(w->device).dropped_by[SRUP_NODE_DROP_SIGNATURE], 0);
	/* A fresh one is still accepted. */
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 6, server_key, "tok-new");
	wait_device_counts(w, 2, 2, 0);
	assert_int_equal(w->at_device.sequence_id, 6);
}

static void test_replay_dropped_after_node_restart(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];
	size_t len;
	uint8_t *wire;

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	wire = craft(SRUP_TYPE_RESPONSE, SERVER_ID, 9, server_key, "tok-replay", &len);
	publish_raw(w, topic, wire, len);
	wait_device_counts(w, 0, 1, 0);
	/* A new node on the same state directory remembers what it accepted. */
	srup_node_free(w->device);
	w->device = NULL;
	w->at_device.count = 0;
	make_device(w);
	connect_all(w);
	publish_raw(w, topic, wire, len);
	wait_device_counts(w, 1, 0, 0);
	assert_int_equal(w->at_device.count, 0);
	free(wire);
}

static void die_in_handler(struct srup_node *node, const struct srup_msg *msg,
			   const char *topic, void *user)
{
	(void)node;
	(void)msg;
	(void)topic;
	(void)user;
	raise(SIGKILL);
}

/* The child of start_dying_device: a device node on the world's state
 * whose RESPONSE handler is dying_handler, which dies (SIGKILL) in the
 * first message, after its batch committed the ID and before the state
 * flush (the ID written, not synced; the record not released). Writes one
 * byte to ready once subscribed. No cmocka here: it only exits. */
static void run_dying_device(struct world *w, int ready, srup_node_handler dying_handler)
{
	char detail[512] = "";
	uint64_t deadline;

	if (sd_event_new(&w->loop) < 0)
		_exit(2);
	w->device = NULL;
	if (make_node(w, SRUP_NODE_ROLE_DEVICE, DEVICE_ID, device_key, w->device_peers, "device",
		      &w->device, detail, sizeof(detail)) != SRUP_NODE_OK ||
	    srup_node_on(w->device, SRUP_TYPE_RESPONSE, SERVER_ID, dying_handler, NULL) !=
		    SRUP_NODE_OK ||
	    srup_node_connect(w->device, NULL, NULL) != SRUP_NODE_OK)
		_exit(2);
	deadline = test_now_ms() + WAIT_MS;
	while (!srup_node_is_connected(w->device) && test_now_ms() < deadline)
		sd_event_run(w->loop, 50 * 1000);
	if (write(ready, "r", 1) != 1)
		_exit(2);
	while (test_now_ms() < deadline)
		sd_event_run(w->loop, 50 * 1000);
	_exit(3); /* the message never came */
}

/* Forks run_dying_device with dying_handler; returns once it is
 * subscribed. No node may exist in this process before: Paho's threads
 * would not follow into the child. */
static pid_t start_dying_device(struct world *w, srup_node_handler dying_handler)
{
	int ready[2];
	char byte;
	pid_t child;

	assert_int_equal(pipe(ready), 0);
	fflush(NULL);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(ready[0]);
		run_dying_device(w, ready[1], dying_handler);
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &byte, 1), 1);
	close(ready[0]);
	return child;
}

static void expect_killed_in_handler(pid_t child)
{
	int status;

	assert_int_equal(waitpid(child, &status, 0), child);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("the device was not killed in its handler (status 0x%x)", status);
}

static bool device_handled_and_dropped_one(struct world *w)
{
	return w->at_device.count >= 1 && stats_of(w->device).dropped_by[SRUP_NODE_DROP_REPLAY] >= 1;
}

static bool device_took_the_fresh_one(struct world *w)
{
	return w->at_device.count >= 2;
}

/* A node killed while a handler runs, its batch's ID committed without an
 * fdatasync (the message has a record): the next start hands the message
 * over again from its record, and a copy of it published again is dropped
 * as a replay; a fresh one is taken. */
static void test_killed_in_handler(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];
	size_t len;
	uint8_t *wire;
	pid_t child;

	srup_topic_device(DEVICE_ID, topic);
	wire = craft(SRUP_TYPE_RESPONSE, SERVER_ID, 7, server_key, "tok-killed", &len);
	child = start_dying_device(w, die_in_handler);
	publish_raw(w, topic, wire, len);
	expect_killed_in_handler(child);

	make_device(w);
	connect_all(w);
	publish_raw(w, topic, wire, len);
	assert_true(run_until(w, device_handled_and_dropped_one, WAIT_MS));
	assert_int_equal(w->at_device.count, 1);
	assert_int_equal(w->at_device.sequence_id, 7);
	assert_string_equal(w->at_device.token, "tok-killed");
	assert_true(log_contains(w, "accepted before a restart, handled again"));
	assert_true(log_contains(w, "replayed sequence id 7 <= last accepted 7"));
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 8, server_key, "tok-fresh");
	assert_true(run_until(w, device_took_the_fresh_one, WAIT_MS));
	assert_int_equal(w->at_device.count, 2);
	assert_int_equal(w->at_device.sequence_id, 8);
	free(wire);
}

/* Holds the message, notes what it decided, sends its answer and dies
 * (SIGKILL) at once: the note is written, not yet synced by the state
 * flush (50 ms later). */
static void note_then_die(struct srup_node *node, const struct srup_msg *msg,
			  const char *topic, void *user)
{
	struct srup_msg *answer = srup_msg_new(SRUP_TYPE_OBS_JOIN_REQUEST);
	char server_topic[SRUP_TOPIC_MAX];
	uint64_t hold = srup_node_hold(node);

	(void)msg;
	(void)topic;
	(void)user;
	if (!hold || !answer || srup_node_hold_note(node, hold, "decided", 7) != SRUP_NODE_OK ||
	    srup_bytes_set(&answer->token, "tok-ans", 7) != SRUP_OK)
		_exit(4);
	srup_topic_server_join(SERVER_ID, DEVICE_ID, server_topic);
	if (srup_node_send(node, answer, SERVER_ID, server_topic) != SRUP_NODE_OK)
		_exit(4);
	raise(SIGKILL);
}

struct note_seen {
	unsigned count;
	char note[SRUP_NODE_NOTE_MAX + 1];
};

static void note_read(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		      void *user)
{
	struct note_seen *seen = user;
	size_t len = srup_node_held_note(node, seen->note, SRUP_NODE_NOTE_MAX);

	(void)msg;
	(void)topic;
	seen->note[len] = '\0';
	seen->count++;
	srup_node_release(node, srup_node_hold(node));
}

static struct note_seen *g_note_seen;

static bool note_seen_once(struct world *w)
{
	(void)w;
	return g_note_seen->count >= 1;
}

/* A node killed right after its handler noted a decision and published,
 * before the state flush synced the note: the next start hands the
 * message over with that note (what was decided is repeated, not decided
 * again). */
static void test_note_survives_kill_before_flush(void **state)
{
	struct world *w = *state;
	struct note_seen seen = {0};
	char topic[SRUP_TOPIC_MAX], detail[512] = "";
	pid_t child;

	srup_topic_device(DEVICE_ID, topic);
	child = start_dying_device(w, note_then_die);
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 5, server_key, "tok-noted");
	expect_killed_in_handler(child);

	if (make_node(w, SRUP_NODE_ROLE_DEVICE, DEVICE_ID, device_key, w->device_peers, "device",
		      &w->device, detail, sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("device node: %s", detail);
	assert_int_equal(srup_node_on(w->device, SRUP_TYPE_RESPONSE, SERVER_ID, note_read, &seen),
			 SRUP_NODE_OK);
	g_note_seen = &seen;
	assert_true(run_until(w, note_seen_once, WAIT_MS));
	assert_int_equal(seen.count, 1);
	assert_string_equal(seen.note, "decided");
	assert_true(log_contains(w, "accepted before a restart, handled again"));
	srup_node_free(w->device);
	w->device = NULL;
	assert_int_equal(inbound_files(w), 0);
}

static void test_wrong_key_dropped(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	/* Claims to come from the server, signed by the stranger's key. */
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 1, other_key, "tok-forged");
	wait_device_counts(w, 1, 0, 0);
	assert_true(log_contains(w, "bad signature on response from 000000005e5e5e01"));
	assert_int_equal(stats_of(w->device).dropped_by[SRUP_NODE_DROP_SIGNATURE], 1);
	/* A forged message does not move the sequence: the real one with
	 * the same ID is accepted afterwards. */
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 1, server_key, "tok-real");
	wait_device_counts(w, 1, 1, 0);
	assert_string_equal(w->at_device.token, "tok-real");
}

static void test_unknown_sender_dropped(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, UNKNOWN_ID, 1, other_key, "tok-who");
	wait_device_counts(w, 1, 0, 0);
	assert_true(log_contains(w, "unknown sender key for 0000000077777777"));
	assert_int_equal(stats_of(w->device).dropped_by[SRUP_NODE_DROP_UNKNOWN_SENDER], 1);
	assert_string_equal(srup_node_drop_name(SRUP_NODE_DROP_UNKNOWN_SENDER), "unknown_sender");
}

static void test_sender_not_allowed_dropped(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	/* Validly signed by a known key, but RESPONSE is only taken from the
	 * server. */
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, OTHER_ID, 1, other_key, "tok-other");
	wait_device_counts(w, 1, 0, 0);
	assert_true(log_contains(w, "sender 000000000bad0003 not allowed to send response "
				    "(only 000000005e5e5e01)"));
	/* Not accepted, so its sequence ID was not recorded either. */
	assert_int_equal(w->at_device.count, 0);
	assert_int_equal(stats_of(w->device).dropped_by[SRUP_NODE_DROP_SENDER_NOT_ALLOWED], 1);
}

static void test_no_handler_dropped(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	publish_crafted(w, topic, SRUP_TYPE_ACTION, SERVER_ID, 1, server_key, "tok-action");
	wait_device_counts(w, 1, 0, 0);
	assert_true(log_contains(w, "no handler for type action (0x04)"));
}

static void test_message_from_self_ignored(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, DEVICE_ID, 1, device_key, "tok-self");
	wait_device_counts(w, 0, 0, 1);
	assert_int_equal(w->at_device.count, 0);
	assert_false(log_contains(w, "dropped message"));
}

static void test_garbage_truncated_oversized_then_valid(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];
	static const char garbage[] = "this is not a SRUP message";
	size_t len, big_len = 200 * 1024;
	uint8_t *wire, *big;

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	publish_raw(w, topic, garbage, sizeof(garbage) - 1);
	wire = craft(SRUP_TYPE_RESPONSE, SERVER_ID, 1, server_key, "tok-trunc", &len);
	publish_raw(w, topic, wire, len - 100); /* cut inside the signature */
	big = calloc(1, big_len);
	assert_non_null(big);
	memcpy(big, wire, len);
	publish_raw(w, topic, big, big_len);
	free(big);
	free(wire);
	publish_raw(w, topic, "", 0);
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 2, server_key, "tok-valid");
	wait_device_counts(w, 4, 1, 0);
	assert_int_equal(w->at_device.count, 1);
	assert_string_equal(w->at_device.token, "tok-valid");
	assert_true(log_contains(w, "dropped message on SRUP/d0d0d0d0d0d0d002: decode error:"));
	assert_true(log_contains(w, "in field signature at offset"));
	assert_true(log_contains(w, "payload of 204800 bytes exceeds the limit of 131072 bytes"));
}

static bool server_dropped_two(struct world *w)
{
	return stats_of(w->server).dropped >= 2 && w->at_server.count >= 1;
}

static void test_server_topic_rules(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_server(w);
	connect_all(w);
	publish_crafted(w, "SRUP/servers/5e5e5e01/not-a-word", SRUP_TYPE_OBS_JOIN_REQUEST,
			DEVICE_ID, 1, device_key, "tok-a");
	publish_crafted(w, "SRUP/servers/5e5e5e01/d0/extra", SRUP_TYPE_OBS_JOIN_REQUEST,
			DEVICE_ID, 2, device_key, "tok-b");
	/* A watched device's own topic is handled. */
	srup_topic_device(DEVICE_ID, topic);
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, DEVICE_ID, 3, device_key, "tok-c");
	assert_true(run_until(w, server_dropped_two, WAIT_MS));
	assert_int_equal(stats_of(w->server).dropped, 2);
	assert_int_equal(w->at_server.count, 1);
	assert_int_equal(w->at_server.sequence_id, 3);
	assert_true(log_contains(w, "dropped message on SRUP/servers/5e5e5e01/not-a-word"));
	assert_true(log_contains(w, "dropped message on SRUP/servers/5e5e5e01/d0/extra"));
}

static bool device_connected_again(struct world *w)
{
	return w->device_connects >= 2 && srup_node_is_connected(w->device);
}

static bool server_connected_again(struct world *w)
{
	return w->server_connects >= 2 && srup_node_is_connected(w->server);
}

static bool device_lost_connection(struct world *w)
{
	return !srup_node_is_connected(w->device);
}

static void test_broker_restart_while_publishing(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];

	make_server(w);
	make_device(w);
	connect_all(w);
	assert_int_equal(test_broker_stop(w->broker), 0);
	assert_true(run_until(w, device_lost_connection, WAIT_MS));

	/* Published while the broker is away: Paho keeps it. */
	srup_topic_device(DEVICE_ID, topic);
	send_response(w->device, SERVER_ID, topic, "tok-outage", SRUP_STATUS_OBSERVED_JOIN_VALID);
	assert_int_equal(w->at_server.count, 0);

	assert_int_equal(test_broker_restart(w->broker), 0);
	assert_true(run_until(w, device_connected_again, WAIT_MS));
	assert_true(run_until(w, server_connected_again, WAIT_MS));
	assert_true(run_until(w, server_got_one, WAIT_MS));
	assert_int_equal(w->at_server.type, SRUP_TYPE_RESPONSE);
	assert_int_equal(w->at_server.status, SRUP_STATUS_OBSERVED_JOIN_VALID);
	assert_string_equal(w->at_server.token, "tok-outage");
	assert_int_equal(srup_node_flush(w->device, WAIT_MS), SRUP_NODE_OK);
	assert_true(log_contains(w, "connection to tcp://127.0.0.1:"));
}

static void test_free_while_broker_down(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX];
	struct srup_msg *m;

	make_device(w);
	connect_all(w);
	assert_int_equal(test_broker_stop(w->broker), 0);
	assert_true(run_until(w, device_lost_connection, WAIT_MS));
	/* A message still buffered by Paho, unacknowledged: flush says so,
	 * and freeing the node releases it (the sanitizer build checks). */
	m = srup_msg_new(SRUP_TYPE_RESPONSE);
	assert_non_null(m);
	assert_int_equal(srup_bytes_set(&m->token, "tok-lost", 8), SRUP_OK);
	srup_topic_device(DEVICE_ID, topic);
	assert_int_equal(srup_node_send(w->device, m, SERVER_ID, topic), SRUP_NODE_OK);
	srup_msg_free(m);
	assert_int_equal(srup_node_flush(w->device, 200), SRUP_NODE_E_TIMEOUT);
	srup_node_free(w->device);
	w->device = NULL;
	/* The state directory is free again at once. */
	char dir[256];
	struct srup_seqstore *store = NULL;
	state_dir(w, "device", dir);
	assert_int_equal(srup_seqstore_new(dir, 0, &store, NULL, 0), SRUP_SEQ_OK);
	/* The send took ID 1 from a reservation that was on disk before it. */
	assert_int_equal(srup_seqstore_sent_reserved(store, SERVER_ID),
			 SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(store);
}

static bool server_got_three(struct world *w)
{
	return w->at_server.count >= 3;
}

static void send_join_request(struct world *w, uint64_t *seq)
{
	char topic[SRUP_TOPIC_MAX];
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_OBS_JOIN_REQUEST);

	assert_non_null(m);
	assert_int_equal(srup_bytes_set(&m->token, "tok-seq", 7), SRUP_OK);
	srup_topic_server_join(SERVER_ID, DEVICE_ID, topic);
	assert_int_equal(srup_node_send(w->device, m, SERVER_ID, topic), SRUP_NODE_OK);
	*seq = m->sequence_id;
	srup_msg_free(m);
}

static void test_sequence_continues_after_node_restart(void **state)
{
	struct world *w = *state;
	struct srup_node *second = NULL;
	char detail[512] = "";
	uint64_t seq;

	make_server(w);
	make_device(w);
	connect_all(w);
	send_join_request(w, &seq);
	assert_int_equal(seq, 1);
	send_join_request(w, &seq);
	assert_int_equal(seq, 2);
	assert_int_equal(srup_node_flush(w->device, WAIT_MS), SRUP_NODE_OK);

	/* A second node on the same state directory is refused while the
	 * first one runs. */
	assert_int_equal(make_node(w, SRUP_NODE_ROLE_DEVICE, DEVICE_ID, device_key,
				   w->device_peers, "device", &second, detail, sizeof(detail)),
			 SRUP_NODE_E_STATE);
	assert_null(second);
	assert_non_null(strstr(detail, "in use by another process"));

	srup_node_free(w->device);
	w->device = NULL;
	make_device(w);
	connect_all(w);
	/* The restart continues above the reservation the first run made:
	 * a gap, never a reuse, and the server accepts it. */
	send_join_request(w, &seq);
	assert_int_equal(seq, SRUP_SEQSTORE_SEND_RESERVATION + 1);
	assert_true(run_until(w, server_got_three, WAIT_MS));
	assert_int_equal(w->at_server.sequence_id, SRUP_SEQSTORE_SEND_RESERVATION + 1);
	assert_int_equal(stats_of(w->server).dropped, 0);
}

/* ---- group commit ------------------------------------------------------ */

#define BATCH_CALLS_MAX 16

/* What each handler call saw: its sequence ID, and the last accepted from
 * the server in the device's sequence file at that moment. */
struct disk_witness {
	struct world *w;
	unsigned calls;
	uint64_t seq[BATCH_CALLS_MAX];
	uint64_t on_disk[BATCH_CALLS_MAX];
};

/* The device's sequence file as it is on disk now, read by a store of its
 * own (the running node holds the lock of the real directory). */
static uint64_t accepted_on_disk(struct world *w, uint64_t peer)
{
	char src[4300], dir[4300], dst[4400], detail[512] = "";
	struct srup_seqstore *store = NULL;
	uint64_t v;
	size_t len;
	char *buf;
	FILE *f;

	snprintf(src, sizeof(src), "%s/device/%s", w->dir, SRUP_SEQSTORE_FILE);
	snprintf(dir, sizeof(dir), "%s/snapshot", w->dir);
	snprintf(dst, sizeof(dst), "%s/%s", dir, SRUP_SEQSTORE_FILE);
	test_rm_rf(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	f = fopen(src, "rb");
	if (!f)
		return 0; /* nothing persisted yet */
	buf = malloc(1 << 20);
	assert_non_null(buf);
	len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	f = fopen(dst, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(buf);
	if (srup_seqstore_new(dir, 0, &store, detail, sizeof(detail)) != SRUP_SEQ_OK)
		fail_msg("snapshot of the device's sequence file: %s", detail);
	v = srup_seqstore_last_accepted(store, peer);
	srup_seqstore_free(store);
	return v;
}

static void witness(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		    void *user)
{
	struct disk_witness *dw = user;

	(void)node;
	(void)topic;
	if (dw->calls < BATCH_CALLS_MAX) {
		dw->seq[dw->calls] = msg->sequence_id;
		dw->on_disk[dw->calls] = accepted_on_disk(dw->w, SERVER_ID);
	}
	dw->calls++;
}

/* Publish while the device's loop does not run, so that Paho queues every
 * message and the loop drains them in one go. */
static void queue_for_device(struct world *w, const uint64_t *seqs, size_t n)
{
	char topic[SRUP_TOPIC_MAX], token[32];
	struct srup_node_stats s;
	uint64_t deadline, before = stats_of(w->device).received;

	srup_topic_device(DEVICE_ID, topic);
	for (size_t i = 0; i < n; i++) {
		snprintf(token, sizeof(token), "tok-batch-%zu", i);
		publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, seqs[i], server_key, token);
	}
	deadline = test_now_ms() + WAIT_MS;
	do {
		srup_node_get_stats(w->device, &s);
		if (s.received >= before + n)
			break;
		usleep(10000);
	} while (test_now_ms() < deadline);
	assert_int_equal(s.received, before + n);
}

static void make_witnessed_device(struct world *w, struct disk_witness *dw)
{
	char detail[512] = "";

	dw->w = w;
	if (make_node(w, SRUP_NODE_ROLE_DEVICE, DEVICE_ID, device_key, w->device_peers, "device",
		      &w->device, detail, sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("device node: %s", detail);
	assert_int_equal(srup_node_on(w->device, SRUP_TYPE_RESPONSE, SERVER_ID, witness, dw),
			 SRUP_NODE_OK);
}

static void test_batch_commits_before_any_handler(void **state)
{
	struct world *w = *state;
	struct disk_witness dw = {0};
	/* Repeats and an older one inside the burst: checked against the
	 * earlier messages of the same batch. */
	static const uint64_t seqs[] = {1, 2, 2, 1, 3};

	make_witnessed_device(w, &dw);
	connect_all(w);
	queue_for_device(w, seqs, sizeof(seqs) / sizeof(seqs[0]));
	wait_device_counts(w, 2, 3, 0);
	assert_int_equal(dw.calls, 3);
	for (unsigned i = 0; i < 3; i++) {
		/* Arrival order, and never before the ID was on disk. */
		assert_int_equal(dw.seq[i], i + 1);
		if (dw.on_disk[i] < dw.seq[i])
			fail_msg("handler for %" PRIu64 " ran with %" PRIu64 " on disk", dw.seq[i],
				 dw.on_disk[i]);
	}
	/* One commit for the burst: the first handler already finds a later
	 * message's ID on disk. */
	assert_true(dw.on_disk[0] > dw.seq[0]);
	assert_true(log_contains(w, "replayed sequence id 2 <= last accepted 2"));
	assert_true(log_contains(w, "replayed sequence id 1 <= last accepted 2"));
}

static void test_batch_persist_failure_runs_no_handler(void **state)
{
	struct world *w = *state;
	struct disk_witness dw = {0};
	static const uint64_t seqs[] = {1, 2, 3};
	static const uint64_t again[] = {2};
	char tmp[4300];

	make_witnessed_device(w, &dw);
	connect_all(w);
	/* The device has no sequence file yet: its first commit creates
	 * one through the temporary file, and a directory there makes that
	 * commit fail. */
	snprintf(tmp, sizeof(tmp), "%s/device/%s", w->dir, SRUP_SEQSTORE_TMP_FILE);
	assert_int_equal(mkdir(tmp, 0700), 0);
	queue_for_device(w, seqs, 3);
	wait_device_counts(w, 3, 0, 0);
	assert_int_equal(dw.calls, 0);
	assert_true(log_contains(w, "cannot persist 3 accepted sequence id(s)"));
	assert_true(log_contains(w, "sequence id 3 from 000000005e5e5e01 could not be persisted"));
	assert_int_equal(accepted_on_disk(w, SERVER_ID), 0);
	/* Nothing of the failed batch was kept: its IDs are still fresh. */
	assert_int_equal(rmdir(tmp), 0);
	queue_for_device(w, again, 1);
	wait_device_counts(w, 3, 1, 0);
	assert_int_equal(dw.calls, 1);
	assert_int_equal(dw.seq[0], 2);
	assert_int_equal(dw.on_disk[0], 2);
}

static void test_exchange_over_tls(void **state)
{
	/* Same exchange, through an mqtts:// broker that requires client
	 * certificates and a server certificate naming 127.0.0.1. */
	struct world *w = *state;

	assert_non_null(strstr(test_broker_url(w->broker), "mqtts://127.0.0.1:"));
	test_exchange_both_ways(state);
}

#define FLOOD_MESSAGES 5000u

static void test_queue_overflow_dropped_and_counted(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX], file[4300], cmd[9000];
	struct srup_node_stats s;
	uint64_t deadline;
	FILE *f;

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	snprintf(file, sizeof(file), "%s/flood.txt", w->dir);
	f = fopen(file, "w");
	assert_non_null(f);
	for (unsigned i = 0; i < FLOOD_MESSAGES; i++)
		fprintf(f, "flood %u\n", i);
	assert_int_equal(fclose(f), 0);
	/* The loop does not run while the flood arrives: Paho's thread fills
	 * the queue up to its bound and drops the rest (QoS 0: nothing was
	 * acknowledged; QoS 1 waits instead, below). */
	snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %u -q 0 -t %s -l < %s",
		 (unsigned)test_broker_port(w->broker), topic, file);
	char *argv[] = {"sh", "-c", cmd, NULL};
	assert_int_equal(test_run(argv, 60000), 0);
	deadline = test_now_ms() + 30000;
	do {
		srup_node_get_stats(w->device, &s);
		if (s.received >= FLOOD_MESSAGES)
			break;
		usleep(10000);
	} while (test_now_ms() < deadline);
	assert_int_equal(s.received, FLOOD_MESSAGES);
	assert_int_equal(s.dropped, FLOOD_MESSAGES - 4096);
	/* Draining: every queued one fails to decode. */
	wait_device_counts(w, FLOOD_MESSAGES, 0, 0);
	assert_true(log_contains(w, "receive queue full (4096 messages)"));
	assert_true(log_contains(w, "904 messages dropped: receive queue full"));
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 1, server_key, "tok-after");
	wait_device_counts(w, FLOOD_MESSAGES, 1, 0);
}

/* Large payloads while the loop is busy: the queue is bounded in bytes
 * too, or 4096 payloads of up to 128 KiB (512 MiB) could pile up. */
#define BIG_MESSAGES 200u
#define BIG_PAYLOAD 100000u

static void test_queue_bounded_in_bytes(void **state)
{
	struct world *w = *state;
	char topic[SRUP_TOPIC_MAX], file[4300], cmd[9000];
	struct srup_node_stats s;
	uint64_t deadline;
	FILE *f;

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	snprintf(file, sizeof(file), "%s/big.txt", w->dir);
	f = fopen(file, "w");
	assert_non_null(f);
	for (unsigned i = 0; i < BIG_MESSAGES; i++) {
		for (unsigned k = 0; k < BIG_PAYLOAD; k++)
			fputc('a' + (int)(k % 26), f);
		fputc('\n', f);
	}
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %u -q 0 -t %s -l < %s",
		 (unsigned)test_broker_port(w->broker), topic, file);
	char *argv[] = {"sh", "-c", cmd, NULL};
	assert_int_equal(test_run(argv, 60000), 0);
	deadline = test_now_ms() + 30000;
	do {
		srup_node_get_stats(w->device, &s);
		if (s.received >= BIG_MESSAGES)
			break;
		usleep(10000);
	} while (test_now_ms() < deadline);
	assert_int_equal(s.received, BIG_MESSAGES);
	/* 20 MB arrived; far less than that may wait for the loop. */
	if (s.dropped == 0)
		fail_msg("all %u payloads of %u bytes were queued", BIG_MESSAGES, BIG_PAYLOAD);
	assert_true(s.dropped < BIG_MESSAGES);
	wait_device_counts(w, BIG_MESSAGES, 0, 0);
	assert_true(log_contains(w, "receive queue full ("));
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 1, server_key, "tok-after");
	wait_device_counts(w, BIG_MESSAGES, 1, 0);
}

/* QoS 1 floods while the loop is busy: what Paho acknowledges is bounded by
 * the receive queue (in messages and in bytes) instead of dropped: the
 * broker keeps the rest until the loop has made room, and none is lost. */
static void acknowledged_flood(struct world *w, unsigned count, unsigned payload_len,
			       unsigned most_received)
{
	char topic[SRUP_TOPIC_MAX], file[4300], cmd[9000];
	struct srup_node_stats s;
	uint64_t deadline;
	FILE *f;

	make_device(w);
	connect_all(w);
	srup_topic_device(DEVICE_ID, topic);
	snprintf(file, sizeof(file), "%s/acked-flood.txt", w->dir);
	f = fopen(file, "w");
	assert_non_null(f);
	for (unsigned i = 0; i < count; i++) {
		fprintf(f, "%08u", i);
		for (unsigned k = 8; k < payload_len; k++)
			fputc('a' + (int)(k % 26), f);
		fputc('\n', f);
	}
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "mosquitto_pub -h 127.0.0.1 -p %u -q 1 -t %s -l < %s",
		 (unsigned)test_broker_port(w->broker), topic, file);
	char *argv[] = {"sh", "-c", cmd, NULL};
	assert_int_equal(test_run(argv, 60000), 0);
	/* The loop does not run: Paho's thread takes what the queue holds,
	 * then waits with the next message unacknowledged. */
	deadline = test_now_ms() + 30000;
	do {
		srup_node_get_stats(w->device, &s);
		if (s.received >= most_received)
			break;
		usleep(10000);
	} while (test_now_ms() < deadline);
	usleep(300000); /* a negative check: more would have arrived by now */
	srup_node_get_stats(w->device, &s);
	if (s.received > most_received || s.received == 0)
		fail_msg("%" PRIu64 " of %u taken while the loop was busy (at most %u fit)",
			 s.received, count, most_received);
	assert_int_equal(s.dropped, 0);
	/* The loop runs: every one arrives (and fails to decode), none for
	 * want of room. */
	wait_device_counts(w, count, 0, 0);
	s = stats_of(w->device);
	assert_int_equal(s.received, count);
	assert_int_equal(s.dropped_by[SRUP_NODE_DROP_QUEUE_FULL], 0);
	assert_int_equal(s.dropped_by[SRUP_NODE_DROP_DECODE], count);
	assert_false(log_contains(w, "receive queue full"));
	publish_crafted(w, topic, SRUP_TYPE_RESPONSE, SERVER_ID, 1, server_key, "tok-after");
	wait_device_counts(w, count, 1, 0);
}

static void test_acknowledged_flood_held_back_not_dropped(void **state)
{
	acknowledged_flood(*state, FLOOD_MESSAGES, 10, 4096);
}

static void test_acknowledged_big_flood_held_back_not_dropped(void **state)
{
	/* 8 MiB of queue: 83 of these. */
	acknowledged_flood(*state, BIG_MESSAGES, BIG_PAYLOAD, 84);
}

/* ---- a broker that sends what Mosquitto would refuse --------------------- */

/* Enough of MQTT 3.1.1 for one client: CONNACK, SUBACK, then the PUBLISHes
 * (QoS 0) it was given, byte for byte, after the first SUBSCRIBE. */
struct raw_broker {
	int listen_fd;
	uint16_t port;
	pthread_t thread;
	/* What the n-th topic filter subscribed is granted, cycling (0x80:
	 * refused); none: QoS 1 for every one. */
	uint8_t grant[8];
	size_t n_grant;
	unsigned filters;    /* topic filters subscribed */
	unsigned subscribes; /* SUBSCRIBE packets seen */
	unsigned n_pub;
	struct {
		uint8_t *packet;
		size_t len;
	} pub[4];
};

static int read_full(int fd, uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = read(fd, buf, len);
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *raw_broker_run(void *arg)
{
	struct raw_broker *b = arg;
	struct timeval tv = {.tv_sec = 30};
	int fd = accept(b->listen_fd, NULL, NULL);
	bool sent = false;

	if (fd < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		uint8_t head, byte, body[1024];
		size_t len = 0;
		unsigned shift = 0;

		if (read_full(fd, &head, 1) != 0)
			break;
		do {
			if (read_full(fd, &byte, 1) != 0 || shift > 21)
				goto done;
			len |= (size_t)(byte & 0x7f) << shift;
			shift += 7;
		} while (byte & 0x80);
		if (len > sizeof(body) || read_full(fd, body, len) != 0)
			break;
		if ((head >> 4) == 1) { /* CONNECT */
			static const uint8_t connack[] = {0x20, 0x02, 0x00, 0x00};
			if (write(fd, connack, sizeof(connack)) != (ssize_t)sizeof(connack))
				break;
		} else if ((head >> 4) == 8 && len >= 2) { /* SUBSCRIBE */
			uint8_t suback[4 + 64] = {0x90, 0x02, body[0], body[1]};
			size_t n = 0;

			/* One grant per filter: u16 length, filter, requested QoS. */
			for (size_t at = 2; at + 2 <= len && n < 64; n++) {
				at += 2 + (size_t)(body[at] << 8 | body[at + 1]) + 1;
				suback[4 + n] = b->n_grant ? b->grant[b->filters++ % b->n_grant] : 0x01;
			}
			suback[1] = (uint8_t)(2 + n);
			if (write(fd, suback, 4 + n) != (ssize_t)(4 + n))
				break;
			__atomic_add_fetch(&b->subscribes, 1, __ATOMIC_SEQ_CST);
			for (unsigned i = 0; i < b->n_pub && !sent; i++)
				if (write(fd, b->pub[i].packet, b->pub[i].len) != (ssize_t)b->pub[i].len)
					goto done;
			sent = true;
		} else if ((head >> 4) == 12) { /* PINGREQ */
			static const uint8_t pingresp[] = {0xd0, 0x00};
			if (write(fd, pingresp, sizeof(pingresp)) != (ssize_t)sizeof(pingresp))
				break;
		} else if ((head >> 4) == 14) { /* DISCONNECT */
			break;
		}
	}
done:
	close(fd);
	return NULL;
}

/* Queue a QoS 0 PUBLISH of payload on topic (topic_len bytes, NULs and
 * all). */
static void raw_broker_add(struct raw_broker *b, const char *topic, size_t topic_len,
			   const uint8_t *payload, size_t len)
{
	size_t rem = 2 + topic_len + len, n = 0;
	uint8_t *p = malloc(1 + 4 + rem);

	assert_non_null(p);
	assert_true(b->n_pub < sizeof(b->pub) / sizeof(b->pub[0]));
	p[n++] = 0x30;
	do {
		uint8_t byte = rem & 0x7f;
		rem >>= 7;
		p[n++] = rem ? (uint8_t)(byte | 0x80) : byte;
	} while (rem);
	p[n++] = (uint8_t)(topic_len >> 8);
	p[n++] = (uint8_t)topic_len;
	memcpy(p + n, topic, topic_len);
	n += topic_len;
	memcpy(p + n, payload, len);
	n += len;
	b->pub[b->n_pub].packet = p;
	b->pub[b->n_pub].len = n;
	b->n_pub++;
}

static void raw_broker_start(struct raw_broker *b)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);

	b->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(b->listen_fd >= 0);
	assert_int_equal(bind(b->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(b->listen_fd, 1), 0);
	assert_int_equal(getsockname(b->listen_fd, (struct sockaddr *)&a, &alen), 0);
	b->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&b->thread, NULL, raw_broker_run, b), 0);
}

/* After the node that talked to it was freed (it sent DISCONNECT). */
static void raw_broker_stop(struct raw_broker *b)
{
	shutdown(b->listen_fd, SHUT_RDWR);
	pthread_join(b->thread, NULL);
	close(b->listen_fd);
	for (unsigned i = 0; i < b->n_pub; i++)
		free(b->pub[i].packet);
}

static void test_topic_with_nul_dropped(void **state)
{
	/* Paho hands over the whole topic and its length when it holds a
	 * NUL; the part before the NUL must not pass for our own topic. */
	struct world *w = *state;
	struct raw_broker b = {0};
	struct srup_node_config cfg = {.role = SRUP_NODE_ROLE_DEVICE, .id = DEVICE_ID};
	char detail[512] = "", topic[SRUP_TOPIC_MAX + 8];
	size_t tlen, len;
	uint8_t *wire;

	srup_topic_device(DEVICE_ID, topic);
	tlen = strlen(topic);
	memcpy(topic + tlen, "\0/x", 3);
	wire = craft(SRUP_TYPE_RESPONSE, SERVER_ID, 1, server_key, "tok-nul", &len);
	raw_broker_add(&b, topic, tlen + 3, wire, len);
	free(wire);
	wire = craft(SRUP_TYPE_RESPONSE, SERVER_ID, 2, server_key, "tok-valid", &len);
	raw_broker_add(&b, topic, tlen, wire, len);
	free(wire);
	raw_broker_start(&b);

	snprintf(cfg.broker, sizeof(cfg.broker), "tcp://127.0.0.1:%u", (unsigned)b.port);
	state_dir(w, "device", cfg.state_dir);
	if (srup_node_new(w->loop, &cfg, device_key, w->device_peers, &w->device, detail,
			  sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("device node: %s", detail);
	assert_int_equal(srup_node_on(w->device, SRUP_TYPE_RESPONSE, SERVER_ID, record,
				      &w->at_device),
			 SRUP_NODE_OK);
	connect_all(w);
	wait_device_counts(w, 1, 1, 0);
	assert_int_equal(w->at_device.count, 1);
	assert_string_equal(w->at_device.token, "tok-valid");
	assert_true(log_contains(w, "topic contains a NUL byte"));
	srup_node_free(w->device);
	w->device = NULL;
	raw_broker_stop(&b);
}

static struct raw_broker *refusing_broker;
static unsigned refusing_want; /* SUBSCRIBEs of two rounds */

/* Subscribed again after the refusal, or reported connected (wrongly). */
static bool resubscribed_or_connected(struct world *w)
{
	return (w->server && srup_node_is_connected(w->server)) ||
	       (w->device && srup_node_is_connected(w->device)) ||
	       __atomic_load_n(&refusing_broker->subscribes, __ATOMIC_SEQ_CST) >= refusing_want;
}

static void test_subscription_refused_in_part(void **state)
{
	/* The broker grants SRUP/servers/<id>/# but refuses SRUP/<dev>/#
	 * (0x80): the server is not subscribed to what it watches, so it
	 * must not report itself connected, and subscribes again. */
	struct world *w = *state;
	struct raw_broker b = {.grant = {0x01, 0x80}, .n_grant = 2};
	struct srup_node_config cfg = {.role = SRUP_NODE_ROLE_SERVER, .id = SERVER_ID};
	char detail[512] = "";

	raw_broker_start(&b);
	snprintf(cfg.broker, sizeof(cfg.broker), "tcp://127.0.0.1:%u", (unsigned)b.port);
	state_dir(w, "server", cfg.state_dir);
	cfg.reconnect_max_seconds = 1;
	if (srup_node_new(w->loop, &cfg, server_key, w->server_peers, &w->server, detail,
			  sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("server node: %s", detail);
	assert_int_equal(srup_node_watch_device(w->server, DEVICE_ID), SRUP_NODE_OK);
	assert_int_equal(srup_node_connect(w->server, count_connect, &w->server_connects),
			 SRUP_NODE_OK);
	refusing_broker = &b;
	refusing_want = 4;
	assert_true(run_until(w, resubscribed_or_connected, WAIT_MS));
	assert_false(srup_node_is_connected(w->server));
	assert_int_equal(w->server_connects, 0);
	assert_true(log_contains(w, "the broker refused the topic filter"));
	srup_node_free(w->server);
	w->server = NULL;
	raw_broker_stop(&b);

	/* A device's single topic refused. */
	struct raw_broker d = {.grant = {0x80}, .n_grant = 1};
	struct srup_node_config dcfg = {.role = SRUP_NODE_ROLE_DEVICE, .id = DEVICE_ID};

	raw_broker_start(&d);
	snprintf(dcfg.broker, sizeof(dcfg.broker), "tcp://127.0.0.1:%u", (unsigned)d.port);
	state_dir(w, "device", dcfg.state_dir);
	dcfg.reconnect_max_seconds = 1;
	if (srup_node_new(w->loop, &dcfg, device_key, w->device_peers, &w->device, detail,
			  sizeof(detail)) != SRUP_NODE_OK)
		fail_msg("device node: %s", detail);
	assert_int_equal(srup_node_connect(w->device, count_connect, &w->device_connects),
			 SRUP_NODE_OK);
	refusing_broker = &d;
	refusing_want = 2;
	assert_true(run_until(w, resubscribed_or_connected, WAIT_MS));
	assert_false(srup_node_is_connected(w->device));
	assert_int_equal(w->device_connects, 0);
	srup_node_free(w->device);
	w->device = NULL;
	raw_broker_stop(&d);
}

static void test_config_errors(void **state)
{
	struct world *w = *state;
	struct srup_node_config cfg = {.role = SRUP_NODE_ROLE_DEVICE, .id = DEVICE_ID};
	struct srup_node *n = NULL;
	char detail[512] = "";
	char path[4300];
	FILE *f;

	state_dir(w, "cfg", cfg.state_dir);
	snprintf(cfg.broker, sizeof(cfg.broker), "http://127.0.0.1:1883");
	assert_int_equal(srup_node_new(w->loop, &cfg, device_key, w->device_peers, &n, detail,
				       sizeof(detail)),
			 SRUP_NODE_E_ARG);
	assert_non_null(strstr(detail, "scheme must be tcp://, mqtt:// or mqtts://"));

	snprintf(cfg.broker, sizeof(cfg.broker), "mqtts://127.0.0.1:8883");
	assert_int_equal(srup_node_new(w->loop, &cfg, device_key, w->device_peers, &n, detail,
				       sizeof(detail)),
			 SRUP_NODE_E_ARG);
	assert_non_null(strstr(detail, "no ca_file"));

	snprintf(cfg.broker, sizeof(cfg.broker), "mqtt://");
	assert_int_equal(srup_node_new(w->loop, &cfg, device_key, w->device_peers, &n, detail,
				       sizeof(detail)),
			 SRUP_NODE_E_ARG);
	assert_non_null(strstr(detail, "no host"));

	/* mqtt:// is accepted (plain TCP). */
	snprintf(cfg.broker, sizeof(cfg.broker), "mqtt://127.0.0.1:%u",
		 (unsigned)test_broker_port(w->broker));
	assert_int_equal(srup_node_new(w->loop, &cfg, device_key, w->device_peers, &n, detail,
				       sizeof(detail)),
			 SRUP_NODE_OK);
	assert_int_equal(srup_node_connect(n, NULL, NULL), SRUP_NODE_OK);
	srup_node_free(n);
	n = NULL;

	/* A corrupt sequence file is an error naming it. */
	snprintf(path, sizeof(path), "%s/%s", cfg.state_dir, SRUP_SEQSTORE_FILE);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("srup-sequences 1\nnonsense\n", f);
	fclose(f);
	assert_int_equal(srup_node_new(w->loop, &cfg, device_key, w->device_peers, &n, detail,
				       sizeof(detail)),
			 SRUP_NODE_E_STATE);
	assert_null(n);
	assert_non_null(strstr(detail, path));

	/* No state directory. */
	cfg.state_dir[0] = '\0';
	assert_int_equal(srup_node_new(w->loop, &cfg, device_key, w->device_peers, &n, detail,
				       sizeof(detail)),
			 SRUP_NODE_E_ARG);
	assert_non_null(strstr(detail, "state directory"));
}

static void test_topics(void **state)
{
	char t[SRUP_TOPIC_MAX];

	(void)state;
	srup_topic_device(0, t);
	assert_string_equal(t, "SRUP/0");
	srup_topic_device(0x00ab, t);
	assert_string_equal(t, "SRUP/ab");
	srup_topic_device(UINT64_MAX, t);
	assert_string_equal(t, "SRUP/ffffffffffffffff");
	srup_topic_server_join(0x1, 0xd, t);
	assert_string_equal(t, "SRUP/servers/1/d");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topics),
		cmocka_unit_test_setup_teardown(test_exchange_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_message_handled_again_after_restart,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_in_handler, setup, teardown),
		cmocka_unit_test_setup_teardown(test_note_survives_kill_before_flush, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_replay_dropped_after_node_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_sender_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sender_not_allowed_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_handler_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_from_self_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_truncated_oversized_then_valid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_server_topic_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broker_restart_while_publishing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sequence_continues_after_node_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_while_broker_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_commits_before_any_handler, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_batch_persist_failure_runs_no_handler, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exchange_over_tls, setup_tls, teardown),
		cmocka_unit_test_setup_teardown(test_queue_overflow_dropped_and_counted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_queue_bounded_in_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acknowledged_flood_held_back_not_dropped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_acknowledged_big_flood_held_back_not_dropped,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_topic_with_nul_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscription_refused_in_part, setup, teardown),
	};
	/* Subsets: SRUP_TEST_FILTER=test_replay* runs only those,
	 * SRUP_TEST_SKIP=pattern leaves those out. */
	if (getenv("SRUP_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SRUP_TEST_FILTER"));
	if (getenv("SRUP_TEST_SKIP"))
		cmocka_set_skip_filter(getenv("SRUP_TEST_SKIP"));
	return cmocka_run_group_tests_name("node", tests, group_setup, group_teardown);
}
