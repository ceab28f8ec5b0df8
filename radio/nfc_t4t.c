/* NFC Forum Type 4 Tag: capability container, NDEF confirmation record,
 * the reader's APDU sequence, the tag's APDU responder (nfc_t4t.h). */
#include "nfc_t4t.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "byte_cursor.h"
#include "radio_util.h"

/* Every failure of this module's parsers is a protocol error. */
#define fail(why, why_len, ...) radio_fail(RADIO_E_PROTOCOL, (why), (why_len), __VA_ARGS__)

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* ---- Capability container --------------------------------------------- */

/* File identifiers the T4T specification reserves (or that mean "none"). */
static bool file_id_valid(uint16_t id)
{
	return id != 0x0000 && id != 0xE102 && id != 0xE103 && id != 0x3F00 && id != 0x3FFF &&
	       id != 0xFFFF;
}

enum radio_err nfc_t4t_cc_parse(const uint8_t *buf, size_t len, struct nfc_t4t_cc *cc,
				char *why, size_t why_len)
{
	struct byte_cursor c;
	uint8_t tlv_t, tlv_l;

	if (!buf || !cc)
		return RADIO_E_ARG;
	if (len < NFC_T4T_CC_LEN)
		return fail(why, why_len, "capability container is %zu bytes, %u needed", len,
			    NFC_T4T_CC_LEN);
	byte_cursor_init(&c, buf, NFC_T4T_CC_LEN);
	cc->cc_len = byte_cursor_u16be(&c);
	cc->mapping_version = byte_cursor_u8(&c);
	cc->mle = byte_cursor_u16be(&c);
	cc->mlc = byte_cursor_u16be(&c);
	tlv_t = byte_cursor_u8(&c);
	tlv_l = byte_cursor_u8(&c);
	cc->ndef_file_id = byte_cursor_u16be(&c);
	cc->ndef_max_size = byte_cursor_u16be(&c);
	cc->read_access = byte_cursor_u8(&c);
	cc->write_access = byte_cursor_u8(&c);
	if (c.overrun)
		return fail(why, why_len, "capability container is truncated");
	if (cc->cc_len < NFC_T4T_CC_LEN || cc->cc_len == 0xFFFF)
		return fail(why, why_len, "capability container: CCLEN 0x%04x is not 0x000f..0xfffe",
			    cc->cc_len);
	if (cc->mapping_version >> 4 != 2 && cc->mapping_version >> 4 != 3)
		return fail(why, why_len, "capability container: mapping version %u.%u is not "
			    "supported (2.x or 3.x)", cc->mapping_version >> 4,
			    cc->mapping_version & 0x0F);
	if (cc->mle < 0x000F)
		return fail(why, why_len, "capability container: MLe 0x%04x is below 0x000f",
			    cc->mle);
	if (cc->mlc == 0)
		return fail(why, why_len, "capability container: MLc is 0");
	if (tlv_t != 0x04 || tlv_l != 0x06)
		return fail(why, why_len, "capability container: NDEF File Control TLV is "
			    "T=0x%02x L=0x%02x, not T=0x04 L=0x06", tlv_t, tlv_l);
	if (!file_id_valid(cc->ndef_file_id))
		return fail(why, why_len, "capability container: NDEF file ID 0x%04x is reserved",
			    cc->ndef_file_id);
	if (cc->ndef_max_size < 0x0005 || cc->ndef_max_size == 0xFFFF)
		return fail(why, why_len, "capability container: NDEF file size 0x%04x is not "
			    "0x0005..0xfffe", cc->ndef_max_size);
	if (cc->read_access != 0x00)
		return fail(why, why_len, "capability container: NDEF file read access 0x%02x "
			    "is not granted (0x00)", cc->read_access);
	return RADIO_OK;
}

void nfc_t4t_cc_encode(const struct nfc_t4t_cc *cc, uint8_t out[NFC_T4T_CC_LEN])
{
	put_u16(out, cc->cc_len);
	out[2] = cc->mapping_version;
	put_u16(out + 3, cc->mle);
	put_u16(out + 5, cc->mlc);
	out[7] = 0x04;
	out[8] = 0x06;
	put_u16(out + 9, cc->ndef_file_id);
	put_u16(out + 11, cc->ndef_max_size);
	out[13] = cc->read_access;
	out[14] = cc->write_access;
}

