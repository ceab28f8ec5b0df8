/* libFuzzer target: the control socket's request parser (obs_ctl_parse) on
 * arbitrary bytes, as one line. A request that parses is written back in
 * its canonical form and must parse to the same request; an error is one
 * non-empty, NUL-terminated line of printable text. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "obs_control_proto.h"

static void check_error(const char *err, size_t cap)
{
	size_t n = strnlen(err, cap);

	if (n == 0 || n == cap)
		__builtin_trap();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] > 0x7e)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct obs_ctl_request req, again;
	char err[200], canon[64];
	int n = 0;

	memset(err, 0, sizeof(err));
	if (obs_ctl_parse((const char *)data, size, &req, err, sizeof(err)) != 0) {
		check_error(err, sizeof(err));
		return 0;
	}
	/* Accepted: short, printable, and it means what it says. */
	if (size >= OBS_CTL_REQUEST_MAX)
		__builtin_trap();
	for (size_t i = 0; i < size; i++)
		if ((data[i] < 0x20 || data[i] > 0x7e) && !(i == size - 1 && data[i] == '\r'))
			__builtin_trap();
	switch (req.command) {
	case OBS_CTL_STATUS:
	case OBS_CTL_LIST:
		n = snprintf(canon, sizeof(canon), "%s", obs_ctl_command_name(req.command));
		break;
	case OBS_CTL_CANCEL:
		n = snprintf(canon, sizeof(canon), "cancel %llx", (unsigned long long)req.device_id);
		break;
	case OBS_CTL_HISTORY:
		if (req.count == 0 || req.count > OBS_CTL_HISTORY_MAX)
			__builtin_trap();
		n = snprintf(canon, sizeof(canon), "history %u", req.count);
		break;
	default:
		__builtin_trap();
	}
	if (n <= 0 || obs_ctl_parse(canon, (size_t)n, &again, err, sizeof(err)) != 0 ||
	    again.command != req.command || again.device_id != req.device_id ||
	    again.count != req.count)
		__builtin_trap();
	return 0;
}
