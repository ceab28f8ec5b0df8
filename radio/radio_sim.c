/* The sim channel (OBSERVATION-CHANNEL.md section 5): a UNIX-domain
 * SOCK_SEQPACKET socket standing in for a radio in tests, demos and
 * development. Each connection carries one packet holding one confirmation
 * frame; the observer answers one byte (0x60, 0x6E, or 0x00 when the frame
 * was not compared) and closes the connection.
 *
 * The socket stays open for the channel's whole life: a sim needs no
 * advertising, so start/stop only record whether observations are pending,
 * and frames arriving while none is pending are still handed to the
 * callback, which answers 0x00. */
#include "radio.h"
#include "radio_util.h"
#include "srup_log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A client that connects and sends nothing is dropped after this long. */
#define SIM_IDLE_TIMEOUT_USEC (5ULL * 1000000ULL)
/* Connections held at once; more are accepted and closed at once so that
 * they cannot pile up in the listen backlog. */
#define SIM_MAX_CONNECTIONS 64u
/* Larger than the largest frame, so that an oversized packet is seen whole
 * (MSG_TRUNC reports its real size) and rejected, never cut and accepted. */
#define SIM_RECV_BUF (SRUP_FRAME_MAX_LEN + 64u)

struct sim_channel;

struct sim_conn {
	struct sim_channel *ch;
	int fd;
	sd_event_source *io;
	sd_event_source *idle_timer;
	struct sim_conn *prev, *next;
};

struct sim_channel {
	struct radio_channel base; /* first: the channel interface */
	int listen_fd;
	sd_event_source *listen_src;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	/* The socket file we created, removed at destroy only if it is still
	 * that file. */
	dev_t sock_dev;
	ino_t sock_ino;
	struct sim_conn *conns;
	unsigned n_conns;
};

/* ---- Connections ------------------------------------------------------ */

static void sim_conn_close(struct sim_conn *c)
{
	struct sim_channel *ch = c->ch;

	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->idle_timer);
	if (c->fd >= 0)
		close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		ch->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ch->n_conns--;
	free(c);
}

static void sim_conn_answer(struct sim_conn *c, uint8_t result)
{
	if (send(c->fd, &result, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
		srup_log(LOG_DEBUG, "sim: could not answer the client: %s", strerror(errno));
}

/* Receives the one packet of a connection, decides, answers, closes. */
static int sim_conn_readable(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct sim_conn *c = user;
	struct sim_channel *ch = c->ch;
	uint8_t buf[SIM_RECV_BUF];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	struct srup_frame frame;
	enum radio_err err;
	uint8_t result = RADIO_RESULT_NOT_COMPARED;
	ssize_t n;

	(void)s;
	(void)revents;
	n = recvmsg(fd, &msg, MSG_TRUNC | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		srup_log(LOG_WARNING, "sim: receiving from a client failed: %s", strerror(errno));
		sim_conn_close(c);
		return 0;
	}
	if (n == 0) {
		/* A hang-up and an empty packet look alike; either way no
		 * frame came. */
		srup_log(LOG_WARNING, "sim: client sent an empty packet or closed without a frame");
		sim_conn_answer(c, RADIO_RESULT_NOT_COMPARED);
		sim_conn_close(c);
		return 0;
	}
	if ((size_t)n > sizeof(buf) || (msg.msg_flags & MSG_TRUNC)) {
		srup_log(LOG_WARNING,
			 "sim: malformed frame: packet of %zd bytes is longer than the largest frame (%u bytes)",
			 n, SRUP_FRAME_MAX_LEN);
	} else if ((err = srup_frame_parse(buf, (size_t)n, &frame)) != RADIO_OK) {
		srup_log(LOG_WARNING, "sim: malformed frame (%zd bytes): %s", n, radio_strerror(err));
	} else {
		if (ch->base.cb.frame)
			result = ch->base.cb.frame(&frame, ch->base.cb.user);
		srup_frame_wipe(&frame);
	}
	explicit_bzero(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf));
	sim_conn_answer(c, result);
	sim_conn_close(c);
	return 0;
}

static int sim_conn_idle(sd_event_source *s, uint64_t usec, void *user)
{
	struct sim_conn *c = user;

	(void)s;
	(void)usec;
	srup_log(LOG_INFO, "sim: closing a client that sent no frame within %llu s",
		 (unsigned long long)(SIM_IDLE_TIMEOUT_USEC / 1000000ULL));
	sim_conn_close(c);
	return 0;
}

static int sim_accept(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct sim_channel *ch = user;
	struct sim_conn *c;
	int cfd, r;

	(void)s;
	(void)revents;
	cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			srup_log(LOG_WARNING, "sim: accept on %s failed: %s", ch->path,
				 strerror(errno));
		return 0;
	}
	if (ch->n_conns >= SIM_MAX_CONNECTIONS) {
		srup_log(LOG_WARNING, "sim: %u clients already connected, refusing another",
			 ch->n_conns);
		close(cfd);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		srup_log(LOG_ERR, "sim: out of memory accepting a client");
		close(cfd);
		return 0;
	}
	c->ch = ch;
	c->fd = cfd;
	c->next = ch->conns;
	if (ch->conns)
		ch->conns->prev = c;
	ch->conns = c;
	ch->n_conns++;

	r = sd_event_add_io(ch->base.loop, &c->io, cfd, EPOLLIN, sim_conn_readable, c);
	if (r >= 0)
		r = sd_event_add_time_relative(ch->base.loop, &c->idle_timer, CLOCK_MONOTONIC,
					       SIM_IDLE_TIMEOUT_USEC, 0, sim_conn_idle, c);
	if (r < 0) {
		srup_log(LOG_ERR, "sim: cannot watch a client connection: %s", strerror(-r));
		sim_conn_close(c);
	}
	return 0;
}

