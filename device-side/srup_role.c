#include "srup_role.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_detail.h"
#include "srup_fileio.h"
#include "srup_hook.h"
#include "srup_log.h"
#include "srup_update.h"

#ifndef SRUP_VERSION_TEXT
#define SRUP_VERSION_TEXT "unknown"
#endif

#define ROLE_DOWNLOADS_MAX 4
#define ROLE_HOOKS_MAX 8
#define ROLE_TOKEN_FILE_MAX 64u   /* token bytes a staged file can be named after */
#define ROLE_STATE_FILE_MAX 8192u
#define ROLE_GROUP_PREFIX "SRUP/groups/"

#define STATE_GROUPS "groups"
#define STATE_TERMINATED "terminated"
#define STATE_DEREGISTERED "deregistered"
#define STATE_JOIN "join"
#define STATE_UPDATES "updates"

enum job_kind { JOB_DOWNLOAD, JOB_ACTIVATE, JOB_ACTION, JOB_DATA, JOB_GROUP_ADD };

/* Something that answers later: a download, a hook, a subscription. */
struct role_job {
	struct role_job *next;
	struct srup_role *role;
	enum job_kind kind;
	uint8_t *token;
	size_t token_len;
	struct srup_update *update;
	struct srup_hook *hook;
	char staged[512];                    /* the token's staged file */
	char group[SRUP_ROLE_GROUP_ID_MAX + 1]; /* JOB_GROUP_ADD */
};

struct srup_role {
	sd_event *loop;
	struct srup_node *node;
	struct srup_role_params p;
	const struct srup_config *cfg;
	char own_topic[SRUP_TOPIC_MAX];
	char server_text[17];
	char identification[512];
	char updates_dir[300];
	bool terminated;
	bool deregistered; /* nothing more is obeyed or sent */
	bool join_sent;
	char join_token[SRUP_UUID_TEXT_LEN + 1];
	/* Group memberships, as persisted. */
	char groups[64][SRUP_ROLE_GROUP_ID_MAX + 1];
	size_t n_groups;
	struct role_job *jobs;
};

static const char *type_name(uint8_t type)
{
	const char *name = srup_type_name(type);

	return name ? name : "unknown";
}

/* ---- state files ------------------------------------------------------------ */

static int state_path(const struct srup_config *cfg, const char *name, char *out, size_t len)
{
	return snprintf(out, len, "%s/%s", cfg->state_dir, name) >= (int)len ? -1 : 0;
}

