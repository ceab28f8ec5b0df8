/* The control socket (obs_control.h). */
#include "obs_control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "obs_audit.h"
#include "obs_control_proto.h"
#include "srup_keys.h"
#include "srup_log.h"

#define CTL_GROUPS_MAX 64

struct ctl_conn {
	struct obs_control *ctl;
	struct ctl_conn *prev, *next;
	int fd;
	sd_event_source *io, *idle;
	char in[OBS_CTL_REQUEST_MAX];
	size_t in_len;
	char *out;            /* the answer being written */
	size_t out_len, out_off;
	bool eof;             /* the client will send no more */
	bool closing;         /* close once the answer is written */
};

struct obs_control {
	sd_event *loop;
	struct obs_control_ops ops;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	gid_t gid;            /* the socket's group: members may connect */
	sd_event_source *listen_io;
	struct ctl_conn *conns;
	unsigned n_conns;
	struct obs_history_entry history[OBS_CTL_HISTORY_MAX];
	size_t history_next, history_len;
};

/* ---- answers ------------------------------------------------------------ */

static cJSON *answer_new(const char *command)
{
	cJSON *o = cJSON_CreateObject();

	if (o) {
		cJSON_AddTrueToObject(o, "ok");
		cJSON_AddStringToObject(o, "command", command);
	}
	return o;
}

static char *answer_error(const char *why)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o && cJSON_AddFalseToObject(o, "ok") && cJSON_AddStringToObject(o, "error", why))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

static void add_id(cJSON *o, const char *name, uint64_t id)
{
	char text[17];

	srup_id_format16(id, text);
	cJSON_AddStringToObject(o, name, text);
}

static void add_status_byte(cJSON *o, uint8_t status)
{
	char text[8];

	snprintf(text, sizeof(text), "0x%02x", status);
	cJSON_AddStringToObject(o, "status", text);
}

/* "restart_needed": ["[mqtt] broker", ...], always present (empty: none). */
static void add_restart_needed(cJSON *o, const char *list)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "restart_needed");
	const char *p = list;

	while (arr && p && *p) {
		const char *end = strstr(p, ", ");
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char key[128];

		snprintf(key, sizeof(key), "%.*s", (int)(n < sizeof(key) ? n : sizeof(key) - 1), p);
		cJSON_AddItemToArray(arr, cJSON_CreateString(key));
		p = end ? end + 2 : p + n;
	}
}

