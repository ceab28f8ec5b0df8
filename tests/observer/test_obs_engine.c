/* The observation engine against every rule of OBSERVATION-CHANNEL.md
 * section 2, with a fake clock (plain numbers passed as "now"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obs_engine.h"

#define WINDOW_S 120u
#define WINDOW_MS (WINDOW_S * 1000u)
#define T0 1000000u

static const uint8_t RIGHT[] = "5e1f0c2d3b4a69788796a5b4c3d2e1f0";
#define RIGHT_LEN (sizeof(RIGHT) - 1)
static const uint8_t WRONG_A[] = "00000000000000000000000000000000";
static const uint8_t WRONG_B[] = "11111111111111111111111111111111";
static const uint8_t WRONG_C[] = "22222222222222222222222222222222";
#define WRONG_LEN (sizeof(WRONG_A) - 1)

struct fixture {
	struct obs_engine *e;
	struct obs_events ev;
};

static struct fixture *fixture_new(unsigned window_s, unsigned max_attempts, unsigned max_pending)
{
	struct obs_engine_config cfg = {window_s, max_attempts, max_pending};
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->e = obs_engine_new(&cfg);
	assert_non_null(f->e);
	return f;
}

static int setup_default(void **state)
{
	*state = fixture_new(WINDOW_S, 3, 1000);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	obs_engine_free(f->e);
	obs_events_free(&f->ev);
	free(f);
	return 0;
}

static void request(struct fixture *f, uint64_t dev, const char *token, uint64_t now)
{
	assert_int_equal(obs_engine_request(f->e, dev, RIGHT, RIGHT_LEN, (const uint8_t *)token,
					    strlen(token), now, &f->ev),
			 0);
}

static uint8_t frame(struct fixture *f, uint64_t dev, const uint8_t *value, size_t len,
		     uint64_t now)
{
	return obs_engine_frame(f->e, 0, dev, value, len, now, &f->ev);
}

static uint8_t frame_on(struct fixture *f, int channel, uint64_t dev, const uint8_t *value,
			size_t len, uint64_t now)
{
	return obs_engine_frame(f->e, channel, dev, value, len, now, &f->ev);
}

static void assert_respond(const struct obs_event *ev, uint64_t dev, uint8_t status,
			   enum obs_outcome outcome, const char *token, unsigned attempts,
			   uint64_t duration)
{
	assert_int_equal(ev->kind, OBS_EVENT_RESPOND);
	assert_int_equal(ev->device_id, dev);
	assert_int_equal(ev->status, status);
	assert_int_equal(ev->outcome, outcome);
	assert_int_equal(ev->token_len, strlen(token));
	assert_memory_equal(ev->token, token, strlen(token));
	assert_int_equal(ev->attempts, attempts);
	assert_int_equal(ev->duration_ms, duration);
}

/* ---- Match ---------------------------------------------------------------- */

static void test_match_responds_valid_at_once(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok-1", T0);
	assert_int_equal(f->ev.len, 1);
	assert_int_equal(f->ev.ev[0].kind, OBS_EVENT_LISTEN_START);
	assert_int_equal(obs_engine_pending(f->e), 1);
	obs_events_clear(&f->ev);

	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 250), 0x60);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1234, 0x60, OBS_OUTCOME_VALID, "tok-1", 0, 250);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(obs_engine_pending(f->e), 0);
	assert_int_equal(obs_engine_next_deadline(f->e), UINT64_MAX);
}

static void test_late_frame_after_match_not_compared(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "t", T0);
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 1), 0x60);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 2), 0x00);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 3), 0x00);
	assert_int_equal(f->ev.len, 0);
}

static void test_frame_for_unknown_device_not_compared(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(frame(f, 0x1, RIGHT, RIGHT_LEN, T0), 0x00);
	request(f, 0x1234, "t", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 0x1235, RIGHT, RIGHT_LEN, T0), 0x00);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_pending(f->e), 1);
}

static void test_length_mismatch_is_mismatch(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "t", T0);
	obs_events_clear(&f->ev);
	/* A prefix of the secret, and the secret with one byte more. */
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN - 1, T0), 0x6E);
	uint8_t longer[RIGHT_LEN + 1];
	memcpy(longer, RIGHT, RIGHT_LEN);
	longer[RIGHT_LEN] = '0';
	assert_int_equal(frame(f, 0x1234, longer, sizeof(longer), T0), 0x6E);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_pending(f->e), 1);
}

