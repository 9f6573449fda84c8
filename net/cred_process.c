/* credential_process: runs the profile's command through /bin/sh -c and
 * reads its JSON (Version 1) from stdout. Its stderr is left alone (tools
 * print prompts there). A command that does not finish within 60 s is
 * killed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "net/cred_i.h"
#include "net/log.h"

#define PROCESS_TIMEOUT_MS 60000
#define PROCESS_MAX_OUT (64 * 1024)

extern char **environ;

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs cmd, collects stdout into *out. Returns the exit status (>= 0) or -errno. */
static int run_capture(const char *cmd, char **out)
{
	int pfd[2] = {-1, -1}, devnull = -1, ret = 0, status = 0;
	posix_spawn_file_actions_t fa;
	char *buf = NULL;
	size_t len = 0;
	pid_t pid = -1;

	*out = NULL;
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	posix_spawn_file_actions_init(&fa);
	if (devnull >= 0)
		posix_spawn_file_actions_adddup2(&fa, devnull, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	char *const argv[] = {"sh", "-c", (char *)cmd, NULL};
	ret = -posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	pfd[1] = -1;
	if (ret)
		goto out;
	buf = malloc(PROCESS_MAX_OUT + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	int64_t deadline = mono_ms() + PROCESS_TIMEOUT_MS;
	for (;;) {
		int64_t left = deadline - mono_ms();
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		if (left <= 0) {
			ret = -ETIMEDOUT;
			break;
		}
		int pr = poll(&p, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			ret = pr == 0 ? -ETIMEDOUT : -errno;
			break;
		}
		ssize_t n = read(pfd[0], buf + len, PROCESS_MAX_OUT - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == PROCESS_MAX_OUT) {
			ret = -EFBIG;
			break;
		}
	}
	buf[len] = '\0';
	if (ret)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!ret) {
		ret = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		*out = buf;
		buf = NULL;
	}
out:
	if (buf) {
		explicit_bzero(buf, len);
		free(buf);
	}
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (devnull >= 0)
		close(devnull);
	return ret;
}

int cred_from_process(struct cred_chain *ch, const char *profile, struct cred *out)
{
	const char *cmd = cred_profile_get(ch, profile, "credential_process");
	char *text = NULL;
	json_t *j = NULL;
	time_t exp = 0;
	int ret;

	if (!cmd || !*cmd) {
		cred_chain_note(ch, "credential_process: not set in profile %s", profile);
		return -ENOENT;
	}
	ret = run_capture(cmd, &text);
	if (ret < 0) {
		log_err("profile %s: credential_process could not run: %s", profile,
			strerror(-ret));
		ret = -EACCES;
		goto out;
	}
	if (ret > 0) {
		log_err("profile %s: credential_process exited with status %d", profile, ret);
		ret = -EACCES;
		goto out;
	}
	j = json_loads(text, 0, NULL);
	json_int_t ver = json_integer_value(json_object_get(j, "Version"));
	const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
	const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	const char *tok = json_string_value(json_object_get(j, "SessionToken"));
	const char *es = json_string_value(json_object_get(j, "Expiration"));
	if (!j || ver != 1 || !ak || !sk) {
		log_err("profile %s: credential_process output is not Version 1 JSON with "
			"AccessKeyId and SecretAccessKey",
			profile);
		ret = -EACCES;
		goto out;
	}
	if (es && cred_parse_time(es, &exp)) {
		log_err("profile %s: credential_process Expiration '%s' is not ISO 8601", profile,
			es);
		ret = -EACCES;
		goto out;
	}
	ret = cred_set(out, ak, sk, tok, exp, "credential_process (profile %s)", profile);
out:
	json_decref(j);
	if (text) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	return ret;
}
