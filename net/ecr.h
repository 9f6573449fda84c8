/* The ECR API client (JSON 1.1 over SigV4) and STS GetCallerIdentity.
 *
 * One ecr handle per credential set (a profile); the registry id and region
 * are given per call, so one handle serves every region of a registry.
 * Every call returns 0 or -errno, mapped by ecr_errno() (net/ecr_errors.c), fills
 * *err (when non-NULL) with ECR's error code and message, and logs one line
 * naming the cause (the IAM action denied, the repository and region, the
 * immutable tag, ...). Pagination and batching (<=100 ids) happen inside.
 * All returned strings and arrays are malloc'd and owned by the caller
 * (free with the matching *_free). Thread-safe. */
#ifndef ECRFS_ECR_H
#define ECRFS_ECR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "net/cred.h"
#include "net/http.h"

typedef struct ecr ecr;

struct ecr_opts {
	cred_provider *creds;  /* borrowed */
	net_http *http;        /* borrowed */
	const char *endpoint;  /* NULL: AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL, then
	                          https://api.ecr.REGION.amazonaws.com (.com.cn in cn-*) */
	const char *sts_endpoint; /* NULL: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, default */
	int fips;              /* ecr-fips.REGION.amazonaws.com */
	int deadline_ms;       /* per operation, 0: 30000 */
};

int ecr_new(const struct ecr_opts *opts, ecr **out);
void ecr_free(ecr *e);

struct ecr_error {
	char code[96];     /* "RepositoryNotFoundException", "" for transport errors */
	char message[512];
	long http_status;
};

/* Where: registry_id NULL means the caller's own registry. */
struct ecr_where {
	const char *registry_id;
	const char *region;
	const char *repository; /* NULL for registry-level calls */
};

/* ---- errors ---- */
/* Maps an ECR error code / HTTP status / transport rc to -errno (the table in
 * net/ecr_errors.c).
 * Returns 0 for the codes that mean success (LayerAlreadyExists,
 * ImageAlreadyExists, RepositoryAlreadyExists). */
int ecr_errno(const char *code, long http_status, int transport_rc);

/* ---- registry and repositories ---- */
int ecr_describe_registry(ecr *e, const char *region, char **registry_id_out,
			  struct ecr_error *err);

/* imageTagMutability. A tag's mutability is the setting with
 * its WILDCARD exclusion filters applied: ecr_tag_immutable(). */
enum ecr_mutability {
	ECR_MUT_UNKNOWN = 0, /* a value this ecrfs does not know: ECR decides at PutImage */
	ECR_MUT_MUTABLE,
	ECR_MUT_IMMUTABLE,
	ECR_MUT_IMMUTABLE_WITH_EXCLUSION,
	ECR_MUT_MUTABLE_WITH_EXCLUSION,
};

struct ecr_repo {
	char *name;
	char *arn;
	char *uri;
	char *registry_id;
	int immutable;      /* imageTagMutability == IMMUTABLE exactly: every tag is;
			       with exclusions ask ecr_repo_tag_immutable() per tag */
	int scan_on_push;
	time_t created_at;
	enum ecr_mutability mutability; /* absent in the reply: MUTABLE */
	char **mutability_filters;      /* WILDCARD patterns of imageTagMutabilityExclusionFilters */
	size_t nmutability_filters;
	char *encryption_type;          /* AES256, KMS, KMS_DSSE; NULL when not sent */
	char *kms_key;                  /* NULL unless KMS* */
};

/* ECR's spelling of m ("IMMUTABLE_WITH_EXCLUSION"), NULL for UNKNOWN; and back
 * (NULL -> MUTABLE, ECR's default; a value not known -> UNKNOWN). */
const char *ecr_mutability_name(enum ecr_mutability m);
enum ecr_mutability ecr_mutability_parse(const char *s);
/* ECR's WILDCARD filter: '*' matches any run of characters (also none), any
 * other character itself; the pattern must match the whole tag. 1 or 0. */
int ecr_wildcard_match(const char *pattern, const char *tag);
/* 1 when ECR refuses to move tag to another image under this setting
 * (IMMUTABLE; IMMUTABLE_WITH_EXCLUSION unless a filter matches;
 * MUTABLE_WITH_EXCLUSION when a filter matches), else 0 (also UNKNOWN:
 * the push is tried and ECR's ImageTagAlreadyExists gives EEXIST). */
int ecr_tag_immutable(enum ecr_mutability m, const char *const *filters, size_t nfilters,
		      const char *tag);