/* ---- Mismatches ------------------------------------------------------------ */

static void test_distinct_wrong_values_counted_once_aba(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 1), 0x6E);
	assert_int_equal(frame(f, 0x1234, WRONG_B, WRONG_LEN, T0 + 2), 0x6E);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 3), 0x6E);
	/* A, B, A: two attempts, the observation goes on. */
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_pending(f->e), 1);
	/* C is the third distinct wrong value: 0x6E and the end. */
	assert_int_equal(frame(f, 0x1234, WRONG_C, WRONG_LEN, T0 + 4), 0x6E);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6E, OBS_OUTCOME_INVALID, "tok", 3, 4);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(obs_engine_pending(f->e), 0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 5), 0x00);
}

static void test_tag_left_on_reader_is_one_attempt(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	obs_events_clear(&f->ev);
	for (unsigned i = 0; i < 50; i++)
		assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 200 * i), 0x6E);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(frame(f, 0x1234, WRONG_B, WRONG_LEN, T0 + 20000), 0x6E);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 30000), 0x60);
	assert_respond(&f->ev.ev[0], 0x1234, 0x60, OBS_OUTCOME_VALID, "tok", 2, 30000);
}

static void test_one_wrong_then_right_is_valid(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 1), 0x6E);
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 2), 0x60);
	assert_respond(&f->ev.ev[0], 0x1234, 0x60, OBS_OUTCOME_VALID, "tok", 1, 2);
}

/* ---- Several channels ------------------------------------------------------ */

/* A frame counts the same whichever channel brought it: distinct wrong
 * values are counted over all channels, the same wrong value on two
 * channels is one attempt, and the outcome names the channel that decided. */
static void test_wrong_values_counted_over_all_channels(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame_on(f, 1, 0x1234, WRONG_A, WRONG_LEN, T0 + 1), 0x6E);
	assert_int_equal(frame_on(f, 2, 0x1234, WRONG_A, WRONG_LEN, T0 + 2), 0x6E);
	assert_int_equal(frame_on(f, 2, 0x1234, WRONG_B, WRONG_LEN, T0 + 3), 0x6E);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_list(f->e, &(struct obs_pending_info){0}, 1), 1);
	assert_int_equal(frame_on(f, 1, 0x1234, WRONG_C, WRONG_LEN, T0 + 4), 0x6E);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6E, OBS_OUTCOME_INVALID, "tok", 3, 4);
	assert_int_equal(f->ev.ev[0].channel, 1);
}

static void test_first_match_on_any_channel_decides(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	request(f, 0x99, "other", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame_on(f, 0, 0x1234, WRONG_A, WRONG_LEN, T0 + 1), 0x6E);
	assert_int_equal(frame_on(f, 1, 0x1234, WRONG_B, WRONG_LEN, T0 + 2), 0x6E);
	assert_int_equal(frame_on(f, 2, 0x1234, RIGHT, RIGHT_LEN, T0 + 3), 0x60);
	assert_respond(&f->ev.ev[0], 0x1234, 0x60, OBS_OUTCOME_VALID, "tok", 2, 3);
	assert_int_equal(f->ev.ev[0].channel, 2);
	obs_events_clear(&f->ev);
	/* Ended on every channel: the same frame on another is not compared. */
	assert_int_equal(frame_on(f, 0, 0x1234, RIGHT, RIGHT_LEN, T0 + 4), 0x00);
	/* No frame decides a deadline. */
	obs_engine_tick(f->e, T0 + WINDOW_S * 1000, &f->ev);
	assert_respond(&f->ev.ev[0], 0x99, 0x6F, OBS_OUTCOME_EXPIRED, "other", 0, WINDOW_S * 1000);
	assert_int_equal(f->ev.ev[0].channel, OBS_CHANNEL_NONE);
}

static void test_max_attempts_one(void **state)
{
	struct fixture *f = fixture_new(WINDOW_S, 1, 10);

	(void)state;
	request(f, 7, "x", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 7, WRONG_A, WRONG_LEN, T0 + 9), 0x6E);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 7, 0x6E, OBS_OUTCOME_INVALID, "x", 1, 9);
	teardown((void **)&f);
}

/* ---- Deadline --------------------------------------------------------------- */

static void test_deadline_without_mismatch_fails(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + WINDOW_MS);
	obs_engine_tick(f->e, T0 + WINDOW_MS - 1, &f->ev);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_pending(f->e), 1);
	obs_engine_tick(f->e, T0 + WINDOW_MS, &f->ev);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6F, OBS_OUTCOME_EXPIRED, "tok", 0, WINDOW_MS);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(obs_engine_pending(f->e), 0);
}

