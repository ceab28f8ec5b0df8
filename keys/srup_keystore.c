/* The peer key store: public keys by SRUP ID, from a directory of
 * "<16 lowercase hex digits>.pem" files, loaded on first lookup and cached,
 * plus keys added in memory. */
#include "srup_keys.h"

#include "srup.h"
#include "srup_detail.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct keystore_entry {
	uint64_t id;
	EVP_PKEY *key;
};

struct srup_keystore {
	char *dir;  /* NULL: a store held in memory only */
	/* Sorted by id; binary search. */
	struct keystore_entry *entries;
	size_t n_entries, cap_entries;
	/* Keys replaced by srup_keystore_add. Pointers handed out by lookup
	 * stay valid until the store is freed, so they are kept here. */
	EVP_PKEY **retired;
	size_t n_retired, cap_retired;
	srup_keystore_resolver resolver; /* asked on a miss (srup_keystore_set_resolver) */
	void *resolver_user;
};

/* dir may be NULL for a store that only holds keys added with
 * srup_keystore_add. */
enum srup_keys_err srup_keystore_open(const char *dir, struct srup_keystore **out, char *detail,
				      size_t detail_len)
{
	if (out == NULL)
		return SRUP_KEYS_E_ARG;
	*out = NULL;
	if (dir != NULL) {
		struct stat st;
		if (stat(dir, &st) != 0) {
			if (detail != NULL && detail_len > 0)
				snprintf(detail, detail_len, "key store '%s': %s", dir,
					 strerror(errno));
			return SRUP_KEYS_E_OPEN;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (detail != NULL && detail_len > 0)
				snprintf(detail, detail_len, "key store '%s' is not a directory",
					 dir);
			return SRUP_KEYS_E_OPEN;
		}
	}
	struct srup_keystore *ks = calloc(1, sizeof(*ks));
	if (ks == NULL)
		return SRUP_KEYS_E_NOMEM;
	if (dir != NULL) {
		ks->dir = strdup(dir);
		if (ks->dir == NULL) {
			free(ks);
			return SRUP_KEYS_E_NOMEM;
		}
	}
	*out = ks;
	return SRUP_KEYS_OK;
}

void srup_keystore_free(struct srup_keystore *ks)
{
	if (ks == NULL)
		return;
	for (size_t i = 0; i < ks->n_entries; i++)
		EVP_PKEY_free(ks->entries[i].key);
	for (size_t i = 0; i < ks->n_retired; i++)
		EVP_PKEY_free(ks->retired[i]);
	free(ks->entries);
	free(ks->retired);
	free(ks->dir);
	free(ks);
}

