/* srup-register: register this observer or device with the key service
 * (REGISTRATION.md) and write what it learned as a configuration drop-in.
 *
 *   status -> register -> validate -> access -> files -> drop-in -> check
 *
 * Every answer goes through reg_answer.c; every check of REGISTRATION.md
 * section 4 is made before anything is written, and the drop-in comes
 * last, so a failure leaves the configuration as it was. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <libgen.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ini.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "reg_answer.h"
#include "reg_crypto.h"
#include "reg_http.h"
#include "srup_fileio.h"
#include "srup_hex.h"
#include "srup_owner.h"
#include "srup.h"
#include "srup_keys.h"

enum {
	EXIT_REGISTERED = 0,
	EXIT_REFUSED = 1,     /* by the service or by a check */
	EXIT_USAGE = 2,
	EXIT_CONFIG = 3,      /* configuration, key or file */
	EXIT_TIMEOUT = 4,
	EXIT_SERVICE = 5,     /* unreachable, TLS, 5xx, answer outside the protocol */
};

#define DROPIN_NAME "50-registration.conf"
#define ACCESS_KEY_NAME "access-key.pem"
#define ACCESS_CERT_NAME "access-cert.pem"
#define ACCESS_CA_NAME "access-ca.pem"
#define PATH_LEN 512
#define CHECK_TIMEOUT_SECONDS 60

static const char *prog = "srup-register";

__attribute__((format(printf, 2, 3))) static int fail(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

static void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void step(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void usage(FILE *to)
{
	fputs("Usage: srup-register --config FILE --url BASE [--ca-file F] [--type TEXT]\n"
	      "                     [--server-id HEX] [--pin-sha256 HEX] [--owner USER[:GROUP]]\n"
	      "                     [--keys-dir DIR] [--timeout S] [--dry-run]\n"
	      "       srup-register --help\n"
	      "\n"
	      "Register this observer's or device's identity with the key service at BASE\n"
	      "(https://HOST[:PORT]) and write the server's ID and key, the broker and the\n"
	      "broker certificate to FILE.d/" DROPIN_NAME ".\n"
	      "\n"
	      "  --config FILE      srup-observerd's or srup-device's configuration\n"
	      "  --url BASE         the key service, https only\n"
	      "  --ca-file F        CA certificates for the service (default: the system store)\n"
	      "  --type TEXT        the type the service records (default: observer or device)\n"
	      "  --server-id HEX    refuse a service whose server ID differs\n"
	      "  --pin-sha256 HEX   refuse a server key whose SubjectPublicKeyInfo SHA-256 differs\n"
	      "  --owner USER[:GROUP]  give the files written to the service user\n"
	      "  --keys-dir DIR     where a new identity and the files go (default: the\n"
	      "                     directory of [identity] private_key)\n"
	      "  --timeout S        seconds per request (default 30)\n"
	      "  --dry-run          change nothing, neither files nor the service\n"
	      "\n"
	      "Exit status: 0 registered; 1 refused by the service or a check; 2 usage;\n"
	      "3 configuration, key or file; 4 timeout; 5 service unreachable, TLS, HTTP 5xx\n"
	      "or an answer outside the protocol.\n",
	      to);
}

__attribute__((format(printf, 1, 2))) static int fail_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	return EXIT_USAGE;
}

/* ---- the configuration: FILE, then FILE.d/\*.conf in byte order ---------- */

struct conf {
	char identity_id[64];
	char private_key[PATH_LEN];
	char state_dir[PATH_LEN];
	bool observer;              /* an [observation] section: srup-observerd's file */
	char dropin_dir[PATH_LEN];
	char dropin[PATH_LEN];
	const char *file;           /* the one being read, for messages */
	int bad_line;
	char bad_what[128];
};

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct conf *c = user;

	if (strcmp(section, "observation") == 0)
		c->observer = true;
	if (strcmp(section, "state") == 0 && name && strcmp(name, "dir") == 0) {
		if (strlen(value) >= sizeof(c->state_dir) || value[0] != '/') {
			snprintf(c->bad_what, sizeof(c->bad_what),
				 "[state] dir must be an absolute path");
			return 0;
		}
		strcpy(c->state_dir, value);
	}
	if (strcmp(section, "identity") != 0 || !name)
		return 1;
	if (strcmp(name, "id") == 0) {
		if (strlen(value) >= sizeof(c->identity_id)) {
			snprintf(c->bad_what, sizeof(c->bad_what), "[identity] id is too long");
			return 0;
		}
		strcpy(c->identity_id, value);
	} else if (strcmp(name, "private_key") == 0) {
		if (strlen(value) >= sizeof(c->private_key) || value[0] != '/') {
			snprintf(c->bad_what, sizeof(c->bad_what),
				 "[identity] private_key must be an absolute path");
			return 0;
		}
		strcpy(c->private_key, value);
	}
	return 1;
}