static void test_deadline_after_mismatch_invalid(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 5), 0x6E);
	obs_events_clear(&f->ev);
	obs_engine_tick(f->e, T0 + WINDOW_MS + 7, &f->ev);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6E, OBS_OUTCOME_EXPIRED_INVALID, "tok", 1,
		       WINDOW_MS + 7);
}

static void test_frame_after_deadline_before_tick(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "tok", T0);
	obs_events_clear(&f->ev);
	/* The caller's timer has not fired yet: the frame still finds the
	 * observation over. */
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + WINDOW_MS), 0x00);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6F, OBS_OUTCOME_EXPIRED, "tok", 0, WINDOW_MS);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
}

static void test_equal_deadlines_end_in_request_order(void **state)
{
	struct fixture *f = *state;

	request(f, 30, "c", T0);
	request(f, 10, "a", T0);
	request(f, 20, "b", T0);
	obs_events_clear(&f->ev);
	obs_engine_tick(f->e, T0 + WINDOW_MS, &f->ev);
	assert_int_equal(f->ev.len, 4);
	assert_respond(&f->ev.ev[0], 30, 0x6F, OBS_OUTCOME_EXPIRED, "c", 0, WINDOW_MS);
	assert_respond(&f->ev.ev[1], 10, 0x6F, OBS_OUTCOME_EXPIRED, "a", 0, WINDOW_MS);
	assert_respond(&f->ev.ev[2], 20, 0x6F, OBS_OUTCOME_EXPIRED, "b", 0, WINDOW_MS);
	assert_int_equal(f->ev.ev[3].kind, OBS_EVENT_LISTEN_STOP);
}

static void test_next_deadline_follows_earliest(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(obs_engine_next_deadline(f->e), UINT64_MAX);
	request(f, 1, "a", T0 + 500);
	request(f, 2, "b", T0 + 100);
	request(f, 3, "c", T0 + 900);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + 100 + WINDOW_MS);
	assert_int_equal(frame(f, 2, RIGHT, RIGHT_LEN, T0 + 1000), 0x60);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + 500 + WINDOW_MS);
	obs_events_clear(&f->ev);
	obs_engine_tick(f->e, T0 + 500 + WINDOW_MS, &f->ev);
	assert_int_equal(f->ev.len, 1);
	assert_int_equal(f->ev.ev[0].device_id, 1);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + 900 + WINDOW_MS);
}

/* ---- Supersede and overflow ---------------------------------------------------- */

static void test_supersede_answers_old_and_starts_afresh(void **state)
{
	struct fixture *f = *state;
	static const uint8_t second_value[] = "ffffffffffffffffffffffffffffffff";

	request(f, 0x1234, "old", T0);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 10), 0x6E);
	assert_int_equal(frame(f, 0x1234, WRONG_B, WRONG_LEN, T0 + 11), 0x6E);
	obs_events_clear(&f->ev);

	assert_int_equal(obs_engine_request(f->e, 0x1234, second_value, sizeof(second_value) - 1,
					    (const uint8_t *)"new", 3, T0 + 1000, &f->ev),
			 0);
	/* The old one answered 0x6F with its own token; no listen events. */
	assert_int_equal(f->ev.len, 1);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6F, OBS_OUTCOME_SUPERSEDED, "old", 2, 1000);
	assert_int_equal(obs_engine_pending(f->e), 1);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + 1000 + WINDOW_MS);
	obs_events_clear(&f->ev);

	/* Afresh: the old value is now wrong, and the attempt count starts
	 * over (A and B again do not end it at max_attempts 3). */
	assert_int_equal(frame(f, 0x1234, RIGHT, RIGHT_LEN, T0 + 1001), 0x6E);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 1002), 0x6E);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(frame(f, 0x1234, second_value, sizeof(second_value) - 1, T0 + 1003),
			 0x60);
	assert_respond(&f->ev.ev[0], 0x1234, 0x60, OBS_OUTCOME_VALID, "new", 2, 3);
}

