/* The NFC observation channel, observer side (OBSERVATION-CHANNEL.md
 * section 4): a libnfc initiator polls for ISO/IEC 14443-A targets while
 * the channel listens, reads each Type 4 Tag's NDEF message and hands the
 * confirmation record's payload to the frame codec.
 *
 * libnfc blocks, so the reader runs on a thread of its own that alone uses
 * the libnfc context and device. It never calls back: frames and "reader
 * lost" go into a mutex-guarded queue and an eventfd wakes the sd-event
 * loop, whose thread drains the queue and calls the callbacks. The reader
 * is opened when listening starts and closed (RF off) when it stops. */
#include <errno.h>
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <nfc/nfc.h>

#include "nfc_t4t.h"
#include "radio.h"
#include "srup_detail.h"
#include "srup_log.h"

#define NFC_POLL_MS_DEFAULT 200u
#define NFC_BACKOFF_FIRST_MS 500u
#define NFC_BACKOFF_MAX_MS 10000u
/* One APDU exchange; a tag that needs longer has left or is broken. */
#define NFC_APDU_TIMEOUT_MS 1000
#define NFC_WHY_MAX 768 /* room for a 255-byte connstring, a tag ID and a 255-byte reason */
/* Frames waiting for the loop: a stalled loop and a tag left on the reader
 * must not grow the queue without bound. */
#define NFC_QUEUE_MAX 32u

enum nfc_event_kind {
	NFC_EVENT_FRAME,
	NFC_EVENT_UNAVAILABLE,
	NFC_EVENT_AVAILABLE,      /* a poll worked after a reported loss */
};

/* What the reader thread hands to the loop thread. */
struct nfc_event {
	struct nfc_event *next;
	enum nfc_event_kind kind;
	unsigned gen;             /* the listening period it belongs to */
	struct srup_frame frame;  /* NFC_EVENT_FRAME; secret, wiped on free */
	char why[NFC_WHY_MAX];    /* NFC_EVENT_UNAVAILABLE */
};

struct nfc_channel {
	struct radio_channel base; /* first: the generic channel header */
	struct radio_nfc_config cfg;
	unsigned poll_ms;
	nfc_context *ctx;          /* used by the reader thread only (after creation) */
	int efd;                   /* reader thread -> loop wake-up */
	sd_event_source *efd_source;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* CLOCK_MONOTONIC */
	/* Guarded by lock. gen is written by the loop thread only. */
	bool want_listen;
	bool quit;
	unsigned gen;              /* bumped each time listening starts afresh */
	nfc_device *dev;           /* the open reader, for nfc_abort_command at destroy */
	struct nfc_event *head;
	struct nfc_event **tail;
	unsigned queued;
};

enum poll_result {
	POLL_DONE,  /* nothing there, or a tag handled (read or skipped) */
	POLL_LOST,  /* the reader failed: close it and reopen */
};

/* ---- Reader thread: talking to the loop ---------------------------------- */

static void event_free(struct nfc_event *ev)
{
	if (!ev)
		return;
	srup_frame_wipe(&ev->frame);
	explicit_bzero(ev, sizeof(*ev));
	free(ev);
}

/* Queue ev for the loop thread; a frame is dropped (and freed) when the
 * queue is full, a reader loss never is. */
static void post_event(struct nfc_channel *ch, struct nfc_event *ev)
{
	pthread_mutex_lock(&ch->lock);
	if (ev->kind == NFC_EVENT_FRAME && ch->queued >= NFC_QUEUE_MAX) {
		pthread_mutex_unlock(&ch->lock);
		srup_log(LOG_WARNING, "NFC: %u frames wait for the event loop; a frame read from "
			 "a tag is dropped", NFC_QUEUE_MAX);
		event_free(ev);
		return;
	}
	ev->next = NULL;
	*ch->tail = ev;
	ch->tail = &ev->next;
	ch->queued++;
	pthread_mutex_unlock(&ch->lock);
	if (eventfd_write(ch->efd, 1) < 0)
		srup_log(LOG_ERR, "NFC: cannot wake the event loop: %s", strerror(errno));
}

static void post_frame(struct nfc_channel *ch, unsigned gen, const struct srup_frame *f)
{
	struct nfc_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		srup_log(LOG_ERR, "NFC: out of memory; a frame read from a tag is dropped");
		return;
	}
	ev->kind = NFC_EVENT_FRAME;
	ev->gen = gen;
	ev->frame = *f;
	post_event(ch, ev);
}