/* ---- The channel ------------------------------------------------------ */

static enum radio_err sim_start(struct radio_channel *base)
{
	base->listening = true;
	return RADIO_OK;
}

static void sim_stop(struct radio_channel *base)
{
	base->listening = false;
}

static void sim_destroy(struct radio_channel *base)
{
	struct sim_channel *ch = (struct sim_channel *)base;
	struct stat st;

	while (ch->conns)
		sim_conn_close(ch->conns);
	sd_event_source_disable_unref(ch->listen_src);
	if (ch->listen_fd >= 0) {
		close(ch->listen_fd);
		/* Remove our socket file, not one another process put there. */
		if (lstat(ch->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == ch->sock_dev &&
		    st.st_ino == ch->sock_ino)
			unlink(ch->path);
	}
	sd_event_unref(ch->base.loop);
	free(ch);
}

static const struct radio_channel_ops sim_ops = {
	.name = "sim",
	.start = sim_start,
	.stop = sim_stop,
	.destroy = sim_destroy,
};

static int sim_address(const char *path, struct sockaddr_un *sa)
{
	size_t len = strnlen(path, sizeof(sa->sun_path));

	if (len == 0 || len >= sizeof(sa->sun_path))
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, len);
	return 0;
}

/* A socket file left by a crashed observer is removed; anything else at the
 * path (a regular file, a socket somebody still listens on) is left alone
 * and is an error. */
static enum radio_err sim_remove_stale(const struct sockaddr_un *sa)
{
	const char *path = sa->sun_path;
	struct stat st;
	int fd, r, saved;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return RADIO_OK;
		srup_log(LOG_ERR, "sim: cannot inspect %s: %s", path, strerror(errno));
		return RADIO_E_IO;
	}
	if (!S_ISSOCK(st.st_mode)) {
		srup_log(LOG_ERR, "sim: %s exists and is not a socket; refusing to remove it", path);
		return RADIO_E_IO;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		srup_log(LOG_ERR, "sim: socket: %s", strerror(errno));
		return RADIO_E_IO;
	}
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	saved = errno;
	close(fd);
	if (r == 0 || saved == EAGAIN) {
		srup_log(LOG_ERR, "sim: another process is listening on %s", path);
		return RADIO_E_IO;
	}
	if (saved != ECONNREFUSED) {
		srup_log(LOG_ERR, "sim: %s is a socket in use or not ours (%s); refusing to remove it",
			 path, strerror(saved));
		return RADIO_E_IO;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		srup_log(LOG_ERR, "sim: cannot remove stale socket %s: %s", path, strerror(errno));
		return RADIO_E_IO;
	}
	srup_log(LOG_INFO, "sim: removed stale socket %s", path);
	return RADIO_OK;
}

enum radio_err radio_sim_channel_new(sd_event *loop, const struct radio_sim_config *cfg,
				     const struct radio_channel_callbacks *cb,
				     struct radio_channel **out)
{
	struct sim_channel *ch;
	struct sockaddr_un sa;
	struct stat st;
	enum radio_err err;
	int r;

