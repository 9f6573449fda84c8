/* Kernel cache invalidations, sent from one worker thread: a notification
 * sent from inside the handler of the same directory could deadlock (the
 * kernel holds that directory's lock while it waits for our reply). */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs/tree/catalog.h"
#include "fs/mount.h"
#include "fs/fuse/notify.h"
#include "net/log.h"

struct note {
	uint64_t ino;  /* the directory (entry) or the inode */
	char *name;      /* NULL: invalidate the inode's data and attributes */
	struct note *next;
};

/* Protects the queue, stop and started. */
static pthread_mutex_t nt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t nt_cv = PTHREAD_COND_INITIALIZER;
static struct note *head, **tail = &head;
static int stop, started;
static pthread_t thread;

static void push_note(uint64_t ino, const char *name)
{
	struct note *n = calloc(1, sizeof *n);
	if (!n || (name && !(n->name = strdup(name)))) {
		free(n);
		return;
	}
	n->ino = ino;
	pthread_mutex_lock(&nt_mu);
	*tail = n;
	tail = &n->next;
	pthread_cond_signal(&nt_cv);
	pthread_mutex_unlock(&nt_mu);
}

static void *notifier_main(void *arg)
{
	struct fuse_session *se = arg;
	pthread_mutex_lock(&nt_mu);
	for (;;) {
		while (!head && !stop)
			pthread_cond_wait(&nt_cv, &nt_mu);
		if (!head && stop)
			break;
		struct note *n = head;
		head = n->next;
		if (!head)
			tail = &head;
		pthread_mutex_unlock(&nt_mu);
		int rc;
		if (n->name)
			rc = fuse_lowlevel_notify_inval_entry(se, n->ino, n->name, strlen(n->name));
		else
			rc = fuse_lowlevel_notify_inval_inode(se, n->ino, 0, 0);
		if (rc && rc != -ENOENT)
			log_debug("kernel invalidation of %lu: %s", (unsigned long)n->ino,
				  strerror(-rc));
		free(n->name);
		free(n);
		pthread_mutex_lock(&nt_mu);
	}
	pthread_mutex_unlock(&nt_mu);
	return NULL;
}

int fs_notify_start(struct fuse_session *se)
{
	int rc = pthread_create(&thread, NULL, notifier_main, se);
	if (rc)
		return -rc;
	pthread_mutex_lock(&nt_mu);
	started = 1;
	pthread_mutex_unlock(&nt_mu);
	return 0;
}

void fs_notify_stop(void)
{
	pthread_mutex_lock(&nt_mu);
	int was = started;
	stop = 1;
	pthread_cond_signal(&nt_cv);
	pthread_mutex_unlock(&nt_mu);
	if (was)
		pthread_join(thread, NULL);
	while (head) {
		struct note *n = head;
		head = n->next;
		free(n->name);
		free(n);
	}
	tail = &head;
}

void fs_inval_inode_async(uint64_t ino)
{
	push_note(ino, NULL);
}

void fs_notify_changed(struct fs_node *dir, const char *name)
{
	if (dir->registry && dir->region)
		fs_cat_invalidate(dir->registry, dir->region,
				  dir->kind == FS_N_NAMESPACE || dir->kind == FS_N_IMAGE ? dir->repo
											 : NULL);
	if (name) {
		fs_node_drop_child(dir, name);
		push_note(dir->ino, name);
	} else {
		push_note(dir->ino, NULL);
	}
}

void fs_notify_drop_entry(uint64_t dir, const char *name)
{
	push_note(dir, name);
}