static void test_request_after_deadline_is_not_a_supersede(void **state)
{
	struct fixture *f = *state;

	request(f, 0x1234, "old", T0);
	assert_int_equal(frame(f, 0x1234, WRONG_A, WRONG_LEN, T0 + 1), 0x6E);
	obs_events_clear(&f->ev);
	request(f, 0x1234, "new", T0 + WINDOW_MS);
	/* Old expired by its own rule (a mismatch was seen), then the new
	 * one started: listen stop and start again. */
	assert_int_equal(f->ev.len, 3);
	assert_respond(&f->ev.ev[0], 0x1234, 0x6E, OBS_OUTCOME_EXPIRED_INVALID, "old", 1,
		       WINDOW_MS);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(f->ev.ev[2].kind, OBS_EVENT_LISTEN_START);
	assert_int_equal(obs_engine_pending(f->e), 1);
}

static void test_overflow_at_max_pending(void **state)
{
	struct fixture *f = fixture_new(WINDOW_S, 3, 2);

	(void)state;
	request(f, 1, "one", T0);
	request(f, 2, "two", T0 + 1);
	obs_events_clear(&f->ev);
	request(f, 3, "three", T0 + 2);
	assert_int_equal(f->ev.len, 1);
	assert_respond(&f->ev.ev[0], 3, 0x6F, OBS_OUTCOME_OVERFLOW, "three", 0, 0);
	/* Nothing else changed. */
	assert_int_equal(obs_engine_pending(f->e), 2);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + WINDOW_MS);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 3, RIGHT, RIGHT_LEN, T0 + 3), 0x00);

	/* A request for a device already pending is a supersede, even at
	 * max_pending. */
	request(f, 1, "one-again", T0 + 4);
	assert_int_equal(f->ev.len, 1);
	assert_respond(&f->ev.ev[0], 1, 0x6F, OBS_OUTCOME_SUPERSEDED, "one", 0, 4);
	assert_int_equal(obs_engine_pending(f->e), 2);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 1, RIGHT, RIGHT_LEN, T0 + 5), 0x60);
	assert_respond(&f->ev.ev[0], 1, 0x60, OBS_OUTCOME_VALID, "one-again", 0, 1);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 2, RIGHT, RIGHT_LEN, T0 + 6), 0x60);
	assert_respond(&f->ev.ev[0], 2, 0x60, OBS_OUTCOME_VALID, "two", 0, 5);

	/* Room again: a new device is accepted. */
	obs_events_clear(&f->ev);
	request(f, 3, "three-again", T0 + 7);
	assert_int_equal(f->ev.len, 1);
	assert_int_equal(f->ev.ev[0].kind, OBS_EVENT_LISTEN_START);
	teardown((void **)&f);
}

static void test_expired_make_room_before_overflow(void **state)
{
	struct fixture *f = fixture_new(1, 3, 1);

	(void)state;
	request(f, 1, "one", T0);
	obs_events_clear(&f->ev);
	request(f, 2, "two", T0 + 1000);
	assert_int_equal(f->ev.len, 3);
	assert_respond(&f->ev.ev[0], 1, 0x6F, OBS_OUTCOME_EXPIRED, "one", 0, 1000);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(f->ev.ev[2].kind, OBS_EVENT_LISTEN_START);
	assert_int_equal(obs_engine_pending(f->e), 1);
	teardown((void **)&f);
}

/* ---- fail_all ----------------------------------------------------------------- */