/* Index of id, or of the place it would be inserted. */
static size_t keystore_find(const struct srup_keystore *ks, uint64_t id, bool *found)
{
	size_t lo = 0, hi = ks->n_entries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ks->entries[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < ks->n_entries && ks->entries[lo].id == id;
	return lo;
}

/* Keys replaced or removed are kept until the store is freed: pointers
 * handed out by lookup stay valid. */
static enum srup_keys_err keystore_retire(struct srup_keystore *ks, EVP_PKEY *key)
{
	if (ks->n_retired == ks->cap_retired) {
		size_t cap = ks->cap_retired ? ks->cap_retired * 2 : 4;
		EVP_PKEY **r = realloc(ks->retired, cap * sizeof(*r));
		if (r == NULL)
			return SRUP_KEYS_E_NOMEM;
		ks->retired = r;
		ks->cap_retired = cap;
	}
	ks->retired[ks->n_retired++] = key;
	return SRUP_KEYS_OK;
}

/* Takes over the caller's reference to key. */
static enum srup_keys_err keystore_put(struct srup_keystore *ks, uint64_t id, EVP_PKEY *key)
{
	bool found;
	size_t at = keystore_find(ks, id, &found);
	if (found && ks->entries[at].key == NULL) {
		ks->entries[at].key = key; /* a removed ID added again */
		return SRUP_KEYS_OK;
	}
	if (found) {
		if (keystore_retire(ks, ks->entries[at].key) != SRUP_KEYS_OK)
			return SRUP_KEYS_E_NOMEM;
		ks->entries[at].key = key;
		return SRUP_KEYS_OK;
	}
	if (ks->n_entries == ks->cap_entries) {
		size_t cap = ks->cap_entries ? ks->cap_entries * 2 : 8;
		struct keystore_entry *e = realloc(ks->entries, cap * sizeof(*e));
		if (e == NULL)
			return SRUP_KEYS_E_NOMEM;
		ks->entries = e;
		ks->cap_entries = cap;
	}
	memmove(&ks->entries[at + 1], &ks->entries[at],
		(ks->n_entries - at) * sizeof(ks->entries[0]));
	ks->entries[at].id = id;
	ks->entries[at].key = key;
	ks->n_entries++;
	return SRUP_KEYS_OK;
}

enum srup_keys_err srup_keystore_add(struct srup_keystore *ks, uint64_t id, EVP_PKEY *key)
{
	if (ks == NULL || key == NULL)
		return SRUP_KEYS_E_ARG;
	if (srup_key_check(key) != SRUP_OK)
		return EVP_PKEY_is_a(key, "RSA") ? SRUP_KEYS_E_SIZE : SRUP_KEYS_E_NOT_RSA;
	if (EVP_PKEY_up_ref(key) != 1)
		return SRUP_KEYS_E_NOMEM;
	enum srup_keys_err rc = keystore_put(ks, id, key);
	if (rc != SRUP_KEYS_OK)
		EVP_PKEY_free(key);
	return rc;
}

void srup_keystore_set_resolver(struct srup_keystore *ks, srup_keystore_resolver resolver,
				void *user)
{
	if (ks == NULL)
		return;
	ks->resolver = resolver;
	ks->resolver_user = user;
}

/* A miss handed to the resolver; what it finds is kept like a loaded file. */
static EVP_PKEY *resolve(struct srup_keystore *ks, uint64_t id)
{
	EVP_PKEY *key;

	if (ks->resolver == NULL || (key = ks->resolver(id, ks->resolver_user)) == NULL)
		return NULL;
	if (srup_key_check(key) != SRUP_OK || keystore_put(ks, id, key) != SRUP_KEYS_OK) {
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}

enum srup_keys_err srup_keystore_find(struct srup_keystore *ks, uint64_t id, EVP_PKEY **key,
				      char *detail, size_t detail_len)
{
	char name[17], why[256] = "";
	enum srup_keys_err rc = SRUP_KEYS_E_NOT_FOUND;
	struct stat st;

	set_detail(detail, detail_len, "%s", "");
	if (ks == NULL || key == NULL)
		return SRUP_KEYS_E_ARG;
	*key = NULL;
	srup_id_format16(id, name);
	bool found;
	size_t at = keystore_find(ks, id, &found);
	if (found) {
		*key = ks->entries[at].key;
		if (*key)
			return SRUP_KEYS_OK;
		set_detail(detail, detail_len, "the key of %s was removed", name);
		return SRUP_KEYS_E_NOT_FOUND;
	}
	if (ks->dir) {
		/* Misses are not cached: a key file may be added while a daemon runs. */
		size_t len = strlen(ks->dir) + 1 + 16 + sizeof(".pem");
		char *path = malloc(len);

		if (path == NULL)
			return SRUP_KEYS_E_NOMEM;
		snprintf(path, len, "%s/%s.pem", ks->dir, name);
		if (stat(path, &st) != 0 && errno == ENOENT) {
			snprintf(why, sizeof(why), "no key file %s", path);
		} else {
			EVP_PKEY *loaded = NULL;
			char load_why[200] = "";

			rc = srup_key_load_public(path, &loaded, load_why, sizeof(load_why));
			if (rc == SRUP_KEYS_OK) {
				free(path);
				rc = keystore_put(ks, id, loaded);
				if (rc != SRUP_KEYS_OK) {
					EVP_PKEY_free(loaded);
					return rc;
				}
				*key = loaded;
				return SRUP_KEYS_OK;
			}
			/* Unreadable or not a key: that is why, unless a
			 * resolver knows the ID after all. */
			snprintf(why, sizeof(why), "key file %s: %s", path,
				 load_why[0] ? load_why : srup_keys_strerror(rc));
		}
		free(path);
	} else {
		snprintf(why, sizeof(why), "no key added for %s", name);
	}
	*key = resolve(ks, id);
	if (*key)
		return SRUP_KEYS_OK;
	set_detail(detail, detail_len, "%s%s", why,
			ks->resolver ? "; the resolver has none either" : "");
	return rc;
}

EVP_PKEY *srup_keystore_lookup(struct srup_keystore *ks, uint64_t id)
{
	EVP_PKEY *key = NULL;

	return srup_keystore_find(ks, id, &key, NULL, 0) == SRUP_KEYS_OK ? key : NULL;
}

/* A removed ID keeps its entry with no key, so that a file of the store's
 * directory is not loaded for it again. */
enum srup_keys_err srup_keystore_remove(struct srup_keystore *ks, uint64_t id)
{
	if (ks == NULL)
		return SRUP_KEYS_E_ARG;
	/* Loads it from the directory if it is there: that one goes too. */
	if (srup_keystore_lookup(ks, id) == NULL)
		return SRUP_KEYS_E_NOT_FOUND;
	bool found;
	size_t at = keystore_find(ks, id, &found);
	if (keystore_retire(ks, ks->entries[at].key) != SRUP_KEYS_OK)
		return SRUP_KEYS_E_NOMEM;
	ks->entries[at].key = NULL;
	return SRUP_KEYS_OK;
}