/* Atomically: a temporary file (0600), fsync, rename, fsync of the directory. */
static int state_write(const struct srup_config *cfg, const char *name, const char *text)
{
	char path[512];

	if (state_path(cfg, name, path, sizeof(path)) < 0)
		return -1;
	if (srup_replace_file(path, text, strlen(text), 0600, true, NULL) != 0) {
		srup_log(LOG_ERR, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The file's text (at most ROLE_STATE_FILE_MAX bytes), or -1 if absent. */
static int state_read(const struct srup_config *cfg, const char *name, char *out, size_t len)
{
	char path[512];
	ssize_t n;
	int fd;

	if (state_path(cfg, name, path, sizeof(path)) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, out, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return 0;
}

static void state_remove(const struct srup_config *cfg, const char *name)
{
	char path[512];

	if (state_path(cfg, name, path, sizeof(path)) == 0 && unlink(path) != 0 && errno != ENOENT)
		srup_log(LOG_ERR, "cannot remove %s: %s", path, strerror(errno));
}

bool srup_role_deregistered(const struct srup_config *cfg, char *why, size_t why_len)
{
	char text[256], path[512];

	if (state_read(cfg, STATE_DEREGISTERED, text, sizeof(text)) < 0)
		return false;
	text[strcspn(text, "\n")] = '\0';
	for (char *c = text; *c; c++)
		if (iscntrl((unsigned char)*c))
			*c = '?';
	state_path(cfg, STATE_DEREGISTERED, path, sizeof(path));
	set_detail(why, why_len,
		   "not starting: %s (recorded in %s). This node's registration was revoked; "
		   "once it is registered and joined again, remove that file to run it",
		   text, path);
	return true;
}

/* ---- sending ----------------------------------------------------------------- */

static void role_send(struct srup_role *r, struct srup_msg *msg, const uint8_t *token,
		      size_t token_len)
{
	enum srup_node_err err = SRUP_NODE_E_NOMEM;

	if (r->deregistered) {
		/* Seed 9.2: no further SRUP messages. */
		srup_log(LOG_INFO, "%s not sent: deregistered", type_name(msg->type));
		srup_msg_free(msg);
		return;
	}
	if (srup_bytes_set(&msg->token, token, token_len) == SRUP_OK)
		err = srup_node_send(r->node, msg, r->cfg->server_id, r->own_topic);
	if (err != SRUP_NODE_OK)
		srup_log(LOG_ERR, "cannot send %s to server %s: %s", type_name(msg->type),
			 r->server_text, srup_node_strerror(err));
	srup_msg_free(msg);
}

static void send_response(struct srup_role *r, uint8_t status, const uint8_t *token,
			  size_t token_len)
{
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_RESPONSE);

	if (!msg) {
		srup_log(LOG_ERR, "cannot send RESPONSE 0x%02x: out of memory", status);
		return;
	}
	msg->status = status;
	srup_log(LOG_INFO, "RESPONSE 0x%02x (%s) to server %s", status,
		 srup_status_name(status) ? srup_status_name(status) : "?", r->server_text);
	role_send(r, msg, token, token_len);
}

static void send_data(struct srup_role *r, const char *data_id, const void *data, size_t len,
		      const uint8_t *token, size_t token_len)
{
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_DATA);

	if (!msg || srup_bytes_set(&msg->data_id, data_id, strlen(data_id)) != SRUP_OK ||
	    srup_bytes_set(&msg->data, data, len) != SRUP_OK) {
		srup_log(LOG_ERR, "cannot send DATA %s: out of memory", data_id);
		srup_msg_free(msg);
		return;
	}
	srup_log(LOG_INFO, "DATA %s (%zu bytes) to server %s", data_id, len, r->server_text);
	role_send(r, msg, token, token_len);
}

/* ---- jobs ---------------------------------------------------------------------- */

static struct role_job *job_new(struct srup_role *r, enum job_kind kind, const struct srup_msg *msg)
{
	struct role_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->role = r;
	j->kind = kind;
	j->token = malloc(msg->token.len ? msg->token.len : 1);
	if (!j->token) {
		free(j);
		return NULL;
	}
	memcpy(j->token, msg->token.data, msg->token.len);
	j->token_len = msg->token.len;
	j->next = r->jobs;
	r->jobs = j;
	return j;
}

static void job_free(struct role_job *j)
{
	struct role_job **pp;

	for (pp = &j->role->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	srup_update_free(j->update);
	srup_hook_free(j->hook);
	free(j->token);
	free(j);
}

static size_t jobs_count(const struct srup_role *r, bool downloads)
{
	size_t n = 0;

	for (const struct role_job *j = r->jobs; j; j = j->next)
		n += downloads ? j->kind == JOB_DOWNLOAD : j->hook != NULL;
	return n;
}

static struct role_job *job_find(struct srup_role *r, enum job_kind kind, const struct srup_msg *msg)
{
	for (struct role_job *j = r->jobs; j; j = j->next)
		if (j->kind == kind && j->token_len == msg->token.len &&
		    memcmp(j->token, msg->token.data, msg->token.len) == 0)
			return j;
	return NULL;
}

static void hook_done(const struct srup_hook_result *res, void *user)
{
	struct role_job *j = user;
	struct srup_role *r = j->role;
	bool ok = srup_hook_succeeded(res);

	switch (j->kind) {
	case JOB_ACTIVATE:
		send_response(r, ok ? SRUP_STATUS_ACTIVATE_SUCCESS : SRUP_STATUS_ACTIVATE_FAIL,
			      j->token, j->token_len);
		/* Applied: the staged copy is no longer needed. A failed one
		 * stays for another ACTIVATE. */
		if (ok && unlink(j->staged) != 0)
			srup_log(LOG_WARNING, "cannot remove %s: %s", j->staged, strerror(errno));
		break;
	case JOB_ACTION:
		send_response(r, ok ? SRUP_STATUS_ACTION_SUCCESS : SRUP_STATUS_ACTION_FAIL,
			      j->token, j->token_len);
		break;
	default:
		/* DATA: the seed defines no answer to a handled message. */
		break;
	}
	job_free(j);
}

/* Run command (a configured <command>) with extra arguments appended. */
static int run_hook(struct srup_role *r, struct role_job *j, const char *name, const char *command,
		    const char *const extra[], size_t n_extra, const void *in, size_t in_len)
{
	char buf[512], err[512] = "";
	char *argv[SRUP_CONFIG_COMMAND_WORDS + 4];
	int n;

	if (jobs_count(r, false) >= ROLE_HOOKS_MAX) {
		srup_log(LOG_WARNING, "hook %s not run: %d hooks are running already", name,
			 ROLE_HOOKS_MAX);
		return -1;
	}
	n = srup_config_split_command(command, buf, sizeof(buf), argv, SRUP_CONFIG_COMMAND_WORDS + 1);
	if (n < 0) {
		srup_log(LOG_ERR, "hook %s: bad command", name);
		return -1;
	}
	for (size_t i = 0; i < n_extra; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	if (srup_hook_start(r->loop, name, argv, in, in_len, r->cfg->hook_timeout_seconds,
			    hook_done, j, &j->hook, err, sizeof(err)) != 0) {
		srup_log(LOG_ERR, "hook %s not run: %s", name, err);
		return -1;
	}
	return 0;
}

/* ---- the handlers -------------------------------------------------------------- */

/* The token as a file name and as a hook argument. */
static int token_name(const struct srup_msg *msg, char *out, size_t len)
{
	if (msg->token.len == 0 || msg->token.len > ROLE_TOKEN_FILE_MAX || len < 2 * msg->token.len + 1)
		return -1;
	for (size_t i = 0; i < msg->token.len; i++)
		snprintf(out + 2 * i, 3, "%02x", msg->token.data[i]);
	return 0;
}

static void token_text(const struct srup_msg *msg, char *out, size_t len)
{
	bool printable = msg->token.len > 0;

	for (size_t i = 0; i < msg->token.len; i++)
		printable = printable && isgraph(msg->token.data[i]);
	if (printable && msg->token.len < len)
		snprintf(out, len, "%.*s", (int)msg->token.len, (const char *)msg->token.data);
	else if (token_name(msg, out, len) != 0)
		snprintf(out, len, "-");
}

static void on_id_request(struct srup_role *r, const struct srup_msg *msg)
{
	send_data(r, "IDENTIFICATION_RESPONSE", r->identification, strlen(r->identification),
		  msg->token.data, msg->token.len);
}

static void download_done(struct srup_update *u, const struct srup_update_result *res, void *user)
{
	struct role_job *j = user;
	struct srup_role *r = j->role;
	char status_text[16];

	(void)u;
	/* The token's latest INITIATE decides: an older verified file of
	 * the same token must not be activated after this one failed. */
	if (res->outcome != SRUP_UPDATE_VERIFIED && unlink(j->staged) == 0)
		srup_log(LOG_INFO, "removed %s: the token's new download failed", j->staged);
	switch (res->outcome) {
	case SRUP_UPDATE_VERIFIED:
		srup_log(LOG_NOTICE, "update staged: %s (%" PRIu64 " bytes, SHA-256 verified)",
			 res->path, res->bytes);
		send_response(r, SRUP_STATUS_UPDATE_SUCCESS, j->token, j->token_len);
		break;
	case SRUP_UPDATE_UNREACHABLE:
		srup_log(LOG_WARNING, "update download failed: server unreachable: %s", res->detail);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_SERVER, j->token, j->token_len);
		break;
	case SRUP_UPDATE_HTTP_ERROR:
		/* The seed's detailed form, then the final verdict: the server
		 * did not supply the file. */
		srup_log(LOG_WARNING, "update download failed: %s", res->detail);
		snprintf(status_text, sizeof(status_text), "%ld", res->http_status);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_HTTP_ERROR, j->token, j->token_len);
		send_data(r, "HTTP_STATUS", status_text, strlen(status_text), j->token, j->token_len);
		send_data(r, "HTTP_RESPONSE", res->body, res->body_len, j->token, j->token_len);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, j->token, j->token_len);
		break;
	case SRUP_UPDATE_NOT_SUPPLIED:
		srup_log(LOG_WARNING, "update download failed: file not supplied: %s", res->detail);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, j->token, j->token_len);
		break;
	case SRUP_UPDATE_DIGEST:
		srup_log(LOG_WARNING, "update download failed: %s", res->detail);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_DIGEST, j->token, j->token_len);
		break;
	}
	job_free(j);
}

