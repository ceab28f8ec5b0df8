/* The confirmation frame codec (OBSERVATION-CHANNEL.md section 1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "radio.h"

static void fill_frame(struct srup_frame *f, uint64_t id, uint16_t n)
{
	memset(f, 0, sizeof(*f));
	f->device_id = id;
	f->value_len = n;
	for (uint16_t i = 0; i < n; i++)
		f->value[i] = (uint8_t)(i * 7 + 1);
}

static void round_trip(uint16_t n)
{
	struct srup_frame f, back;
	uint8_t buf[SRUP_FRAME_MAX_LEN];
	size_t len = 0;

	fill_frame(&f, 0x0102030405060708ULL, n);
	assert_int_equal(srup_frame_encode(&f, buf, sizeof(buf), &len), RADIO_OK);
	assert_int_equal(len, SRUP_FRAME_HEADER_LEN + n);
	/* The bytes, field by field. */
	assert_int_equal(buf[0], 0x01);
	for (int i = 0; i < 8; i++)
		assert_int_equal(buf[1 + i], i + 1);
	assert_int_equal(buf[9], n >> 8);
	assert_int_equal(buf[10], n & 0xff);
	assert_memory_equal(buf + 11, f.value, n);

	memset(&back, 0xAA, sizeof(back));
	assert_int_equal(srup_frame_parse(buf, len, &back), RADIO_OK);
	assert_int_equal(back.device_id, f.device_id);
	assert_int_equal(back.value_len, n);
	assert_memory_equal(back.value, f.value, n);
}

static void test_round_trip_n1(void **state)
{
	(void)state;
	round_trip(1);
}

static void test_round_trip_n256(void **state)
{
	(void)state;
	round_trip(256);
}

static void test_parse_known_bytes(void **state)
{
	static const uint8_t frame[] = {0x01, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32,
					0x10, 0x00, 0x03, 'a',  'b',  'c'};
	struct srup_frame f;

	(void)state;
	assert_int_equal(srup_frame_parse(frame, sizeof(frame), &f), RADIO_OK);
	assert_int_equal(f.device_id, 0xfedcba9876543210ULL);
	assert_int_equal(f.value_len, 3);
	assert_memory_equal(f.value, "abc", 3);
}

/* A valid header for a value of n bytes, then `len` bytes in all. */
static enum radio_err parse_with(uint8_t version, uint16_t n, size_t len)
{
	uint8_t buf[1024] = {0};
	struct srup_frame f;

	buf[0] = version;
	buf[8] = 0x2a;
	buf[9] = (uint8_t)(n >> 8);
	buf[10] = (uint8_t)n;
	return srup_frame_parse(buf, len, &f);
}

static void test_short_frames(void **state)
{
	static const uint8_t one = 0x01;
	struct srup_frame f;

	(void)state;
	assert_int_equal(srup_frame_parse(NULL, 0, &f), RADIO_E_FRAME_SHORT);
	assert_int_equal(srup_frame_parse(&one, 0, &f), RADIO_E_FRAME_SHORT);
	assert_int_equal(srup_frame_parse(&one, 1, &f), RADIO_E_FRAME_SHORT);
	for (size_t len = 0; len < SRUP_FRAME_HEADER_LEN; len++)
		assert_int_equal(parse_with(0x01, 1, len), RADIO_E_FRAME_SHORT);
}

static void test_bad_version(void **state)
{
	(void)state;
	assert_int_equal(parse_with(0x00, 1, 12), RADIO_E_FRAME_VERSION);
	assert_int_equal(parse_with(0x02, 1, 12), RADIO_E_FRAME_VERSION);
	assert_int_equal(parse_with(0xff, 1, 12), RADIO_E_FRAME_VERSION);
}

static void test_bad_value_length(void **state)
{
	(void)state;
	assert_int_equal(parse_with(0x01, 0, 11), RADIO_E_FRAME_LENGTH);
	assert_int_equal(parse_with(0x01, 257, 11 + 257), RADIO_E_FRAME_LENGTH);
	assert_int_equal(parse_with(0x01, 0xffff, 1024), RADIO_E_FRAME_LENGTH);
}

static void test_length_disagrees_with_size(void **state)
{
	(void)state;
	assert_int_equal(parse_with(0x01, 5, 11 + 4), RADIO_E_FRAME_SIZE);
	assert_int_equal(parse_with(0x01, 5, 11 + 6), RADIO_E_FRAME_SIZE);
	assert_int_equal(parse_with(0x01, 5, 11), RADIO_E_FRAME_SIZE);
	assert_int_equal(parse_with(0x01, 256, SRUP_FRAME_MAX_LEN + 1), RADIO_E_FRAME_SIZE);
	assert_int_equal(parse_with(0x01, 256, SRUP_FRAME_MAX_LEN - 1), RADIO_E_FRAME_SIZE);
	assert_int_equal(parse_with(0x01, 256, SRUP_FRAME_MAX_LEN), RADIO_OK);
}

static void test_encode_refuses_bad_input(void **state)
{
	struct srup_frame f;
	uint8_t buf[SRUP_FRAME_MAX_LEN];
	size_t len;

	(void)state;
	fill_frame(&f, 1, 0);
	assert_int_equal(srup_frame_encode(&f, buf, sizeof(buf), &len), RADIO_E_FRAME_LENGTH);
	fill_frame(&f, 1, 1);
	f.value_len = 257;
	assert_int_equal(srup_frame_encode(&f, buf, sizeof(buf), &len), RADIO_E_FRAME_LENGTH);
	fill_frame(&f, 1, 32);
	assert_int_equal(srup_frame_encode(&f, buf, 11 + 31, &len), RADIO_E_ARG);
	assert_int_equal(srup_frame_encode(&f, buf, 11 + 32, &len), RADIO_OK);
	assert_int_equal(len, 43);
	assert_int_equal(srup_frame_encode(NULL, buf, sizeof(buf), &len), RADIO_E_ARG);
	assert_int_equal(srup_frame_encode(&f, NULL, sizeof(buf), &len), RADIO_E_ARG);
	assert_int_equal(srup_frame_encode(&f, buf, sizeof(buf), NULL), RADIO_E_ARG);
	assert_int_equal(srup_frame_parse(buf, 43, NULL), RADIO_E_ARG);
}

static void test_wipe_clears_value(void **state)
{
	static const struct srup_frame zero;
	struct srup_frame f;

	(void)state;
	fill_frame(&f, 99, 256);
	srup_frame_wipe(&f);
	assert_memory_equal(&f, &zero, sizeof(f));
	srup_frame_wipe(NULL);
}

static void test_strerror_names_every_error(void **state)
{
	(void)state;
	for (int a = RADIO_OK; a < RADIO_E__COUNT; a++) {
		assert_non_null(radio_strerror(a));
		assert_string_not_equal(radio_strerror(a), "unknown radio error");
		for (int b = a + 1; b < RADIO_E__COUNT; b++)
			assert_string_not_equal(radio_strerror(a), radio_strerror(b));
	}
	assert_string_equal(radio_strerror(RADIO_E__COUNT), "unknown radio error");
	assert_string_equal(radio_strerror((enum radio_err)-1), "unknown radio error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_n1),
		cmocka_unit_test(test_round_trip_n256),
		cmocka_unit_test(test_parse_known_bytes),
		cmocka_unit_test(test_short_frames),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_value_length),
		cmocka_unit_test(test_length_disagrees_with_size),
		cmocka_unit_test(test_encode_refuses_bad_input),
		cmocka_unit_test(test_wipe_clears_value),
		cmocka_unit_test(test_strerror_names_every_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
