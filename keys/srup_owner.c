#include "srup_owner.h"

#include <grp.h>
#include <pwd.h>
#include <string.h>

int srup_owner_parse(const char *text, uid_t *uid, gid_t *gid)
{
	char user[256];
	const char *colon = strchr(text, ':');
	size_t n = colon ? (size_t)(colon - text) : strlen(text);
	struct passwd *pw;

	if (n == 0 || n >= sizeof(user))
		return -1;
	memcpy(user, text, n);
	user[n] = '\0';
	pw = getpwnam(user);
	if (!pw)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (colon) {
		struct group *gr = getgrnam(colon + 1);

		if (!gr)
			return -1;
		*gid = gr->gr_gid;
	}
	return 0;
}