int ecr_repo_tag_immutable(const struct ecr_repo *r, const char *tag);
struct ecr_repo_list {
	struct ecr_repo *v;
	size_t n;
};
void ecr_repo_list_free(struct ecr_repo_list *l);

/* names NULL: all repositories (paginated, maxResults 1000). */
int ecr_describe_repositories(ecr *e, const struct ecr_where *w, const char *const *names,
			      size_t nnames, struct ecr_repo_list *out, struct ecr_error *err);
/* RepositoryAlreadyExists is success (returns 0, *created=0). */
int ecr_create_repository(ecr *e, const struct ecr_where *w, int immutable, int *created,
			  struct ecr_error *err);
int ecr_delete_repository(ecr *e, const struct ecr_where *w, int force, struct ecr_error *err);

/* ---- images ---- */
struct ecr_image {
	char *digest;              /* "sha256:..." */
	char **tags;               /* may be empty */
	size_t ntags;
	int64_t size;              /* imageSizeInBytes (compressed layers; ECR's view) */
	time_t pushed_at;
	char *media_type;          /* imageManifestMediaType, may be NULL */
	char *artifact_media_type; /* may be NULL */
	char *scan_status;         /* imageScanStatus.status, may be NULL */
	/* Today's ECR (issue 14); 0/NULL when the reply does not say. */
	time_t last_pulled_at;     /* lastRecordedPullTime (BatchGetImage is a pull) */
	char *status;              /* imageStatus: ACTIVE, ARCHIVED, ACTIVATING */
	time_t archived_at;        /* lastArchivedAt */
	time_t activated_at;       /* lastActivatedAt */
	char *subject_digest;      /* subjectManifestDigest: this image is a referrer */
	time_t scan_completed_at;  /* imageScanFindingsSummary.imageScanCompletedAt */
	struct ecr_scan_counts {   /* imageScanFindingsSummary.findingSeverityCounts */
		int have;          /* a summary was sent */
		int64_t critical, high, medium, low, informational, undefined;
	} scan_counts;
};
/* 1 when the image cannot be pulled until restored (ARCHIVED, ACTIVATING). */
int ecr_image_archived(const struct ecr_image *im);
struct ecr_image_list {
	struct ecr_image *v;
	size_t n;
};
void ecr_image_list_free(struct ecr_image_list *l);

struct ecr_image_id {
	const char *digest; /* either or both */
	const char *tag;
};

/* All images (paginated with maxResults 1000): DescribeImages, every
 * imageStatus (archived ones too; ECR's default is ACTIVE only). ids/nids
 * restrict to those images (batched by 100; ImageNotFound for all -> -ENOENT). */
int ecr_describe_images(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			size_t nids, struct ecr_image_list *out, struct ecr_error *err);

struct ecr_image_ref {
	char *digest;
	char *tag; /* NULL for untagged */
};
struct ecr_image_ref_list {
	struct ecr_image_ref *v;
	size_t n;
};
void ecr_image_ref_list_free(struct ecr_image_ref_list *l);
/* ListImages, every imageStatus (as ecr_describe_images). */
int ecr_list_images(ecr *e, const struct ecr_where *w, struct ecr_image_ref_list *out,
		    struct ecr_error *err);

struct ecr_manifest {
	char *digest;       /* imageId.imageDigest */
	char *tag;          /* imageId.imageTag or NULL */
	char *media_type;   /* imageManifestMediaType */
	char *bytes;        /* exact imageManifest bytes, NUL-terminated */
	size_t len;
};
struct ecr_manifest_list {
	struct ecr_manifest *v;
	size_t n;
	/* failures: ids ECR could not return (ImageNotFound, ...) */
	struct ecr_image_ref *failed;
	char **failure_codes;
	size_t nfailed;
};
void ecr_manifest_list_free(struct ecr_manifest_list *l);

/* BatchGetImage with every manifest and index media type in
 * acceptedMediaTypes (docker v2 schema2, manifest list, OCI manifest, OCI
 * index). Bytes kept exactly as returned. */
int ecr_batch_get_image(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			size_t nids, struct ecr_manifest_list *out, struct ecr_error *err);

/* BatchDeleteImage; ImageNotFound after a retry counts as success.
 * ImageReferencedByManifestList -> -EBUSY. */
int ecr_batch_delete_image(ecr *e, const struct ecr_where *w, const struct ecr_image_id *ids,
			   size_t nids, struct ecr_error *err);

