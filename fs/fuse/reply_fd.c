/* Spliced read replies (see reply_fd.h).
 *
 * libfuse 3.14 splices an fd buffer into its pipe with SPLICE_F_NONBLOCK.
 * The kernel answers EAGAIN when a page of the file is still on disk, and
 * libfuse then copies every later reply of the session through a buffer
 * (broken_splice_nonblock, meant for kernels before 2.6.36). A cached blob
 * after a remount, or a page being read ahead, hit that and the daemon
 * spent twice the CPU on a cold 1 GiB read. So the bytes are spliced into
 * a pipe of this thread first, waiting for the disk like pread would, and
 * libfuse is handed the pipe: moving pages between pipes never waits. */
#include "fs/fuse/reply_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PAGE 4096

struct tpipe {
	int r, w;
	size_t size;
};

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void tpipe_free(void *p)
{
	struct tpipe *t = p;
	if (!t)
		return;
	close(t->r);
	close(t->w);
	free(t);
}

static void key_init(void) { pthread_key_create(&key, tpipe_free); }

/* This thread's pipe, able to hold need bytes; NULL if it cannot be. */
static struct tpipe *tpipe_get(size_t need)
{
	pthread_once(&once, key_init);
	struct tpipe *t = pthread_getspecific(key);
	if (!t) {
		int fds[2];
		if (!(t = calloc(1, sizeof *t)))
			return NULL;
		if (pipe2(fds, O_CLOEXEC) < 0) {
			free(t);
			return NULL;
		}
		t->r = fds[0];
		t->w = fds[1];
		int sz = fcntl(t->w, F_GETPIPE_SZ);
		t->size = sz > 0 ? (size_t)sz : 0;
		pthread_setspecific(key, t);
	}
	if (t->size < need) {
		/* Fails past pipe-max-size or the user's pipe page limit. */
		int sz = fcntl(t->w, F_SETPIPE_SZ, (int)need);
		if (sz < 0)
			return NULL;
		t->size = (size_t)sz;
	}
	return t;
}

/* A pipe left with bytes in it (a reply that failed half way) is dropped:
 * the next request of this thread gets a new, empty one. */
static void tpipe_check_empty(struct tpipe *t)
{
	int left = 0;
	if (ioctl(t->r, FIONREAD, &left) == 0 && left == 0)
		return;
	pthread_setspecific(key, NULL);
	tpipe_free(t);
}

int fs_reply_fd(fuse_req_t req, int fd, off_t off, size_t len)
{
	if (len < 2 * PAGE)
		return -EAGAIN; /* libfuse copies such replies anyway */
	/* One pipe buffer per page, plus partial pages at both ends. */
	struct tpipe *t = tpipe_get(len + 2 * PAGE);
	if (!t)
		return -ENOMEM;
	size_t done = 0;
	loff_t pos = off;
	while (done < len) {
		ssize_t n = splice(fd, &pos, t->w, NULL, len - done, SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done < len) {
		tpipe_check_empty(t);
		return -EIO;
	}
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
	bv.buf[0].flags = FUSE_BUF_IS_FD;
	bv.buf[0].fd = t->r;
	fuse_reply_data(req, &bv, 0);
	tpipe_check_empty(t);
	return 0;
}