static int read_one(struct conf *c, const char *path)
{
	int line;

	c->bad_what[0] = '\0';
	line = ini_parse(path, on_ini, c);
	if (line < 0)
		return fail(EXIT_CONFIG, "cannot read '%s': %s", path,
			    line == -1 ? strerror(errno) : "out of memory");
	if (line > 0)
		return fail(EXIT_CONFIG, "%s:%d: %s", path, line,
			    c->bad_what[0] ? c->bad_what : "not an INI line");
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_config(const char *file, struct conf *c)
{
	DIR *dir;
	struct dirent *e;
	char *names[256];
	size_t n = 0;
	int rc;

	if ((size_t)snprintf(c->dropin_dir, sizeof(c->dropin_dir), "%s.d", file) >=
		    sizeof(c->dropin_dir) ||
	    (size_t)snprintf(c->dropin, sizeof(c->dropin), "%s/%s", c->dropin_dir, DROPIN_NAME) >=
		    sizeof(c->dropin))
		return fail(EXIT_CONFIG, "'%s': path too long", file);
	if ((rc = read_one(c, file)) != 0)
		return rc;
	dir = opendir(c->dropin_dir);
	if (!dir) {
		if (errno == ENOENT)
			return 0;
		return fail(EXIT_CONFIG, "cannot read '%s': %s", c->dropin_dir, strerror(errno));
	}
	while ((e = readdir(dir)) != NULL) {
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".conf") != 0)
			continue;
		if (n == sizeof(names) / sizeof(names[0]) || !(names[n] = strdup(e->d_name))) {
			closedir(dir);
			for (size_t i = 0; i < n; i++)
				free(names[i]);
			return fail(EXIT_CONFIG, "'%s': too many drop-ins", c->dropin_dir);
		}
		n++;
	}
	closedir(dir);
	qsort(names, n, sizeof(names[0]), cmp_names);
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		char path[PATH_LEN * 2];

		snprintf(path, sizeof(path), "%s/%s", c->dropin_dir, names[i]);
		if (rc == 0)
			rc = read_one(c, path);
		free(names[i]);
	}
	return rc;
}

/* ---- files ----------------------------------------------------------------- */

struct owner {
	bool set;
	uid_t uid;
	gid_t gid;
};

static int give(const char *path, const struct owner *o)
{
	if (!o->set || lchown(path, o->uid, o->gid) == 0)
		return 0;
	return fail(EXIT_CONFIG, "cannot give '%s' to %ld:%ld: %s", path, (long)o->uid,
		    (long)o->gid, strerror(errno));
}

/* path replaced with data through "<path>.tmp": owned and with its mode
 * before it gets its name, synced, then renamed. */
static int write_file(const char *path, const void *data, size_t len, mode_t mode,
		      const struct owner *o)
{
	char tmp[PATH_LEN + 8];
	int fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return fail(EXIT_CONFIG, "'%s': path too long", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(EXIT_CONFIG, "cannot create '%s': %s", tmp, strerror(errno));
	if (srup_write_all(fd, data, len) != 0)
		goto bad;
	if ((o->set && fchown(fd, o->uid, o->gid) != 0) || fchmod(fd, mode) != 0 ||
	    fsync(fd) != 0)
		goto bad;
	if (close(fd) != 0) {
		fd = -1;
		goto bad;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto bad;
	return 0;
bad:;
	int err = errno ? errno : EIO;

	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return fail(EXIT_CONFIG, "cannot write '%s': %s", path, strerror(err));
}

/* The whole of a small file; NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(REG_BODY_MAX + 1);
	n = buf ? fread(buf, 1, REG_BODY_MAX + 1, f) : 0;
	fclose(f);
	if (!buf || n > REG_BODY_MAX) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static bool same_content(const char *path, const char *data, size_t len)
{
	size_t n;
	char *have = slurp(path, &n);
	bool same = have && n == len && memcmp(have, data, len) == 0;

	free(have);
	return same;
}

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "rb");
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/* ---- the identity --------------------------------------------------------- */

/* The ID of an existing private key when the configuration names none:
 * the "<16 hex digits>.pem" beside it that holds its public half (the
 * files srup-keygen and srup-register write). */
static int id_from_public_file(const char *key_dir, EVP_PKEY *key, uint64_t *id)
{
	DIR *dir = opendir(key_dir);
	struct dirent *e;
	int found = 0;

	if (!dir)
		return 0;
	while (!found && (e = readdir(dir)) != NULL) {
		char path[PATH_LEN * 2], stem[17];
		EVP_PKEY *pub = NULL;
		uint64_t v;

		if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".pem") != 0)
			continue;
		memcpy(stem, e->d_name, 16);
		stem[16] = '\0';
		if (srup_id_parse(stem, &v) != 0 || v == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", key_dir, e->d_name);
		if (srup_key_load_public(path, &pub, NULL, 0) == SRUP_KEYS_OK &&
		    EVP_PKEY_eq(pub, key) == 1) {
			*id = v;
			found = 1;
		}
		EVP_PKEY_free(pub);
	}
	closedir(dir);
	return found;
}

/* ---- the configuration check, as a program (execve, argv, deadline) ------ */

/* As root with --owner, the check runs as that user: what it reads is
 * what the service will read. */
static int run_check(const char *program, const char *config, const struct owner *as)
{
	char *const argv[] = {(char *)program, "--check-config", "--config", (char *)config, NULL};
	extern char **environ;
	struct timespec start, now;
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return fail(EXIT_CONFIG, "cannot start %s: %s", program, strerror(errno));
	if (pid == 0) {
		/* Its report goes to our stderr; our stdout carries the steps. */
		dup2(STDERR_FILENO, STDOUT_FILENO);
		if (as->set && geteuid() == 0 &&
		    (setgroups(0, NULL) != 0 || setresgid(as->gid, as->gid, as->gid) != 0 ||
		     setresuid(as->uid, as->uid, as->uid) != 0)) {
			fprintf(stderr, "%s: cannot become %ld:%ld for the check: %s\n", prog,
				(long)as->uid, (long)as->gid, strerror(errno));
			_exit(127);
		}
		execve(program, argv, environ);
		fprintf(stderr, "%s: cannot run %s: %s\n", prog, program, strerror(errno));
		_exit(127);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return fail(EXIT_CONFIG, "waiting for %s: %s", program, strerror(errno));
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec > CHECK_TIMEOUT_SECONDS) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return fail(EXIT_CONFIG, "%s --check-config did not finish within %d s",
				    program, CHECK_TIMEOUT_SECONDS);
		}
		poll(NULL, 0, 50);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return -1;
}