/* PutImage of the exact bytes with media_type; tag may be NULL (by digest).
 * digest (may be NULL) is sent as imageDigest. ImageAlreadyExists is success.
 * ImageTagAlreadyExists -> -EEXIST. digest_out (may be NULL) gets the image digest. */
int ecr_put_image(ecr *e, const struct ecr_where *w, const char *tag, const char *manifest,
		  size_t len, const char *media_type, const char *digest, char **digest_out,
		  struct ecr_error *err);

/* ---- layers: download ---- */
/* GetDownloadUrlForLayer. *expires_out: when the URL should be re-requested
 * (from X-Amz-Expires/Expires in the URL, else now+10 min). */
int ecr_get_download_url(ecr *e, const struct ecr_where *w, const char *digest, char **url_out,
			 time_t *expires_out, struct ecr_error *err);

/* Ranged GET of a download URL into sink. Returns 0, -EKEYEXPIRED when the
 * URL answered 403 (re-request it), -EIO on a short or mismatched
 * Content-Range body, other -errno. len==0 means to the end. */
int ecr_fetch_url_range(ecr *e, const char *url, uint64_t off, uint64_t len, net_sink_cb sink,
			void *sink_arg, volatile int *cancel);

/* ---- layers: upload ---- */
/* BatchCheckLayerAvailability: available[i] = 1 when present (batched by 100). */
int ecr_batch_check_layers(ecr *e, const struct ecr_where *w, const char *const *digests,
			   size_t n, int *available, struct ecr_error *err);

int ecr_initiate_layer_upload(ecr *e, const struct ecr_where *w, char **upload_id_out,
			      int64_t *part_size_out, struct ecr_error *err);

/* UploadLayerPart of data[0..len) at first_byte (the body's base64 is built
 * streaming, never as one big JSON string). On InvalidLayerPartException
 * returns -ERANGE with *last_valid_byte set from lastValidByteReceived (or -1),
 * except when that is this part's last byte (the part was stored, its reply
 * lost, a retry saw it): then 0. On success *last_valid_byte = lastByteReceived.
 * On UploadNotFound returns -ENOENT with err->code set. */
int ecr_upload_layer_part(ecr *e, const struct ecr_where *w, const char *upload_id,
			  uint64_t first_byte, const void *data, size_t len,
			  int64_t *last_valid_byte, struct ecr_error *err);

/* The same call with its body built once, in the caller's buffer: buf has
 * cap >= ecr_part_room(len) bytes and the part's len bytes at its end
 * (buf + cap - len). The first call (built->done 0) encodes them in place
 * into the JSON body, front to back, hashing it on the way, so each byte
 * is encoded and hashed once (the streaming form encodes twice: to hash,
 * then to send), and fills *built; later calls with the same buf and
 * *built send that body again (same upload id, first_byte and len).
 * Returns as ecr_upload_layer_part.
 *
 * With release set, buf is given back early: release(arg) is called once
 * the body's last byte has been handed to the connection (the reply is
 * still awaited: ECR's processing of a part takes longer than sending it,
 * and that wait no longer holds a part buffer), and any later send of the
 * same body (an HTTP retry, a resend after InvalidLayerPart) encodes it
 * again from raw(arg, off, dst, n), the part's bytes [off, off+n), in
 * 3 KiB slices. ecr_part_built_free() frees what that keeps. */
struct ecr_part_built {
	int done;
	size_t total;  /* bytes of the body at buf */
	char hash[65]; /* its sha256, for SigV4 */
	void (*release)(void *arg);
	int (*raw)(void *arg, uint64_t off, char *dst, size_t n);
	void *arg;
	int released;	  /* buf was given back: sends rebuild from raw */
	char *prefix;	  /* the JSON before the base64, kept for rebuilding */
	size_t prefix_len;
};
void ecr_part_built_free(struct ecr_part_built *b);
size_t ecr_part_room(size_t len);
int ecr_upload_layer_part_in(ecr *e, const struct ecr_where *w, const char *upload_id,
			     uint64_t first_byte, char *buf, size_t cap, size_t len,
			     struct ecr_part_built *built, int64_t *last_valid_byte,
			     struct ecr_error *err);

/* CompleteLayerUpload; LayerAlreadyExists is success. */
int ecr_complete_layer_upload(ecr *e, const struct ecr_where *w, const char *upload_id,
			      const char *digest, struct ecr_error *err);

