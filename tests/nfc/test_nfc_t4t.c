/* NFC Forum Type 4 Tag pieces (radio/nfc_t4t.h): the capability
 * container, the NDEF confirmation record, the tag's APDU responder, and
 * the reader's sequence run against that responder, intact and with faults
 * injected at every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nfc_t4t.h"
#include "radio.h"

/* ---- Helpers ------------------------------------------------------------ */

static size_t make_frame(uint8_t *out, uint64_t id, size_t value_len, uint8_t seed)
{
	struct srup_frame f;
	size_t len = 0;

	memset(&f, 0, sizeof(f));
	f.device_id = id;
	f.value_len = (uint16_t)value_len;
	for (size_t i = 0; i < value_len; i++)
		f.value[i] = (uint8_t)(seed + i * 7);
	assert_int_equal(srup_frame_encode(&f, out, SRUP_FRAME_MAX_LEN, &len), RADIO_OK);
	return len;
}

static const uint8_t good_cc[NFC_T4T_CC_LEN] = {
	0x00, 0x0F, 0x20, 0x00, 0xFF, 0x00, 0xFF, 0x04, 0x06, 0xE1, 0x04, 0x04, 0x00, 0x00, 0xFF,
};

/* The reader's peer: the tag responder, with one fault at one step. */
enum fault {
	FAULT_NONE,
	FAULT_SW,         /* answer the step's APDU with status word 6A82 */
	FAULT_TIMEOUT,    /* the tag leaves at the step */
	FAULT_IO,         /* the reader fails at the step */
	FAULT_LONG,       /* answer more data than Le asked */
	FAULT_NO_SW,      /* answer one byte */
};

struct fake_link {
	struct nfc_t4t_tag tag;
	unsigned exchanges;
	unsigned fault_at;   /* 1-based exchange number */
	enum fault fault;
	unsigned reads;      /* READ BINARY commands seen */
};

static enum radio_err fake_transceive(void *user, const uint8_t *capdu, size_t clen,
				      uint8_t *rapdu, size_t rcap, size_t *rlen, char *why,
				      size_t why_len)
{
	struct fake_link *l = user;

	l->exchanges++;
	if (clen >= 2 && capdu[1] == 0xB0)
		l->reads++;
	if (l->exchanges == l->fault_at) {
		switch (l->fault) {
		case FAULT_NONE:
			break;
		case FAULT_SW:
			rapdu[0] = 0x6A;
			rapdu[1] = 0x82;
			*rlen = 2;
			return RADIO_OK;
		case FAULT_TIMEOUT:
			snprintf(why, why_len, "tag gone");
			return RADIO_E_TIMEOUT;
		case FAULT_IO:
			snprintf(why, why_len, "reader gone");
			return RADIO_E_IO;
		case FAULT_LONG:
			*rlen = nfc_t4t_tag_respond(&l->tag, capdu, clen, rapdu, rcap);
			if (*rlen + 1 <= rcap) {
				memmove(rapdu + 1, rapdu, *rlen);
				(*rlen)++;
			}
			return RADIO_OK;
		case FAULT_NO_SW:
			rapdu[0] = 0x90;
			*rlen = 1;
			return RADIO_OK;
		}
	}
	*rlen = nfc_t4t_tag_respond(&l->tag, capdu, clen, rapdu, rcap);
	return RADIO_OK;
}

static size_t apdu(uint8_t *out, const char *hex)
{
	size_t n = 0;
	unsigned v;

	while (hex[0] && hex[1] && sscanf(hex, "%2x", &v) == 1) {
		out[n++] = (uint8_t)v;
		hex += 2;
	}
	return n;
}

static uint16_t respond_sw(struct nfc_t4t_tag *tag, const char *hex, size_t *data_len)
{
	uint8_t c[300], r[NFC_T4T_RAPDU_MAX];
	size_t clen = apdu(c, hex);
	size_t rlen = nfc_t4t_tag_respond(tag, c, clen, r, sizeof(r));

	assert_true(rlen >= 2);
	if (data_len)
		*data_len = rlen - 2;
	return (uint16_t)(r[rlen - 2] << 8 | r[rlen - 1]);
}

/* ---- Capability container ------------------------------------------------ */