static void post_available(struct nfc_channel *ch, unsigned gen)
{
	struct nfc_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		srup_log(LOG_ERR, "NFC: out of memory; the reader's return not reported");
		return;
	}
	ev->kind = NFC_EVENT_AVAILABLE;
	ev->gen = gen;
	post_event(ch, ev);
}

static void post_unavailable(struct nfc_channel *ch, unsigned gen, const char *why)
{
	struct nfc_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		srup_log(LOG_ERR, "NFC: out of memory; reader loss not reported: %s", why);
		return;
	}
	ev->kind = NFC_EVENT_UNAVAILABLE;
	ev->gen = gen;
	snprintf(ev->why, sizeof(ev->why), "%s", why);
	post_event(ch, ev);
}

static bool still_listening(struct nfc_channel *ch, unsigned gen)
{
	bool yes;

	pthread_mutex_lock(&ch->lock);
	yes = !ch->quit && ch->want_listen && ch->gen == gen;
	pthread_mutex_unlock(&ch->lock);
	return yes;
}

/* Sleep ms, waking early when listening stops or restarts; returns whether
 * the same listening period goes on. */
static bool pause_while_listening(struct nfc_channel *ch, unsigned ms, unsigned gen)
{
	struct timespec until;
	bool yes;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ch->lock);
	while (!ch->quit && ch->want_listen && ch->gen == gen) {
		if (pthread_cond_timedwait(&ch->cond, &ch->lock, &until) == ETIMEDOUT)
			break;
	}
	yes = !ch->quit && ch->want_listen && ch->gen == gen;
	pthread_mutex_unlock(&ch->lock);
	return yes;
}

/* ---- Reader thread: libnfc -------------------------------------------------- */

static bool reader_failed(int nfc_err)
{
	return nfc_err == NFC_EIO || nfc_err == NFC_ENOTSUCHDEV;
}

static nfc_device *open_reader(struct nfc_channel *ch, char *why, size_t why_len)
{
	nfc_connstring connstring;
	nfc_device *dev;

	snprintf(connstring, sizeof(connstring), "%s", ch->cfg.device);
	dev = nfc_open(ch->ctx, connstring);
	if (!dev) {
		nfc_open_failure_text(ch->cfg.device, why, why_len);
		return NULL;
	}
	/* "No tag" must be an answer, not an endless wait. */
	if (nfc_initiator_init(dev) < 0 ||
	    nfc_device_set_property_bool(dev, NP_INFINITE_SELECT, false) < 0 ||
	    nfc_device_set_property_bool(dev, NP_AUTO_ISO14443_4, true) < 0) {
		snprintf(why, why_len, "NFC reader '%s' refused initiator mode: %s",
			 ch->cfg.device, nfc_strerror(dev));
		nfc_close(dev);
		return NULL;
	}
	return dev;
}

static void close_reader(struct nfc_channel *ch, nfc_device **dev)
{
	if (!*dev)
		return;
	pthread_mutex_lock(&ch->lock);
	ch->dev = NULL;
	pthread_mutex_unlock(&ch->lock);
	nfc_close(*dev); /* libnfc releases the target and turns the field off */
	*dev = NULL;
}

struct reader_exchange {
	nfc_device *dev;
};

static enum radio_err reader_transceive(void *user, const uint8_t *capdu, size_t clen,
					uint8_t *rapdu, size_t rcap, size_t *rlen, char *why,
					size_t why_len)
{
	struct reader_exchange *x = user;
	int n;

	n = nfc_initiator_transceive_bytes(x->dev, capdu, clen, rapdu, rcap, NFC_APDU_TIMEOUT_MS);
	if (n >= 0) {
		*rlen = (size_t)n;
		return RADIO_OK;
	}
	switch (n) {
	case NFC_EIO:
	case NFC_ENOTSUCHDEV:
		snprintf(why, why_len, "the reader failed: %s", nfc_strerror(x->dev));
		return RADIO_E_IO;
	case NFC_ERFTRANS:
	case NFC_ETIMEOUT:
	case NFC_ETGRELEASED:
		snprintf(why, why_len, "the tag stopped answering (left the field?): %s",
			 nfc_strerror(x->dev));
		return RADIO_E_TIMEOUT;
	case NFC_EOVFLOW:
		snprintf(why, why_len, "the tag's answer is longer than %zu bytes", rcap);
		return RADIO_E_PROTOCOL;
	default:
		snprintf(why, why_len, "exchange failed: %s", nfc_strerror(x->dev));
		return RADIO_E_PROTOCOL;
	}
}

