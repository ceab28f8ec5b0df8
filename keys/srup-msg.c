/* srup-msg: decode a SRUP message to JSON, or encode one from JSON
 * (SRUP-MSG.md; the JSON names and exit statuses are a stable interface). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "srup.h"
#include "srup_hex.h"
#include "srup_msg_layout.h"
#include "srup_json.h"
#include "srup_keys.h"
#include "srup_keys_lenient.h"

#ifndef SRUP_MSG_VERSION
#define SRUP_MSG_VERSION "0"
#endif

enum exit_status {
	EXIT_SUCCESS_ = 0,
	EXIT_REJECTED = 1,  /* signature did not verify, or blob did not decrypt */
	EXIT_MALFORMED = 2, /* the input is not a well-formed message / JSON */
	EXIT_USAGE = 3,     /* usage, file or key error */
};

/* The largest SRUP message is well under 1 MiB (a handful of u16-length
 * fields); hex text with line breaks is under three times that. */
#define INPUT_MAX (4u * 1024u * 1024u)

static const char usage_text[] =
	"Usage: srup-msg decode [--verify PUBKEY.pem] [--decrypt PRIVKEY.pem] [--hex] [FILE|-]\n"
	"       srup-msg encode [--sign PRIVKEY.pem] [--encrypt-for PUBKEY.pem] [--hex] "
	"[JSON-FILE|-]\n"
	"       srup-msg --help | --version\n"
	"\n"
	"decode  reads one binary SRUP message (hex text with --hex; white space and\n"
	"        line breaks are ignored) and prints it as one JSON object.\n"
	"        --verify KEY   check the signature with the sender's public key\n"
	"                       (SubjectPublicKeyInfo PEM); adds \"signature_valid\"\n"
	"        --decrypt KEY  open the encrypted blob (hm_join_response,\n"
	"                       obs_join_response, observe_request) with the\n"
	"                       recipient's private key; adds \"plaintext\"\n"
	"encode  reads one JSON object (the keys decode prints) and writes the\n"
	"        binary message (hex text with --hex).\n"
	"        --sign KEY     the sender's private key; required for every type\n"
	"                       but generic\n"
	"        --encrypt-for KEY  seal \"plaintext\" to the recipient's public key;\n"
	"                       without it a type with a blob takes \"encrypted\"\n"
	"Input is read from FILE, or standard input if FILE is '-' or absent.\n"
	"A private key file readable by others is used with a warning (the\n"
	"published test-vector keys are); the daemons refuse such files.\n"
	"\n"
	"JSON: byte fields are lowercase hex, 64-bit IDs 16 hex digits, version,\n"
	"status and action_id numbers. encode ignores keys it does not know and\n"
	"accepts IDs of 1 to 16 hex digits.\n"
	"\n"
	"Exit status: 0 success; 1 the signature did not verify or the blob did\n"
	"not decrypt; 2 the input is malformed; 3 usage, file or key error.\n";

__attribute__((format(printf, 1, 2))) static void complain(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("srup-msg: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("srup-msg: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\nTry 'srup-msg --help'.\n", stderr);
	va_end(ap);
	return EXIT_USAGE;
}

/* Input bytes, NUL-terminated for the JSON parser. */
struct input {
	char *data;
	size_t len;
};

static int read_input(const char *path, struct input *in)
{
	in->data = NULL;
	in->len = 0;
	bool from_stdin = path == NULL || strcmp(path, "-") == 0;
	const char *name = from_stdin ? "standard input" : path;
	FILE *f = from_stdin ? stdin : fopen(path, "rb");
	if (f == NULL) {
		complain("cannot open '%s': %s", path, strerror(errno));
		return EXIT_USAGE;
	}
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap + 1);
	int rc = EXIT_USAGE;
	if (buf == NULL) {
		complain("out of memory");
		goto out;
	}
	for (;;) {
		if (len > INPUT_MAX) {
			complain("%s is larger than %u bytes: not a SRUP message", name,
				 INPUT_MAX);
			rc = EXIT_MALFORMED;
			goto out;
		}
		if (len == cap) {
			char *bigger = realloc(buf, 2 * cap + 1);
			if (bigger == NULL) {
				complain("out of memory");
				goto out;
			}
			buf = bigger;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				complain("cannot read %s: %s", name, strerror(errno));
				goto out;
			}
			break;
		}
	}
	buf[len] = '\0';
	in->data = buf;
	in->len = len;
	buf = NULL;
	rc = EXIT_SUCCESS_;