	if (!loop || !cfg || !cb || !out)
		return RADIO_E_ARG;
	*out = NULL;
	if (sim_address(cfg->socket_path, &sa) < 0) {
		srup_log(LOG_ERR, "sim: socket path is empty or longer than %zu bytes",
			 sizeof(sa.sun_path) - 1);
		return RADIO_E_ARG;
	}
	err = sim_remove_stale(&sa);
	if (err != RADIO_OK)
		return err;

	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return RADIO_E_NOMEM;
	ch->base.ops = &sim_ops;
	ch->base.cb = *cb;
	ch->base.loop = sd_event_ref(loop);
	memcpy(ch->path, sa.sun_path, sizeof(ch->path));
	ch->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ch->listen_fd < 0) {
		srup_log(LOG_ERR, "sim: socket: %s", strerror(errno));
		err = RADIO_E_IO;
		goto fail;
	}
	if (bind(ch->listen_fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		srup_log(LOG_ERR, "sim: cannot bind %s: %s", ch->path, strerror(errno));
		close(ch->listen_fd);
		ch->listen_fd = -1;
		err = RADIO_E_IO;
		goto fail;
	}
	/* Mode set before listen(): until then nobody can connect, so there
	 * is no window with the umask's looser mode. */
	if (chmod(ch->path, 0660) < 0 || lstat(ch->path, &st) < 0) {
		srup_log(LOG_ERR, "sim: cannot set mode 0660 on %s: %s", ch->path, strerror(errno));
		err = RADIO_E_IO;
		goto fail_unlink;
	}
	ch->sock_dev = st.st_dev;
	ch->sock_ino = st.st_ino;
	if (listen(ch->listen_fd, (int)SIM_MAX_CONNECTIONS) < 0) {
		srup_log(LOG_ERR, "sim: cannot listen on %s: %s", ch->path, strerror(errno));
		err = RADIO_E_IO;
		goto fail_unlink;
	}
	r = sd_event_add_io(loop, &ch->listen_src, ch->listen_fd, EPOLLIN, sim_accept, ch);
	if (r < 0) {
		srup_log(LOG_ERR, "sim: cannot watch %s: %s", ch->path, strerror(-r));
		err = r == -ENOMEM ? RADIO_E_NOMEM : RADIO_E_IO;
		goto fail_unlink;
	}
	*out = &ch->base;
	return RADIO_OK;

fail_unlink:
	unlink(ch->path);
	close(ch->listen_fd);
	ch->listen_fd = -1;
fail:
	sd_event_unref(ch->base.loop);
	free(ch);
	return err;
}

/* ---- Device side: the sim presenter ------------------------------------ */

/* An answer of 0x00 (the observer did not compare the frame) is reported as
 * RADIO_E_REFUSED with *result = 0x00, as a BLE write the observer refuses. */