static void format_uid(const nfc_target *nt, char *out, size_t out_len)
{
	size_t n = nt->nti.nai.szUidLen;
	size_t off = 0;

	if (n > sizeof(nt->nti.nai.abtUid))
		n = sizeof(nt->nti.nai.abtUid);
	out[0] = '\0';
	for (size_t i = 0; i < n && off + 3 <= out_len; i++)
		off += (size_t)snprintf(out + off, out_len - off, "%02x", nt->nti.nai.abtUid[i]);
}

/* Read one selected target; a bad tag is logged and skipped. */
static enum poll_result read_tag(struct nfc_channel *ch, nfc_device *dev, const nfc_target *nt,
				 unsigned gen, char *why, size_t why_len)
{
	struct reader_exchange x = {.dev = dev};
	uint8_t msg[NFC_T4T_MESSAGE_MAX];
	struct srup_frame frame;
	const uint8_t *payload = NULL;
	size_t msg_len = 0, payload_len = 0;
	char uid[2 * 10 + 1];
	char detail[256];
	enum poll_result result = POLL_DONE;
	enum radio_err err;

	memset(&frame, 0, sizeof(frame));
	format_uid(nt, uid, sizeof(uid));
	if (!(nt->nti.nai.btSak & 0x20)) {
		srup_log(LOG_WARNING, "NFC tag %s skipped: not ISO/IEC 14443-4 (SAK 0x%02x), so "
			 "not a Type 4 Tag", uid, nt->nti.nai.btSak);
		return POLL_DONE;
	}
	err = nfc_t4t_read_ndef(reader_transceive, &x, msg, sizeof(msg), &msg_len, detail,
				sizeof(detail));
	if (err == RADIO_E_IO) {
		snprintf(why, why_len, "NFC reader '%s' failed reading tag %s: %s", ch->cfg.device,
			 uid, detail);
		result = POLL_LOST;
		goto out;
	}
	if (err != RADIO_OK) {
		srup_log(LOG_WARNING, "NFC tag %s skipped: %s", uid, detail);
		goto out;
	}
	err = nfc_ndef_find_confirmation(msg, msg_len, &payload, &payload_len, detail,
					 sizeof(detail));
	if (err != RADIO_OK) {
		srup_log(LOG_WARNING, "NFC tag %s skipped: %s", uid, detail);
		goto out;
	}
	err = srup_frame_parse(payload, payload_len, &frame);
	if (err != RADIO_OK) {
		srup_log(LOG_WARNING, "NFC tag %s skipped: its confirmation frame (%zu bytes) is "
			 "malformed: %s", uid, payload_len, radio_strerror(err));
		goto out;
	}
	srup_log(LOG_DEBUG, "NFC tag %s: frame for device %016" PRIx64 " read", uid,
		 frame.device_id);
	post_frame(ch, gen, &frame);
out:
	srup_frame_wipe(&frame);
	explicit_bzero(msg, sizeof(msg));
	return result;
}

static enum poll_result poll_once(struct nfc_channel *ch, nfc_device *dev, unsigned gen,
				  char *why, size_t why_len)
{
	const nfc_modulation nm = {.nmt = NMT_ISO14443A, .nbr = NBR_106};
	enum poll_result result;
	nfc_target nt;
	int n;

	memset(&nt, 0, sizeof(nt));
	n = nfc_initiator_select_passive_target(dev, nm, NULL, 0, &nt);
	if (n < 0) {
		if (reader_failed(n)) {
			snprintf(why, why_len, "NFC reader '%s' failed while polling: %s",
				 ch->cfg.device, nfc_strerror(dev));
			return POLL_LOST;
		}
		if (n != NFC_EOPABORTED)
			srup_log(LOG_DEBUG, "NFC poll: %s", nfc_strerror(dev));
		return POLL_DONE;
	}
	if (n == 0)
		return POLL_DONE;
	result = POLL_DONE;
	if (still_listening(ch, gen))
		result = read_tag(ch, dev, &nt, gen, why, why_len);
	if (result == POLL_DONE) {
		n = nfc_initiator_deselect_target(dev);
		if (n < 0 && reader_failed(n)) {
			snprintf(why, why_len, "NFC reader '%s' failed releasing a tag: %s",
				 ch->cfg.device, nfc_strerror(dev));
			result = POLL_LOST;
		}
	}
	return result;
}

