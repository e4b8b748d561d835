/* The JSON output of the writer: a yajl generator printing into a
 * ps_gzfile, with a sticky error (yajl's print callback cannot fail) and the
 * values the document is made of: strings repaired to valid UTF-8, integers
 * without yajl_gen_double, and validated embedded JSON. See ps_jsonout.h. */
#define _GNU_SOURCE
#include "ps_jsonout.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_error.h"

/* ---- sticky errors -------------------------------------------------------- */

void
ps_jsonout_set_error(ps_jsonout *w, int code, const char *what)
{
    if (w->code == 0) {
        w->code = code;
        w->what = what;
    }
}

void
ps_jsonout_ok(ps_jsonout *w, yajl_gen_status status)
{
    if (status != yajl_gen_status_ok) {
        ps_jsonout_set_error(w, PS_EJSON, "generate");
    }
}

/* Nonzero once anything failed: the generator or the file. */
int
ps_jsonout_failed(const ps_jsonout *w)
{
    return w->code != 0 || ps_gzfile_error(w->file, NULL, NULL) != 0;
}

static void
print_to_file(void *ctx, const char *s, size_t len)
{
    ps_gzfile_write((ps_gzfile *)ctx, s, len);
}

int
ps_jsonout_open(ps_jsonout *w, ps_gzfile *file)
{
    memset(w, 0, sizeof(*w));
    w->file = file;
    if ((w->gen = yajl_gen_alloc(NULL)) == NULL ||
        !yajl_gen_config(w->gen, yajl_gen_print_callback, print_to_file, file)) {
        ps_jsonout_set_error(w, PS_ENOMEM, "generate");
        return PS_ENOMEM;
    }
    return PS_OK;
}

void
ps_jsonout_close(ps_jsonout *w)
{
    if (w->gen != NULL) {
        yajl_gen_free(w->gen);
        w->gen = NULL;
    }
    free(w->scratch);
    w->scratch = NULL;
    w->scratch_cap = 0;
}

/* ---- values ------------------------------------------------------------- */

/* Length of the valid UTF-8 character at s[0..len), or 0 if it is not one
 * (overlong forms and surrogates included). */
static size_t
utf8_char(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) {
        return 1;
    }
    else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800;
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000;
    }
    else {
        return 0;
    }
    if (len < n) {
        return 0;
    }
    unsigned cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return n;
}

/* A string, with invalid UTF-8 (a thread name cut mid-character, a file
 * name in another encoding) replaced by U+FFFD so any JSON reader loads it. */
void
ps_jsonout_str(ps_jsonout *w, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_char(u + i, len - i);
        if (n == 0) {
            break;
        }
        i += n;
    }
    if (i == len) {
        ps_jsonout_ok(w, yajl_gen_string(w->gen, u, len));
        return;
    }
    if (len > (SIZE_MAX - 3) / 3) {
        ps_jsonout_set_error(w, PS_ENOMEM, "generate");
        return;
    }
    if (w->scratch_cap < 3 * len) {
        char *grown = realloc(w->scratch, 3 * len);
        if (grown == NULL) {
            ps_jsonout_set_error(w, PS_ENOMEM, "generate");
            return;
        }
        w->scratch = grown;
        w->scratch_cap = 3 * len;
    }
    size_t out = 0;
    for (i = 0; i < len;) {
        size_t n = utf8_char(u + i, len - i);
        if (n == 0) {
            memcpy(w->scratch + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        }
        else {
            memcpy(w->scratch + out, u + i, n);
            out += n;
            i += n;
        }
    }
    ps_jsonout_ok(w, yajl_gen_string(w->gen, (const unsigned char *)w->scratch, out));
}

void
ps_jsonout_number(ps_jsonout *w, const char *text, size_t len)
{
    ps_jsonout_ok(w, yajl_gen_number(w->gen, text, len));
}

void
ps_jsonout_cstr(ps_jsonout *w, const char *s)
{
    ps_jsonout_str(w, s, strlen(s));
}

void
ps_jsonout_int(ps_jsonout *w, long long value)
{
    ps_jsonout_ok(w, yajl_gen_integer(w->gen, value));
}

/* Thread idents are pointers: they may not fit a long long. */
void
ps_jsonout_u64(ps_jsonout *w, uint64_t value)
{
    if (value <= (uint64_t)LLONG_MAX) {
        ps_jsonout_int(w, (long long)value);
        return;
    }
    char text[24];
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)value);
    ps_jsonout_number(w, text, (size_t)n);
}

void
ps_jsonout_key_int(ps_jsonout *w, const char *key, long long value)
{
    ps_jsonout_cstr(w, key);
    ps_jsonout_int(w, value);
}

void
ps_jsonout_key_u64(ps_jsonout *w, const char *key, uint64_t value)
{
    ps_jsonout_cstr(w, key);
    ps_jsonout_u64(w, value);
}

void
ps_jsonout_begin_map(ps_jsonout *w)
{
    ps_jsonout_ok(w, yajl_gen_map_open(w->gen));
}

void
ps_jsonout_end_map(ps_jsonout *w)
{
    ps_jsonout_ok(w, yajl_gen_map_close(w->gen));
}

void
ps_jsonout_begin_array(ps_jsonout *w)
{
    ps_jsonout_ok(w, yajl_gen_array_open(w->gen));
}

void
ps_jsonout_end_array(ps_jsonout *w)
{
    ps_jsonout_ok(w, yajl_gen_array_close(w->gen));
}

/* ---- embedded JSON ---------------------------------------------------- */

static int
replay_should_stop(void *ctx)
{
    return ps_jsonout_failed((const ps_jsonout *)ctx);
}

/* Replay `text` into the document; the texts were validated up front, so a
 * failure here is the file's (reported by ps_jsonout_failed()) or the generator's. */
void
ps_jsonout_embedded(ps_jsonout *w, const char *text, size_t len,
             const ps_json_rules *rules)
{
    int rc = ps_json_replay(text, len, rules, w->gen, replay_should_stop, w);
    if (rc < 0 && !ps_jsonout_failed(w)) {
        ps_jsonout_set_error(w, rc == PS_ENOMEM ? PS_ENOMEM : PS_EJSON, "generate");
    }
}