static const char *check_program(bool observer)
{
	const char *env = getenv(observer ? "SRUP_REGISTER_OBSERVERD" : "SRUP_REGISTER_DEVICE");

	if (env && env[0])
		return env;
	return observer ? SRUP_OBSERVERD_PATH : SRUP_DEVICE_PATH;
}

/* ---- the run ---------------------------------------------------------------- */

struct opts {
	const char *config, *url, *ca_file, *type, *keys_dir;
	bool have_server_id, have_pin, dry_run;
	uint64_t server_id;
	unsigned char pin[32];
	struct owner owner;
	long timeout;
};

/* 64 hex digits (either case), nothing else, as the fingerprint is
 * published. */
static int parse_pin(const char *text, unsigned char out[32])
{
	uint8_t *bytes = NULL;
	size_t n = 0, bad_at;

	if (strlen(text) != 64 || srup_hex_decode(text, 64, false, &bytes, &n, &bad_at) != 0) {
		free(bytes);
		return -1;
	}
	memcpy(out, bytes, 32);
	free(bytes);
	return 0;
}

/* What an HTTP outcome other than an answer means for the exit status. */
static int http_failure(enum reg_http_outcome o, const struct reg_reply *r, const char *stepname)
{
	if (o == REG_HTTP_TIMEOUT)
		return fail(EXIT_TIMEOUT, "%s: %s", stepname, r->error);
	return fail(EXIT_SERVICE, "%s: %s", stepname, r->error);
}

static int server_error(const struct reg_reply *r, const char *stepname)
{
	char line[200];

	reg_reply_line(r, line, sizeof(line));
	return fail(EXIT_SERVICE, "%s: the service answered HTTP %ld: %s", stepname, r->status,
		    line);
}

static char *json_request(const char *k1, const char *v1, const char *k2, const char *v2,
			  const char *k3, const char *v3)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o && cJSON_AddStringToObject(o, k1, v1) && cJSON_AddStringToObject(o, k2, v2) &&
	    (!k3 || cJSON_AddStringToObject(o, k3, v3)))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

static void format_date(const struct tm *tm, char out[32])
{
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", tm);
}

struct run {
	struct opts *o;
	struct conf conf;
	struct reg_http http;
	struct reg_reply *reply;
	/* the identity */
	EVP_PKEY *identity;
	bool fresh;                 /* made by this run, not yet on disk */
	uint64_t id;
	char id_text[REG_ID_TEXT_MAX + 1];
	char id16[17];
	char keys_dir[PATH_LEN];
	char private_path[PATH_LEN];
	struct owner owner;         /* who the files written belong to */
	/* the server */
	struct reg_status status;
	uint64_t server_id;
	char server16[17];
	EVP_PKEY *server_key;       /* borrowed from reg or loaded */
	EVP_PKEY *server_key_loaded;
	struct reg_register reg;
	char broker[REG_BROKER_MAX + 16];
	/* access */
	EVP_PKEY *access_key;
	struct reg_access access;
	struct tm not_after;
	/* paths written */
	char server_path[PATH_LEN * 2], access_key_path[PATH_LEN * 2],
		access_cert_path[PATH_LEN * 2], access_ca_path[PATH_LEN * 2];
	char *dropin_text;
	char record_path[PATH_LEN * 2];
	char config_abs[PATH_LEN];
};

static int make_dir(const char *path, mode_t mode, const struct owner *o, bool *made)
{
	*made = false;
	if (mkdir(path, mode) == 0) {
		*made = true;
		return give(path, o);
	}
	if (errno == EEXIST)
		return 0;
	return fail(EXIT_CONFIG, "cannot create '%s': %s", path, strerror(errno));
}

static int load_identity(struct run *r)
{
	struct opts *o = r->o;
	char detail[512];
	struct stat st;

	if (!r->conf.private_key[0] && !o->keys_dir)
		return fail(EXIT_CONFIG, "%s names no [identity] private_key (and no --keys-dir was given)",
			    o->config);
	if (r->conf.private_key[0] && stat(r->conf.private_key, &st) == 0) {
		char copy[PATH_LEN];
		enum srup_keys_err kerr = srup_key_load_private(r->conf.private_key, &r->identity,
								detail, sizeof(detail));

		if (kerr != SRUP_KEYS_OK)
			return fail(EXIT_CONFIG, "%s", detail);
		snprintf(r->private_path, sizeof(r->private_path), "%s", r->conf.private_key);
		snprintf(copy, sizeof(copy), "%s", r->conf.private_key);
		if (o->keys_dir)
			snprintf(r->keys_dir, sizeof(r->keys_dir), "%s", o->keys_dir);
		else
			snprintf(r->keys_dir, sizeof(r->keys_dir), "%s", dirname(copy));
		if (!o->owner.set) {
			/* Files written belong to whoever owns the identity key. */
			r->owner.set = st.st_uid != geteuid() || st.st_gid != getegid();
			r->owner.uid = st.st_uid;
			r->owner.gid = st.st_gid;
		} else {
			r->owner = o->owner;
		}
		if (r->conf.identity_id[0] && strcmp(r->conf.identity_id, "0") != 0) {
			if (srup_id_parse(r->conf.identity_id, &r->id) != 0 || r->id == 0)
				return fail(EXIT_CONFIG, "%s: [identity] id '%s' is not an ID",
					    o->config, r->conf.identity_id);
		} else {
			char dir_copy[PATH_LEN];

			snprintf(dir_copy, sizeof(dir_copy), "%s", r->private_path);
			if (!id_from_public_file(dirname(dir_copy), r->identity, &r->id))
				return fail(EXIT_CONFIG,
					    "%s: [identity] id is not set, and no <ID>.pem beside '%s' "
					    "holds its public half: set the ID the key was made for",
					    o->config, r->private_path);
		}
		return 0;
	}
	if (r->conf.private_key[0] && errno != ENOENT)
		return fail(EXIT_CONFIG, "cannot read '%s': %s", r->conf.private_key,
			    strerror(errno));
	/* No identity yet: made here, written once the service took it. */
	r->fresh = true;
	r->owner = o->owner;
	if (o->keys_dir) {
		snprintf(r->keys_dir, sizeof(r->keys_dir), "%s", o->keys_dir);
		if ((size_t)snprintf(r->private_path, sizeof(r->private_path), "%s/private.pem",
				     o->keys_dir) >= sizeof(r->private_path))
			return fail(EXIT_CONFIG, "--keys-dir: path too long");
	} else {
		char copy[PATH_LEN];

		snprintf(r->private_path, sizeof(r->private_path), "%s", r->conf.private_key);
		snprintf(copy, sizeof(copy), "%s", r->conf.private_key);
		snprintf(r->keys_dir, sizeof(r->keys_dir), "%s", dirname(copy));
	}
	do {
		unsigned char b[8];

		if (RAND_bytes(b, sizeof(b)) != 1)
			return fail(EXIT_CONFIG, "no random bytes for an ID");
		r->id = 0;
		for (int i = 0; i < 8; i++)
			r->id = r->id << 8 | b[i];
	} while (r->id == 0);
	if (srup_key_generate(2048, &r->identity) != SRUP_KEYS_OK)
		return fail(EXIT_CONFIG, "cannot make an RSA-2048 key");
	return 0;
}

