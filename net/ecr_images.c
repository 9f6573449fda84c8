/* Image calls: DescribeImages, ListImages, BatchGetImage, BatchDeleteImage,
 * PutImage. Paginated and batched (<=100 ids) here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/digest.h"
#include "net/ecr_i.h"
#include "net/log.h"
#include "net/oci.h"

static void id_subject(const struct ecr_image_id *id, char *buf, size_t size)
{
	if (id->tag && id->digest)
		snprintf(buf, size, "%s@%s", id->tag, id->digest);
	else
		snprintf(buf, size, "%s", id->tag ? id->tag : id->digest ? id->digest : "");
}

/* Listings ask for every imageStatus: ECR lists only ACTIVE images by
 * default, and an archived tag must stay visible (as archived). */
static int any_status(json_t *req)
{
	return json_object_set_new(req, "filter", json_pack("{s:s}", "imageStatus", "ANY"));
}

static int images_page(const json_t *resp, void *out, char **next)
{
	return ecr_parse_images_page(resp, out, next);
}

static int refs_page(const json_t *resp, void *out, char **next)
{
	return ecr_parse_image_refs_page(resp, out, next);
}

/* DescribeImages of ids (no maxResults with imageIds). */
static int describe_ids(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids, size_t n,
			struct ecr_image_list *out, struct ecr_error *err, int quiet)
{
	static const char *const expected[] = {"ImageNotFoundException", NULL};
	char subj[200];
	struct ecr_call c = {.op = "DescribeImages", .region = w->region, .w = w};

	id_subject(&ids[0], subj, sizeof(subj));
	c.subject = subj;
	c.expected = quiet ? expected : NULL;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		json_decref(c.req);
		return -ENOMEM;
	}
	json_object_set_new(c.req, "imageIds", ecr_json_image_ids(ids, n));
	return ecr_call_unpaged(e, &c, images_page, out, err);
}

int ecr_describe_images(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			size_t nids, struct ecr_image_list *out, struct ecr_error *err)
{
	struct ecr_call c = {.op = "DescribeImages", .region = w->region, .w = w};
	int rc = 0, found_missing = 0;

	memset(out, 0, sizeof(*out));
	if (!ids) {
		c.req = json_object();
		if (!c.req || ecr_json_where(c.req, w) || any_status(c.req)) {
			rc = -ENOMEM;
			goto out;
		}
		rc = ecr_call_pages(e, &c, images_page, out, err);
		goto out;
	}
	for (size_t i = 0; i < nids; i += ECR_BATCH_MAX) {
		size_t n = nids - i < ECR_BATCH_MAX ? nids - i : ECR_BATCH_MAX;

		rc = describe_ids(e, w, ids + i, n, out, err, 1);
		if (rc == -ENOENT && n > 1) {
			/* ECR fails the whole call when one id is missing: ask
			 * one by one so the others are still returned. */
			rc = 0;
			for (size_t k = 0; k < n && rc == 0; k++) {
				rc = describe_ids(e, w, ids + i + k, 1, out, err, 1);
				if (rc == -ENOENT) {
					found_missing = 1;
					rc = 0;
				}
			}
		} else if (rc == -ENOENT) {
			found_missing = 1;
			rc = 0;
		}
		if (rc)
			goto out;
	}
	if (out->n == 0 && found_missing) {
		char subj[200];
		id_subject(&ids[0], subj, sizeof(subj));
		log_info("ecr DescribeImages: image %s%s not found in repository '%s' (registry %s "
			 "region %s)",
			 subj, nids > 1 ? " (and the others asked)" : "",
			 w->repository ? w->repository : "",
			 w->registry_id ? w->registry_id : "(caller's own)",
			 w->region ? w->region : "?");
		rc = -ENOENT;
	}
out:
	json_decref(c.req);
	if (rc)
		ecr_image_list_free(out);
	return rc;
}

int ecr_list_images(ecr *e, const struct ecr_where *w, struct ecr_image_ref_list *out,
		    struct ecr_error *err)
{
	struct ecr_call c = {.op = "ListImages", .region = w->region, .w = w};
	int rc;

	memset(out, 0, sizeof(*out));
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w) || any_status(c.req)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = ecr_call_pages(e, &c, refs_page, out, err);
out:
	json_decref(c.req);
	if (rc)
		ecr_image_ref_list_free(out);
	return rc;
}

static int batch_get_reply(const json_t *resp, void *out) { return ecr_parse_batch_get(resp, out); }

