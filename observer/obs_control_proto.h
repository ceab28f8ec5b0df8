/* The control socket's request language, parsed without I/O (so that a
 * fuzzer can call it).
 *
 * A request is one line of printable ASCII, at most OBS_CTL_REQUEST_MAX
 * bytes with its newline; words are separated by spaces:
 *
 *   status
 *   list
 *   cancel <device ID, 1..16 hex digits>
 *   history [N]          N = 1..OBS_CTL_HISTORY_MAX, default 10
 *
 * Every answer is one line of JSON: {"ok":true,...} or
 * {"ok":false,"error":"..."}. srup-observerctl renders it for people. */
#ifndef SRUP_OBS_CONTROL_PROTO_H
#define SRUP_OBS_CONTROL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define OBS_CTL_REQUEST_MAX 128u
#define OBS_CTL_HISTORY_MAX 256u
#define OBS_CTL_HISTORY_DEFAULT 10u

enum obs_ctl_command {
	OBS_CTL_STATUS,
	OBS_CTL_LIST,
	OBS_CTL_CANCEL,
	OBS_CTL_HISTORY,
};

struct obs_ctl_request {
	enum obs_ctl_command command;
	uint64_t device_id;     /* cancel */
	unsigned count;         /* history */
};

/* line: the request without its newline (len bytes, not NUL-terminated).
 * Returns 0, or -1 with a reason in err. */
int obs_ctl_parse(const char *line, size_t len, struct obs_ctl_request *out, char *err,
		  size_t err_len);

const char *obs_ctl_command_name(enum obs_ctl_command command);

#endif
