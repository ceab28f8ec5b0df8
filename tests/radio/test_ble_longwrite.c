/* BLE long-write reassembly (radio/ble_longwrite.h): whole frames, frames
 * in chunks, and every way a chunk is refused, with what stays held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ble_longwrite.h"
#include "radio.h"

#define DEV_A "/org/bluez/hci0/dev_00_11_22_33_44_55"
#define DEV_B "/org/bluez/hci0/dev_66_77_88_99_AA_BB"

static uint8_t frame_bytes[SRUP_FRAME_MAX_LEN];

static size_t make_frame(uint16_t value_len)
{
	struct srup_frame f;
	size_t len = 0;

	memset(&f, 0, sizeof(f));
	f.device_id = 0xC1C2C3C4C5C6C7C8ull;
	f.value_len = value_len;
	for (uint16_t i = 0; i < value_len; i++)
		f.value[i] = (uint8_t)(0x30 + i % 10);
	assert_int_equal(srup_frame_encode(&f, frame_bytes, sizeof(frame_bytes), &len), RADIO_OK);
	return len;
}

/* One chunk of frame_bytes (or of data when given). */
static enum ble_longwrite_result put(struct ble_longwrite *lw, const uint8_t *data, size_t off,
				     size_t len, uint16_t mtu, const char *dev,
				     struct srup_frame *frame, char *why)
{
	struct ble_chunk c = {.data = (data ? data : frame_bytes) + off, .len = len,
			      .offset = (uint16_t)off, .has_mtu = mtu != 0, .mtu = mtu,
			      .device = dev};

	why[0] = '\0';
	return ble_longwrite_chunk(lw, &c, frame, why, 160);
}

static void assert_empty(const struct ble_longwrite *lw)
{
	static const uint8_t zero[SRUP_FRAME_MAX_LEN];

	assert_int_equal(lw->held_len, 0);
	assert_string_equal(lw->device, "");
	assert_memory_equal(lw->held, zero, sizeof(zero));
}

static void test_whole_frame_in_one_write(void **state)
{
	struct ble_longwrite lw = {0};
	struct srup_frame f;
	char why[160];
	size_t len = make_frame(32);

	(void)state;
	assert_int_equal(put(&lw, NULL, 0, len, 517, DEV_A, &f, why), BLE_LONGWRITE_COMPLETE);
	assert_int_equal(f.device_id, 0xC1C2C3C4C5C6C7C8ull);
	assert_int_equal(f.value_len, 32);
	assert_memory_equal(f.value, frame_bytes + 11, 32);
	assert_empty(&lw);
	srup_frame_wipe(&f);
}

/* The largest frame in full Prepare Write payloads of a 23-byte ATT MTU
 * (18 bytes each), as a peer without BlueZ's joining would send it. */
static void test_long_write_in_mtu_chunks(void **state)
{
	struct ble_longwrite lw = {0};
	struct srup_frame f;
	char why[160];
	size_t len = make_frame(256), off = 0;

	(void)state;
	while (len - off > 18) {
		assert_int_equal(put(&lw, NULL, off, 18, 23, DEV_A, &f, why), BLE_LONGWRITE_HELD);
		off += 18;
		assert_int_equal(lw.held_len, off);
	}
	assert_int_equal(put(&lw, NULL, off, len - off, 23, DEV_A, &f, why),
			 BLE_LONGWRITE_COMPLETE);
	assert_int_equal(f.value_len, 256);
	assert_memory_equal(f.value, frame_bytes + 11, 256);
	assert_empty(&lw);
}

/* Without the mtu option (a direct D-Bus caller) short chunks are held. */
static void test_chunks_without_mtu_are_held(void **state)
{
	struct ble_longwrite lw = {0};
	struct srup_frame f;
	char why[160];
	size_t len = make_frame(5);

	(void)state;
	assert_int_equal(put(&lw, NULL, 0, 11, 0, "", &f, why), BLE_LONGWRITE_HELD);
	assert_int_equal(put(&lw, NULL, 11, 2, 0, "", &f, why), BLE_LONGWRITE_HELD);
	assert_int_equal(put(&lw, NULL, 13, len - 13, 0, "", &f, why), BLE_LONGWRITE_COMPLETE);
	assert_int_equal(f.value_len, 5);
}