/* One BatchGetImage of n <= 100 ids. A reply too big for net/http (large
 * manifests) is asked again in halves. */
static int batch_get_some(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			  size_t n, json_t *types, struct ecr_manifest_list *out,
			  struct ecr_error *err)
{
	struct ecr_call c = {.op = "BatchGetImage", .region = w->region, .w = w};
	char subj[200];
	int rc;

	id_subject(&ids[0], subj, sizeof(subj));
	c.subject = subj;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		json_decref(c.req);
		return -ENOMEM;
	}
	json_object_set_new(c.req, "imageIds", ecr_json_image_ids(ids, n));
	json_object_set(c.req, "acceptedMediaTypes", types);
	rc = ecr_call_parse(e, &c, batch_get_reply, out, err);
	if (rc == -EFBIG && n > 1) {
		rc = batch_get_some(e, w, ids, n / 2, types, out, err);
		if (rc == 0)
			rc = batch_get_some(e, w, ids + n / 2, n - n / 2, types, out, err);
	}
	return rc;
}

int ecr_batch_get_image(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			size_t nids, struct ecr_manifest_list *out, struct ecr_error *err)
{
	json_t *types = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	types = json_array();
	if (!types) {
		rc = -ENOMEM;
		goto out;
	}
	/* Every manifest and index type ECR serves, so it never converts one
	 * (an image's digest is the hash of the bytes as pushed). */
	for (const struct oci_media_type *t = oci_media_types; t->name; t++)
		if (t->ecr_accepted)
			json_array_append_new(types, json_string(t->name));
	for (size_t i = 0; i < nids; i += ECR_BATCH_MAX) {
		size_t n = nids - i < ECR_BATCH_MAX ? nids - i : ECR_BATCH_MAX;

		rc = batch_get_some(e, w, ids + i, n, types, out, err);
		if (rc)
			goto out;
	}
	/* Everything asked failed: say which (one line), not found. */
	if (out->n == 0 && out->nfailed > 0) {
		const char *code = out->failure_codes[0] ? out->failure_codes[0] : "";
		log_info("ecr BatchGetImage: %s of repository '%s' (registry %s region %s): %s",
			 out->failed[0].tag	 ? out->failed[0].tag
			 : out->failed[0].digest ? out->failed[0].digest
						 : "?",
			 w->repository ? w->repository : "",
			 w->registry_id ? w->registry_id : "own", w->region ? w->region : "?",
			 code);
		if (err) {
			snprintf(err->code, sizeof(err->code), "%s", code);
			snprintf(err->message, sizeof(err->message), "BatchGetImage failure");
		}
		rc = strcmp(code, "ImageNotFound") == 0 || strcmp(code, "InvalidImageTag") == 0 ||
			     strcmp(code, "InvalidImageDigest") == 0
			 ? -ENOENT
			 : -EIO;
		/* Not pullable in its storage state (archived, activating): the
		 * errno of ImageArchivedException, and how to restore it. */
		if (strcmp(code, "ImageInaccessible") == 0) {
			rc = -ENOMEDIUM;
			log_err(
			    "ecr BatchGetImage: %s of repository '%s' cannot be pulled "
			    "(ImageInaccessible: archived or being restored?); restore it with "
			    "`setfattr -n user.ecr.storage_class -v STANDARD TAGDIR` or `aws ecr "
			    "update-image-storage-class --target-storage-class STANDARD`",
			    out->failed[0].tag	    ? out->failed[0].tag
			    : out->failed[0].digest ? out->failed[0].digest
						    : "?",
			    w->repository ? w->repository : "");
		}
	}
out:
	json_decref(types);
	if (rc)
		ecr_manifest_list_free(out);
	return rc;
}

/* Maps one BatchDeleteImage failure code. */
static int delete_failure_errno(const char *code)
{
	if (!code)
		return -EIO;
	if (strcmp(code, "ImageNotFound") == 0)
		return -ENOENT;
	if (strcmp(code, "ImageReferencedByManifestList") == 0)
		return -EBUSY;
	if (strncmp(code, "Invalid", 7) == 0 || strcmp(code, "MissingDigestAndTag") == 0 ||
	    strcmp(code, "ImageTagDoesNotMatchDigest") == 0)
		return -EINVAL;
	if (strcmp(code, "UpstreamAccessDenied") == 0)
		return -EACCES;
	return -EIO;
}

struct delete_reply {
	const struct ecr_call *c;
	struct ecr_error *err;
};

