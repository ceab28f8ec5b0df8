/* Build-time helper: write the encrypted blob of a SRUP message file (the
 * seed for fuzz_srup_blob_open). Usage: fuzz_seed_blob MESSAGE.bin OUT */
#include <stdio.h>
#include <stdlib.h>

#include "srup.h"

int main(int argc, char **argv)
{
	static uint8_t buf[1 << 17];
	const struct srup_field_desc *f;
	struct srup_decode_error e;
	struct srup_msg *m = NULL;
	struct srup_bytes *blob;
	FILE *in, *out;
	size_t len;

	if (argc != 3) {
		fprintf(stderr, "usage: %s MESSAGE.bin OUT\n", argv[0]);
		return 2;
	}
	in = fopen(argv[1], "rb");
	if (!in) {
		perror(argv[1]);
		return 1;
	}
	len = fread(buf, 1, sizeof buf, in);
	fclose(in);
	if (srup_msg_decode(buf, len, &m, &e) != SRUP_OK) {
		fprintf(stderr, "%s: %s (%s at byte %zu)\n", argv[1], srup_strerror(e.err), e.field,
			e.offset);
		return 1;
	}
	f = srup_type_blob_field(srup_type_by_code(m->type));
	if (!f) {
		fprintf(stderr, "%s: type carries no blob\n", argv[1]);
		srup_msg_free(m);
		return 1;
	}
	blob = srup_field_bytes(m, f);
	out = fopen(argv[2], "wb");
	if (!out || fwrite(blob->data, 1, blob->len, out) != blob->len || fclose(out) != 0) {
		perror(argv[2]);
		srup_msg_free(m);
		return 1;
	}
	srup_msg_free(m);
	return 0;
}
