#include "srup_device_run.h"

#include <signal.h>
#include <stdio.h>

#include "srup_config.h"
#include "srup_exit.h"
#include "srup_identity.h"
#include "srup_log.h"
#include "srup_node.h"
#include "srup_role.h"

#define RUN_FLUSH_MS 5000

struct device_run {
	sd_event *loop;
	struct srup_config cfg;
	struct srup_identity id;
	struct srup_node *node;
	struct srup_role *role;
	bool deregistered;
};

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	struct device_run *d = user;

	(void)s;
	srup_log(LOG_NOTICE, "signal %u: shutting down", si->ssi_signo);
	sd_event_exit(d->loop, SRUP_EXIT_OK);
	return 0;
}

static void on_deregistered(void *user)
{
	struct device_run *d = user;

	d->deregistered = true;
	sd_event_exit(d->loop, SRUP_EXIT_DEREGISTERED);
}

static void on_connected(struct srup_node *node, void *user)
{
	struct device_run *d = user;

	(void)node;
	srup_log(LOG_INFO, "connected to the broker; answering server commands");
	srup_role_connected(d->role);
}

static int run_start(struct device_run *d)
{
	const struct srup_role_params rp = {
		.program = "srup-device",
		.cfg = &d->cfg,
		.peers = d->id.peers,
		.deregistered = on_deregistered,
		.user = d,
	};
	struct srup_node_config ncfg;
	char detail[512];
	enum srup_node_err nerr;
	sigset_t mask;

	if (sd_event_new(&d->loop) < 0) {
		srup_log(LOG_ERR, "cannot create the event loop");
		return SRUP_EXIT_FAILURE;
	}
	/* Blocked before any thread exists (Paho's, the downloads'), so that
	 * only the loop's signalfd sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (sd_event_add_signal(d->loop, NULL, SIGTERM, on_signal, d) < 0 ||
	    sd_event_add_signal(d->loop, NULL, SIGINT, on_signal, d) < 0) {
		srup_log(LOG_ERR, "cannot watch signals");
		return SRUP_EXIT_FAILURE;
	}
	srup_node_config_from(&d->cfg, SRUP_NODE_ROLE_DEVICE, &ncfg);
	nerr = srup_node_new(d->loop, &ncfg, d->id.private_key, d->id.peers, &d->node, detail,
			     sizeof(detail));
	if (nerr != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "%s: %s", srup_node_strerror(nerr), detail);
		return nerr == SRUP_NODE_E_ARG || nerr == SRUP_NODE_E_STATE ? SRUP_EXIT_CONFIG
									    : SRUP_EXIT_FAILURE;
	}
	if (srup_role_new(d->loop, d->node, &rp, &d->role, detail, sizeof(detail)) != 0) {
		srup_log(LOG_ERR, "device role: %s", detail);
		return SRUP_EXIT_CONFIG;
	}
	if (srup_node_connect(d->node, on_connected, d) != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot connect to %s", d->cfg.mqtt_broker);
		return SRUP_EXIT_FAILURE;
	}
	return SRUP_EXIT_OK;
}

int srup_device_run(const char *config_path, bool verbose)
{
	struct device_run d = {0};
	char err[4096];
	char own[SRUP_TOPIC_MAX];
	int rc;

	if (verbose)
		srup_log_set_level(LOG_DEBUG);
	if (srup_config_load(config_path, SRUP_CONFIG_DEVICE, &d.cfg, err, sizeof(err)) != 0) {
		srup_log_lines(LOG_ERR, err);
		return SRUP_EXIT_CONFIG;
	}
	if (srup_role_deregistered(&d.cfg, err, sizeof(err))) {
		srup_log(LOG_CRIT, "%s", err);
		return SRUP_EXIT_DEREGISTERED;
	}
	if (srup_identity_load(&d.cfg, &d.id, err, sizeof(err)) != 0) {
		srup_log_lines(LOG_ERR, err);
		return SRUP_EXIT_CONFIG;
	}
	rc = run_start(&d);
	if (rc == SRUP_EXIT_OK) {
		srup_topic_device(d.cfg.identity_id, own);
		srup_log(LOG_NOTICE, "srup-device run started: device %s on %s", own,
			 d.cfg.mqtt_broker);
		rc = sd_event_loop(d.loop);
		if (rc < 0)
			rc = SRUP_EXIT_FAILURE;
		/* A deregistered node sends nothing more (seed 9.2). */
		if (!d.deregistered && srup_node_flush(d.node, RUN_FLUSH_MS) != SRUP_NODE_OK)
			srup_log(LOG_WARNING, "some messages were not acknowledged by the broker "
				 "before shutdown");
		srup_log(LOG_NOTICE, "srup-device run stopped (exit status %d)", rc);
	}
	srup_role_free(d.role);
	srup_node_free(d.node);
	srup_identity_free(&d.id);
	sd_event_unref(d.loop);
	return rc;
}
