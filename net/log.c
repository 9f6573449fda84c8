/* Logging wrapper: stderr, syslog or a file, with levels. */
#include "net/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

/* Protects log_file writes so lines from several threads never interleave. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_dest log_dest_cur = LOG_TO_STDERR;
static enum log_level log_level_cur = LOGL_INFO;
static FILE *log_file;

int log_init(enum log_dest dest, const char *path, enum log_level level)
{
	log_level_cur = level;
	log_dest_cur = dest;
	if (dest == LOG_TO_SYSLOG) {
		openlog("ecrfs", LOG_PID, LOG_DAEMON);
	} else if (dest == LOG_TO_FILE) {
		log_file = fopen(path, "ae");
		if (!log_file)
			return -errno;
		setvbuf(log_file, NULL, _IOLBF, 0);
	}
	return 0;
}

void log_close(void)
{
	if (log_dest_cur == LOG_TO_SYSLOG)
		closelog();
	if (log_file)
		fclose(log_file);
	log_file = NULL;
	log_dest_cur = LOG_TO_STDERR;
}

int log_enabled(enum log_level level)
{
	return level <= log_level_cur;
}

static const char *level_name(enum log_level level)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	return names[level];
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	if (log_dest_cur == LOG_TO_SYSLOG) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		syslog(prio[level], "%s", line);
		return;
	}
	char stamp[32];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(log_file ? log_file : stderr, "%s.%03ldZ ecrfs %s: %s\n", stamp,
		ts.tv_nsec / 1000000, level_name(level), line);
	pthread_mutex_unlock(&log_lock);
}

const char *log_url_safe(const char *url, char *buf, size_t bufsize)
{
	/* Drop "user:password@" after the scheme: endpoints may carry it. */
	const char *scheme = strstr(url, "://");
	size_t out = 0;
	if (scheme) {
		const char *host = scheme + 3;
		size_t authority = strcspn(host, "/?#");
		const char *at = memchr(host, '@', authority);
		size_t head = (size_t)(host - url);
		if (head >= bufsize)
			head = bufsize - 1;
		memcpy(buf, url, head);
		out = head;
		url = at ? at + 1 : host;
	}
	size_t n = strcspn(url, "?#");
	if (out + n >= bufsize)
		n = bufsize - 1 - out;
	memcpy(buf + out, url, n);
	buf[out + n] = '\0';
	return buf;
}
