/* Writes a finished period as one gzip JSON document (docs/FORMAT.md),
 * streamed: yajl generates into a small buffer that zlib deflates straight
 * into a temporary file beside the target, which is fsynced and renamed over
 * it. The whole document never exists in memory, and no partial file is ever
 * visible under the target name. Pure C: safe to call with the GIL released. */
#ifndef PS_WRITER_H
#define PS_WRITER_H

#include <stddef.h>

#include "ps_period.h"

typedef struct {
    /* JSON object text whose members are appended to "meta" (python version,
     * buildbot version, ...), or NULL. Not NUL-terminated: use the length.
     * Its members may not repeat the writer's own (start_ms, pid, ...). */
    const char *meta_json;
    size_t meta_len;
    /* JSON array text written as "builds", or NULL for []. Both texts are
     * validated before anything touches the disk, and re-emitted event by
     * event (numbers keep their original text); nesting is limited to 100. */
    const char *builds_json;
    size_t builds_len;
    /* zlib level 1..9; 0 means the default (6). */
    int level;
} ps_write_options;

typedef struct {
    int code;        /* PS_E* */
    int os_errno;    /* errno when code == PS_EOS, else 0 */
    /* The failing step: "meta_json", "builds_json" (PS_EJSON: invalid text,
     * wrong shape or a repeated meta key), "level" (PS_EINVAL), "open dir",
     * "open", "write", "fsync", "close", "link", "rename", "fsync dir"
     * (PS_EOS), "deflate init", "deflate" (PS_EZLIB or PS_ENOMEM),
     * "generate" (yajl refused a value: a bug, or PS_ENOMEM). */
    char what[64];
} ps_write_error;

/* Serialize `period` into `path` atomically (temp file in the same directory,
 * fsync, rename, fsync of the directory). `options` may be NULL (no meta, no
 * builds, level 6). Returns 0, or a negative PS_E* code with `err` filled in;
 * on failure the temporary file is removed and `path` is untouched, except
 * after a failed "fsync dir", when `path` already holds the complete new
 * file. Heap used: about 400 KiB of fixed buffers (zlib's state and two
 * 64 KiB buffers), whatever the period's size. `period` is only read, so the
 * call may run concurrently with other readers of the same period; it takes
 * no Python lock and may run with the GIL released. */
int ps_writer_write(const ps_period *period, const char *path,
                    const ps_write_options *options, ps_write_error *err);

#endif /* PS_WRITER_H */
