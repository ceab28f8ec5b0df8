/* srup-bench-join: figures for the observed join over a loopback broker.
 *
 *   latency  plays the joining device in-process (one MQTT session for all
 *            joins) against a running srup-join-peer and srup-observerd on
 *            the sim channel: N joins back to back, p50/p99 from sending
 *            OBS_JOIN_REQ to receiving the verdict.
 *   pending  plays the C2 server against a running srup-observerd: COUNT
 *            OBSERVE_REQs for distinct devices (all pending at once), the
 *            observer's RSS at that point, then one right frame for each;
 *            the observer's CPU time per observation, from /proc.
 *
 * Each prints the crypto floor measured in the same run: the RSA private
 * operations the path cannot avoid, timed with OpenSSL directly.
 * run_bench_join.py starts the processes and calls both. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "radio.h"
#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_config.h"
#include "srup_identity.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_node.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(double *sorted, size_t n, double p)
{
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);

	return sorted[i < n ? i : n - 1];
}

/* Mean cost of one RSA private operation (PKCS#1 v1.5 signature of a
 * SHA-256 digest) and one public operation with key, in ms. */
static void rsa_floor(EVP_PKEY *key, double *private_ms, double *public_ms)
{
	unsigned char digest[32] = {1}, sig[1024];
	const int rounds = 200;
	size_t siglen = sizeof(sig);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	double t0;

	EVP_PKEY_sign_init(ctx);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
	EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
	t0 = now_ms();
	for (int i = 0; i < rounds; i++) {
		siglen = sizeof(sig);
		EVP_PKEY_sign(ctx, sig, &siglen, digest, sizeof(digest));
	}
	*private_ms = (now_ms() - t0) / rounds;
	EVP_PKEY_verify_init(ctx);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
	EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
	t0 = now_ms();
	for (int i = 0; i < rounds; i++)
		EVP_PKEY_verify(ctx, sig, siglen, digest, sizeof(digest));
	*public_ms = (now_ms() - t0) / rounds;
	EVP_PKEY_CTX_free(ctx);
}

/* ---- latency: the joining device ------------------------------------- */

struct latency_bench {
	sd_event *loop;
	struct srup_config cfg;
	struct srup_identity id;
	struct srup_node *node;
	uint64_t observer;
	unsigned joins, done;
	double started;
	double *samples;
	bool failed;
};

static void send_join_request(struct latency_bench *b)
{
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_OBS_JOIN_REQUEST);
	char topic[SRUP_TOPIC_MAX], token[40];

	snprintf(token, sizeof(token), "bench-join-%u", b->done);
	srup_bytes_set(&msg->token, token, strlen(token));
	msg->observer_id = b->observer;
	srup_topic_server_join(b->cfg.server_id, b->cfg.identity_id, topic);
	b->started = now_ms();
	if (srup_node_send(b->node, msg, b->cfg.server_id, topic) != SRUP_NODE_OK)
		b->failed = true;
	srup_msg_free(msg);
}

static void on_join_response(struct srup_node *node, const struct srup_msg *msg,
			     const char *topic, void *user)
{
	struct latency_bench *b = user;
	struct srup_bytes value = {0};
	struct srup_frame frame = {.device_id = b->cfg.identity_id};
	uint8_t result = 0;
	char detail[128];

	(void)node;
	(void)topic;
	if (srup_msg_open(msg, b->id.private_key, &value) != SRUP_OK || value.len > sizeof(frame.value)) {
		b->failed = true;
		srup_bytes_clear(&value);
		return;
	}
	frame.value_len = (uint16_t)value.len;
	memcpy(frame.value, value.data, value.len);
	srup_bytes_clear(&value);
	/* The OBSERVE_REQ left the server first but may still be on its way. */
	for (int i = 0; i < 5000; i++) {
		enum radio_err err = radio_sim_present(&b->cfg.radio.sim, &frame, 2000, &result, detail,
						       sizeof(detail));

		if (err == RADIO_OK && result != RADIO_RESULT_NOT_COMPARED)
			break;
		if (err != RADIO_OK && err != RADIO_E_REFUSED) {
			fprintf(stderr, "join %u: present: %s: %s\n", b->done, radio_strerror(err),
				detail);
			b->failed = true;
			break;
		}
		usleep(200);
	}
	srup_frame_wipe(&frame);
}

static void on_verdict(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		       void *user)
{
	struct latency_bench *b = user;

	(void)node;
	(void)topic;
	if (msg->status != SRUP_STATUS_JOIN_SUCCESS) {
		fprintf(stderr, "join %u: verdict 0x%02x\n", b->done, msg->status);
		b->failed = true;
		return;
	}
	b->samples[b->done++] = now_ms() - b->started;
	if (b->done < b->joins)
		send_join_request(b);
}

