/* srup-keygen: make an RSA key pair for a SRUP identity. The private half
 * goes to DIR/private.pem (mode 0600), the public half to DIR/<id>.pem, the
 * name a peer key store looks up. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "srup_keys.h"
#include "srup_owner.h"

#define EXIT_USAGE 3

static void usage(FILE *to)
{
	fputs("Usage: srup-keygen [--bits 2048|3072|4096] [--id HEX] [--owner USER[:GROUP]]\n"
	      "                   [--force] --out DIR\n"
	      "       srup-keygen --help\n"
	      "\n"
	      "Generate an RSA key pair for a SRUP identity.\n"
	      "\n"
	      "  --bits N   RSA modulus size: 2048 (default), 3072 or 4096\n"
	      "  --id HEX   the SRUP ID, 1 to 16 hex digits; a random non-zero ID if absent\n"
	      "  --out DIR  directory to write to (created, mode 0700, if missing):\n"
	      "               DIR/private.pem   private key, PKCS#8 PEM, mode 0600\n"
	      "               DIR/<id>.pem      public key, SubjectPublicKeyInfo PEM, mode 0644,\n"
	      "                                 <id> being 16 lowercase hex digits: copy it\n"
	      "                                 into a peer key store as is\n"
	      "  --owner USER[:GROUP]\n"
	      "             give both files, and DIR if this run creates it, to USER\n"
	      "             (and GROUP, else USER's group): the service user that\n"
	      "             reads the key, e.g. --owner srup-observer\n"
	      "  --force    replace existing files (refused otherwise)\n"
	      "\n"
	      "Prints the ID as 16 lowercase hex digits on standard output.\n"
	      "Exit status: 0 success; 3 usage or file error.\n",
	      to);
}

__attribute__((format(printf, 1, 2))) static int fail_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("srup-keygen: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'srup-keygen --help'.\n", stderr);
	return EXIT_USAGE;
}

static int give(const char *path, uid_t uid, gid_t gid)
{
	if (lchown(path, uid, gid) == 0)
		return 0;
	fprintf(stderr, "srup-keygen: cannot give '%s' to %ld:%ld: %s\n", path, (long)uid,
		(long)gid, strerror(errno));
	return -1;
}

static char *path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + 1 + strlen(name) + 1;
	char *p = malloc(len);
	if (p != NULL)
		snprintf(p, len, "%s/%s", dir, name);
	return p;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"bits", required_argument, NULL, 'b'}, {"id", required_argument, NULL, 'i'},
		{"out", required_argument, NULL, 'o'},  {"force", no_argument, NULL, 'f'},
		{"owner", required_argument, NULL, 'O'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int bits = 2048;
	bool have_id = false, force = false, have_owner = false, made_dir = false;
	uid_t owner_uid = 0;
	gid_t owner_gid = 0;
	uint64_t id = 0;
	const char *out_dir = NULL;

	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (strcmp(optarg, "2048") == 0)
				bits = 2048;
			else if (strcmp(optarg, "3072") == 0)
				bits = 3072;
			else if (strcmp(optarg, "4096") == 0)
				bits = 4096;
			else
				return fail_usage("--bits must be 2048, 3072 or 4096, not '%s'",
						  optarg);
			break;
		case 'i':
			if (srup_id_parse(optarg, &id) != 0)
				return fail_usage("--id '%s' is not an ID (1 to 16 hex digits)",
						  optarg);
			have_id = true;
			break;
		case 'o':
			out_dir = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'O':
			if (srup_owner_parse(optarg, &owner_uid, &owner_gid) != 0)
				return fail_usage("--owner '%s' names no user (or group) of this system",
						  optarg);
			have_owner = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return fail_usage("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail_usage("unexpected argument '%s'", argv[optind]);
	if (out_dir == NULL)
		return fail_usage("%s", "--out DIR is required");

	if (!have_id) {
		do {
			unsigned char r[8];
			if (RAND_bytes(r, sizeof(r)) != 1) {
				fputs("srup-keygen: no random bytes for an ID\n", stderr);
				return EXIT_USAGE;
			}
			id = 0;
			for (int i = 0; i < 8; i++)
				id = (id << 8) | r[i];
		} while (id == 0);
	}
	char id16[17];
	srup_id_format16(id, id16);

	if (mkdir(out_dir, 0700) == 0) {
		made_dir = true;
	} else if (errno != EEXIST) {
		fprintf(stderr, "srup-keygen: cannot create '%s': %s\n", out_dir, strerror(errno));
		return EXIT_USAGE;
	}
	char public_name[sizeof(id16) + 4];
	snprintf(public_name, sizeof(public_name), "%s.pem", id16);
	char *private_path = path_join(out_dir, "private.pem");
	char *public_path = path_join(out_dir, public_name);
	int rc = EXIT_USAGE;
	EVP_PKEY *key = NULL;
	if (private_path == NULL || public_path == NULL) {
		fputs("srup-keygen: out of memory\n", stderr);
		goto out;
	}
	if (!force) {
		const char *paths[] = {private_path, public_path};
		for (size_t i = 0; i < 2; i++) {
			if (access(paths[i], F_OK) == 0) {
				fprintf(stderr,
					"srup-keygen: '%s' exists; refusing to replace it "
					"(--force to do so)\n",
					paths[i]);
				goto out;
			}
		}
	}

	enum srup_keys_err kerr = srup_key_generate(bits, &key);
	if (kerr != SRUP_KEYS_OK) {
		fprintf(stderr, "srup-keygen: generating a %d-bit RSA key: %s\n", bits,
			srup_keys_strerror(kerr));
		goto out;
	}
	char detail[512];
	kerr = srup_key_write_private(private_path, key, detail, sizeof(detail));
	if (kerr == SRUP_KEYS_OK)
		kerr = srup_key_write_public(public_path, key, detail, sizeof(detail));
	if (kerr != SRUP_KEYS_OK) {
		fprintf(stderr, "srup-keygen: %s\n", detail);
		goto out;
	}
	/* The key is written 0600 by root and given away only then, so no one
	 * else could read it in between. */
	if (have_owner && (give(private_path, owner_uid, owner_gid) != 0 ||
			   give(public_path, owner_uid, owner_gid) != 0 ||
			   (made_dir && give(out_dir, owner_uid, owner_gid) != 0)))
		goto out;
	printf("%s\n", id16);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "srup-keygen: writing to standard output: %s\n", strerror(errno));
		goto out;
	}
	fprintf(stderr, "srup-keygen: %d-bit key for ID %s: %s (private), %s (public)\n", bits,
		id16, private_path, public_path);
	rc = 0;
out:
	EVP_PKEY_free(key);
	free(private_path);
	free(public_path);
	return rc;
}
