/* The FUSE side of TAG@scan.json, TAG@referrers/ and REPO@settings/
 * (tree/view_ecr.h): opens, writes and removals of their files. Each
 * handler answers the request and returns 1 when it is about one of these
 * files, else returns 0 and the caller goes on as before. */
#ifndef ECRFS_FS_FUSE_VIEWS_ECR_H
#define ECRFS_FS_FUSE_VIEWS_ECR_H

#include "fs/fuse/fuse_i.h"

int vf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
int vf_write(fuse_req_t req, const char *buf, size_t size, off_t off, struct fuse_file_info *fi);
int vf_flush(fuse_req_t req, struct fuse_file_info *fi);
int vf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
	       struct fuse_file_info *fi);
int vf_create(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_file_info *fi);
/* UNLINK (rmdir 0) and RMDIR (rmdir 1) of dir/name. */
int vf_remove(fuse_req_t req, fuse_ino_t parent, const char *name, int rmdir);

#endif