static void *reader_main(void *arg)
{
	struct nfc_channel *ch = arg;
	nfc_device *dev = NULL;
	unsigned backoff_ms = 0;
	unsigned reported_gen = 0; /* listening period whose loss was reported */
	char why[NFC_WHY_MAX];

	for (;;) {
		unsigned gen;

		pthread_mutex_lock(&ch->lock);
		if (!ch->quit && !ch->want_listen && dev) {
			pthread_mutex_unlock(&ch->lock);
			close_reader(ch, &dev);
			srup_log(LOG_INFO, "NFC reader closed (no observation pending)");
			continue;
		}
		while (!ch->quit && !ch->want_listen) {
			backoff_ms = 0;
			pthread_cond_wait(&ch->cond, &ch->lock);
		}
		if (ch->quit) {
			pthread_mutex_unlock(&ch->lock);
			break;
		}
		gen = ch->gen;
		pthread_mutex_unlock(&ch->lock);

		if (!dev) {
			dev = open_reader(ch, why, sizeof(why));
			if (!dev) {
				backoff_ms = backoff_ms ? backoff_ms * 2 : NFC_BACKOFF_FIRST_MS;
				if (backoff_ms > NFC_BACKOFF_MAX_MS)
					backoff_ms = NFC_BACKOFF_MAX_MS;
				if (reported_gen != gen) {
					srup_log(LOG_ERR, "%s; retrying every %u..%u ms", why,
						 NFC_BACKOFF_FIRST_MS, NFC_BACKOFF_MAX_MS);
					post_unavailable(ch, gen, why);
					reported_gen = gen;
				} else {
					srup_log(LOG_DEBUG, "%s; next try in %u ms", why, backoff_ms);
				}
				pause_while_listening(ch, backoff_ms, gen);
				continue;
			}
			pthread_mutex_lock(&ch->lock);
			ch->dev = dev;
			pthread_mutex_unlock(&ch->lock);
			srup_log(LOG_INFO, "NFC reader '%s' open; polling for ISO/IEC 14443-A tags "
				 "every %u ms", ch->cfg.device, ch->poll_ms);
		}
		if (poll_once(ch, dev, gen, why, sizeof(why)) == POLL_LOST) {
			close_reader(ch, &dev);
			/* A reader that opens but fails at once is the same loss:
			 * backoff and the report are reset only by a poll that works. */
			backoff_ms = backoff_ms ? backoff_ms * 2 : NFC_BACKOFF_FIRST_MS;
			if (backoff_ms > NFC_BACKOFF_MAX_MS)
				backoff_ms = NFC_BACKOFF_MAX_MS;
			srup_log(LOG_ERR, "%s; reopening in %u ms", why, backoff_ms);
			if (reported_gen != gen) {
				post_unavailable(ch, gen, why);
				reported_gen = gen;
			}
			pause_while_listening(ch, backoff_ms, gen);
			continue;
		}
		backoff_ms = 0;
		if (reported_gen) {
			srup_log(LOG_INFO, "NFC reader '%s' works again", ch->cfg.device);
			post_available(ch, gen);
		}
		reported_gen = 0;
		pause_while_listening(ch, ch->poll_ms, gen);
	}
	close_reader(ch, &dev);
	return NULL;
}

/* ---- Loop thread ------------------------------------------------------------- */

static int on_reader_events(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct nfc_channel *ch = user;
	struct nfc_event *list;
	eventfd_t count;

	(void)s;
	(void)revents;
	(void)eventfd_read(fd, &count);
	pthread_mutex_lock(&ch->lock);
	list = ch->head;
	ch->head = NULL;
	ch->tail = &ch->head;
	ch->queued = 0;
	pthread_mutex_unlock(&ch->lock);

	while (list) {
		struct nfc_event *ev = list;

		list = ev->next;
		/* A callback may stop the channel (not free it): what was read
		 * for an ended listening period is dropped. */
		if (!ch->base.listening || ev->gen != ch->gen) {
			srup_log(LOG_DEBUG, "NFC: %s from an ended listening period dropped",
				 ev->kind == NFC_EVENT_FRAME ? "frame" : "reader state");
		} else if (ev->kind == NFC_EVENT_FRAME) {
			uint8_t result = ch->base.cb.frame(&ev->frame, ch->base.cb.user);

			/* A tag cannot be told the outcome. */
			srup_log(LOG_DEBUG, "NFC: frame for device %016" PRIx64 " compared: 0x%02x",
				 ev->frame.device_id, result);
		} else if (ev->kind == NFC_EVENT_UNAVAILABLE) {
			ch->base.cb.unavailable(ev->why, ch->base.cb.user);
		} else if (ch->base.cb.available) {
			ch->base.cb.available(ch->base.cb.user);
		}
		event_free(ev);
	}
	return 0;
}