_Static_assert(SRUP_INITIATE_DIGEST_LEN == SRUP_UPDATE_DIGEST_LEN, "one SHA-256 length");

static void on_initiate(struct srup_role *r, const struct srup_msg *msg)
{
	const struct srup_update_config ucfg = {
		.max_bytes = r->cfg->update.max_bytes,
		.connect_timeout_seconds = r->cfg->update.connect_timeout_seconds,
		.timeout_seconds = r->cfg->update.timeout_seconds,
		.max_redirects = r->cfg->update.max_redirects,
	};
	struct srup_update_config c = ucfg;
	uint8_t digest[SRUP_INITIATE_DIGEST_LEN];
	char name[2 * ROLE_TOKEN_FILE_MAX + 1], err[512] = "";
	const char *url_field;
	size_t url_len;
	char *url = NULL;
	struct role_job *j;

	snprintf(c.ca_file, sizeof(c.ca_file), "%s", r->cfg->update.ca_file);
	if (job_find(r, JOB_DOWNLOAD, msg)) {
		srup_log(LOG_WARNING, "INITIATE ignored: the download for that token is running");
		return;
	}
	if (token_name(msg, name, sizeof(name)) != 0) {
		srup_log(LOG_WARNING, "INITIATE refused (0xFE): token of %zu bytes (1..%u)",
			 msg->token.len, ROLE_TOKEN_FILE_MAX);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, msg->token.data, msg->token.len);
		return;
	}
	/* pySRUP servers send both fields with a C terminator (WIRE.md Q8). */
	if (srup_initiate_digest(msg, digest) != SRUP_OK) {
		srup_log(LOG_WARNING, "INITIATE refused (0xFF): digest of %zu bytes is neither 64 "
			 "hex digits nor 32 bytes (either one may end in one 00)", msg->digest.len);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_DIGEST, msg->token.data, msg->token.len);
		return;
	}
	if (srup_initiate_url(msg, &url_field, &url_len) != SRUP_OK) {
		srup_log(LOG_WARNING, "INITIATE refused (0xFE): empty URL or one with a NUL byte "
			 "(other than one 00 at its end)");
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, msg->token.data, msg->token.len);
		return;
	}
	if (!(url = strndup(url_field, url_len))) {
		srup_log(LOG_ERR, "INITIATE: out of memory");
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, msg->token.data, msg->token.len);
		return;
	}
	if (jobs_count(r, true) >= ROLE_DOWNLOADS_MAX) {
		srup_log(LOG_WARNING, "INITIATE refused (0xFD): %d downloads running already",
			 ROLE_DOWNLOADS_MAX);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_SERVER, msg->token.data, msg->token.len);
		free(url);
		return;
	}
	for (char *ch = url; *ch; ch++)
		if (iscntrl((unsigned char)*ch))
			*ch = '?'; /* never reaches curl: a URL with control bytes is refused there */
	j = job_new(r, JOB_DOWNLOAD, msg);
	if (j)
		snprintf(j->staged, sizeof(j->staged), "%s/%s", r->updates_dir, name);
	if (!j || srup_update_start(r->loop, &c, url, digest, r->updates_dir, name, download_done, j,
				    &j->update, err, sizeof(err)) != 0) {
		srup_log(LOG_ERR, "INITIATE: cannot start the download: %s", j ? err : "out of memory");
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, msg->token.data, msg->token.len);
		if (j)
			job_free(j);
		free(url);
		return;
	}
	srup_log(LOG_INFO, "INITIATE: downloading %s", url);
	free(url);
}