/* ---- NDEF message ------------------------------------------------------ */

#define NDEF_MB 0x80u
#define NDEF_ME 0x40u
#define NDEF_CF 0x20u
#define NDEF_SR 0x10u
#define NDEF_IL 0x08u
#define NDEF_TNF_MASK 0x07u
#define NDEF_TNF_EMPTY 0x00u
#define NDEF_TNF_MIME 0x02u
#define NDEF_TNF_UNCHANGED 0x06u
#define NDEF_TNF_RESERVED 0x07u
#define NDEF_RECORDS_MAX 64u

enum radio_err nfc_ndef_find_confirmation(const uint8_t *msg, size_t len,
					  const uint8_t **payload, size_t *payload_len,
					  char *why, size_t why_len)
{
	const size_t mime_len = sizeof(NFC_T4T_MIME) - 1;
	const uint8_t *found = NULL;
	size_t found_len = 0;
	struct byte_cursor c;
	unsigned n = 0;

	if (!msg || !payload || !payload_len)
		return RADIO_E_ARG;
	if (len == 0)
		return fail(why, why_len, "NDEF message is empty");
	byte_cursor_init(&c, msg, len);
	for (;;) {
		uint8_t hdr, tnf, type_len, id_len = 0;
		uint32_t plen;
		const uint8_t *type, *data;

		if (n == NDEF_RECORDS_MAX)
			return fail(why, why_len, "NDEF message has more than %u records",
				    NDEF_RECORDS_MAX);
		hdr = byte_cursor_u8(&c);
		type_len = byte_cursor_u8(&c);
		plen = (hdr & NDEF_SR) ? byte_cursor_u8(&c) : byte_cursor_u32be(&c);
		if (hdr & NDEF_IL)
			id_len = byte_cursor_u8(&c);
		if (c.overrun)
			return fail(why, why_len, "NDEF record %u: header runs past the end of the "
				    "message", n + 1);
		tnf = hdr & NDEF_TNF_MASK;
		if (n == 0 && !(hdr & NDEF_MB))
			return fail(why, why_len, "NDEF record 1 lacks the MB (message begin) flag");
		if (n > 0 && (hdr & NDEF_MB))
			return fail(why, why_len, "NDEF record %u has MB set inside the message",
				    n + 1);
		if (hdr & NDEF_CF)
			return fail(why, why_len, "NDEF record %u is chunked (CF set): chunked "
				    "records are not accepted", n + 1);
		if (tnf == NDEF_TNF_UNCHANGED || tnf == NDEF_TNF_RESERVED)
			return fail(why, why_len, "NDEF record %u has TNF 0x%02x, not allowed in an "
				    "unchunked record", n + 1, tnf);
		if (tnf == NDEF_TNF_EMPTY && (type_len || plen || id_len))
			return fail(why, why_len, "NDEF record %u is empty (TNF 0) but has a type, "
				    "ID or payload", n + 1);
		/* Lengths are checked before anything is taken: a long record
		 * may claim up to 4 GiB. */
		if ((uint64_t)type_len + id_len + plen > byte_cursor_left(&c))
			return fail(why, why_len, "NDEF record %u: type, ID and payload (%u + %u + "
				    "%" PRIu32 " bytes) run past the end of the message (%zu bytes "
				    "left)", n + 1, type_len, id_len, plen, byte_cursor_left(&c));
		type = byte_cursor_take(&c, type_len);
		(void)byte_cursor_take(&c, id_len); /* the ID names the record; not needed */
		data = byte_cursor_take(&c, plen);
		n++;
		if (!found && tnf == NDEF_TNF_MIME && type_len == mime_len &&
		    strncasecmp((const char *)type, NFC_T4T_MIME, mime_len) == 0) {
			found = data;
			found_len = plen;
		}
		if (hdr & NDEF_ME)
			break;
		if (byte_cursor_left(&c) == 0)
			return fail(why, why_len, "NDEF message ends without a record marked ME "
				    "(message end)");
	}
	if (byte_cursor_left(&c) != 0)
		return fail(why, why_len, "NDEF message has %zu bytes after its last record",
			    byte_cursor_left(&c));
	if (!found)
		return fail(why, why_len, "NDEF message (%u record%s) holds no %s record", n,
			    n == 1 ? "" : "s", NFC_T4T_MIME);
	*payload = found;
	*payload_len = found_len;
	return RADIO_OK;
}

