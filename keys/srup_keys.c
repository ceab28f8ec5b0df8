/* Key files: loading with the checks of srup_keys.h, and writing them
 * atomically for srup-keygen. */
#include "srup_keys.h"
#include "srup_keys_lenient.h"

#include "srup.h"
#include "srup_detail.h"
#include "srup_fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>

/* A 4096-bit PKCS#1 PEM is about 3.3 KB; anything far larger is not a key. */
#define KEY_FILE_MAX (64u * 1024u)

const char *srup_keys_strerror(enum srup_keys_err err)
{
	switch (err) {
	case SRUP_KEYS_OK:
		return "success";
	case SRUP_KEYS_E_NOMEM:
		return "out of memory";
	case SRUP_KEYS_E_ARG:
		return "invalid argument";
	case SRUP_KEYS_E_OPEN:
		return "key file cannot be opened or read";
	case SRUP_KEYS_E_PERMISSIONS:
		return "private key file is accessible by group or others";
	case SRUP_KEYS_E_FORMAT:
		return "not a PEM key of the expected kind";
	case SRUP_KEYS_E_NOT_RSA:
		return "key is not RSA";
	case SRUP_KEYS_E_SIZE:
		return "RSA key size not within 2048..4096 bits";
	case SRUP_KEYS_E_NOT_FOUND:
		return "no key for that ID";
	case SRUP_KEYS_E_WRITE:
		return "writing the key file failed";
	case SRUP_KEYS_E__COUNT:
		break;
	}
	return "unknown key error";
}

/* The file's bytes; private ones are wiped when freed. */
struct key_file {
	unsigned char *data;
	size_t len;
};

static void key_file_release(struct key_file *kf)
{
	if (kf->data != NULL) {
		OPENSSL_cleanse(kf->data, kf->len);
		free(kf->data);
	}
	kf->data = NULL;
	kf->len = 0;
}

/* Read a key file through one descriptor: the mode checked by fstat() is
 * the mode of the file that is read (no window between check and open).
 * For a private key, a mode with any group/other bit is refused, unless
 * too_open is given: then it is reported there and the file is read. */
static enum srup_keys_err key_file_read(const char *path, bool is_private, bool *too_open,
					struct key_file *kf, char *detail, size_t detail_len)
{
	kf->data = NULL;
	kf->len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		set_detail(detail, detail_len, "cannot open '%s': %s", path, strerror(errno));
		return SRUP_KEYS_E_OPEN;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		set_detail(detail, detail_len, "cannot stat '%s': %s", path, strerror(errno));
		close(fd);
		return SRUP_KEYS_E_OPEN;
	}
	if (!S_ISREG(st.st_mode)) {
		set_detail(detail, detail_len, "'%s' is not a regular file", path);
		close(fd);
		return SRUP_KEYS_E_OPEN;
	}
	if (is_private && (st.st_mode & 077) != 0) {
		set_detail(detail, detail_len,
			   "permissions %04o for '%s' are too open; the private key must not be "
			   "accessible by others (chmod 600 '%s')",
			   (unsigned)(st.st_mode & 07777), path, path);
		if (too_open == NULL) {
			close(fd);
			return SRUP_KEYS_E_PERMISSIONS;
		}
		*too_open = true;
	}

	/* st_size is only a hint: read until end of file, up to the bound. */
	unsigned char *buf = malloc(KEY_FILE_MAX + 1);
	if (buf == NULL) {
		close(fd);
		return SRUP_KEYS_E_NOMEM;
	}
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, buf + have, KEY_FILE_MAX + 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_detail(detail, detail_len, "cannot read '%s': %s", path,
				   strerror(errno));
			OPENSSL_cleanse(buf, have);
			free(buf);
			close(fd);
			return SRUP_KEYS_E_OPEN;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		if (have > KEY_FILE_MAX) {
			set_detail(detail, detail_len,
				   "'%s' is larger than %u bytes: not a key file", path,
				   KEY_FILE_MAX);
			OPENSSL_cleanse(buf, have);
			free(buf);
			close(fd);
			return SRUP_KEYS_E_FORMAT;
		}
	}
	close(fd);
	kf->data = buf;
	kf->len = have;
	return SRUP_KEYS_OK;
}

