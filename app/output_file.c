#include "output_file.h"

#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* write(2) until done; 0 or an errno. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_direct(const char *path, const void *data, size_t n, const char *what) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return cli_fail("%s: cannot open for %s: %s", path, what, strerror(errno));
    int err = write_all(fd, data, n);
    if (close(fd) != 0 && !err) err = errno;
    if (err) return cli_fail("%s: cannot write %s: %s", path, what, strerror(err));
    return 0;
}

static int write_replacing(const char *path, const void *data, size_t n, const char *what) {
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) return cli_fail("out of memory");
    snprintf(tmp, len, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = cli_fail("%s: cannot write %s: %s", path, what, strerror(errno));
        free(tmp);
        return rc;
    }
    int err = write_all(fd, data, n);
    if (!err && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        unlink(tmp);
        free(tmp);
        return cli_fail("%s: cannot write %s: %s (the file is unchanged)", path, what, strerror(err));
    }
    free(tmp);
    return 0;
}

int output_file_write(const char *path, const void *data, size_t n, const char *what) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) return cli_fail("%s: %s", path, strerror(errno));
        return write_replacing(path, data, n, what); /* a new file */
    }
    if (!S_ISREG(st.st_mode)) return write_direct(path, data, n, what);
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) { /* replace the file the link names, keep the link */
        char *real = realpath(path, NULL);
        if (!real) return cli_fail("%s: %s", path, strerror(errno));
        int rc = write_replacing(real, data, n, what);
        free(real);
        return rc;
    }
    return write_replacing(path, data, n, what);
}
