/* The hook adapter: srup_device.h's callbacks answered by operator
 * programs from the INI configuration, each run with srup_hook (fork +
 * execve, off the loop, with a timeout); the request is completed when
 * the program ends:
 *
 *   ACTIVATE -> [update] activate <staged file> <token> -> 0x10 / 0x1F
 *   ACTION   -> [actions] <id>                         -> 0x20 / 0x2F; unknown 0x2E
 *   DATA     -> [data] <id>, the data on its stdin     -> taken; unknown 0x3F */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srup.h"
#include "srup_device_private.h"
#include "srup_hook.h"
#include "srup_log.h"

#define HOOKS_RUNNING_MAX 8
#define HOOK_DATA_TAKEN 0x30

struct hook_run {
	struct hook_run *next;
	struct device_hooks *hooks;
	struct srup_device_request *req;
	struct srup_hook *hook;
};

struct device_hooks {
	struct srup_device *dev;
	struct hook_run *runs;
};

static void run_free(struct hook_run *run)
{
	for (struct hook_run **pp = &run->hooks->runs; *pp; pp = &(*pp)->next)
		if (*pp == run) {
			*pp = run->next;
			break;
		}
	srup_hook_free(run->hook);
	free(run);
}

static size_t runs_count(const struct device_hooks *h)
{
	size_t n = 0;

	for (const struct hook_run *run = h->runs; run; run = run->next)
		n++;
	return n;
}

static void hook_done(const struct srup_hook_result *res, void *user)
{
	struct hook_run *run = user;
	struct srup_device_request *req = run->req;
	bool ok = srup_hook_succeeded(res);
	uint8_t status;

	switch (srup_device_request_type(req)) {
	case SRUP_TYPE_ACTIVATE:
		status = ok ? SRUP_STATUS_ACTIVATE_SUCCESS : SRUP_STATUS_ACTIVATE_FAIL;
		break;
	case SRUP_TYPE_ACTION:
		status = ok ? SRUP_STATUS_ACTION_SUCCESS : SRUP_STATUS_ACTION_FAIL;
		break;
	default:
		status = HOOK_DATA_TAKEN;
		break;
	}
	run_free(run);
	srup_device_request_complete(req, status);
}

/* Run command (a configured <command>) with extra arguments appended;
 * false if it could not be started (logged). */
static bool run_hook(struct device_hooks *h, struct srup_device_request *req, const char *name,
		    const char *command, const char *const extra[], size_t n_extra,
		    const void *in, size_t in_len)
{
	const struct srup_config *cfg = srup_device_config(h->dev);
	char buf[512], err[512] = "";
	char *argv[SRUP_CONFIG_COMMAND_WORDS + 4];
	struct hook_run *run;
	int n;

	if (runs_count(h) >= HOOKS_RUNNING_MAX) {
		srup_log(LOG_WARNING, "hook %s not run: %d hooks are running already", name,
			 HOOKS_RUNNING_MAX);
		return false;
	}
	n = srup_config_split_command(command, buf, sizeof(buf), argv, SRUP_CONFIG_COMMAND_WORDS + 1);
	if (n < 0) {
		srup_log(LOG_ERR, "hook %s: bad command", name);
		return false;
	}
	for (size_t i = 0; i < n_extra; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	run = calloc(1, sizeof(*run));
	if (!run) {
		srup_log(LOG_ERR, "hook %s not run: out of memory", name);
		return false;
	}
	run->hooks = h;
	run->req = req;
	if (srup_hook_start(srup_device_event(h->dev), name, argv, in, in_len,
			    cfg->hook_timeout_seconds, hook_done, run, &run->hook, err,
			    sizeof(err)) != 0) {
		srup_log(LOG_ERR, "hook %s not run: %s", name, err);
		free(run);
		return false;
	}
	run->next = h->runs;
	h->runs = run;
	return true;
}

static int on_activate(struct srup_device *dev, struct srup_device_request *req,
		       const char *path, void *user)
{
	const struct srup_config *cfg = srup_device_config(dev);
	const uint8_t *token;
	size_t token_len;
	char text[2 * 64 + 1];

	if (!cfg->update.activate[0]) {
		srup_log(LOG_WARNING, "ACTIVATE refused (0x1F): no [update] activate hook configured");
		return SRUP_STATUS_ACTIVATE_FAIL;
	}
	token = srup_device_request_token(req, &token_len);
	srup_role_token_text(token, token_len, text, sizeof(text));
	const char *extra[] = {path, text};

	if (run_hook(user, req, "activate", cfg->update.activate, extra, 2, NULL, 0))
		return SRUP_DEVICE_LATER;
	return SRUP_STATUS_ACTIVATE_FAIL;
}

static int on_action(struct srup_device *dev, struct srup_device_request *req, uint8_t action_id,
		     void *user)
{
	const struct srup_config *cfg = srup_device_config(dev);
	const struct srup_config_hook *hook = NULL;
	char name[16];

	for (size_t i = 0; i < cfg->n_actions && !hook; i++)
		if (cfg->actions[i].action_id == action_id)
			hook = &cfg->actions[i];
	if (!hook) {
		srup_log(LOG_WARNING, "ACTION %u: no such action configured (0x2E)", action_id);
		return SRUP_STATUS_ACTION_UNKNOWN;
	}
	snprintf(name, sizeof(name), "action-%u", action_id);
	if (run_hook(user, req, name, hook->command, NULL, 0, NULL, 0))
		return SRUP_DEVICE_LATER;
	return SRUP_STATUS_ACTION_FAIL;
}

static int on_data(struct srup_device *dev, struct srup_device_request *req, const char *data_id,
		   const void *data, size_t len, void *user)
{
	const struct srup_config *cfg = srup_device_config(dev);
	const struct srup_config_hook *hook = NULL;
	char name[SRUP_CONFIG_DATA_ID_MAX + 8];

	for (size_t i = 0; i < cfg->n_data && !hook; i++)
		if (strcmp(cfg->data[i].id, data_id) == 0)
			hook = &cfg->data[i];
	if (!hook) {
		srup_log(LOG_WARNING, "DATA: data ID of %zu bytes not configured (0x3F)",
			 strlen(data_id));
		return SRUP_STATUS_DATA_TYPE_UNKNOWN;
	}
	snprintf(name, sizeof(name), "data-%s", hook->id);
	if (run_hook(user, req, name, hook->command, NULL, 0, data, len))
		return SRUP_DEVICE_LATER;
	/* Not run (logged): nothing is sent, as for a handled DATA. */
	return HOOK_DATA_TAKEN;
}

/* The device ends the table: running hooks are killed, their requests
 * left to the device (which frees them unanswered). */
static void hooks_free(void *user)
{
	struct device_hooks *h = user;

	while (h->runs)
		run_free(h->runs);
	free(h);
}

int srup_device_hooks_attach(struct srup_device *dev)
{
	static const struct srup_device_callbacks cb = {
		.size = sizeof(struct srup_device_callbacks),
		.activate = on_activate,
		.action = on_action,
		.data = on_data,
	};
	struct device_hooks *h = calloc(1, sizeof(*h));

	if (!h)
		return -1;
	h->dev = dev;
	if (srup_device_set_callbacks(dev, &cb, h, hooks_free) == 0) {
		free(h);
		return -1;
	}
	return 0;
}
