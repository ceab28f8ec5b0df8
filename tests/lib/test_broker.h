/* Test helpers: a private Mosquitto broker per test, temporary
 * directories, and running a command with a deadline.
 *
 * The broker listens on 127.0.0.1 on a free port, with persistence in a
 * temporary directory of its own, so parallel ctest runs never share one.
 * It is started as a child of the test (and dies with it: PDEATHSIG). */
#ifndef TEST_BROKER_H
#define TEST_BROKER_H

#include <stdbool.h>
#include <stdint.h>

struct test_broker;

/* Start a broker and wait until it accepts connections. Returns 0, or -1
 * with a message on stderr. */
int test_broker_start(struct test_broker **out);

/* The same with a TLS listener (test_broker_url() then says mqtts://).
 * Paths are copied. */
struct test_broker_tls {
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	bool require_certificate; /* clients must present a certificate of ca_file */
};
int test_broker_start_tls(const struct test_broker_tls *tls, struct test_broker **out);
/* SIGTERM and wait (the broker saves its persistent sessions). */
int test_broker_stop(struct test_broker *b);
/* Start again on the same port with the same persistence directory. */
int test_broker_restart(struct test_broker *b);
/* Stop if running, remove the directory, free. NULL is allowed. */
void test_broker_free(struct test_broker *b);

uint16_t test_broker_port(const struct test_broker *b);
/* "tcp://127.0.0.1:<port>", or "mqtts://127.0.0.1:<port>" with TLS */
const char *test_broker_url(const struct test_broker *b);
/* The broker's own temporary directory (config, database, log). */
const char *test_broker_dir(const struct test_broker *b);

/* A free TCP port on 127.0.0.1 at the time of the call (0 on failure). */
uint16_t test_free_port(void);

/* mkdtemp under $TMPDIR (or /tmp) with the given prefix; out must hold
 * 4096 bytes. Returns 0 or -1. */
int test_tmpdir(const char *prefix, char *out);
/* rm -rf path (no symlinks followed). Returns 0 or -1. */
int test_rm_rf(const char *path);

/* Run argv (argv[0] searched in PATH) with stdin from /dev/null, stdout and
 * stderr inherited; kill it after timeout_ms. Returns its exit status, or
 * -1 on failure to run, timeout or death by signal. */
int test_run(char *const argv[], unsigned timeout_ms);

/* Monotonic milliseconds. */
uint64_t test_now_ms(void);

#endif
