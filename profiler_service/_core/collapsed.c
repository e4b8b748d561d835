/* Collapsed stacks from a period: see ps_collapsed.h. Samples are keyed by
 * (thread, leaf node; by function, the first node of its path of frames),
 * sorted, counted in runs, and each run's path is rendered root first. */
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

/* Frame "name (file:line)": the node's line, or with line 0 (by function,
 * or unknown) the function's first. */
static void
put_frame(buf *b, const ps_stacks *stacks, uint32_t frame_id, uint32_t at_line)
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
    int n = snprintf(line, sizeof(line), ":%u)", (unsigned)(at_line ? at_line : f->line));
    buf_put(b, line, (size_t)n);
}

typedef struct {
    uint64_t key;     /* thread << 32 | leaf node */
    uint64_t weight;  /* microseconds */
    uint64_t count;   /* sampling intervals (ps_period_count_sample) */
} keyed;

static int
compare_keyed(const void *a, const void *b)
{
    uint64_t x = ((const keyed *)a)->key, y = ((const keyed *)b)->key;
    return (x > y) - (x < y);
}

int
ps_collapsed_render(const ps_period *p, int thread, int weighted, int by_line,
                    char **out, size_t *out_len)
{
    const ps_stacks *stacks = &p->stacks;
    keyed *keys = NULL;
    uint32_t *path = NULL;
    uint32_t *lines = NULL;
    uint32_t *function_node = NULL;  /* by function: node -> its path's first node */
    uint64_t *carry = NULL;  /* per thread, over all its samples in order */
    size_t n_keys = 0;
    buf b = {0};
    int rc = PS_ENOMEM;

    keys = malloc((p->samples.len ? p->samples.len : 1) * sizeof(*keys));
    path = malloc((p->max_depth + 2) * sizeof(*path));
    lines = malloc((p->max_depth + 2) * sizeof(*lines));
    carry = calloc(p->threads.len ? p->threads.len : 1, sizeof(*carry));
    if (keys == NULL || path == NULL || lines == NULL || carry == NULL) {
        goto error;
    }
    if (!by_line) {
        uint32_t n_nodes = ps_stacks_node_count(stacks);
        function_node = malloc((n_nodes ? n_nodes : 1) * sizeof(*function_node));
        if (function_node == NULL || ps_stacks_function_nodes(stacks, function_node) < 0) {
            goto error;
        }
    }
    for (size_t i = 0; i < p->samples.len; i++) {
        const ps_sample *s = ps_vec_at(&p->samples, i);
        uint64_t count = ps_period_count_sample(&carry[s->thread], s->weight_us,
                                                p->frequency_mhz);
        if (thread < 0 || s->thread == (uint16_t)thread) {
            uint32_t node = function_node ? function_node[s->node] : s->node;
            keys[n_keys].key = ((uint64_t)s->thread << 32) | node;
            keys[n_keys].count = count;
            keys[n_keys++].weight = s->weight_us;
        }
    }
    qsort(keys, n_keys, sizeof(*keys), compare_keyed);
    for (size_t i = 0; i < n_keys;) {
        size_t run = 1;
        uint64_t weight = keys[i].weight, count = keys[i].count;
        while (i + run < n_keys && keys[i + run].key == keys[i].key) {
            weight += keys[i + run].weight;
            count += keys[i + run].count;
            run++;
        }
        uint64_t value = weighted ? weight : count;
        if (value == 0) {
            i += run;  /* less than an interval: carried into a later sample */
            continue;
        }
        const ps_thread *t = ps_period_thread(p, (uint16_t)(keys[i].key >> 32));
        uint32_t node = (uint32_t)keys[i].key;
        size_t depth = 0;
        while (node != PS_NO_PARENT && depth < p->max_depth + 2) {
            const ps_node *n = ps_stacks_node(stacks, node);
            path[depth] = n->frame;
            lines[depth++] = by_line ? n->line : 0;
            node = n->parent;
        }
        buf_put_label(&b, t->name, strlen(t->name));
        while (depth > 0) {
            buf_put(&b, ";", 1);
            depth--;
            put_frame(&b, stacks, path[depth], lines[depth]);
        }
        char number[32];
        int len = snprintf(number, sizeof(number), " %llu\n",
                           (unsigned long long)value);
        buf_put(&b, number, (size_t)len);
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
    free(lines);
    free(function_node);
    free(carry);
    return rc;
}
