/* A device program of a maker's own, on libsrup-device alone (srup_device.h,
 * the shared library), driven from a poll() loop: ACTION 7 answered at
 * once (0x20), other actions left to the library (0x2E); DATA "ASYNC"
 * answered later, from the loop, by a DATA "ECHO" of its bytes with the
 * request's token; other data IDs refused at once (0x3F). Prints
 * "connected" once subscribed. Used by tests/integration/test_libdevice.py.
 *
 * libdevice_app CONFIG */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srup_device.h"

struct app {
	struct srup_device_request *pending; /* the DATA answered later */
	unsigned char data[256];
	size_t len;
};

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_action(struct srup_device *dev, struct srup_device_request *req, uint8_t action_id,
		     void *user)
{
	(void)dev;
	(void)req;
	(void)user;
	printf("action %u\n", action_id);
	fflush(stdout);
	return action_id == 7 ? 0x20 : 0x2E;
}

static int on_data(struct srup_device *dev, struct srup_device_request *req, const char *data_id,
		   const void *data, size_t len, void *user)
{
	struct app *app = user;

	(void)dev;
	if (strcmp(data_id, "ASYNC") != 0 || app->pending || len > sizeof(app->data))
		return 0x3F;
	memcpy(app->data, data, len);
	app->len = len;
	app->pending = req;
	printf("data %s later\n", data_id);
	fflush(stdout);
	return SRUP_DEVICE_LATER;
}

static void on_connection(struct srup_device *dev, bool connected, const char *broker, void *user)
{
	(void)dev;
	(void)user;
	printf("%s %s\n", connected ? "connected" : "disconnected", broker ? broker : "-");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const struct srup_device_callbacks cb = {
		.size = sizeof(cb),
		.action = on_action,
		.data = on_data,
	};
	struct app app = {0};
	struct srup_device *dev;
	char detail[2048] = "";
	enum srup_device_err err;

	if (argc != 2) {
		fprintf(stderr, "usage: libdevice_app CONFIG\n");
		return 2;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	err = srup_device_new_from_file(argv[1], &dev, detail, sizeof(detail));
	if (err != SRUP_DEVICE_OK) {
		fprintf(stderr, "%s: %s\n", srup_device_strerror(err), detail);
		return 1;
	}
	if (!srup_device_set_callbacks(dev, &cb, &app, NULL) ||
	    !srup_device_on_connection(dev, on_connection, NULL, NULL) ||
	    (err = srup_device_start(dev)) != SRUP_DEVICE_OK) {
		fprintf(stderr, "cannot start: %s\n", srup_device_strerror(err));
		srup_device_free(dev);
		return 1;
	}
	printf("libsrup-device %s, device %016llx\n", srup_device_version(),
	       (unsigned long long)srup_device_id(dev));
	fflush(stdout);
	while (!stop) {
		struct pollfd pfd = {.fd = srup_device_get_fd(dev), .events = POLLIN};
		int timeout = srup_device_get_timeout_ms(dev);

		/* The answer a callback left for later, from the loop. */
		if (app.pending)
			timeout = 0;
		if (poll(&pfd, 1, timeout) < 0 && !stop)
			continue;
		if (srup_device_process(dev) != SRUP_DEVICE_OK) {
			fprintf(stderr, "the loop failed\n");
			break;
		}
		if (app.pending) {
			struct srup_device_request *req = app.pending;

			app.pending = NULL;
			if (srup_device_request_send_data(req, "ECHO", app.data, app.len) !=
				    SRUP_DEVICE_OK ||
			    srup_device_request_complete(req, 0x30) != SRUP_DEVICE_OK)
				fprintf(stderr, "cannot answer the DATA\n");
			printf("data answered\n");
			fflush(stdout);
		}
	}
	srup_device_flush(dev, 5000);
	srup_device_free(dev);
	return 0;
}