static void test_fail_all_radio_lost(void **state)
{
	struct fixture *f = *state;

	request(f, 1, "a", T0);
	request(f, 2, "b", T0 + 1);
	request(f, 3, "c", T0 + 2);
	assert_int_equal(frame(f, 2, WRONG_A, WRONG_LEN, T0 + 3), 0x6E);
	obs_events_clear(&f->ev);
	obs_engine_fail_all(f->e, OBS_OUTCOME_RADIO_LOST, T0 + 10, &f->ev);
	assert_int_equal(f->ev.len, 4);
	assert_respond(&f->ev.ev[0], 1, 0x6F, OBS_OUTCOME_RADIO_LOST, "a", 0, 10);
	assert_respond(&f->ev.ev[1], 2, 0x6F, OBS_OUTCOME_RADIO_LOST, "b", 1, 9);
	assert_respond(&f->ev.ev[2], 3, 0x6F, OBS_OUTCOME_RADIO_LOST, "c", 0, 8);
	assert_int_equal(f->ev.ev[3].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(obs_engine_pending(f->e), 0);
	assert_int_equal(obs_engine_next_deadline(f->e), UINT64_MAX);
	obs_events_clear(&f->ev);
	assert_int_equal(frame(f, 1, RIGHT, RIGHT_LEN, T0 + 11), 0x00);
	obs_engine_fail_all(f->e, OBS_OUTCOME_SHUTDOWN, T0 + 12, &f->ev);
	assert_int_equal(f->ev.len, 0);
}

/* ---- Operator's cancel and list ---------------------------------------------- */

static void test_cancel_answers_fail_and_only_that_device(void **state)
{
	struct fixture *f = *state;

	request(f, 1, "a", T0);
	request(f, 2, "b", T0 + 1);
	assert_int_equal(frame(f, 2, WRONG_A, WRONG_LEN, T0 + 2), 0x6E);
	obs_events_clear(&f->ev);
	assert_int_equal(obs_engine_cancel(f->e, 2, T0 + 50, &f->ev), 1);
	assert_int_equal(f->ev.len, 1);
	assert_respond(&f->ev.ev[0], 2, 0x6F, OBS_OUTCOME_CANCELLED, "b", 1, 49);
	assert_int_equal(obs_engine_pending(f->e), 1);
	obs_events_clear(&f->ev);
	/* Gone: a frame is not compared, a second cancel finds nothing. */
	assert_int_equal(frame(f, 2, RIGHT, RIGHT_LEN, T0 + 51), 0x00);
	assert_int_equal(obs_engine_cancel(f->e, 2, T0 + 52, &f->ev), 0);
	assert_int_equal(obs_engine_cancel(f->e, 3, T0 + 52, &f->ev), 0);
	assert_int_equal(f->ev.len, 0);
	/* The last one cancelled stops listening. */
	assert_int_equal(obs_engine_cancel(f->e, 1, T0 + 60, &f->ev), 1);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 1, 0x6F, OBS_OUTCOME_CANCELLED, "a", 0, 60);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(obs_engine_cancel(NULL, 1, T0, &f->ev), -1);
	assert_int_equal(obs_engine_cancel(f->e, 1, T0, NULL), -1);
}

static void test_cancel_after_deadline_keeps_its_outcome(void **state)
{
	struct fixture *f = *state;

	request(f, 7, "t", T0);
	obs_events_clear(&f->ev);
	assert_int_equal(obs_engine_cancel(f->e, 7, T0 + WINDOW_MS, &f->ev), 0);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 7, 0x6F, OBS_OUTCOME_EXPIRED, "t", 0, WINDOW_MS);
	assert_int_equal(f->ev.ev[1].kind, OBS_EVENT_LISTEN_STOP);
}

static void test_list_earliest_deadline_first(void **state)
{
	struct fixture *f = *state;
	struct obs_pending_info info[40];
	size_t n;

	assert_int_equal(obs_engine_list(f->e, info, 40), 0);
	/* Requests in an order the heap does not keep in its array. */
	for (unsigned i = 0; i < 30; i++)
		request(f, 100 + (i * 7) % 30, "t", T0 + (i * 7) % 30);
	assert_int_equal(frame(f, 105, WRONG_A, WRONG_LEN, T0 + 40), 0x6E);
	n = obs_engine_list(f->e, info, 40);
	assert_int_equal(n, 30);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(info[i].device_id, 100 + i);
		assert_int_equal(info[i].started_ms, T0 + i);
		assert_int_equal(info[i].deadline_ms, T0 + i + WINDOW_MS);
		assert_int_equal(info[i].attempts, i == 5 ? 1 : 0);
	}
	/* Fewer slots than pending: the earliest ones. */
	n = obs_engine_list(f->e, info, 4);
	assert_int_equal(n, 4);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(info[i].device_id, 100 + i);
	assert_int_equal(obs_engine_list(f->e, info, 0), 0);
}

static void test_fail_all_keeps_due_outcomes(void **state)
{
	struct fixture *f = *state;

	request(f, 1, "a", T0);
	assert_int_equal(frame(f, 1, WRONG_A, WRONG_LEN, T0 + 1), 0x6E);
	request(f, 2, "b", T0 + 5000);
	obs_events_clear(&f->ev);
	obs_engine_fail_all(f->e, OBS_OUTCOME_SHUTDOWN, T0 + WINDOW_MS, &f->ev);
	assert_int_equal(f->ev.len, 3);
	assert_respond(&f->ev.ev[0], 1, 0x6E, OBS_OUTCOME_EXPIRED_INVALID, "a", 1, WINDOW_MS);
	assert_respond(&f->ev.ev[1], 2, 0x6F, OBS_OUTCOME_SHUTDOWN, "b", 0, WINDOW_MS - 5000);
	assert_int_equal(f->ev.ev[2].kind, OBS_EVENT_LISTEN_STOP);
}

