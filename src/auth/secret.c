/* secret.c: the key that signs this server's access tokens.
 *
 * JWT_SECRET wins when set (config requires it with DATABASE_URL, because
 * instances sharing a database must share the key). On the embedded default
 * without it, the first start writes 32 random bytes as 64 hex characters
 * to <dirname(SQLITE_PATH)>/jwt_secret with mode 0600 (O_EXCL, so two
 * processes racing agree on one file) and every later start reads it back:
 * tokens survive restarts, and the file can be copied into JWT_SECRET. */
#include "auth/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN_BYTES 32
#define FILE_MAX 4096

static int mkdir_p(const char *dir) {
  char *tmp = osb_strdup(dir);
  int rc = 0;
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) rc = -errno;
    *p = '/';
    if (rc) break;
  }
  if (!rc && mkdir(tmp, 0700) != 0 && errno != EEXIST) rc = -errno;
  free(tmp);
  return rc;
}

static int read_key(const char *path, char **key, size_t *keylen, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -errno;
  char buf[FILE_MAX + 1];
  ssize_t n = 0, r;
  while (n < FILE_MAX && (r = read(fd, buf + n, (size_t)(FILE_MAX - n))) > 0) n += r;
  struct stat st;
  int rc = fstat(fd, &st) == 0 ? 0 : -errno;
  close(fd);
  if (rc) return rc;
  if ((st.st_mode & 077) != 0) {
    /* Readable by others: tighten it rather than refuse to start. */
    if (chmod(path, 0600) != 0) {
      snprintf(err, errlen, "%s is readable by other users and chmod 0600 failed", path);
      return OSB_ECONFIG;
    }
  }
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) n--;
  if (n < 32) {
    sodium_memzero(buf, sizeof(buf));
    snprintf(err, errlen, "%s holds fewer than 32 characters; delete it to generate a new one", path);
    return OSB_ECONFIG;
  }
  *key = osb_strndup(buf, (size_t)n);
  *keylen = (size_t)n;
  sodium_memzero(buf, sizeof(buf));
  return 0;
}

int osb__secret_load(const char *configured, const char *sqlite_path, char **key, size_t *keylen,
                     bool *generated, char *err, size_t errlen) {
  *key = NULL;
  *keylen = 0;
  *generated = false;
  if (configured && configured[0]) {
    *key = osb_strdup(configured);
    *keylen = strlen(configured);
    return 0;
  }
  char *p1 = osb_strdup(sqlite_path && sqlite_path[0] ? sqlite_path : "./data/osbackend.db");
  char *dir = osb_strdup(dirname(p1));
  char *path = osb_asprintf("%s/jwt_secret", dir);
  int rc = read_key(path, key, keylen, err, errlen);
  if (rc != -ENOENT) {
    if (rc < 0 && rc != OSB_ECONFIG)
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
    goto out;
  }
  if ((rc = mkdir_p(dir)) < 0) {
    snprintf(err, errlen, "cannot create data directory %s: %s", dir, strerror(-rc));
    goto out;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {   /* another process won the race: use its key */
      rc = read_key(path, key, keylen, err, errlen);
      if (rc < 0 && rc != OSB_ECONFIG)
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
    } else {
      rc = -errno;
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    }
    goto out;
  }
  unsigned char raw[GEN_BYTES];
  char hex[2 * GEN_BYTES + 2];
  osb_random_bytes(raw, sizeof(raw));
  osb_hex(hex, raw, sizeof(raw));
  hex[2 * GEN_BYTES] = '\n';
  ssize_t w = write(fd, hex, 2 * GEN_BYTES + 1);
  int werr = errno;
  if (fsync(fd) != 0 && w >= 0) { w = -1; werr = errno; }
  close(fd);
  if (w != 2 * GEN_BYTES + 1) {
    if (werr == 0) werr = EIO;
    unlink(path);
    rc = -werr;
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(werr));
    goto out;
  }
  *key = osb_strndup(hex, 2 * GEN_BYTES);
  *keylen = 2 * GEN_BYTES;
  *generated = true;
  sodium_memzero(raw, sizeof(raw));
  sodium_memzero(hex, sizeof(hex));
  rc = 0;
out:
  free(path);
  free(dir);
  free(p1);
  return rc;
}