/* The fresh identity to disk, as srup-keygen writes it. */
static int write_identity(struct run *r)
{
	char detail[512], public_path[PATH_LEN * 2];
	bool made;
	int rc;

	if ((rc = make_dir(r->keys_dir, 0700, &r->owner, &made)) != 0)
		return rc;
	snprintf(public_path, sizeof(public_path), "%s/%s.pem", r->keys_dir, r->id16);
	if (srup_key_write_private(r->private_path, r->identity, detail, sizeof(detail)) !=
		    SRUP_KEYS_OK ||
	    srup_key_write_public(public_path, r->identity, detail, sizeof(detail)) != SRUP_KEYS_OK)
		return fail(EXIT_CONFIG, "%s (ID %s is registered: re-run to finish)", detail,
			    r->id_text);
	/* Written 0600 by us and given away only then. */
	if ((rc = give(r->private_path, &r->owner)) != 0 || (rc = give(public_path, &r->owner)) != 0)
		return rc;
	r->fresh = false;
	step("identity %s: %s", r->id_text, r->private_path);
	return 0;
}

static int do_status(struct run *r)
{
	char why[REG_WHY_MAX];
	enum reg_http_outcome out = reg_http_call(&r->http, "status", NULL, r->reply);

	if (out != REG_HTTP_ANSWERED)
		return http_failure(out, r->reply, "status");
	if (r->reply->status >= 500)
		return server_error(r->reply, "status");
	if (r->reply->status != 200) {
		char line[200];

		reg_reply_line(r->reply, line, sizeof(line));
		return fail(EXIT_SERVICE, "status: HTTP %ld, not 200: %s", r->reply->status, line);
	}
	if (reg_parse_status(r->reply->body, r->reply->len, &r->status, why) != REG_OK)
		return fail(EXIT_SERVICE, "status: %s", why);
	if (srup_id_parse(r->status.identity, &r->server_id) != 0 || r->server_id == 0)
		return fail(EXIT_SERVICE, "status: the server ID '%s' is not usable",
			    r->status.identity);
	srup_id_format16(r->server_id, r->server16);
	if (!r->status.active)
		return fail(EXIT_REFUSED, "status: server %s is not active", r->status.identity);
	if (r->o->have_server_id && r->o->server_id != r->server_id) {
		char want[17];

		srup_id_format16(r->o->server_id, want);
		return fail(EXIT_REFUSED, "status: the service's server is %s, not %s (--server-id)",
			    r->server16, want);
	}
	step("status: server %s active", r->status.identity);
	return 0;
}

static int check_pin(struct run *r, EVP_PKEY *key)
{
	unsigned char got[32];
	char hex[65];

	if (!r->o->have_pin)
		return 0;
	if (reg_key_sha256(key, got) != 0)
		return fail(EXIT_CONFIG, "cannot hash the server key");
	if (CRYPTO_memcmp(got, r->o->pin, 32) == 0)
		return 0;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", got[i]);
	return fail(EXIT_REFUSED, "the server key's SHA-256 is %s, not the --pin-sha256 given", hex);
}

/* get_key/<ident>: *key set when the service answers 200 with a PEM public
 * key (base64), NULL on 404 or anything unusable. */
static enum reg_http_outcome fetch_key(struct run *r, const char *ident, EVP_PKEY **key)
{
	char route[64];
	enum reg_http_outcome out;
	unsigned char *pem;
	size_t pem_len;
	BIO *bio;

	*key = NULL;
	snprintf(route, sizeof(route), "get_key/%s", ident);
	out = reg_http_call(&r->http, route, NULL, r->reply);
	if (out != REG_HTTP_ANSWERED || r->reply->status != 200)
		return out;
	if (reg_base64_decode(r->reply->body, r->reply->len, &pem, &pem_len) != REG_OK)
		return out;
	bio = pem_len <= INT32_MAX ? BIO_new_mem_buf(pem, (int)pem_len) : NULL;
	*key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	free(pem);
	if (*key && srup_key_check(*key) != SRUP_OK) {
		EVP_PKEY_free(*key);
		*key = NULL;
	}
	return out;
}

