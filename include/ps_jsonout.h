/* The writer's JSON output: a yajl generator printing into a ps_gzfile.
 * yajl's print callback cannot fail, so errors are sticky: every call after
 * the first failure does nothing harmful, and the caller checks
 * ps_jsonout_failed() after each section (and every few thousand values
 * inside one). Pure C, no Python.h. */
#ifndef PS_JSONOUT_H
#define PS_JSONOUT_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>

#include "ps_gzfile.h"
#include "ps_jsonreplay.h"

typedef struct {
    yajl_gen gen;       /* Owned */
    ps_gzfile *file;    /* Borrowed: the caller opens and closes it */
    int code;           /* sticky PS_E* of the generator side */
    const char *what;   /* its step */
    char *scratch;      /* Owned: UTF-8 repair buffer, grown on demand */
    size_t scratch_cap;
} ps_jsonout;

/* Set up `w` to print into `file`. Returns 0, or PS_ENOMEM (also recorded
 * as w's sticky error); ps_jsonout_close is needed either way. */
int ps_jsonout_open(ps_jsonout *w, ps_gzfile *file);

/* Release the generator and the scratch buffer (not the file). */
void ps_jsonout_close(ps_jsonout *w);

/* Record `code` for step `what`, unless an error is already recorded. */
void ps_jsonout_set_error(ps_jsonout *w, int code, const char *what);

/* Record a generator status that is not yajl_gen_status_ok as PS_EJSON. */
void ps_jsonout_ok(ps_jsonout *w, yajl_gen_status status);

/* Nonzero once anything failed: the generator or the file. */
int ps_jsonout_failed(const ps_jsonout *w);

/* Values. Strings are emitted as valid UTF-8 (invalid bytes become U+FFFD);
 * `text` of a number is emitted as is. */
void ps_jsonout_str(ps_jsonout *w, const char *s, size_t len);
void ps_jsonout_cstr(ps_jsonout *w, const char *s);
void ps_jsonout_number(ps_jsonout *w, const char *text, size_t len);
void ps_jsonout_int(ps_jsonout *w, long long value);
void ps_jsonout_u64(ps_jsonout *w, uint64_t value);
void ps_jsonout_key_int(ps_jsonout *w, const char *key, long long value);
void ps_jsonout_key_u64(ps_jsonout *w, const char *key, uint64_t value);
void ps_jsonout_begin_map(ps_jsonout *w);
void ps_jsonout_end_map(ps_jsonout *w);
void ps_jsonout_begin_array(ps_jsonout *w);
void ps_jsonout_end_array(ps_jsonout *w);

/* Replay JSON `text` (validated up front under `rules`) into the document;
 * a failure here is the file's or the generator's, recorded as usual. */
void ps_jsonout_embedded(ps_jsonout *w, const char *text, size_t len,
                         const ps_json_rules *rules);

#endif /* PS_JSONOUT_H */