static enum radio_err nfc_channel_start(struct radio_channel *base)
{
	struct nfc_channel *ch = (struct nfc_channel *)base;

	pthread_mutex_lock(&ch->lock);
	if (!ch->want_listen) {
		ch->want_listen = true;
		ch->gen++;
		if (ch->gen == 0)
			ch->gen = 1;
		pthread_cond_broadcast(&ch->cond);
	}
	pthread_mutex_unlock(&ch->lock);
	base->listening = true;
	return RADIO_OK;
}

static void nfc_channel_stop(struct radio_channel *base)
{
	struct nfc_channel *ch = (struct nfc_channel *)base;

	/* The reader thread finishes the poll or tag read under way (each
	 * bounded by libnfc's timeouts), closes the reader and waits. */
	pthread_mutex_lock(&ch->lock);
	ch->want_listen = false;
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
	base->listening = false;
}

static void nfc_channel_destroy(struct radio_channel *base)
{
	struct nfc_channel *ch = (struct nfc_channel *)base;
	struct nfc_event *ev;

	if (ch->thread_started) {
		pthread_mutex_lock(&ch->lock);
		ch->quit = true;
		ch->want_listen = false;
		pthread_cond_broadcast(&ch->cond);
		/* Cut a blocking command short; the device stays open until the
		 * reader thread closes it, which cannot happen while we hold the
		 * lock. */
		if (ch->dev)
			nfc_abort_command(ch->dev);
		pthread_mutex_unlock(&ch->lock);
		pthread_join(ch->thread, NULL);
	}
	while ((ev = ch->head)) {
		ch->head = ev->next;
		event_free(ev);
	}
	sd_event_source_disable_unref(ch->efd_source);
	if (ch->efd >= 0)
		close(ch->efd);
	if (ch->ctx)
		nfc_exit(ch->ctx);
	pthread_cond_destroy(&ch->cond);
	pthread_mutex_destroy(&ch->lock);
	sd_event_unref(ch->base.loop);
	free(ch);
}

static const struct radio_channel_ops nfc_channel_ops = {
	.name = "nfc",
	.start = nfc_channel_start,
	.stop = nfc_channel_stop,
	.destroy = nfc_channel_destroy,
};

enum radio_err radio_nfc_channel_new(sd_event *loop, const struct radio_nfc_config *cfg,
				     const struct radio_channel_callbacks *cb,
				     struct radio_channel **out)
{
	struct nfc_channel *ch;
	pthread_condattr_t cattr;
	sigset_t all, old;
	int r;

	if (!loop || !cfg || !cb || !cb->frame || !cb->unavailable || !out)
		return RADIO_E_ARG;
	if (!memchr(cfg->device, '\0', sizeof(cfg->device)) || cfg->device[0] == '\0') {
		srup_log(LOG_ERR, "[nfc] device: no libnfc connstring configured");
		return RADIO_E_ARG;
	}
	*out = NULL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return RADIO_E_NOMEM;
	ch->base.ops = &nfc_channel_ops;
	ch->base.cb = *cb;
	ch->base.loop = sd_event_ref(loop);
	ch->cfg = *cfg;
	ch->poll_ms = cfg->poll_ms ? cfg->poll_ms : NFC_POLL_MS_DEFAULT;
	ch->efd = -1;
	ch->tail = &ch->head;
	pthread_mutex_init(&ch->lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&ch->cond, &cattr);
	pthread_condattr_destroy(&cattr);