/* Logs each failure a BatchDeleteImage reply lists; returns the first one's
 * errno (0 when none). */
static int delete_reply(const json_t *resp, void *arg)
{
	const struct delete_reply *d = arg;
	const struct ecr_where *w = d->c->w;
	const json_t *fails = json_object_get(resp, "failures"), *f;
	size_t k;
	int rc = 0;

	json_array_foreach(fails, k, f)
	{
		const char *code = ecr_json_str(f, "failureCode");
		const char *reason = ecr_json_str(f, "failureReason");
		const json_t *id = json_object_get(f, "imageId");
		const char *what = ecr_json_str(id, "imageTag");
		int frc = delete_failure_errno(code);

		if (!what)
			what = ecr_json_str(id, "imageDigest");
		/* Not found after a retry: the first attempt deleted it. */
		if (frc == -ENOENT && d->c->retries > 0)
			continue;
		log_err("ecr BatchDeleteImage: %s of repository '%s' (region %s) not "
			"deleted: %s: %s%s",
			what ? what : "?", w->repository ? w->repository : "",
			w->region ? w->region : "?", code ? code : "?", reason ? reason : "",
			frc == -EBUSY ? "; delete the image index that references it first" : "");
		if (d->err) {
			snprintf(d->err->code, sizeof(d->err->code), "%s", code ? code : "");
			snprintf(d->err->message, sizeof(d->err->message), "%s",
				 reason ? reason : "");
		}
		if (!rc)
			rc = frc;
	}
	return rc;
}

int ecr_batch_delete_image(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			   size_t nids, struct ecr_error *err)
{
	struct ecr_call c = {.op = "BatchDeleteImage", .region = w->region, .w = w};
	struct delete_reply d = {.c = &c, .err = err};
	char subj[200];
	int rc = 0;

	for (size_t i = 0; i < nids; i += ECR_BATCH_MAX) {
		size_t n = nids - i < ECR_BATCH_MAX ? nids - i : ECR_BATCH_MAX;

		id_subject(&ids[i], subj, sizeof(subj));
		c.subject = subj;
		c.req = json_object();
		if (!c.req || ecr_json_where(c.req, w)) {
			rc = -ENOMEM;
			goto out;
		}
		json_object_set_new(c.req, "imageIds", ecr_json_image_ids(ids + i, n));
		rc = ecr_call_parse(e, &c, delete_reply, &d, err);
		if (rc)
			goto out;
	}
out:
	json_decref(c.req);
	return rc;
}

int ecr_put_image(ecr *e, const struct ecr_where *w, const char *tag, const char *manifest,
		  size_t len, const char *media_type, const char *digest, char **digest_out,
		  struct ecr_error *err)
{
	struct ecr_call c = {.op = "PutImage", .region = w->region, .w = w, .subject = tag};
	struct ecr_error eb, *er = err ? err : &eb;
	json_t *j = NULL, *m;
	int rc;

	if (digest_out)
		*digest_out = NULL;
	if (!tag)
		c.subject = digest;
	c.req = json_object();
	if (!c.req || ecr_json_where(c.req, w)) {
		rc = -ENOMEM;
		goto out;
	}
	/* The exact bytes as a JSON string; ECR decodes them back unchanged. */
	m = json_stringn(manifest, len);
	if (!m) {
		log_err("ecr PutImage: manifest for '%s' is not valid UTF-8 JSON text",
			w->repository ? w->repository : "");
		rc = -EINVAL;
		goto out;
	}
	json_object_set_new(c.req, "imageManifest", m);
	if (media_type)
		json_object_set_new(c.req, "imageManifestMediaType", json_string(media_type));
	if (tag)
		json_object_set_new(c.req, "imageTag", json_string(tag));
	if (digest)
		json_object_set_new(c.req, "imageDigest", json_string(digest));
	rc = ecr_call(e, &c, &j, er);
	if (rc || !digest_out)
		goto out;
	{
		const json_t *id = json_object_get(json_object_get(j, "image"), "imageId");
		*digest_out = ecr_json_strdup(id, "imageDigest");
	}
	if (!*digest_out) {
		/* ImageAlreadyExists carries no image: the digest is the hash. */
		char buf[NET_DIGEST_LEN];
		net_sha256_digest(manifest, len, buf);
		*digest_out = strdup(buf);
		if (!*digest_out)
			rc = -ENOMEM;
	}
out:
	json_decref(j);
	json_decref(c.req);
	return rc;
}