static void on_activate(struct srup_role *r, const struct srup_msg *msg)
{
	char name[2 * ROLE_TOKEN_FILE_MAX + 1], text[2 * ROLE_TOKEN_FILE_MAX + 1];
	char path[512];
	struct stat st;
	struct role_job *j;

	if (job_find(r, JOB_ACTIVATE, msg)) {
		srup_log(LOG_WARNING, "ACTIVATE ignored: the activation for that token is running");
		return;
	}
	if (token_name(msg, name, sizeof(name)) != 0 ||
	    snprintf(path, sizeof(path), "%s/%s", r->updates_dir, name) >= (int)sizeof(path) ||
	    lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		srup_log(LOG_WARNING, "ACTIVATE refused (0x1F): no verified update for that token");
		send_response(r, SRUP_STATUS_ACTIVATE_FAIL, msg->token.data, msg->token.len);
		return;
	}
	if (!r->cfg->update.activate[0]) {
		srup_log(LOG_WARNING, "ACTIVATE refused (0x1F): no [update] activate hook configured");
		send_response(r, SRUP_STATUS_ACTIVATE_FAIL, msg->token.data, msg->token.len);
		return;
	}
	token_text(msg, text, sizeof(text));
	j = job_new(r, JOB_ACTIVATE, msg);
	if (j) {
		const char *extra[] = {path, text};

		snprintf(j->staged, sizeof(j->staged), "%s", path);
		if (run_hook(r, j, "activate", r->cfg->update.activate, extra, 2, NULL, 0) == 0)
			return;
		job_free(j);
	}
	send_response(r, SRUP_STATUS_ACTIVATE_FAIL, msg->token.data, msg->token.len);
}

static void on_action(struct srup_role *r, const struct srup_msg *msg)
{
	const struct srup_config_hook *h = NULL;
	struct role_job *j;
	char name[16];

	for (size_t i = 0; i < r->cfg->n_actions && !h; i++)
		if (r->cfg->actions[i].action_id == msg->action_id)
			h = &r->cfg->actions[i];
	if (!h) {
		srup_log(LOG_WARNING, "ACTION %u: no such action configured (0x2E)", msg->action_id);
		send_response(r, SRUP_STATUS_ACTION_UNKNOWN, msg->token.data, msg->token.len);
		return;
	}
	snprintf(name, sizeof(name), "action-%u", msg->action_id);
	j = job_new(r, JOB_ACTION, msg);
	if (j) {
		if (run_hook(r, j, name, h->command, NULL, 0, NULL, 0) == 0)
			return;
		job_free(j);
	}
	send_response(r, SRUP_STATUS_ACTION_FAIL, msg->token.data, msg->token.len);
}

