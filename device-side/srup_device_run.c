#include "srup_device_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "srup_config.h"
#include "srup_config_reload.h"
#include "srup_device_private.h"
#include "srup_exit.h"
#include "srup_identity.h"
#include "srup_log.h"
#include "srup_node.h"
#include "srup_role.h"

#define RUN_FLUSH_MS 5000
/* The node reports connections but not losses: STATUS= polls for those. */
#define STATUS_POLL_USEC (2u * 1000000u)

struct device_run {
	sd_event *loop;
	const char *config_path;
	struct srup_config cfg;
	struct srup_identity id;
	struct srup_device *dev; /* node and role, answering by the hook adapter */
	bool deregistered;
	/* What systemd was last told (sd_notify; no-ops outside systemd). */
	sd_event_source *status_timer;
	bool ready;
	char status[640];
	/* Restart-only keys a reload found changed (srup_config_reload.h). */
	char restart_needed[512];
};

static void notify_status(struct device_run *d)
{
	char text[sizeof(d->status)];

	snprintf(text, sizeof(text), "broker %s; answering server commands%s%s",
		 srup_device_is_connected(d->dev) ? "connected" : "disconnected",
		 d->restart_needed[0] ? "; restart needed for: " : "", d->restart_needed);
	if (strcmp(text, d->status) == 0)
		return;
	memcpy(d->status, text, sizeof(text));
	sd_notifyf(0, "STATUS=%s", text);
}

static int on_status_poll(sd_event_source *s, uint64_t usec, void *user)
{
	notify_status(user);
	return sd_event_source_set_time(s, usec + STATUS_POLL_USEC);
}

/* SIGHUP: the file (and what the loader reads with it) into a fresh
 * configuration, checked as at start; refused whole if anything fails.
 * Otherwise hooks, actions, data handlers, update settings, the
 * JOIN_COMMAND policy and the identification text apply to the next
 * command; restart-only keys keep their running values and are named.
 * RELOADING=1 ... READY=1 is systemd's reload protocol for Type=notify. */
static void reload(struct device_run *d)
{
	struct srup_config *next = calloc(1, sizeof(*next));
	struct srup_identity check = {0};
	char err[2048], restart[sizeof(d->restart_needed)];
	struct timespec ts;

	if (d->ready && clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the configuration\n"
			   "MONOTONIC_USEC=%llu",
			   (unsigned long long)ts.tv_sec * 1000000ull +
				   (unsigned long long)ts.tv_nsec / 1000ull);
	if (!next) {
		srup_log(LOG_ERR, "reload refused: out of memory; running on unchanged");
		goto done;
	}
	if (srup_config_load(d->config_path, SRUP_CONFIG_DEVICE, next, err, sizeof(err)) != 0 ||
	    srup_identity_load(next, &check, err, sizeof(err)) != 0) {
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			srup_log(LOG_ERR, "reload refused: %s", line);
		srup_log(LOG_ERR, "reload refused: the configuration in %s fails its checks; "
			 "running on unchanged", d->config_path);
		goto done;
	}
	srup_config_reload_merge(&d->cfg, next, restart, sizeof(restart));
	/* In place: the device role borrows d->cfg. */
	d->cfg = *next;
	srup_role_reconfigured(srup_device_role(d->dev));
	memcpy(d->restart_needed, restart, sizeof(restart));
	if (restart[0])
		srup_log(LOG_WARNING, "reload: restart needed for: %s", restart);
	srup_log(LOG_NOTICE, "reload: %s (%zu drop-in file(s)) applied (%zu actions, %zu data "
		 "handlers)", d->config_path, d->cfg.n_files ? d->cfg.n_files - 1 : 0,
		 d->cfg.n_actions, d->cfg.n_data);
done:
	srup_identity_free(&check);
	if (next) {
		explicit_bzero(next, sizeof(*next));
		free(next);
	}
	if (d->ready)
		sd_notify(0, "READY=1");
	d->status[0] = '\0'; /* STATUS= again, after the reload's own */
	notify_status(d);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	(void)s;
	(void)si;
	reload(user);
	return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	struct device_run *d = user;

	(void)s;
	srup_log(LOG_NOTICE, "signal %u: shutting down", si->ssi_signo);
	sd_notify(0, "STOPPING=1");
	sd_event_exit(d->loop, SRUP_EXIT_OK);
	return 0;
}

