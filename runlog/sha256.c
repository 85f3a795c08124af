/*
 * runlog/sha256.c - size and SHA-256 of input and output files (OpenSSL
 * libcrypto EVP), read in 1 MiB pieces so large traces need no memory.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runlog_int.h"

bsa_status bsa__runlog_sha256_file(const char *path, char hex[65], int64_t *size, char *err,
                                   size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    return BSA_ERR_IO;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "'%s' is not a regular file", path);
    close(fd);
    return BSA_ERR_IO;
  }
  enum { CHUNK = 1 << 20 };
  unsigned char *buf = malloc(CHUNK);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  bsa_status status = BSA_OK;
  if (!buf || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    snprintf(err, errlen, "cannot hash '%s': out of memory or no SHA-256", path);
    status = BSA_ERR_NOMEM;
    goto done;
  }
  int64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
      status = BSA_ERR_IO;
      goto done;
    }
    if (n == 0) break;
    EVP_DigestUpdate(md, buf, (size_t)n);
    total += n;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  EVP_DigestFinal_ex(md, digest, &dlen);
  for (unsigned i = 0; i < dlen && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  hex[64] = '\0';
  *size = total;
done:
  EVP_MD_CTX_free(md);
  free(buf);
  close(fd);
  return status;
}