static void on_latency_connected(struct srup_node *node, void *user)
{
	struct latency_bench *b = user;

	(void)node;
	if (b->done == 0 && b->started == 0)
		send_join_request(b);
}

/* One latency per line (ms, in join order), for runs that pool several
 * bench runs (tests/bench/soak). */
static void write_samples(const char *path, const double *samples, unsigned n)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "%s: cannot write samples\n", path);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		fprintf(f, "%.3f\n", samples[i]);
	fclose(f);
}

static int run_latency(const char *config, uint64_t observer, unsigned joins,
		       const char *samples_path)
{
	struct latency_bench b = {.observer = observer, .joins = joins};
	struct srup_node_config ncfg;
	char err[768] = "";
	double priv_ms, pub_ms, t0;
	int rc = 1;

	b.samples = calloc(joins, sizeof(double));
	if (!b.samples || srup_config_load(config, SRUP_CONFIG_DEVICE, &b.cfg, err, sizeof(err)) ||
	    srup_identity_load(&b.cfg, &b.id, err, sizeof(err)) || sd_event_new(&b.loop) < 0) {
		fprintf(stderr, "set-up failed: %s\n", err);
		goto out;
	}
	srup_node_config_from(&b.cfg, SRUP_NODE_ROLE_DEVICE, &ncfg);
	if (srup_node_new(b.loop, &ncfg, b.id.private_key, b.id.peers, &b.node, err, sizeof(err)) ||
	    srup_node_on(b.node, SRUP_TYPE_OBS_JOIN_RESPONSE, b.cfg.server_id, on_join_response,
			 &b) ||
	    srup_node_on(b.node, SRUP_TYPE_RESPONSE, b.cfg.server_id, on_verdict, &b) ||
	    srup_node_connect(b.node, on_latency_connected, &b)) {
		fprintf(stderr, "node: %s\n", err);
		goto out;
	}
	t0 = now_ms();
	while (b.done < joins && !b.failed && now_ms() - t0 < 600000)
		sd_event_run(b.loop, 100000);
	if (b.done < joins) {
		fprintf(stderr, "only %u of %u joins completed\n", b.done, joins);
		goto out;
	}
	if (samples_path)
		write_samples(samples_path, b.samples, joins);
	qsort(b.samples, joins, sizeof(double), cmp_double);
	rsa_floor(b.id.private_key, &priv_ms, &pub_ms);
	printf("observed join latency over %u joins (OBS_JOIN_REQ sent -> verdict received):\n",
	       joins);
	printf("  p50 %.2f ms   p90 %.2f ms   p99 %.2f ms   min %.2f ms   max %.2f ms\n",
	       percentile(b.samples, joins, 50), percentile(b.samples, joins, 90),
	       percentile(b.samples, joins, 99), b.samples[0], b.samples[joins - 1]);
	/* On the critical path: the device signs the request, the server signs
	 * OBSERVE_REQ, OBS_JOIN_RESP and the verdict, the device opens its
	 * blob, the observer signs its RESPONSE (its own open runs in parallel
	 * with the device's): 6 private operations, and 6 verifications. */
	printf("  crypto floor: RSA-2048 private op %.3f ms, public op %.3f ms; "
	       "6 private + 6 public on the path = %.2f ms (%.0f%% of p50)\n",
	       priv_ms, pub_ms, 6 * priv_ms + 6 * pub_ms,
	       100 * (6 * priv_ms + 6 * pub_ms) / percentile(b.samples, joins, 50));
	rc = 0;
out:
	srup_node_free(b.node);
	srup_identity_free(&b.id);
	sd_event_unref(b.loop);
	free(b.samples);
	return rc;
}

/* ---- pending: the C2 server against the observer ---------------------- */

struct pending_bench {
	sd_event *loop;
	struct srup_node *node;
	EVP_PKEY *observer_key;
	uint64_t observer;
	unsigned count, responses, valid;
	bool connected;
};

#define BENCH_DEVICE_BASE 0x5000000000000000ull

static void bench_value(unsigned i, uint8_t out[32])
{
	for (int k = 0; k < 32; k++)
		out[k] = (uint8_t)("0123456789abcdef"[(i * 31u + (unsigned)k * 7u) % 16]);
}