static void on_data(struct srup_role *r, const struct srup_msg *msg)
{
	const struct srup_config_hook *h = NULL;
	struct role_job *j;
	char name[SRUP_CONFIG_DATA_ID_MAX + 8];

	for (size_t i = 0; i < r->cfg->n_data && !h; i++)
		if (strlen(r->cfg->data[i].id) == msg->data_id.len &&
		    memcmp(r->cfg->data[i].id, msg->data_id.data, msg->data_id.len) == 0)
			h = &r->cfg->data[i];
	if (!h) {
		srup_log(LOG_WARNING, "DATA: data ID of %zu bytes not configured (0x3F)",
			 msg->data_id.len);
		send_response(r, SRUP_STATUS_DATA_TYPE_UNKNOWN, msg->token.data, msg->token.len);
		return;
	}
	snprintf(name, sizeof(name), "data-%s", h->id);
	j = job_new(r, JOB_DATA, msg);
	if (j && run_hook(r, j, name, h->command, NULL, 0, msg->data.data, msg->data.len) != 0)
		job_free(j);
}

/* ---- groups ---------------------------------------------------------------------- */

enum {
	GROUP_ADD_SUCCESS = 0x40,
	GROUP_DEL_SUCCESS = 0x41,
	GROUP_DEL_INVALID = 0x4C,
	GROUP_DEL_FAIL = 0x4D,
	GROUP_ADD_FAIL_LIMIT = 0x4E,
	GROUP_ADD_FAIL = 0x4F,
};

