/* Test program: radio_nfc_present with a frame of the caller's choosing.
 *
 *   nfc_present_probe --device CONNSTRING --id HEX --value HEX [--timeout-ms N]
 *
 * Prints "present ERR result=0xRR ms=N detail=..." (ERR from
 * radio_strerror) and exits 0 when the frame was read, 1 otherwise. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "radio.h"
#include "srup_log.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"device", required_argument, NULL, 'd'},
		{"id", required_argument, NULL, 'i'},
		{"value", required_argument, NULL, 'v'},
		{"timeout-ms", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	struct radio_nfc_config cfg;
	struct srup_frame f;
	unsigned timeout_ms = 5000;
	uint8_t result = 0xFF;
	char detail[512] = "";
	enum radio_err err;
	const char *hex = "";
	double t0;
	size_t n;
	int c;

	memset(&cfg, 0, sizeof(cfg));
	memset(&f, 0, sizeof(f));
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			snprintf(cfg.device, sizeof(cfg.device), "%s", optarg);
			break;
		case 'i':
			f.device_id = strtoull(optarg, NULL, 16);
			break;
		case 'v':
			hex = optarg;
			break;
		case 't':
			timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	n = strlen(hex);
	if (n == 0 || n % 2 || n / 2 > SRUP_FRAME_VALUE_MAX) {
		fprintf(stderr, "--value: 1..256 bytes of hex\n");
		return 2;
	}
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			fprintf(stderr, "--value: not hex\n");
			return 2;
		}
		f.value[i] = (uint8_t)v;
	}
	f.value_len = (uint16_t)(n / 2);
	srup_log_set_level(LOG_DEBUG);
	t0 = now_ms();
	err = radio_nfc_present(&cfg, &f, timeout_ms, &result, detail, sizeof(detail));
	printf("present %s result=0x%02x ms=%.0f detail=%s\n", radio_strerror(err), result,
	       now_ms() - t0, detail);
	srup_frame_wipe(&f);
	return err == RADIO_OK ? 0 : 1;
}
