/* NFC Forum Type 4 Tag pieces shared by the NFC reader (radio_nfc.c) and
 * the tag emulation (radio_nfc_present.c): the capability container, the
 * NDEF message carrying the confirmation record (OBSERVATION-CHANNEL.md
 * section 4), the reader's APDU sequence and the tag's APDU responder.
 *
 * No libnfc here: the reader sequence talks through a transceive callback
 * and the responder maps one C-APDU to one R-APDU, so both are tested
 * against each other and against faulty peers without a radio. Every byte
 * from the peer is read through a bounded cursor. Private to radio/. */
#ifndef SRUP_NFC_T4T_H
#define SRUP_NFC_T4T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "radio.h"

#define NFC_T4T_MIME "application/vnd.srup.confirmation"
#define NFC_T4T_CC_FILE_ID 0xE103u
#define NFC_T4T_NDEF_FILE_ID 0xE104u
#define NFC_T4T_CC_LEN 15u          /* the part of the CC the reader reads */
#define NFC_T4T_READ_MAX 255u       /* largest READ BINARY Le the reader asks */
#define NFC_T4T_RAPDU_MAX (NFC_T4T_READ_MAX + 2u)
#define NFC_T4T_CAPDU_MAX 261u      /* short APDU: 4 + 1 + 255 + 1 */
/* The largest NDEF message the reader reads: room for the confirmation
 * record beside a few others on a tag that carries more than ours. */
#define NFC_T4T_MESSAGE_MAX 2048u
/* The tag's NDEF file: NLEN + one long record holding the largest frame. */
#define NFC_T4T_FILE_MAX 512u

#define NFC_SW_OK 0x9000u
#define NFC_SW_WRONG_LENGTH 0x6700u
#define NFC_SW_NO_CURRENT_FILE 0x6986u
#define NFC_SW_WRONG_P1P2_FUNC 0x6A86u
#define NFC_SW_FILE_NOT_FOUND 0x6A82u
#define NFC_SW_OFFSET_OUT_OF_FILE 0x6B00u
#define NFC_SW_INS_NOT_SUPPORTED 0x6D00u
#define NFC_SW_CLA_NOT_SUPPORTED 0x6E00u

/* The capability container (NFC Forum T4T 2.0, 5.1), as far as the reader
 * reads it: header and the NDEF File Control TLV. */
struct nfc_t4t_cc {
	uint16_t cc_len;
	uint8_t mapping_version;   /* 0x20: 2.0 */
	uint16_t mle;              /* largest R-APDU data READ BINARY returns */
	uint16_t mlc;              /* largest C-APDU data UPDATE BINARY takes */
	uint16_t ndef_file_id;
	uint16_t ndef_max_size;    /* NLEN included */
	uint8_t read_access;       /* 0x00: granted */
	uint8_t write_access;      /* 0x00 granted, 0xFF none */
};

/* Parse the first NFC_T4T_CC_LEN bytes of buf (len may be more). On error
 * returns RADIO_E_PROTOCOL with why naming the field that is wrong. */
enum radio_err nfc_t4t_cc_parse(const uint8_t *buf, size_t len, struct nfc_t4t_cc *cc,
				char *why, size_t why_len);
void nfc_t4t_cc_encode(const struct nfc_t4t_cc *cc, uint8_t out[NFC_T4T_CC_LEN]);

/* Find the confirmation record (TNF 0x02, type NFC_T4T_MIME) in an NDEF
 * message. Short and long records, ID fields skipped, other records
 * passed over; chunked records, broken MB/ME flags, lengths past the end
 * and bytes after the last record are malformed. *payload points into msg.
 * Returns RADIO_OK, or RADIO_E_PROTOCOL with why (malformed, or no such
 * record). */
enum radio_err nfc_ndef_find_confirmation(const uint8_t *msg, size_t len,
					  const uint8_t **payload, size_t *payload_len,
					  char *why, size_t why_len);
/* An NDEF message holding one confirmation record with payload. */
enum radio_err nfc_ndef_encode_confirmation(const uint8_t *payload, size_t payload_len,
					    uint8_t *out, size_t cap, size_t *out_len);

/* The reader's exchange with the tag: send capdu, receive the R-APDU
 * (data + SW1 SW2) into rapdu. Returns RADIO_OK; RADIO_E_IO when the
 * reader itself failed (the caller reopens it); RADIO_E_TIMEOUT when the
 * tag did not answer (it left the field); another error with why. */
typedef enum radio_err (*nfc_t4t_transceive_fn)(void *user, const uint8_t *capdu, size_t clen,
						uint8_t *rapdu, size_t rcap, size_t *rlen,
						char *why, size_t why_len);

/* The Type 4 Tag read sequence: SELECT the NDEF application, SELECT and
 * READ BINARY the CC, SELECT the NDEF file it names, READ BINARY NLEN and
 * the message in chunks of at most MLe (and NFC_T4T_READ_MAX). The message
 * lands in msg (cap bytes). On error why says which step failed and how. */
enum radio_err nfc_t4t_read_ndef(nfc_t4t_transceive_fn xfer, void *user, uint8_t *msg,
				 size_t cap, size_t *msg_len, char *why, size_t why_len);

/* The tag side: one read-only NDEF file holding one confirmation record. */
enum nfc_t4t_file { NFC_T4T_FILE_NONE, NFC_T4T_FILE_CC, NFC_T4T_FILE_NDEF };

struct nfc_t4t_tag {
	uint8_t cc[NFC_T4T_CC_LEN];
	uint8_t file[NFC_T4T_FILE_MAX];        /* NLEN + message; secret */
	size_t file_len;
	uint16_t mle;
	bool app_selected;
	enum nfc_t4t_file current;
	uint8_t read_map[NFC_T4T_FILE_MAX];   /* 1 where READ BINARY returned the byte */
	size_t unread;                         /* bytes of file not yet returned */
};

/* Set up the tag to serve payload (a confirmation frame). */
enum radio_err nfc_t4t_tag_init(struct nfc_t4t_tag *tag, const uint8_t *payload,
				size_t payload_len);
/* Answer one C-APDU; returns the R-APDU length (at least 2: the status
 * word). rcap must be at least NFC_T4T_RAPDU_MAX. */
size_t nfc_t4t_tag_respond(struct nfc_t4t_tag *tag, const uint8_t *capdu, size_t clen,
			   uint8_t *rapdu, size_t rcap);
/* Every byte of the NDEF file has been read (NLEN and the message). */
bool nfc_t4t_tag_read_complete(const struct nfc_t4t_tag *tag);
/* A new activation: selections are forgotten, what was read is kept. */
void nfc_t4t_tag_reset_selection(struct nfc_t4t_tag *tag);
void nfc_t4t_tag_wipe(struct nfc_t4t_tag *tag);

/* Why nfc_open(connstring) returned NULL, as far as can be told from
 * outside libnfc: for "driver:/path[:speed]", whether the path exists. */
void nfc_open_failure_text(const char *connstring, char *why, size_t why_len);

#endif