enum radio_err radio_sim_present(const struct radio_sim_config *cfg, const struct srup_frame *f,
				 unsigned timeout_ms, uint8_t *result, char *detail,
				 size_t detail_len)
{
	uint8_t buf[SRUP_FRAME_MAX_LEN];
	uint8_t answer[2];
	struct sockaddr_un sa;
	struct timeval tv;
	struct pollfd pfd;
	enum radio_err err;
	uint64_t deadline;
	size_t len = 0;
	ssize_t n;
	int fd, r;

	if (result)
		*result = RADIO_RESULT_NOT_COMPARED;
	if (detail && detail_len)
		detail[0] = '\0';
	if (!cfg || !f || timeout_ms == 0) {
		return radio_fail(RADIO_E_ARG, detail, detail_len,
				  "sim: missing configuration or frame, or a zero timeout");
	}
	if (sim_address(cfg->socket_path, &sa) < 0) {
		return radio_fail(RADIO_E_ARG, detail, detail_len,
				  "sim: socket path is empty or longer than %zu bytes",
				  sizeof(sa.sun_path) - 1);
	}
	err = srup_frame_encode(f, buf, sizeof(buf), &len);
	if (err != RADIO_OK) {
		return radio_fail(err, detail, detail_len, "sim: cannot encode the frame: %s",
				  radio_strerror(err));
	}
	deadline = radio_monotonic_ms() + timeout_ms;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = radio_fail(RADIO_E_IO, detail, detail_len, "sim: socket: %s", strerror(errno));
		goto out;
	}
	/* Bounds a connect to a full backlog and the send. */
	tv.tv_sec = timeout_ms / 1000u;
	tv.tv_usec = (suseconds_t)(timeout_ms % 1000u) * 1000;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		err = radio_fail(RADIO_E_IO, detail, detail_len, "sim: cannot bound the send time: %s",
				 strerror(errno));
		goto out;
	}
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EAGAIN || errno == EINPROGRESS)
			err = radio_fail(RADIO_E_TIMEOUT, detail, detail_len,
					 "sim: observer at %s did not accept in time", sa.sun_path);
		else if (errno == ENOENT || errno == ECONNREFUSED)
			err = radio_fail(RADIO_E_UNAVAILABLE, detail, detail_len,
					 "sim: no observer listening on %s: %s", sa.sun_path,
					 strerror(errno));
		else
			err = radio_fail(RADIO_E_IO, detail, detail_len,
					 "sim: cannot connect to %s: %s", sa.sun_path,
					 strerror(errno));
		goto out;
	}
	n = send(fd, buf, len, MSG_NOSIGNAL);
	explicit_bzero(buf, sizeof(buf));
	if (n < 0) {
		err = radio_fail(errno == EAGAIN ? RADIO_E_TIMEOUT : RADIO_E_IO, detail,
				 detail_len, "sim: sending the frame to %s failed: %s", sa.sun_path,
				 strerror(errno));
		goto out;
	}
	if ((size_t)n != len) {
		err = radio_fail(RADIO_E_IO, detail, detail_len, "sim: sent %zd of %zu frame bytes",
				 n, len);
		goto out;
	}

	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		uint64_t now = radio_monotonic_ms();

		if (now >= deadline) {
			r = 0;
			break;
		}
		r = poll(&pfd, 1, (int)(deadline - now));
		if (r >= 0 || errno != EINTR)
			break;
	}
	if (r < 0) {
		err = radio_fail(RADIO_E_IO, detail, detail_len,
				 "sim: waiting for the answer failed: %s", strerror(errno));
		goto out;
	}
	if (r == 0) {
		err = radio_fail(RADIO_E_TIMEOUT, detail, detail_len,
				 "sim: no answer from the observer within %u ms", timeout_ms);
		goto out;
	}
	n = recv(fd, answer, sizeof(answer), MSG_TRUNC | MSG_DONTWAIT);
	if (n < 0) {
		err = radio_fail(RADIO_E_IO, detail, detail_len,
				 "sim: receiving the answer failed: %s", strerror(errno));
		goto out;
	}
	if (n != 1) {
		if (n == 0)
			err = radio_fail(RADIO_E_PROTOCOL, detail, detail_len,
					 "sim: observer closed without answering");
		else
			err = radio_fail(RADIO_E_PROTOCOL, detail, detail_len,
					 "sim: observer answered %zd bytes instead of 1", n);
		goto out;
	}
	if (answer[0] != RADIO_RESULT_MATCH && answer[0] != RADIO_RESULT_MISMATCH &&
	    answer[0] != RADIO_RESULT_NOT_COMPARED) {
		err = radio_fail(RADIO_E_PROTOCOL, detail, detail_len,
				 "sim: observer answered an unknown result 0x%02x", answer[0]);
		goto out;
	}
	if (result)
		*result = answer[0];
	if (answer[0] == RADIO_RESULT_NOT_COMPARED) {
		err = radio_fail(RADIO_E_REFUSED, detail, detail_len,
				 "sim: observer did not compare the frame (malformed, or no "
				 "observation pending for device %016" PRIx64 ")",
				 f->device_id);
		goto out;
	}
	err = RADIO_OK;
out:
	explicit_bzero(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return err;
}

/* ---- Registry entry ------------------------------------------------------ */

static bool sim_configured(const struct radio_channel_configs *cfg)
{
	return cfg->sim.socket_path[0] != '\0';
}

static enum radio_err sim_open(sd_event *loop, const struct radio_channel_configs *cfg,
			       const struct radio_channel_callbacks *cb, struct radio_channel **out)
{
	return radio_sim_channel_new(loop, &cfg->sim, cb, out);
}

static enum radio_err sim_present(const struct radio_channel_configs *cfg,
				  uint64_t expected_observer, const struct srup_frame *f,
				  unsigned timeout_ms, uint8_t *result, char *detail,
				  size_t detail_len)
{
	(void)expected_observer; /* a socket path names its observer */
	return radio_sim_present(&cfg->sim, f, timeout_ms, result, detail, detail_len);
}

static const struct radio_config_key sim_keys[] = {
	{"socket", RADIO_CONFIG_TEXT, RADIO_CONFIG_FIELD(sim.socket_path), 0, 0, "a socket path"},
	{.name = NULL},
};

const struct radio_channel_driver radio_sim_driver = {
	.name = "sim",
	.keys = sim_keys,
	.required_key = "socket",
	.configured = sim_configured,
	.open = sim_open,
	.present = sim_present,
	.present_learns_result = true,
};
