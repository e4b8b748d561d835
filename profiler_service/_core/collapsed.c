/* Collapsed stacks from a period: see ps_collapsed.h. Samples are keyed by
 * (thread, leaf node), sorted, counted in runs, and each run's path is
 * rendered root first. */
#include "ps_collapsed.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_error.h"

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;  /* sticky: an allocation failed */
} buf;

static void
buf_reserve(buf *b, size_t extra)
{
    if (b->failed || b->len + extra + 1 <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = 1;
        return;
    }
    b->data = data;
    b->cap = cap;
}

/* Append `len` bytes; ';' and line breaks would split a frame or a line, so
 * they become ',' and ' '. */
static void
buf_put_label(buf *b, const char *s, size_t len)
{
    buf_reserve(b, len);
    if (b->failed) {
        return;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        b->data[b->len++] = c == ';' ? ',' : (c == '\n' || c == '\r') ? ' ' : c;
    }
}

static void
buf_put(buf *b, const char *s, size_t len)
{
    buf_reserve(b, len);
    if (!b->failed) {
        memcpy(b->data + b->len, s, len);
        b->len += len;
    }
}

static void
put_frame(buf *b, const ps_stacks *stacks, uint32_t frame_id)
{
    const ps_frame *f = ps_stacks_frame_at(stacks, frame_id);
    const ps_str *name = ps_strtab_get(&stacks->names, f->name);
    const ps_str *file = ps_strtab_get(&stacks->files, f->file);
    char line[24];

    buf_put_label(b, name->ptr, name->len);
    if (f->flags & PS_FRAME_SYNTHETIC) {
        return;
    }
    buf_put(b, " (", 2);
    buf_put_label(b, file->ptr, file->len);
    int n = snprintf(line, sizeof(line), ":%u)", (unsigned)f->line);
    buf_put(b, line, (size_t)n);
}

typedef struct {
    uint64_t key;     /* thread << 32 | leaf node */
    uint64_t weight;  /* microseconds */
} keyed;

static int
compare_keyed(const void *a, const void *b)
{
    uint64_t x = ((const keyed *)a)->key, y = ((const keyed *)b)->key;
    return (x > y) - (x < y);
}

int
ps_collapsed_render(const ps_period *p, int thread, int weighted, char **out,
                    size_t *out_len)
{
    const ps_stacks *stacks = &p->stacks;
    keyed *keys = NULL;
    uint32_t *path = NULL;
    size_t n_keys = 0;
    buf b = {0};
    int rc = PS_ENOMEM;

    keys = malloc((p->samples.len ? p->samples.len : 1) * sizeof(*keys));
    path = malloc((p->max_depth + 2) * sizeof(*path));
    if (keys == NULL || path == NULL) {
        goto error;
    }
    for (size_t i = 0; i < p->samples.len; i++) {
        const ps_sample *s = ps_vec_at(&p->samples, i);
        if (thread < 0 || s->thread == (uint16_t)thread) {
            keys[n_keys].key = ((uint64_t)s->thread << 32) | s->node;
            keys[n_keys++].weight = s->weight_us;
        }
    }
    qsort(keys, n_keys, sizeof(*keys), compare_keyed);
    for (size_t i = 0; i < n_keys;) {
        size_t run = 1;
        uint64_t weight = keys[i].weight;
        while (i + run < n_keys && keys[i + run].key == keys[i].key) {
            weight += keys[i + run].weight;
            run++;
        }
        const ps_thread *t = ps_period_thread(p, (uint16_t)(keys[i].key >> 32));
        uint32_t node = (uint32_t)keys[i].key;
        size_t depth = 0;
        while (node != PS_NO_PARENT && depth < p->max_depth + 2) {
            const ps_node *n = ps_stacks_node(stacks, node);
            path[depth++] = n->frame;
            node = n->parent;
        }
        buf_put_label(&b, t->name, strlen(t->name));
        while (depth > 0) {
            buf_put(&b, ";", 1);
            put_frame(&b, stacks, path[--depth]);
        }
        char count[32];
        int len = snprintf(count, sizeof(count), " %llu\n",
                           (unsigned long long)(weighted ? weight : run));
        buf_put(&b, count, (size_t)len);
        i += run;
    }
    buf_reserve(&b, 0);
    if (b.failed) {
        goto error;
    }
    if (b.data == NULL) {
        b.data = malloc(1);
        if (b.data == NULL) {
            goto error;
        }
    }
    b.data[b.len] = '\0';
    *out = b.data;
    *out_len = b.len;
    b.data = NULL;
    rc = PS_OK;
error:
    free(b.data);
    free(keys);
    free(path);
    return rc;
}
