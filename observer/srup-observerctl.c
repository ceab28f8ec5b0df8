/* srup-observerctl: asks a running srup-observerd over its control socket.
 *
 * The daemon always answers JSON (one line per request); this program
 * prints it as is with --json, or as text for people. Rendering here keeps
 * one answer format that scripts and people share, and keeps the daemon's
 * loop to building one small JSON text per request. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "obs_control_proto.h"
#include "srup_config.h"

#define CTL_DEFAULT_SOCKET "/run/srup-observer/control"
#define CTL_ANSWER_MAX (4u * 1024u * 1024u)
#define CTL_TIMEOUT_MS 10000

enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_REFUSED = 1,  /* the daemon answered with an error */
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_UNREACHABLE = 3, /* no daemon, no permission, out of time, bad answer */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: srup-observerctl [--socket PATH | --config FILE] [--json] COMMAND\n"
		"\n"
		"Commands:\n"
		"  status          identity, server, broker and channel state, counters\n"
		"  list            pending observations (device, age, attempts, deadline)\n"
		"  cancel DEVICE   answer the pending observation for DEVICE with 0x6F\n"
		"  history [N]     the last N decided observations (default 10, at most %u)\n"
		"\n"
		"  -s, --socket PATH  the control socket (default %s)\n"
		"  -c, --config FILE  take the socket from the observer's [control] socket\n"
		"  -j, --json         print the daemon's JSON answer as it is\n"
		"  -h, --help         this text\n"
		"\n"
		"Exit status: 0 done, 1 the daemon refused (e.g. nothing pending), 2 usage,\n"
		"3 the daemon cannot be reached, answered nonsense or did not answer within\n"
		"%d s (connecting included).\n",
		OBS_CTL_HISTORY_MAX, CTL_DEFAULT_SOCKET, CTL_TIMEOUT_MS / 1000);
}

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(deadline->tv_sec - now.tv_sec) * 1000 +
	       (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* Connects within the time left. A UNIX socket's non-blocking connect to a
 * daemon whose queue is full fails with EAGAIN at once instead of going on
 * in the background (nothing to poll), so the blocking connect is bounded
 * with SO_SNDTIMEO: the kernel wakes it as soon as a slot frees. */
static int connect_by(int fd, const struct sockaddr_un *addr, const struct timespec *deadline)
{
	for (;;) {
		long left = ms_left(deadline);
		struct timeval tv;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return -1;
		if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
			return 0;
		/* EAGAIN: the queue stayed full for the whole wait. */
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
	}
}

/* Waits for events on fd until the deadline: 1 ready, 0 out of time. */
static int wait_by(int fd, short events, const struct timespec *deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		long left = ms_left(deadline);
		int n;

		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return 1; /* the send or recv that follows reports it */
	}
}

/* Sends request and reads one answer line (malloc'd, NUL-terminated); the
 * whole exchange, connect included, ends by one deadline, so a daemon that
 * is stuck (its loop stopped, its queue full) cannot hold us for ever. */
static char *ask(const char *path, const char *request)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	size_t len = 0, cap = 0, sent = 0, req_len = strlen(request);
	struct timespec deadline;
	char *buf = NULL;
	int fd, send_errno = 0;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "srup-observerctl: %s: path too long\n", path);
		return NULL;
	}
	memcpy(addr.sun_path, path, strlen(path));
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += CTL_TIMEOUT_MS / 1000;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect_by(fd, &addr, &deadline) < 0) {
		if (errno == ETIMEDOUT)
			fprintf(stderr,
				"srup-observerctl: cannot connect to %s: the daemon accepted no "
				"connection within %d s (is it stuck?)\n",
				path, CTL_TIMEOUT_MS / 1000);
		else
			fprintf(stderr, "srup-observerctl: cannot connect to %s: %s\n", path,
				strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	/* From here on every wait is a poll against the same deadline. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		fprintf(stderr, "srup-observerctl: %s: %s\n", path, strerror(errno));
		close(fd);
		return NULL;
	}
	while (sent < req_len) {
		ssize_t w;

		if (!wait_by(fd, POLLOUT, &deadline)) {
			fprintf(stderr, "srup-observerctl: %s: cannot send the request within %d s\n",
				path, CTL_TIMEOUT_MS / 1000);
			goto fail;
		}
		w = send(fd, request + sent, req_len - sent, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (w <= 0) {
			/* The daemon may have refused us and closed already: its
			 * answer says why. */
			send_errno = errno;
			break;
		}
		sent += (size_t)w;
	}
	for (;;) {
		ssize_t r;

		if (len && buf[len - 1] == '\n')
			break;
		if (!wait_by(fd, POLLIN, &deadline)) {
			fprintf(stderr, "srup-observerctl: %s: no answer within %d s\n", path,
				CTL_TIMEOUT_MS / 1000);
			goto fail;
		}
		if (len + 4096 + 1 > cap) {
			char *grown;

			if (cap >= CTL_ANSWER_MAX) {
				fprintf(stderr, "srup-observerctl: %s: answer over %u bytes\n", path,
					CTL_ANSWER_MAX);
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			grown = realloc(buf, cap);
			if (!grown)
				goto fail;
			buf = grown;
		}
		r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r <= 0) {
			if (send_errno)
				fprintf(stderr, "srup-observerctl: %s: cannot send: %s\n", path,
					strerror(send_errno));
			else
				fprintf(stderr,
					"srup-observerctl: %s: connection closed before an answer\n",
					path);
			goto fail;
		}
		len += (size_t)r;
	}
	close(fd);
	buf[len - 1] = '\0';
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