/* One PEM block as PEM_read_bio returns it. */
struct pem_block {
	char *name;
	char *header;
	unsigned char *der;
	long der_len;
};

static void pem_block_release(struct pem_block *b)
{
	OPENSSL_free(b->name);
	OPENSSL_free(b->header);
	if (b->der != NULL)
		OPENSSL_clear_free(b->der, b->der_len > 0 ? (size_t)b->der_len : 0);
	memset(b, 0, sizeof(*b));
}

enum pem_next {
	PEM_NEXT_BLOCK,
	PEM_NEXT_END,     /* no further BEGIN line */
	PEM_NEXT_CORRUPT, /* a block whose base64 or END line is broken */
};

static enum pem_next pem_next_block(BIO *bio, struct pem_block *b)
{
	memset(b, 0, sizeof(*b));
	if (PEM_read_bio(bio, &b->name, &b->header, &b->der, &b->der_len) == 1)
		return PEM_NEXT_BLOCK;
	unsigned long e = ERR_peek_last_error();
	ERR_clear_error();
	pem_block_release(b);
	if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
		return PEM_NEXT_END;
	return PEM_NEXT_CORRUPT;
}

/* DER of one structure to a key, through the OpenSSL 3 decoder. */
static EVP_PKEY *decode_der(const unsigned char *der, long der_len, const char *structure,
			    const char *keytype, int selection)
{
	if (der_len <= 0)
		return NULL;
	EVP_PKEY *pkey = NULL;
	OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", structure, keytype,
							       selection, NULL, NULL);
	if (dctx == NULL)
		return NULL;
	const unsigned char *p = der;
	size_t left = (size_t)der_len;
	if (OSSL_DECODER_from_data(dctx, &p, &left) != 1 || left != 0 || pkey == NULL) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_DECODER_CTX_free(dctx);
	ERR_clear_error();
	return pkey;
}

/* The key rule is libsrup's (srup_key_check); this adds a message that
 * names the file and says which half of the rule failed. */
static enum srup_keys_err key_check(EVP_PKEY *key, const char *path, char *detail,
				    size_t detail_len)
{
	if (srup_key_check(key) == SRUP_OK)
		return SRUP_KEYS_OK;
	if (!EVP_PKEY_is_a(key, "RSA")) {
		const char *tn = EVP_PKEY_get0_type_name(key);
		set_detail(detail, detail_len, "'%s' holds a key of type %s; SRUP keys are RSA",
			   path, tn != NULL ? tn : "(unknown)");
		return SRUP_KEYS_E_NOT_RSA;
	}
	set_detail(detail, detail_len, "'%s' holds a %d-bit RSA key; SRUP needs %d to %d bits",
		   path, EVP_PKEY_get_bits(key), SRUP_RSA_MIN_BITS, SRUP_RSA_MAX_BITS);
	return SRUP_KEYS_E_SIZE;
}

/* A decoded key is kept only if it passes the SRUP key rule. */
static enum srup_keys_err accept_key(EVP_PKEY *key, const char *path, EVP_PKEY **out,
				     char *detail, size_t detail_len)
{
	enum srup_keys_err rc = key_check(key, path, detail, detail_len);
	if (rc != SRUP_KEYS_OK) {
		EVP_PKEY_free(key);
		return rc;
	}
	*out = key;
	return SRUP_KEYS_OK;
}

static bool name_is(const struct pem_block *b, const char *name)
{
	return b->name != NULL && strcmp(b->name, name) == 0;
}

static bool name_ends(const struct pem_block *b, const char *suffix)
{
	if (b->name == NULL)
		return false;
	size_t n = strlen(b->name), s = strlen(suffix);
	return n >= s && strcmp(b->name + n - s, suffix) == 0;
}