/* ---- identity ---- */
struct ecr_identity {
	char account[32];
	char arn[512];
	char user_id[256];
	char source[128]; /* credential source, from cred_get */
};
int ecr_get_caller_identity(ecr *e, const char *region, struct ecr_identity *out,
			    struct ecr_error *err);

/* Credential source in use and API counters for .ecrfs/stats (JSON object,
 * malloc'd: {"calls":{"DescribeImages":3,...},"errors":{...},"retries":N,
 * "bytes_in":N,"bytes_out":N}). */
char *ecr_stats_json(ecr *e);

/* ---- today's ECR: referrers, archive, scan findings (ecr_artifacts.c) ---- */
struct ecr_referrer {
	char *digest;
	char *media_type;
	char *artifact_type;    /* may be NULL */
	char *status;           /* artifactStatus, may be NULL */
	int64_t size;
	char *annotations_json; /* the annotations object as compact JSON, or NULL */
};
struct ecr_referrer_list {
	struct ecr_referrer *v;
	size_t n;
};
void ecr_referrer_list_free(struct ecr_referrer_list *l);

/* ListImageReferrers of subject_digest, every page (50 each). artifact_types
 * (ntypes may be 0) filter; any_status asks for archived ones too (ECR's
 * default is ACTIVE only). IAM: ecr:BatchGetImage. */
int ecr_list_image_referrers(ecr *e, const struct ecr_where *w, const char *subject_digest,
			     const char *const *artifact_types, size_t ntypes, int any_status,
			     struct ecr_referrer_list *out, struct ecr_error *err);

/* UpdateImageStorageClass to target "ARCHIVE" or "STANDARD"; *status_out
 * (may be NULL) gets the imageStatus after it (ACTIVATING while restoring). */
int ecr_update_image_storage_class(ecr *e, const struct ecr_where *w,
				   const struct ecr_image_id *id, const char *target,
				   char **status_out, struct ecr_error *err);

/* DescribeImageScanFindings, every page: *json_out is the first reply with
 * all pages' findings (basic) or enhancedFindings in its one array and no
 * nextToken, as compact JSON text. No scan: -ENODATA (nothing logged). */
int ecr_describe_image_scan_findings(ecr *e, const struct ecr_where *w,
				     const struct ecr_image_id *id, char **json_out,
				     struct ecr_error *err);

/* ListPullTimeUpdateExclusions of the caller's registry in region, every
 * page: the principal ARNs whose BatchGetImage does not update pull time. */
int ecr_list_pull_time_exclusions(ecr *e, const char *region, char ***arns_out, size_t *n_out,
				  struct ecr_error *err);
void ecr_strv_free(char **v, size_t n);

/* ---- repository settings (ecr_settings.c) ----
 * Texts are the policy JSON as ECR stores it. A missing policy is -ENOENT
 * (nothing logged): a settings file that does not exist. A refused policy is
 * -EINVAL with ECR's message in err and the log. */
int ecr_get_lifecycle_policy(ecr *e, const struct ecr_where *w, char **text_out,
			     time_t *last_evaluated, struct ecr_error *err);
int ecr_put_lifecycle_policy(ecr *e, const struct ecr_where *w, const char *text,
			     struct ecr_error *err);
int ecr_delete_lifecycle_policy(ecr *e, const struct ecr_where *w, struct ecr_error *err);
/* text NULL: preview the stored policy. */
int ecr_start_lifecycle_policy_preview(ecr *e, const struct ecr_where *w, const char *text,
				       struct ecr_error *err);
/* Every page: *json_out is the reply with all previewResults in one array;
 * *complete (may be NULL) = status is COMPLETE. No preview: -ENOENT. */
int ecr_get_lifecycle_policy_preview(ecr *e, const struct ecr_where *w, char **json_out,
				     int *complete, struct ecr_error *err);
int ecr_get_repository_policy(ecr *e, const struct ecr_where *w, char **text_out,
			      struct ecr_error *err);
int ecr_set_repository_policy(ecr *e, const struct ecr_where *w, const char *text, int force,
			      struct ecr_error *err);
int ecr_delete_repository_policy(ecr *e, const struct ecr_where *w, struct ecr_error *err);
int ecr_put_image_scanning_configuration(ecr *e, const struct ecr_where *w, int scan_on_push,
					 struct ecr_error *err);
/* filters: WILDCARD patterns (1-5 with the *_WITH_EXCLUSION settings). */
int ecr_put_image_tag_mutability(ecr *e, const struct ecr_where *w, enum ecr_mutability m,
				 const char *const *filters, size_t nfilters,
				 struct ecr_error *err);

#endif
