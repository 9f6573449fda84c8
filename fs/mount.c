/* The process-wide mount context (fs.h). */
#include <string.h>

#include "fs/mount.h"

static struct fs_ctx ctx;

struct fs_ctx *fs_ctx_get(void)
{
	return &ctx;
}

ecr *fs_ecr_for(struct fs_ctx *c, const char *registry)
{
	for (size_t i = 0; registry && i < c->nregs; i++)
		if (c->regs[i].ecr && !strcmp(c->regs[i].id, registry))
			return c->regs[i].ecr;
	return c->ecr;
}
