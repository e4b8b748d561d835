/* A gzip file written atomically: bytes are deflated (gzip framing) through
 * fixed-size buffers into a temporary file beside the target, which is
 * fsynced and renamed over the target only when everything succeeded. No
 * partial or temporary file is ever left visible. Pure C, no Python.h. */
#ifndef PS_GZFILE_H
#define PS_GZFILE_H

#include <stddef.h>

/* Bytes buffered before deflate runs, and bytes of deflated output buffered
 * before write(2) runs. With zlib's own state (windowBits 15, memLevel 8:
 * about 268 KiB) an open file costs about 400 KiB of heap, whatever the
 * amount of data written. */
#define PS_GZFILE_IN_BYTES (64u * 1024u)
#define PS_GZFILE_OUT_BYTES (64u * 1024u)

typedef struct ps_gzfile ps_gzfile;

enum {
    /* Always use a named temporary file, even where O_TMPFILE works (tests
     * use it to cover the fallback). */
    PS_GZFILE_NAMED_TMP = 1u << 0
};

/* Create the temporary file in the directory of `path` (mode 0644 less the
 * umask) and start a gzip stream at zlib `level` (1..9, 0 for zlib's
 * default), `flags` PS_GZFILE_*. The temporary file is an unnamed O_TMPFILE inode where the file
 * system supports it (nothing to clean up even after a SIGKILL), else
 * `.<name>.tmp-XXXXXX`; it is named `.<name>.tmp-XXXXXX` just before the
 * rename in either case (<name> cut at a UTF-8 boundary so that the whole
 * fits the directory's NAME_MAX). The writer holds an flock on it while it is
 * open, so a cleanup can tell a live writer's file from one that a killed
 * process left. On success stores a new file in *out and returns 0.
 * On failure returns a negative PS_E* code, stores NULL in *out, and, when
 * `os_errno`/`step` are not NULL, the errno (PS_EOS only, else 0) and a static
 * name of the failing step ("open dir", "open", "deflate", ...). Nothing is
 * left on disk after a failure. */
int ps_gzfile_open(const char *path, int level, unsigned flags,
                   ps_gzfile **out, int *os_errno, const char **step);

/* Compress and write `len` bytes. The first failure is sticky: later calls
 * do nothing and return it again, so a caller that cannot check every call
 * (a yajl print callback) checks ps_gzfile_error() once in a while. Returns 0
 * or a negative PS_E* code. */
int ps_gzfile_write(ps_gzfile *f, const void *data, size_t len);

/* The sticky error: 0 or a negative PS_E* code; `os_errno` and `step` (either
 * may be NULL) receive its errno (PS_EOS only) and step name. */
int ps_gzfile_error(const ps_gzfile *f, int *os_errno, const char **step);

/* Finish the gzip stream, fsync and close the temporary file, rename it over
 * the target and fsync the directory. Returns 0 or a negative PS_E* code (the
 * sticky error if there was one). On failure before the rename the target is
 * untouched; only an fsync of the directory can fail after it (then the
 * target already holds the complete new file). Call ps_gzfile_close() after
 * it in every case. */
int ps_gzfile_commit(ps_gzfile *f);

/* Release the file: if it was not committed, the temporary file is removed.
 * NULL is allowed. */
void ps_gzfile_close(ps_gzfile *f);

/* Bytes of deflated output written so far (the file's size after commit). */
size_t ps_gzfile_bytes_out(const ps_gzfile *f);

#endif /* PS_GZFILE_H */
