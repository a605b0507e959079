#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int report_fd = -1;

static void report(const char *fmt, const char *what, int err) {
	char buf[512];
	int n = snprintf(buf, sizeof buf, fmt, what, strerror(err));
	if (report_fd >= 0 && n > 0)
		(void)!write(report_fd, buf, (size_t)n);
	_exit(1);
}

/* same_ns reports whether our own namespace of type is the one in fd. */
static int same_ns(const char *type, int fd) {
	char path[64];
	struct stat a, b;
	snprintf(path, sizeof path, "/proc/self/ns/%s", type);
	if (stat(path, &a) < 0 || fstat(fd, &b) < 0)
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

void berth_nsenter(void) {
	/* Order: the user namespace first (it grants the rights to enter the
	 * others), the mount namespace last (it changes what /proc means). */
	static const char *types[] = {"user", "ipc", "uts", "net", "cgroup", "pid", "mnt"};
	enum { N = sizeof types / sizeof types[0] };
	int fds[N];
	const char *pid = getenv("_BERTH_NSENTER_PID");
	const char *pipe = getenv("_BERTH_NSENTER_PIPE");
	char path[64];
	char buf[32];
	pid_t child;
	int i, n;

	if (pid == NULL || pipe == NULL)
		return;
	report_fd = atoi(pipe);
	for (i = 0; i < N; i++) {
		snprintf(path, sizeof path, "/proc/%d/ns/%s", atoi(pid), types[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			if (errno == ENOENT && i != N - 1 && i != 5)
				continue; /* a namespace type this kernel lacks */
			report("Eopen %s: %s\n", path, errno);
		}
		if (same_ns(types[i], fds[i])) {
			close(fds[i]);
			fds[i] = -1;
		}
	}
	for (i = 0; i < N; i++) {
		if (fds[i] < 0)
			continue;
		if (setns(fds[i], 0) < 0)
			report("Esetns %s: %s\n", types[i], errno);
		close(fds[i]);
	}
	child = fork();
	if (child < 0)
		report("E%sfork: %s\n", "", errno);
	if (child > 0) {
		n = snprintf(buf, sizeof buf, "P%d\n", (int)child);
		(void)!write(report_fd, buf, (size_t)n);
		_exit(0);
	}
	close(report_fd);
	unsetenv("_BERTH_NSENTER_PID");
	unsetenv("_BERTH_NSENTER_PIPE");
}