/* ---- Arguments, events, names ----------------------------------------------------- */

static void test_bad_arguments_change_nothing(void **state)
{
	struct fixture *f = *state;
	uint8_t big[OBS_VALUE_MAX + 1] = {0};
	struct obs_engine_config zero_window = {0, 3, 10}, zero_attempts = {10, 0, 10},
				 zero_pending = {10, 3, 0};

	assert_int_equal(obs_engine_request(f->e, 1, RIGHT, 0, NULL, 0, T0, &f->ev), -1);
	assert_int_equal(obs_engine_request(f->e, 1, big, sizeof(big), NULL, 0, T0, &f->ev), -1);
	assert_int_equal(obs_engine_request(f->e, 1, RIGHT, RIGHT_LEN, big, OBS_TOKEN_MAX + 1, T0,
					    &f->ev),
			 -1);
	assert_int_equal(obs_engine_request(f->e, 1, NULL, 5, NULL, 0, T0, &f->ev), -1);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_pending(f->e), 0);
	/* Largest value and token are accepted; an empty token too. */
	assert_int_equal(obs_engine_request(f->e, 1, big, OBS_VALUE_MAX, big, OBS_TOKEN_MAX, T0,
					    &f->ev),
			 0);
	assert_int_equal(obs_engine_request(f->e, 2, RIGHT, RIGHT_LEN, NULL, 0, T0, &f->ev), 0);
	assert_int_equal(frame(f, 1, big, 0, T0), 0x00);
	assert_int_equal(frame(f, 1, big, OBS_VALUE_MAX, T0), 0x60);

	assert_null(obs_engine_new(NULL));
	assert_null(obs_engine_new(&zero_window));
	assert_null(obs_engine_new(&zero_attempts));
	assert_null(obs_engine_new(&zero_pending));
}

static void test_events_clear_wipes_tokens(void **state)
{
	struct fixture *f = *state;
	static const uint8_t zero[16];

	request(f, 1, "secret-ish-token", T0);
	assert_int_equal(frame(f, 1, RIGHT, RIGHT_LEN, T0), 0x60);
	assert_int_equal(f->ev.len, 3);
	assert_memory_equal(f->ev.ev[1].token, "secret-ish-token", 16);
	obs_events_clear(&f->ev);
	assert_int_equal(f->ev.len, 0);
	assert_memory_equal(f->ev.ev[1].token, zero, sizeof(zero));
}

static void test_outcome_names_distinct(void **state)
{
	(void)state;
	for (int a = OBS_OUTCOME_VALID; a <= OBS_OUTCOME_CANCELLED; a++) {
		assert_non_null(obs_outcome_name(a));
		for (int b = a + 1; b <= OBS_OUTCOME_CANCELLED; b++)
			assert_string_not_equal(obs_outcome_name(a), obs_outcome_name(b));
	}
}

/* ---- Many pending -------------------------------------------------------------------- */

static void test_thousand_pending(void **state)
{
	struct fixture *f = *state;
	char token[32];

	/* Sequential IDs and IDs that differ only in high bits. */
	for (uint64_t i = 0; i < 1000; i++) {
		uint64_t dev = i % 2 ? i : i << 40;

		snprintf(token, sizeof(token), "tok-%llu", (unsigned long long)i);
		request(f, dev, token, T0 + i);
	}
	assert_int_equal(obs_engine_pending(f->e), 1000);
	assert_int_equal(f->ev.len, 1); /* one LISTEN_START */
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + WINDOW_MS);
	obs_events_clear(&f->ev);

	/* Overflow at 1000. */
	request(f, 0xdeadbeef, "over", T0 + 2000);
	assert_int_equal(f->ev.len, 1);
	assert_int_equal(f->ev.ev[0].outcome, OBS_OUTCOME_OVERFLOW);
	obs_events_clear(&f->ev);

	/* Every device found; even ones end with a match, odd ones take one
	 * mismatch and stay. */
	for (uint64_t i = 0; i < 1000; i++) {
		uint64_t dev = i % 2 ? i : i << 40;

		if (i % 2) {
			assert_int_equal(frame(f, dev, WRONG_A, WRONG_LEN, T0 + 3000), 0x6E);
		} else {
			assert_int_equal(frame(f, dev, RIGHT, RIGHT_LEN, T0 + 3000), 0x60);
			snprintf(token, sizeof(token), "tok-%llu", (unsigned long long)i);
			assert_respond(&f->ev.ev[f->ev.len - 1], dev, 0x60, OBS_OUTCOME_VALID, token,
				       0, 3000 - i);
		}
	}
	assert_int_equal(obs_engine_pending(f->e), 500);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + 1 + WINDOW_MS);
	obs_events_clear(&f->ev);

	/* The rest expire in deadline order with 0x6E (one mismatch each). */
	obs_engine_tick(f->e, T0 + 2000 + WINDOW_MS, &f->ev);
	assert_int_equal(f->ev.len, 501);
	for (size_t k = 0; k < 500; k++) {
		assert_int_equal(f->ev.ev[k].device_id, 2 * k + 1);
		assert_int_equal(f->ev.ev[k].status, 0x6E);
		assert_int_equal(f->ev.ev[k].outcome, OBS_OUTCOME_EXPIRED_INVALID);
	}
	assert_int_equal(f->ev.ev[500].kind, OBS_EVENT_LISTEN_STOP);
	assert_int_equal(obs_engine_pending(f->e), 0);
}

