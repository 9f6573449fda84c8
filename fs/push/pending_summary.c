/* Summaries of pending versions: user.ecr.push_state and .ecrfs/pending. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fs/push/pending_i.h"

static const char *state_name(enum pending_state s)
{
	switch (s) {
	case PV_PENDING: return "pending";
	case PV_COMMITTED: return "committed";
	case PV_FAILED: return "failed";
	default: return "none";
	}
}

static json_t *version_json_locked(pending_version *v)
{
	json_t *o = json_object(), *files = json_array();

	json_object_set_new(o, "registry", json_string(v->registry ? v->registry : ""));
	json_object_set_new(o, "region", json_string(v->region));
	json_object_set_new(o, "repository", json_string(v->repo));
	json_object_set_new(o, "tag", json_string(v->tag));
	json_object_set_new(o, "state", json_string(state_name(v->state)));
	if (v->state == PV_FAILED)
		json_object_set_new(o, "error", json_string(strerror(-v->rc)));
	if (v->committed[0])
		json_object_set_new(o, "digest", json_string(v->committed));
	if (v->missing)
		json_object_set_new(o, "missing", json_string(v->missing));
	for (size_t i = 0; i < v->nfiles; i++) {
		pending_file *f = v->files[i];
		json_t *fo = json_object();
		uint64_t w = f->size, a = f->size;
		if (f->state == F_WRITING && f->up)
			upload_progress(f->up, &w, &a);
		json_object_set_new(fo, "name", json_string(f->name));
		json_object_set_new(fo, "state", json_string(f->state == F_FINAL ? "final"
							      : f->state == F_FAILED ? "failed"
										     : "writing"));
		json_object_set_new(fo, "bytes", json_integer((json_int_t)w));
		json_object_set_new(fo, "uploaded", json_integer((json_int_t)a));
		json_array_append_new(files, fo);
	}
	json_object_set_new(o, "files", files);
	return o;
}

char *pending_push_state(pending_version *v)
{
	char *s;
	json_t *o;

	pthread_mutex_lock(&v->mu);
	o = version_json_locked(v);
	pthread_mutex_unlock(&v->mu);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

char *pending_summary_json(pending *p)
{
	json_t *arr = json_array();
	char *s;

	pthread_mutex_lock(&p->mu);
	for (pending_version *v = p->versions; v; v = v->next) {
		pthread_mutex_lock(&v->mu);
		/* In progress or failed; committed pushes are done. */
		if (v->state == PV_PENDING || v->state == PV_FAILED)
			json_array_append_new(arr, version_json_locked(v));
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_unlock(&p->mu);
	s = json_dumps(arr, JSON_INDENT(2));
	json_decref(arr);
	return s;
}
