/* The device-initiated flows (srup_flow.h). */
#include "srup_flow.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "srup_log.h"
#include "srup_msg_layout.h"

/* The observer may not hold the OBSERVE_REQ yet when the device presents
 * (both leave the server at once): a frame answered "not compared" is
 * presented again after this pause, for up to PRESENT_WINDOW_MS (one BLE
 * presentation alone, scan to disconnect, takes seconds). */
#define PRESENT_RETRY_MS 200
/* A verdict that comes while an attempt is still out waits this long for
 * it, so that "presented" is reported before the end. */
#define VERDICT_WAITS_FOR_ATTEMPT_MS 500
#define PRESENT_WINDOW_MS 30000
/* Shortest time one presenting attempt is given. */
#define PRESENT_ATTEMPT_MIN_MS 1000
/* Largest confirmation value shown to a person (pySRUP sends 32 bytes). */
#define HUMAN_VALUE_MAX 128

static const struct srup_flow_exchange exchanges[SRUP_FLOW__COUNT] = {
	[SRUP_FLOW_OBSERVED] = {"OBS_JOIN_REQ", SRUP_TYPE_OBS_JOIN_REQUEST,
				SRUP_TYPE_OBS_JOIN_RESPONSE, true, SRUP_STATUS_JOIN_SUCCESS,
				SRUP_STATUS_JOIN_REFUSED, SRUP_STATUS_JOIN_FAIL},
	[SRUP_FLOW_HUMAN] = {"HM_JOIN_REQ", SRUP_TYPE_HM_JOIN_REQUEST, SRUP_TYPE_HM_JOIN_RESPONSE,
			     true, SRUP_STATUS_JOIN_SUCCESS, SRUP_STATUS_JOIN_REFUSED,
			     SRUP_STATUS_JOIN_FAIL},
	[SRUP_FLOW_UNMEDIATED] = {"JOIN_REQ", SRUP_TYPE_JOIN_REQUEST, 0, true,
				  SRUP_STATUS_JOIN_SUCCESS, SRUP_STATUS_JOIN_REFUSED,
				  SRUP_STATUS_JOIN_FAIL},
	[SRUP_FLOW_RESIGN] = {"RESIGN_REQ", SRUP_TYPE_RESIGN_REQUEST, 0, false,
			      SRUP_STATUS_RESIGN_SUCCESS, SRUP_STATUS_RESIGN_FAIL,
			      SRUP_STATUS_RESIGN_FAIL},
	[SRUP_FLOW_DEREGISTER] = {"DEREGISTER_REQ", SRUP_TYPE_DEREGISTER_REQUEST, 0, false,
				  SRUP_STATUS_DEREGISTER_SUCCESS, SRUP_STATUS_DEREGISTER_FAIL,
				  SRUP_STATUS_DEREGISTER_FAIL},
};

/* One presenting attempt, shared by the loop and the presenter's thread:
 * whichever lets go last frees it, so that a flow may end while the
 * (uninterruptible) presenter still runs. */
struct present_job {
	pthread_mutex_t lock;
	int refs;
	int done_fd; /* eventfd, written by the thread when the attempt is over */
	const struct radio_channel_driver *channel;
	struct radio_channel_configs radio;
	uint64_t observer;
	struct srup_frame frame; /* secret: wiped with the job */
	unsigned timeout_ms;
	enum radio_err err;      /* the outcome, once done_fd was written */
	uint8_t result;
	char detail[256];
};