static double num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : "?";
}

static void duration(double ms, char *out, size_t len)
{
	unsigned long long s = (unsigned long long)(ms / 1000);

	if (ms < 1000)
		snprintf(out, len, "%.0fms", ms);
	else if (s < 60)
		snprintf(out, len, "%.1fs", ms / 1000);
	else if (s < 3600)
		snprintf(out, len, "%llum%02llus", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, len, "%lluh%02llum", s / 3600, s / 60 % 60);
	else
		snprintf(out, len, "%llud%02lluh", s / 86400, s / 3600 % 24);
}

/* "name count, name count" for every member of an object of numbers. */
static void print_counts(const char *title, const cJSON *o, int skip_zero)
{
	const cJSON *v;
	int first = 1;

	printf("  %-18s", title);
	cJSON_ArrayForEach(v, o)
	{
		if (skip_zero && v->valuedouble == 0)
			continue;
		printf("%s%s %.0f", first ? "" : ", ", v->string, v->valuedouble);
		first = 0;
	}
	printf("%s\n", first ? "none" : "");
}

/* Keys changed by a reload that wait for a restart. */
static void print_restart_needed(const cJSON *arr)
{
	const cJSON *e;
	int first = 1;

	if (cJSON_GetArraySize(arr) == 0)
		return;
	printf("  %-18s", "restart needed");
	cJSON_ArrayForEach(e, arr)
	{
		if (cJSON_IsString(e)) {
			printf("%s%s", first ? "" : ", ", e->valuestring);
			first = 0;
		}
	}
	printf(" (changed in the configuration; applied at the next restart)\n");
}

static void render_status(const cJSON *a)
{
	const cJSON *broker = cJSON_GetObjectItemCaseSensitive(a, "broker");
	const cJSON *channel = cJSON_GetObjectItemCaseSensitive(a, "channel");
	const cJSON *channels = cJSON_GetObjectItemCaseSensitive(a, "channels"), *each;
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "counters");
	char up[32];

	duration(num(a, "uptime_seconds") * 1000, up, sizeof(up));
	printf("observer %s  (server %s)\n", str(a, "observer"), str(a, "server"));
	/* With a list, the entry the session is on, then the list. */
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(broker, "connected_to")) &&
	    strcmp(str(broker, "connected_to"), str(broker, "url")) != 0)
		printf("  %-18s%s (connected; list: %s)\n", "broker", str(broker, "connected_to"),
		       str(broker, "url"));
	else
		printf("  %-18s%s (%s)\n", "broker", str(broker, "url"), str(broker, "state"));
	/* One line per channel; a daemon without "channels" has one. */
	if (cJSON_IsArray(channels) && cJSON_GetArraySize(channels) > 0) {
		cJSON_ArrayForEach(each, channels)
			printf("  %-18s%s (%s)\n", "channel", str(each, "kind"), str(each, "state"));
	} else {
		printf("  %-18s%s (%s)\n", "channel", str(channel, "kind"), str(channel, "state"));
	}
	printf("  %-18s%.0f\n", "pending", num(a, "pending"));
	printf("  %-18s%s\n", "uptime", up);
	print_restart_needed(cJSON_GetObjectItemCaseSensitive(a, "restart_needed"));
	printf("  %-18s%.0f accepted, %.0f refused at once\n", "requests", num(c, "requests_accepted"),
	       num(c, "requests_refused"));
	print_counts("outcomes", cJSON_GetObjectItemCaseSensitive(c, "outcomes"), 1);
	print_counts("frames", cJSON_GetObjectItemCaseSensitive(c, "frames"), 0);
	printf("  %-18s%.0f received, %.0f accepted, %.0f sent, %.0f dropped\n", "messages",
	       num(c, "messages_received"), num(c, "messages_accepted"), num(c, "messages_sent"),
	       num(c, "messages_dropped"));
	print_counts("dropped by reason", cJSON_GetObjectItemCaseSensitive(c, "dropped_by_reason"),
		     1);
	if (num(c, "audit_errors") > 0)
		printf("  %-18s%.0f\n", "audit errors", num(c, "audit_errors"));
}

