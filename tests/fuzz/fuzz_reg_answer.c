/* libFuzzer target: the key service's answers as srup-register reads them
 * (registration/reg_answer.c). The first byte picks the parser (status,
 * register, validate, access, the broker value, bare base64), the rest is
 * the body as it came off the network.
 *
 * Checked: a refusal names what was wrong; what is accepted holds what the
 * parser promises (an ID text of the service's form, an RSA key of
 * 2048..4096 bits, a signature of 256..512 bytes, certificates). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reg_answer.h"

static void check_refusal(enum reg_err rc, const char *why)
{
	if (rc == REG_E_NOMEM)
		return;
	if (rc != REG_E_ANSWER || !why[0] || strnlen(why, REG_WHY_MAX) >= REG_WHY_MAX)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[REG_WHY_MAX];
	const char *body;
	size_t len;
	enum reg_err rc;

	if (size < 1)
		return 0;
	body = (const char *)data + 1;
	len = size - 1;
	why[0] = '\0';
	switch (data[0] % 6) {
	case 0: {
		struct reg_status s;

		rc = reg_parse_status(body, len, &s, why);
		if (rc == REG_OK && !reg_id_text_valid(s.identity))
			__builtin_trap();
		break;
	}
	case 1: {
		struct reg_register r;

		rc = reg_parse_register(body, len, &r, why);
		if (rc == REG_OK) {
			int bits = EVP_PKEY_get_bits(r.server_key);

			if (!EVP_PKEY_is_a(r.server_key, "RSA") || bits < 2048 || bits > 4096 ||
			    strlen(r.broker) > REG_BROKER_MAX ||
			    (r.has_default_c2 && !reg_id_text_valid(r.default_c2)))
				__builtin_trap();
			reg_register_clear(&r);
		}
		break;
	}
	case 2: {
		struct reg_validate v;

		rc = reg_parse_validate(body, len, &v, why);
		if (rc == REG_OK) {
			if (!reg_id_text_valid(v.identity) || v.signature_len < 256 ||
			    v.signature_len > 512)
				__builtin_trap();
			reg_validate_clear(&v);
		}
		break;
	}
	case 3: {
		struct reg_access a;

		rc = reg_parse_access(body, len, &a, why);
		if (rc == REG_OK) {
			if (!a.certificate || !a.ca_certificate)
				__builtin_trap();
			reg_access_clear(&a);
		}
		break;
	}
	case 4: {
		/* The broker value is a C string in the answer. */
		char *text = strndup(body, len > 400 ? 400 : len), out[300];

		if (!text)
			return 0;
		rc = reg_broker_url(text, out, sizeof(out), why);
		if (rc == REG_OK && strncmp(out, "mqtts://", 8) != 0)
			__builtin_trap();
		free(text);
		break;
	}
	default: {
		unsigned char *out;
		size_t out_len;

		rc = reg_base64_decode(body, len, &out, &out_len);
		if (rc == REG_OK) {
			char *again = reg_base64_encode(out, out_len);

			/* Decoding then encoding gives the input without line breaks. */
			if (again) {
				size_t j = 0;

				for (size_t i = 0; i < len; i++)
					if (body[i] != '\n' && body[i] != '\r' &&
					    (j >= strlen(again) || body[i] != again[j++]))
						__builtin_trap();
				if (j != strlen(again))
					__builtin_trap();
				free(again);
			}
			free(out);
		}
		return 0;
	}
	}
	if (rc != REG_OK)
		check_refusal(rc, why);
	return 0;
}
