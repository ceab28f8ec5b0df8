/* Reassembly of a BLE long write into one confirmation frame (see
 * ble_longwrite.h for the rules). */
#include "ble_longwrite.h"

#include <stdio.h>
#include <string.h>

#include "byte_cursor.h"

enum held_state {
	HELD_PARTIAL,  /* well-formed so far, more bytes needed */
	HELD_COMPLETE, /* exactly one frame's bytes */
	HELD_BAD,      /* malformed: why says how */
};

static enum held_state held_judge(const struct ble_longwrite *lw, char *why, size_t why_len)
{
	struct byte_cursor r;
	uint8_t version;
	size_t total;
	unsigned n;

	/* The bytes held so far: a header not all there yet is partial. */
	byte_cursor_init(&r, lw->held, lw->held_len);
	version = byte_cursor_u8(&r);
	if (r.overrun)
		return HELD_PARTIAL;
	if (version != SRUP_FRAME_VERSION) {
		snprintf(why, why_len, "frame version 0x%02x is not 0x01", version);
		return HELD_BAD;
	}
	(void)byte_cursor_take(&r, 8); /* the device ID */
	n = byte_cursor_u16be(&r);
	if (r.overrun)
		return HELD_PARTIAL;
	if (n == 0 || n > SRUP_FRAME_VALUE_MAX) {
		snprintf(why, why_len, "frame value length %u is outside 1..256", n);
		return HELD_BAD;
	}
	total = SRUP_FRAME_HEADER_LEN + n;
	if (lw->held_len > total) {
		snprintf(why, why_len, "frame of %zu bytes is longer than its header announces (%zu)",
			 lw->held_len, total);
		return HELD_BAD;
	}
	return lw->held_len == total ? HELD_COMPLETE : HELD_PARTIAL;
}

void ble_longwrite_drop(struct ble_longwrite *lw)
{
	explicit_bzero(lw->held, sizeof(lw->held));
	lw->held_len = 0;
	lw->device[0] = '\0';
}

static enum ble_longwrite_result refuse(struct ble_longwrite *lw, struct srup_frame *frame)
{
	ble_longwrite_drop(lw);
	srup_frame_wipe(frame);
	return BLE_LONGWRITE_REFUSED;
}

enum ble_longwrite_result ble_longwrite_chunk(struct ble_longwrite *lw,
					      const struct ble_chunk *c,
					      struct srup_frame *frame, char *why, size_t why_len)
{
	const char *device = c->device ? c->device : "";
	enum radio_err e;

	srup_frame_wipe(frame);
	if (c->offset == 0) {
		ble_longwrite_drop(lw);
		snprintf(lw->device, sizeof(lw->device), "%s", device);
	} else if (c->offset != lw->held_len || strcmp(device, lw->device) != 0) {
		snprintf(why, why_len, "write at offset %u does not continue the %zu bytes held%s",
			 c->offset, lw->held_len,
			 strcmp(device, lw->device) ? " from that device" : "");
		return refuse(lw, frame);
	}
	if (c->len > SRUP_FRAME_MAX_LEN - lw->held_len) {
		snprintf(why, why_len, "frame would reach %zu bytes, over the %u-byte maximum",
			 lw->held_len + c->len, SRUP_FRAME_MAX_LEN);
		return refuse(lw, frame);
	}
	if (c->len)
		memcpy(lw->held + lw->held_len, c->data, c->len);
	lw->held_len += c->len;

	switch (held_judge(lw, why, why_len)) {
	case HELD_BAD:
		return refuse(lw, frame);
	case HELD_COMPLETE:
		e = srup_frame_parse(lw->held, lw->held_len, frame);
		ble_longwrite_drop(lw);
		if (e != RADIO_OK) {
			snprintf(why, why_len, "%s", radio_strerror(e));
			return refuse(lw, frame);
		}
		return BLE_LONGWRITE_COMPLETE;
	case HELD_PARTIAL:
		break;
	}
	if (lw->held_len < SRUP_FRAME_HEADER_LEN && c->offset == 0) {
		snprintf(why, why_len, "frame of %zu bytes is shorter than its 11-byte header",
			 lw->held_len);
		return refuse(lw, frame);
	}
	if (c->has_mtu && c->mtu > BLE_PREPARE_WRITE_OVERHEAD &&
	    c->len < c->mtu - BLE_PREPARE_WRITE_OVERHEAD) {
		snprintf(why, why_len,
			 "frame truncated: %zu bytes held, fewer than its header announces",
			 lw->held_len);
		return refuse(lw, frame);
	}
	return BLE_LONGWRITE_HELD;
}