	nfc_init(&ch->ctx);
	if (!ch->ctx) {
		srup_log(LOG_ERR, "NFC: libnfc could not initialise");
		nfc_channel_destroy(&ch->base);
		return RADIO_E_UNAVAILABLE;
	}
	ch->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->efd < 0) {
		srup_log(LOG_ERR, "NFC: eventfd: %s", strerror(errno));
		nfc_channel_destroy(&ch->base);
		return RADIO_E_IO;
	}
	r = sd_event_add_io(loop, &ch->efd_source, ch->efd, EPOLLIN, on_reader_events, ch);
	if (r < 0) {
		srup_log(LOG_ERR, "NFC: cannot watch the reader thread: %s", strerror(-r));
		nfc_channel_destroy(&ch->base);
		return RADIO_E_IO;
	}
	/* Signals belong to the loop thread (signalfd), not to the reader. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&ch->thread, NULL, reader_main, ch);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		srup_log(LOG_ERR, "NFC: cannot start the reader thread: %s", strerror(r));
		nfc_channel_destroy(&ch->base);
		return RADIO_E_NOMEM;
	}
	ch->thread_started = true;
	*out = &ch->base;
	return RADIO_OK;
}

/* ---- Registry entry ------------------------------------------------------ */

/* libnfc drivers whose connstring names a device node: "driver:/dev/x"
 * with an optional ":speed" (the USB ones name a bus and device number). */
static int nfc_machine_problem(const struct radio_channel_configs *cfg, char *why, size_t len,
			       const char **key)
{
	static const char *const node_drivers[] = {"pn532_uart", "arygon", "acr122s",
						   "pn532_spi", "pn532_i2c"};
	const char *connstring = cfg->nfc.device;
	const char *colon = strchr(connstring, ':'), *port;
	char node[256], show[96];
	size_t driver_len, n;
	bool node_driver = false;
	struct stat st;

	*key = "device";
	if (!colon)
		return 0;
	driver_len = (size_t)(colon - connstring);
	for (size_t i = 0; i < sizeof(node_drivers) / sizeof(node_drivers[0]); i++)
		if (strlen(node_drivers[i]) == driver_len &&
		    strncmp(connstring, node_drivers[i], driver_len) == 0)
			node_driver = true;
	port = colon + 1;
	if (!node_driver || *port != '/')
		return 0;
	n = strcspn(port, ":");
	snprintf(node, sizeof(node), "%.*s", (int)n, port);
	if (stat(node, &st) != 0) {
		snprintf(why, len, "'%s': %s: %s", detail_shown(connstring, show, sizeof(show)), node,
			 strerror(errno));
		return 1;
	}
	if (!S_ISCHR(st.st_mode)) {
		snprintf(why, len, "'%s': %s is not a device node",
			 detail_shown(connstring, show, sizeof(show)), node);
		return 1;
	}
	return 0;
}

static void nfc_defaults(struct radio_channel_configs *cfg)
{
	cfg->nfc.poll_ms = NFC_POLL_MS_DEFAULT;
}

static bool nfc_configured(const struct radio_channel_configs *cfg)
{
	return cfg->nfc.device[0] != '\0';
}

static enum radio_err nfc_driver_open(sd_event *loop, const struct radio_channel_configs *cfg,
			       const struct radio_channel_callbacks *cb, struct radio_channel **out)
{
	return radio_nfc_channel_new(loop, &cfg->nfc, cb, out);
}

static enum radio_err nfc_driver_present(const struct radio_channel_configs *cfg,
				  uint64_t expected_observer, const struct srup_frame *f,
				  unsigned timeout_ms, uint8_t *result, char *detail,
				  size_t detail_len)
{
	(void)expected_observer; /* a tag cannot read who reads it */
	return radio_nfc_present(&cfg->nfc, f, timeout_ms, result, detail, detail_len);
}

static const struct radio_config_key nfc_keys[] = {
	{"device", RADIO_CONFIG_TEXT, RADIO_CONFIG_FIELD(nfc.device), 0, 0, "a libnfc connstring"},
	{"poll_ms", RADIO_CONFIG_UINT, RADIO_CONFIG_FIELD(nfc.poll_ms), 10, 60000, "milliseconds"},
	{.name = NULL},
};

const struct radio_channel_driver radio_nfc_driver = {
	.name = "nfc",
	.keys = nfc_keys,
	.defaults = nfc_defaults,
	.required_key = "device",
	.configured = nfc_configured,
	.machine_problem = nfc_machine_problem,
	.open = nfc_driver_open,
	.present = nfc_driver_present,
	.present_learns_result = false,
};