enum radio_err nfc_ndef_encode_confirmation(const uint8_t *payload, size_t payload_len,
					    uint8_t *out, size_t cap, size_t *out_len)
{
	const size_t mime_len = sizeof(NFC_T4T_MIME) - 1;
	bool short_record = payload_len <= 255;
	size_t hdr_len = 2 + (short_record ? 1 : 4);
	size_t total;

	if (!payload || !out || !out_len || payload_len > UINT32_MAX)
		return RADIO_E_ARG;
	total = hdr_len + mime_len + payload_len;
	if (total > cap)
		return RADIO_E_ARG;
	out[0] = (uint8_t)(NDEF_MB | NDEF_ME | NDEF_TNF_MIME | (short_record ? NDEF_SR : 0));
	out[1] = (uint8_t)mime_len;
	if (short_record) {
		out[2] = (uint8_t)payload_len;
	} else {
		out[2] = (uint8_t)(payload_len >> 24);
		out[3] = (uint8_t)(payload_len >> 16);
		out[4] = (uint8_t)(payload_len >> 8);
		out[5] = (uint8_t)payload_len;
	}
	memcpy(out + hdr_len, NFC_T4T_MIME, mime_len);
	memcpy(out + hdr_len + mime_len, payload, payload_len);
	*out_len = total;
	return RADIO_OK;
}

/* ---- Reader sequence ------------------------------------------------------ */

static const uint8_t ndef_aid[] = {0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x01};

/* One exchange whose answer must end 90 00; *data_len is the R-APDU's data
 * length (status word excluded). */
static enum radio_err exchange_ok(nfc_t4t_transceive_fn xfer, void *user, const char *step,
				  const uint8_t *capdu, size_t clen, uint8_t *rapdu,
				  size_t *data_len, char *why, size_t why_len)
{
	char detail[160] = "";
	size_t rlen = 0;
	enum radio_err err;
	uint16_t sw;

	err = xfer(user, capdu, clen, rapdu, NFC_T4T_RAPDU_MAX, &rlen, detail, sizeof(detail));
	if (err != RADIO_OK) {
		snprintf(why, why_len, "%s: %s", step, detail[0] ? detail : radio_strerror(err));
		return err;
	}
	if (rlen < 2 || rlen > NFC_T4T_RAPDU_MAX)
		return fail(why, why_len, "%s: answer of %zu bytes has no status word", step, rlen);
	sw = (uint16_t)((unsigned)rapdu[rlen - 2] << 8 | rapdu[rlen - 1]);
	if (sw != NFC_SW_OK)
		return fail(why, why_len, "%s: status word %04X, not 9000", step, sw);
	*data_len = rlen - 2;
	return RADIO_OK;
}

static size_t select_file_apdu(uint8_t *out, uint16_t file_id)
{
	/* SELECT by file identifier, first or only occurrence, no FCI. */
	out[0] = 0x00;
	out[1] = 0xA4;
	out[2] = 0x00;
	out[3] = 0x0C;
	out[4] = 0x02;
	put_u16(out + 5, file_id);
	return 7;
}

static size_t read_binary_apdu(uint8_t *out, uint16_t offset, uint8_t le)
{
	out[0] = 0x00;
	out[1] = 0xB0;
	put_u16(out + 2, offset);
	out[4] = le;
	return 5;
}

