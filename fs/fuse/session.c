/* The FUSE session: created over the one op table with the mount as its
 * userdata, mounted, served by the multi-threaded loop, torn down. */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stdio.h>
#include <stdlib.h>

#include "fs/fuse/notify.h"
#include "fs/fuse/ops.h"
#include "net/log.h"

static struct fuse_loop_config *loop_config(const struct fs_ctx *c)
{
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (!lc)
		return NULL;
	fuse_loop_cfg_set_max_threads(lc, (unsigned)c->o.max_threads);
	/* Idle workers stay: libfuse otherwise ends the ones above the idle
	 * count after each burst of reads and starts new ones (with a new
	 * splice pipe) for the next, a thread per read for a sequential cat. */
	fuse_loop_cfg_set_idle_threads(lc, (unsigned)c->o.max_threads);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	return lc;
}

int fs_fuse_run(struct fs_ctx *c, struct fuse_args *args, void (*on_mounted)(void *arg),
		void *arg)
{
	struct fuse_lowlevel_ops ops;
	struct fuse_loop_config *lc = NULL;
	int rc = 1, mounted = 0, notify = 0;
	char *fsname = NULL;

	if (asprintf(&fsname, "-ofsname=%s,subtype=ecrfs,default_permissions",
		     c->o.source ? c->o.source : "ecr") < 0)
		return 1;
	fuse_opt_add_arg(args, fsname);
	if (c->o.debug)
		fuse_opt_add_arg(args, "-odebug");
	fs_fuse_ops(&ops, c->push != NULL);
	struct fuse_session *se = fuse_session_new(args, &ops, sizeof ops, c);
	if (!se)
		goto out;
	c->se = se;
	if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, c->o.mountpoint) != 0)
		goto out;
	mounted = 1;
	log_info("mounted %s on %s (registry %s, region %s)", c->o.source ? c->o.source : "ecr",
		 c->o.mountpoint, c->own_registry[0] ? c->own_registry : "unknown",
		 c->regions[0]);
	if (on_mounted)
		on_mounted(arg);
	if (fs_notify_start(se) != 0)
		goto out;
	notify = 1;
	if (!(lc = loop_config(c)))
		goto out;
	rc = fuse_session_loop_mt(se, lc) < 0 ? 1 : 0;
out:
	if (notify)
		fs_notify_stop();
	if (mounted)
		fuse_session_unmount(se);
	if (se) {
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
	}
	c->se = NULL;
	if (lc)
		fuse_loop_cfg_destroy(lc);
	free(fsname);
	return rc;
}

const char *fs_fuse_lib_version(void)
{
	return fuse_pkgversion();
}