static bool group_id_ok(const uint8_t *id, size_t len)
{
	if (len == 0 || len > SRUP_ROLE_GROUP_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
			return false;
	return true;
}

static void group_topic(const char *group, char out[SRUP_NODE_EXTRA_TOPIC_MAX])
{
	snprintf(out, SRUP_NODE_EXTRA_TOPIC_MAX, ROLE_GROUP_PREFIX "%s", group);
}

static int group_find(const struct srup_role *r, const char *group)
{
	for (size_t i = 0; i < r->n_groups; i++)
		if (strcmp(r->groups[i], group) == 0)
			return (int)i;
	return -1;
}

static int groups_save(struct srup_role *r)
{
	char text[64 * (SRUP_ROLE_GROUP_ID_MAX + 1) + 1];
	size_t used = 0;

	text[0] = '\0';
	for (size_t i = 0; i < r->n_groups; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\n", r->groups[i]);
	return state_write(r->cfg, STATE_GROUPS, text);
}

static void group_subscribed(struct srup_node *node, const char *topic, bool ok, void *user)
{
	struct role_job *j = user;
	struct srup_role *r = j->role;
	uint8_t status = GROUP_ADD_FAIL;

	if (ok && group_find(r, j->group) < 0 && r->n_groups < sizeof(r->groups) / sizeof(r->groups[0])) {
		snprintf(r->groups[r->n_groups++], sizeof(r->groups[0]), "%s", j->group);
		if (groups_save(r) == 0) {
			status = GROUP_ADD_SUCCESS;
			srup_log(LOG_NOTICE, "joined group %s (%s)", j->group, topic);
		} else {
			r->n_groups--;
			srup_node_remove_topic(node, topic);
		}
	} else if (!ok) {
		srup_log(LOG_WARNING, "GROUP_ADD %s: the broker refused %s (0x4F)", j->group, topic);
	}
	send_response(r, status, j->token, j->token_len);
	job_free(j);
}

/* The group ID of a group message, checked; NULL (answered or logged) if
 * not acceptable. */
static bool group_of(struct srup_role *r, const struct srup_msg *msg, bool has_device,
		     uint8_t bad_status, char out[SRUP_ROLE_GROUP_ID_MAX + 1])
{
	if (has_device && msg->device_id != srup_node_id(r->node)) {
		char dev[17];

		srup_id_format16(msg->device_id, dev);
		srup_log(LOG_WARNING, "%s ignored: it names device %s, not this one",
			 type_name(msg->type), dev);
		return false;
	}
	if (!group_id_ok(msg->group_id.data, msg->group_id.len)) {
		srup_log(LOG_WARNING, "%s refused (0x%02x): group ID of %zu bytes is not 1..%u "
			 "characters of A-Z a-z 0-9 . _ -", type_name(msg->type), bad_status,
			 msg->group_id.len, SRUP_ROLE_GROUP_ID_MAX);
		send_response(r, bad_status, msg->token.data, msg->token.len);
		return false;
	}
	snprintf(out, SRUP_ROLE_GROUP_ID_MAX + 1, "%.*s", (int)msg->group_id.len,
		 (const char *)msg->group_id.data);
	return true;
}

static void on_group_add(struct srup_role *r, const struct srup_msg *msg)
{
	char group[SRUP_ROLE_GROUP_ID_MAX + 1], topic[SRUP_NODE_EXTRA_TOPIC_MAX];
	struct role_job *j;

	if (!group_of(r, msg, true, GROUP_ADD_FAIL, group))
		return;
	if (group_find(r, group) >= 0) {
		send_response(r, GROUP_ADD_SUCCESS, msg->token.data, msg->token.len);
		return;
	}
	if (r->n_groups >= r->cfg->groups_max) {
		srup_log(LOG_WARNING, "GROUP_ADD %s refused (0x4E): already in %zu groups, the "
			 "[groups] max", group, r->n_groups);
		send_response(r, GROUP_ADD_FAIL_LIMIT, msg->token.data, msg->token.len);
		return;
	}
	group_topic(group, topic);
	j = job_new(r, JOB_GROUP_ADD, msg);
	if (j) {
		snprintf(j->group, sizeof(j->group), "%s", group);
		if (srup_node_add_topic(r->node, topic, group_subscribed, j) == SRUP_NODE_OK)
			return;
		job_free(j);
	}
	send_response(r, GROUP_ADD_FAIL, msg->token.data, msg->token.len);
}

static void on_group_leave(struct srup_role *r, const struct srup_msg *msg)
{
	bool destroy = msg->type == SRUP_TYPE_GROUP_DESTROY;
	char group[SRUP_ROLE_GROUP_ID_MAX + 1], topic[SRUP_NODE_EXTRA_TOPIC_MAX];
	uint8_t status = GROUP_DEL_SUCCESS;
	int at;

	if (!group_of(r, msg, !destroy, GROUP_DEL_INVALID, group))
		return;
	at = group_find(r, group);
	if (at < 0) {
		srup_log(LOG_WARNING, "%s %s: not a member (0x4C)", type_name(msg->type), group);
		send_response(r, GROUP_DEL_INVALID, msg->token.data, msg->token.len);
		return;
	}
	group_topic(group, topic);
	memmove(r->groups[at], r->groups[at + 1], (r->n_groups - (size_t)at - 1) * sizeof(r->groups[0]));
	r->n_groups--;
	if (srup_node_remove_topic(r->node, topic) != SRUP_NODE_OK || groups_save(r) != 0)
		status = GROUP_DEL_FAIL;
	else
		srup_log(LOG_NOTICE, "left group %s", group);
	send_response(r, status, msg->token.data, msg->token.len);
}

/* ---- joining, termination, deregistration ----------------------------------------- */

static void on_join_command(struct srup_role *r, const struct srup_msg *msg)
{
	if (msg->device_id != srup_node_id(r->node)) {
		char dev[17];

		srup_id_format16(msg->device_id, dev);
		srup_log(LOG_WARNING, "JOIN_COMMAND ignored: it names device %s, not this one", dev);
		return;
	}
	if (r->cfg->join_command == SRUP_CONFIG_JOIN_COMMAND_REFUSE) {
		srup_log(LOG_NOTICE, "JOIN_COMMAND from server %s refused ([join] command = refuse)",
			 r->server_text);
		send_response(r, SRUP_STATUS_JOIN_REFUSED, msg->token.data, msg->token.len);
		return;
	}
	if (r->terminated) {
		state_remove(r->cfg, STATE_TERMINATED);
		r->terminated = false;
		srup_log(LOG_NOTICE, "joined server %s again: its commands are obeyed",
			 r->server_text);
	}
	/* The seed's status for an accepted join command. */
	send_response(r, GROUP_DEL_SUCCESS, msg->token.data, msg->token.len);
}

static void on_terminate(struct srup_role *r, const struct srup_msg *msg)
{
	char text[64];

	send_response(r, SRUP_STATUS_RESIGN_SUCCESS, msg->token.data, msg->token.len);
	snprintf(text, sizeof(text), "terminated by server %s\n", r->server_text);
	if (state_write(r->cfg, STATE_TERMINATED, text) != 0)
		srup_log(LOG_ERR, "the termination is not persisted: a restart obeys the server again");
	r->terminated = true;
	srup_log(LOG_NOTICE, "terminated by server %s: only a JOIN_COMMAND from it is obeyed now",
		 r->server_text);
}

static void on_deregister(struct srup_role *r, const struct srup_msg *msg)
{
	char text[128], when[32], path[512];
	time_t now = time(NULL);
	struct tm tm;

	(void)msg;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(text, sizeof(text), "deregistered by server %s at %s\n", r->server_text, when);
	state_path(r->cfg, STATE_DEREGISTERED, path, sizeof(path));
	if (state_write(r->cfg, STATE_DEREGISTERED, text) != 0)
		srup_log(LOG_ERR, "the deregistration is not persisted in %s", path);
	if (srup_keystore_remove(r->p.peers, r->cfg->server_id) != SRUP_KEYS_OK)
		srup_log(LOG_WARNING, "server %s's key was not in the peer store", r->server_text);
	srup_log(LOG_CRIT, "deregistered by server %s: its key removed, stopping (exit status 79; "
		 "record %s)", r->server_text, path);
	r->deregistered = true;
	if (r->p.deregistered)
		r->p.deregistered(r->p.user);
}

static void on_join_response(struct srup_role *r, const struct srup_msg *msg)
{
	char text[64];

	if (!r->join_sent || msg->token.len != strlen(r->join_token) ||
	    memcmp(msg->token.data, r->join_token, msg->token.len) != 0) {
		srup_log(LOG_WARNING, "RESPONSE 0x%02x from server %s ignored: it answers no "
			 "request of ours", msg->status, r->server_text);
		return;
	}
	r->join_sent = false;
	snprintf(text, sizeof(text), "0x%02x %s\n", msg->status,
		 msg->status == SRUP_STATUS_JOIN_SUCCESS ? "joined" : "refused");
	state_write(r->cfg, STATE_JOIN, text);
	srup_log(msg->status == SRUP_STATUS_JOIN_SUCCESS ? LOG_NOTICE : LOG_WARNING,
		 "join of server %s: RESPONSE 0x%02x (%s)", r->server_text, msg->status,
		 srup_status_name(msg->status) ? srup_status_name(msg->status) : "?");
}

void srup_role_connected(struct srup_role *r)
{
	char text[64], topic[SRUP_TOPIC_MAX];
	struct srup_msg *msg;

	if (!r || r->cfg->server_join != SRUP_CONFIG_JOIN_AUTO || r->join_sent ||
	    state_read(r->cfg, STATE_JOIN, text, sizeof(text)) == 0)
		return;
	msg = srup_msg_new(SRUP_TYPE_JOIN_REQUEST);
	if (!msg || srup_uuid4_text(r->join_token) != SRUP_OK) {
		srup_msg_free(msg);
		return;
	}
	srup_topic_server_join(r->cfg->server_id, srup_node_id(r->node), topic);
	if (srup_bytes_set(&msg->token, r->join_token, strlen(r->join_token)) == SRUP_OK &&
	    srup_node_send(r->node, msg, r->cfg->server_id, topic) == SRUP_NODE_OK) {
		r->join_sent = true;
		srup_log(LOG_NOTICE, "[server] join = auto: JOIN_REQ sent to server %s on %s",
			 r->server_text, topic);
	}
	srup_msg_free(msg);
}

bool srup_role_obeys(const struct srup_role *r, const struct srup_msg *msg)
{
	if (!r)
		return true;
	return !r->deregistered && (!r->terminated || msg->type == SRUP_TYPE_JOIN_COMMAND);
}

/* What the role answers: each server command and its handler. The node
 * hears each type from the configured server only; a RESPONSE (to the
 * role's own JOIN_REQ) is heard only with [server] join = auto. Adding a
 * command is one handler and one row. */
static const struct role_command {
	uint8_t type;
	void (*handle)(struct srup_role *r, const struct srup_msg *msg);
	bool with_auto_join_only;
} role_commands[] = {
	{SRUP_TYPE_ID_REQUEST, on_id_request, false},
	{SRUP_TYPE_INITIATE, on_initiate, false},
	{SRUP_TYPE_ACTIVATE, on_activate, false},
	{SRUP_TYPE_ACTION, on_action, false},
	{SRUP_TYPE_DATA, on_data, false},
	{SRUP_TYPE_GROUP_ADD, on_group_add, false},
	{SRUP_TYPE_GROUP_DELETE, on_group_leave, false},
	{SRUP_TYPE_GROUP_DESTROY, on_group_leave, false},
	{SRUP_TYPE_JOIN_COMMAND, on_join_command, false},
	{SRUP_TYPE_TERMINATE_COMMAND, on_terminate, false},
	{SRUP_TYPE_DEREGISTER_COMMAND, on_deregister, false},
	{SRUP_TYPE_RESPONSE, on_join_response, true},
};

static void dispatch(struct srup_node *node, const struct srup_msg *msg, const char *topic,
		     void *user)
{
	struct srup_role *r = user;

	(void)node;
	if (!srup_role_obeys(r, msg)) {
		srup_log(LOG_WARNING, "dropped %s on %s from server %s: %s", type_name(msg->type),
			 topic, r->server_text,
			 r->deregistered ? "it deregistered this device"
					 : "it terminated this device; only a JOIN_COMMAND is obeyed");
		return;
	}
	srup_log(LOG_INFO, "%s from server %s on %s", type_name(msg->type), r->server_text, topic);
	for (size_t i = 0; i < sizeof(role_commands) / sizeof(role_commands[0]); i++)
		if (role_commands[i].type == msg->type) {
			role_commands[i].handle(r, msg);
			return;
		}
}

/* ---- construction ------------------------------------------------------------------ */

static void default_identification(struct srup_role *r)
{
	char text[ROLE_STATE_FILE_MAX], pretty[200] = "";
	FILE *f = fopen("/etc/os-release", "re");

	if (f) {
		size_t n = fread(text, 1, sizeof(text) - 1, f);

		fclose(f);
		text[n] = '\0';
		char *save = NULL;

		for (char *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "PRETTY_NAME=", 12) != 0)
				continue;
			char *v = line + 12;
			size_t len = strlen(v);

			if (len >= 2 && (v[0] == '"' || v[0] == '\'') && v[len - 1] == v[0]) {
				v[len - 1] = '\0';
				v++;
			}
			snprintf(pretty, sizeof(pretty), "%s", v);
		}
	}
	if (pretty[0])
		snprintf(r->identification, sizeof(r->identification), "%s %s; %s", r->p.program,
			 SRUP_VERSION_TEXT, pretty);
	else
		snprintf(r->identification, sizeof(r->identification), "%s %s", r->p.program,
			 SRUP_VERSION_TEXT);
}

