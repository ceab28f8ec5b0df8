/* Counters, the join-latency histogram and their Prometheus exposition
 * (obs_metrics.h). */
#include "obs_metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srup_fileio.h"

const uint64_t obs_latency_bounds_ms[OBS_LATENCY_BUCKETS - 1] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000,
};

void obs_metrics_outcome(struct obs_metrics *m, enum obs_outcome outcome, uint64_t latency_ms)
{
	unsigned b = 0;

	if (!m)
		return;
	if ((unsigned)outcome < OBS_OUTCOME_COUNT)
		m->outcomes[outcome]++;
	while (b < OBS_LATENCY_BUCKETS - 1 && latency_ms > obs_latency_bounds_ms[b])
		b++;
	m->latency_buckets[b]++;
	m->latency_count++;
	m->latency_sum_ms += latency_ms;
	m->changes++;
}

void obs_metrics_channels(struct obs_metrics *m, const char *const *names, size_t n)
{
	if (!m)
		return;
	if (n > OBS_METRICS_CHANNELS_MAX)
		n = OBS_METRICS_CHANNELS_MAX;
	for (size_t i = 0; i < n; i++)
		m->channel[i].name = names[i];
	m->n_channels = n;
}

void obs_metrics_frame(struct obs_metrics *m, size_t channel, uint8_t result)
{
	struct obs_metrics_channel *c;

	if (!m)
		return;
	c = channel < m->n_channels ? &m->channel[channel] : NULL;
	if (result == 0x60) {
		m->frames_match++;
		if (c)
			c->frames_match++;
	} else if (result == 0x6E) {
		m->frames_mismatch++;
		if (c)
			c->frames_mismatch++;
	} else {
		m->frames_not_compared++;
		if (c)
			c->frames_not_compared++;
	}
	m->changes++;
}

void obs_metrics_channel_outcome(struct obs_metrics *m, size_t channel, enum obs_outcome outcome)
{
	if (!m || channel >= m->n_channels || (unsigned)outcome >= OBS_OUTCOME_COUNT)
		return;
	m->channel[channel].outcomes[outcome]++;
	m->changes++;
}

/* A growing text buffer; a failed append marks it failed. */
struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->p && (size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *grown = realloc(t->p, cap);
		if (!grown) {
			t->failed = true;
			return;
		}
		t->p = grown;
		t->cap = cap;
	}
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(struct text *t, const char *name, const char *type, const char *help,
		   unsigned long long value)
{
	head(t, name, type, help);
	put(t, "%s %llu\n", name, value);
}

