/* Runs the BLE channel (radio_ble_channel_new) on an sd-event loop with a
 * fake decision callback, for the layer-1 tests. One observation is
 * "pending": frames for --device with value --value match, other values of
 * that device mismatch, any other device has nothing pending.
 *
 * stdin, one command a line: start | stop | ping | quit
 * stdout, one event a line:  ready | started <err> | stopped | pong |
 *                            frame <n> <device hex> 0x<result> | unavailable <why>
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "radio.h"
#include "srup_log.h"

struct driver {
	sd_event *loop;
	struct radio_channel *ch;
	uint64_t device_id;
	char value[SRUP_FRAME_VALUE_MAX + 1];
	unsigned frames;
	char line[256];
	size_t line_len;
};

static uint8_t on_frame(const struct srup_frame *f, void *user)
{
	struct driver *d = user;
	size_t n = strlen(d->value);
	uint8_t result;

	d->frames++;
	if (f->device_id != d->device_id)
		result = RADIO_RESULT_NOT_COMPARED;
	else if (f->value_len == n && memcmp(f->value, d->value, n) == 0)
		result = RADIO_RESULT_MATCH;
	else
		result = RADIO_RESULT_MISMATCH;
	printf("frame %u %016" PRIx64 " 0x%02X\n", d->frames, f->device_id, result);
	fflush(stdout);
	return result;
}

static void on_unavailable(const char *why, void *user)
{
	(void)user;
	printf("unavailable %s\n", why);
	fflush(stdout);
}

static void run_command(struct driver *d, const char *cmd)
{
	if (strcmp(cmd, "start") == 0) {
		enum radio_err e = radio_channel_start(d->ch);

		printf("started %d\n", (int)e);
	} else if (strcmp(cmd, "stop") == 0) {
		radio_channel_stop(d->ch);
		printf("stopped\n");
	} else if (strcmp(cmd, "ping") == 0) {
		/* A barrier: every line before "pong" was written before it. */
		printf("pong\n");
	} else if (strcmp(cmd, "quit") == 0) {
		sd_event_exit(d->loop, 0);
	} else {
		printf("unknown-command %s\n", cmd);
	}
	fflush(stdout);
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct driver *d = user;
	char buf[256];
	ssize_t n;

	(void)s, (void)revents;
	n = read(fd, buf, sizeof(buf));
	if (n <= 0) {
		sd_event_exit(d->loop, 0);
		return 0;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			d->line[d->line_len] = '\0';
			run_command(d, d->line);
			d->line_len = 0;
		} else if (d->line_len + 1 < sizeof(d->line)) {
			d->line[d->line_len++] = buf[i];
		}
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: ble_observer_driver --observer-id HEX --device HEX --value TEXT "
			"[--adapter NAME] [--encrypt] [--grace SECONDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct radio_ble_config cfg = {.adapter = "hci0"};
	struct radio_channel_callbacks cb = {.frame = on_frame, .unavailable = on_unavailable};
	struct driver d = {0};
	sigset_t mask;
	enum radio_err e;
	int r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--encrypt") == 0) {
			cfg.require_encryption = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--observer-id") == 0)
			cfg.observer_id = strtoull(v, NULL, 16);
		else if (strcmp(a, "--device") == 0)
			d.device_id = strtoull(v, NULL, 16);
		else if (strcmp(a, "--value") == 0)
			snprintf(d.value, sizeof(d.value), "%s", v);
		else if (strcmp(a, "--adapter") == 0)
			snprintf(cfg.adapter, sizeof(cfg.adapter), "%s", v);
		else if (strcmp(a, "--grace") == 0)
			cfg.bluez_grace_seconds = (unsigned)strtoul(v, NULL, 10);
		else
			usage();
	}
	srup_log_set_level(LOG_DEBUG);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	r = sd_event_new(&d.loop);
	if (r < 0)
		return 1;
	sd_event_add_signal(d.loop, NULL, SIGTERM, NULL, NULL);
	sd_event_add_signal(d.loop, NULL, SIGINT, NULL, NULL);
	sd_event_add_io(d.loop, NULL, STDIN_FILENO, EPOLLIN, on_stdin, &d);
	cb.user = &d;
	e = radio_ble_channel_new(d.loop, &cfg, &cb, &d.ch);
	if (e != RADIO_OK) {
		printf("failed %s\n", radio_strerror(e));
		sd_event_unref(d.loop);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	r = sd_event_loop(d.loop);
	radio_channel_free(d.ch);
	sd_event_unref(d.loop);
	printf("exited %d\n", r);
	return r < 0 ? 1 : 0;
}
