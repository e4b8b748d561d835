/* The atomic gzip file: see ps_gzfile.h. Everything on disk goes through a
 * descriptor of the target's directory (openat, linkat, renameat, unlinkat),
 * so the temporary file, the rename and the cleanup all refer to the same
 * directory even if the path's components change meanwhile. */
#define _GNU_SOURCE
#include "ps_gzfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ps_error.h"

#define TMP_INFIX ".tmp-"
#define TMP_RANDOM 6
#define TMP_ATTEMPTS 100

struct ps_gzfile {
    int dir_fd;            /* Owned: the target's directory, or -1 */
    int fd;                /* Owned: the temporary file, or -1 once closed */
    int zs_ready;          /* deflateInit2 succeeded: deflateEnd is owed */
    int unnamed;           /* fd is an O_TMPFILE inode, not yet linked */
    int tmp_created;       /* tmp_name exists and is ours to remove */
    int committed;         /* renamed over the target: nothing to remove */
    int code;              /* sticky PS_E*, 0 while all is well */
    int os_errno;          /* errno of `code` when it is PS_EOS */
    const char *step;      /* static name of the failing step */
    size_t bytes_out;      /* deflated bytes written to fd */
    size_t in_len;         /* bytes waiting in `in` */
    char *tmp_name;        /* Owned: temporary file name, relative to dir_fd */
    char *name;            /* Owned: target name, relative to dir_fd */
    z_stream zs;
    unsigned char in[PS_GZFILE_IN_BYTES];
    unsigned char out[PS_GZFILE_OUT_BYTES];
};

static int
fail(ps_gzfile *f, int code, int os_errno, const char *step)
{
    if (f->code == 0) {
        f->code = code;
        f->os_errno = code == PS_EOS ? os_errno : 0;
        f->step = step;
    }
    return f->code;
}

static int
write_all(ps_gzfile *f, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(f->fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(f, PS_EOS, errno, "write");
        }
        if (n == 0) {
            /* write(2) on a regular file returns 0 only when nothing fits. */
            return fail(f, PS_EOS, ENOSPC, "write");
        }
        data += n;
        len -= (size_t)n;
        f->bytes_out += (size_t)n;
    }
    return 0;
}

/* Deflate what `in` holds with `flush` and write every byte produced. */
static int
deflate_pending(ps_gzfile *f, int flush)
{
    int rc;
    f->zs.next_in = f->in;
    f->zs.avail_in = (uInt)f->in_len;
    do {
        f->zs.next_out = f->out;
        f->zs.avail_out = sizeof(f->out);
        rc = deflate(&f->zs, flush);
        if (rc == Z_STREAM_ERROR) {
            return fail(f, PS_EZLIB, 0, "deflate");
        }
        size_t produced = sizeof(f->out) - f->zs.avail_out;
        if (produced > 0 && write_all(f, f->out, produced) < 0) {
            return f->code;
        }
    } while (f->zs.avail_out == 0);
    /* With room left in `out`, deflate has consumed all of `in`. */
    if (f->zs.avail_in != 0 || (flush == Z_FINISH && rc != Z_STREAM_END)) {
        return fail(f, PS_EZLIB, 0, "deflate");
    }
    f->in_len = 0;
    return 0;
}

/* Split `path` into a directory (opened) and a base name (copied). */
static int
open_dir(ps_gzfile *f, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        return fail(f, PS_EOS, EISDIR, "open");
    }
    if ((f->name = strdup(base)) == NULL) {
        return fail(f, PS_ENOMEM, 0, "open");
    }
    char *dir = NULL;
    if (slash == NULL) {
        dir = strdup(".");
    }
    else if (slash == path) {
        dir = strdup("/");
    }
    else {
        dir = strndup(path, (size_t)(slash - path));
    }
    if (dir == NULL) {
        return fail(f, PS_ENOMEM, 0, "open");
    }
    f->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int saved = errno;
    free(dir);
    if (f->dir_fd < 0) {
        return fail(f, PS_EOS, saved, "open dir");
    }
    return 0;
}

