/* A device program of a maker's own, on libsrup-device alone (srup_device.h,
 * the shared library), driven from a poll() loop: ACTION 7 answered at
 * once (0x20), other actions left to the library (0x2E); DATA "ASYNC"
 * answered later, from the loop, by a DATA "ECHO" of its bytes with the
 * request's token; other data IDs refused at once (0x3F). Prints
 * "connected" once subscribed. Used by tests/integration/test_libdevice.py.
 *
 * libdevice_app CONFIG           its own loop, driven by poll()
 * libdevice_app --attach CONFIG  an sd-event loop of the program's own
 *                                (srup_device_attach_event); the later
 *                                answer from a defer source on it
 * libdevice_app --flow KIND CONFIG  once connected, one device-initiated
 *                                flow (unmediated, resign, deregister)
 *                                through the library; a second call while
 *                                it runs must be refused as busy. Prints
 *                                "flow OUTCOME 0xSTATUS: DETAIL" at its end,
 *                                "deregistered" when the library says so. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>

#include "srup_device.h"

struct app {
	struct srup_device *dev;
	const char *flow;  /* --flow */
	bool flow_started;
	sd_event *loop; /* --attach */
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

/* The answer a callback left for later. */
static void answer_pending(struct app *app)
{
	struct srup_device_request *req = app->pending;

	app->pending = NULL;
	if (srup_device_request_send_data(req, "ECHO", app->data, app->len) != SRUP_DEVICE_OK ||
	    srup_device_request_complete(req, 0x30) != SRUP_DEVICE_OK)
		fprintf(stderr, "cannot answer the DATA\n");
	printf("data answered\n");
	fflush(stdout);
}

static int on_deferred(sd_event_source *s, void *user)
{
	answer_pending(user);
	sd_event_source_unref(s);
	return 0;
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
	if (app->loop && sd_event_add_defer(app->loop, NULL, on_deferred, app) < 0) {
		app->pending = NULL;
		return 0x3F;
	}
	return SRUP_DEVICE_LATER;
}

static void on_flow_done(struct srup_device *dev, const struct srup_device_result *r, void *user)
{
	static const char *const outcome[] = {"accepted", "refused", "failed"};

	(void)dev;
	(void)user;
	printf("flow %s 0x%02x: %s\n", outcome[r->outcome], r->status, r->detail ? r->detail : "");
	fflush(stdout);
}

static void on_flow_freed(void *user)
{
	(void)user;
	printf("flow user released\n");
	fflush(stdout);
}

/* One flow through the library, and the refusal of a second meanwhile. */
static void start_flow(struct app *app)
{
	const struct srup_device_join_params join = {
		.size = sizeof(join),
		.mode = SRUP_DEVICE_JOIN_UNMEDIATED,
		.timeout_seconds = 30,
	};
	enum srup_device_err err, again;

	app->flow_started = true;
	if (strcmp(app->flow, "unmediated") == 0) {
		err = srup_device_join(app->dev, &join, on_flow_done, app, on_flow_freed);
		again = srup_device_resign(app->dev, 30, on_flow_done, app, on_flow_freed);
	} else if (strcmp(app->flow, "resign") == 0) {
		err = srup_device_resign(app->dev, 30, on_flow_done, app, on_flow_freed);
		again = srup_device_join(app->dev, &join, on_flow_done, app, on_flow_freed);
	} else {
		err = srup_device_deregister(app->dev, 30, on_flow_done, app, on_flow_freed);
		again = srup_device_deregister(app->dev, 30, on_flow_done, app, on_flow_freed);
	}
	printf("flow started: %s; second: %s\n", srup_device_strerror(err),
	       srup_device_strerror(again));
	fflush(stdout);
}

static void on_deregistered(struct srup_device *dev, void *user)
{
	(void)dev;
	(void)user;
	printf("deregistered\n");
	fflush(stdout);
}

static void on_connection(struct srup_device *dev, bool connected, const char *broker, void *user)
{
	struct app *app = user;

	(void)dev;
	printf("%s %s\n", connected ? "connected" : "disconnected", broker ? broker : "-");
	fflush(stdout);
	if (connected && app->flow && !app->flow_started)
		start_flow(app);
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

	bool attach = argc == 3 && strcmp(argv[1], "--attach") == 0;
	const char *config = argv[argc - 1];

	if (argc == 4 && strcmp(argv[1], "--flow") == 0)
		app.flow = argv[2];
	else if (argc != 2 && !attach) {
		fprintf(stderr, "usage: libdevice_app [--attach | --flow KIND] CONFIG\n");
		return 2;
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	err = srup_device_new_from_file(config, &dev, detail, sizeof(detail));
	if (err != SRUP_DEVICE_OK) {
		fprintf(stderr, "%s: %s\n", srup_device_strerror(err), detail);
		return 1;
	}
	app.dev = dev;
	if (attach) {
		sigset_t mask;

		/* Before the library's threads exist: only the loop sees them. */
		sigemptyset(&mask);
		sigaddset(&mask, SIGTERM);
		sigaddset(&mask, SIGINT);
		sigprocmask(SIG_BLOCK, &mask, NULL);
		if (sd_event_new(&app.loop) < 0 ||
		    sd_event_add_signal(app.loop, NULL, SIGTERM, NULL, NULL) < 0 ||
		    sd_event_add_signal(app.loop, NULL, SIGINT, NULL, NULL) < 0 ||
		    srup_device_attach_event(dev, app.loop) != SRUP_DEVICE_OK) {
			fprintf(stderr, "cannot attach the loop\n");
			return 1;
		}
		/* The library's own loop calls are refused on a borrowed loop. */
		if (srup_device_process(dev) != SRUP_DEVICE_E_STATE_ORDER ||
		    srup_device_get_fd(dev) >= 0) {
			fprintf(stderr, "process/get_fd allowed on an attached loop\n");
			return 1;
		}
	}
	if (!srup_device_set_callbacks(dev, &cb, &app, NULL) ||
	    !srup_device_on_connection(dev, on_connection, &app, NULL) ||
	    !srup_device_on_deregistered(dev, on_deregistered, NULL, NULL) ||
	    (err = srup_device_start(dev)) != SRUP_DEVICE_OK) {
		fprintf(stderr, "cannot start: %s\n", srup_device_strerror(err));
		srup_device_free(dev);
		return 1;
	}
	printf("libsrup-device %s, device %016llx\n", srup_device_version(),
	       (unsigned long long)srup_device_id(dev));
	fflush(stdout);
	if (attach) {
		int rc = sd_event_loop(app.loop);

		srup_device_flush(dev, 5000);
		srup_device_free(dev);
		sd_event_unref(app.loop);
		return rc < 0 ? 1 : 0;
	}
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
		if (app.pending)
			answer_pending(&app);
	}
	srup_device_flush(dev, 5000);
	srup_device_free(dev);
	return 0;
}