static void on_observer_response(struct srup_node *node, const struct srup_msg *msg,
				 const char *topic, void *user)
{
	struct pending_bench *b = user;

	(void)node;
	(void)topic;
	b->responses++;
	if (msg->status == SRUP_STATUS_OBSERVED_JOIN_VALID)
		b->valid++;
}

static void on_pending_connected(struct srup_node *node, void *user)
{
	(void)node;
	((struct pending_bench *)user)->connected = true;
}

/* utime + stime of pid, in ms. */
static double process_cpu_ms(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long utime = 0, stime = 0;
	FILE *f;
	char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
			 &stime) != 2)
		return -1;
	return (double)(utime + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static long process_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static int run_pending(const char *broker, uint64_t server_id, const char *server_key_path,
		       uint64_t observer, const char *observer_key_path, const char *state_dir,
		       const char *sim_socket, unsigned count, pid_t observer_pid)
{
	struct pending_bench b = {.observer = observer, .count = count};
	struct srup_node_config ncfg = {.role = SRUP_NODE_ROLE_SERVER, .id = server_id};
	struct radio_sim_config sim = {{0}};
	struct srup_keystore *peers = NULL;
	EVP_PKEY *server_key = NULL;
	char err[512] = "", topic[SRUP_TOPIC_MAX], token[32];
	double t0, t_sent, t_pending, t_done, cpu0, cpu1, cpu2, priv_ms, pub_ms;
	long rss_before, rss_pending;
	uint8_t value[32], result;
	int rc = 1;

	snprintf(sim.socket_path, sizeof(sim.socket_path), "%s", sim_socket);
	snprintf(ncfg.broker, sizeof(ncfg.broker), "%s", broker);
	snprintf(ncfg.state_dir, sizeof(ncfg.state_dir), "%s", state_dir);
	if (srup_key_load_private(server_key_path, &server_key, err, sizeof(err)) ||
	    srup_key_load_public(observer_key_path, &b.observer_key, err, sizeof(err)) ||
	    srup_keystore_open(NULL, &peers, err, sizeof(err)) ||
	    srup_keystore_add(peers, observer, b.observer_key) || sd_event_new(&b.loop) < 0 ||
	    srup_node_new(b.loop, &ncfg, server_key, peers, &b.node, err, sizeof(err)) ||
	    srup_node_watch_device(b.node, observer) ||
	    srup_node_on(b.node, SRUP_TYPE_RESPONSE, observer, on_observer_response, &b) ||
	    srup_node_connect(b.node, on_pending_connected, &b)) {
		fprintf(stderr, "set-up failed: %s\n", err);
		goto out;
	}
	t0 = now_ms();
	while (!b.connected && now_ms() - t0 < 20000)
		sd_event_run(b.loop, 100000);
	rss_before = process_rss_kib(observer_pid);
	cpu0 = process_cpu_ms(observer_pid);
	t0 = now_ms();
	srup_topic_device(observer, topic);
	for (unsigned i = 0; i < count; i++) {
		struct srup_msg *msg = srup_msg_new(SRUP_TYPE_OBSERVE_REQUEST);

		bench_value(i, value);
		snprintf(token, sizeof(token), "bench-%u", i);
		msg->joining_device_id = BENCH_DEVICE_BASE + i;
		srup_bytes_set(&msg->token, token, strlen(token));
		if (srup_msg_seal(msg, b.observer_key, value, sizeof(value)) != SRUP_OK ||
		    srup_node_send(b.node, msg, observer, topic) != SRUP_NODE_OK) {
			srup_msg_free(msg);
			fprintf(stderr, "cannot send OBSERVE_REQ %u\n", i);
			goto out;
		}
		srup_msg_free(msg);
		sd_event_run(b.loop, 0);
	}
	t_sent = now_ms();
	/* All pending once the last one is: probe it with a wrong value (one
	 * attempt of its three; "not compared" until it arrives). */
	for (;;) {
		struct srup_frame probe = {.device_id = BENCH_DEVICE_BASE + count - 1, .value_len = 1};

		probe.value[0] = 'x';
		result = 0;
		radio_sim_present(&sim, &probe, 2000, &result, err, sizeof(err));
		if (result == RADIO_RESULT_MISMATCH || now_ms() - t0 > 120000)
			break;
		sd_event_run(b.loop, 2000);
	}
	t_pending = now_ms();
	cpu1 = process_cpu_ms(observer_pid);
	rss_pending = process_rss_kib(observer_pid);
	for (unsigned i = 0; i < count; i++) {
		struct srup_frame f = {.device_id = BENCH_DEVICE_BASE + i, .value_len = 32};

		bench_value(i, f.value);
		radio_sim_present(&sim, &f, 2000, &result, err, sizeof(err));
		sd_event_run(b.loop, 0);
	}
	while (b.responses < count && now_ms() - t_pending < 120000)
		sd_event_run(b.loop, 100000);
	t_done = now_ms();
	cpu2 = process_cpu_ms(observer_pid);
	rsa_floor(server_key, &priv_ms, &pub_ms);

	printf("observer with %u concurrent pending observations:\n", count);
	printf("  RSS %.1f MiB idle, %.1f MiB with %u pending\n", rss_before / 1024.0,
	       rss_pending / 1024.0, count);
	printf("  OBSERVE_REQs sent in %.0f ms, all pending after %.0f ms; %u frames -> %u "
	       "RESPONSEs (%u valid) in %.0f ms\n",
	       t_sent - t0, t_pending - t0, count, b.responses, b.valid, t_done - t_pending);
	{
		double cpu_per_obs = (cpu2 - cpu0) / count;
		/* Per observation the observer must verify the request, open the
		 * blob (private) and sign its RESPONSE (private). */
		double floor_ms = 2 * priv_ms + pub_ms;

		printf("  observer CPU %.3f ms per observation -> %.0f observations/s per core "
		       "(taking the requests %.3f ms, deciding and answering %.3f ms)\n",
		       cpu_per_obs, 1000.0 / cpu_per_obs, (cpu1 - cpu0) / count,
		       (cpu2 - cpu1) / count);
		printf("  RSA bound: 2 private + 1 public op = %.3f ms -> %.0f observations/s; "
		       "observer reaches %.0f%% of it\n",
		       floor_ms, 1000.0 / floor_ms, 100.0 * floor_ms / cpu_per_obs);
		printf("  end to end (wall clock, bench and observer sharing %ld cores): %.0f "
		       "observations/s\n",
		       sysconf(_SC_NPROCESSORS_ONLN), count * 1000.0 / (t_done - t0));
	}
	rc = b.responses == count && b.valid == count ? 0 : 1;
	if (rc)
		fprintf(stderr, "expected %u valid RESPONSEs\n", count);
out:
	srup_node_free(b.node);
	srup_keystore_free(peers);
	EVP_PKEY_free(server_key);
	EVP_PKEY_free(b.observer_key);
	sd_event_unref(b.loop);
	return rc;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: srup-bench-join latency --config DEVICE.conf --observer ID --joins N\n"
		"                 [--samples FILE]\n"
		"       srup-bench-join pending --broker URL --server-id ID --server-key PEM\n"
		"                 --observer ID --observer-key PEM --state DIR --sim SOCKET\n"
		"                 --count N --observer-pid PID\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},     {"observer", required_argument, NULL, 'o'},
		{"joins", required_argument, NULL, 'n'},      {"broker", required_argument, NULL, 'b'},
		{"server-id", required_argument, NULL, 'S'},  {"server-key", required_argument, NULL, 'K'},
		{"observer-key", required_argument, NULL, 'O'}, {"state", required_argument, NULL, 's'},
		{"sim", required_argument, NULL, 'm'},	      {"count", required_argument, NULL, 'N'},
		{"observer-pid", required_argument, NULL, 'p'}, {"samples", required_argument, NULL, 'L'},
		{NULL, 0, NULL, 0},
	};
	const char *config = NULL, *broker = NULL, *server_key = NULL, *observer_key = NULL;
	const char *state = NULL, *sim = NULL, *samples = NULL;
	uint64_t observer = 0, server = 0;
	unsigned joins = 200, count = 1000;
	pid_t pid = 0;
	int opt;

	if (argc < 2) {
		usage();
		return 2;
	}
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'o': srup_id_parse(optarg, &observer); break;
		case 'n': joins = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'b': broker = optarg; break;
		case 'S': srup_id_parse(optarg, &server); break;
		case 'K': server_key = optarg; break;
		case 'O': observer_key = optarg; break;
		case 's': state = optarg; break;
		case 'm': sim = optarg; break;
		case 'N': count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p': pid = (pid_t)strtol(optarg, NULL, 10); break;
		case 'L': samples = optarg; break;
		default: usage(); return 2;
		}
	}
	srup_log_set_level(LOG_WARNING);
	if (strcmp(argv[1], "latency") == 0 && config && observer && joins > 0)
		return run_latency(config, observer, joins, samples);
	if (strcmp(argv[1], "pending") == 0 && broker && server && server_key && observer &&
	    observer_key && state && sim && count > 0 && pid > 0)
		return run_pending(broker, server, server_key, observer, observer_key, state, sim,
				   count, pid);
	usage();
	return 2;
}