out:
	free(buf);
	if (!from_stdin)
		fclose(f);
	return rc;
}

static int load_public(const char *option, const char *path, EVP_PKEY **key)
{
	char detail[512];
	enum srup_keys_err kerr = srup_key_load_public(path, key, detail, sizeof(detail));
	if (kerr != SRUP_KEYS_OK) {
		complain("%s: %s", option, detail);
		return EXIT_USAGE;
	}
	return EXIT_SUCCESS_;
}

/* The tool opens the published test-vector keys, which are world-readable
 * by design, so loose permissions are a warning here, not a refusal. */
static int load_private(const char *option, const char *path, EVP_PKEY **key)
{
	char detail[512];
	bool too_open = false;
	enum srup_keys_err kerr =
		srup_key_load_private_lenient(path, key, &too_open, detail, sizeof(detail));
	if (kerr != SRUP_KEYS_OK) {
		complain("%s: %s", option, detail);
		return EXIT_USAGE;
	}
	if (too_open)
		complain("warning: %s", detail);
	return EXIT_SUCCESS_;
}

/* Flush standard output; ok says whether writing to it went well. */
static int finish_output(bool ok)
{
	if (fflush(stdout) != 0 || !ok) {
		complain("writing to standard output: %s", strerror(errno));
		return EXIT_USAGE;
	}
	return EXIT_SUCCESS_;
}

static int write_line(const char *text)
{
	return finish_output(fputs(text, stdout) >= 0 && fputc('\n', stdout) != EOF);
}

static int write_output(const uint8_t *p, size_t n, bool hex)
{
	if (!hex)
		return finish_output(fwrite(p, 1, n, stdout) == n);
	char *text = srup_hex_encode(p, n);
	if (text == NULL) {
		complain("out of memory");
		return EXIT_USAGE;
	}
	int rc = write_line(text);
	free(text);
	return rc;
}

/* Both commands take two key file options (returned as 'k' and 'K' by
 * options[]), --hex, --help and at most one input file. Returns -1 to go
 * on, or the exit status. */
static int parse_command_line(const char *cmd, int argc, char **argv,
			      const struct option *options, const char **key_path,
			      const char **other_key_path, bool *hex, const char **input_path)
{
	int c;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'k':
			*key_path = optarg;
			break;
		case 'K':
			*other_key_path = optarg;
			break;
		case 'x':
			*hex = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EXIT_SUCCESS_;
		default:
			return usage_error("%s: unknown or incomplete option '%s'", cmd,
					   argv[optind - 1]);
		}
	}
	if (argc - optind > 1)
		return usage_error("%s: one input file at most ('%s' is extra)", cmd,
				   argv[optind + 1]);
	*input_path = optind < argc ? argv[optind] : NULL;
	return -1;
}

/* ---- decode ---- */

/* One line on stderr naming the field, its byte offset and what was
 * expected there. */
