/* The sim channel on a real sd-event loop (main thread) with the device
 * side (presenter or raw clients) in a second thread. The client thread
 * only records what it saw; assertions run on the main thread after the
 * loop has stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "radio.h"
#include "srup_log.h"

#define KNOWN_DEVICE 0x1234ULL
#define RIGHT "right-value"
#define PRESENT_TIMEOUT_MS 10000u
/* Longer than the channel's 5 s idle timeout, so that waiting for the
 * close is a wait, not a race. */
#define CLIENT_WAIT_MS 20000

struct fixture {
	char dir[64];
	struct radio_sim_config cfg;
	sd_event *loop;
	struct radio_channel *ch;
	/* Seen by the frame callback (loop thread). */
	unsigned frames_seen;
	uint64_t last_device;
	/* Client thread's results. */
	enum radio_err present_err;
	uint8_t present_result;
	char detail[256];
	int raw_answer[80];      /* byte answered, -1 closed without answer, -2 error */
	unsigned raw_count;
};

/* The decision stand-in: RIGHT matches for KNOWN_DEVICE, anything else
 * mismatches; other devices are not pending. */
static uint8_t on_frame(const struct srup_frame *frame, void *user)
{
	struct fixture *fx = user;

	fx->frames_seen++;
	fx->last_device = frame->device_id;
	if (frame->device_id != KNOWN_DEVICE)
		return RADIO_RESULT_NOT_COMPARED;
	if (frame->value_len == strlen(RIGHT) && memcmp(frame->value, RIGHT, strlen(RIGHT)) == 0)
		return RADIO_RESULT_MATCH;
	return RADIO_RESULT_MISMATCH;
}

static void fixture_paths(struct fixture *fx)
{
	/* mkdtemp's template ends in six 'X' that the call replaces. */
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/srup-radio-sim-%6s", "");
	memset(fx->dir + strlen(fx->dir) - 6, 'X', 6);
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->cfg.socket_path, sizeof(fx->cfg.socket_path), "%s/observer.sock", fx->dir);
}

static enum radio_err fixture_open(struct fixture *fx)
{
	struct radio_channel_callbacks cb = {.frame = on_frame, .user = fx};