static cJSON *answer_status(struct obs_control *c)
{
	struct obs_control_status st = {0};
	cJSON *o = answer_new("status"), *broker, *channel, *counters, *drops, *outcomes, *frames;

	c->ops.status(&st, c->ops.user);
	if (!o)
		return NULL;
	add_id(o, "observer", st.identity_id);
	add_id(o, "server", st.server_id);
	broker = cJSON_AddObjectToObject(o, "broker");
	if (broker) {
		cJSON_AddStringToObject(broker, "url", st.broker ? st.broker : "");
		cJSON_AddStringToObject(broker, "state",
					st.broker_connected ? "connected" : "disconnected");
		if (st.broker_current)
			cJSON_AddStringToObject(broker, "connected_to", st.broker_current);
		else
			cJSON_AddNullToObject(broker, "connected_to");
	}
	channel = cJSON_AddObjectToObject(o, "channel");
	if (channel) {
		cJSON_AddStringToObject(channel, "kind", st.channel ? st.channel : "");
		cJSON_AddStringToObject(channel, "state", st.channel_state ? st.channel_state : "");
	}
	if (st.n_channels) {
		cJSON *list = cJSON_AddArrayToObject(o, "channels");

		for (size_t i = 0; list && i < st.n_channels && i < OBS_METRICS_CHANNELS_MAX; i++) {
			cJSON *one = cJSON_CreateObject();

			if (!one || !cJSON_AddItemToArray(list, one)) {
				cJSON_Delete(one);
				break;
			}
			cJSON_AddStringToObject(one, "kind", st.channels[i].kind);
			cJSON_AddStringToObject(one, "state", st.channels[i].state);
			if (st.metrics && i < st.metrics->n_channels) {
				const struct obs_metrics_channel *mc = &st.metrics->channel[i];
				cJSON *fr = cJSON_AddObjectToObject(one, "frames");

				if (fr) {
					cJSON_AddNumberToObject(fr, "match", (double)mc->frames_match);
					cJSON_AddNumberToObject(fr, "mismatch",
								(double)mc->frames_mismatch);
					cJSON_AddNumberToObject(fr, "not_compared",
								(double)mc->frames_not_compared);
				}
			}
		}
	}
	cJSON_AddNumberToObject(o, "pending", (double)st.pending);
	cJSON_AddNumberToObject(o, "uptime_seconds", (double)st.uptime_seconds);
	add_restart_needed(o, st.restart_needed);
	counters = cJSON_AddObjectToObject(o, "counters");
	if (!counters)
		return o;
	cJSON_AddNumberToObject(counters, "messages_received", (double)st.node.received);
	cJSON_AddNumberToObject(counters, "messages_accepted", (double)st.node.accepted);
	cJSON_AddNumberToObject(counters, "messages_dropped", (double)st.node.dropped);
	cJSON_AddNumberToObject(counters, "messages_sent", (double)st.node.sent);
	drops = cJSON_AddObjectToObject(counters, "dropped_by_reason");
	for (unsigned r = 0; drops && r < SRUP_NODE_DROP__COUNT; r++)
		cJSON_AddNumberToObject(drops, srup_node_drop_name((enum srup_node_drop)r),
					(double)st.node.dropped_by[r]);
	if (st.metrics) {
		cJSON_AddNumberToObject(counters, "requests_accepted",
					(double)st.metrics->requests_accepted);
		cJSON_AddNumberToObject(counters, "requests_refused",
					(double)st.metrics->requests_refused);
		outcomes = cJSON_AddObjectToObject(counters, "outcomes");
		for (unsigned k = 0; outcomes && k < OBS_OUTCOME_COUNT; k++)
			cJSON_AddNumberToObject(outcomes, obs_outcome_name((enum obs_outcome)k),
						(double)st.metrics->outcomes[k]);
		frames = cJSON_AddObjectToObject(counters, "frames");
		if (frames) {
			cJSON_AddNumberToObject(frames, "match", (double)st.metrics->frames_match);
			cJSON_AddNumberToObject(frames, "mismatch", (double)st.metrics->frames_mismatch);
			cJSON_AddNumberToObject(frames, "not_compared",
						(double)st.metrics->frames_not_compared);
		}
		cJSON_AddNumberToObject(counters, "audit_errors", (double)st.metrics->audit_errors);
	}
	return o;
}

static cJSON *answer_list(struct obs_control *c)
{
	struct obs_pending_info *info = calloc(OBS_CTL_LIST_MAX, sizeof(*info));
	size_t total = 0, n;
	uint64_t now = 0;
	cJSON *o, *arr;

	if (!info)
		return NULL;
	n = c->ops.list(info, OBS_CTL_LIST_MAX, &total, &now, c->ops.user);
	o = answer_new("list");
	if (o) {
		cJSON_AddNumberToObject(o, "pending", (double)total);
		cJSON_AddBoolToObject(o, "truncated", n < total);
		arr = cJSON_AddArrayToObject(o, "observations");
		for (size_t i = 0; arr && i < n; i++) {
			cJSON *e = cJSON_CreateObject();

			if (!e)
				break;
			add_id(e, "device", info[i].device_id);
			cJSON_AddNumberToObject(e, "age_ms",
						(double)(now > info[i].started_ms ? now - info[i].started_ms : 0));
			cJSON_AddNumberToObject(e, "attempts", info[i].attempts);
			cJSON_AddNumberToObject(e, "deadline_in_ms",
						(double)(info[i].deadline_ms > now ? info[i].deadline_ms - now : 0));
			cJSON_AddItemToArray(arr, e);
		}
	}
	free(info);
	return o;
}

