/* Validated replay of embedded JSON: see ps_jsonreplay.h. yajl's parser
 * calls back once per event; each callback checks the rules and, when a
 * generator is given, emits the same event. */
#include "ps_jsonreplay.h"

#include <string.h>
#include <yajl/yajl_parse.h>

#include "ps_error.h"

typedef struct {
    const ps_json_rules *rules;
    yajl_gen gen;         /* Borrowed; NULL to validate only */
    int (*stop)(void *);
    void *stop_ctx;
    int bad_text;         /* the text parsed but breaks the rules */
    int gen_failed;       /* the generator refused an event, or stop() */
    size_t depth;
} replay;

static int
proceed(replay *r)
{
    if (!r->gen_failed && r->stop != NULL && r->stop(r->stop_ctx)) {
        r->gen_failed = 1;
    }
    return !r->bad_text && !r->gen_failed;
}

static int
emit(replay *r, yajl_gen_status status)
{
    if (status != yajl_gen_status_ok) {
        r->gen_failed = 1;
    }
    return proceed(r);
}

/* Every scalar: refuse it at the top, where an object or array must be. */
static int
scalar(replay *r)
{
    if (r->depth == 0) {
        r->bad_text = 1;
    }
    return proceed(r) && r->gen != NULL;
}

static int
on_null(void *ctx)
{
    replay *r = ctx;
    return scalar(r) ? emit(r, yajl_gen_null(r->gen)) : proceed(r);
}

static int
on_boolean(void *ctx, int value)
{
    replay *r = ctx;
    return scalar(r) ? emit(r, yajl_gen_bool(r->gen, value)) : proceed(r);
}

static int
on_number(void *ctx, const char *text, size_t len)
{
    replay *r = ctx;
    return scalar(r) ? emit(r, yajl_gen_number(r->gen, text, len))
                     : proceed(r);
}

static int
on_string(void *ctx, const unsigned char *s, size_t len)
{
    replay *r = ctx;
    return scalar(r) ? emit(r, yajl_gen_string(r->gen, s, len)) : proceed(r);
}

static int
on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    replay *r = ctx;
    const ps_json_rules *rules = r->rules;
    if (rules->members_only && r->depth == 1) {
        for (size_t i = 0; i < rules->n_reserved; i++) {
            if (strlen(rules->reserved_keys[i]) == len &&
                memcmp(rules->reserved_keys[i], s, len) == 0) {
                r->bad_text = 1;
            }
        }
    }
    if (proceed(r) && r->gen != NULL) {
        return emit(r, yajl_gen_string(r->gen, s, len));
    }
    return proceed(r);
}

static int
on_open(replay *r, int is_map)
{
    /* The top-level container of a members_only text is the enclosing
     * object, already open in the generator. */
    int skip = r->depth == 0 && r->rules->members_only;
    if (r->depth == 0 && is_map != r->rules->members_only) {
        r->bad_text = 1;
    }
    if (++r->depth > r->rules->max_depth) {
        r->bad_text = 1;
    }
    if (!skip && proceed(r) && r->gen != NULL) {
        return emit(r, is_map ? yajl_gen_map_open(r->gen)
                              : yajl_gen_array_open(r->gen));
    }
    return proceed(r);
}

static int
on_close(replay *r, int is_map)
{
    r->depth--;
    int skip = r->depth == 0 && r->rules->members_only;
    if (!skip && proceed(r) && r->gen != NULL) {
        return emit(r, is_map ? yajl_gen_map_close(r->gen)
                              : yajl_gen_array_close(r->gen));
    }
    return proceed(r);
}

static int
on_start_map(void *ctx)
{
    return on_open(ctx, 1);
}

static int
on_end_map(void *ctx)
{
    return on_close(ctx, 1);
}

static int
on_start_array(void *ctx)
{
    return on_open(ctx, 0);
}

static int
on_end_array(void *ctx)
{
    return on_close(ctx, 0);
}

static const yajl_callbacks callbacks = {
    on_null,      on_boolean,  NULL,           NULL,
    on_number,    on_string,   on_start_map,   on_map_key,
    on_end_map,   on_start_array, on_end_array,
};

int
ps_json_replay(const char *text, size_t len, const ps_json_rules *rules,
               yajl_gen gen, int (*stop)(void *), void *stop_ctx)
{
    replay r = {rules, gen, stop, stop_ctx, 0, 0, 0};
    yajl_handle parser = yajl_alloc(&callbacks, NULL, &r);
    if (parser == NULL) {
        return PS_ENOMEM;
    }
    yajl_status status = yajl_parse(parser, (const unsigned char *)text, len);
    if (status == yajl_status_ok) {
        status = yajl_complete_parse(parser);
    }
    yajl_free(parser);
    if (r.gen_failed) {
        return PS_ESTATE;
    }
    /* A syntax error (yajl_status_error) or broken rules (canceled). */
    return status == yajl_status_ok && !r.bad_text ? 0 : PS_EJSON;
}