	if (!fx->loop)
		assert_int_equal(sd_event_new(&fx->loop), 0);
	return radio_sim_channel_new(fx->loop, &fx->cfg, &cb, &fx->ch);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fixture_paths(fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char path[128];

	radio_channel_free(fx->ch);
	sd_event_unref(fx->loop);
	/* Whatever a test left in its directory. */
	unlink(fx->cfg.socket_path);
	snprintf(path, sizeof(path), "%s/other.sock", fx->dir);
	unlink(path);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* ---- Running a client beside the loop ------------------------------------- */

struct client_run {
	struct fixture *fx;
	void (*fn)(struct fixture *fx);
	int done_fd;
};

static void *client_thread(void *arg)
{
	struct client_run *run = arg;
	uint64_t one = 1;

	run->fn(run->fx);
	if (write(run->done_fd, &one, sizeof(one)) != sizeof(one))
		abort();
	return NULL;
}

static int on_client_done(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	(void)fd;
	(void)revents;
	(void)user;
	return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_guard(sd_event_source *s, uint64_t usec, void *user)
{
	(void)usec;
	(void)user;
	return sd_event_exit(sd_event_source_get_event(s), -ETIMEDOUT);
}

/* Runs fn in a thread while the loop serves the channel; returns when fn
 * has finished. */
static void run_client(struct fixture *fx, void (*fn)(struct fixture *fx))
{
	struct client_run run = {.fx = fx, .fn = fn};
	sd_event_source *done_src = NULL, *guard = NULL;
	pthread_t thread;

	run.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(run.done_fd >= 0);
	assert_true(sd_event_add_io(fx->loop, &done_src, run.done_fd, EPOLLIN, on_client_done,
				    NULL) >= 0);
	/* A hung test ends instead of blocking ctest. */
	assert_true(sd_event_add_time_relative(fx->loop, &guard, CLOCK_MONOTONIC, 60ULL * 1000000ULL,
					       0, on_guard, NULL) >= 0);
	assert_int_equal(pthread_create(&thread, NULL, client_thread, &run), 0);
	assert_int_equal(sd_event_loop(fx->loop), 0);
	assert_int_equal(pthread_join(thread, NULL), 0);
	sd_event_source_disable_unref(done_src);
	sd_event_source_disable_unref(guard);
	close(run.done_fd);
}

/* ---- Raw clients ---------------------------------------------------------- */

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Waits for one answer byte or the close: the byte, -1 closed, -2 error. */
static int raw_wait_answer(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint8_t b;
	ssize_t n;

	if (poll(&pfd, 1, CLIENT_WAIT_MS) != 1)
		return -2;
	n = recv(fd, &b, 1, 0);
	if (n == 1)
		return b;
	return n == 0 ? -1 : -2;
}

static void raw_send_record(struct fixture *fx, const uint8_t *bytes, size_t len)
{
	int fd = raw_connect(fx->cfg.socket_path), answer = -2;

	if (fd >= 0) {
		if (send(fd, bytes, len, MSG_NOSIGNAL) == (ssize_t)len)
			answer = raw_wait_answer(fd);
		close(fd);
	}
	fx->raw_answer[fx->raw_count++] = answer;
}

static void present(struct fixture *fx, uint64_t device, const char *value)
{
	struct srup_frame f = {.device_id = device, .value_len = (uint16_t)strlen(value)};

	memcpy(f.value, value, f.value_len);
	fx->present_err = radio_sim_present(&fx->cfg, &f, PRESENT_TIMEOUT_MS, &fx->present_result,
					    fx->detail, sizeof(fx->detail));
}

/* ---- Cases ------------------------------------------------------------------- */

static void client_valid(struct fixture *fx)
{
	present(fx, KNOWN_DEVICE, RIGHT);
}

static void test_valid_frame_matches(void **state)
{
	struct fixture *fx = *state;
	struct stat st;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	assert_int_equal(lstat(fx->cfg.socket_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_string_equal(fx->ch->ops->name, "sim");

	run_client(fx, client_valid);
	assert_int_equal(fx->present_err, RADIO_OK);
	assert_int_equal(fx->present_result, RADIO_RESULT_MATCH);
	assert_int_equal(fx->frames_seen, 1);
	assert_int_equal(fx->last_device, KNOWN_DEVICE);
}

static void client_mismatch(struct fixture *fx)
{
	present(fx, KNOWN_DEVICE, "wrong-value");
}

static void test_mismatch(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_mismatch);
	assert_int_equal(fx->present_err, RADIO_OK);
	assert_int_equal(fx->present_result, RADIO_RESULT_MISMATCH);
	assert_int_equal(fx->frames_seen, 1);
}

static void client_not_pending(struct fixture *fx)
{
	present(fx, 0x9999, RIGHT);
}

static void test_not_pending_is_refused(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_not_pending);
	assert_int_equal(fx->present_err, RADIO_E_REFUSED);
	assert_int_equal(fx->present_result, RADIO_RESULT_NOT_COMPARED);
	assert_non_null(strstr(fx->detail, "0000000000009999"));
	assert_int_equal(fx->frames_seen, 1);
	assert_int_equal(fx->last_device, 0x9999);
}

static void client_malformed(struct fixture *fx)
{
	uint8_t frame[11 + 11] = {0x01, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 11};

	memcpy(frame + 11, RIGHT, 11);
	/* Well-formed first, as a control. */
	raw_send_record(fx, frame, sizeof(frame));
	frame[0] = 0x02; /* version */
	raw_send_record(fx, frame, sizeof(frame));
	frame[0] = 0x01;
	raw_send_record(fx, frame, 10); /* short */
	frame[10] = 12;                 /* length says 12, 11 follow */
	raw_send_record(fx, frame, sizeof(frame));
	frame[10] = 0; /* length 0 */
	raw_send_record(fx, frame, 11);
	frame[10] = 11;
	raw_send_record(fx, frame, 1); /* one byte */
}

static void test_malformed_frames_not_compared(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_malformed);
	assert_int_equal(fx->raw_count, 6);
	assert_int_equal(fx->raw_answer[0], RADIO_RESULT_MATCH);
	for (unsigned i = 1; i < 6; i++)
		assert_int_equal(fx->raw_answer[i], RADIO_RESULT_NOT_COMPARED);
	/* Only the control reached the decision. */
	assert_int_equal(fx->frames_seen, 1);
}

static void client_oversized(struct fixture *fx)
{
	static uint8_t big[4096];

	/* A valid 256-byte frame, then one byte more; then a packet far
	 * larger than any frame, whose first 267 bytes form a valid frame
	 * (cut to the receive buffer it must still be refused). */
	memset(big, 'v', sizeof(big));
	big[0] = 0x01;
	memset(big + 1, 0, 8);
	big[7] = 0x12;
	big[8] = 0x34;
	big[9] = 0x01;
	big[10] = 0x00;
	raw_send_record(fx, big, SRUP_FRAME_MAX_LEN);
	raw_send_record(fx, big, SRUP_FRAME_MAX_LEN + 1);
	raw_send_record(fx, big, sizeof(big));
}

static void test_oversized_packet_not_truncated(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_oversized);
	assert_int_equal(fx->raw_count, 3);
	assert_int_equal(fx->raw_answer[0], RADIO_RESULT_MISMATCH);
	assert_int_equal(fx->raw_answer[1], RADIO_RESULT_NOT_COMPARED);
	assert_int_equal(fx->raw_answer[2], RADIO_RESULT_NOT_COMPARED);
	assert_int_equal(fx->frames_seen, 1);
}

static void test_stale_socket_removed(void **state)
{
	struct fixture *fx = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	/* A socket file whose owner is gone, as a crash leaves it. */
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx->cfg.socket_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_valid);
	assert_int_equal(fx->present_err, RADIO_OK);
	assert_int_equal(fx->present_result, RADIO_RESULT_MATCH);
}