static void fingerprint(EVP_PKEY *key, char hex[65])
{
	unsigned char d[32];

	strcpy(hex, "?");
	if (key && reg_key_sha256(key, d) == 0)
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* Where the server's key comes from when register said the ID is held:
 * the peer-store file of an earlier run, else the service's get_key. */
static int server_key_for_rerun(struct run *r)
{
	char detail[512];
	enum reg_http_outcome out;

	if (srup_key_load_public(r->server_path, &r->server_key_loaded, detail, sizeof(detail)) ==
	    SRUP_KEYS_OK) {
		r->server_key = r->server_key_loaded;
		return 0;
	}
	out = fetch_key(r, r->status.identity, &r->server_key_loaded);
	if (out != REG_HTTP_ANSWERED)
		return http_failure(out, r->reply, "get_key");
	if (r->server_key_loaded) {
		r->server_key = r->server_key_loaded;
		return 0;
	}
	return fail(EXIT_REFUSED,
		    "ID %s is registered already, and the server's key is neither in '%s' nor "
		    "at get_key (HTTP %ld): the service gives it only at the first register",
		    r->id_text, r->server_path, r->reply->status);
}

/* The answer to register, kept in [state] dir: the service gives the
 * broker and the server key only once, so a run that fails after register
 * leaves this for the re-run, which is then told "already exists". */
static int write_record(struct run *r)
{
	char *bare = reg_public_bare(r->server_key), *text = NULL;
	cJSON *o = cJSON_CreateObject();
	bool made;
	int rc;

	if (o && bare && cJSON_AddStringToObject(o, "identity", r->id_text) &&
	    cJSON_AddStringToObject(o, "default_c2", r->status.identity) &&
	    cJSON_AddStringToObject(o, "broker", r->reg.broker) &&
	    cJSON_AddStringToObject(o, "key", bare) && cJSON_AddStringToObject(o, "url", r->o->url))
		text = cJSON_Print(o);
	cJSON_Delete(o);
	free(bare);
	if (!text)
		return fail(EXIT_CONFIG, "out of memory");
	rc = make_dir(r->conf.state_dir[0] ? r->conf.state_dir : r->keys_dir, 0700, &r->owner,
		      &made);
	if (rc == 0)
		rc = write_file(r->record_path, text, strlen(text), 0644, &r->owner);
	cJSON_free(text);
	return rc;
}

/* An earlier run's record for this ID and this server: true with r->reg,
 * r->server_key and r->broker set from it. */
static bool read_record(struct run *r)
{
	char why[REG_WHY_MAX], ident[64] = "";
	size_t len;
	char *text = slurp(r->record_path, &len);
	cJSON *o;
	const cJSON *m;

	if (!text)
		return false;
	o = cJSON_ParseWithLength(text, len);
	m = o ? cJSON_GetObjectItemCaseSensitive(o, "identity") : NULL;
	if (cJSON_IsString(m) && strlen(m->valuestring) < sizeof(ident))
		strcpy(ident, m->valuestring);
	cJSON_Delete(o);
	if (strcmp(ident, r->id_text) != 0 ||
	    reg_parse_register(text, len, &r->reg, why) != REG_OK || !r->reg.has_default_c2 ||
	    strcmp(r->reg.default_c2, r->status.identity) != 0 ||
	    reg_broker_url(r->reg.broker, r->broker, sizeof(r->broker), why) != REG_OK) {
		reg_register_clear(&r->reg);
		r->broker[0] = '\0';
		free(text);
		return false;
	}
	free(text);
	r->server_key = r->reg.server_key;
	return true;
}

static int do_register(struct run *r, bool *held)
{
	char why[REG_WHY_MAX], line[200];
	char *bare = reg_public_bare(r->identity), *body;
	const char *type = r->o->type ? r->o->type : (r->conf.observer ? "observer" : "device");
	enum reg_http_outcome out;
	int rc;

	*held = false;
	body = bare ? json_request("identity", r->id_text, "key", bare, "type", type) : NULL;
	free(bare);
	if (!body)
		return fail(EXIT_CONFIG, "out of memory");
	out = reg_http_call(&r->http, "register", body, r->reply);
	cJSON_free(body);
	if (out != REG_HTTP_ANSWERED) {
		rc = http_failure(out, r->reply, "register");
		goto uncertain;
	}
	reg_reply_line(r->reply, line, sizeof(line));
	if (r->reply->status == 400 && strstr(line, "already exists")) {
		if (r->fresh)
			return fail(EXIT_REFUSED,
				    "register: the new random ID %s is held already (\"%s\"); "
				    "nothing was written: run again for another", r->id_text, line);
		*held = true;
		step("registered %s (held already: validate decides whose key)", r->id_text);
		/* The server key comes from an earlier run; validate says first
		 * whether the ID is held with this key at all. */
		read_record(r);
		return 0;
	}
	if (r->reply->status >= 500) {
		rc = server_error(r->reply, "register");
		goto uncertain;
	}
	if (r->reply->status != 201 && r->reply->status != 200)
		return fail(EXIT_REFUSED, "register: the service refused ID %s (HTTP %ld): %s",
			    r->id_text, r->reply->status, line);
	if (reg_parse_register(r->reply->body, r->reply->len, &r->reg, why) != REG_OK) {
		rc = fail(EXIT_SERVICE, "register: %s", why);
		goto uncertain;
	}
	r->server_key = r->reg.server_key;
	if (r->reg.has_default_c2 && strcmp(r->reg.default_c2, r->status.identity) != 0)
		return fail(EXIT_REFUSED, "register: default_c2 is %s, but status named server %s",
			    r->reg.default_c2, r->status.identity);
	/* A pin mismatch: the reached service is not the one meant; a fresh
	 * identity is not kept for it. */
	if ((rc = check_pin(r, r->server_key)) != 0)
		return rc;
	if (reg_broker_url(r->reg.broker, r->broker, sizeof(r->broker), why) != REG_OK)
		return fail(EXIT_SERVICE, "register: %s", why);
	step("registered %s", r->id_text);
	if (r->fresh && (rc = write_identity(r)) != 0)
		return rc;
	return write_record(r);
uncertain:
	/* The service may have stored the ID: keep the identity, so that a
	 * re-run asks for the same ID and validate settles it. */
	if (r->fresh) {
		fprintf(stderr, "%s: the service may hold ID %s now: keeping its key\n", prog,
			r->id_text);
		int wrc = write_identity(r);
		if (wrc != 0)
			return wrc;
	}
	return rc;
}

static int do_validate(struct run *r, bool held)
{
	char why[REG_WHY_MAX], line[200];
	struct reg_validate v;
	unsigned char *sig;
	size_t sig_len;
	char *sig_b64, *body;
	char cwhy[REG_CRYPTO_WHY_MAX];
	enum reg_http_outcome out;

	if (reg_sign_pss(r->identity, r->id_text, strlen(r->id_text), &sig, &sig_len, cwhy) != 0)
		return fail(EXIT_CONFIG, "%s", cwhy);
	sig_b64 = reg_base64_encode(sig, sig_len);
	free(sig);
	body = sig_b64 ? json_request("identity", r->id_text, "signature", sig_b64, NULL, NULL)
		       : NULL;
	free(sig_b64);
	if (!body)
		return fail(EXIT_CONFIG, "out of memory");
	out = reg_http_call(&r->http, "validate", body, r->reply);
	cJSON_free(body);
	if (out != REG_HTTP_ANSWERED)
		return http_failure(out, r->reply, "validate");
	reg_reply_line(r->reply, line, sizeof(line));
	if (r->reply->status == 400) {
		if (held) {
			EVP_PKEY *theirs = NULL;
			char ours_fp[65], theirs_fp[65];

			fetch_key(r, r->id_text, &theirs);
			fingerprint(r->identity, ours_fp);
			fingerprint(theirs, theirs_fp);
			EVP_PKEY_free(theirs);
			return fail(EXIT_REFUSED,
				    "the service holds ID %s with another key (validate: \"%s\"; "
				    "its key's SHA-256 %s, this identity's %s); an ID cannot be "
				    "registered again: make a new identity (move '%s' away) or ask "
				    "the service's operator",
				    r->id_text, line, theirs_fp, ours_fp, r->private_path);
		}
		return fail(EXIT_REFUSED, "validate: the service refused ID %s: %s", r->id_text,
			    line);
	}
	if (r->reply->status >= 500)
		return server_error(r->reply, "validate");
	if (r->reply->status != 200)
		return fail(EXIT_SERVICE, "validate: HTTP %ld, not 200: %s", r->reply->status, line);
	if (reg_parse_validate(r->reply->body, r->reply->len, &v, why) != REG_OK)
		return fail(EXIT_SERVICE, "validate: %s", why);
	if (!r->server_key) {
		int rc = server_key_for_rerun(r);

		if (rc != 0) {
			reg_validate_clear(&v);
			return rc;
		}
	}
	if (strcmp(v.identity, r->status.identity) != 0) {
		int rc = fail(EXIT_REFUSED, "validate: the answer is signed as %s, but status "
					    "named server %s", v.identity, r->status.identity);
		reg_validate_clear(&v);
		return rc;
	}
	if (reg_verify_pss(r->server_key, v.identity, strlen(v.identity), v.signature,
			   v.signature_len) != 0) {
		reg_validate_clear(&v);
		return fail(EXIT_REFUSED,
			    "validate: the server's signature over its ID %s does not verify "
			    "with the key the service gave: nothing proves that key is the server's",
			    r->status.identity);
	}
	reg_validate_clear(&v);
	if (held) {
		int rc = check_pin(r, r->server_key);

		if (rc != 0)
			return rc;
	}
	step("validated");
	return 0;
}

static int render_dropin(struct run *r)
{
	char *text;
	int n;

	if (!r->broker[0]) {
		/* A re-run (ID held): the broker is the drop-in's of the earlier run. */
		return -1;
	}
	n = asprintf(&text,
		     "# Written by srup-register from %s; re-run it rather than\n"
		     "# editing this file. The operator's settings stay in %s.\n"
		     "[identity]\n"
		     "id = %s\n"
		     "private_key = %s\n"
		     "\n"
		     "[server]\n"
		     "id = %s\n"
		     "public_key = %s\n"
		     "\n"
		     "[mqtt]\n"
		     "broker = %s\n"
		     "ca_file = %s\n"
		     "cert_file = %s\n"
		     "key_file = %s\n",
		     r->o->url, r->config_abs, r->id16, r->private_path, r->server16, r->server_path,
		     r->broker, r->access_ca_path, r->access_cert_path, r->access_key_path);
	if (n < 0)
		return -1;
	r->dropin_text = text;
	return 0;
}

/* A re-run that finds everything in place: the files of the earlier run
 * pass the checks of a fresh certificate and the drop-in says the same. */
static bool already_complete(struct run *r)
{
	char detail[256], cwhy[REG_CRYPTO_WHY_MAX], date[32];
	EVP_PKEY *access = NULL, *server = NULL;
	X509 *cert = NULL, *ca = NULL;
	bool ok = false;

	if (render_dropin(r) != 0 || !same_content(r->conf.dropin, r->dropin_text,
						   strlen(r->dropin_text)))
		goto out;
	if (srup_key_load_public(r->server_path, &server, detail, sizeof(detail)) != SRUP_KEYS_OK ||
	    EVP_PKEY_eq(server, r->server_key) != 1)
		goto out;
	if (srup_key_load_private(r->access_key_path, &access, detail, sizeof(detail)) !=
	    SRUP_KEYS_OK)
		goto out;
	cert = load_cert(r->access_cert_path);
	ca = load_cert(r->access_ca_path);
	if (!cert || !ca ||
	    reg_check_certificate(cert, ca, access, r->id_text, time(NULL), &r->not_after, cwhy) != 0)
		goto out;
	format_date(&r->not_after, date);
	step("certificate CN=%s until %s (in place)", r->id_text, date);
	ok = true;
out:
	EVP_PKEY_free(access);
	EVP_PKEY_free(server);
	X509_free(cert);
	X509_free(ca);
	return ok;
}

static int do_access(struct run *r)
{
	char cwhy[REG_CRYPTO_WHY_MAX], why[REG_WHY_MAX], line[200], date[32];
	char *csr = NULL, *csr_b64 = NULL, *sig_b64 = NULL, *body = NULL;
	size_t csr_len, sig_len;
	unsigned char *sig = NULL;
	enum reg_http_outcome out;
	int rc;

	if (srup_key_generate(2048, &r->access_key) != SRUP_KEYS_OK)
		return fail(EXIT_CONFIG, "cannot make the access key");
	if (reg_make_csr(r->access_key, r->id_text, &csr, &csr_len, cwhy) != 0 ||
	    reg_sign_pss(r->identity, csr, csr_len, &sig, &sig_len, cwhy) != 0) {
		free(csr);
		return fail(EXIT_CONFIG, "%s", cwhy);
	}
	csr_b64 = reg_base64_encode((unsigned char *)csr, csr_len);
	sig_b64 = reg_base64_encode(sig, sig_len);
	if (csr_b64 && sig_b64)
		body = json_request("identity", r->id_text, "csr", csr_b64, "signature", sig_b64);
	free(csr);
	free(sig);
	free(csr_b64);
	free(sig_b64);
	if (!body)
		return fail(EXIT_CONFIG, "out of memory");
	out = reg_http_call(&r->http, "access", body, r->reply);
	cJSON_free(body);
	if (out != REG_HTTP_ANSWERED)
		return http_failure(out, r->reply, "access");
	reg_reply_line(r->reply, line, sizeof(line));
	if (r->reply->status == 400)
		return fail(EXIT_REFUSED,
			    "access: the service refused a certificate (\"%s\"). The identity key "
			    "validated just now, so the likely fault is the service's: its CA key "
			    "cannot be loaded (written unencrypted where the service expects it "
			    "encrypted); tell its operator",
			    line);
	if (r->reply->status >= 500)
		return server_error(r->reply, "access");
	if (r->reply->status != 200)
		return fail(EXIT_SERVICE, "access: HTTP %ld, not 200: %s", r->reply->status, line);
	if (reg_parse_access(r->reply->body, r->reply->len, &r->access, why) != REG_OK)
		return fail(EXIT_SERVICE, "access: %s", why);
	rc = reg_check_certificate(r->access.certificate, r->access.ca_certificate, r->access_key,
				   r->id_text, time(NULL), &r->not_after, cwhy);
	if (rc != 0)
		return fail(EXIT_REFUSED, "access: %s", cwhy);
	format_date(&r->not_after, date);
	step("certificate CN=%s until %s", r->id_text, date);
	return 0;
}

static int write_files(struct run *r)
{
	char detail[512], *pem = NULL;
	size_t pem_len;
	bool made;
	struct owner root_owned = {0};
	int rc;

	if ((rc = make_dir(r->keys_dir, 0700, &r->owner, &made)) != 0)
		return rc;
	if (reg_public_pem(r->server_key, &pem, &pem_len) != 0)
		return fail(EXIT_CONFIG, "out of memory");
	rc = write_file(r->server_path, pem, pem_len, 0644, &r->owner);
	free(pem);
	if (rc != 0)
		return rc;
	if ((rc = write_file(r->access_ca_path, r->access.ca_pem, r->access.ca_pem_len, 0644,
			     &r->owner)) != 0 ||
	    (rc = write_file(r->access_cert_path, r->access.certificate_pem,
			     r->access.certificate_pem_len, 0644, &r->owner)) != 0)
		return rc;
	if (srup_key_write_private(r->access_key_path, r->access_key, detail, sizeof(detail)) !=
	    SRUP_KEYS_OK)
		return fail(EXIT_CONFIG, "%s", detail);
	if ((rc = give(r->access_key_path, &r->owner)) != 0)
		return rc;
	/* The drop-in last: until it is in place, the configuration is the old one. */
	if ((rc = make_dir(r->conf.dropin_dir, 0755, &root_owned, &made)) != 0)
		return rc;
	if ((rc = write_file(r->conf.dropin, r->dropin_text, strlen(r->dropin_text), 0644,
			     &root_owned)) != 0)
		return rc;
	step("wrote %s", r->conf.dropin);
	return 0;
}

static int run_registration(struct opts *o)
{
	struct run r = {.o = o};
	bool held = false;
	int rc;

	r.reply = malloc(sizeof(*r.reply));
	if (!r.reply)
		return fail(EXIT_CONFIG, "out of memory");
	r.http.base = o->url;
	r.http.ca_file = o->ca_file;
	r.http.timeout_seconds = o->timeout;

	if ((rc = read_config(o->config, &r.conf)) != 0 || (rc = load_identity(&r)) != 0)
		goto out;
	{
		char *abs = realpath(o->config, NULL);

		snprintf(r.config_abs, sizeof(r.config_abs), "%s", abs ? abs : o->config);
		free(abs);
	}
	snprintf(r.id_text, sizeof(r.id_text), "%02" PRIx64, r.id);
	srup_id_format16(r.id, r.id16);

	if ((rc = do_status(&r)) != 0)
		goto out;
	snprintf(r.server_path, sizeof(r.server_path), "%s/%s.pem", r.keys_dir, r.server16);
	snprintf(r.access_key_path, sizeof(r.access_key_path), "%s/" ACCESS_KEY_NAME, r.keys_dir);
	snprintf(r.access_cert_path, sizeof(r.access_cert_path), "%s/" ACCESS_CERT_NAME,
		 r.keys_dir);
	snprintf(r.access_ca_path, sizeof(r.access_ca_path), "%s/" ACCESS_CA_NAME, r.keys_dir);
	snprintf(r.record_path, sizeof(r.record_path), "%s/registration-%s.json",
		 r.conf.state_dir[0] ? r.conf.state_dir : r.keys_dir, r.id16);

	if (o->dry_run) {
		/* Nothing that changes the service: register is not sent. An
		 * existing identity is checked with validate only if a server key
		 * is known already. */
		step("dry run: would register %s (%s identity) and write %s", r.id_text,
		     r.fresh ? "a new" : "the existing", r.conf.dropin);
		rc = 0;
		goto out;
	}
	if ((rc = do_register(&r, &held)) != 0 || (rc = do_validate(&r, held)) != 0)
		goto out;
	if (held && already_complete(&r)) {
		step("unchanged %s", r.conf.dropin);
	} else {
		if (held && !r.broker[0]) {
			rc = fail(EXIT_REFUSED,
				  "ID %s is registered with this key, but the broker is given only at "
				  "the first register and no earlier run kept it in %s",
				  r.id_text, r.record_path);
			goto out;
		}
		if ((rc = do_access(&r)) != 0)
			goto out;
		free(r.dropin_text);
		r.dropin_text = NULL;
		if (render_dropin(&r) != 0) {
			rc = fail(EXIT_CONFIG, "out of memory");
			goto out;
		}
		if ((rc = write_files(&r)) != 0)
			goto out;
	}
	{
		const char *program = check_program(r.conf.observer);

		if (run_check(program, o->config, &o->owner) != 0) {
			rc = fail(EXIT_CONFIG,
				  "registered, but '%s --check-config --config %s' names problems "
				  "(above) that are not the registration's: fix them and check again",
				  program, o->config);
			goto out;
		}
		step("checked %s", o->config);
	}
	rc = EXIT_REGISTERED;
out:
	EVP_PKEY_free(r.identity);
	EVP_PKEY_free(r.server_key_loaded);
	EVP_PKEY_free(r.access_key);
	reg_register_clear(&r.reg);
	reg_access_clear(&r.access);
	free(r.dropin_text);
	free(r.reply);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"url", required_argument, NULL, 'u'},
		{"ca-file", required_argument, NULL, 'a'},
		{"type", required_argument, NULL, 't'},
		{"server-id", required_argument, NULL, 's'},
		{"pin-sha256", required_argument, NULL, 'p'},
		{"owner", required_argument, NULL, 'o'},
		{"keys-dir", required_argument, NULL, 'k'},
		{"timeout", required_argument, NULL, 'T'},
		{"dry-run", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.timeout = 30};
	char *url_copy = NULL;
	int c, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'u':
			o.url = optarg;
			break;
		case 'a':
			o.ca_file = optarg;
			break;
		case 't':
			if (!optarg[0] || strlen(optarg) > 64)
				return fail_usage("--type must be 1 to 64 characters");
			o.type = optarg;
			break;
		case 's':
			if (srup_id_parse(optarg, &o.server_id) != 0 || o.server_id == 0)
				return fail_usage("--server-id '%s' is not an ID (1 to 16 hex digits)",
						  optarg);
			o.have_server_id = true;
			break;
		case 'p':
			if (parse_pin(optarg, o.pin) != 0)
				return fail_usage("--pin-sha256 must be 64 hex digits (the SHA-256 of "
						  "the server key's SubjectPublicKeyInfo)");
			o.have_pin = true;
			break;
		case 'o':
			if (srup_owner_parse(optarg, &o.owner.uid, &o.owner.gid) != 0)
				return fail_usage("--owner '%s' names no user (or group) of this system",
						  optarg);
			o.owner.set = true;
			break;
		case 'k':
			if (optarg[0] != '/')
				return fail_usage("--keys-dir must be an absolute path");
			o.keys_dir = optarg;
			break;
		case 'T': {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > 3600)
				return fail_usage("--timeout must be 1 to 3600 seconds");
			o.timeout = v;
			break;
		}
		case 'n':
			o.dry_run = true;
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
	if (!o.config || !o.url)
		return fail_usage("--config FILE and --url BASE are required");
	if (o.ca_file && access(o.ca_file, R_OK) != 0)
		return fail(EXIT_CONFIG, "--ca-file '%s': %s", o.ca_file, strerror(errno));
	if (strncmp(o.url, "https://", 8) != 0 || !o.url[8])
		return fail_usage("--url must be https://HOST[:PORT] (the service speaks HTTPS only)");
	{
		/* BASE/KeyEx/register/...: no trailing slash in the base. */
		size_t n = strlen(o.url);

		while (n > 8 && o.url[n - 1] == '/')
			n--;
		if (n != strlen(o.url)) {
			url_copy = strndup(o.url, n);
			if (!url_copy)
				return fail(EXIT_CONFIG, "out of memory");
			o.url = url_copy;
		}
	}
	if (reg_http_init() != 0) {
		free(url_copy);
		return fail(EXIT_CONFIG, "cannot start libcurl");
	}
	rc = run_registration(&o);
	reg_http_cleanup();
	free(url_copy);
	return rc;
}
