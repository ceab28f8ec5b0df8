/* --owner USER[:GROUP] of the key-writing tools (srup-keygen,
 * srup-register): who the files they write belong to. Not part of libsrup. */
#ifndef SRUP_OWNER_H
#define SRUP_OWNER_H

#include <sys/types.h>

/* "USER" (its primary group) or "USER:GROUP", as names of this system.
 * Returns 0, or -1 if either names nothing here. */
int srup_owner_parse(const char *text, uid_t *uid, gid_t *gid);

#endif
