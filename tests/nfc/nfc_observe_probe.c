/* Test program: the NFC observation channel on a real sd-event loop,
 * printing what it delivers to its callbacks (on the loop thread).
 *
 *   nfc_observe_probe --device CONNSTRING [--poll-ms N] [--seconds S]
 *                     [--frames K] [--match HEX] [--control] [--stall-ms N]
 *
 * stdout, one line each, T = CLOCK_MONOTONIC seconds:
 *   listening T | stopped T | frame T DEVICE-ID VALUE-HEX RESULT |
 *   unavailable T WHY | done frames=N unavailable=M
 * The frame callback answers 0x60 when the value equals --match, else 0x6E.
 * Without --control the channel listens at once; with it, stdin lines
 * "start", "stop" and "quit" drive it. Ends after K frames (if given), S
 * seconds (default 10) or "quit". --stall-ms blocks the loop for N ms in
 * the first frame callback (a stalled daemon). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "radio.h"
#include "srup_log.h"

struct probe {
	sd_event *loop;
	struct radio_channel *ch;
	unsigned frames_wanted;
	unsigned frames;
	unsigned unavailable;
	unsigned stall_ms;
	uint8_t match[SRUP_FRAME_VALUE_MAX];
	size_t match_len;
	char line[256];
	size_t line_len;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t on_frame(const struct srup_frame *f, void *user)
{
	struct probe *p = user;
	uint8_t result;

	result = (p->match_len == f->value_len && memcmp(p->match, f->value, f->value_len) == 0)
			 ? RADIO_RESULT_MATCH
			 : RADIO_RESULT_MISMATCH;
	printf("frame %.6f %016" PRIx64 " ", now_s(), f->device_id);
	for (size_t i = 0; i < f->value_len; i++)
		printf("%02x", f->value[i]);
	printf(" 0x%02x\n", result);
	fflush(stdout);
	p->frames++;
	if (p->frames == 1 && p->stall_ms) {
		struct timespec ts = {p->stall_ms / 1000, (long)(p->stall_ms % 1000) * 1000000L};

		nanosleep(&ts, NULL);
		printf("stalled %.6f\n", now_s());
		fflush(stdout);
	}
	if (p->frames_wanted && p->frames >= p->frames_wanted)
		sd_event_exit(p->loop, 0);
	return result;
}

static void on_unavailable(const char *why, void *user)
{
	struct probe *p = user;

	p->unavailable++;
	printf("unavailable %.6f %s\n", now_s(), why);
	fflush(stdout);
}

static void command(struct probe *p, const char *cmd)
{
	if (strcmp(cmd, "start") == 0) {
		enum radio_err err = radio_channel_start(p->ch);

		printf("listening %.6f %s\n", now_s(), radio_strerror(err));
	} else if (strcmp(cmd, "stop") == 0) {
		radio_channel_stop(p->ch);
		printf("stopped %.6f\n", now_s());
	} else if (strcmp(cmd, "quit") == 0) {
		sd_event_exit(p->loop, 0);
	} else if (cmd[0]) {
		printf("error unknown command '%s'\n", cmd);
	}
	fflush(stdout);
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct probe *p = user;
	char buf[128];
	ssize_t n;

	(void)revents;
	n = read(fd, buf, sizeof(buf));
	if (n <= 0) {
		sd_event_source_set_enabled(s, SD_EVENT_OFF);
		if (n == 0)
			sd_event_exit(p->loop, 0);
		return 0;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			p->line[p->line_len] = '\0';
			command(p, p->line);
			p->line_len = 0;
		} else if (p->line_len + 1 < sizeof(p->line)) {
			p->line[p->line_len++] = buf[i];
		}
	}
	return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *user)
{
	struct probe *p = user;

	(void)s;
	(void)usec;
	sd_event_exit(p->loop, 0);
	return 0;
}

static int parse_hex(const char *hex, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(hex);

	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"device", required_argument, NULL, 'd'},
		{"poll-ms", required_argument, NULL, 'p'},
		{"seconds", required_argument, NULL, 's'},
		{"frames", required_argument, NULL, 'f'},
		{"match", required_argument, NULL, 'm'},
		{"control", no_argument, NULL, 'c'},
		{"stall-ms", required_argument, NULL, 'S'},
		{NULL, 0, NULL, 0},
	};
	struct radio_nfc_config cfg;
	struct probe p;
	struct radio_channel_callbacks cb = {0}; /* callbacks not set stay NULL */
	double seconds = 10;
	bool control = false;
	enum radio_err err;
	uint64_t t0;
	int c;

	memset(&cfg, 0, sizeof(cfg));
	memset(&p, 0, sizeof(p));
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			snprintf(cfg.device, sizeof(cfg.device), "%s", optarg);
			break;
		case 'p':
			cfg.poll_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			seconds = strtod(optarg, NULL);
			break;
		case 'f':
			p.frames_wanted = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'm':
			if (parse_hex(optarg, p.match, sizeof(p.match), &p.match_len) != 0) {
				fprintf(stderr, "--match: not hex of at most 256 bytes\n");
				return 2;
			}
			break;
		case 'c':
			control = true;
			break;
		case 'S':
			p.stall_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	srup_log_set_level(LOG_DEBUG);
	if (sd_event_new(&p.loop) < 0)
		return 3;
	cb.frame = on_frame;
	cb.unavailable = on_unavailable;
	cb.user = &p;
	err = radio_nfc_channel_new(p.loop, &cfg, &cb, &p.ch);
	if (err != RADIO_OK) {
		printf("error channel: %s\n", radio_strerror(err));
		sd_event_unref(p.loop);
		return 3;
	}
	sd_event_now(p.loop, CLOCK_MONOTONIC, &t0);
	sd_event_add_time(p.loop, NULL, CLOCK_MONOTONIC, t0 + (uint64_t)(seconds * 1e6), 1000,
			  on_timeout, &p);
	if (control)
		sd_event_add_io(p.loop, NULL, STDIN_FILENO, EPOLLIN, on_stdin, &p);
	else
		command(&p, "start");
	sd_event_loop(p.loop);
	radio_channel_free(p.ch);
	printf("done frames=%u unavailable=%u\n", p.frames, p.unavailable);
	fflush(stdout);
	sd_event_unref(p.loop);
	return 0;
}