static void on_deregistered(struct srup_device *dev, void *user)
{
	struct device_run *d = user;

	(void)dev;
	d->deregistered = true;
	sd_event_exit(d->loop, SRUP_EXIT_DEREGISTERED);
}

static void on_connection(struct srup_device *dev, bool connected, const char *broker,
			  void *user)
{
	struct device_run *d = user;

	(void)dev;
	(void)broker;
	if (!connected)
		return;
	srup_log(LOG_INFO, "connected to the broker; answering server commands");
	/* Ready means commands can arrive: the node calls this only once the
	 * session is up and every subscription (own topic, groups) granted. */
	if (!d->ready) {
		d->ready = true;
		sd_notify(0, "READY=1");
	}
	notify_status(d);
}

static int run_start(struct device_run *d)
{
	struct srup_device_borrowed bp = {
		.program = "srup-device",
		.cfg = &d->cfg,
		.id = &d->id,
	};
	char detail[768];
	enum srup_device_err err;
	sigset_t mask;

	if (sd_event_new(&d->loop) < 0) {
		srup_log(LOG_ERR, "cannot create the event loop");
		return SRUP_EXIT_FAILURE;
	}
	/* WATCHDOG=1 from the loop itself, at half of WatchdogSec= (nothing
	 * without it), so a wedged loop is what the watchdog catches. */
	if (sd_event_set_watchdog(d->loop, true) < 0)
		srup_log(LOG_WARNING, "cannot arm the systemd watchdog");
	if (sd_event_add_time_relative(d->loop, &d->status_timer, CLOCK_MONOTONIC,
				       STATUS_POLL_USEC, 0, on_status_poll, d) < 0 ||
	    sd_event_source_set_enabled(d->status_timer, SD_EVENT_ON) < 0) {
		srup_log(LOG_ERR, "cannot create the status timer");
		return SRUP_EXIT_FAILURE;
	}
	/* Blocked before any thread exists (Paho's, the downloads'), so that
	 * only the loop's signalfd sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (sd_event_add_signal(d->loop, NULL, SIGTERM, on_signal, d) < 0 ||
	    sd_event_add_signal(d->loop, NULL, SIGINT, on_signal, d) < 0 ||
	    sd_event_add_signal(d->loop, NULL, SIGHUP, on_reload_signal, d) < 0) {
		srup_log(LOG_ERR, "cannot watch signals");
		return SRUP_EXIT_FAILURE;
	}
	bp.loop = d->loop;
	err = srup_device_new_borrowed(&bp, &d->dev, detail, sizeof(detail));
	if (err != SRUP_DEVICE_OK) {
		srup_log(LOG_ERR, "%s", detail);
		return err == SRUP_DEVICE_E_CONFIG || err == SRUP_DEVICE_E_STATE ? SRUP_EXIT_CONFIG
										 : SRUP_EXIT_FAILURE;
	}
	if (srup_device_hooks_attach(d->dev) != 0 ||
	    !srup_device_on_connection(d->dev, on_connection, d, NULL) ||
	    !srup_device_on_deregistered(d->dev, on_deregistered, d, NULL)) {
		srup_log(LOG_ERR, "out of memory");
		return SRUP_EXIT_FAILURE;
	}
	if (srup_device_start(d->dev) != SRUP_DEVICE_OK) {
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
	d.config_path = config_path;
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
		notify_status(&d);
		rc = sd_event_loop(d.loop);
		if (rc < 0)
			rc = SRUP_EXIT_FAILURE;
		/* A deregistered node sends nothing more (seed 9.2). */
		if (!d.deregistered && srup_device_flush(d.dev, RUN_FLUSH_MS) != SRUP_DEVICE_OK)
			srup_log(LOG_WARNING, "some messages were not acknowledged by the broker "
				 "before shutdown");
		srup_log(LOG_NOTICE, "srup-device run stopped (exit status %d)", rc);
	}
	srup_device_free(d.dev);
	sd_event_source_unref(d.status_timer);
	srup_identity_free(&d.id);
	sd_event_unref(d.loop);
	return rc;
}
