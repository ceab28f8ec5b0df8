/* INITIATE's url and digest as a receiver uses them (WIRE.md Q8): messages
 * built byte for byte as pySRUP builds them (each field sent with its C
 * terminator, length() + 1 bytes), as libSRUP's C++ API sends them (no
 * terminator), and every NUL that Q8 still refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srup.h"
#include "srup_msg_layout.h"

#define URL "https://updates.example.com/fw/v1.2.3.bin"
#define HEX "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/* HEX as bytes. */
static const uint8_t sha[32] = {
	0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65, 0x9a, 0x2f, 0xea, 0xa0, 0xc5, 0x5a, 0xd0, 0x15,
	0xa3, 0xbf, 0x4f, 0x1b, 0x2b, 0x0b, 0x82, 0x2c, 0xd1, 0x5d, 0x6c, 0x15, 0xb0, 0xf0, 0x0a, 0x08,
};

/* The wire bytes of an INITIATE (WIRE.md sections 1 and 3) with the url
 * and digest fields exactly as given, and a 256-byte signature field. */
static uint8_t *wire_initiate(const void *url, size_t url_len, const void *digest,
			      size_t digest_len, size_t *len)
{
	static const char token[] = "5e1f0c2d-3b4a-4978-8796-a5b4c3d2e1f0";
	size_t tlen = sizeof token - 1;
	size_t n = 20 + tlen + 2 + 256 + 2 + url_len + 2 + digest_len;
	uint8_t *b = calloc(1, n), *p = b;

	assert_non_null(b);
	*p++ = 0x05;
	*p++ = 0x01;
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(i + 1);         /* sequence ID, LE */
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(0x11 * (i + 1)); /* sender ID, LE */
	*p++ = (uint8_t)(tlen >> 8);
	*p++ = (uint8_t)tlen;
	memcpy(p, token, tlen);
	p += tlen;
	*p++ = 0x01; /* 256 */
	*p++ = 0x00;
	memset(p, 0x5a, 256);
	p += 256;
	*p++ = (uint8_t)(url_len >> 8);
	*p++ = (uint8_t)url_len;
	memcpy(p, url, url_len);
	p += url_len;
	*p++ = (uint8_t)(digest_len >> 8);
	*p++ = (uint8_t)digest_len;
	memcpy(p, digest, digest_len);
	p += digest_len;
	assert_int_equal((size_t)(p - b), n);
	*len = n;
	return b;
}

static struct srup_msg *decode_initiate(const void *url, size_t url_len, const void *digest,
					size_t digest_len)
{
	size_t len;
	uint8_t *wire = wire_initiate(url, url_len, digest, digest_len, &len);
	struct srup_msg *m = NULL;

	assert_int_equal(srup_msg_decode_as(wire, len, SRUP_TYPE_INITIATE, &m, NULL), SRUP_OK);
	assert_int_equal(m->url.len, url_len);
	assert_int_equal(m->digest.len, digest_len);
	free(wire);
	return m;
}

/* The url and digest fields decode to URL and sha. */
static void expect_update(const void *url, size_t url_len, const void *digest, size_t digest_len)
{
	struct srup_msg *m = decode_initiate(url, url_len, digest, digest_len);
	const char *u = NULL;
	size_t ulen = 0;
	uint8_t d[SRUP_INITIATE_DIGEST_LEN];

	assert_int_equal(srup_initiate_url(m, &u, &ulen), SRUP_OK);
	assert_int_equal(ulen, strlen(URL));
	assert_memory_equal(u, URL, ulen);
	assert_ptr_equal(u, (const char *)m->url.data);
	memset(d, 0xee, sizeof d);
	assert_int_equal(srup_initiate_digest(m, d), SRUP_OK);
	assert_memory_equal(d, sha, sizeof d);
	srup_msg_free(m);
}

