/* The audit log (obs_audit.h). */
#include "obs_audit.h"
#include "srup_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <systemd/sd-journal.h>

#include "srup_fileio.h"

#define AUDIT_FIELDS_MAX 24
#define AUDIT_JOURNAL_FIELD_MAX 600

struct obs_audit {
	struct obs_audit_config cfg;
	char *path;
	int fd;
	uint64_t size;
	bool journal;
	bool unsynced; /* a record written since the last fdatasync (fsync on) */
};

bool obs_audit_journald_present(void)
{
	return getenv("JOURNAL_STREAM") != NULL || access("/run/systemd/journal/socket", F_OK) == 0;
}

static int audit_open_file(struct obs_audit *a, char *err, size_t err_len)
{
	struct stat st;

	a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (a->fd < 0) {
		snprintf(err, err_len, "audit log %s: cannot open: %s", a->path, strerror(errno));
		return -1;
	}
	if (fstat(a->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "audit log %s: not a regular file", a->path);
		close(a->fd);
		a->fd = -1;
		return -1;
	}
	a->size = (uint64_t)st.st_size;
	return 0;
}

int obs_audit_open(const struct obs_audit_config *cfg, struct obs_audit **out, char *err,
		   size_t err_len)
{
	struct obs_audit *a;

	if (!cfg || !cfg->path || !*cfg->path || !out || cfg->max_bytes == 0) {
		snprintf(err, err_len, "audit log: invalid arguments");
		return -1;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(cfg->path))) {
		free(a);
		snprintf(err, err_len, "audit log: out of memory");
		return -1;
	}
	a->cfg = *cfg;
	a->cfg.path = a->path;
	a->journal = cfg->journal && obs_audit_journald_present();
	if (audit_open_file(a, err, err_len) < 0) {
		free(a->path);
		free(a);
		return -1;
	}
	*out = a;
	return 0;
}

void obs_audit_free(struct obs_audit *a)
{
	if (!a)
		return;
	if (a->fd >= 0) {
		if (a->unsynced && fdatasync(a->fd) < 0)
			srup_log(LOG_ERR, "audit log %s: cannot sync: %s", a->path, strerror(errno));
		close(a->fd);
	}
	free(a->path);
	free(a);
}

/* path -> path.1 -> ... -> path.keep (the oldest falls off), then a fresh
 * file. */
static int audit_rotate(struct obs_audit *a, char *err, size_t err_len)
{
	size_t n = strlen(a->path) + 16;
	char *from = malloc(n), *to = malloc(n);
	int rc = -1;

	if (!from || !to) {
		snprintf(err, err_len, "audit log %s: cannot rotate: out of memory", a->path);
		goto out;
	}
	/* The records of the file rotated away are on disk before it goes. */
	if (a->unsynced && fdatasync(a->fd) < 0)
		srup_log(LOG_ERR, "audit log %s: cannot sync before rotating: %s", a->path,
			 strerror(errno));
	a->unsynced = false;
	close(a->fd);
	a->fd = -1;
	if (a->cfg.keep == 0) {
		unlink(a->path);
	} else {
		for (unsigned i = a->cfg.keep; i > 1; i--) {
			snprintf(from, n, "%s.%u", a->path, i - 1);
			snprintf(to, n, "%s.%u", a->path, i);
			if (rename(from, to) < 0 && errno != ENOENT) {
				snprintf(err, err_len, "audit log %s: cannot rotate %s: %s", a->path,
					 from, strerror(errno));
				goto reopen;
			}
		}
		snprintf(to, n, "%s.1", a->path);
		if (rename(a->path, to) < 0) {
			snprintf(err, err_len, "audit log %s: cannot rotate: %s", a->path,
				 strerror(errno));
			goto reopen;
		}
	}
	rc = 0;
reopen:
	if (audit_open_file(a, err, err_len) < 0)
		rc = -1;
	else if (a->cfg.fsync)
		(void)srup_sync_parent(a->path);
out:
	free(from);
	free(to);
	return rc;
}

uint64_t obs_audit_now_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void obs_audit_format_time(uint64_t unix_ms, char out[32])
{
	time_t secs = (time_t)(unix_ms / 1000u);
	struct tm tm;

	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(unix_ms % 1000u));
}

static void sha256_hex(const uint8_t *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned int md_len = 0;

	if (EVP_Digest(p ? p : (const uint8_t *)"", n, md, &md_len, EVP_sha256(), NULL) != 1 ||
	    md_len != sizeof(md)) {
		out[0] = '\0';
		return;
	}
	for (unsigned i = 0; i < sizeof(md); i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A field's value as text (for the journal), into buf. */
static const char *field_text(const struct obs_audit_field *f, char *buf, size_t len)
{
	switch (f->type) {
	case OBS_AUDIT_STR:
		return f->str ? f->str : "";
	case OBS_AUDIT_UINT:
		snprintf(buf, len, "%llu", (unsigned long long)f->num);
		return buf;
	case OBS_AUDIT_SHA256:
		if (len >= 65)
			sha256_hex(f->bytes, f->len, buf);
		return buf;
	}
	return "";
}

static bool field_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > 40)
		return false;
	for (const char *c = name; *c; c++)
		if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_'))
			return false;
	return true;
}