static void set_identification(struct srup_role *r)
{
	if (r->cfg->identification[0])
		snprintf(r->identification, sizeof(r->identification), "%s", r->cfg->identification);
	else
		default_identification(r);
}

void srup_role_reconfigured(struct srup_role *role)
{
	/* Everything else is read from the configuration when it is used. */
	if (role)
		set_identification(role);
}

/* Memberships of the last run, subscribed with the first connect. */
static int groups_restore(struct srup_role *r, char *err, size_t err_len)
{
	char text[64 * (SRUP_ROLE_GROUP_ID_MAX + 2) + 1], topic[SRUP_NODE_EXTRA_TOPIC_MAX];
	char *save = NULL;

	if (state_read(r->cfg, STATE_GROUPS, text, sizeof(text)) < 0)
		return 0;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!group_id_ok((const uint8_t *)line, strlen(line)) ||
		    r->n_groups == sizeof(r->groups) / sizeof(r->groups[0])) {
			set_detail(err, err_len, "%s/%s: not a list of group IDs", r->cfg->state_dir,
				   STATE_GROUPS);
			return -1;
		}
		snprintf(r->groups[r->n_groups++], sizeof(r->groups[0]), "%s", line);
		group_topic(line, topic);
		if (srup_node_add_topic(r->node, topic, NULL, NULL) != SRUP_NODE_OK) {
			set_detail(err, err_len, "cannot restore group %s", line);
			return -1;
		}
		srup_log(LOG_INFO, "member of group %s (restored)", line);
	}
	return 0;
}

