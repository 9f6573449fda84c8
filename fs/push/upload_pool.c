/* The part-buffer budget and spill cap shared by uploads (upload_pool.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fs/push/upload_pool.h"

/* Buffers given back while other parts are in flight are kept for the
 * next part of the same size (parts are mostly one size): mapping and
 * zero-filling 13 MiB per part cost the daemon more than encoding it.
 * Kept buffers count against the budget too, and all go back to the
 * system once no part is in flight: none has a buffer and none awaits its
 * reply (a part gives its buffer back once its body is sent). */
#define KEEP_MAX 4

struct upload_pool {
	pthread_mutex_t mu; /* protects everything below */
	pthread_cond_t cv;  /* a buffer or spill room freed, or a wake */
	size_t budget;
	uint64_t spill_max;
	struct upload_pool_stats st;
	void *kept[KEEP_MAX];
	size_t kept_len[KEEP_MAX];
	int nkept;
	size_t kept_bytes;
	int awaiting; /* parts between upload_pool_part_begin and _end */
};

/* Caller holds mu. Unmaps kept buffers until want more bytes fit the
 * budget beside those in use (all of them for want SIZE_MAX). */
static void drop_kept(struct upload_pool *p, size_t want)
{
	while (p->nkept > 0 && (want == SIZE_MAX || p->st.bytes_now + p->kept_bytes + want >
							   p->budget)) {
		p->nkept--;
		munmap(p->kept[p->nkept], p->kept_len[p->nkept]);
		p->kept_bytes -= p->kept_len[p->nkept];
	}
}

/* Caller holds mu: a kept buffer of exactly len, or NULL. */
static void *take_kept(struct upload_pool *p, size_t len)
{
	for (int i = 0; i < p->nkept; i++) {
		if (p->kept_len[i] != len)
			continue;
		void *b = p->kept[i];
		p->kept_bytes -= len;
		p->nkept--;
		p->kept[i] = p->kept[p->nkept];
		p->kept_len[i] = p->kept_len[p->nkept];
		return b;
	}
	return NULL;
}

int upload_pool_new(size_t part_bytes, uint64_t spill_bytes, struct upload_pool **out)
{
	struct upload_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->budget = part_bytes ? part_bytes : UPLOAD_POOL_PARTS_DEFAULT;
	p->spill_max = spill_bytes ? spill_bytes : UPLOAD_POOL_SPILL_DEFAULT;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	*out = p;
	return 0;
}

void upload_pool_free(struct upload_pool *p)
{
	if (!p)
		return;
	drop_kept(p, SIZE_MAX);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

void *upload_pool_get(struct upload_pool *p, size_t len, int (*cancelled)(void *), void *arg)
{
	void *b;

	/* Small parts (a config, a small layer) never wait behind the parts of
	 * big layers: together they may pass the budget by SMALL_EXTRA. */
	size_t cap = p->budget + (len <= UPLOAD_POOL_SMALL ? UPLOAD_POOL_SMALL_EXTRA : 0);

	pthread_mutex_lock(&p->mu);
	while (p->st.bytes_now > 0 && p->st.bytes_now + len > cap && !cancelled(arg))
		pthread_cond_wait(&p->cv, &p->mu);
	if (cancelled(arg)) {
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	p->st.bytes_now += len;
	p->st.parts_now++;
	if (p->st.bytes_now > p->st.bytes_peak)
		p->st.bytes_peak = p->st.bytes_now;
	if (p->st.parts_now > p->st.parts_peak)
		p->st.parts_peak = p->st.parts_now;
	b = take_kept(p, len);
	if (!b)
		drop_kept(p, 0); /* what is in use now (len included) fits */
	pthread_mutex_unlock(&p->mu);
	if (b)
		return b;
	b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b != MAP_FAILED)
		return b;
	upload_pool_put(p, NULL, len);
	return NULL;
}

void upload_pool_put(struct upload_pool *p, void *buf, size_t len)
{
	pthread_mutex_lock(&p->mu);
	p->st.bytes_now -= len;
	p->st.parts_now--;
	if (buf && (p->st.parts_now > 0 || p->awaiting > 0) && p->nkept < KEEP_MAX) {
		p->kept[p->nkept] = buf;
		p->kept_len[p->nkept++] = len;
		p->kept_bytes += len;
		buf = NULL;
	}
	if (p->st.parts_now == 0 && p->awaiting == 0)
		drop_kept(p, SIZE_MAX);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (buf)
		munmap(buf, len);
}

int upload_pool_spill(struct upload_pool *p, uint64_t n, int may_wait, int (*cancelled)(void *),
		      void *arg)
{
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	while (may_wait && p->st.spilled > 0 && p->st.spilled + n > p->spill_max &&
	       !cancelled(arg))
		pthread_cond_wait(&p->cv, &p->mu);
	if (cancelled(arg)) {
		rc = -ECANCELED;
	} else {
		p->st.spilled += n;
		if (p->st.spilled > p->st.spilled_peak)
			p->st.spilled_peak = p->st.spilled;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void upload_pool_unspill(struct upload_pool *p, uint64_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&p->mu);
	p->st.spilled -= n > p->st.spilled ? p->st.spilled : n;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void upload_pool_wake(struct upload_pool *p)
{
	pthread_mutex_lock(&p->mu);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void upload_pool_stats(struct upload_pool *p, struct upload_pool_stats *s)
{
	pthread_mutex_lock(&p->mu);
	*s = p->st;
	pthread_mutex_unlock(&p->mu);
}

void upload_pool_part_begin(struct upload_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->awaiting++;
	pthread_mutex_unlock(&p->mu);
}

void upload_pool_part_end(struct upload_pool *p)
{
	pthread_mutex_lock(&p->mu);
	if (--p->awaiting == 0 && p->st.parts_now == 0)
		drop_kept(p, SIZE_MAX);
	pthread_mutex_unlock(&p->mu);
}