static void test_regular_file_not_removed(void **state)
{
	struct fixture *fx = *state;
	struct stat st;
	int fd;

	fd = open(fx->cfg.socket_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(fixture_open(fx), RADIO_E_IO);
	assert_null(fx->ch);
	assert_int_equal(lstat(fx->cfg.socket_path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 4);
}

static void test_live_socket_not_removed(void **state)
{
	struct fixture *fx = *state;
	struct radio_channel *first;
	struct stat st;

	/* A second observer on the same path must not steal the socket. */
	assert_int_equal(fixture_open(fx), RADIO_OK);
	first = fx->ch;
	fx->ch = NULL;
	assert_int_equal(fixture_open(fx), RADIO_E_IO);
	assert_null(fx->ch);
	assert_int_equal(lstat(fx->cfg.socket_path, &st), 0);
	fx->ch = first;
}

static void client_idle(struct fixture *fx)
{
	int fd = raw_connect(fx->cfg.socket_path);

	/* Sends nothing: the observer must close the connection. */
	fx->raw_answer[fx->raw_count++] = fd >= 0 ? raw_wait_answer(fd) : -2;
	if (fd >= 0)
		close(fd);
	/* The channel still serves others afterwards. */
	present(fx, KNOWN_DEVICE, RIGHT);
}

static void test_idle_client_closed(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_idle);
	assert_int_equal(fx->raw_answer[0], -1);
	assert_int_equal(fx->present_err, RADIO_OK);
	assert_int_equal(fx->present_result, RADIO_RESULT_MATCH);
}

static void client_many(struct fixture *fx)
{
	int fds[64], extra;

	/* Fill every connection slot with a client that sends nothing. */
	for (unsigned i = 0; i < 64; i++)
		fds[i] = raw_connect(fx->cfg.socket_path);
	/* One more is closed without an answer, long before the idle timeout
	 * would close anything (the others show it: they are still open). */
	extra = raw_connect(fx->cfg.socket_path);
	fx->raw_answer[fx->raw_count++] = extra >= 0 ? raw_wait_answer(extra) : -2;
	if (extra >= 0)
		close(extra);
	for (unsigned i = 0; i < 64; i++) {
		struct pollfd pfd = {.fd = fds[i], .events = POLLIN};

		fx->raw_answer[fx->raw_count++] = fds[i] >= 0 && poll(&pfd, 1, 0) == 0 ? 1 : 0;
	}
	for (unsigned i = 0; i < 64; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void test_connections_bounded(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	run_client(fx, client_many);
	assert_int_equal(fx->raw_count, 65);
	assert_int_equal(fx->raw_answer[0], -1);
	for (unsigned i = 1; i < 65; i++)
		assert_int_equal(fx->raw_answer[i], 1);
}

static void client_valid_then_mismatch(struct fixture *fx)
{
	present(fx, KNOWN_DEVICE, "wrong");
	fx->raw_answer[fx->raw_count++] = fx->present_result;
	present(fx, KNOWN_DEVICE, RIGHT);
}

static void test_answers_while_not_listening(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	assert_false(fx->ch->listening);
	assert_int_equal(radio_channel_start(fx->ch), RADIO_OK);
	assert_true(fx->ch->listening);
	radio_channel_stop(fx->ch);
	assert_false(fx->ch->listening);
	/* The socket stays; the callback still decides. */
	run_client(fx, client_valid_then_mismatch);
	assert_int_equal(fx->raw_answer[0], RADIO_RESULT_MISMATCH);
	assert_int_equal(fx->present_result, RADIO_RESULT_MATCH);
	assert_int_equal(fx->frames_seen, 2);
}

static void test_destroy_removes_socket(void **state)
{
	struct fixture *fx = *state;
	struct stat st;

	assert_int_equal(fixture_open(fx), RADIO_OK);
	radio_channel_free(fx->ch);
	fx->ch = NULL;
	assert_int_equal(lstat(fx->cfg.socket_path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_presenter_without_observer(void **state)
{
	struct fixture *fx = *state;
	struct srup_frame f = {.device_id = 1, .value_len = 1, .value = {'x'}};
	uint8_t result = 0xff;
	char detail[256];

	assert_int_equal(radio_sim_present(&fx->cfg, &f, 1000, &result, detail, sizeof(detail)),
			 RADIO_E_UNAVAILABLE);
	assert_int_equal(result, RADIO_RESULT_NOT_COMPARED);
	assert_non_null(strstr(detail, fx->cfg.socket_path));
	f.value_len = 0;
	assert_int_equal(radio_sim_present(&fx->cfg, &f, 1000, &result, detail, sizeof(detail)),
			 RADIO_E_FRAME_LENGTH);
}

static void test_bad_socket_paths(void **state)
{
	struct fixture *fx = *state;

	memset(fx->cfg.socket_path, 'a', sizeof(fx->cfg.socket_path));
	assert_int_equal(fixture_open(fx), RADIO_E_ARG);
	fx->cfg.socket_path[0] = '\0';
	assert_int_equal(fixture_open(fx), RADIO_E_ARG);
	assert_null(fx->ch);
	snprintf(fx->cfg.socket_path, sizeof(fx->cfg.socket_path), "%s/observer.sock", fx->dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_frame_matches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_pending_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_frames_not_compared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_packet_not_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regular_file_not_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_socket_not_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_client_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connections_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answers_while_not_listening, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_removes_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_presenter_without_observer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_socket_paths, setup, teardown),
	};

	/* The channel's warnings (malformed frames) go to the test log. */
	srup_log_set_level(LOG_DEBUG);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