static enum srup_err url_rc(const void *url, size_t url_len)
{
	struct srup_msg *m = decode_initiate(url, url_len, HEX, 64);
	const char *u = NULL;
	size_t ulen = 0;
	enum srup_err rc = srup_initiate_url(m, &u, &ulen);

	srup_msg_free(m);
	return rc;
}

static enum srup_err digest_rc(const void *digest, size_t digest_len, uint8_t out[32])
{
	struct srup_msg *m = decode_initiate(URL, strlen(URL), digest, digest_len);
	enum srup_err rc = srup_initiate_digest(m, out);

	srup_msg_free(m);
	return rc;
}

/* pySRUP: both fields carry length() + 1 bytes. */
static void test_both_terminated(void **state)
{
	(void)state;
	expect_update(URL, sizeof URL, HEX, sizeof HEX); /* sizeof: the terminator too */
}

static void test_url_terminated_alone(void **state)
{
	(void)state;
	expect_update(URL, sizeof URL, HEX, 64);
}

static void test_digest_terminated_alone(void **state)
{
	(void)state;
	expect_update(URL, strlen(URL), HEX, sizeof HEX);
}

/* libSRUP's C++ API as the caller gave the lengths: no terminator. */
static void test_neither_terminated(void **state)
{
	(void)state;
	expect_update(URL, strlen(URL), HEX, 64);
}

static void test_hex_digest_either_case(void **state)
{
	char upper[65];
	uint8_t d[32];

	(void)state;
	for (size_t i = 0; i < sizeof upper; i++)
		upper[i] = (char)(HEX[i] >= 'a' && HEX[i] <= 'f' ? HEX[i] - 'a' + 'A' : HEX[i]);
	assert_int_equal(digest_rc(upper, 65, d), SRUP_OK);
	assert_memory_equal(d, sha, 32);
	assert_int_equal(digest_rc(upper, 64, d), SRUP_OK);
	assert_memory_equal(d, sha, 32);
}

/* 32 raw bytes, and 33 bytes ending in 00 (a terminated raw digest). */
static void test_raw_digest_with_and_without_terminator(void **state)
{
	uint8_t field[33], d[32];

	(void)state;
	memcpy(field, sha, 32);
	field[32] = 0x00;
	assert_int_equal(digest_rc(field, 32, d), SRUP_OK);
	assert_memory_equal(d, sha, 32);
	memset(d, 0, sizeof d);
	assert_int_equal(digest_rc(field, 33, d), SRUP_OK);
	assert_memory_equal(d, sha, 32);
	/* 33 bytes whose last is not 00: neither form. */
	field[32] = 0x01;
	assert_int_equal(digest_rc(field, 33, d), SRUP_E_FIELD_VALUE);
}

/* A 32-byte raw digest whose last byte is 00 is taken as it is, and so is
 * one whose last two are 00 when a terminator follows. */
static void test_raw_digest_ending_in_00_kept(void **state)
{
	uint8_t field[34], d[32];

	(void)state;
	memcpy(field, sha, 31);
	field[31] = 0x00;
	field[32] = 0x00;
	field[33] = 0x00;
	memset(d, 0xee, sizeof d);
	assert_int_equal(digest_rc(field, 32, d), SRUP_OK);
	assert_memory_equal(d, field, 32);
	assert_int_equal(d[31], 0x00);
	memset(d, 0xee, sizeof d);
	assert_int_equal(digest_rc(field, 33, d), SRUP_OK);
	assert_memory_equal(d, field, 32);
	/* Two terminators are one too many. */
	assert_int_equal(digest_rc(field, 34, d), SRUP_E_FIELD_VALUE);
}

