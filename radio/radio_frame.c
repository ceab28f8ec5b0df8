/* The confirmation frame (OBSERVATION-CHANNEL.md section 1) and the radio
 * layer's error strings.
 *
 *   version u8 (0x01) | device ID u64 BE | value length N u16 BE | N bytes
 *
 * Every byte goes through one bounded cursor: a read past the end sets the
 * cursor's error and yields zeros, it never reads out of bounds. */
#include "radio.h"

#include <string.h>

#include "byte_cursor.h"

/* ---- Writer with the same bound discipline --------------------------- */

struct frame_writer {
	uint8_t *buf;
	size_t cap;
	size_t off;
	bool overrun;
};

static void writer_put(struct frame_writer *w, const void *src, size_t n)
{
	if (w->overrun || n > w->cap - w->off) {
		w->overrun = true;
		return;
	}
	memcpy(w->buf + w->off, src, n);
	w->off += n;
}

static void writer_u8(struct frame_writer *w, uint8_t v)
{
	writer_put(w, &v, 1);
}

static void writer_u16be(struct frame_writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	writer_put(w, b, sizeof(b));
}

static void writer_u64be(struct frame_writer *w, uint64_t v)
{
	uint8_t b[8];

	for (size_t i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	writer_put(w, b, sizeof(b));
}

/* ---- The frame -------------------------------------------------------- */

enum radio_err srup_frame_parse(const uint8_t *buf, size_t len, struct srup_frame *out)
{
	struct byte_cursor c;
	const uint8_t *value;
	uint8_t version;
	uint64_t device_id;
	uint16_t value_len;

	if (!out || (!buf && len))
		return RADIO_E_ARG;
	if (!buf)
		return RADIO_E_FRAME_SHORT;

	byte_cursor_init(&c, buf, len);
	version = byte_cursor_u8(&c);
	device_id = byte_cursor_u64be(&c);
	value_len = byte_cursor_u16be(&c);
	if (c.overrun)
		return RADIO_E_FRAME_SHORT;
	if (version != SRUP_FRAME_VERSION)
		return RADIO_E_FRAME_VERSION;
	if (value_len == 0 || value_len > SRUP_FRAME_VALUE_MAX)
		return RADIO_E_FRAME_LENGTH;
	/* The length field must describe the frame exactly: trailing bytes
	 * are as malformed as missing ones. */
	if (byte_cursor_left(&c) != value_len || !(value = byte_cursor_take(&c, value_len)))
		return RADIO_E_FRAME_SIZE;

	out->device_id = device_id;
	out->value_len = value_len;
	memcpy(out->value, value, value_len);
	return RADIO_OK;
}

enum radio_err srup_frame_encode(const struct srup_frame *f, uint8_t *out, size_t cap,
				 size_t *out_len)
{
	struct frame_writer w = {.buf = out, .cap = cap};

	if (!f || !out || !out_len)
		return RADIO_E_ARG;
	if (f->value_len == 0 || f->value_len > SRUP_FRAME_VALUE_MAX)
		return RADIO_E_FRAME_LENGTH;

	writer_u8(&w, SRUP_FRAME_VERSION);
	writer_u64be(&w, f->device_id);
	writer_u16be(&w, f->value_len);
	writer_put(&w, f->value, f->value_len);
	if (w.overrun) {
		explicit_bzero(out, w.off);
		return RADIO_E_ARG;
	}
	*out_len = w.off;
	return RADIO_OK;
}

void srup_frame_wipe(struct srup_frame *f)
{
	if (f)
		explicit_bzero(f, sizeof(*f));
}

/* ---- Errors ----------------------------------------------------------- */

static const char *const radio_err_text[RADIO_E__COUNT] = {
	[RADIO_OK] = "success",
	[RADIO_E_NOMEM] = "out of memory",
	[RADIO_E_ARG] = "invalid argument",
	[RADIO_E_FRAME_SHORT] = "frame shorter than its 11-byte header",
	[RADIO_E_FRAME_VERSION] = "frame version is not 0x01",
	[RADIO_E_FRAME_LENGTH] = "frame value length is 0 or over 256",
	[RADIO_E_FRAME_SIZE] = "frame value length disagrees with the frame size",
	[RADIO_E_IO] = "input/output error",
	[RADIO_E_TIMEOUT] = "timed out",
	[RADIO_E_UNAVAILABLE] = "radio unavailable",
	[RADIO_E_PROTOCOL] = "peer broke the channel protocol",
	[RADIO_E_WRONG_OBSERVER] = "observer ID differs from the one expected",
	[RADIO_E_REFUSED] = "observer refused the frame",
};

const char *radio_strerror(enum radio_err err)
{
	if ((unsigned)err >= RADIO_E__COUNT || !radio_err_text[err])
		return "unknown radio error";
	return radio_err_text[err];
}