/* A random walk against a plain model: catches hash-table and heap
 * bookkeeping errors that targeted cases miss. */
struct model_obs {
	bool pending;
	uint64_t deadline;
	unsigned wrong;
};

static void test_random_walk_against_model(void **state)
{
	struct fixture *f = fixture_new(2, 3, 12);
	enum { DEVICES = 20 };
	struct model_obs model[DEVICES] = {{0}};
	uint64_t rng = 0x9e3779b97f4a7c15ULL, now = T0;
	size_t pending = 0;
	unsigned seen[OBS_OUTCOME_SHUTDOWN + 1] = {0};

	(void)state;
	for (unsigned step = 0; step < 20000; step++) {
		unsigned dev, op;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		dev = (unsigned)(rng % DEVICES);
		op = (unsigned)((rng >> 32) % 10);
		if (op < 4 && (rng >> 40) % 3)
			op = 9; /* fewer requests, so that some observations see several frames */
		now += (rng >> 48) % 20;
		obs_events_clear(&f->ev);

		/* The model applies deadlines first, as the engine does. */
		for (unsigned d = 0; d < DEVICES; d++)
			if (model[d].pending && model[d].deadline <= now && op != 9) {
				model[d].pending = false;
				pending--;
			}
		if (op < 4) {
			request(f, dev * 0x100000001ULL, "t", now);
			if (!model[dev].pending && pending < 12) {
				model[dev].pending = true;
				pending++;
			}
			if (model[dev].pending) {
				model[dev].deadline = now + 2000;
				model[dev].wrong = 0;
			}
		} else if (op < 6) {
			uint8_t r = frame(f, dev * 0x100000001ULL, RIGHT, RIGHT_LEN, now);
			assert_int_equal(r, model[dev].pending ? 0x60 : 0x00);
			if (model[dev].pending) {
				model[dev].pending = false;
				pending--;
			}
		} else if (op < 9) {
			const uint8_t *v = op == 6 ? WRONG_A : op == 7 ? WRONG_B : WRONG_C;
			uint8_t r = frame(f, dev * 0x100000001ULL, v, WRONG_LEN, now);
			assert_int_equal(r, model[dev].pending ? 0x6E : 0x00);
			/* With three distinct values the count never passes 3;
			 * the engine's own count is checked through pending. */
		} else {
			obs_engine_tick(f->e, now, &f->ev);
			for (unsigned d = 0; d < DEVICES; d++)
				if (model[d].pending && model[d].deadline <= now) {
					model[d].pending = false;
					pending--;
				}
		}
		/* Wrong values may have ended observations in the engine that
		 * the model keeps (three distinct values): resync from the
		 * events. */
		for (size_t k = 0; k < f->ev.len; k++)
			if (f->ev.ev[k].kind == OBS_EVENT_RESPOND)
				seen[f->ev.ev[k].outcome]++;
		for (size_t k = 0; k < f->ev.len; k++)
			if (f->ev.ev[k].kind == OBS_EVENT_RESPOND &&
			    f->ev.ev[k].outcome == OBS_OUTCOME_INVALID) {
				unsigned d = (unsigned)(f->ev.ev[k].device_id / 0x100000001ULL);
				assert_true(model[d].pending);
				model[d].pending = false;
				pending--;
			}
		assert_int_equal(obs_engine_pending(f->e), pending);
		{
			uint64_t earliest = UINT64_MAX;

			for (unsigned d = 0; d < DEVICES; d++)
				if (model[d].pending && model[d].deadline < earliest)
					earliest = model[d].deadline;
			assert_int_equal(obs_engine_next_deadline(f->e), earliest);
		}
	}
	/* The walk went through every outcome a request or frame can have. */
	for (int o = OBS_OUTCOME_VALID; o <= OBS_OUTCOME_OVERFLOW; o++) {
		print_message("%s: %u\n", obs_outcome_name(o), seen[o]);
		assert_true(seen[o] > 0);
	}
	teardown((void **)&f);
}