static void report_decode_error(const struct srup_decode_error *e, const uint8_t *buf,
				size_t len)
{
	const char *field = e->field != NULL ? e->field : "message";
	char what[160];
	switch (e->err) {
	case SRUP_E_TRUNCATED:
		snprintf(what, sizeof(what), "expected %zu byte%s, only %zu remain%s", e->need,
			 e->need == 1 ? "" : "s", e->have, e->have == 1 ? "s" : "");
		break;
	case SRUP_E_TRAILING: {
		size_t left = e->offset <= len ? len - e->offset : 0;
		snprintf(what, sizeof(what), "expected the end of the message, %zu byte%s remain%s",
			 left, left == 1 ? "" : "s", left == 1 ? "s" : "");
		break;
	}
	case SRUP_E_VERSION:
		snprintf(what, sizeof(what), "expected version %d, found %u", SRUP_VERSION,
			 e->offset < len ? buf[e->offset] : (unsigned)e->have);
		break;
	case SRUP_E_TYPE:
		snprintf(what, sizeof(what), "expected a known type code, found 0x%02x",
			 e->offset < len ? buf[e->offset] : (unsigned)e->have);
		break;
	case SRUP_E_FIELD_BOUND:
		snprintf(what, sizeof(what), "length %zu is outside the field's bounds (limit %zu)",
			 e->have, e->need);
		break;
	default:
		snprintf(what, sizeof(what), "%s", srup_strerror(e->err));
		break;
	}
	complain("malformed message: field '%s' at byte offset %zu: %s (%s)", field, e->offset,
		 what, srup_strerror(e->err));
}

