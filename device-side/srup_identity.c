#include "srup_identity.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srup_log.h"

/* Adds a line to err ('\n' between lines); a line that does not fit whole
 * is left out, except the first. */
__attribute__((format(printf, 3, 4))) static void append_line(char *err, size_t len,
							      const char *fmt, ...)
{
	size_t used = err && len ? strlen(err) : 0;
	char line[1024];
	va_list ap;
	int n;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	n = snprintf(err + used, len - used, "%s%s", used ? "\n" : "", line);
	if (used && (n < 0 || (size_t)n >= len - used))
		err[used] = '\0';
}

int srup_identity_load(const struct srup_config *cfg, struct srup_identity *id, char *err,
		       size_t err_len)
{
	char detail[512] = "", where[SRUP_CONFIG_PATH_MAX + 16];

	memset(id, 0, sizeof(*id));
	if (err && err_len)
		err[0] = '\0';
	/* Both keys are tried, so that both are reported in one pass. */
	if (srup_key_load_private(cfg->identity_private_key, &id->private_key, detail,
				  sizeof(detail)) != SRUP_KEYS_OK)
		append_line(err, err_len, "%s: [identity] private_key: %s",
			    srup_config_where(cfg, "identity", "private_key", where, sizeof(where)),
			    detail);
	if (srup_key_load_public(cfg->server_public_key, &id->server_key, detail,
				 sizeof(detail)) != SRUP_KEYS_OK)
		append_line(err, err_len, "%s: [server] public_key: %s",
			    srup_config_where(cfg, "server", "public_key", where, sizeof(where)),
			    detail);
	if (!id->private_key || !id->server_key)
		goto fail;
	if (srup_keystore_open(NULL, &id->peers, detail, sizeof(detail)) != SRUP_KEYS_OK ||
	    srup_keystore_add(id->peers, cfg->server_id, id->server_key) != SRUP_KEYS_OK) {
		snprintf(err, err_len, "cannot set up the key store: %s", detail);
		goto fail;
	}
	return 0;
fail:
	srup_identity_free(id);
	return -1;
}

void srup_identity_free(struct srup_identity *id)
{
	srup_keystore_free(id->peers);
	EVP_PKEY_free(id->private_key);
	EVP_PKEY_free(id->server_key);
	memset(id, 0, sizeof(*id));
}

void srup_node_config_from(const struct srup_config *cfg, enum srup_node_role role,
			   struct srup_node_config *out)
{
	memset(out, 0, sizeof(*out));
	out->role = role;
	out->id = cfg->identity_id;
	snprintf(out->broker, sizeof(out->broker), "%s", cfg->mqtt_broker);
	snprintf(out->ca_file, sizeof(out->ca_file), "%s", cfg->mqtt_ca_file);
	snprintf(out->cert_file, sizeof(out->cert_file), "%s", cfg->mqtt_cert_file);
	snprintf(out->key_file, sizeof(out->key_file), "%s", cfg->mqtt_key_file);
	snprintf(out->state_dir, sizeof(out->state_dir), "%s", cfg->state_dir);
}

void srup_log_lines(int priority, const char *text)
{
	while (text && *text) {
		size_t n = strcspn(text, "\n");

		srup_log(priority, "%.*s", (int)n, text);
		text += n + (text[n] == '\n');
	}
}

int srup_setup_load(const char *path, enum srup_config_kind kind, bool check,
		    struct srup_config *cfg, struct srup_identity *id)
{
	/* Room for every problem a file can have at once. */
	enum { REPORT_MAX = 16384 };
	char *report = malloc(REPORT_MAX);
	bool loaded;
	int failed = 0;

	memset(id, 0, sizeof(*id));
	if (!report) {
		srup_log(LOG_ERR, "%s: cannot check: out of memory", path);
		return -1;
	}
	loaded = srup_config_load(path, kind, cfg, report, REPORT_MAX) == 0;
	if (check) {
		for (size_t i = 0; i < cfg->n_files; i++)
			printf("read %s\n", cfg->files[i]);
		fflush(stdout);
	}
	if (!loaded) {
		srup_log_lines(LOG_ERR, report);
		failed = 1;
	} else if (srup_identity_load(cfg, id, report, REPORT_MAX) != 0) {
		srup_log_lines(LOG_ERR, report);
		failed = 1;
	}
	/* What the channel needs, in the same pass (only what the files set
	 * is looked at, so a file that stopped parsing adds nothing false). */
	if (cfg->n_files && srup_config_check_channels(cfg, kind, report, REPORT_MAX) > 0) {
		bool fatal = check && kind == SRUP_CONFIG_OBSERVER;

		srup_log_lines(fatal ? LOG_ERR : LOG_WARNING, report);
		failed |= fatal;
	}
	free(report);
	if (failed)
		srup_identity_free(id);
	return failed ? -1 : 0;
}