/* ---- A reloaded configuration ------------------------------------------- */

/* New settings apply to observations requested after them; one already
 * pending keeps its window and its attempts. */
static void test_set_config_applies_to_new_observations_only(void **state)
{
	struct fixture *f = *state;
	const struct obs_engine_config next = {10, 1, 1000};
	const struct obs_engine_config zero = {0, 1, 1000};

	request(f, 0x1, "old", T0);
	assert_int_equal(obs_engine_set_config(f->e, &zero), -1);
	assert_int_equal(obs_engine_set_config(f->e, &next), 0);
	request(f, 0x2, "new", T0 + 1000);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + 1000 + 10000);
	obs_events_clear(&f->ev);

	/* The new one ends at its first wrong value (max_attempts 1) ... */
	assert_int_equal(frame(f, 0x2, WRONG_A, WRONG_LEN, T0 + 2000), 0x6E);
	assert_int_equal(f->ev.len, 1);
	assert_respond(&f->ev.ev[0], 0x2, 0x6E, OBS_OUTCOME_INVALID, "new", 1, 1000);
	obs_events_clear(&f->ev);
	/* ... the old one still takes three, and its deadline is 120 s. */
	assert_int_equal(frame(f, 0x1, WRONG_A, WRONG_LEN, T0 + 2000), 0x6E);
	assert_int_equal(frame(f, 0x1, WRONG_B, WRONG_LEN, T0 + 2000), 0x6E);
	assert_int_equal(f->ev.len, 0);
	assert_int_equal(obs_engine_next_deadline(f->e), T0 + WINDOW_MS);
	obs_engine_tick(f->e, T0 + 10000 + 1000, &f->ev);
	assert_int_equal(f->ev.len, 0);
	obs_engine_tick(f->e, T0 + WINDOW_MS, &f->ev);
	assert_int_equal(f->ev.len, 2);
	assert_respond(&f->ev.ev[0], 0x1, 0x6E, OBS_OUTCOME_EXPIRED_INVALID, "old", 2, WINDOW_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_match_responds_valid_at_once, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_late_frame_after_match_not_compared, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_frame_for_unknown_device_not_compared, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_length_mismatch_is_mismatch, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_distinct_wrong_values_counted_once_aba, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_tag_left_on_reader_is_one_attempt, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_one_wrong_then_right_is_valid, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_values_counted_over_all_channels, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_first_match_on_any_channel_decides, setup_default, teardown),
		cmocka_unit_test(test_max_attempts_one),
		cmocka_unit_test_setup_teardown(test_deadline_without_mismatch_fails, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_after_mismatch_invalid, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_frame_after_deadline_before_tick, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_equal_deadlines_end_in_request_order, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_next_deadline_follows_earliest, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_supersede_answers_old_and_starts_afresh, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_request_after_deadline_is_not_a_supersede, setup_default, teardown),
		cmocka_unit_test(test_overflow_at_max_pending),
		cmocka_unit_test(test_expired_make_room_before_overflow),
		cmocka_unit_test_setup_teardown(test_fail_all_radio_lost, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_fail_all_keeps_due_outcomes, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments_change_nothing, setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_events_clear_wipes_tokens, setup_default, teardown),
		cmocka_unit_test(test_outcome_names_distinct),
		cmocka_unit_test_setup_teardown(test_cancel_answers_fail_and_only_that_device,
						setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_after_deadline_keeps_its_outcome,
						setup_default, teardown),
		cmocka_unit_test_setup_teardown(test_list_earliest_deadline_first, setup_default,
						teardown),
		cmocka_unit_test_setup_teardown(test_thousand_pending, setup_default, teardown),
		cmocka_unit_test(test_random_walk_against_model),
		cmocka_unit_test_setup_teardown(test_set_config_applies_to_new_observations_only,
						setup_default, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
