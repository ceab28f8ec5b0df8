/* Calls radio_ble_present once, for the layer-1 tests, and prints what it
 * returned:  err=<number> <radio_strerror> | result=0x.. | detail=<text> */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radio.h"
#include "srup_log.h"

int main(int argc, char **argv)
{
	struct radio_ble_config cfg = {.adapter = "hci1"};
	struct srup_frame f = {0};
	uint64_t expected = 0;
	unsigned timeout_ms = 10000;
	uint8_t result = 0xFF;
	char detail[256];
	const char *value = NULL;
	enum radio_err e;

	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];

		if (strcmp(a, "--adapter") == 0)
			snprintf(cfg.adapter, sizeof(cfg.adapter), "%s", v);
		else if (strcmp(a, "--expect") == 0)
			expected = strtoull(v, NULL, 16);
		else if (strcmp(a, "--device") == 0)
			f.device_id = strtoull(v, NULL, 16);
		else if (strcmp(a, "--value") == 0)
			value = v;
		else if (strcmp(a, "--encrypt") == 0)
			cfg.require_encryption = strcmp(v, "yes") == 0;
		else if (strcmp(a, "--timeout-ms") == 0)
			timeout_ms = (unsigned)strtoul(v, NULL, 10);
		else {
			fprintf(stderr, "unknown option %s\n", a);
			return 2;
		}
	}
	if (!value || strlen(value) == 0 || strlen(value) > SRUP_FRAME_VALUE_MAX) {
		fprintf(stderr, "usage: ble_present_driver --value TEXT [--device HEX] "
				"[--expect HEX] [--adapter NAME] [--timeout-ms N] [--encrypt yes]\n");
		return 2;
	}
	f.value_len = (uint16_t)strlen(value);
	memcpy(f.value, value, f.value_len);
	srup_log_set_level(LOG_DEBUG);

	e = radio_ble_present(&cfg, expected, &f, timeout_ms, &result, detail, sizeof(detail));
	srup_frame_wipe(&f);
	printf("err=%d %s\nresult=0x%02X\ndetail=%s\n", (int)e, radio_strerror(e), result, detail);
	return 0;
}
