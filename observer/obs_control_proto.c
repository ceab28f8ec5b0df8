/* The control socket's request language (obs_control_proto.h). */
#include "obs_control_proto.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "srup_hex.h"

#define WORDS_MAX 3
#define WORD_MAX 32

const char *obs_ctl_command_name(enum obs_ctl_command command)
{
	switch (command) {
	case OBS_CTL_STATUS: return "status";
	case OBS_CTL_LIST: return "list";
	case OBS_CTL_CANCEL: return "cancel";
	case OBS_CTL_HISTORY: return "history";
	}
	return "unknown";
}

static int parse_count(const char *word, unsigned *out)
{
	unsigned v = 0;

	if (!*word || strlen(word) > 4)
		return -1;
	for (const char *c = word; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		v = v * 10 + (unsigned)(*c - '0');
	}
	if (v == 0 || v > OBS_CTL_HISTORY_MAX)
		return -1;
	*out = v;
	return 0;
}

int obs_ctl_parse(const char *line, size_t len, struct obs_ctl_request *out, char *err,
		  size_t err_len)
{
	char words[WORDS_MAX][WORD_MAX + 1];
	size_t n = 0, i = 0;

	if (!line || !out) {
		snprintf(err, err_len, "invalid arguments");
		return -1;
	}
	if (len >= OBS_CTL_REQUEST_MAX) {
		snprintf(err, err_len, "request of %zu bytes is over the limit of %u", len,
			 OBS_CTL_REQUEST_MAX - 1);
		return -1;
	}
	/* A CRLF line ending is tolerated (telnet, socat -t). */
	if (len && line[len - 1] == '\r')
		len--;
	for (size_t k = 0; k < len; k++)
		if (line[k] < 0x20 || line[k] > 0x7e) {
			snprintf(err, err_len, "byte 0x%02x at offset %zu is not printable ASCII",
				 (unsigned char)line[k], k);
			return -1;
		}
	while (i < len) {
		size_t start, wlen;

		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && line[i] != ' ')
			i++;
		wlen = i - start;
		if (n == WORDS_MAX) {
			snprintf(err, err_len, "too many words (at most %u)", WORDS_MAX);
			return -1;
		}
		if (wlen > WORD_MAX) {
			snprintf(err, err_len, "word %zu is %zu characters long (at most %u)", n + 1,
				 wlen, WORD_MAX);
			return -1;
		}
		memcpy(words[n], line + start, wlen);
		words[n][wlen] = '\0';
		n++;
	}
	if (n == 0) {
		snprintf(err, err_len, "empty request (status, list, cancel DEVICE, history [N])");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	if (strcmp(words[0], "status") == 0 || strcmp(words[0], "list") == 0) {
		out->command = words[0][0] == 's' ? OBS_CTL_STATUS : OBS_CTL_LIST;
		if (n != 1) {
			snprintf(err, err_len, "%s takes no argument", words[0]);
			return -1;
		}
		return 0;
	}
	if (strcmp(words[0], "cancel") == 0) {
		out->command = OBS_CTL_CANCEL;
		if (n != 2) {
			snprintf(err, err_len, "cancel takes one device ID");
			return -1;
		}
		if (srup_hex_parse_id(words[1], &out->device_id) != 0) {
			snprintf(err, err_len, "'%s' is not a device ID (1 to 16 hex digits)",
				 words[1]);
			return -1;
		}
		return 0;
	}
	if (strcmp(words[0], "history") == 0) {
		out->command = OBS_CTL_HISTORY;
		out->count = OBS_CTL_HISTORY_DEFAULT;
		if (n > 2) {
			snprintf(err, err_len, "history takes at most one count");
			return -1;
		}
		if (n == 2 && parse_count(words[1], &out->count) != 0) {
			snprintf(err, err_len, "'%s' is not a count (1..%u)", words[1],
				 OBS_CTL_HISTORY_MAX);
			return -1;
		}
		return 0;
	}
	snprintf(err, err_len, "unknown command '%s' (status, list, cancel DEVICE, history [N])",
		 words[0]);
	return -1;
}
