/* Validated replay of a JSON text into a yajl generator: the writer copies
 * the caller's meta object and builds array into the document this way, so
 * bad text is refused as a whole and good text is re-emitted event by event
 * (numbers keep their original text). Pure C, no Python.h. */
#ifndef PS_JSONREPLAY_H
#define PS_JSONREPLAY_H

#include <stddef.h>
#include <yajl/yajl_gen.h>

typedef struct {
    /* 1: the text must be an object, and only its members are replayed (into
     * an object the generator has open). 0: the text must be an array,
     * replayed as one value. */
    int members_only;
    /* Top-level member names refused when members_only (the enclosing
     * object's own members), or NULL. */
    const char *const *reserved_keys;
    size_t n_reserved;
    /* Deepest nesting accepted (yajl's generator stops at 128 levels, the
     * enclosing document's included). */
    size_t max_depth;
} ps_json_rules;

/* Parse `text` (`len` bytes, UTF-8 validated) under `rules`. With `gen`
 * NULL, only validate. With `gen`, also emit the text into it; `stop`, if not
 * NULL, is asked after every event and ends the replay early when it returns
 * nonzero (the writer's output failed). Returns 0; PS_EJSON if the text is
 * not JSON or breaks the rules; PS_ENOMEM; PS_ESTATE if the generator
 * refused an event or `stop` ended the replay. */
int ps_json_replay(const char *text, size_t len, const ps_json_rules *rules,
                   yajl_gen gen, int (*stop)(void *), void *stop_ctx);

#endif /* PS_JSONREPLAY_H */