enum radio_err nfc_t4t_read_ndef(nfc_t4t_transceive_fn xfer, void *user, uint8_t *msg,
				 size_t cap, size_t *msg_len, char *why, size_t why_len)
{
	uint8_t capdu[16];
	uint8_t rapdu[NFC_T4T_RAPDU_MAX];
	struct nfc_t4t_cc cc;
	char detail[160];
	size_t clen, dlen, got = 0, chunk_max;
	uint16_t nlen;
	enum radio_err err;

	if (!xfer || !msg || !msg_len)
		return RADIO_E_ARG;
	*msg_len = 0;

	/* SELECT the NDEF Tag Application by name (T4T 2.0: P2=00, Le=00). */
	capdu[0] = 0x00;
	capdu[1] = 0xA4;
	capdu[2] = 0x04;
	capdu[3] = 0x00;
	capdu[4] = sizeof(ndef_aid);
	memcpy(capdu + 5, ndef_aid, sizeof(ndef_aid));
	capdu[5 + sizeof(ndef_aid)] = 0x00;
	err = exchange_ok(xfer, user, "SELECT NDEF application", capdu, 6 + sizeof(ndef_aid),
			  rapdu, &dlen, why, why_len);
	if (err != RADIO_OK)
		return err;

	clen = select_file_apdu(capdu, NFC_T4T_CC_FILE_ID);
	err = exchange_ok(xfer, user, "SELECT capability container", capdu, clen, rapdu, &dlen,
			  why, why_len);
	if (err != RADIO_OK)
		return err;

	clen = read_binary_apdu(capdu, 0, NFC_T4T_CC_LEN);
	err = exchange_ok(xfer, user, "READ BINARY capability container", capdu, clen, rapdu,
			  &dlen, why, why_len);
	if (err != RADIO_OK)
		return err;
	err = nfc_t4t_cc_parse(rapdu, dlen, &cc, detail, sizeof(detail));
	if (err != RADIO_OK) {
		snprintf(why, why_len, "malformed %s", detail);
		return err;
	}

	clen = select_file_apdu(capdu, cc.ndef_file_id);
	err = exchange_ok(xfer, user, "SELECT NDEF file", capdu, clen, rapdu, &dlen, why,
			  why_len);
	if (err != RADIO_OK)
		return err;

	clen = read_binary_apdu(capdu, 0, 2);
	err = exchange_ok(xfer, user, "READ BINARY NLEN", capdu, clen, rapdu, &dlen, why,
			  why_len);
	if (err != RADIO_OK)
		return err;
	if (dlen != 2)
		return fail(why, why_len, "READ BINARY NLEN returned %zu bytes, not 2", dlen);
	nlen = (uint16_t)((unsigned)rapdu[0] << 8 | rapdu[1]);
	if (nlen == 0)
		return fail(why, why_len, "NDEF file is empty (NLEN 0)");
	if ((size_t)nlen + 2 > cc.ndef_max_size)
		return fail(why, why_len, "NLEN %u does not fit the NDEF file of %u bytes the CC "
			    "declares", nlen, cc.ndef_max_size);
	if (nlen > cap)
		return fail(why, why_len, "NDEF message of %u bytes is over the %zu bytes this "
			    "reader accepts", nlen, cap);

	chunk_max = cc.mle < NFC_T4T_READ_MAX ? cc.mle : NFC_T4T_READ_MAX;
	while (got < nlen) {
		size_t want = nlen - got < chunk_max ? nlen - got : chunk_max;
		size_t offset = 2 + got;
		char step[64];

		/* READ BINARY's offset is 15 bits: NLEN fits, the CC bounds it. */
		if (offset > 0x7FFF)
			return fail(why, why_len, "NDEF message offset %zu is past READ BINARY's "
				    "range", offset);
		snprintf(step, sizeof(step), "READ BINARY NDEF at offset %zu", offset);
		clen = read_binary_apdu(capdu, (uint16_t)offset, (uint8_t)want);
		err = exchange_ok(xfer, user, step, capdu, clen, rapdu, &dlen, why, why_len);
		if (err != RADIO_OK)
			goto out;
		if (dlen == 0 || dlen > want) {
			err = fail(why, why_len, "%s returned %zu bytes for Le %zu", step, dlen, want);
			goto out;
		}
		memcpy(msg + got, rapdu, dlen);
		got += dlen;
	}
	*msg_len = got;
	err = RADIO_OK;
out:
	explicit_bzero(rapdu, sizeof(rapdu));
	return err;
}

/* ---- Tag side ---------------------------------------------------------------- */

#define TAG_MLE 0x00FFu /* answers up to 255 bytes: frames > 255 bytes on the host link */

