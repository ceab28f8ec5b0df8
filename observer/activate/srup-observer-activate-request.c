/* srup-observer-activate-request: srup-observerd's activation hook on a
 * Debian appliance.
 *
 *   srup-observer-activate-request STAGED_FILE TOKEN
 *
 * Runs as the daemon's user, inside its sandbox. Records the SHA-256 of the
 * staged package (which the daemon has verified) in a request for the root
 * unit srup-observer-activate.service (started by its path unit), then
 * waits for that unit's result: exit 0 installed (the daemon answers
 * ACTIVATE 0x10), 1 refused, failed or timed out (0x1F), 2 usage.
 *
 * Environment: SRUP_ACTIVATE_DIR (default /var/lib/srup-observer/activate),
 * SRUP_ACTIVATE_TIMEOUT seconds (default 110, under the daemon's default hook
 * timeout of 120 s, so that this program answers before it is killed; raise
 * both together, the daemon's [hooks] timeout_seconds and this in the unit's
 * Environment=, for packages that take longer to install). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "activate.h"

#define DEFAULT_TIMEOUT_S 110u
#define STAGED_MAX_BYTES (1ull << 30)

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static unsigned env_timeout(void)
{
	const char *text = getenv("SRUP_ACTIVATE_TIMEOUT");
	char *end;
	unsigned long v;

	if (!text || !*text)
		return DEFAULT_TIMEOUT_S;
	errno = 0;
	v = strtoul(text, &end, 10);
	return errno || *end || v == 0 || v > 86400 ? DEFAULT_TIMEOUT_S : (unsigned)v;
}

static uint64_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* The result for our token, if there is one: 0 or 1; -1 not yet. */
static int read_result(int dir_fd, const char *token)
{
	char text[ACTIVATE_FILE_MAX];
	struct activate_result res;
	const char *why;

	if (activate_read_file(dir_fd, ACTIVATE_RESULT, text, sizeof(text)) != 0)
		return -1;
	if (activate_result_parse(text, &res, &why) != 0) {
		fprintf(stderr, "<4>activation result ignored: %s\n", why);
		return -1;
	}
	if (strcmp(res.token, token) != 0)
		return -1; /* an older request's */
	fprintf(stderr, "%sactivation %s: %s\n", res.status == 0 ? "<5>" : "<3>",
		res.status == 0 ? "installed" : "failed", res.message);
	return res.status;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("SRUP_ACTIVATE_DIR");
	struct activate_request req = {0};
	char text[ACTIVATE_FILE_MAX];
	uint64_t deadline;
	int dir_fd, fd, in_fd, rc = 1;
	struct sigaction sa = {0};

	if (argc != 3) {
		fprintf(stderr, "usage: srup-observer-activate-request STAGED_FILE TOKEN\n");
		return 2;
	}
	if (!dir || !*dir)
		dir = ACTIVATE_DEFAULT_DIR;
	if (argv[1][0] != '/' || strlen(argv[1]) >= sizeof(req.file) ||
	    strpbrk(argv[1], "\n\r\t")) {
		fprintf(stderr, "<3>activation: '%s' is not an absolute path of a staged file\n",
			argv[1]);
		return 2;
	}
	if (!activate_token_ok(argv[2])) {
		fprintf(stderr, "<3>activation: the token is not 1 to %u printable characters\n",
			ACTIVATE_TOKEN_MAX);
		return 2;
	}
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* The digest the installer will hold the file to. */
	fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		fprintf(stderr, "<3>activation: cannot open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (activate_sha256_fd(fd, -1, STAGED_MAX_BYTES, req.sha256) != 0) {
		fprintf(stderr, "<3>activation: cannot read %s: %s\n", argv[1], strerror(errno));
		close(fd);
		return 1;
	}
	close(fd);
	snprintf(req.file, sizeof(req.file), "%s", argv[1]);
	snprintf(req.token, sizeof(req.token), "%s", argv[2]);

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "<3>activation: cannot create %s: %s\n", dir, strerror(errno));
		return 1;
	}
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		fprintf(stderr, "<3>activation: cannot open %s: %s\n", dir, strerror(errno));
		return 1;
	}
	/* Watch before writing, so the result cannot slip past. */
	in_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (in_fd < 0 || inotify_add_watch(in_fd, dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		fprintf(stderr, "<3>activation: cannot watch %s: %s\n", dir, strerror(errno));
		goto out;
	}
	if (faccessat(dir_fd, ACTIVATE_REQUEST, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
	    faccessat(dir_fd, ACTIVATE_TAKEN, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		fprintf(stderr, "<3>activation: another activation is in progress in %s\n", dir);
		goto out;
	}
	unlinkat(dir_fd, ACTIVATE_RESULT, 0);
	if (activate_request_format(&req, text, sizeof(text)) != 0 ||
	    activate_write_file(dir_fd, ACTIVATE_REQUEST, text, 0600) != 0) {
		fprintf(stderr, "<3>activation: cannot write the request in %s: %s\n", dir,
			strerror(errno));
		goto out;
	}
	fprintf(stderr, "<6>activation of %s (sha256 %s) requested\n", req.file, req.sha256);

	deadline = now_s() + env_timeout();
	for (;;) {
		struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
		char events[4096];
		int r = read_result(dir_fd, req.token);

		if (r >= 0) {
			rc = r;
			break;
		}
		if (stop_signal || now_s() >= deadline) {
			/* Withdraw the request unless the installer took it. */
			bool withdrawn = unlinkat(dir_fd, ACTIVATE_REQUEST, 0) == 0;

			fprintf(stderr, "<3>activation: %s before the installer answered%s\n",
				stop_signal ? "stopped" : "timed out",
				withdrawn ? "; request withdrawn"
					  : "; the installer has the request and may still install it");
			break;
		}
		if (poll(&pfd, 1, 1000) > 0)
			while (read(in_fd, events, sizeof(events)) > 0)
				;
	}
out:
	if (in_fd >= 0)
		close(in_fd);
	close(dir_fd);
	return rc;
}
