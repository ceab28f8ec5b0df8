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
#include "srup_log.h"
#include "srup_update.h"

#ifndef SRUP_VERSION_TEXT
#define SRUP_VERSION_TEXT "unknown"
#endif

#define ROLE_DOWNLOADS_MAX 4
#define ROLE_TOKEN_FILE_MAX 64u   /* token bytes a staged file can be named after */
#define ROLE_STATE_FILE_MAX 8192u
#define ROLE_GROUP_PREFIX "SRUP/groups/"

#define STATE_GROUPS "groups"
#define STATE_TERMINATED "terminated"
#define STATE_DEREGISTERED "deregistered"
#define STATE_JOIN "join"
#define STATE_UPDATES "updates"

/* DATA taken by the application: nothing is sent (the seed defines no
 * RESPONSE to a handled DATA). */
#define SRUP_DEVICE_DATA_TAKEN 0x30

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
	struct srup_device_request *requests;
	/* The application's answers (borrowed from the device). */
	struct srup_device *dev;
	const struct srup_device_callbacks *cb;
	void *cb_user;
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

/* ---- requests ------------------------------------------------------------------ */

/* A server command waiting for its answer: from the application's
 * callback (srup_device.h), a download or a subscription. */
struct srup_device_request {
	struct srup_device_request *next;
	struct srup_role *role;
	uint8_t type;
	uint8_t *token;
	size_t token_len;
	struct srup_update *update;          /* INITIATE: its download */
	bool downloading;                    /* INITIATE: the download runs */
	bool asking;                         /* in the application's callback */
	bool asked;                          /* the application answers later */
	bool ended;                          /* completed within its callback */
	uint8_t answer;                      /* that completion's status */
	char staged[512];                    /* the token's staged file */
	char group[SRUP_ROLE_GROUP_ID_MAX + 1]; /* GROUP_* */
};

static struct srup_device_request *request_new(struct srup_role *r, const struct srup_msg *msg)
{
	struct srup_device_request *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->role = r;
	q->type = msg->type;
	q->token = malloc(msg->token.len ? msg->token.len : 1);
	if (!q->token) {
		free(q);
		return NULL;
	}
	memcpy(q->token, msg->token.data, msg->token.len);
	q->token_len = msg->token.len;
	q->next = r->requests;
	r->requests = q;
	return q;
}

static void request_free(struct srup_device_request *q)
{
	struct srup_device_request **pp;

	for (pp = &q->role->requests; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	}
	srup_update_free(q->update);
	free(q->token);
	free(q);
}

static size_t downloads_count(const struct srup_role *r)
{
	size_t n = 0;

	for (const struct srup_device_request *q = r->requests; q; q = q->next)
		n += q->downloading;
	return n;
}

static struct srup_device_request *request_find(struct srup_role *r, uint8_t type,
						const struct srup_msg *msg)
{
	for (struct srup_device_request *q = r->requests; q; q = q->next)
		if (q->type == type && q->token_len == msg->token.len &&
		    memcmp(q->token, msg->token.data, msg->token.len) == 0)
			return q;
	return NULL;
}

/* What a callback's answer that is not a status byte counts as. */
static uint8_t failure_status(uint8_t type)
{
	switch (type) {
	case SRUP_TYPE_INITIATE: return SRUP_STATUS_UPDATE_FAIL_FILE;
	case SRUP_TYPE_ACTIVATE: return SRUP_STATUS_ACTIVATE_FAIL;
	case SRUP_TYPE_ACTION: return SRUP_STATUS_ACTION_FAIL;
	case SRUP_TYPE_DATA: return SRUP_STATUS_DATA_TYPE_UNKNOWN;
	case SRUP_TYPE_GROUP_ADD: return 0x4F;
	case SRUP_TYPE_GROUP_DELETE:
	case SRUP_TYPE_GROUP_DESTROY: return 0x4D;
	case SRUP_TYPE_JOIN_COMMAND: return SRUP_STATUS_JOIN_REFUSED;
	default: return 0;
	}
}

static void settle(struct srup_device_request *q, uint8_t status);

/* The callback for q has returned rc. */
static void asked(struct srup_device_request *q, int rc)
{
	q->asking = false;
	if (q->ended) {
		if (rc != SRUP_DEVICE_LATER)
			srup_log(LOG_WARNING, "%s: answered twice (0x%02x completed, %d returned); "
				 "the completion counts", type_name(q->type), q->answer, rc);
		settle(q, q->answer);
		return;
	}
	if (rc == SRUP_DEVICE_LATER) {
		q->asked = true;
		return;
	}
	if (rc < 0 || rc > 255) {
		srup_log(LOG_ERR, "%s: the application answered %d, not a status (0..255): "
			 "answering 0x%02x", type_name(q->type), rc, failure_status(q->type));
		rc = failure_status(q->type);
	}
	settle(q, (uint8_t)rc);
}