static int cmd_decode(int argc, char **argv)
{
	static const struct option options[] = {
		{"verify", required_argument, NULL, 'k'},
		{"decrypt", required_argument, NULL, 'K'},
		{"hex", no_argument, NULL, 'x'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *verify_path = NULL, *decrypt_path = NULL, *input_path;
	bool hex = false;
	int rc = parse_command_line("decode", argc, argv, options, &verify_path, &decrypt_path,
				    &hex, &input_path);
	if (rc >= 0)
		return rc;

	EVP_PKEY *verify_key = NULL, *decrypt_key = NULL;
	struct input in = {NULL, 0};
	uint8_t *wire = NULL;
	size_t wire_len = 0;
	struct srup_msg *m = NULL;
	struct srup_bytes plaintext = {NULL, 0};
	cJSON *json = NULL;

	if (verify_path != NULL && (rc = load_public("--verify", verify_path, &verify_key)))
		goto out;
	if (decrypt_path != NULL && (rc = load_private("--decrypt", decrypt_path, &decrypt_key)))
		goto out;
	if ((rc = read_input(input_path, &in)))
		goto out;

	if (hex) {
		size_t bad_at = 0;
		int hr = srup_hex_decode(in.data, in.len, true, &wire, &wire_len, &bad_at);
		if (hr == -2) {
			complain("out of memory");
			rc = EXIT_USAGE;
			goto out;
		}
		if (hr == -1) {
			if (bad_at == in.len)
				complain("malformed hex input: an odd number of hex digits");
			else
				complain("malformed hex input: character at offset %zu (0x%02x) "
					 "is not a hex digit",
					 bad_at, (unsigned char)in.data[bad_at]);
			rc = EXIT_MALFORMED;
			goto out;
		}
	} else {
		wire = (uint8_t *)in.data;
		wire_len = in.len;
		in.data = NULL;
	}

	struct srup_decode_error derr = {0};
	enum srup_err err = srup_msg_decode(wire, wire_len, &m, &derr);
	if (err == SRUP_E_NOMEM) {
		complain("out of memory");
		rc = EXIT_USAGE;
		goto out;
	}
	if (err != SRUP_OK) {
		report_decode_error(&derr, wire, wire_len);
		rc = EXIT_MALFORMED;
		goto out;
	}
	const struct srup_type_desc *t = srup_type_by_code(m->type);
	if (t == NULL) {
		complain("malformed message: field 'type' at byte offset 1: unknown type code "
			 "0x%02x",
			 m->type);
		rc = EXIT_MALFORMED;
		goto out;
	}

	rc = EXIT_SUCCESS_;
	bool signature_valid = false;
	if (verify_key != NULL) {
		if (!t->is_signed) {
			complain("signature did not verify: a generic message carries no "
				 "signature");
		} else {
			err = srup_msg_verify(m, verify_key);
			signature_valid = err == SRUP_OK;
			if (err == SRUP_E_BAD_SIGNATURE)
				complain("signature did not verify");
			else if (err != SRUP_OK)
				complain("signature did not verify: %s", srup_strerror(err));
		}
		if (!signature_valid)
			rc = EXIT_REJECTED;
	}

	bool decrypted = false;
	if (decrypt_key != NULL) {
		if (srup_type_blob_field(t) == NULL) {
			complain("note: a %s message carries no encrypted blob; --decrypt ignored",
				 t->name);
		} else if (verify_key != NULL && !signature_valid) {
			/* The blob has no MAC of its own (WIRE.md section 4). */
			complain("blob not decrypted: its signature did not verify");
		} else {
			err = srup_msg_open(m, decrypt_key, &plaintext);
			if (err == SRUP_OK) {
				decrypted = true;
			} else {
				complain("blob did not decrypt: %s", srup_strerror(err));
				rc = EXIT_REJECTED;
			}
		}
	}

	json = srup_json_from_msg(m, verify_key != NULL ? &signature_valid : NULL);
	if (json == NULL) {
		complain("out of memory");
		rc = EXIT_USAGE;
		goto out;
	}
	if (decrypted) {
		char *hex_pt = srup_hex_encode(plaintext.data, plaintext.len);
		bool ok = hex_pt != NULL && cJSON_AddStringToObject(json, "plaintext", hex_pt);
		if (hex_pt != NULL) {
			OPENSSL_cleanse(hex_pt, strlen(hex_pt));
			free(hex_pt);
		}
		if (!ok) {
			complain("out of memory");
			rc = EXIT_USAGE;
			goto out;
		}
	}
	char *text = cJSON_PrintUnformatted(json);
	if (text == NULL) {
		complain("out of memory");
		rc = EXIT_USAGE;
		goto out;
	}
	int written = write_line(text);
	free(text);
	if (written != EXIT_SUCCESS_)
		rc = written;
out:
	cJSON_Delete(json);
	srup_bytes_clear(&plaintext);
	srup_msg_free(m);
	free(wire);
	free(in.data);
	EVP_PKEY_free(verify_key);
	EVP_PKEY_free(decrypt_key);
	return rc;
}

/* ---- encode ---- */

/* Status for a libsrup error while building a message from valid JSON. */
static int encode_status(enum srup_err err)
{
	switch (err) {
	case SRUP_E_ARG:
	case SRUP_E_FIELD_BOUND:
	case SRUP_E_TRUNCATED:
		return EXIT_MALFORMED;
	default:
		return EXIT_USAGE;
	}
}

static int cmd_encode(int argc, char **argv)
{
	static const struct option options[] = {
		{"sign", required_argument, NULL, 'k'},
		{"encrypt-for", required_argument, NULL, 'K'},
		{"hex", no_argument, NULL, 'x'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *sign_path = NULL, *encrypt_path = NULL, *input_path;
	bool hex = false;
	int rc = parse_command_line("encode", argc, argv, options, &sign_path, &encrypt_path,
				    &hex, &input_path);
	if (rc >= 0)
		return rc;

	EVP_PKEY *sign_key = NULL, *encrypt_key = NULL;
	struct input in = {NULL, 0};
	cJSON *json = NULL;
	struct srup_msg *m = NULL;
	struct srup_bytes plaintext = {NULL, 0};
	uint8_t *wire = NULL;
	size_t wire_len = 0;

	if (sign_path != NULL && (rc = load_private("--sign", sign_path, &sign_key)))
		goto out;
	if (encrypt_path != NULL && (rc = load_public("--encrypt-for", encrypt_path, &encrypt_key)))
		goto out;
	if ((rc = read_input(input_path, &in)))
		goto out;

	const char *end = NULL;
	json = cJSON_ParseWithLengthOpts(in.data, in.len, &end, false);
	if (json == NULL) {
		const char *at = cJSON_GetErrorPtr();
		size_t off = (at != NULL && at >= in.data && at <= in.data + in.len)
				     ? (size_t)(at - in.data)
				     : 0;
		complain("malformed JSON input: not valid JSON (near byte offset %zu)", off);
		rc = EXIT_MALFORMED;
		goto out;
	}
	for (const char *p = end; p != NULL && p < in.data + in.len; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			complain("malformed JSON input: text after the object (byte offset %zu)",
				 (size_t)(p - in.data));
			rc = EXIT_MALFORMED;
			goto out;
		}
	}

	/* The type decides which options apply: read it through the table
	 * walker first, skipping the blob only when we seal it ourselves. */
	struct srup_json_error jerr = {NULL, ""};
	enum srup_err err = srup_json_to_msg(json, encrypt_key != NULL, &m, &jerr);
	if (err == SRUP_E_NOMEM) {
		complain("out of memory");
		rc = EXIT_USAGE;
		goto out;
	}
	if (err != SRUP_OK) {
		complain("malformed JSON input: key '%s': %s", jerr.key, jerr.what);
		rc = EXIT_MALFORMED;
		goto out;
	}
	const struct srup_type_desc *t = srup_type_by_code(m->type);
	const struct srup_field_desc *blob = srup_type_blob_field(t);

	if (t->is_signed && sign_key == NULL) {
		rc = usage_error("encode: a %s message must be signed: give --sign PRIVKEY.pem",
				 t->name);
		goto out;
	}
	if (!t->is_signed && sign_key != NULL) {
		rc = usage_error("encode: a %s message carries no signature: drop --sign",
				 t->name);
		goto out;
	}
	if (encrypt_key != NULL && blob == NULL) {
		rc = usage_error("encode: a %s message carries no encrypted blob: drop "
				 "--encrypt-for",
				 t->name);
		goto out;
	}

	if (encrypt_key != NULL) {
		err = srup_json_get_bytes(json, "plaintext", 1, SRUP_BLOB_MAX_PLAINTEXT,
					  &plaintext, &jerr);
		if (err == SRUP_E_NOMEM) {
			complain("out of memory");
			rc = EXIT_USAGE;
			goto out;
		}
		if (err != SRUP_OK) {
			complain("malformed JSON input: key '%s': %s (needed with --encrypt-for)",
				 jerr.key, jerr.what);
			rc = EXIT_MALFORMED;
			goto out;
		}
		err = srup_msg_seal(m, encrypt_key, plaintext.data, plaintext.len);
		if (err != SRUP_OK) {
			complain("--encrypt-for: cannot seal \"plaintext\": %s", srup_strerror(err));
			rc = encode_status(err);
			goto out;
		}
	}

	if (sign_key != NULL) {
		err = srup_msg_sign(m, sign_key);
		if (err != SRUP_OK) {
			complain("--sign: cannot sign the message: %s", srup_strerror(err));
			rc = encode_status(err);
			goto out;
		}
	}
	err = srup_msg_encode(m, &wire, &wire_len);
	if (err != SRUP_OK) {
		complain("cannot encode the message: %s", srup_strerror(err));
		rc = encode_status(err);
		goto out;
	}
	rc = write_output(wire, wire_len, hex);
out:
	free(wire);
	srup_bytes_clear(&plaintext);
	srup_msg_free(m);
	cJSON_Delete(json);
	if (in.data != NULL) {
		OPENSSL_cleanse(in.data, in.len);
		free(in.data);
	}
	EVP_PKEY_free(sign_key);
	EVP_PKEY_free(encrypt_key);
	return rc;
}

int main(int argc, char **argv)
{
	opterr = 0;
	if (argc < 2)
		return usage_error("a command is required: decode or encode");
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		fputs(usage_text, stdout);
		return EXIT_SUCCESS_;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("srup-msg %s (SRUP protocol version %d)\n", SRUP_MSG_VERSION, SRUP_VERSION);
		return EXIT_SUCCESS_;
	}
	/* Options are parsed after the command word. */
	if (strcmp(cmd, "decode") == 0)
		return cmd_decode(argc - 1, argv + 1);
	if (strcmp(cmd, "encode") == 0)
		return cmd_encode(argc - 1, argv + 1);
	return usage_error("unknown command '%s' (decode or encode)", cmd);
}
