/* One logging wrapper for every module: stderr (foreground), syslog
 * (ident "ecrfs"), or a file. Never pass a secret, an Authorization header or
 * a presigned URL's query string: use log_url_safe() for URLs. */
#ifndef ECRFS_LOG_H
#define ECRFS_LOG_H

#include <stddef.h>

enum log_level { LOGL_ERR = 0, LOGL_WARN, LOGL_INFO, LOGL_DEBUG };
enum log_dest { LOG_TO_STDERR = 0, LOG_TO_SYSLOG, LOG_TO_FILE };

/* Not thread-safe; call once before other threads start. path is used with
 * LOG_TO_FILE only. Returns 0 or -errno. */
int log_init(enum log_dest dest, const char *path, enum log_level level);
void log_close(void);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOGL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOGL_DEBUG))                                                       \
			log_msg(LOGL_DEBUG, __VA_ARGS__);                                          \
	} while (0)

/* Copies url into buf without its query string and fragment (presigned
 * URLs carry credentials there). Returns buf. */
const char *log_url_safe(const char *url, char *buf, size_t bufsize);

#endif