static cJSON *answer_history(struct obs_control *c, unsigned count)
{
	cJSON *o = answer_new("history"), *arr;
	size_t n = count < c->history_len ? count : c->history_len;

	if (!o || !(arr = cJSON_AddArrayToObject(o, "observations")))
		return o;
	/* Newest first. */
	for (size_t i = 0; i < n; i++) {
		size_t k = (c->history_next + OBS_CTL_HISTORY_MAX - 1 - i) % OBS_CTL_HISTORY_MAX;
		const struct obs_history_entry *h = &c->history[k];
		cJSON *e = cJSON_CreateObject();
		char when[32];

		if (!e)
			break;
		obs_audit_format_time(h->time_unix_ms, when);
		cJSON_AddStringToObject(e, "time", when);
		add_id(e, "device", h->device_id);
		cJSON_AddStringToObject(e, "outcome", obs_outcome_name(h->outcome));
		add_status_byte(e, h->status);
		cJSON_AddNumberToObject(e, "attempts", h->attempts);
		cJSON_AddNumberToObject(e, "duration_ms", (double)h->duration_ms);
		cJSON_AddItemToArray(arr, e);
	}
	return o;
}

char *obs_control_answer(struct obs_control *c, const char *line, size_t len)
{
	struct obs_ctl_request req;
	char err[200], id[17];
	cJSON *o = NULL;
	char *text;
	int r;

	if (obs_ctl_parse(line, len, &req, err, sizeof(err)) != 0)
		return answer_error(err);
	switch (req.command) {
	case OBS_CTL_STATUS:
		o = answer_status(c);
		break;
	case OBS_CTL_LIST:
		o = answer_list(c);
		break;
	case OBS_CTL_HISTORY:
		o = answer_history(c, req.count);
		break;
	case OBS_CTL_CANCEL:
		srup_id_format16(req.device_id, id);
		r = c->ops.cancel(req.device_id, c->ops.user);
		if (r == 0) {
			snprintf(err, sizeof(err), "no observation pending for device %s", id);
			return answer_error(err);
		}
		if (r < 0) {
			snprintf(err, sizeof(err), "cannot cancel the observation for device %s", id);
			return answer_error(err);
		}
		o = answer_new("cancel");
		if (o) {
			cJSON_AddStringToObject(o, "device", id);
			add_status_byte(o, 0x6F);
		}
		break;
	}
	if (!o)
		return NULL;
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

void obs_control_note(struct obs_control *c, const struct obs_history_entry *entry)
{
	if (!c || !entry)
		return;
	c->history[c->history_next] = *entry;
	c->history_next = (c->history_next + 1) % OBS_CTL_HISTORY_MAX;
	if (c->history_len < OBS_CTL_HISTORY_MAX)
		c->history_len++;
}

/* ---- connections -------------------------------------------------------- */

static void conn_close(struct ctl_conn *k)
{
	struct obs_control *c = k->ctl;

	if (k->prev)
		k->prev->next = k->next;
	else
		c->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	c->n_conns--;
	if (k->closing) {
		/* Unread input would turn the close into a reset, which can cost
		 * the client the answer it is reading: drain a bounded amount. */
		char sink[4096];

		shutdown(k->fd, SHUT_WR);
		for (int i = 0; i < 16 && recv(k->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
			;
	}
	sd_event_source_disable_unref(k->io);
	sd_event_source_disable_unref(k->idle);
	close(k->fd);
	free(k->out);
	free(k);
}

static void conn_touch(struct ctl_conn *k)
{
	uint64_t now = 0;

	sd_event_now(k->ctl->loop, CLOCK_MONOTONIC, &now);
	sd_event_source_set_time(k->idle, now + (uint64_t)OBS_CTL_IDLE_SECONDS * 1000000u);
}

static void conn_events(struct ctl_conn *k)
{
	/* Reading waits while an answer is being written: one request and
	 * one answer per connection at most. */
	sd_event_source_set_io_events(k->io, k->out ? EPOLLOUT : EPOLLIN);
}

/* Writes what it can. Returns -1 if the connection was closed. */
static int conn_flush(struct ctl_conn *k)
{
	while (k->out && k->out_off < k->out_len) {
		ssize_t w = send(k->fd, k->out + k->out_off, k->out_len - k->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			conn_close(k);
			return -1;
		}
		k->out_off += (size_t)w;
		conn_touch(k);
	}
	if (k->out && k->out_off == k->out_len) {
		free(k->out);
		k->out = NULL;
		k->out_len = k->out_off = 0;
	}
	if (!k->out && k->closing) {
		conn_close(k);
		return -1;
	}
	conn_events(k);
	return 0;
}

static void conn_queue(struct ctl_conn *k, char *answer)
{
	size_t len;

	if (!answer)
		answer = answer_error("out of memory");
	if (!answer) {
		k->closing = true;
		return;
	}
	len = strlen(answer);
	answer[len] = '\n'; /* over the NUL: written by length */
	k->out = answer;
	k->out_len = len + 1;
	k->out_off = 0;
}

/* Answers the buffered complete lines one at a time, each once the one
 * before it is written. Returns -1 if the connection was closed. */
static int conn_process(struct ctl_conn *k)
{
	for (;;) {
		char *nl;
		size_t line_len;

		if (k->out || k->closing)
			return conn_flush(k);
		nl = memchr(k->in, '\n', k->in_len);
		if (!nl) {
			if (k->in_len == sizeof(k->in)) {
				char why[96];

				snprintf(why, sizeof(why), "request over the limit of %u bytes",
					 OBS_CTL_REQUEST_MAX - 1);
				conn_queue(k, answer_error(why));
				k->closing = true;
				continue;
			}
			if (k->eof) {
				k->closing = true;
				continue;
			}
			return conn_flush(k);
		}
		line_len = (size_t)(nl - k->in);
		conn_queue(k, obs_control_answer(k->ctl, k->in, line_len));
		memmove(k->in, nl + 1, k->in_len - line_len - 1);
		k->in_len -= line_len + 1;
		if (conn_flush(k) < 0)
			return -1;
	}
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct ctl_conn *k = user;
	ssize_t r;

	(void)s;
	(void)fd;
	if (k->out) {
		if (conn_flush(k) == 0 && !k->out)
			conn_process(k);
		return 0;
	}
	if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	r = recv(k->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (r < 0) {
		conn_close(k);
		return 0;
	}
	if (r == 0)
		k->eof = true;
	k->in_len += (size_t)r;
	conn_touch(k);
	conn_process(k);
	return 0;
}

static int on_conn_idle(sd_event_source *s, uint64_t usec, void *user)
{
	struct ctl_conn *k = user;

	(void)s;
	(void)usec;
	srup_log(LOG_WARNING, "control client closed: no progress for %u s", OBS_CTL_IDLE_SECONDS);
	conn_close(k);
	return 0;
}

static bool peer_in_group(int fd, gid_t gid, const struct ucred *cred)
{
	gid_t groups[CTL_GROUPS_MAX];
	socklen_t len = sizeof(groups);

	if (cred->gid == gid)
		return true;
#ifdef SO_PEERGROUPS
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		for (size_t i = 0; i < len / sizeof(gid_t); i++)
			if (groups[i] == gid)
				return true;
#endif
	return false;
}

/* Best effort: the peer gets told why before the close. */
static void refuse(int fd, const char *why)
{
	char *text = answer_error(why);

	if (text) {
		size_t len = strlen(text);

		text[len] = '\n';
		if (send(fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* nothing more to do: the connection is closed next */
		}
		free(text);
	}
	close(fd);
}

static int on_listen(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct obs_control *c = user;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct ctl_conn *k;
	char why[160];
	int cfd;

	(void)s;
	(void)revents;
	cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			srup_log(LOG_WARNING, "control socket: accept: %s", strerror(errno));
		return 0;
	}
	if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		refuse(cfd, "cannot check the peer's credentials");
		return 0;
	}
	if (cred.uid != 0 && cred.uid != geteuid() && !peer_in_group(cfd, c->gid, &cred)) {
		srup_log(LOG_WARNING, "control socket: refused pid %d uid %u: not root, the "
			 "daemon's user or in group %u", (int)cred.pid, (unsigned)cred.uid,
			 (unsigned)c->gid);
		snprintf(why, sizeof(why), "permission denied: uid %u is not root, the daemon's "
			 "user or in the socket's group", (unsigned)cred.uid);
		refuse(cfd, why);
		return 0;
	}
	if (c->n_conns >= OBS_CTL_CONNECTIONS_MAX) {
		srup_log(LOG_WARNING, "control socket: refused pid %d: %u connections open",
			 (int)cred.pid, c->n_conns);
		refuse(cfd, "too many control connections");
		return 0;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		refuse(cfd, "out of memory");
		return 0;
	}
	k->ctl = c;
	k->fd = cfd;
	if (sd_event_add_io(c->loop, &k->io, cfd, EPOLLIN, on_conn_io, k) < 0 ||
	    sd_event_add_time(c->loop, &k->idle, CLOCK_MONOTONIC, 0, 1000000, on_conn_idle, k) <
		    0) {
		sd_event_source_disable_unref(k->io);
		free(k);
		refuse(cfd, "out of resources");
		return 0;
	}
	k->next = c->conns;
	if (c->conns)
		c->conns->prev = k;
	c->conns = k;
	c->n_conns++;
	conn_touch(k);
	return 0;
}

/* ---- the socket ---------------------------------------------------------- */

static int prepare_path(const char *path, char *err, size_t err_len)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char *copy = strdup(path), *dir;
	struct stat st;
	int fd;

	if (!copy) {
		snprintf(err, err_len, "control socket %s: out of memory", path);
		return -1;
	}
	dir = dirname(copy);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, err_len, "control socket %s: cannot create directory %s: %s", path, dir,
			 strerror(errno));
		free(copy);
		return -1;
	}
	free(copy);
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "control socket %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_len, "control socket %s: exists and is not a socket", path);
		return -1;
	}
	/* A socket someone answers on belongs to a running daemon. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(addr.sun_path, path, strlen(path));
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(fd);
		snprintf(err, err_len, "control socket %s: another process listens on it", path);
		return -1;
	}
	if (fd >= 0)
		close(fd);
	unlink(path);
	return 0;
}

int obs_control_new(sd_event *loop, const char *path, const struct obs_control_ops *ops,
		    struct obs_control **out, char *err, size_t err_len)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct obs_control *c;
	struct group *g;

	if (!loop || !path || !ops || !ops->status || !ops->list || !ops->cancel || !out) {
		snprintf(err, err_len, "control socket: invalid arguments");
		return -1;
	}
	if (!*path || strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, err_len, "control socket %s: path too long for a UNIX socket", path);
		return -1;
	}
	if (prepare_path(path, err, err_len) < 0)
		return -1;
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, err_len, "control socket %s: out of memory", path);
		return -1;
	}
	c->loop = loop;
	c->ops = *ops;
	memcpy(c->path, path, strlen(path) + 1);
	memcpy(addr.sun_path, path, strlen(path));
	g = getgrnam(OBS_CTL_GROUP);
	c->gid = g ? g->gr_gid : getegid();
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		snprintf(err, err_len, "control socket %s: cannot bind: %s", path, strerror(errno));
		goto fail;
	}
	if ((g && chown(path, (uid_t)-1, c->gid) < 0) || chmod(path, 0660) < 0) {
		snprintf(err, err_len, "control socket %s: cannot set its group or mode: %s", path,
			 strerror(errno));
		goto fail_unlink;
	}
	if (listen(c->fd, (int)OBS_CTL_CONNECTIONS_MAX) < 0 ||
	    sd_event_add_io(loop, &c->listen_io, c->fd, EPOLLIN, on_listen, c) < 0) {
		snprintf(err, err_len, "control socket %s: cannot listen: %s", path, strerror(errno));
		goto fail_unlink;
	}
	*out = c;
	return 0;
fail_unlink:
	unlink(path);
fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return -1;
}

void obs_control_free(struct obs_control *c)
{
	if (!c)
		return;
	while (c->conns)
		conn_close(c->conns);
	sd_event_source_disable_unref(c->listen_io);
	close(c->fd);
	unlink(c->path);
	free(c);
}
