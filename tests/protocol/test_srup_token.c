/* uuid4 tokens and confirmation values: the exact text forms pySRUP peers
 * send (JOIN-FLOW.md section 3), and fresh on every call. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "srup.h"

static void test_uuid4_text_form(void **state)
{
	(void)state;
	for (int round = 0; round < 200; round++) {
		char t[SRUP_UUID_TEXT_LEN + 1];

		memset(t, 'X', sizeof(t));
		assert_int_equal(srup_uuid4_text(t), SRUP_OK);
		assert_int_equal(strlen(t), 36);
		for (int i = 0; i < 36; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23)
				assert_int_equal(t[i], '-');
			else
				assert_true(isxdigit((unsigned char)t[i]) && !isupper((unsigned char)t[i]));
		}
		assert_int_equal(t[14], '4');                 /* version 4 */
		assert_non_null(strchr("89ab", t[19]));      /* RFC 4122 variant */
	}
}

static void test_uuid4_hex_form(void **state)
{
	(void)state;
	for (int round = 0; round < 200; round++) {
		char v[SRUP_UUID_HEX_LEN + 1];

		assert_int_equal(srup_uuid4_hex(v), SRUP_OK);
		assert_int_equal(strlen(v), 32);
		for (int i = 0; i < 32; i++)
			assert_true(isxdigit((unsigned char)v[i]) && !isupper((unsigned char)v[i]));
		assert_int_equal(v[12], '4');
	}
}

static void test_uuid4_fresh(void **state)
{
	char a[SRUP_UUID_TEXT_LEN + 1], b[SRUP_UUID_TEXT_LEN + 1];
	char x[SRUP_UUID_HEX_LEN + 1], y[SRUP_UUID_HEX_LEN + 1];

	(void)state;
	assert_int_equal(srup_uuid4_text(a), SRUP_OK);
	assert_int_equal(srup_uuid4_text(b), SRUP_OK);
	assert_string_not_equal(a, b);
	assert_int_equal(srup_uuid4_hex(x), SRUP_OK);
	assert_int_equal(srup_uuid4_hex(y), SRUP_OK);
	assert_string_not_equal(x, y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid4_text_form),
		cmocka_unit_test(test_uuid4_hex_form),
		cmocka_unit_test(test_uuid4_fresh),
	};

	return cmocka_run_group_tests_name("srup_token", tests, NULL, NULL);
}