static void test_cc_valid_and_round_trip(void **state)
{
	struct nfc_t4t_cc cc;
	uint8_t again[NFC_T4T_CC_LEN];
	char why[160] = "";

	(void)state;
	assert_int_equal(nfc_t4t_cc_parse(good_cc, sizeof(good_cc), &cc, why, sizeof(why)),
			 RADIO_OK);
	assert_int_equal(cc.mle, 0xFF);
	assert_int_equal(cc.ndef_file_id, 0xE104);
	assert_int_equal(cc.ndef_max_size, 0x0400);
	nfc_t4t_cc_encode(&cc, again);
	assert_memory_equal(again, good_cc, sizeof(good_cc));
}

static void expect_cc_error(size_t off, uint8_t value, const char *needle)
{
	uint8_t cc[NFC_T4T_CC_LEN];
	struct nfc_t4t_cc out;
	char why[160] = "";

	memcpy(cc, good_cc, sizeof(cc));
	cc[off] = value;
	assert_int_equal(nfc_t4t_cc_parse(cc, sizeof(cc), &out, why, sizeof(why)),
			 RADIO_E_PROTOCOL);
	if (!strstr(why, needle))
		fail_msg("CC byte %zu = 0x%02x: '%s' does not name '%s'", off, value, why, needle);
}

static void test_cc_malformed_fields(void **state)
{
	struct nfc_t4t_cc out;
	char why[160] = "";

	(void)state;
	assert_int_equal(nfc_t4t_cc_parse(good_cc, 14, &out, why, sizeof(why)),
			 RADIO_E_PROTOCOL);
	assert_non_null(strstr(why, "14 bytes"));
	expect_cc_error(1, 0x0E, "CCLEN");
	expect_cc_error(2, 0x10, "mapping version 1.0");
	expect_cc_error(4, 0x0E, "MLe");
	expect_cc_error(6, 0x00, "MLc");
	expect_cc_error(7, 0x05, "T=0x05");
	expect_cc_error(8, 0x08, "L=0x08");
	expect_cc_error(10, 0x03, "file ID 0xe103");
	expect_cc_error(11, 0x00, "file size");
	expect_cc_error(13, 0x80, "read access 0x80");
}

/* ---- NDEF ------------------------------------------------------------------ */

static void test_ndef_round_trip_short_and_long(void **state)
{
	static const size_t sizes[] = {1, 200, 244, 245, 256};
	uint8_t frame[SRUP_FRAME_MAX_LEN], msg[600];

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t flen = make_frame(frame, 0x1122334455667788ull, sizes[i], (uint8_t)i);
		const uint8_t *payload = NULL;
		size_t mlen = 0, plen = 0;
		char why[160] = "";

		assert_int_equal(nfc_ndef_encode_confirmation(frame, flen, msg, sizeof(msg), &mlen),
				 RADIO_OK);
		/* Short record up to 255 payload bytes, long record (SR clear) past. */
		assert_int_equal(!!(msg[0] & 0x10), flen <= 255);
		assert_int_equal(nfc_ndef_find_confirmation(msg, mlen, &payload, &plen, why,
							    sizeof(why)),
				 RADIO_OK);
		assert_int_equal(plen, flen);
		assert_memory_equal(payload, frame, flen);
	}
}

static void expect_ndef_error(const uint8_t *msg, size_t len, const char *needle)
{
	const uint8_t *payload = NULL;
	size_t plen = 0;
	char why[200] = "";

	assert_int_equal(nfc_ndef_find_confirmation(msg, len, &payload, &plen, why, sizeof(why)),
			 RADIO_E_PROTOCOL);
	if (!strstr(why, needle))
		fail_msg("'%s' does not name '%s'", why, needle);
}

/* A record: header byte, type, id, payload (short form unless long). */
static size_t record(uint8_t *out, uint8_t flags, const char *type, const char *id,
		     const uint8_t *payload, size_t plen, int long_form)
{
	size_t n = 0, tl = strlen(type), il = id ? strlen(id) : 0;

	out[n++] = (uint8_t)(flags | (long_form ? 0 : 0x10) | (id ? 0x08 : 0));
	out[n++] = (uint8_t)tl;
	if (long_form) {
		out[n++] = (uint8_t)(plen >> 24);
		out[n++] = (uint8_t)(plen >> 16);
		out[n++] = (uint8_t)(plen >> 8);
		out[n++] = (uint8_t)plen;
	} else {
		out[n++] = (uint8_t)plen;
	}
	if (id)
		out[n++] = (uint8_t)il;
	memcpy(out + n, type, tl);
	n += tl;
	if (id) {
		memcpy(out + n, id, il);
		n += il;
	}
	memcpy(out + n, payload, plen);
	return n + plen;
}