static enum srup_keys_err parse_private(const struct key_file *kf, const char *path,
					EVP_PKEY **out, char *detail, size_t detail_len)
{
	BIO *bio = BIO_new_mem_buf(kf->data, (int)kf->len);
	if (bio == NULL)
		return SRUP_KEYS_E_NOMEM;
	enum srup_keys_err rc = SRUP_KEYS_E_FORMAT;
	bool saw_public = false, saw_any = false;
	char other[64] = "";
	for (;;) {
		struct pem_block b;
		enum pem_next next = pem_next_block(bio, &b);
		if (next == PEM_NEXT_CORRUPT) {
			set_detail(detail, detail_len, "'%s' has a corrupt PEM block", path);
			goto out;
		}
		if (next == PEM_NEXT_END)
			break;
		saw_any = true;
		const char *structure = NULL, *keytype = NULL;
		if (name_is(&b, "ENCRYPTED PRIVATE KEY") ||
		    (name_ends(&b, "PRIVATE KEY") && b.header != NULL &&
		     strstr(b.header, "ENCRYPTED") != NULL)) {
			set_detail(detail, detail_len,
				   "'%s' is passphrase-protected; SRUP needs an unencrypted "
				   "private key",
				   path);
			pem_block_release(&b);
			goto out;
		} else if (name_is(&b, "PRIVATE KEY")) {
			structure = "PrivateKeyInfo";
		} else if (name_is(&b, "RSA PRIVATE KEY")) {
			structure = "type-specific";
			keytype = "RSA";
		} else if (name_is(&b, "OPENSSH PRIVATE KEY")) {
			set_detail(detail, detail_len,
				   "'%s' is in OpenSSH format; SRUP needs PEM (PKCS#1 or PKCS#8)",
				   path);
			pem_block_release(&b);
			goto out;
		} else if (name_ends(&b, "PRIVATE KEY")) {
			/* "EC PRIVATE KEY", "DSA PRIVATE KEY": known, but not RSA. */
			set_detail(detail, detail_len, "'%s' holds an \"%s\"; SRUP keys are RSA",
				   path, b.name);
			pem_block_release(&b);
			rc = SRUP_KEYS_E_NOT_RSA;
			goto out;
		} else {
			if (name_ends(&b, "PUBLIC KEY"))
				saw_public = true;
			else if (other[0] == '\0')
				snprintf(other, sizeof(other), "%s", b.name);
			pem_block_release(&b);
			continue;
		}
		EVP_PKEY *key = decode_der(b.der, b.der_len, structure, keytype, EVP_PKEY_KEYPAIR);
		if (key == NULL) {
			set_detail(detail, detail_len, "'%s': the \"%s\" block does not decode",
				   path, b.name);
			pem_block_release(&b);
			goto out;
		}
		pem_block_release(&b);
		rc = accept_key(key, path, out, detail, detail_len);
		goto out;
	}
	if (saw_public)
		set_detail(detail, detail_len, "'%s' holds a public key, not a private key", path);
	else if (saw_any)
		set_detail(detail, detail_len, "'%s' holds no private key (found \"%s\")", path,
			   other);
	else
		set_detail(detail, detail_len, "'%s' is not a PEM file (no -----BEGIN line)",
			   path);
out:
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

static enum srup_keys_err parse_public(const struct key_file *kf, const char *path,
				       EVP_PKEY **out, char *detail, size_t detail_len)
{
	BIO *bio = BIO_new_mem_buf(kf->data, (int)kf->len);
	if (bio == NULL)
		return SRUP_KEYS_E_NOMEM;
	enum srup_keys_err rc = SRUP_KEYS_E_FORMAT;
	bool saw_private = false, saw_cert = false, saw_any = false;
	char other[64] = "";
	for (;;) {
		struct pem_block b;
		enum pem_next next = pem_next_block(bio, &b);
		if (next == PEM_NEXT_CORRUPT) {
			set_detail(detail, detail_len, "'%s' has a corrupt PEM block", path);
			goto out;
		}
		if (next == PEM_NEXT_END)
			break;
		saw_any = true;
		if (name_is(&b, "RSA PUBLIC KEY")) {
			/* libSRUP reads SubjectPublicKeyInfo only (WIRE.md Q3). */
			set_detail(detail, detail_len,
				   "'%s' is a PKCS#1 \"RSA PUBLIC KEY\" file; SRUP public keys "
				   "are SubjectPublicKeyInfo (\"BEGIN PUBLIC KEY\"); convert with "
				   "'openssl rsa -RSAPublicKey_in -pubout'",
				   path);
			pem_block_release(&b);
			goto out;
		}
		if (!name_is(&b, "PUBLIC KEY")) {
			if (name_ends(&b, "PRIVATE KEY"))
				saw_private = true;
			else if (name_ends(&b, "CERTIFICATE"))
				saw_cert = true;
			else if (other[0] == '\0')
				snprintf(other, sizeof(other), "%s", b.name);
			pem_block_release(&b);
			continue;
		}
		EVP_PKEY *key = decode_der(b.der, b.der_len, "SubjectPublicKeyInfo", NULL,
					   EVP_PKEY_PUBLIC_KEY);
		pem_block_release(&b);
		if (key == NULL) {
			set_detail(detail, detail_len,
				   "'%s': the \"PUBLIC KEY\" block does not decode", path);
			goto out;
		}
		rc = accept_key(key, path, out, detail, detail_len);
		goto out;
	}
	if (saw_private)
		set_detail(detail, detail_len,
			   "'%s' holds a private key; give the public half (\"BEGIN PUBLIC KEY\")",
			   path);
	else if (saw_cert)
		set_detail(detail, detail_len,
			   "'%s' is a certificate; extract its key with 'openssl x509 -pubkey'",
			   path);
	else if (saw_any)
		set_detail(detail, detail_len, "'%s' holds no public key (found \"%s\")", path,
			   other);
	else
		set_detail(detail, detail_len, "'%s' is not a PEM file (no -----BEGIN line)",
			   path);
out:
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

static enum srup_keys_err load_key(const char *path, bool is_private, bool *too_open,
				   EVP_PKEY **out, char *detail, size_t detail_len)
{
	if (path == NULL || out == NULL) {
		set_detail(detail, detail_len, "no key file given");
		return SRUP_KEYS_E_ARG;
	}
	*out = NULL;
	struct key_file kf;
	enum srup_keys_err rc =
		key_file_read(path, is_private, too_open, &kf, detail, detail_len);
	if (rc != SRUP_KEYS_OK)
		return rc;
	if (is_private)
		rc = parse_private(&kf, path, out, detail, detail_len);
	else
		rc = parse_public(&kf, path, out, detail, detail_len);
	key_file_release(&kf);
	return rc;
}

enum srup_keys_err srup_key_load_private(const char *path, EVP_PKEY **out, char *detail,
					 size_t detail_len)
{
	return load_key(path, true, NULL, out, detail, detail_len);
}

enum srup_keys_err srup_key_load_private_lenient(const char *path, EVP_PKEY **out, bool *too_open,
						 char *detail, size_t detail_len)
{
	if (too_open == NULL)
		return SRUP_KEYS_E_ARG;
	*too_open = false;
	return load_key(path, true, too_open, out, detail, detail_len);
}

enum srup_keys_err srup_key_load_public(const char *path, EVP_PKEY **out, char *detail,
					size_t detail_len)
{
	return load_key(path, false, NULL, out, detail, detail_len);
}

/* Write all of data to path with the given mode: a fresh temporary file
 * (mkostemp: O_CREAT|O_EXCL, mode 0600), fsync, rename over path, fsync
 * the directory. A reader sees the old file or the whole new one. */
static enum srup_keys_err write_file_atomic(const char *path, const unsigned char *data,
					    size_t len, mode_t mode, char *detail,
					    size_t detail_len)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + sizeof(".XXXXXX"));
	if (tmp == NULL)
		return SRUP_KEYS_E_NOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".XXXXXX", sizeof(".XXXXXX"));

	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		set_detail(detail, detail_len, "cannot create a file beside '%s': %s", path,
			   strerror(errno));
		free(tmp);
		return SRUP_KEYS_E_WRITE;
	}
	const char *step = "set the mode of";
	if (fchmod(fd, mode) != 0)
		goto fail;
	step = "write";
	if (srup_write_all(fd, data, len) != 0)
		goto fail;
	step = "sync";
	if (fsync(fd) != 0)
		goto fail;
	step = "close";
	int cfd = fd;
	fd = -1;
	if (close(cfd) != 0)
		goto fail;
	step = "rename into place";
	if (rename(tmp, path) != 0)
		goto fail;
	free(tmp);

	/* Make the rename itself durable (best effort: it happened). */
	(void)srup_sync_parent(path);
	return SRUP_KEYS_OK;