uint8_t srup_device_request_type(const struct srup_device_request *q)
{
	return q ? q->type : 0;
}

const uint8_t *srup_device_request_token(const struct srup_device_request *q, size_t *len)
{
	if (len)
		*len = q ? q->token_len : 0;
	return q ? q->token : NULL;
}

enum srup_device_err srup_device_request_complete(struct srup_device_request *q, uint8_t status)
{
	if (!q)
		return SRUP_DEVICE_E_ARG;
	if (q->asking) {
		if (q->ended)
			return SRUP_DEVICE_E_STATE_ORDER;
		q->ended = true;
		q->answer = status;
		return SRUP_DEVICE_OK;
	}
	if (!q->asked)
		return SRUP_DEVICE_E_STATE_ORDER;
	q->asked = false;
	settle(q, status);
	return SRUP_DEVICE_OK;
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

/* A callback of the table, NULL when the application left it out. */
#define CALLBACK(r, name) ((r)->cb ? (r)->cb->name : NULL)

static void on_id_request(struct srup_role *r, const struct srup_msg *msg)
{
	struct srup_device_request *q;

	if (!CALLBACK(r, identification)) {
		send_data(r, "IDENTIFICATION_RESPONSE", r->identification,
			  strlen(r->identification), msg->token.data, msg->token.len);
		return;
	}
	if (!(q = request_new(r, msg))) {
		srup_log(LOG_ERR, "ID_REQ: out of memory");
		return;
	}
	q->asking = true;
	asked(q, r->cb->identification(r->dev, q, r->cb_user));
}

static void download_done(struct srup_update *u, const struct srup_update_result *res, void *user)
{
	struct srup_device_request *j = user;
	struct srup_role *r = j->role;
	char status_text[16];

	(void)u;
	j->downloading = false;
	/* The token's latest INITIATE decides: an older verified file of
	 * the same token must not be activated after this one failed. */
	if (res->outcome != SRUP_UPDATE_VERIFIED && unlink(j->staged) == 0)
		srup_log(LOG_INFO, "removed %s: the token's new download failed", j->staged);
	switch (res->outcome) {
	case SRUP_UPDATE_VERIFIED:
		srup_log(LOG_NOTICE, "update staged: %s (%" PRIu64 " bytes, SHA-256 verified)",
			 res->path, res->bytes);
		if (!CALLBACK(r, update_ready)) {
			settle(j, SRUP_STATUS_UPDATE_SUCCESS);
			return;
		}
		j->asking = true;
		asked(j, r->cb->update_ready(r->dev, j, j->staged, r->cb_user));
		return;
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
	request_free(j);
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
	struct srup_device_request *j;

	snprintf(c.ca_file, sizeof(c.ca_file), "%s", r->cfg->update.ca_file);
	if (request_find(r, SRUP_TYPE_INITIATE, msg)) {
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
	if (downloads_count(r) >= ROLE_DOWNLOADS_MAX) {
		srup_log(LOG_WARNING, "INITIATE refused (0xFD): %d downloads running already",
			 ROLE_DOWNLOADS_MAX);
		send_response(r, SRUP_STATUS_UPDATE_FAIL_SERVER, msg->token.data, msg->token.len);
		free(url);
		return;
	}
	for (char *ch = url; *ch; ch++)
		if (iscntrl((unsigned char)*ch))
			*ch = '?'; /* never reaches curl: a URL with control bytes is refused there */
	j = request_new(r, msg);
	if (j) {
		snprintf(j->staged, sizeof(j->staged), "%s/%s", r->updates_dir, name);
		j->downloading = true;
	}
	if (!j || srup_update_start(r->loop, &c, url, digest, r->updates_dir, name, download_done, j,
				    &j->update, err, sizeof(err)) != 0) {
		srup_log(LOG_ERR, "INITIATE: cannot start the download: %s", j ? err : "out of memory");
		send_response(r, SRUP_STATUS_UPDATE_FAIL_FILE, msg->token.data, msg->token.len);
		if (j)
			request_free(j);
		free(url);
		return;
	}
	srup_log(LOG_INFO, "INITIATE: downloading %s", url);
	free(url);
}

static void on_activate(struct srup_role *r, const struct srup_msg *msg)
{
	char name[2 * ROLE_TOKEN_FILE_MAX + 1];
	char path[512];
	struct stat st;
	struct srup_device_request *q;

	if (request_find(r, SRUP_TYPE_ACTIVATE, msg)) {
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
	if (!CALLBACK(r, activate)) {
		srup_log(LOG_WARNING, "ACTIVATE refused (0x1F): nothing activates updates here");
		send_response(r, SRUP_STATUS_ACTIVATE_FAIL, msg->token.data, msg->token.len);
		return;
	}
	if (!(q = request_new(r, msg))) {
		srup_log(LOG_ERR, "ACTIVATE: out of memory (0x1F)");
		send_response(r, SRUP_STATUS_ACTIVATE_FAIL, msg->token.data, msg->token.len);
		return;
	}
	snprintf(q->staged, sizeof(q->staged), "%s", path);
	q->asking = true;
	asked(q, r->cb->activate(r->dev, q, q->staged, r->cb_user));
}

static void on_action(struct srup_role *r, const struct srup_msg *msg)
{
	struct srup_device_request *q;

	if (!CALLBACK(r, action)) {
		srup_log(LOG_WARNING, "ACTION %u: no such action (0x2E)", msg->action_id);
		send_response(r, SRUP_STATUS_ACTION_UNKNOWN, msg->token.data, msg->token.len);
		return;
	}
	if (!(q = request_new(r, msg))) {
		srup_log(LOG_ERR, "ACTION %u: out of memory (0x2F)", msg->action_id);
		send_response(r, SRUP_STATUS_ACTION_FAIL, msg->token.data, msg->token.len);
		return;
	}
	q->asking = true;
	asked(q, r->cb->action(r->dev, q, msg->action_id, r->cb_user));
}

static void on_data(struct srup_role *r, const struct srup_msg *msg)
{
	struct srup_device_request *q;
	char *id;

	if (!CALLBACK(r, data)) {
		srup_log(LOG_WARNING, "DATA: data ID of %zu bytes not configured (0x3F)",
			 msg->data_id.len);
		send_response(r, SRUP_STATUS_DATA_TYPE_UNKNOWN, msg->token.data, msg->token.len);
		return;
	}
	/* The data ID as a C string: one with a NUL byte is nobody's. */
	if (memchr(msg->data_id.data, 0, msg->data_id.len)) {
		srup_log(LOG_WARNING, "DATA: data ID of %zu bytes holds a NUL byte (0x3F)",
			 msg->data_id.len);
		send_response(r, SRUP_STATUS_DATA_TYPE_UNKNOWN, msg->token.data, msg->token.len);
		return;
	}
	id = strndup((const char *)msg->data_id.data, msg->data_id.len);
	q = id ? request_new(r, msg) : NULL;
	if (!q) {
		srup_log(LOG_ERR, "DATA: out of memory");
		free(id);
		return;
	}
	q->asking = true;
	asked(q, r->cb->data(r->dev, q, id, msg->data.data, msg->data.len, r->cb_user));
	free(id);
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
	struct srup_device_request *j = user;
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
	request_free(j);
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

/* A GROUP_ADD the application accepted: subscribed, then persisted. */
static void group_join(struct srup_device_request *q)
{
	struct srup_role *r = q->role;
	char topic[SRUP_NODE_EXTRA_TOPIC_MAX];
	uint8_t status = GROUP_ADD_FAIL;

	if (group_find(r, q->group) >= 0) {
		status = GROUP_ADD_SUCCESS;
	} else if (r->n_groups >= r->cfg->groups_max) {
		srup_log(LOG_WARNING, "GROUP_ADD %s refused (0x4E): already in %zu groups, the "
			 "[groups] max", q->group, r->n_groups);
		status = GROUP_ADD_FAIL_LIMIT;
	} else {
		group_topic(q->group, topic);
		if (srup_node_add_topic(r->node, topic, group_subscribed, q) == SRUP_NODE_OK)
			return; /* answered once the broker did */
	}
	send_response(r, status, q->token, q->token_len);
	request_free(q);
}

static void on_group_add(struct srup_role *r, const struct srup_msg *msg)
{
	char group[SRUP_ROLE_GROUP_ID_MAX + 1];
	struct srup_device_request *q;

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
	if (!(q = request_new(r, msg))) {
		send_response(r, GROUP_ADD_FAIL, msg->token.data, msg->token.len);
		return;
	}
	snprintf(q->group, sizeof(q->group), "%s", group);
	if (!CALLBACK(r, group_add)) {
		settle(q, GROUP_ADD_SUCCESS);
		return;
	}
	q->asking = true;
	asked(q, r->cb->group_add(r->dev, q, q->group, r->cb_user));
}

/* A GROUP_DELETE or GROUP_DESTROY the application accepted. */
static void group_leave(struct srup_device_request *q)
{
	struct srup_role *r = q->role;
	char topic[SRUP_NODE_EXTRA_TOPIC_MAX];
	uint8_t status = GROUP_DEL_SUCCESS;
	int at = group_find(r, q->group);

	if (at < 0) {
		srup_log(LOG_WARNING, "%s %s: not a member (0x4C)", type_name(q->type), q->group);
		send_response(r, GROUP_DEL_INVALID, q->token, q->token_len);
		return;
	}
	group_topic(q->group, topic);
	memmove(r->groups[at], r->groups[at + 1], (r->n_groups - (size_t)at - 1) * sizeof(r->groups[0]));
	r->n_groups--;
	if (srup_node_remove_topic(r->node, topic) != SRUP_NODE_OK || groups_save(r) != 0)
		status = GROUP_DEL_FAIL;
	else
		srup_log(LOG_NOTICE, "left group %s", q->group);
	send_response(r, status, q->token, q->token_len);
}

static void on_group_leave(struct srup_role *r, const struct srup_msg *msg)
{
	bool destroy = msg->type == SRUP_TYPE_GROUP_DESTROY;
	char group[SRUP_ROLE_GROUP_ID_MAX + 1];
	struct srup_device_request *q;
	int (*ask)(struct srup_device *, struct srup_device_request *, const char *, void *);

	if (!group_of(r, msg, !destroy, GROUP_DEL_INVALID, group))
		return;
	if (group_find(r, group) < 0) {
		srup_log(LOG_WARNING, "%s %s: not a member (0x4C)", type_name(msg->type), group);
		send_response(r, GROUP_DEL_INVALID, msg->token.data, msg->token.len);
		return;
	}
	if (!(q = request_new(r, msg))) {
		send_response(r, GROUP_DEL_FAIL, msg->token.data, msg->token.len);
		return;
	}
	snprintf(q->group, sizeof(q->group), "%s", group);
	ask = destroy ? CALLBACK(r, group_destroy) : CALLBACK(r, group_delete);
	if (!ask) {
		settle(q, GROUP_DEL_SUCCESS);
		return;
	}
	q->asking = true;
	asked(q, ask(r->dev, q, q->group, r->cb_user));
}

/* ---- joining, termination, deregistration ----------------------------------------- */

static void on_join_command(struct srup_role *r, const struct srup_msg *msg)
{
	struct srup_device_request *q;

	if (msg->device_id != srup_node_id(r->node)) {
		char dev[17];

		srup_id_format16(msg->device_id, dev);
		srup_log(LOG_WARNING, "JOIN_COMMAND ignored: it names device %s, not this one", dev);
		return;
	}
	if (!(q = request_new(r, msg))) {
		srup_log(LOG_ERR, "JOIN_COMMAND: out of memory");
		return;
	}
	if (CALLBACK(r, join_command)) {
		q->asking = true;
		asked(q, r->cb->join_command(r->dev, q, r->cb_user));
		return;
	}
	if (r->cfg->join_command == SRUP_CONFIG_JOIN_COMMAND_REFUSE) {
		srup_log(LOG_NOTICE, "JOIN_COMMAND from server %s refused ([join] command = refuse)",
			 r->server_text);
		settle(q, SRUP_STATUS_JOIN_REFUSED);
		return;
	}
	/* The seed's status for an accepted join command. */
	settle(q, GROUP_DEL_SUCCESS);
}

/* TERMINATE_CMD and DEREGISTER_CMD: the application is told, the role
 * obeys whatever it answers; the request ends with the call. */
static void tell(struct srup_role *r, const struct srup_msg *msg,
		 int (*fn)(struct srup_device *, struct srup_device_request *, void *))
{
	struct srup_device_request *q;

	if (!fn || !(q = request_new(r, msg)))
		return;
	q->asking = true;
	(void)fn(r->dev, q, r->cb_user);
	request_free(q);
}

static void on_terminate(struct srup_role *r, const struct srup_msg *msg)
{
	char text[64];

	tell(r, msg, CALLBACK(r, terminate));
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

	tell(r, msg, CALLBACK(r, deregister));
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

/* ---- answers ------------------------------------------------------------------------ */

/* The request's answer is status: what the role does with it, then the
 * RESPONSE. Ends the request (a GROUP_ADD once subscribed). */
static void settle(struct srup_device_request *q, uint8_t status)
{
	struct srup_role *r = q->role;

	switch (q->type) {
	case SRUP_TYPE_ID_REQUEST:
		break; /* its answer was the DATA */
	case SRUP_TYPE_INITIATE:
		/* Not taken: the staged copy must not be activated later. */
		if (status != SRUP_STATUS_UPDATE_SUCCESS && unlink(q->staged) == 0)
			srup_log(LOG_INFO, "removed %s: the update was refused (0x%02x)", q->staged,
				 status);
		send_response(r, status, q->token, q->token_len);
		break;
	case SRUP_TYPE_ACTIVATE:
		send_response(r, status, q->token, q->token_len);
		/* Applied: the staged copy is no longer needed. A failed one
		 * stays for another ACTIVATE. */
		if (status == SRUP_STATUS_ACTIVATE_SUCCESS && unlink(q->staged) != 0)
			srup_log(LOG_WARNING, "cannot remove %s: %s", q->staged, strerror(errno));
		break;
	case SRUP_TYPE_DATA:
		/* The seed defines no answer to a handled DATA. */
		if (status != SRUP_DEVICE_DATA_TAKEN)
			send_response(r, status, q->token, q->token_len);
		break;
	case SRUP_TYPE_GROUP_ADD:
		if (status == GROUP_ADD_SUCCESS) {
			group_join(q);
			return;
		}
		send_response(r, status, q->token, q->token_len);
		break;
	case SRUP_TYPE_GROUP_DELETE:
	case SRUP_TYPE_GROUP_DESTROY:
		if (status == GROUP_DEL_SUCCESS)
			group_leave(q);
		else
			send_response(r, status, q->token, q->token_len);
		break;
	case SRUP_TYPE_JOIN_COMMAND:
		if (status == GROUP_DEL_SUCCESS && r->terminated) {
			state_remove(r->cfg, STATE_TERMINATED);
			r->terminated = false;
			srup_log(LOG_NOTICE, "joined server %s again: its commands are obeyed",
				 r->server_text);
		}
		send_response(r, status, q->token, q->token_len);
		break;
	default:
		send_response(r, status, q->token, q->token_len);
		break;
	}
	request_free(q);
}

enum srup_device_err srup_device_request_send_data(struct srup_device_request *q,
						   const char *data_id, const void *data,
						   size_t len)
{
	if (!q || !data_id || !data_id[0] || (len && !data))
		return SRUP_DEVICE_E_ARG;
	if (q->role->deregistered)
		return SRUP_DEVICE_E_DEREGISTERED;
	send_data(q->role, data_id, data, len, q->token, q->token_len);
	return SRUP_DEVICE_OK;
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

bool srup_role_hears(const struct srup_role *r, uint8_t type)
{
	for (size_t i = 0; r && i < sizeof(role_commands) / sizeof(role_commands[0]); i++)
		if (role_commands[i].type == type)
			return !role_commands[i].with_auto_join_only ||
			       r->cfg->server_join == SRUP_CONFIG_JOIN_AUTO;
	return false;
}

void srup_role_handle(struct srup_role *r, const struct srup_msg *msg, const char *topic)
{
	dispatch(r->node, msg, topic, r);
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
	while (r->requests)
		request_free(r->requests);
	sd_event_unref(r->loop);
	free(r);
}

void srup_role_set_callbacks(struct srup_role *r, struct srup_device *dev,
			     const struct srup_device_callbacks *cb, void *user)
{
	r->dev = dev;
	r->cb = cb;
	r->cb_user = user;
}

int srup_role_send_data(struct srup_role *r, const char *data_id, const void *data, size_t len)
{
	char token[SRUP_UUID_TEXT_LEN + 1];

	if (r->deregistered)
		return -1;
	if (srup_uuid4_text(token) != SRUP_OK)
		return -1;
	send_data(r, data_id, data, len, (const uint8_t *)token, strlen(token));
	return 0;
}

void srup_role_token_text(const uint8_t *token, size_t len, char *out, size_t out_len)
{
	bool printable = len > 0;

	for (size_t i = 0; i < len; i++)
		printable = printable && isgraph(token[i]);
	if (printable && len < out_len) {
		snprintf(out, out_len, "%.*s", (int)len, (const char *)token);
		return;
	}
	if (len == 0 || len > ROLE_TOKEN_FILE_MAX || out_len < 2 * len + 1) {
		snprintf(out, out_len, "-");
		return;
	}
	for (size_t i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", token[i]);
}