static void expect_refused(struct ble_longwrite *lw, const uint8_t *data, size_t off,
			   size_t len, uint16_t mtu, const char *dev, const char *needle)
{
	struct srup_frame f;
	char why[160];

	memset(&f, 0xAA, sizeof(f));
	assert_int_equal(put(lw, data, off, len, mtu, dev, &f, why), BLE_LONGWRITE_REFUSED);
	assert_non_null(strstr(why, needle));
	assert_empty(lw);
	assert_int_equal(f.value_len, 0);
	assert_int_equal(f.device_id, 0);
}

static void test_refusals(void **state)
{
	struct ble_longwrite lw = {0};
	struct srup_frame f;
	uint8_t bad[SRUP_FRAME_MAX_LEN + 1];
	char why[160];
	size_t len = make_frame(100);

	(void)state;
	/* A first chunk shorter than the header. */
	expect_refused(&lw, NULL, 0, 10, 0, DEV_A, "shorter than its 11-byte header");
	/* A wrong version, at once. */
	memcpy(bad, frame_bytes, len);
	bad[0] = 0x02;
	expect_refused(&lw, bad, 0, 1, 0, DEV_A, "version 0x02");
	/* Value length 0 and 257. */
	bad[0] = 0x01;
	bad[9] = 0x00;
	bad[10] = 0x00;
	expect_refused(&lw, bad, 0, 11, 0, DEV_A, "outside 1..256");
	bad[9] = 0x01;
	bad[10] = 0x01;
	expect_refused(&lw, bad, 0, 11, 0, DEV_A, "outside 1..256");
	/* More bytes than the header announces. */
	memcpy(bad, frame_bytes, len);
	expect_refused(&lw, bad, 0, len + 1, 0, DEV_A, "longer than its header announces");
	/* Over 267 bytes in all. */
	memset(bad, 0, sizeof(bad));
	expect_refused(&lw, bad, 0, sizeof(bad), 0, DEV_A, "over the 267-byte maximum");
	/* A chunk that does not continue the held bytes: gap, other device,
	 * nothing held at all. */
	assert_int_equal(put(&lw, NULL, 0, 20, 0, DEV_A, &f, why), BLE_LONGWRITE_HELD);
	expect_refused(&lw, NULL, 21, 5, 0, DEV_A, "does not continue the 20 bytes held");
	assert_int_equal(put(&lw, NULL, 0, 20, 0, DEV_A, &f, why), BLE_LONGWRITE_HELD);
	expect_refused(&lw, NULL, 20, 5, 0, DEV_B, "from that device");
	expect_refused(&lw, NULL, 20, 5, 0, DEV_A, "does not continue the 0 bytes held");
	/* Through BlueZ (mtu given), an incomplete chunk shorter than a full
	 * Prepare Write payload is the writer's whole, truncated frame. */
	expect_refused(&lw, NULL, 0, 50, 247, DEV_A, "frame truncated: 50 bytes held");
}

/* Offset 0 starts again: what was held from an abandoned write is gone. */
static void test_offset_zero_restarts(void **state)
{
	struct ble_longwrite lw = {0};
	struct srup_frame f;
	char why[160];
	size_t len = make_frame(40);

	(void)state;
	assert_int_equal(put(&lw, NULL, 0, 30, 0, DEV_A, &f, why), BLE_LONGWRITE_HELD);
	assert_int_equal(put(&lw, NULL, 0, 12, 0, DEV_B, &f, why), BLE_LONGWRITE_HELD);
	assert_int_equal(lw.held_len, 12);
	assert_string_equal(lw.device, DEV_B);
	assert_int_equal(put(&lw, NULL, 12, len - 12, 0, DEV_B, &f, why), BLE_LONGWRITE_COMPLETE);
	assert_int_equal(f.value_len, 40);
}

static void test_drop_wipes(void **state)
{
	struct ble_longwrite lw = {0};
	struct srup_frame f;
	char why[160];

	(void)state;
	make_frame(40);
	assert_int_equal(put(&lw, NULL, 0, 30, 0, DEV_A, &f, why), BLE_LONGWRITE_HELD);
	ble_longwrite_drop(&lw);
	assert_empty(&lw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_frame_in_one_write),
		cmocka_unit_test(test_long_write_in_mtu_chunks),
		cmocka_unit_test(test_chunks_without_mtu_are_held),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_offset_zero_restarts),
		cmocka_unit_test(test_drop_wipes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
