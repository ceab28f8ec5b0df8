/* The inbound record store alone: each record lives as a request does in
 * srup-observerd (written and synced, marked accepted, a note written and
 * synced, removed), in a state directory on the disk under test. Prints,
 * for the slot file and for one file per record (the form of records too
 * large for a slot, and of every record before the slot file), the CPU
 * time (user + system) and wall time per record and the synced write's
 * latency.
 *
 * usage: srup-bench-inbound-store [DIR [RECORDS [PAYLOAD_BYTES]]]
 *   DIR: where the state directories are made (default /var/tmp: a disk,
 *   not a tmpfs). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "srup_inbound.h"
#include "srup_log.h"

static double cpu_ms(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
}

static double wall_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int run(const char *base, const char *form, size_t max_slots, int n, size_t plen)
{
	char dir[4096], path[4200];
	uint8_t *payload = malloc(plen ? plen : 1);
	double *lat = calloc((size_t)n, sizeof(*lat)), c0, t0;
	struct srup_inbound *in = NULL;
	char detail[256] = "";
	enum srup_inbound_err e;

	snprintf(dir, sizeof(dir), "%s/srup-bench-inbound-XXXXXX", base);
	if (!payload || !lat || !mkdtemp(dir)) {
		fprintf(stderr, "cannot make a directory under %s: %s\n", base, strerror(errno));
		return 1;
	}
	memset(payload, 0x5a, plen);
	e = srup_inbound_open(dir, max_slots, &in, detail, sizeof(detail));
	if (e != SRUP_INBOUND_OK) {
		fprintf(stderr, "%s: %s: %s\n", dir, srup_inbound_strerror(e), detail);
		return 1;
	}
	c0 = cpu_ms();
	t0 = wall_ms();
	for (int i = 0; i < n; i++) {
		uint64_t id;
		double at = wall_ms();

		e = srup_inbound_write(in, "SRUP/0123456789abcdef", 21, payload, plen, &id);
		lat[i] = wall_ms() - at;
		if (e == SRUP_INBOUND_OK)
			e = srup_inbound_mark_accepted(in, id);
		if (e == SRUP_INBOUND_OK)
			e = srup_inbound_note(in, id, "\x60", 1, false);
		if (e == SRUP_INBOUND_OK)
			e = srup_inbound_note_sync(in, id);
		if (e != SRUP_INBOUND_OK) {
			fprintf(stderr, "record %d: %s: %s\n", i, srup_inbound_strerror(e),
				strerror(errno));
			return 1;
		}
		srup_inbound_remove(in, id);
	}
	c0 = cpu_ms() - c0;
	t0 = wall_ms() - t0;
	srup_inbound_free(in);
	qsort(lat, (size_t)n, sizeof(*lat), by_value);
	printf("  %-22s CPU %.3f ms/record   wall %.3f ms/record   synced write p50 %.3f ms "
	       "p99 %.3f ms\n", form, c0 / n, t0 / n, lat[n / 2], lat[(size_t)n * 99 / 100]);
	/* Every record was removed: the slot file is all that is left. */
	snprintf(path, sizeof(path), "%s/inbound/slots", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/inbound", dir);
	free(payload);
	free(lat);
	return rmdir(path) == 0 && rmdir(dir) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/var/tmp";
	int n = argc > 2 ? atoi(argv[2]) : 500;
	long plen = argc > 3 ? atol(argv[3]) : 700;
	int rc = 0;

	if (n < 1 || plen < 0 || (unsigned long)plen > SRUP_INBOUND_SLOT_CAPACITY - 21) {
		fprintf(stderr, "usage: %s [DIR [RECORDS [PAYLOAD_BYTES <= %u]]]\n", argv[0],
			SRUP_INBOUND_SLOT_CAPACITY - 21);
		return 2;
	}
	printf("inbound store, %d records of %ld payload bytes in %s (write + fdatasync, accept, "
	       "note + sync, remove):\n", n, plen, base);
	/* Alternated, so that both meet the same disk. */
	for (int round = 0; round < 2; round++) {
		rc |= run(base, "slot file", SRUP_INBOUND_SLOTS_MAX, n, (size_t)plen);
		rc |= run(base, "one file per record", 0, n, (size_t)plen);
	}
	return rc;
}
