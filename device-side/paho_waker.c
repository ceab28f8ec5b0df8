#include "paho_waker.h"
#include "srup_detail.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "srup_log.h"

/* Below Paho's 1 s poll timeout with room for a busy loop. */
#define WAKER_INTERVAL_USEC (500u * 1000u)

static const uint8_t mqtt_connack[] = {0x20, 0x02, 0x00, 0x00}; /* accepted, no session */
static const uint8_t mqtt_pingresp[] = {0xd0, 0x00};

struct paho_waker {
	sd_event *loop;
	int listen_fd;
	int conn_fd;          /* the waker client's connection, once accepted */
	bool connack_sent;
	sd_event_source *listen_src, *conn_src, *tick;
	MQTTAsync client;
	bool client_created;
};

/* Whether addr (the peer of an accepted connection) is the local end of a
 * socket of this process: only our own waker client may stay connected. */
static bool local_end_is_ours(const struct sockaddr_in *addr)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		struct sockaddr_in local;
		socklen_t len = sizeof(local);
		struct stat st;
		int fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
		    getsockname(fd, (struct sockaddr *)&local, &len) != 0 ||
		    local.sin_family != AF_INET)
			continue;
		found = local.sin_port == addr->sin_port && local.sin_addr.s_addr == addr->sin_addr.s_addr;
	}
	closedir(d);
	return found;
}

static void conn_close(struct paho_waker *w)
{
	w->conn_src = sd_event_source_disable_unref(w->conn_src);
	if (w->conn_fd >= 0)
		close(w->conn_fd);
	w->conn_fd = -1;
	w->connack_sent = false;
}

static int conn_readable(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct paho_waker *w = user;
	uint8_t buf[512];
	ssize_t r;

	(void)s;
	(void)revents;
	r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		conn_close(w); /* Paho reconnects by itself */
		return 0;
	}
	/* The first bytes are the client's CONNECT; what follows (only a
	 * DISCONNECT, keepalive being off) needs no answer. */
	if (r > 0 && !w->connack_sent) {
		if (send(fd, mqtt_connack, sizeof(mqtt_connack), MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    (ssize_t)sizeof(mqtt_connack))
			w->connack_sent = true;
		else
			conn_close(w);
	}
	return 0;
}

static int listen_readable(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct paho_waker *w = user;
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	int c;

	(void)s;
	(void)revents;
	c = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return 0;
	if (peer.sin_family != AF_INET || !local_end_is_ours(&peer)) {
		close(c);
		return 0;
	}
	conn_close(w); /* a reconnect replaces the old connection */
	w->conn_fd = c;
	if (sd_event_add_io(w->loop, &w->conn_src, c, EPOLLIN, conn_readable, w) < 0)
		conn_close(w);
	return 0;
}

static int tick(sd_event_source *s, uint64_t usec, void *user)
{
	struct paho_waker *w = user;

	if (w->conn_fd >= 0 && w->connack_sent &&
	    send(w->conn_fd, mqtt_pingresp, sizeof(mqtt_pingresp), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
	    errno != EAGAIN)
		conn_close(w);
	sd_event_source_set_time(s, usec + WAKER_INTERVAL_USEC);
	return 0;
}

static int start_client(struct paho_waker *w, uint16_t port, char *detail, size_t detail_len)
{
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	char uri[64];
	int rc;

	co.MQTTVersion = MQTTVERSION_3_1_1;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%u", (unsigned)port);
	rc = MQTTAsync_createWithOptions(&w->client, uri, "srup-node-waker",
					 MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		set_detail(detail, detail_len, "MQTT waker client: %s", MQTTAsync_strerror(rc));
		return -1;
	}
	w->client_created = true;
	opts.keepAliveInterval = 0;
	opts.cleansession = 1;
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	opts.automaticReconnect = 1;
	opts.minRetryInterval = 1;
	opts.maxRetryInterval = 5;
	rc = MQTTAsync_connect(w->client, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		set_detail(detail, detail_len, "MQTT waker connect: %s", MQTTAsync_strerror(rc));
		return -1;
	}
	return 0;
}

int paho_waker_new(sd_event *loop, struct paho_waker **out, char *detail, size_t detail_len)
{
	struct paho_waker *w = calloc(1, sizeof(*w));
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);
	uint64_t now;

	*out = NULL;
	if (!w) {
		set_detail(detail, detail_len, "out of memory");
		return -1;
	}
	w->loop = sd_event_ref(loop);
	w->conn_fd = -1;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	w->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (w->listen_fd < 0 || bind(w->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(w->listen_fd, 4) != 0 ||
	    getsockname(w->listen_fd, (struct sockaddr *)&addr, &len) != 0) {
		set_detail(detail, detail_len, "waker listener on 127.0.0.1: %s", strerror(errno));
		goto fail;
	}
	if (sd_event_add_io(loop, &w->listen_src, w->listen_fd, EPOLLIN, listen_readable, w) < 0 ||
	    sd_event_now(loop, CLOCK_MONOTONIC, &now) < 0 ||
	    sd_event_add_time(loop, &w->tick, CLOCK_MONOTONIC, now + WAKER_INTERVAL_USEC, 0, tick,
			      w) < 0 ||
	    sd_event_source_set_enabled(w->tick, SD_EVENT_ON) < 0) {
		set_detail(detail, detail_len, "waker event sources: out of memory");
		goto fail;
	}
	if (start_client(w, ntohs(addr.sin_port), detail, detail_len) != 0)
		goto fail;
	*out = w;
	return 0;
fail:
	paho_waker_free(w);
	return -1;
}

void paho_waker_free(struct paho_waker *w)
{
	if (!w)
		return;
	if (w->client_created) {
		/* No disconnect handshake: the listener is ours and goes too. */
		MQTTAsync_destroy(&w->client);
	}
	conn_close(w);
	sd_event_source_disable_unref(w->listen_src);
	sd_event_source_disable_unref(w->tick);
	if (w->listen_fd >= 0)
		close(w->listen_fd);
	sd_event_unref(w->loop);
	free(w);
}
