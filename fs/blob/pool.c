/* A fixed pool of worker threads, created with the module and joined when
 * it is freed: readahead pieces run here rather than on a thread each. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "fs/blob/blob_i.h"

#define WORKER_STACK (256 * 1024)

struct job {
	void (*fn)(void *);
	void (*drop)(void *);
	void *arg;
	struct job *next;
};

struct blob_pool {
	pthread_mutex_t mu; /* protects the queue, running and stop */
	pthread_cond_t cv;  /* a job was queued, or stop was set */
	struct job *head, **tail;
	size_t queued, running, max;
	int stop;
	pthread_t *threads;
	int nthreads;
};

static void *worker(void *arg)
{
	struct blob_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		struct job *j = p->head;
		if (!(p->head = j->next))
			p->tail = &p->head;
		p->queued--;
		p->running++;
		pthread_mutex_unlock(&p->mu);
		j->fn(j->arg);
		free(j);
		pthread_mutex_lock(&p->mu);
		p->running--;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int blob_pool_new(int n, struct blob_pool **out)
{
	int rc = -ENOMEM;
	pthread_attr_t at;
	struct blob_pool *p = calloc(1, sizeof *p);
	*out = NULL;
	if (!p || !(p->threads = calloc((size_t)n, sizeof *p->threads)))
		goto out;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->tail = &p->head;
	p->max = (size_t)n;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, WORKER_STACK);
	for (rc = 0; rc == 0 && p->nthreads < n; p->nthreads++)
		rc = -pthread_create(&p->threads[p->nthreads], &at, worker, p);
	pthread_attr_destroy(&at);
	if (rc) {
		p->nthreads--; /* the one that failed */
		blob_pool_free(p);
		p = NULL;
	}
out:
	if (rc && p) {
		free(p->threads);
		free(p);
	}
	*out = rc ? NULL : p;
	return rc;
}

int blob_pool_submit(struct blob_pool *p, void (*fn)(void *), void (*drop)(void *), void *arg)
{
	int rc = -EAGAIN;
	struct job *j = malloc(sizeof *j);
	if (!j)
		return -ENOMEM;
	*j = (struct job){fn, drop, arg, NULL};
	pthread_mutex_lock(&p->mu);
	if (!p->stop && p->queued + p->running < p->max) {
		*p->tail = j;
		p->tail = &j->next;
		p->queued++;
		pthread_cond_signal(&p->cv);
		j = NULL;
		rc = 0;
	}
	pthread_mutex_unlock(&p->mu);
	free(j);
	return rc;
}

void blob_pool_free(struct blob_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	struct job *j = p->head;
	p->head = NULL;
	p->tail = &p->head;
	p->queued = 0;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	while (j) {
		struct job *next = j->next;
		if (j->drop)
			j->drop(j->arg);
		free(j);
		j = next;
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}

void blob_pool_stats(struct blob_pool *p, size_t *running, size_t *queued)
{
	pthread_mutex_lock(&p->mu);
	*running = p->running;
	*queued = p->queued;
	pthread_mutex_unlock(&p->mu);
}

size_t blob_pool_room(struct blob_pool *p)
{
	pthread_mutex_lock(&p->mu);
	size_t busy = p->running + p->queued;
	pthread_mutex_unlock(&p->mu);
	return busy < p->max ? p->max - busy : 0;
}