int srup_role_new(sd_event *loop, struct srup_node *node, const struct srup_role_params *params,
		  struct srup_role **out, char *err, size_t err_len)
{
	struct srup_role *r;
	char text[64];

	*out = NULL;
	if (!loop || !node || !params || !params->cfg || !params->peers || !params->program) {
		set_detail(err, err_len, "srup_role_new: missing argument");
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		set_detail(err, err_len, "out of memory");
		return -1;
	}
	r->loop = sd_event_ref(loop);
	r->node = node;
	r->p = *params;
	r->cfg = params->cfg;
	srup_topic_device(srup_node_id(node), r->own_topic);
	srup_id_format16(r->cfg->server_id, r->server_text);
	set_identification(r);
	if (snprintf(r->updates_dir, sizeof(r->updates_dir), "%s/%s", r->cfg->state_dir,
		     STATE_UPDATES) >= (int)sizeof(r->updates_dir) ||
	    (mkdir(r->updates_dir, 0700) != 0 && errno != EEXIST)) {
		set_detail(err, err_len, "%s: %s", r->updates_dir, strerror(errno));
		goto fail;
	}
	r->terminated = state_read(r->cfg, STATE_TERMINATED, text, sizeof(text)) == 0;
	if (r->terminated)
		srup_log(LOG_NOTICE, "terminated by server %s earlier: only a JOIN_COMMAND is obeyed",
			 r->server_text);
	if (groups_restore(r, err, err_len) != 0)
		goto fail;
	/* Only the configured server commands this device (the node drops
	 * the same types from anyone else, logged). */
	for (size_t i = 0; i < sizeof(role_commands) / sizeof(role_commands[0]); i++) {
		const struct role_command *c = &role_commands[i];

		if (c->with_auto_join_only && r->cfg->server_join != SRUP_CONFIG_JOIN_AUTO)
			continue;
		if (srup_node_on(node, c->type, r->cfg->server_id, dispatch, r) != SRUP_NODE_OK) {
			set_detail(err, err_len, "cannot register the %s handler",
				   type_name(c->type));
			goto fail;
		}
	}
	*out = r;
	return 0;
fail:
	srup_role_free(r);
	return -1;
}

void srup_role_free(struct srup_role *r)
{
	if (!r)
		return;
	while (r->jobs)
		job_free(r->jobs);
	sd_event_unref(r->loop);
	free(r);
}