char *obs_metrics_render(const struct obs_metrics *m, const struct obs_metrics_gauges *g)
{
	struct text t = {0};
	unsigned long long cumulative = 0;

	if (!m || !g)
		return NULL;
	metric(&t, "srup_observer_requests_accepted_total", "counter",
	       "OBSERVE_REQs taken into observation.", m->requests_accepted);
	metric(&t, "srup_observer_requests_refused_total", "counter",
	       "OBSERVE_REQs answered 0x6F before observation (blob, value or token unusable).",
	       m->requests_refused);
	head(&t, "srup_observer_outcomes_total", "counter", "Decided observations by outcome.");
	for (unsigned o = 0; o < OBS_OUTCOME_COUNT; o++)
		put(&t, "srup_observer_outcomes_total{outcome=\"%s\"} %llu\n",
		    obs_outcome_name((enum obs_outcome)o), (unsigned long long)m->outcomes[o]);
	head(&t, "srup_observer_frames_total", "counter", "Confirmation frames by result.");
	put(&t, "srup_observer_frames_total{result=\"match\"} %llu\n",
	    (unsigned long long)m->frames_match);
	put(&t, "srup_observer_frames_total{result=\"mismatch\"} %llu\n",
	    (unsigned long long)m->frames_mismatch);
	put(&t, "srup_observer_frames_total{result=\"not_compared\"} %llu\n",
	    (unsigned long long)m->frames_not_compared);
	if (m->n_channels) {
		static const char *const results[] = {"match", "mismatch", "not_compared"};

		head(&t, "srup_observer_channel_frames_total", "counter",
		     "Confirmation frames by the channel that brought them and result.");
		for (size_t c = 0; c < m->n_channels; c++) {
			const uint64_t counts[] = {m->channel[c].frames_match,
						   m->channel[c].frames_mismatch,
						   m->channel[c].frames_not_compared};

			for (unsigned r = 0; r < 3; r++)
				put(&t, "srup_observer_channel_frames_total{channel=\"%s\",result=\"%s\"} "
				    "%llu\n", m->channel[c].name, results[r],
				    (unsigned long long)counts[r]);
		}
		head(&t, "srup_observer_channel_outcomes_total", "counter",
		     "Observations decided by a frame, by the channel that brought it and outcome.");
		for (size_t c = 0; c < m->n_channels; c++) {
			const enum obs_outcome decided[] = {OBS_OUTCOME_VALID, OBS_OUTCOME_INVALID};

			for (unsigned o = 0; o < 2; o++)
				put(&t, "srup_observer_channel_outcomes_total{channel=\"%s\",outcome=\"%s\"} "
				    "%llu\n", m->channel[c].name, obs_outcome_name(decided[o]),
				    (unsigned long long)m->channel[c].outcomes[decided[o]]);
		}
	}
	metric(&t, "srup_observer_audit_errors_total", "counter",
	       "Audit records the audit file could not take.", m->audit_errors);
	if (g->node) {
		metric(&t, "srup_observer_messages_received_total", "counter",
		       "SRUP messages received from the broker.", g->node->received);
		metric(&t, "srup_observer_messages_accepted_total", "counter",
		       "SRUP messages that passed every check.", g->node->accepted);
		metric(&t, "srup_observer_messages_sent_total", "counter",
		       "SRUP messages published.", g->node->sent);
		head(&t, "srup_observer_messages_dropped_total", "counter",
		     "SRUP messages dropped by the receive pipeline, by reason.");
		for (unsigned r = 0; r < SRUP_NODE_DROP__COUNT; r++)
			put(&t, "srup_observer_messages_dropped_total{reason=\"%s\"} %llu\n",
			    srup_node_drop_name((enum srup_node_drop)r),
			    (unsigned long long)g->node->dropped_by[r]);
	}
	metric(&t, "srup_observer_pending", "gauge", "Observations pending now.", g->pending);
	metric(&t, "srup_observer_broker_connected", "gauge",
	       "1 while the MQTT session is up.", (unsigned long long)(g->broker_connected != 0));
	if (g->brokers && g->brokers[0]) {
		const char *b = g->brokers;

		head(&t, "srup_observer_broker", "gauge",
		     "Each configured broker: 1 for the one the session is on.");
		while (*(b += strspn(b, " \t"))) {
			size_t n = strcspn(b, " \t");
			bool on = g->broker_current && strlen(g->broker_current) == n &&
				  strncmp(g->broker_current, b, n) == 0;

			char label[512];
			size_t at = 0;

			/* A label value escapes '\\' and '"'. */
			for (size_t i = 0; i < n && at + 3 < sizeof(label); i++) {
				if (b[i] == '\\' || b[i] == '"')
					label[at++] = '\\';
				label[at++] = b[i];
			}
			label[at] = '\0';
			put(&t, "srup_observer_broker{url=\"%s\"} %d\n", label, on ? 1 : 0);
			b += n;
		}
	}
	if (g->n_channels) {
		head(&t, "srup_observer_channel_listening", "gauge",
		     "1 while the channel listens for frames.");
		for (size_t c = 0; c < g->n_channels; c++)
			put(&t, "srup_observer_channel_listening{channel=\"%s\"} %d\n",
			    g->channels[c].name, strcmp(g->channels[c].state, "listening") == 0);
		head(&t, "srup_observer_channel_unavailable", "gauge",
		     "1 while the channel's radio cannot be used (its reader or BlueZ is gone).");
		for (size_t c = 0; c < g->n_channels; c++)
			put(&t, "srup_observer_channel_unavailable{channel=\"%s\"} %d\n",
			    g->channels[c].name, strcmp(g->channels[c].state, "unavailable") == 0);
	} else {
		metric(&t, "srup_observer_channel_listening", "gauge",
		       "1 while the channel listens for frames.",
		       (unsigned long long)(g->channel_listening != 0));
	}
	metric(&t, "srup_observer_uptime_seconds", "gauge", "Seconds since the daemon started.",
	       g->uptime_seconds);
	head(&t, "srup_observer_join_latency_seconds", "histogram",
	     "OBSERVE_REQ accepted to RESPONSE published.");
	for (unsigned b = 0; b < OBS_LATENCY_BUCKETS; b++) {
		cumulative += m->latency_buckets[b];
		if (b < OBS_LATENCY_BUCKETS - 1)
			put(&t, "srup_observer_join_latency_seconds_bucket{le=\"%g\"} %llu\n",
			    (double)obs_latency_bounds_ms[b] / 1000.0, cumulative);
		else
			put(&t, "srup_observer_join_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
			    cumulative);
	}
	put(&t, "srup_observer_join_latency_seconds_sum %.3f\n", (double)m->latency_sum_ms / 1000.0);
	put(&t, "srup_observer_join_latency_seconds_count %llu\n",
	    (unsigned long long)m->latency_count);
	if (t.failed) {
		free(t.p);
		return NULL;
	}
	return t.p;
}

int obs_metrics_write(const char *path, const char *text, char *err, size_t err_len)
{
	const char *step = "";

	/* node_exporter reads only *.prom: the temporary name (.tmp) is
	 * skipped. A scrape reads what the kernel holds: no fsync for a file
	 * that is rewritten every few seconds and means nothing after a
	 * reboot. */
	if (srup_replace_file(path, text, strlen(text), 0644, false, &step) == 0)
		return 0;
	if (strcmp(step, "rename") == 0)
		snprintf(err, err_len, "metrics file %s: cannot replace it: %s", path,
			 strerror(errno));
	else
		snprintf(err, err_len, "metrics file %s: cannot %s %s.tmp: %s", path, step, path,
			 strerror(errno));
	return -1;
}