struct srup_flow {
	struct srup_flow_params p;
	const struct srup_flow_exchange *ex;
	enum srup_flow_stage stage;
	bool sent, ended, freeing;
	char request_token[SRUP_UUID_TEXT_LEN + 1];
	struct srup_bytes response_token; /* OBS_JOIN_RESP's / HM_JOIN_RESP's */
	uint64_t created_ms;              /* CLOCK_MONOTONIC */
	double sent_at_ms;
	sd_event_source *timeout_src, *send_src, *retry_src, *job_src, *held_verdict_src;
	/* A verdict taken while an attempt was out (verdict()). */
	bool verdict_held, held_success;
	uint8_t held_status;
	double held_elapsed;
	struct present_job *job;
	struct srup_frame frame;          /* the frame being presented (secret) */
	uint64_t present_started_ms;
	uint64_t present_limit_ms;
	enum radio_err present_err;       /* the last attempt's */
	char present_detail[256];
	char detail[768];
};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static double now_ms_precise(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

const struct srup_flow_exchange *srup_flow_exchange(enum srup_flow_kind kind)
{
	if ((unsigned)kind >= SRUP_FLOW__COUNT)
		return NULL;
	return &exchanges[kind];
}

int srup_flow_verdict(const struct srup_flow_exchange *ex, uint8_t status)
{
	if (!ex)
		return -1;
	if (status == ex->success)
		return 1;
	if (status == ex->refused || status == ex->failed)
		return 0;
	return -1;
}

static bool token_is(const struct srup_bytes *token, const void *want, size_t want_len)
{
	return token->len == want_len && want_len > 0 && memcmp(token->data, want, want_len) == 0;
}

bool srup_flow_token_matches(const struct srup_bytes *token, const char *request,
			     const uint8_t *response, size_t response_len)
{
	if (!token)
		return false;
	return (request && token_is(token, request, strlen(request))) ||
	       (response && token_is(token, response, response_len));
}

void srup_flow_value_text(const uint8_t *value, size_t len, bool as_hex, char *text,
			  char *grouped)
{
	bool printable = !as_hex;
	size_t n = 0, g = 0;

	for (size_t i = 0; i < len && printable; i++)
		if (value[i] < 0x21 || value[i] > 0x7e)
			printable = false;
	for (size_t i = 0; i < len; i++) {
		if (printable) {
			text[n++] = (char)value[i];
		} else {
			static const char digits[] = "0123456789abcdef";

			text[n++] = digits[value[i] >> 4];
			text[n++] = digits[value[i] & 0x0f];
		}
	}
	text[n] = '\0';
	for (size_t i = 0; i < n; i += 4) {
		if (i)
			grouped[g++] = ' ';
		for (size_t j = i; j < n && j < i + 4; j++)
			grouped[g++] = text[j];
	}
	grouped[g] = '\0';
}

bool srup_flow_hears(uint8_t type)
{
	return type == SRUP_TYPE_RESPONSE || type == SRUP_TYPE_OBS_JOIN_RESPONSE ||
	       type == SRUP_TYPE_HM_JOIN_RESPONSE;
}

const char *srup_flow_request_name(const struct srup_flow *flow)
{
	return flow ? flow->ex->name : "request";
}

double srup_flow_elapsed_ms(const struct srup_flow *flow)
{
	if (!flow || !flow->sent)
		return 0;
	return now_ms_precise() - flow->sent_at_ms;
}

bool srup_flow_ended(const struct srup_flow *flow)
{
	return !flow || flow->ended;
}

static void set_detail(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_detail(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!out || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

/* ---- presenting on the channel's thread ------------------------------------ */

static void job_unref(struct present_job *job)
{
	int left;

	if (!job)
		return;
	pthread_mutex_lock(&job->lock);
	left = --job->refs;
	pthread_mutex_unlock(&job->lock);
	if (left > 0)
		return;
	srup_frame_wipe(&job->frame);
	close(job->done_fd);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

static void *present_thread(void *arg)
{
	struct present_job *job = arg;
	uint64_t one = 1;
	uint8_t result = RADIO_RESULT_NOT_COMPARED;
	char detail[sizeof(job->detail)] = "";
	enum radio_err err;

	err = job->channel->present(&job->radio, job->observer, &job->frame, job->timeout_ms,
				    &result, detail, sizeof(detail));
	pthread_mutex_lock(&job->lock);
	srup_frame_wipe(&job->frame);
	job->err = err;
	job->result = result;
	memcpy(job->detail, detail, sizeof(detail));
	pthread_mutex_unlock(&job->lock);
	/* The loop reads the outcome after this write (eventfd: a barrier
	 * through the kernel); a flow that ended no longer listens. */
	if (write(job->done_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		srup_log(LOG_WARNING, "presenting on %s: cannot tell the loop: %s",
			 job->channel->name, strerror(errno));
	job_unref(job);
	return NULL;
}

static void finish(struct srup_flow *f, enum srup_device_outcome outcome, uint8_t status,
		   enum srup_device_err err, enum srup_flow_key_file key_file, double elapsed);
static void start_attempt(struct srup_flow *f);
static void verdict_end(struct srup_flow *f);

static void release_presenting(struct srup_flow *f)
{
	f->held_verdict_src = sd_event_source_disable_unref(f->held_verdict_src);
	f->retry_src = sd_event_source_disable_unref(f->retry_src);
	f->job_src = sd_event_source_disable_unref(f->job_src);
	job_unref(f->job);
	f->job = NULL;
	srup_frame_wipe(&f->frame);
}

static void fail(struct srup_flow *f, enum srup_device_err err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct srup_flow *f, enum srup_device_err err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	finish(f, SRUP_DEVICE_FAILED, 0, err, SRUP_FLOW_KEY_FILE_UNTOUCHED, 0);
}

static const char *timeout_name(const struct srup_flow *f)
{
	return f->p.timeout_name ? f->p.timeout_name : "the timeout";
}

static void present_timed_out(struct srup_flow *f)
{
	const char *d = f->present_detail;

	fail(f, SRUP_DEVICE_E_TIMEOUT,
	     "presenting on %s: %s ran out before the observer compared the frame%s%s",
	     f->p.channel->name, timeout_name(f), d[0] ? ": " : "", d);
}

/* Presenting is over without the observer's comparison. */
static void present_failed(struct srup_flow *f)
{
	enum radio_err err = f->present_err;
	const char *d = f->present_detail;

	if (f->p.timeout_ms && f->present_limit_ms < PRESENT_WINDOW_MS &&
	    now_ms() - f->created_ms + PRESENT_RETRY_MS >= f->p.timeout_ms) {
		present_timed_out(f);
		return;
	}
	if (err != RADIO_OK)
		fail(f, SRUP_DEVICE_E_RADIO, "presenting on %s failed: %s%s%s", f->p.channel->name,
		     radio_strerror(err), d[0] ? ": " : "", d);
	else
		fail(f, SRUP_DEVICE_E_RADIO, "the observer did not compare the frame (no "
		     "observation pending for this device)");
}

static int on_retry(sd_event_source *s, uint64_t usec, void *user)
{
	struct srup_flow *f = user;

	(void)s;
	(void)usec;
	f->retry_src = sd_event_source_disable_unref(f->retry_src);
	start_attempt(f);
	return 0;
}

/* An attempt's outcome is final (reported as presented) unless the radio
 * failed, or it could not tell whether the observer compared the frame on
 * a channel that can. */
static bool attempt_final(const struct srup_flow *f, enum radio_err err, uint8_t result)
{
	return err == RADIO_OK &&
	       (result != RADIO_RESULT_NOT_COMPARED || !f->p.channel->present_learns_result);
}

static void report_presented(struct srup_flow *f, uint8_t result)
{
	if (f->p.event)
		f->p.event(f, &(struct srup_flow_event){.kind = SRUP_FLOW_EVENT_PRESENTED,
							.channel = f->p.channel->name,
							.result = result},
			   f->p.user);
}

static int on_attempt_done(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct srup_flow *f = user;
	struct present_job *job = f->job;
	uint64_t count, now;

	(void)s;
	(void)revents;
	if (read(fd, &count, sizeof(count)) < 0 && errno == EAGAIN)
		return 0;
	f->job_src = sd_event_source_disable_unref(f->job_src);
	f->job = NULL;
	pthread_mutex_lock(&job->lock);
	f->present_err = job->err;
	memcpy(f->present_detail, job->detail, sizeof(f->present_detail));
	f->present_detail[sizeof(f->present_detail) - 1] = '\0';
	uint8_t result = job->result;
	pthread_mutex_unlock(&job->lock);

	job_unref(job);
	if (attempt_final(f, f->present_err, result)) {
		srup_frame_wipe(&f->frame);
		f->stage = SRUP_FLOW_STAGE_VERDICT;
		report_presented(f, result);
		if (f->verdict_held)
			verdict_end(f);
		return 0;
	}
	if (f->verdict_held) {
		verdict_end(f); /* no retry: the server has decided */
		return 0;
	}
	now = now_ms();
	if ((f->present_err != RADIO_OK && f->present_err != RADIO_E_REFUSED) ||
	    now - f->present_started_ms + PRESENT_RETRY_MS >= f->present_limit_ms) {
		present_failed(f);
		return 0;
	}
	if (sd_event_add_time_relative(f->p.loop, &f->retry_src, CLOCK_MONOTONIC,
				       PRESENT_RETRY_MS * 1000ull, 0, on_retry, f) < 0)
		fail(f, SRUP_DEVICE_E_LOOP, "presenting on %s: cannot arm the retry timer",
		     f->p.channel->name);
	return 0;
}

/* One attempt on a thread of its own, for what is left of the window
 * (at least PRESENT_ATTEMPT_MIN_MS). */
static void start_attempt(struct srup_flow *f)
{
	struct present_job *job = calloc(1, sizeof(*job));
	uint64_t spent = now_ms() - f->present_started_ms;
	uint64_t left = f->present_limit_ms > spent ? f->present_limit_ms - spent : 0;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t thread;
	int r;

	if (!job) {
		fail(f, SRUP_DEVICE_E_NOMEM, "presenting on %s: out of memory", f->p.channel->name);
		return;
	}
	job->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (job->done_fd < 0) {
		free(job);
		fail(f, SRUP_DEVICE_E_RADIO, "presenting on %s: eventfd: %s", f->p.channel->name,
		     strerror(errno));
		return;
	}
	pthread_mutex_init(&job->lock, NULL);
	job->refs = 1;
	job->channel = f->p.channel;
	job->radio = f->p.cfg->radio;
	job->observer = f->p.observer;
	job->frame = f->frame;
	job->timeout_ms = left > PRESENT_ATTEMPT_MIN_MS ? (unsigned)left : PRESENT_ATTEMPT_MIN_MS;
	if (sd_event_add_io(f->p.loop, &f->job_src, job->done_fd, EPOLLIN, on_attempt_done, f) <
	    0) {
		job_unref(job);
		fail(f, SRUP_DEVICE_E_LOOP, "presenting on %s: cannot watch the presenter",
		     f->p.channel->name);
		return;
	}
	f->job = job;
	job->refs = 2; /* the flow's and the thread's */
	/* The presenter's thread takes no signal meant for the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&thread, &attr, present_thread, job);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		job->refs = 1;
		fail(f, SRUP_DEVICE_E_RADIO, "presenting on %s: cannot start its thread: %s",
		     f->p.channel->name, strerror(r));
	}
}

static void start_presenting(struct srup_flow *f)
{
	f->stage = SRUP_FLOW_STAGE_PRESENTING;
	f->present_started_ms = now_ms();
	f->present_limit_ms = PRESENT_WINDOW_MS;
	f->present_err = RADIO_OK;
	f->present_detail[0] = '\0';
	if (f->p.timeout_ms) {
		uint64_t spent = f->present_started_ms - f->created_ms;
		uint64_t left = f->p.timeout_ms > spent ? f->p.timeout_ms - spent : 0;

		if (left < f->present_limit_ms)
			f->present_limit_ms = left;
	}
	start_attempt(f);
}

/* ---- the end ---------------------------------------------------------------- */

/* After DEREGISTER_SUCCESS (seed 9: "Devices should also remove the Server
 * public keys that they hold"): nothing from that server counts from now
 * on, and its key file goes. A file that cannot be unlinked is left, and
 * said so: the deregistration itself stands. */
static enum srup_flow_key_file delete_server_key(struct srup_flow *f)
{
	const char *path = f->p.cfg->server_public_key;
	char where[SRUP_CONFIG_PATH_MAX + 16];
	int e;

	srup_keystore_remove(f->p.peers, f->p.cfg->server_id);
	if (unlink(path) == 0)
		return SRUP_FLOW_KEY_FILE_DELETED;
	if (errno == ENOENT)
		return SRUP_FLOW_KEY_FILE_ALREADY_GONE;
	e = errno;
	set_detail(f->detail, sizeof(f->detail),
		   "%s: [server] public_key: the server deregistered this device, but its key %s "
		   "cannot be deleted (%s): delete it by hand",
		   srup_config_where(f->p.cfg, "server", "public_key", where, sizeof(where)), path,
		   strerror(e));
	return SRUP_FLOW_KEY_FILE_NOT_DELETED;
}

/* Everything stops first; done may free the flow, so nothing touches it
 * after the call. */
static void finish(struct srup_flow *f, enum srup_device_outcome outcome, uint8_t status,
		   enum srup_device_err err, enum srup_flow_key_file key_file, double elapsed)
{
	struct srup_flow_result result = {.outcome = outcome, .status = status, .err = err,
					  .detail = f->detail, .stage = f->stage,
					  .key_file = key_file, .elapsed_ms = elapsed};

	if (f->ended)
		return;
	f->ended = true;
	f->stage = SRUP_FLOW_STAGE_DONE;
	f->timeout_src = sd_event_source_disable_unref(f->timeout_src);
	f->send_src = sd_event_source_disable_unref(f->send_src);
	release_presenting(f);
	srup_bytes_clear(&f->response_token);
	f->p.done(f, &result, f->p.user);
}

static void verdict_end(struct srup_flow *f)
{
	const char *name = srup_status_name(f->held_status);
	enum srup_flow_key_file key_file = SRUP_FLOW_KEY_FILE_UNTOUCHED;

	set_detail(f->detail, sizeof(f->detail), "%s (0x%02x) after %.1f ms", name ? name : "?",
		   f->held_status, f->held_elapsed);
	if (f->held_success && f->p.kind == SRUP_FLOW_DEREGISTER)
		key_file = delete_server_key(f);
	finish(f, f->held_success ? SRUP_DEVICE_ACCEPTED : SRUP_DEVICE_REFUSED, f->held_status,
	       SRUP_DEVICE_OK, key_file, f->held_elapsed);
}

static int on_held_verdict(sd_event_source *s, uint64_t usec, void *user)
{
	(void)s;
	(void)usec;
	verdict_end(user);
	return 0;
}

/* The server's verdict ends the flow. One that comes while an attempt to
 * present is still out (the observer told the server before the presenter
 * heard back) waits for that attempt, up to VERDICT_WAITS_FOR_ATTEMPT_MS,
 * so that the application hears "presented" before the end. */
static void verdict(struct srup_flow *f, const struct srup_msg *msg, bool success)
{
	if (f->verdict_held)
		return; /* a copy, while the first waits for the attempt */
	f->verdict_held = true;
	f->held_success = success;
	f->held_status = msg->status;
	f->held_elapsed = srup_flow_elapsed_ms(f);
	if (f->stage == SRUP_FLOW_STAGE_PRESENTING && f->job &&
	    sd_event_add_time_relative(f->p.loop, &f->held_verdict_src, CLOCK_MONOTONIC,
				       VERDICT_WAITS_FOR_ATTEMPT_MS * 1000ull, 0, on_held_verdict,
				       f) >= 0)
		return;
	verdict_end(f);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *user)
{
	struct srup_flow *f = user;

	(void)s;
	(void)usec;
	if (f->verdict_held)
		verdict_end(f);
	else if (f->stage == SRUP_FLOW_STAGE_PRESENTING)
		present_timed_out(f);
	else
		fail(f, SRUP_DEVICE_E_TIMEOUT, "no answer to %s from the server", f->ex->name);
	return 0;
}

/* ---- the request -------------------------------------------------------------- */

static enum srup_device_err node_err(enum srup_node_err e)
{
	switch (e) {
	case SRUP_NODE_OK:
		return SRUP_DEVICE_OK;
	case SRUP_NODE_E_NOMEM:
		return SRUP_DEVICE_E_NOMEM;
	case SRUP_NODE_E_ARG:
		return SRUP_DEVICE_E_ARG;
	case SRUP_NODE_E_STATE:
		return SRUP_DEVICE_E_STATE;
	case SRUP_NODE_E_PROTOCOL:
		return SRUP_DEVICE_E_PROTOCOL;
	case SRUP_NODE_E_TIMEOUT:
		return SRUP_DEVICE_E_TIMEOUT;
	default:
		return SRUP_DEVICE_E_MQTT;
	}
}

static void send_request(struct srup_flow *f)
{
	struct srup_msg *msg;
	char topic[SRUP_TOPIC_MAX];
	enum srup_node_err err;

	if (f->sent || f->ended)
		return;
	f->send_src = sd_event_source_disable_unref(f->send_src);
	msg = srup_msg_new(f->ex->type);
	if (!msg || srup_uuid4_text(f->request_token) != SRUP_OK ||
	    srup_bytes_set(&msg->token, f->request_token, SRUP_UUID_TEXT_LEN) != SRUP_OK) {
		srup_msg_free(msg);
		fail(f, SRUP_DEVICE_E_NOMEM, "cannot make %s: out of memory or no randomness",
		     f->ex->name);
		return;
	}
	msg->observer_id = f->p.observer;
	if (f->ex->on_server_topic)
		srup_topic_server_join(f->p.cfg->server_id, f->p.cfg->identity_id, topic);
	else
		srup_topic_device(f->p.cfg->identity_id, topic);
	f->sent_at_ms = now_ms_precise();
	err = srup_node_send(f->p.node, msg, f->p.cfg->server_id, topic);
	srup_msg_free(msg);
	if (err != SRUP_NODE_OK) {
		fail(f, node_err(err), "cannot send %s: %s", f->ex->name, srup_node_strerror(err));
		return;
	}
	f->sent = true;
	f->stage = f->ex->response_type ? SRUP_FLOW_STAGE_RESPONSE : SRUP_FLOW_STAGE_VERDICT;
	if (f->p.event)
		f->p.event(f, &(struct srup_flow_event){.kind = SRUP_FLOW_EVENT_SENT, .topic = topic,
							.token = f->request_token},
			   f->p.user);
}

static int on_send(sd_event_source *s, void *user)
{
	(void)s;
	send_request(user);
	return 0;
}

void srup_flow_connected(struct srup_flow *flow)
{
	if (flow)
		send_request(flow);
}

/* ---- what the server sends ---------------------------------------------------- */

/* OBS_JOIN_RESP / HM_JOIN_RESP: open the value, keep the response's token
 * (the verdict may echo it), then present or show the value. */
static void on_join_response(struct srup_flow *f, const struct srup_msg *msg)
{
	const char *what = msg->type == SRUP_TYPE_OBS_JOIN_RESPONSE ? "OBS_JOIN_RESP"
								    : "HM_JOIN_RESP";
	size_t max = f->p.kind == SRUP_FLOW_OBSERVED ? SRUP_FRAME_VALUE_MAX : HUMAN_VALUE_MAX;
	struct srup_bytes value = {0};
	enum srup_err err;

	err = srup_msg_open(msg, f->p.private_key, &value);
	if (err != SRUP_OK) {
		fail(f, SRUP_DEVICE_E_PROTOCOL, "%s: the confirmation value does not decrypt: %s",
		     what, srup_strerror(err));
		return;
	}
	if (value.len == 0 || value.len > max) {
		size_t len = value.len;

		srup_bytes_clear(&value);
		fail(f, SRUP_DEVICE_E_PROTOCOL, "%s: confirmation value of %zu bytes cannot be "
		     "shown or presented (1..%zu)", what, len, max);
		return;
	}
	if (srup_bytes_set(&f->response_token, msg->token.data, msg->token.len) != SRUP_OK) {
		srup_bytes_clear(&value);
		fail(f, SRUP_DEVICE_E_NOMEM, "%s: out of memory", what);
		return;
	}
	if (f->p.kind == SRUP_FLOW_OBSERVED && f->p.channel) {
		f->frame.device_id = f->p.cfg->identity_id;
		f->frame.value_len = (uint16_t)value.len;
		memcpy(f->frame.value, value.data, value.len);
		srup_bytes_clear(&value);
		if (f->p.event)
			f->p.event(f, &(struct srup_flow_event){.kind = SRUP_FLOW_EVENT_PRESENTING,
								.channel = f->p.channel->name},
				   f->p.user);
		start_presenting(f);
		return;
	}
	char text[2 * SRUP_FRAME_VALUE_MAX + 1], grouped[3 * SRUP_FRAME_VALUE_MAX + 1];

	srup_flow_value_text(value.data, value.len, f->p.kind == SRUP_FLOW_OBSERVED, text,
			     grouped);
	srup_bytes_clear(&value);
	f->stage = SRUP_FLOW_STAGE_VERDICT;
	f->p.show(f, text, grouped, f->p.user);
	OPENSSL_cleanse(text, sizeof(text));
	OPENSSL_cleanse(grouped, sizeof(grouped));
}

bool srup_flow_offer(struct srup_flow *f, const struct srup_msg *msg)
{
	int v;

	if (!f || !msg || f->ended || !f->sent)
		return false;
	if (msg->type == SRUP_TYPE_OBS_JOIN_RESPONSE || msg->type == SRUP_TYPE_HM_JOIN_RESPONSE) {
		if (msg->type != f->ex->response_type || f->stage != SRUP_FLOW_STAGE_RESPONSE)
			return false;
		on_join_response(f, msg);
		return true;
	}
	if (msg->type != SRUP_TYPE_RESPONSE)
		return false;
	/* The verdict echoes the pending token: pySRUP servers send the join
	 * response's token, others may echo the request's. */
	if (!srup_flow_token_matches(&msg->token, f->request_token, f->response_token.data,
				     f->response_token.len))
		return false;
	v = srup_flow_verdict(f->ex, msg->status);
	if (v < 0) {
		const char *name = srup_status_name(msg->status);

		srup_log(LOG_WARNING, "RESPONSE with status 0x%02x (%s) is no answer to %s; ignored",
			 msg->status, name ? name : "unknown", f->ex->name);
		return true;
	}
	verdict(f, msg, v == 1);
	return true;
}

/* ---- making and ending a flow -------------------------------------------------- */

enum srup_device_err srup_flow_new(const struct srup_flow_params *p, struct srup_flow **out,
				   char *detail, size_t detail_len)
{
	struct srup_flow *f;

	if (out)
		*out = NULL;
	if (!p || !out || !p->loop || !p->node || !p->cfg || !p->peers || !p->done ||
	    !srup_flow_exchange(p->kind)) {
		set_detail(detail, detail_len, "a flow needs its kind, loop, node, configuration, "
			   "peer store and completion callback");
		return SRUP_DEVICE_E_ARG;
	}
	if ((p->kind == SRUP_FLOW_OBSERVED || p->kind == SRUP_FLOW_HUMAN) && !p->private_key) {
		set_detail(detail, detail_len, "a join with a confirmation value needs the private "
			   "key");
		return SRUP_DEVICE_E_ARG;
	}
	if ((p->kind == SRUP_FLOW_HUMAN || (p->kind == SRUP_FLOW_OBSERVED && !p->channel)) &&
	    !p->show) {
		set_detail(detail, detail_len, "a %s join without a channel needs a show callback",
			   p->kind == SRUP_FLOW_HUMAN ? "human-mediated" : "observed");
		return SRUP_DEVICE_E_ARG;
	}
	if (p->kind != SRUP_FLOW_OBSERVED && p->channel) {
		set_detail(detail, detail_len, "only an observed join presents on a channel");
		return SRUP_DEVICE_E_ARG;
	}
	if (p->channel && !p->channel->present) {
		set_detail(detail, detail_len, "channel %s cannot present", p->channel->name);
		return SRUP_DEVICE_E_ARG;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		set_detail(detail, detail_len, "out of memory");
		return SRUP_DEVICE_E_NOMEM;
	}
	f->p = *p;
	f->ex = &exchanges[p->kind];
	f->stage = SRUP_FLOW_STAGE_SENDING;
	f->created_ms = now_ms();
	sd_event_ref(f->p.loop);
	if (p->timeout_ms &&
	    sd_event_add_time_relative(p->loop, &f->timeout_src, CLOCK_MONOTONIC,
				       (uint64_t)p->timeout_ms * 1000u, 0, on_timeout, f) < 0)
		goto loop_failed;
	/* Sent from the loop, so that done never runs inside srup_flow_new. */
	if (srup_node_is_connected(p->node) &&
	    sd_event_add_defer(p->loop, &f->send_src, on_send, f) < 0)
		goto loop_failed;
	*out = f;
	return SRUP_DEVICE_OK;
loop_failed:
	set_detail(detail, detail_len, "cannot add the flow's events to the loop");
	f->ended = true; /* no done for a flow never returned */
	srup_flow_free(f);
	return SRUP_DEVICE_E_LOOP;
}

void srup_flow_free(struct srup_flow *f)
{
	if (!f || f->freeing)
		return;
	f->freeing = true;
	if (!f->ended) {
		set_detail(f->detail, sizeof(f->detail), "cancelled");
		finish(f, SRUP_DEVICE_FAILED, 0, SRUP_DEVICE_E_STATE_ORDER,
		       SRUP_FLOW_KEY_FILE_UNTOUCHED, 0);
	}
	f->timeout_src = sd_event_source_disable_unref(f->timeout_src);
	f->send_src = sd_event_source_disable_unref(f->send_src);
	release_presenting(f);
	srup_bytes_clear(&f->response_token);
	OPENSSL_cleanse(f->request_token, sizeof(f->request_token));
	sd_event_unref(f->p.loop);
	free(f);
}
