/* ecrfs [SOURCE] MOUNTPOINT [-o options]: options, the mount object, then
 * the FUSE session. Without -f the process forks before any thread exists
 * and the parent exits with the child's word on the mount. */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <fuse_opt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fuse/ops.h"
#include "fs/mount_setup.h"
#include "fs/opts.h"
#include "net/log.h"

/* Forks before any thread exists (the ops table may start threads, e.g.
 * the push side's sweeper; fuse_daemonize forks later, after the mount, and
 * a thread would then be lost in the child, or hold a lock forever). The
 * parent waits for the child's word on the mount and exits with it. */
static int daemonize_early(int *status_fd)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		char st = 1;
		close(fds[1]);
		if (read(fds[0], &st, 1) != 1)
			st = 1; /* the child died before mounting */
		_exit(st);
	}
	close(fds[0]);
	setsid();
	*status_fd = fds[1];
	return 0;
}

/* The child mounted: detach from the terminal and release the parent. */
static void daemon_ready(int status_fd)
{
	char ok = 0;
	int nul = open("/dev/null", O_RDWR);
	if (chdir("/") != 0)
		log_warn("chdir /: %s", strerror(errno));
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	if (write(status_fd, &ok, 1) != 1)
		log_warn("could not report the mount to the parent process");
	close(status_fd);
}

static void on_mounted(void *arg)
{
	int *status_fd = arg;
	if (*status_fd >= 0) {
		daemon_ready(*status_fd);
		*status_fd = -1;
	}
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	static struct fs_ctx ctx; /* the mount: lives as long as the process */
	struct fs_ctx *c = &ctx;
	int rc = 1, status_fd = -1;

	/* Buffers of 128 KiB and more (inflated spans, chunks) are mapped and
	 * unmapped: glibc's moving threshold would keep freed ones resident in
	 * per-thread arenas, above the memory goal. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	if (fs_opts_parse(&args, &c->o) != 0)
		goto out;
	if (c->o.show_help || c->o.show_version) {
		if (c->o.show_help)
			fs_opts_usage(stdout);
		else
			printf("ecrfs %s (libfuse %s)\n", ECRFS_VERSION, fs_fuse_lib_version());
		rc = 0;
		goto out;
	}
	if (!c->o.mountpoint) {
		fs_opts_usage(stderr);
		goto out;
	}
	if (fs_opts_check(c) != 0 || fs_mount_setup(c) != 0)
		goto out;
	if (!c->o.foreground && daemonize_early(&status_fd) != 0) {
		fprintf(stderr, "ecrfs: cannot fork: %s\n", strerror(errno));
		goto out;
	}
	if (fs_mount_start(c) == 0)
		rc = fs_fuse_run(c, &args, on_mounted, &status_fd);
out:
	fs_mount_stop(c);
	fuse_opt_free_args(&args);
	log_close();
	return rc;
}
