/* Finding the real Debian kernel images that scripts/fetch-kernels.sh puts in kernels/. */
#ifndef KVMINI_TESTS_KERNELS_H
#define KVMINI_TESTS_KERNELS_H

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* flavour "cloud-amd64" or "amd64" (the generic one, which excludes cloud). Returns a
 * malloc'ed path or NULL. */
static inline char *test_kernel_path(const char *flavour)
{
	const char *dir = getenv("KVMINI_KERNEL_DIR");
	char pattern[512];
	glob_t g;
	char *found = NULL;
	snprintf(pattern, sizeof(pattern), "%s/vmlinuz-*-%s", dir && *dir ? dir : "kernels",
		 flavour);
	if (glob(pattern, 0, NULL, &g) != 0)
		return NULL;
	for (size_t i = 0; i < g.gl_pathc && !found; i++) {
		if (strcmp(flavour, "amd64") == 0 && strstr(g.gl_pathv[i], "cloud"))
			continue;
		found = strdup(g.gl_pathv[i]);
	}
	globfree(&g);
	return found;
}

#endif