static void test_url_other_nul_refused(void **state)
{
	(void)state;
	assert_int_equal(url_rc(URL "\0", sizeof URL + 1), SRUP_E_FIELD_VALUE); /* two 00 */
	assert_int_equal(url_rc("https://a/\0b", 12), SRUP_E_FIELD_VALUE);    /* inside */
	assert_int_equal(url_rc("https://a/\0b", 13), SRUP_E_FIELD_VALUE);    /* inside, and 00 */
	assert_int_equal(url_rc("\0https://a/", 12), SRUP_E_FIELD_VALUE);     /* first byte */
	assert_int_equal(url_rc("", 1), SRUP_E_FIELD_VALUE);                  /* only 00 */
	assert_int_equal(url_rc("", 0), SRUP_E_FIELD_VALUE);                  /* empty */
}

static void test_digest_other_forms_refused(void **state)
{
	char field[67];
	uint8_t d[32];

	(void)state;
	memcpy(field, HEX, 64);
	field[64] = field[65] = field[66] = 0x00;
	assert_int_equal(digest_rc(field, 66, d), SRUP_E_FIELD_VALUE); /* two 00 */
	field[64] = 'f';
	assert_int_equal(digest_rc(field, 65, d), SRUP_E_FIELD_VALUE); /* 65 digits */
	field[64] = 0x00;
	field[10] = 'g';
	assert_int_equal(digest_rc(field, 65, d), SRUP_E_FIELD_VALUE); /* not hex */
	assert_int_equal(digest_rc(field, 64, d), SRUP_E_FIELD_VALUE);
	memcpy(field, HEX, 64);
	field[63] = 0x00;
	assert_int_equal(digest_rc(field, 64, d), SRUP_E_FIELD_VALUE); /* 63 digits and 00 */
	field[20] = 0x00;
	field[63] = HEX[63];
	assert_int_equal(digest_rc(field, 65, d), SRUP_E_FIELD_VALUE); /* a NUL inside */
	assert_int_equal(digest_rc(HEX, 63, d), SRUP_E_FIELD_VALUE);
	assert_int_equal(digest_rc("zz", 2, d), SRUP_E_FIELD_VALUE);
	assert_int_equal(digest_rc("", 0, d), SRUP_E_FIELD_VALUE);
	assert_int_equal(digest_rc("", 1, d), SRUP_E_FIELD_VALUE);
	assert_int_equal(digest_rc(sha, 31, d), SRUP_E_FIELD_VALUE);
}

static void test_arguments_and_type(void **state)
{
	struct srup_msg *m = decode_initiate(URL, sizeof URL, HEX, sizeof HEX);
	struct srup_msg *data = srup_msg_new(SRUP_TYPE_DATA);
	const char *u;
	size_t ulen;
	uint8_t d[32];

	(void)state;
	assert_int_equal(srup_initiate_url(NULL, &u, &ulen), SRUP_E_ARG);
	assert_int_equal(srup_initiate_url(m, NULL, &ulen), SRUP_E_ARG);
	assert_int_equal(srup_initiate_url(m, &u, NULL), SRUP_E_ARG);
	assert_int_equal(srup_initiate_digest(NULL, d), SRUP_E_ARG);
	assert_int_equal(srup_initiate_digest(m, NULL), SRUP_E_ARG);
	assert_int_equal(srup_initiate_url(data, &u, &ulen), SRUP_E_WRONG_TYPE);
	assert_int_equal(srup_initiate_digest(data, d), SRUP_E_WRONG_TYPE);
	assert_string_not_equal(srup_strerror(SRUP_E_FIELD_VALUE), "unknown error");
	srup_msg_free(data);
	srup_msg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_terminated),
		cmocka_unit_test(test_url_terminated_alone),
		cmocka_unit_test(test_digest_terminated_alone),
		cmocka_unit_test(test_neither_terminated),
		cmocka_unit_test(test_hex_digest_either_case),
		cmocka_unit_test(test_raw_digest_with_and_without_terminator),
		cmocka_unit_test(test_raw_digest_ending_in_00_kept),
		cmocka_unit_test(test_url_other_nul_refused),
		cmocka_unit_test(test_digest_other_forms_refused),
		cmocka_unit_test(test_arguments_and_type),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