static void render_list(const cJSON *a)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(a, "observations"), *e;
	char age[32], left[32];

	printf("%.0f pending\n", num(a, "pending"));
	if (cJSON_GetArraySize(arr) == 0)
		return;
	printf("%-16s  %8s  %8s  %10s\n", "DEVICE", "AGE", "ATTEMPTS", "DEADLINE IN");
	cJSON_ArrayForEach(e, arr)
	{
		duration(num(e, "age_ms"), age, sizeof(age));
		duration(num(e, "deadline_in_ms"), left, sizeof(left));
		printf("%-16s  %8s  %8.0f  %10s\n", str(e, "device"), age, num(e, "attempts"), left);
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "truncated")))
		printf("(only the %d with the earliest deadlines shown)\n", cJSON_GetArraySize(arr));
}

static void render_history(const cJSON *a)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(a, "observations"), *e;
	char took[32];

	if (cJSON_GetArraySize(arr) == 0) {
		printf("no observation decided yet\n");
		return;
	}
	printf("%-24s  %-16s  %-15s  %-6s  %8s  %8s\n", "TIME", "DEVICE", "OUTCOME", "STATUS",
	       "ATTEMPTS", "DURATION");
	cJSON_ArrayForEach(e, arr)
	{
		duration(num(e, "duration_ms"), took, sizeof(took));
		printf("%-24s  %-16s  %-15s  %-6s  %8.0f  %8s\n", str(e, "time"), str(e, "device"),
		       str(e, "outcome"), str(e, "status"), num(e, "attempts"), took);
	}
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"socket", required_argument, NULL, 's'},
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct srup_config cfg;
	const char *socket_path = NULL, *config_path = NULL;
	char request[OBS_CTL_REQUEST_MAX + 1], err[768];
	struct obs_ctl_request req;
	int json = 0, opt, rc;
	size_t used = 0;
	char *answer;
	cJSON *a;

	while ((opt = getopt_long(argc, argv, "s:c:jh", options, NULL)) != -1) {
		switch (opt) {
		case 's':
			socket_path = optarg;
			break;
		case 'c':
			config_path = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage(stdout);
			return CTL_EXIT_OK;
		default:
			usage(stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind == argc || (socket_path && config_path)) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		int n = snprintf(request + used, sizeof(request) - used, "%s%s", i > optind ? " " : "",
				 argv[i]);

		if (n < 0 || (size_t)n >= sizeof(request) - used) {
			fprintf(stderr, "srup-observerctl: command too long\n");
			return CTL_EXIT_USAGE;
		}
		used += (size_t)n;
	}
	/* The daemon parses the same way; checking first gives a usage error
	 * rather than a refusal. */
	if (obs_ctl_parse(request, used, &req, err, sizeof(err)) != 0) {
		fprintf(stderr, "srup-observerctl: %s\n", err);
		return CTL_EXIT_USAGE;
	}
	if (config_path) {
		if (srup_config_load(config_path, SRUP_CONFIG_OBSERVER, &cfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "srup-observerctl: %s\n", err);
			return CTL_EXIT_USAGE;
		}
		socket_path = cfg.control_socket;
	}
	if (!socket_path)
		socket_path = CTL_DEFAULT_SOCKET;
	request[used++] = '\n';
	request[used] = '\0';
	answer = ask(socket_path, request);
	if (!answer)
		return CTL_EXIT_UNREACHABLE;
	a = cJSON_Parse(answer);
	if (!cJSON_IsObject(a)) {
		fprintf(stderr, "srup-observerctl: %s: the answer is not JSON\n", socket_path);
		free(answer);
		cJSON_Delete(a);
		return CTL_EXIT_UNREACHABLE;
	}
	rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "ok")) ? CTL_EXIT_OK : CTL_EXIT_REFUSED;
	if (json)
		printf("%s\n", answer);
	else if (rc != CTL_EXIT_OK)
		fprintf(stderr, "srup-observerctl: %s\n", str(a, "error"));
	else if (req.command == OBS_CTL_STATUS)
		render_status(a);
	else if (req.command == OBS_CTL_LIST)
		render_list(a);
	else if (req.command == OBS_CTL_HISTORY)
		render_history(a);
	else
		printf("cancelled: device %s answered %s\n", str(a, "device"), str(a, "status"));
	free(answer);
	cJSON_Delete(a);
	return rc;
}
