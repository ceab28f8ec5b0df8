#include "test_broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BROKER_START_TIMEOUT_MS 10000u
#define BROKER_STOP_TIMEOUT_MS 10000u
#define BROKER_PORT_ATTEMPTS 8

struct test_broker {
	char dir[4096];
	char conf[4200];
	char log[4200];
	char url[64];
	uint16_t port;
	pid_t pid;
	bool tls;
	bool require_certificate;
	char ca_file[4096];
	char cert_file[4096];
	char key_file[4096];
};

uint64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

uint16_t test_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

int test_tmpdir(const char *prefix, char *out)
{
	const char *base = getenv("TMPDIR");

	if (!base || !*base)
		base = "/tmp";
	int n = snprintf(out, 4096, "%s/%s.", base, prefix);

	if (n < 0 || n + 7 > 4096)
		return -1;
	/* mkdtemp's template: six 'X' it replaces. */
	memset(out + n, 'X', 6);
	out[n + 6] = '\0';
	return mkdtemp(out) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int test_rm_rf(const char *path)
{
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT ? 0 : -1;
}

/* waitpid with a deadline; returns the status or -1 on timeout. */
static int wait_deadline(pid_t pid, unsigned timeout_ms, int *status)
{
	uint64_t deadline = test_now_ms() + timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (test_now_ms() >= deadline)
			return -1;
		sleep_ms(5);
	}
}