static char *audit_json(const char *kind, const char *when, const struct obs_audit_field *fields,
			size_t n)
{
	cJSON *o = cJSON_CreateObject();
	char buf[80], *text = NULL;

	if (!o || !cJSON_AddStringToObject(o, "time", when) ||
	    !cJSON_AddStringToObject(o, "kind", kind))
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct obs_audit_field *f = &fields[i];
		cJSON *added = f->type == OBS_AUDIT_UINT
				       ? cJSON_AddNumberToObject(o, f->name, (double)f->num)
				       : cJSON_AddStringToObject(o, f->name,
								 field_text(f, buf, sizeof(buf)));
		if (!added)
			goto out;
	}
	text = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return text;
}

static void audit_journal(const char *kind, int priority, const char *message,
			  const struct obs_audit_field *fields, size_t n)
{
	/* MESSAGE, PRIORITY, SRUP_KIND and one per field. */
	static char lines[AUDIT_FIELDS_MAX + 3][AUDIT_JOURNAL_FIELD_MAX];
	struct iovec iov[AUDIT_FIELDS_MAX + 3];
	size_t k = 0;
	char buf[80];

	snprintf(lines[k++], AUDIT_JOURNAL_FIELD_MAX, "MESSAGE=%s", message ? message : kind);
	snprintf(lines[k++], AUDIT_JOURNAL_FIELD_MAX, "PRIORITY=%d", priority);
	snprintf(lines[k++], AUDIT_JOURNAL_FIELD_MAX, "SRUP_KIND=%s", kind);
	for (size_t i = 0; i < n; i++) {
		int used = snprintf(lines[k], AUDIT_JOURNAL_FIELD_MAX, "SRUP_");

		for (const char *c = fields[i].name; *c && used < 60; c++)
			lines[k][used++] = (char)toupper((unsigned char)*c);
		snprintf(lines[k] + used, AUDIT_JOURNAL_FIELD_MAX - (size_t)used, "=%s",
			 field_text(&fields[i], buf, sizeof(buf)));
		k++;
	}
	for (size_t i = 0; i < k; i++) {
		iov[i].iov_base = lines[i];
		iov[i].iov_len = strlen(lines[i]);
	}
	sd_journal_sendv(iov, (int)k);
}

int obs_audit_record(struct obs_audit *a, const char *kind, int priority, const char *message,
		     const struct obs_audit_field *fields, size_t n_fields, char *err,
		     size_t err_len)
{
	char when[32], *line;
	size_t len;
	ssize_t w;

	if (!a || !field_name_ok(kind) || n_fields > AUDIT_FIELDS_MAX || (n_fields && !fields)) {
		snprintf(err, err_len, "audit log: invalid record");
		return -1;
	}
	for (size_t i = 0; i < n_fields; i++)
		if (!field_name_ok(fields[i].name)) {
			snprintf(err, err_len, "audit log: invalid field name in a %s record", kind);
			return -1;
		}
	obs_audit_format_time(obs_audit_now_unix_ms(), when);
	if (a->journal)
		audit_journal(kind, priority, message, fields, n_fields);
	line = audit_json(kind, when, fields, n_fields);
	if (!line) {
		snprintf(err, err_len, "audit log %s: out of memory", a->path);
		return -1;
	}
	len = strlen(line);
	line[len++] = '\n'; /* replaces the NUL: the buffer is written by length */
	if ((a->fd < 0 || (a->size > 0 && a->size + len > a->cfg.max_bytes)) &&
	    audit_rotate(a, err, err_len) < 0 && a->fd < 0) {
		free(line);
		return -1;
	}
	w = write(a->fd, line, len);
	free(line);
	if (w != (ssize_t)len) {
		int e = w < 0 ? errno : ENOSPC;

		/* Cut a partial line back off: the file stays whole lines. */
		if (w > 0 && ftruncate(a->fd, (off_t)a->size) < 0)
			a->size += (uint64_t)w;
		snprintf(err, err_len, "audit log %s: cannot write a %s record: %s", a->path, kind,
			 strerror(e));
		return -1;
	}
	a->size += len;
	if (a->cfg.fsync)
		a->unsynced = true;
	return 0;
}

bool obs_audit_unsynced(const struct obs_audit *a)
{
	return a && a->unsynced;
}

int obs_audit_sync(struct obs_audit *a, char *err, size_t err_len)
{
	if (!a || !a->unsynced || a->fd < 0)
		return 0;
	if (fdatasync(a->fd) < 0) {
		snprintf(err, err_len, "audit log %s: cannot sync: %s", a->path, strerror(errno));
		return -1;
	}
	a->unsynced = false;
	return 0;
}
