/* Unit tests of registration/reg_answer.c: the broker value's forms, the
 * service's ID text, base64 with and without line breaks, and what each
 * answer parser refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reg_answer.h"

static void broker_is(const char *in, const char *want)
{
	char out[300], why[REG_WHY_MAX] = "";

	assert_int_equal(reg_broker_url(in, out, sizeof(out), why), REG_OK);
	assert_string_equal(out, want);
}

static void broker_refused(const char *in)
{
	char out[300], why[REG_WHY_MAX] = "";

	assert_int_equal(reg_broker_url(in, out, sizeof(out), why), REG_E_ANSWER);
	assert_true(why[0] != '\0');
}

static void test_broker_forms(void **state)
{
	(void)state;
	broker_is("mqtt://broker.example", "mqtts://broker.example:8883");
	broker_is("mqtt://broker.example/", "mqtts://broker.example:8883");
	broker_is("mqtt://10.0.0.7:1884", "mqtts://10.0.0.7:1884");
	broker_is("mqtts://b.example:8884", "mqtts://b.example:8884");
	broker_is("mqtt://[::1]", "mqtts://[::1]:8883");
	broker_is("mqtt://[fe80::1]:9000", "mqtts://[fe80::1]:9000");
	broker_refused("tcp://b.example:1883");
	broker_refused("b.example");
	broker_refused("mqtt://");
	broker_refused("mqtt://b.example:0");
	broker_refused("mqtt://b.example:65536");
	broker_refused("mqtt://b.example:");
	broker_refused("mqtt://b.example x");
	broker_refused("mqtt://b.example\n[mqtt]");  /* it goes into an INI file */
	broker_refused("mqtt://b.example/path");
	broker_refused("mqtt://[::1");
}

static void test_id_text(void **state)
{
	(void)state;
	assert_true(reg_id_text_valid("05"));
	assert_true(reg_id_text_valid("197405d43e4e2d"));
	assert_true(reg_id_text_valid("ffffffffffffffff"));
	assert_false(reg_id_text_valid("5"));
	assert_false(reg_id_text_valid("005"));
	assert_false(reg_id_text_valid("00197405d43e4e2d"));
	assert_false(reg_id_text_valid("ABCD"));
	assert_false(reg_id_text_valid("1ffffffffffffffff"));
	assert_false(reg_id_text_valid(""));
}

static void decodes(const char *text, const char *want)
{
	unsigned char *out;
	size_t len;

	assert_int_equal(reg_base64_decode(text, strlen(text), &out, &len), REG_OK);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	free(out);
}

static void refused(const char *text)
{
	unsigned char *out = (unsigned char *)"x";
	size_t len = 1;

	assert_int_equal(reg_base64_decode(text, strlen(text), &out, &len), REG_E_ANSWER);
	assert_null(out);
}

static void test_base64(void **state)
{
	(void)state;
	decodes("YWJj", "abc");
	decodes("YWI=", "ab");
	decodes("YQ==", "a");
	decodes("YWJj\nZGVm\n", "abcdef");
	decodes("YWJj\r\nZA==\n", "abcd");
	refused("");
	refused("YWJ");
	refused("YQ=");
	refused("Y===");
	refused("YQ==YWJj");
	refused("YW!j");
	refused("YW j");
	refused("YR==");  /* stray bits */
	char *enc = reg_base64_encode((const unsigned char *)"abcd", 4);
	assert_string_equal(enc, "YWJjZA==");
	free(enc);
}

static void test_answers_refused(void **state)
{
	(void)state;
	char why[REG_WHY_MAX];
	struct reg_status st;
	struct reg_register rg;
	struct reg_validate v;
	struct reg_access a;
	char big[REG_BODY_MAX + 2];

	memset(big, ' ', sizeof(big));
	assert_int_equal(reg_parse_status(big, sizeof(big), &st, why), REG_E_ANSWER);
	assert_non_null(strstr(why, "more than"));
	assert_int_equal(reg_parse_status("", 0, &st, why), REG_E_ANSWER);
	assert_int_equal(reg_parse_status("{\"active\":true", 14, &st, why), REG_E_ANSWER);
	assert_non_null(strstr(why, "not JSON"));
	const char *ok = "{\"active\": true, \"identity\": \"5e17ed0c2\"}trailing";
	/* The length bounds the parse: the same bytes without the tail pass. */
	assert_int_equal(reg_parse_status(ok, strlen(ok) - 8, &st, why), REG_OK);
	assert_true(st.active);
	assert_string_equal(st.identity, "5e17ed0c2");
	const char *no_key = "{\"broker\": \"mqtt://b\"}";
	assert_int_equal(reg_parse_register(no_key, strlen(no_key), &rg, why), REG_E_ANSWER);
	assert_non_null(strstr(why, "\"key\""));
	assert_null(rg.server_key);
	const char *short_sig = "{\"identity\": \"5e17ed0c2\", \"signature\": \"YWJj\"}";
	assert_int_equal(reg_parse_validate(short_sig, strlen(short_sig), &v, why), REG_E_ANSWER);
	assert_non_null(strstr(why, "not an RSA signature"));
	const char *no_pem = "{\"certificate\": \"YWJj\", \"CA_certificate\": \"YWJj\"}";
	assert_int_equal(reg_parse_access(no_pem, strlen(no_pem), &a, why), REG_E_ANSWER);
	assert_non_null(strstr(why, "not a PEM certificate"));
	assert_null(a.certificate);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broker_forms),
		cmocka_unit_test(test_id_text),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_answers_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