enum radio_err nfc_t4t_tag_init(struct nfc_t4t_tag *tag, const uint8_t *payload,
				size_t payload_len)
{
	struct nfc_t4t_cc cc = {
		.cc_len = NFC_T4T_CC_LEN,
		.mapping_version = 0x20,
		.mle = TAG_MLE,
		.mlc = 0x00FF,
		.ndef_file_id = NFC_T4T_NDEF_FILE_ID,
		.read_access = 0x00,
		.write_access = 0xFF, /* read-only */
	};
	size_t msg_len;
	enum radio_err err;

	if (!tag || !payload)
		return RADIO_E_ARG;
	memset(tag, 0, sizeof(*tag));
	err = nfc_ndef_encode_confirmation(payload, payload_len, tag->file + 2,
					   sizeof(tag->file) - 2, &msg_len);
	if (err != RADIO_OK)
		return err;
	put_u16(tag->file, (uint16_t)msg_len);
	tag->file_len = msg_len + 2;
	cc.ndef_max_size = (uint16_t)tag->file_len;
	nfc_t4t_cc_encode(&cc, tag->cc);
	tag->mle = TAG_MLE;
	tag->unread = tag->file_len;
	tag->current = NFC_T4T_FILE_NONE;
	return RADIO_OK;
}

static size_t answer_sw(uint8_t *rapdu, size_t len, uint16_t sw)
{
	put_u16(rapdu + len, sw);
	return len + 2;
}

static size_t tag_select(struct nfc_t4t_tag *tag, uint8_t p1, uint8_t p2,
			 const uint8_t *data, size_t dlen, uint8_t *rapdu)
{
	uint16_t id;

	if (p1 == 0x04) {
		if (p2 != 0x00 && p2 != 0x0C)
			return answer_sw(rapdu, 0, NFC_SW_WRONG_P1P2_FUNC);
		if (dlen != sizeof(ndef_aid) || memcmp(data, ndef_aid, sizeof(ndef_aid)) != 0)
			return answer_sw(rapdu, 0, NFC_SW_FILE_NOT_FOUND);
		tag->app_selected = true;
		tag->current = NFC_T4T_FILE_NONE;
		return answer_sw(rapdu, 0, NFC_SW_OK);
	}
	if (p1 != 0x00 || (p2 != 0x0C && p2 != 0x00))
		return answer_sw(rapdu, 0, NFC_SW_WRONG_P1P2_FUNC);
	if (dlen != 2)
		return answer_sw(rapdu, 0, NFC_SW_WRONG_LENGTH);
	id = (uint16_t)((unsigned)data[0] << 8 | data[1]);
	if (!tag->app_selected)
		return answer_sw(rapdu, 0, NFC_SW_FILE_NOT_FOUND);
	if (id == NFC_T4T_CC_FILE_ID) {
		tag->current = NFC_T4T_FILE_CC;
		return answer_sw(rapdu, 0, NFC_SW_OK);
	}
	if (id == NFC_T4T_NDEF_FILE_ID) {
		tag->current = NFC_T4T_FILE_NDEF;
		return answer_sw(rapdu, 0, NFC_SW_OK);
	}
	return answer_sw(rapdu, 0, NFC_SW_FILE_NOT_FOUND);
}

static size_t tag_read_binary(struct nfc_t4t_tag *tag, uint8_t p1, uint8_t p2, size_t le,
			      uint8_t *rapdu)
{
	const uint8_t *body;
	size_t body_len, offset, n;

	if (tag->current == NFC_T4T_FILE_NONE)
		return answer_sw(rapdu, 0, NFC_SW_NO_CURRENT_FILE);
	if (p1 & 0x80) /* short EF identifier addressing: not offered */
		return answer_sw(rapdu, 0, NFC_SW_WRONG_P1P2_FUNC);
	offset = (size_t)p1 << 8 | p2;
	if (tag->current == NFC_T4T_FILE_CC) {
		body = tag->cc;
		body_len = sizeof(tag->cc);
	} else {
		body = tag->file;
		body_len = tag->file_len;
	}
	if (offset > body_len)
		return answer_sw(rapdu, 0, NFC_SW_OFFSET_OUT_OF_FILE);
	if (le > tag->mle)
		le = tag->mle;
	n = body_len - offset < le ? body_len - offset : le;
	memcpy(rapdu, body + offset, n);
	if (tag->current == NFC_T4T_FILE_NDEF) {
		for (size_t i = offset; i < offset + n; i++) {
			if (!tag->read_map[i]) {
				tag->read_map[i] = 1;
				tag->unread--;
			}
		}
	}
	return answer_sw(rapdu, n, NFC_SW_OK);
}

