/* The NFC presenter, device side (OBSERVATION-CHANNEL.md section 4):
 * libnfc target mode emulating an NFC Forum Type 4 Tag (ISO-DEP, ISO/IEC
 * 14443-4 PICC) whose one NDEF file holds the confirmation record, until a
 * reader has read all of that file or the timeout passes. A reader that
 * leaves before the end is waited for again. A tag cannot learn what the
 * reader decided, so the result is always RADIO_RESULT_NOT_COMPARED. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <nfc/nfc.h>

#include "nfc_t4t.h"
#include "radio.h"
#include "radio_util.h"
#include "srup_log.h"

/* Time left for libnfc's int millisecond timeouts; 0 once passed. */
static int ms_left(uint64_t deadline)
{
	uint64_t now = radio_monotonic_ms();

	if (now >= deadline)
		return 0;
	return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

/* What the emulated tag looks like at ISO/IEC 14443-3/-4: a 4-byte random
 * UID (the PN53x fixes its first byte at 0x08, "random ID"), SAK with the
 * ISO/IEC 14443-4 bit, and an ATS whose historical bytes say "SRUP". */
static void tag_identity(nfc_target *nt)
{
	static const uint8_t ats[] = {
		0x78,                   /* T0: TA, TB, TC follow; FSCI 8 (256 bytes) */
		0x80,                   /* TA: 106 kbit/s only */
		0x81,                   /* TB: FWI 8, SFGI 1 */
		0x02,                   /* TC: CID supported */
		'S', 'R', 'U', 'P',     /* historical bytes */
	};
	uint8_t rnd[3] = {0x53, 0x52, 0x50};

	memset(nt, 0, sizeof(*nt));
	nt->nm.nmt = NMT_ISO14443A;
	nt->nm.nbr = NBR_UNDEFINED;
	nt->nti.nai.abtAtqa[0] = 0x00;
	nt->nti.nai.abtAtqa[1] = 0x04;
	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		srup_log(LOG_DEBUG, "NFC: no random UID (%s); a fixed one is used", strerror(errno));
	nt->nti.nai.abtUid[0] = 0x08;
	memcpy(nt->nti.nai.abtUid + 1, rnd, sizeof(rnd));
	nt->nti.nai.szUidLen = 4;
	nt->nti.nai.btSak = 0x20;
	memcpy(nt->nti.nai.abtAts, ats, sizeof(ats));
	nt->nti.nai.szAtsLen = sizeof(ats);
}

static bool device_failed(int nfc_err)
{
	return nfc_err == NFC_EIO || nfc_err == NFC_ENOTSUCHDEV;
}

enum serve_result {
	SERVE_READ,      /* the reader read the whole NDEF file */
	SERVE_LEFT,      /* the reader went away before that */
	SERVE_TIMEOUT,
	SERVE_FAILED,    /* the device failed; detail says how */
};

/* A receive or send that failed: the device itself, or only the reader
 * leaving (which is waited for again). */
static enum serve_result serve_error(nfc_device *dev, int nfc_err, char *detail,
				     size_t detail_len)
{
	if (device_failed(nfc_err)) {
		radio_fail(RADIO_E_IO, detail, detail_len, "NFC device failed: %s",
			   nfc_strerror(dev));
		return SERVE_FAILED;
	}
	srup_log(LOG_INFO, "NFC: the reader left (%s)", nfc_strerror(dev));
	return SERVE_LEFT;
}

/* Answer one activated reader's APDUs. */
static enum serve_result serve_reader(nfc_device *dev, struct nfc_t4t_tag *tag,
				      uint64_t deadline, char *detail, size_t detail_len)
{
	uint8_t capdu[NFC_T4T_CAPDU_MAX + 16];
	uint8_t rapdu[NFC_T4T_RAPDU_MAX];
	enum serve_result result = SERVE_TIMEOUT;

	nfc_t4t_tag_reset_selection(tag);
	for (;;) {
		int left = ms_left(deadline);
		size_t rlen;
		int n;

		if (left == 0)
			break;
		n = nfc_target_receive_bytes(dev, capdu, sizeof(capdu), left);
		if (n < 0) {
			if (n == NFC_ETIMEOUT)
				continue;
			result = serve_error(dev, n, detail, detail_len);
			break;
		}
		rlen = nfc_t4t_tag_respond(tag, capdu, (size_t)n, rapdu, sizeof(rapdu));
		/* Read the clock once: a timeout of 0 would tell libnfc to wait
		 * for ever. */
		left = ms_left(deadline);
		n = nfc_target_send_bytes(dev, rapdu, rlen, left ? left : 1);
		if (n < 0) {
			result = serve_error(dev, n, detail, detail_len);
			break;
		}
		if (nfc_t4t_tag_read_complete(tag)) {
			result = SERVE_READ;
			break;
		}
	}
	explicit_bzero(rapdu, sizeof(rapdu));
	explicit_bzero(capdu, sizeof(capdu));
	return result;
}

enum radio_err radio_nfc_present(const struct radio_nfc_config *cfg, const struct srup_frame *f,
				 unsigned timeout_ms, uint8_t *result, char *detail,
				 size_t detail_len)
{
	uint8_t frame[SRUP_FRAME_MAX_LEN];
	uint8_t rx[64];
	struct nfc_t4t_tag tag;
	nfc_connstring connstring;
	nfc_context *ctx = NULL;
	nfc_device *dev = NULL;
	nfc_target nt;
	size_t frame_len = 0;
	uint64_t deadline;
	unsigned activations = 0;
	enum radio_err err;
	char why[256];

	if (result)
		*result = RADIO_RESULT_NOT_COMPARED;
	if (detail && detail_len)
		detail[0] = '\0';
	if (!cfg || !f)
		return RADIO_E_ARG;
	if (!memchr(cfg->device, '\0', sizeof(cfg->device)) || cfg->device[0] == '\0')
		return radio_fail(RADIO_E_ARG, detail, detail_len,
				  "[nfc] device: no libnfc connstring");
	err = srup_frame_encode(f, frame, sizeof(frame), &frame_len);
	if (err != RADIO_OK)
		return radio_fail(err, detail, detail_len, "the frame cannot be encoded: %s",
				  radio_strerror(err));
	err = nfc_t4t_tag_init(&tag, frame, frame_len);
	explicit_bzero(frame, sizeof(frame));
	if (err != RADIO_OK)
		return radio_fail(err, detail, detail_len, "the NDEF file cannot hold the frame");

	deadline = radio_monotonic_ms() + timeout_ms;
	nfc_init(&ctx);
	if (!ctx) {
		err = radio_fail(RADIO_E_UNAVAILABLE, detail, detail_len,
				 "libnfc could not initialise");
		goto out;
	}
	snprintf(connstring, sizeof(connstring), "%s", cfg->device);
	dev = nfc_open(ctx, connstring);
	if (!dev) {
		nfc_open_failure_text(cfg->device, why, sizeof(why));
		err = radio_fail(RADIO_E_UNAVAILABLE, detail, detail_len, "%s", why);
		goto out;
	}
	srup_log(LOG_INFO, "NFC: presenting the confirmation frame as a Type 4 Tag on '%s' "
		 "for up to %u ms", cfg->device, timeout_ms);
	err = RADIO_E_TIMEOUT;
	tag_identity(&nt);
	for (;;) {
		int left = ms_left(deadline);
		int n;

		if (left == 0)
			break;
		/* nfc_target_init returns 0 both when a reader activated the
		 * emulation and when the wait timed out; only activation sets
		 * the baud rate left undefined here. */
		nt.nm.nbr = NBR_UNDEFINED;
		n = nfc_target_init(dev, &nt, rx, sizeof(rx), left);
		if (n < 0) {
			if (n == NFC_ETIMEOUT)
				continue;
			err = radio_fail(device_failed(n) ? RADIO_E_IO : RADIO_E_PROTOCOL, detail,
					 detail_len, "NFC device '%s' failed in target mode: %s",
					 cfg->device, nfc_strerror(dev));
			goto out;
		}
		if (nt.nm.nbr == NBR_UNDEFINED)
			continue;
		activations++;
		switch (serve_reader(dev, &tag, deadline, detail, detail_len)) {
		case SERVE_READ:
			srup_log(LOG_INFO, "NFC: a reader read the whole NDEF file");
			err = RADIO_OK;
			goto out;
		case SERVE_FAILED:
			err = RADIO_E_IO;
			goto out;
		case SERVE_LEFT:
		case SERVE_TIMEOUT:
			break;
		}
	}
	if (activations == 0)
		radio_fail(RADIO_E_TIMEOUT, detail, detail_len, "no reader came within %u ms",
			   timeout_ms);
	else
		radio_fail(RADIO_E_TIMEOUT, detail, detail_len,
			   "%u reader activation%s, but the NDEF file was not read to its end "
			   "within %u ms (%zu of %zu bytes unread)",
			   activations, activations == 1 ? "" : "s", timeout_ms, tag.unread,
			   tag.file_len);
out:
	if (dev)
		nfc_close(dev); /* libnfc releases the emulation and powers down */
	if (ctx)
		nfc_exit(ctx);
	nfc_t4t_tag_wipe(&tag);
	explicit_bzero(rx, sizeof(rx));
	return err;
}
