/* Replying to a FUSE read with bytes of a file, spliced (no copy through
 * this process). */
#ifndef ECRFS_FS_REPLY_FD_H
#define ECRFS_FS_REPLY_FD_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stddef.h>
#include <sys/types.h>

/* Replies to req with len bytes of fd at off, moved through a pipe of the
 * calling thread. 0: replied. Negative: nothing was sent (the pipe cannot
 * be sized, the file is short, a read is smaller than two pages): the
 * caller replies some other way. */
int fs_reply_fd(fuse_req_t req, int fd, off_t off, size_t len);

#endif