static void test_ndef_other_records_and_ids(void **state)
{
	static const uint8_t uri[] = {0x04, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g'};
	uint8_t frame[SRUP_FRAME_MAX_LEN], msg[800];
	size_t flen = make_frame(frame, 42, 16, 3);
	const uint8_t *payload = NULL;
	size_t n = 0, plen = 0;
	char why[160] = "";

	(void)state;
	/* A URI record with an ID, then ours in long form with an ID and in
	 * another letter case: found, IDs skipped. */
	n += record(msg + n, 0x80 | 0x01, "U", "u1", uri, sizeof(uri), 0);
	n += record(msg + n, 0x40 | 0x02, "Application/VND.srup.Confirmation", "#c", frame, flen, 1);
	assert_int_equal(nfc_ndef_find_confirmation(msg, n, &payload, &plen, why, sizeof(why)),
			 RADIO_OK);
	assert_int_equal(plen, flen);
	assert_memory_equal(payload, frame, flen);

	/* Only a URI record. */
	n = record(msg, 0x80 | 0x40 | 0x01, "U", NULL, uri, sizeof(uri), 0);
	expect_ndef_error(msg, n, "holds no application/vnd.srup.confirmation record");

	/* Our type with another TNF (external type) is not ours. */
	n = record(msg, 0x80 | 0x40 | 0x04, NFC_T4T_MIME, NULL, frame, flen, 0);
	expect_ndef_error(msg, n, "holds no");
}

static void test_ndef_malformed(void **state)
{
	uint8_t frame[SRUP_FRAME_MAX_LEN], msg[800], bad[800];
	size_t flen = make_frame(frame, 7, 20, 9);
	size_t n;

	(void)state;
	n = record(msg, 0x80 | 0x40 | 0x02, NFC_T4T_MIME, NULL, frame, flen, 0);

	expect_ndef_error(msg, 0, "empty");
	memcpy(bad, msg, n);
	bad[0] |= 0x20;
	expect_ndef_error(bad, n, "chunked");
	memcpy(bad, msg, n);
	bad[0] &= (uint8_t)~0x80;
	expect_ndef_error(bad, n, "MB");
	memcpy(bad, msg, n);
	bad[0] &= (uint8_t)~0x40;
	expect_ndef_error(bad, n, "without a record marked ME");
	memcpy(bad, msg, n);
	bad[n] = 0x00;
	expect_ndef_error(bad, n + 1, "1 bytes after its last record");
	expect_ndef_error(msg, n - 1, "run past the end");
	expect_ndef_error(msg, 2, "header runs past the end");
	memcpy(bad, msg, n);
	bad[0] = (uint8_t)((bad[0] & ~0x07) | 0x06);
	expect_ndef_error(bad, n, "TNF 0x06");
	memcpy(bad, msg, n);
	bad[0] = (uint8_t)((bad[0] & ~0x07) | 0x07);
	expect_ndef_error(bad, n, "TNF 0x07");

	/* A long record claiming 4 GiB: rejected on the length, nothing read. */
	n = record(bad, 0x80 | 0x40 | 0x02, NFC_T4T_MIME, NULL, frame, flen, 1);
	bad[2] = bad[3] = bad[4] = bad[5] = 0xFF;
	expect_ndef_error(bad, n, "4294967295 bytes) run past the end");

	/* MB inside the message. */
	n = record(bad, 0x80 | 0x01, "U", NULL, frame, 3, 0);
	n += record(bad + n, 0x80 | 0x40 | 0x02, NFC_T4T_MIME, NULL, frame, flen, 0);
	expect_ndef_error(bad, n, "MB set inside");

	/* An empty record carrying a payload. */
	n = record(bad, 0x80 | 0x40 | 0x00, "", NULL, frame, 2, 0);
	expect_ndef_error(bad, n, "empty (TNF 0)");
}

/* ---- Tag responder ---------------------------------------------------------- */

static void test_tag_answers(void **state)
{
	struct nfc_t4t_tag tag;
	uint8_t frame[SRUP_FRAME_MAX_LEN];
	size_t flen = make_frame(frame, 99, 32, 1), dlen = 0;

	(void)state;
	assert_int_equal(nfc_t4t_tag_init(&tag, frame, flen), RADIO_OK);
	/* Before the application is selected no file is found. */
	assert_int_equal(respond_sw(&tag, "00A4000C02E103", NULL), 0x6A82);
	assert_int_equal(respond_sw(&tag, "00B0000002", NULL), 0x6986);
	assert_int_equal(respond_sw(&tag, "00A4040007D276000085010200", NULL), 0x6A82);
	assert_int_equal(respond_sw(&tag, "00A4040007D276000085010100", NULL), 0x9000);
	assert_int_equal(respond_sw(&tag, "00A4000C02E105", NULL), 0x6A82);
	assert_int_equal(respond_sw(&tag, "00A4000C03E10300", NULL), 0x6700);
	assert_int_equal(respond_sw(&tag, "00CA000000", NULL), 0x6D00);
	assert_int_equal(respond_sw(&tag, "00D6000001AA", NULL), 0x6D00);
	assert_int_equal(respond_sw(&tag, "80B0000002", NULL), 0x6E00);
	assert_int_equal(respond_sw(&tag, "00B0", NULL), 0x6700);
	assert_int_equal(respond_sw(&tag, "00A4000C05E103", NULL), 0x6700);
	assert_int_equal(respond_sw(&tag, "00A4000C02E103", NULL), 0x9000);
	assert_int_equal(respond_sw(&tag, "00B000000F", &dlen), 0x9000);
	assert_int_equal(dlen, 15);
	assert_int_equal(respond_sw(&tag, "00B0001001", NULL), 0x6B00);
	assert_int_equal(respond_sw(&tag, "00A4000C02E104", NULL), 0x9000);
	assert_false(nfc_t4t_tag_read_complete(&tag));
	assert_int_equal(respond_sw(&tag, "00B0000002", &dlen), 0x9000);
	assert_int_equal(dlen, 2);
	/* Le 0 means 256, capped at the tag's MLe and the file's end. */
	assert_int_equal(respond_sw(&tag, "00B0000200", &dlen), 0x9000);
	assert_int_equal(dlen, tag.file_len - 2);
	assert_true(nfc_t4t_tag_read_complete(&tag));
	nfc_t4t_tag_wipe(&tag);
	assert_int_equal(tag.file_len, 0);
}

/* ---- Reader against the tag ------------------------------------------------- */

static void read_and_check(size_t value_len, uint16_t mle, unsigned *reads_out)
{
	struct fake_link link;
	uint8_t frame[SRUP_FRAME_MAX_LEN], msg[NFC_T4T_MESSAGE_MAX];
	size_t flen = make_frame(frame, 0xA5A5A5A5A5A5A5A5ull, value_len, 0x31);
	const uint8_t *payload = NULL;
	size_t mlen = 0, plen = 0;
	struct srup_frame parsed;
	char why[200] = "";

	memset(&link, 0, sizeof(link));
	assert_int_equal(nfc_t4t_tag_init(&link.tag, frame, flen), RADIO_OK);
	if (mle) {
		link.tag.mle = mle;
		link.tag.cc[3] = (uint8_t)(mle >> 8);
		link.tag.cc[4] = (uint8_t)mle;
	}
	assert_int_equal(nfc_t4t_read_ndef(fake_transceive, &link, msg, sizeof(msg), &mlen, why,
					   sizeof(why)),
			 RADIO_OK);
	assert_true(nfc_t4t_tag_read_complete(&link.tag));
	assert_int_equal(nfc_ndef_find_confirmation(msg, mlen, &payload, &plen, why, sizeof(why)),
			 RADIO_OK);
	assert_int_equal(srup_frame_parse(payload, plen, &parsed), RADIO_OK);
	assert_int_equal(parsed.value_len, value_len);
	assert_memory_equal(payload, frame, flen);
	if (reads_out)
		*reads_out = link.reads;
}

static void test_reader_reads_every_size(void **state)
{
	unsigned reads = 0;

	(void)state;
	read_and_check(1, 0, NULL);
	read_and_check(100, 0, NULL);
	read_and_check(256, 0, &reads);
	/* 267-byte frame in a long record: 306-byte message, MLe 255: CC,
	 * NLEN and two chunks. */
	assert_int_equal(reads, 4);
	/* MLe 15: the message comes in 15-byte chunks. */
	read_and_check(256, 15, &reads);
	assert_int_equal(reads, 2 + (306 + 14) / 15);
}

static void expect_reader_fault(unsigned at, enum fault fault, enum radio_err want,
				const char *needle)
{
	struct fake_link link;
	uint8_t frame[SRUP_FRAME_MAX_LEN], msg[NFC_T4T_MESSAGE_MAX];
	size_t flen = make_frame(frame, 5, 40, 2), mlen = 0;
	char why[200] = "";

	memset(&link, 0, sizeof(link));
	assert_int_equal(nfc_t4t_tag_init(&link.tag, frame, flen), RADIO_OK);
	link.fault_at = at;
	link.fault = fault;
	assert_int_equal(nfc_t4t_read_ndef(fake_transceive, &link, msg, sizeof(msg), &mlen, why,
					   sizeof(why)),
			 want);
	if (!strstr(why, needle))
		fail_msg("fault %d at exchange %u: '%s' does not name '%s'", fault, at, why, needle);
}

static void test_reader_faults_at_each_step(void **state)
{
	static const char *const steps[] = {
		"SELECT NDEF application", "SELECT capability container",
		"READ BINARY capability container", "SELECT NDEF file", "READ BINARY NLEN",
		"READ BINARY NDEF at offset 2",
	};

	(void)state;
	for (unsigned i = 0; i < 6; i++) {
		char sw[96];

		snprintf(sw, sizeof(sw), "%s: status word 6A82", steps[i]);
		expect_reader_fault(i + 1, FAULT_SW, RADIO_E_PROTOCOL, sw);
		expect_reader_fault(i + 1, FAULT_TIMEOUT, RADIO_E_TIMEOUT, "tag gone");
		expect_reader_fault(i + 1, FAULT_IO, RADIO_E_IO, "reader gone");
		expect_reader_fault(i + 1, FAULT_NO_SW, RADIO_E_PROTOCOL, "no status word");
	}
	expect_reader_fault(5, FAULT_LONG, RADIO_E_PROTOCOL, "returned 3 bytes, not 2");
	expect_reader_fault(6, FAULT_LONG, RADIO_E_PROTOCOL, "for Le");
}

static void test_reader_bounds_nlen(void **state)
{
	struct fake_link link;
	uint8_t frame[SRUP_FRAME_MAX_LEN], msg[64];
	size_t flen = make_frame(frame, 5, 100, 2), mlen = 0;
	char why[200] = "";

	(void)state;
	memset(&link, 0, sizeof(link));
	assert_int_equal(nfc_t4t_tag_init(&link.tag, frame, flen), RADIO_OK);
	/* The message does not fit the caller's buffer. */
	assert_int_equal(nfc_t4t_read_ndef(fake_transceive, &link, msg, sizeof(msg), &mlen, why,
					   sizeof(why)),
			 RADIO_E_PROTOCOL);
	assert_non_null(strstr(why, "over the 64 bytes"));

	/* NLEN 0. */
	memset(&link, 0, sizeof(link));
	assert_int_equal(nfc_t4t_tag_init(&link.tag, frame, flen), RADIO_OK);
	link.tag.file[0] = link.tag.file[1] = 0;
	assert_int_equal(nfc_t4t_read_ndef(fake_transceive, &link, msg, sizeof(msg), &mlen, why,
					   sizeof(why)),
			 RADIO_E_PROTOCOL);
	assert_non_null(strstr(why, "NLEN 0"));

	/* NLEN past the file size the CC declares. */
	memset(&link, 0, sizeof(link));
	assert_int_equal(nfc_t4t_tag_init(&link.tag, frame, flen), RADIO_OK);
	link.tag.file[0] = 0x7F;
	assert_int_equal(nfc_t4t_read_ndef(fake_transceive, &link, msg, sizeof(msg), &mlen, why,
					   sizeof(why)),
			 RADIO_E_PROTOCOL);
	assert_non_null(strstr(why, "does not fit the NDEF file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cc_valid_and_round_trip),
		cmocka_unit_test(test_cc_malformed_fields),
		cmocka_unit_test(test_ndef_round_trip_short_and_long),
		cmocka_unit_test(test_ndef_other_records_and_ids),
		cmocka_unit_test(test_ndef_malformed),
		cmocka_unit_test(test_tag_answers),
		cmocka_unit_test(test_reader_reads_every_size),
		cmocka_unit_test(test_reader_faults_at_each_step),
		cmocka_unit_test(test_reader_bounds_nlen),
	};

	return cmocka_run_group_tests_name("nfc_t4t", tests, NULL, NULL);
}