int test_run(char *const argv[], unsigned timeout_ms)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (wait_deadline(pid, timeout_ms, &status) != 0) {
		fprintf(stderr, "test_run: %s did not finish within %u ms; killed\n", argv[0],
			timeout_ms);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *mosquitto_path(void)
{
	static const char *const candidates[] = {"/usr/sbin/mosquitto", "/usr/bin/mosquitto",
						 "/usr/local/sbin/mosquitto"};

	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (access(candidates[i], X_OK) == 0)
			return candidates[i];
	return "mosquitto"; /* PATH */
}

static int write_config(struct test_broker *b)
{
	FILE *f = fopen(b->conf, "w");

	if (!f)
		return -1;
	fprintf(f, "persistence true\n");
	fprintf(f, "persistence_location %s/\n", b->dir);
	fprintf(f, "listener %u 127.0.0.1\n", (unsigned)b->port);
	if (b->tls) {
		fprintf(f, "cafile %s\n", b->ca_file);
		fprintf(f, "certfile %s\n", b->cert_file);
		fprintf(f, "keyfile %s\n", b->key_file);
		fprintf(f, "require_certificate %s\n", b->require_certificate ? "true" : "false");
	}
	fprintf(f, "allow_anonymous true\n");
	/* Never drop QoS 1 messages queued for a slow subscriber: tests count
	 * what arrives. */
	fprintf(f, "max_queued_messages 0\n");
	/* Without it the broker's small writes wait for delayed ACKs (about
	 * 40 ms per hop), which is what a deployment must avoid as well. */
	fprintf(f, "set_tcp_nodelay true\n");
	/* Paho reads a packet whole before anything can refuse it: the broker
	 * bounds what a publisher can make a node hold (1 MiB, room for the
	 * node's own 128 KiB payload check). */
	fprintf(f, "max_packet_size 1048576\n");
	fprintf(f, "log_dest file %s\n", b->log);
	fprintf(f, "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
	/* As root, mosquitto would switch to its own user, which cannot write
	 * the test's directory. */
	if (geteuid() == 0)
		fprintf(f, "user root\n");
	return fclose(f);
}

static bool log_says_running(const struct test_broker *b)
{
	char line[512];
	bool running = false;
	FILE *f = fopen(b->log, "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " running"))
			running = true;
	fclose(f);
	return running;
}

static bool port_accepts(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Start on b->port; 0 when it accepts, 1 if it exited (port taken), -1 on
 * other failure. */
static int launch(struct test_broker *b)
{
	char errlog[4300];
	uint64_t deadline;
	int status;

	if (write_config(b) != 0) {
		fprintf(stderr, "test_broker: cannot write %s: %s\n", b->conf, strerror(errno));
		return -1;
	}
	unlink(b->log);
	snprintf(errlog, sizeof(errlog), "%s/stderr.log", b->dir);
	b->pid = fork();
	if (b->pid < 0)
		return -1;
	if (b->pid == 0) {
		int out = open(errlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (out >= 0) {
			dup2(out, STDOUT_FILENO);
			dup2(out, STDERR_FILENO);
		}
		if (in >= 0)
			dup2(in, STDIN_FILENO);
		/* Never outlive the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp(mosquitto_path(), "mosquitto", "-c", b->conf, (char *)NULL);
		_exit(127);
	}
	deadline = test_now_ms() + BROKER_START_TIMEOUT_MS;
	while (test_now_ms() < deadline) {
		pid_t r = waitpid(b->pid, &status, WNOHANG);
		if (r == b->pid) {
			b->pid = 0;
			return 1;
		}
		/* "running" is logged only after every listener is bound, so a
		 * connect then reaches this broker, not a squatter. */
		if (log_says_running(b) && port_accepts(b->port))
			return 0;
		sleep_ms(10);
	}
	fprintf(stderr, "test_broker: mosquitto on port %u not ready after %u ms (see %s)\n",
		(unsigned)b->port, BROKER_START_TIMEOUT_MS, b->log);
	kill(b->pid, SIGKILL);
	waitpid(b->pid, &status, 0);
	b->pid = 0;
	return -1;
}

static int start_broker(const struct test_broker_tls *tls, struct test_broker **out)
{
	struct test_broker *b = calloc(1, sizeof(*b));

	*out = NULL;
	if (!b)
		return -1;
	if (tls) {
		if (!tls->ca_file || !tls->cert_file || !tls->key_file ||
		    strlen(tls->ca_file) >= sizeof(b->ca_file) ||
		    strlen(tls->cert_file) >= sizeof(b->cert_file) ||
		    strlen(tls->key_file) >= sizeof(b->key_file)) {
			free(b);
			return -1;
		}
		b->tls = true;
		b->require_certificate = tls->require_certificate;
		strcpy(b->ca_file, tls->ca_file);
		strcpy(b->cert_file, tls->cert_file);
		strcpy(b->key_file, tls->key_file);
	}
	if (test_tmpdir("srup-broker", b->dir) != 0) {
		fprintf(stderr, "test_broker: mkdtemp: %s\n", strerror(errno));
		free(b);
		return -1;
	}
	snprintf(b->conf, sizeof(b->conf), "%s/mosquitto.conf", b->dir);
	snprintf(b->log, sizeof(b->log), "%s/mosquitto.log", b->dir);
	for (int attempt = 0; attempt < BROKER_PORT_ATTEMPTS; attempt++) {
		b->port = test_free_port();
		if (b->port == 0)
			continue;
		int r = launch(b);
		if (r == 0) {
			snprintf(b->url, sizeof(b->url), "%s://127.0.0.1:%u",
				 b->tls ? "mqtts" : "tcp", (unsigned)b->port);
			*out = b;
			return 0;
		}
		if (r < 0)
			break;
		/* Lost a race for the port with a parallel test: pick another. */
	}
	fprintf(stderr, "test_broker: could not start mosquitto (see %s)\n", b->dir);
	test_broker_free(b);
	return -1;
}

int test_broker_start(struct test_broker **out)
{
	return start_broker(NULL, out);
}

int test_broker_start_tls(const struct test_broker_tls *tls, struct test_broker **out)
{
	if (!tls) {
		*out = NULL;
		return -1;
	}
	return start_broker(tls, out);
}

int test_broker_stop(struct test_broker *b)
{
	int status;

	if (!b || b->pid <= 0)
		return 0;
	kill(b->pid, SIGTERM);
	if (wait_deadline(b->pid, BROKER_STOP_TIMEOUT_MS, &status) != 0) {
		kill(b->pid, SIGKILL);
		waitpid(b->pid, &status, 0);
		b->pid = 0;
		return -1;
	}
	b->pid = 0;
	return 0;
}

int test_broker_restart(struct test_broker *b)
{
	if (!b)
		return -1;
	test_broker_stop(b);
	/* mosquitto sets SO_REUSEADDR, so the port can be bound again at once
	 * unless another process took it meanwhile: retry briefly for that. */
	for (int attempt = 0; attempt < 3; attempt++) {
		int r = launch(b);
		if (r == 0)
			return 0;
		if (r < 0)
			return -1;
		sleep_ms(200);
	}
	fprintf(stderr, "test_broker: port %u no longer free for a restart\n", (unsigned)b->port);
	return -1;
}

void test_broker_free(struct test_broker *b)
{
	if (!b)
		return;
	test_broker_stop(b);
	test_rm_rf(b->dir);
	free(b);
}

uint16_t test_broker_port(const struct test_broker *b)
{
	return b->port;
}

const char *test_broker_url(const struct test_broker *b)
{
	return b->url;
}

const char *test_broker_dir(const struct test_broker *b)
{
	return b->dir;
}