/* Fill the random part of tmp_name. */
static void
randomize_tmp_name(ps_gzfile *f, int attempt)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char random[TMP_RANDOM];
    char *suffix = f->tmp_name + strlen(f->tmp_name) - TMP_RANDOM;
    if (getrandom(random, sizeof(random), GRND_NONBLOCK) !=
        (ssize_t)sizeof(random)) {
        /* No entropy yet (early boot): the clock still varies enough, and
         * O_EXCL / link(2) make a collision a retry, never a clobber. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 2654435761u ^
                     (uint64_t)getpid() << 20 ^ (uint64_t)attempt;
        for (int i = 0; i < TMP_RANDOM; i++, x >>= 7) {
            random[i] = (unsigned char)x;
        }
    }
    for (int i = 0; i < TMP_RANDOM; i++) {
        suffix[i] = alphabet[random[i] % (sizeof(alphabet) - 1)];
    }
}

/* Bytes of the target name kept in the temporary name `.<name>.tmp-XXXXXX`
 * so that it fits the directory's NAME_MAX: a valid 250-byte target must not
 * fail for its temporary name. A long name is cut at a UTF-8 character
 * boundary, so the temporary name stays readable text. */
static size_t
tmp_name_keep(const ps_gzfile *f, size_t name_len)
{
    const size_t extra = 1 + sizeof(TMP_INFIX) - 1 + TMP_RANDOM;
    long name_max = fpathconf(f->dir_fd, _PC_NAME_MAX);
    if (name_max <= 0) {
        name_max = NAME_MAX;  /* no limit reported: the Linux one */
    }
    if ((size_t)name_max <= extra) {
        return 0;
    }
    size_t keep = (size_t)name_max - extra;
    if (name_len <= keep) {
        return name_len;
    }
    while (keep > 0 && ((unsigned char)f->name[keep] & 0xC0) == 0x80) {
        keep--;  /* f->name[keep] continues a character: cut before it */
    }
    return keep;
}

/* Hold an exclusive flock on the temporary file for as long as it is open:
 * a cleanup of temporary files (the service's, at start) can then tell the
 * file of a live writer (locked) from one a killed process left (the kernel
 * drops the lock with the process). Best effort: a file system without
 * locks still gets its data written. */
static void
lock_tmp(ps_gzfile *f)
{
    while (flock(f->fd, LOCK_EX | LOCK_NB) < 0 && errno == EINTR) {
    }
}

/* Open the file the data goes to. Preferably an unnamed O_TMPFILE inode in
 * the target's directory: it gets a name only once complete, so even a
 * SIGKILL mid-write leaves nothing behind. Where the file system lacks
 * O_TMPFILE, a named `.<name>.tmp-XXXXXX` created exclusively, which only a
 * kill can leave behind. Both through open(2) with mode 0644, so that the
 * kernel applies the umask as for any new file (mkstemp creates 0600, and
 * reading the umask is not thread-safe). */
static int
create_tmp(ps_gzfile *f, unsigned flags)
{
    size_t keep = tmp_name_keep(f, strlen(f->name));
    size_t size = 1 + keep + sizeof(TMP_INFIX) - 1 + TMP_RANDOM + 1;
    if ((f->tmp_name = malloc(size)) == NULL) {
        return fail(f, PS_ENOMEM, 0, "open");
    }
    f->tmp_name[0] = '.';
    memcpy(f->tmp_name + 1, f->name, keep);
    memcpy(f->tmp_name + 1 + keep, TMP_INFIX, sizeof(TMP_INFIX) - 1);
    memset(f->tmp_name + size - 1 - TMP_RANDOM, 'X', TMP_RANDOM);
    f->tmp_name[size - 1] = '\0';

#ifdef O_TMPFILE
    if (!(flags & PS_GZFILE_NAMED_TMP)) {
        f->fd = openat(f->dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC,
                       0644);
    }
    if (f->fd >= 0) {
        f->unnamed = 1;
        lock_tmp(f);
        return 0;
    }
    /* EOPNOTSUPP, EISDIR (kernel without O_TMPFILE), EINVAL: no O_TMPFILE
     * here, fall back. Real errors (EACCES, EROFS, ENOSPC) recur below. */
#endif
    for (int attempt = 0; attempt < TMP_ATTEMPTS; attempt++) {
        randomize_tmp_name(f, attempt);
        f->fd = openat(f->dir_fd, f->tmp_name,
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (f->fd >= 0) {
            f->tmp_created = 1;
            lock_tmp(f);
            return 0;
        }
        if (errno != EEXIST) {
            return fail(f, PS_EOS, errno, "open");
        }
    }
    return fail(f, PS_EOS, EEXIST, "open");
}

/* Give the unnamed file its temporary name (link(2) cannot replace the
 * target, rename(2) will). Through /proc/self/fd, which needs no privilege;
 * AT_EMPTY_PATH is the fallback when /proc is not mounted. */
static int
link_unnamed(ps_gzfile *f)
{
    char proc_path[64];
    snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", f->fd);
    for (int attempt = 0; attempt < TMP_ATTEMPTS; attempt++) {
        randomize_tmp_name(f, attempt);
        int rc = linkat(AT_FDCWD, proc_path, f->dir_fd, f->tmp_name,
                        AT_SYMLINK_FOLLOW);
        if (rc < 0 && errno == ENOENT) {
            rc = linkat(f->fd, "", f->dir_fd, f->tmp_name, AT_EMPTY_PATH);
        }
        if (rc == 0) {
            f->tmp_created = 1;
            return 0;
        }
        if (errno != EEXIST) {
            return fail(f, PS_EOS, errno, "link");
        }
    }
    return fail(f, PS_EOS, EEXIST, "link");
}

int
ps_gzfile_open(const char *path, int level, unsigned flags, ps_gzfile **out,
               int *os_errno, const char **step)
{
    int rc = 0;
    ps_gzfile *f = NULL;

    *out = NULL;
    if (level < 0 || level > 9) {
        rc = PS_EINVAL;
        if (step != NULL) {
            *step = "level";
        }
        if (os_errno != NULL) {
            *os_errno = 0;
        }
        return rc;
    }
    if ((f = calloc(1, sizeof(*f))) == NULL) {
        if (step != NULL) {
            *step = "open";
        }
        if (os_errno != NULL) {
            *os_errno = 0;
        }
        return PS_ENOMEM;
    }
    f->dir_fd = -1;
    f->fd = -1;
    if (open_dir(f, path) < 0 || create_tmp(f, flags) < 0) {
        goto error;
    }
    rc = deflateInit2(&f->zs, level == 0 ? Z_DEFAULT_COMPRESSION : level,
                      Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        fail(f, rc == Z_MEM_ERROR ? PS_ENOMEM : PS_EZLIB, 0, "deflate init");
        goto error;
    }
    f->zs_ready = 1;
    *out = f;
    return 0;

error:
    rc = ps_gzfile_error(f, os_errno, step);
    ps_gzfile_close(f);
    return rc;
}

int
ps_gzfile_write(ps_gzfile *f, const void *data, size_t len)
{
    const unsigned char *bytes = data;
    while (f->code == 0 && len > 0) {
        size_t room = sizeof(f->in) - f->in_len;
        size_t n = len < room ? len : room;
        memcpy(f->in + f->in_len, bytes, n);
        f->in_len += n;
        bytes += n;
        len -= n;
        if (f->in_len == sizeof(f->in)) {
            deflate_pending(f, Z_NO_FLUSH);
        }
    }
    return f->code;
}

int
ps_gzfile_error(const ps_gzfile *f, int *os_errno, const char **step)
{
    if (os_errno != NULL) {
        *os_errno = f->os_errno;
    }
    if (step != NULL) {
        *step = f->code ? f->step : NULL;
    }
    return f->code;
}

int
ps_gzfile_commit(ps_gzfile *f)
{
    if (f->code != 0 || f->committed) {
        return f->code ? f->code : fail(f, PS_ESTATE, 0, "commit");
    }
    if (deflate_pending(f, Z_FINISH) < 0) {
        return f->code;
    }
    if (fsync(f->fd) < 0) {
        return fail(f, PS_EOS, errno, "fsync");
    }
    if (f->unnamed && link_unnamed(f) < 0) {
        return f->code;
    }
    int fd = f->fd;
    f->fd = -1;
    /* close(2) may report a deferred write error (NFS); on Linux the
     * descriptor is released even then, so it is never retried. */
    if (close(fd) < 0 && errno != EINTR) {
        return fail(f, PS_EOS, errno, "close");
    }
    if (renameat(f->dir_fd, f->tmp_name, f->dir_fd, f->name) < 0) {
        return fail(f, PS_EOS, errno, "rename");
    }
    f->committed = 1;
    /* Make the rename itself durable. Some file systems cannot fsync a
     * directory (EINVAL): there is nothing more to do on those. */
    if (fsync(f->dir_fd) < 0 && errno != EINVAL) {
        return fail(f, PS_EOS, errno, "fsync dir");
    }
    return 0;
}

void
ps_gzfile_close(ps_gzfile *f)
{
    if (f == NULL) {
        return;
    }
    if (f->zs_ready) {
        deflateEnd(&f->zs);
    }
    if (f->fd >= 0) {
        close(f->fd);
    }
    if (f->tmp_created && !f->committed) {
        unlinkat(f->dir_fd, f->tmp_name, 0);
    }
    if (f->dir_fd >= 0) {
        close(f->dir_fd);
    }
    free(f->tmp_name);
    free(f->name);
    free(f);
}

size_t
ps_gzfile_bytes_out(const ps_gzfile *f)
{
    return f->bytes_out;
}