size_t nfc_t4t_tag_respond(struct nfc_t4t_tag *tag, const uint8_t *capdu, size_t clen,
			   uint8_t *rapdu, size_t rcap)
{
	struct byte_cursor c;
	uint8_t cla, ins, p1, p2;
	const uint8_t *data = NULL;
	size_t lc = 0, le = 0;
	bool has_le = false;

	if (!tag || !rapdu || rcap < NFC_T4T_RAPDU_MAX)
		return 0;
	if (!capdu || clen < 4)
		return answer_sw(rapdu, 0, NFC_SW_WRONG_LENGTH);
	byte_cursor_init(&c, capdu, clen);
	cla = byte_cursor_u8(&c);
	ins = byte_cursor_u8(&c);
	p1 = byte_cursor_u8(&c);
	p2 = byte_cursor_u8(&c);
	/* Short APDU cases: 4 bytes; Le; Lc data; Lc data Le. */
	if (byte_cursor_left(&c) == 1) {
		le = byte_cursor_u8(&c);
		has_le = true;
	} else if (byte_cursor_left(&c) > 1) {
		lc = byte_cursor_u8(&c);
		if (lc == 0)
			return answer_sw(rapdu, 0, NFC_SW_WRONG_LENGTH);
		data = byte_cursor_take(&c, lc);
		if (byte_cursor_left(&c) == 1) {
			le = byte_cursor_u8(&c);
			has_le = true;
		}
		if (c.overrun || byte_cursor_left(&c) != 0)
			return answer_sw(rapdu, 0, NFC_SW_WRONG_LENGTH);
	}
	if (has_le && le == 0)
		le = 256;
	if (cla != 0x00)
		return answer_sw(rapdu, 0, NFC_SW_CLA_NOT_SUPPORTED);
	switch (ins) {
	case 0xA4: /* SELECT */
		if (!data)
			return answer_sw(rapdu, 0, NFC_SW_WRONG_LENGTH);
		return tag_select(tag, p1, p2, data, lc, rapdu);
	case 0xB0: /* READ BINARY */
		if (data)
			return answer_sw(rapdu, 0, NFC_SW_WRONG_LENGTH);
		return tag_read_binary(tag, p1, p2, has_le ? le : 256, rapdu);
	default:
		return answer_sw(rapdu, 0, NFC_SW_INS_NOT_SUPPORTED);
	}
}

bool nfc_t4t_tag_read_complete(const struct nfc_t4t_tag *tag)
{
	return tag && tag->file_len > 0 && tag->unread == 0;
}

void nfc_t4t_tag_reset_selection(struct nfc_t4t_tag *tag)
{
	tag->app_selected = false;
	tag->current = NFC_T4T_FILE_NONE;
}

void nfc_t4t_tag_wipe(struct nfc_t4t_tag *tag)
{
	if (tag)
		explicit_bzero(tag, sizeof(*tag));
}

/* ---- Device connstrings ------------------------------------------------------ */

void nfc_open_failure_text(const char *connstring, char *why, size_t why_len)
{
	const char *path = strchr(connstring, ':');
	char port[256];
	size_t n;

	if (path && path[1] == '/') {
		path++;
		n = strcspn(path, ":");
		if (n < sizeof(port)) {
			memcpy(port, path, n);
			port[n] = '\0';
			if (access(port, F_OK) != 0) {
				snprintf(why, why_len, "cannot open NFC device '%s': %s: %s", connstring,
					 port, strerror(errno));
				return;
			}
		}
	}
	snprintf(why, why_len, "cannot open NFC device '%s': nothing answers there (unknown "
		 "driver, port busy, or not a supported device)", connstring);
}