fail:
	set_detail(detail, detail_len, "cannot %s '%s': %s", step, path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return SRUP_KEYS_E_WRITE;
}

static enum srup_keys_err write_key(const char *path, EVP_PKEY *key, int selection,
				    const char *structure, mode_t mode, char *detail,
				    size_t detail_len)
{
	if (path == NULL || key == NULL) {
		set_detail(detail, detail_len, "no key or no file name given");
		return SRUP_KEYS_E_ARG;
	}
	enum srup_keys_err rc = key_check(key, path, detail, detail_len);
	if (rc != SRUP_KEYS_OK)
		return rc;
	OSSL_ENCODER_CTX *ectx =
		OSSL_ENCODER_CTX_new_for_pkey(key, selection, "PEM", structure, NULL);
	if (ectx == NULL || OSSL_ENCODER_CTX_get_num_encoders(ectx) == 0) {
		OSSL_ENCODER_CTX_free(ectx);
		ERR_clear_error();
		set_detail(detail, detail_len, "'%s': the key cannot be encoded as %s", path,
			   structure);
		return SRUP_KEYS_E_ARG;
	}
	unsigned char *pem = NULL;
	size_t pem_len = 0;
	int ok = OSSL_ENCODER_to_data(ectx, &pem, &pem_len);
	OSSL_ENCODER_CTX_free(ectx);
	if (ok != 1 || pem == NULL) {
		ERR_clear_error();
		set_detail(detail, detail_len, "'%s': the key cannot be encoded as %s", path,
			   structure);
		return SRUP_KEYS_E_ARG;
	}
	rc = write_file_atomic(path, pem, pem_len, mode, detail, detail_len);
	OPENSSL_clear_free(pem, pem_len);
	return rc;
}

enum srup_keys_err srup_key_write_private(const char *path, EVP_PKEY *key, char *detail,
					  size_t detail_len)
{
	return write_key(path, key, EVP_PKEY_KEYPAIR, "PrivateKeyInfo", 0600, detail,
			 detail_len);
}

enum srup_keys_err srup_key_write_public(const char *path, EVP_PKEY *key, char *detail,
					 size_t detail_len)
{
	return write_key(path, key, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo", 0644, detail,
			 detail_len);
}

enum srup_keys_err srup_key_generate(int bits, EVP_PKEY **out)
{
	if (out == NULL)
		return SRUP_KEYS_E_ARG;
	*out = NULL;
	if (bits < SRUP_RSA_MIN_BITS || bits > SRUP_RSA_MAX_BITS)
		return SRUP_KEYS_E_SIZE;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *key = NULL;
	/* Key generation fails only when OpenSSL cannot allocate or seed. */
	enum srup_keys_err rc = SRUP_KEYS_E_NOMEM;
	if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) == 1 && EVP_PKEY_generate(ctx, &key) == 1) {
		*out = key;
		rc = SRUP_KEYS_OK;
	}
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}
