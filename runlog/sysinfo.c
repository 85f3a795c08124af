/*
 * runlog/sysinfo.c - what the log records about this machine and process,
 * and how it decides that a run left "running" was interrupted.
 *
 * A run is stored "running" until its own process ends it.  A process that
 * is killed never does, so readers judge at read time: a run is shown
 * "interrupted" when it was begun on this host and
 *   - the machine has rebooted since (boot_id differs), or
 *   - its process no longer exists (kill(pid, 0) fails with ESRCH), or
 *   - its process is a zombie (it has exited, only its parent has not yet
 *     collected it), or
 *   - the pid now belongs to another process (its start time differs).
 * Runs begun on another host cannot be judged from here and stay "running".
 * Nothing is ever written back: the stored row is the record.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runlog_int.h"

void bsa__runlog_now(char buf[32]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  /* Years past 9999 do not fit the format; clamp so that the text stays
   * fixed-width and sortable. */
  if (tm.tm_year > 9999 - 1900) tm.tm_year = 9999 - 1900;
  if (tm.tm_year < 0) tm.tm_year = 0;
  char text[96];
  snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(ts.tv_nsec / 1000000));
  size_t n = strnlen(text, 31);
  memcpy(buf, text, n);
  buf[n] = '\0';
}

void bsa__runlog_host(char *buf, size_t len) {
  if (gethostname(buf, len) != 0) buf[0] = '\0';
  buf[len - 1] = '\0';
}

/* Reads a small text file into buf, without the trailing newline. */
static int read_small(const char *path, char *buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, len - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
  return 0;
}

void bsa__runlog_boot_id(char *buf, size_t len) {
  if (read_small("/proc/sys/kernel/random/boot_id", buf, len) != 0) buf[0] = '\0';
}

int64_t bsa__runlog_proc_start(pid_t pid, int *zombie) {
  char path[64], stat[1024];
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  if (read_small(path, stat, sizeof stat) != 0) return -1;
  /* "pid (comm) S ppid ..." where comm may hold spaces and parentheses:
   * the fields after it start past the last ')'. */
  char *p = strrchr(stat, ')');
  if (!p || p[1] != ' ') return -1;
  p += 2;
  if (zombie) *zombie = (*p == 'Z' || *p == 'X');
  /* p is at field 3 (state); starttime is field 22. */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p) return -1;
    p++;
  }
  char *end = NULL;
  long long v = strtoll(p, &end, 10);
  if (end == p) return -1;
  return v;
}

const char *bsa__runlog_effective_status(const bsa_runlog *log, const char *status,
                                         const char *host, int64_t pid, const char *boot_id,
                                         int64_t proc_start) {
  if (!status) return "unknown";
  if (strcmp(status, "running") != 0) return status;
  if (!host || !log->host[0] || strcmp(host, log->host) != 0) return "running";
  if (boot_id && boot_id[0] && log->boot_id[0] && strcmp(boot_id, log->boot_id) != 0)
    return "interrupted";
  if (pid <= 0) return "running";
  if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return "interrupted";
  int zombie = 0;
  int64_t now_start = bsa__runlog_proc_start((pid_t)pid, &zombie);
  if (now_start >= 0) {
    if (zombie) return "interrupted";
    if (proc_start >= 0 && now_start != proc_start) return "interrupted";
  }
  return "running";
}
