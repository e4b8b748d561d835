/* Frame interning and the prefix tree of stacks: see ps_stacks.h. Both use
 * open addressing with linear probing at a load factor under 1/2. */
#include "ps_stacks.h"

#include <stdlib.h>
#include <string.h>

#include "ps_error.h"

#define TRUNCATED_NAME "[truncated]"
#define FULL_NAME "[stack table full]"

static inline uint32_t
mix3(uint32_t a, uint32_t b, uint32_t c)
{
    uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)b * 0xC2B2AE3D27D4EB4Full + (h >> 29);
    h ^= (uint64_t)c * 0x165667B19E3779F9ull + (h >> 31);
    return (uint32_t)(h ^ (h >> 32));
}

static inline uint32_t
frame_hash(const ps_frame *f)
{
    return mix3(f->name, f->file, f->line);
}

static inline uint32_t
node_hash(uint32_t parent, uint32_t frame, uint32_t line)
{
    return mix3(parent, frame, line ^ 0x5bd1e995u);
}

/* Rebuild a slot table of `n` slots for `count` entries hashed by `hash_of`. */
static uint32_t *
rehash(const ps_vec *entries, size_t n, uint32_t (*hash_of)(const void *))
{
    uint32_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL) {
        return NULL;
    }
    for (size_t id = 0; id < entries->len; id++) {
        size_t i = hash_of(ps_vec_at(entries, id)) & (n - 1);
        while (slots[i] != 0) {
            i = (i + 1) & (n - 1);
        }
        slots[i] = (uint32_t)id + 1;
    }
    return slots;
}

static uint32_t
frame_hash_of(const void *entry)
{
    return frame_hash(entry);
}

static uint32_t
node_hash_of(const void *entry)
{
    const ps_node *node = entry;
    return node_hash(node->parent, node->frame, node->line);
}

int
ps_stacks_init(ps_stacks *s, uint32_t max_nodes)
{
    uint32_t full_frame, root[1];

    memset(s, 0, sizeof(*s));
    ps_strtab_init(&s->names);
    ps_strtab_init(&s->files);
    ps_vec_init(&s->frames, sizeof(ps_frame), 32768);
    ps_vec_init(&s->nodes, sizeof(ps_node), 65536);
    s->max_nodes = max_nodes < 16 ? 16 : max_nodes;
    if (ps_stacks_frame(s, TRUNCATED_NAME, sizeof(TRUNCATED_NAME) - 1, "", 0,
                        0, PS_FRAME_SYNTHETIC, &s->truncated_frame) < 0 ||
        ps_stacks_frame(s, FULL_NAME, sizeof(FULL_NAME) - 1, "", 0, 0,
                        PS_FRAME_SYNTHETIC, &full_frame) < 0) {
        ps_stacks_free(s);
        return PS_ENOMEM;
    }
    root[0] = full_frame;
    /* The overflow node is inserted while the table is empty: it cannot fail
     * for lack of room, only for lack of memory. */
    if (ps_stacks_insert(s, root, 1, &s->overflow_node) != PS_OK) {
        ps_stacks_free(s);
        return PS_ENOMEM;
    }
    return PS_OK;
}

void
ps_stacks_free(ps_stacks *s)
{
    ps_strtab_free(&s->names);
    ps_strtab_free(&s->files);
    ps_vec_free(&s->frames);
    ps_vec_free(&s->nodes);
    free(s->frame_slots);
    free(s->node_slots);
    s->frame_slots = s->node_slots = NULL;
    s->n_frame_slots = s->n_node_slots = 0;
}

int
ps_stacks_frame(ps_stacks *s, const char *name, size_t name_len,
                const char *file, size_t file_len, uint32_t line,
                uint32_t flags, uint32_t *frame_id)
{
    ps_frame key;
    int rc;

    if ((rc = ps_strtab_intern(&s->names, name, name_len, &key.name)) < 0 ||
        (rc = ps_strtab_intern(&s->files, file, file_len, &key.file)) < 0) {
        return rc;
    }
    key.line = line;
    key.flags = flags;
    if ((s->frames.len + 1) * 2 > s->n_frame_slots) {
        size_t n = s->n_frame_slots ? s->n_frame_slots * 2 : 1024;
        uint32_t *slots = rehash(&s->frames, n, frame_hash_of);
        if (slots == NULL) {
            return PS_ENOMEM;
        }
        free(s->frame_slots);
        s->frame_slots = slots;
        s->n_frame_slots = n;
    }
    size_t mask = s->n_frame_slots - 1;
    size_t i = frame_hash(&key) & mask;
    while (s->frame_slots[i] != 0) {
        ps_frame *f = ps_vec_at(&s->frames, s->frame_slots[i] - 1);
        if (f->name == key.name && f->file == key.file && f->line == key.line) {
            f->flags |= flags;
            *frame_id = s->frame_slots[i] - 1;
            return PS_OK;
        }
        i = (i + 1) & mask;
    }
    ps_frame *f = ps_vec_push(&s->frames);
    if (f == NULL) {
        return PS_ENOMEM;
    }
    *f = key;
    *frame_id = (uint32_t)(s->frames.len - 1);
    s->frame_slots[i] = *frame_id + 1;
    return PS_OK;
}

/* Find the child of `parent` for (`frame`, `line`), or create it when
 * `may_create`. Returns the node id, or UINT32_MAX when absent (and not
 * created) or when memory ran out (then *oom is set). */
static uint32_t
child(ps_stacks *s, uint32_t parent, uint32_t frame, uint32_t line,
      int may_create, int *oom)
{
    if (may_create && (s->nodes.len + 1) * 2 > s->n_node_slots) {
        size_t n = s->n_node_slots ? s->n_node_slots * 2 : 4096;
        uint32_t *slots = rehash(&s->nodes, n, node_hash_of);
        if (slots == NULL) {
            *oom = 1;
            return UINT32_MAX;
        }
        free(s->node_slots);
        s->node_slots = slots;
        s->n_node_slots = n;
    }
    if (s->n_node_slots == 0) {
        return UINT32_MAX;
    }
    size_t mask = s->n_node_slots - 1;
    size_t i = node_hash(parent, frame, line) & mask;
    while (s->node_slots[i] != 0) {
        const ps_node *node = ps_vec_at(&s->nodes, s->node_slots[i] - 1);
        if (node->parent == parent && node->frame == frame && node->line == line) {
            return s->node_slots[i] - 1;
        }
        i = (i + 1) & mask;
    }
    if (!may_create) {
        return UINT32_MAX;
    }
    ps_node *node = ps_vec_push(&s->nodes);
    if (node == NULL) {
        *oom = 1;
        return UINT32_MAX;
    }
    node->parent = parent;
    node->frame = frame;
    node->line = line;
    s->node_slots[i] = (uint32_t)s->nodes.len;
    return (uint32_t)(s->nodes.len - 1);
}

int
ps_stacks_child(ps_stacks *s, uint32_t parent, uint32_t frame_id,
                uint32_t line, uint32_t *node_id)
{
    int oom = 0;
    /* One node beyond the cap is allowed for the overflow node itself. */
    int may_create = s->nodes.len < (size_t)s->max_nodes + 1;
    uint32_t node = child(s, parent, frame_id, line, may_create, &oom);

    if (node == UINT32_MAX) {
        if (oom) {
            return PS_ENOMEM;
        }
        *node_id = s->overflow_node;
        return PS_EFULL;
    }
    *node_id = node;
    return PS_OK;
}

int
ps_stacks_insert(ps_stacks *s, const uint32_t *frames, size_t n,
                 uint32_t *node_id)
{
    return ps_stacks_insert_lines(s, frames, NULL, n, node_id);
}

int
ps_stacks_insert_lines(ps_stacks *s, const uint32_t *frames,
                       const uint32_t *lines, size_t n, uint32_t *node_id)
{
    uint32_t node = PS_NO_PARENT;

    if (n == 0) {
        return PS_EINVAL;
    }
    for (size_t k = 0; k < n; k++) {
        int rc = ps_stacks_child(s, node, frames[k], lines ? lines[k] : 0, &node);
        if (rc < 0) {
            *node_id = node;
            return rc;
        }
    }
    *node_id = node;
    return PS_OK;
}

int
ps_stacks_function_nodes(const ps_stacks *s, uint32_t *out)
{
    uint32_t n = ps_stacks_node_count(s);
    size_t n_slots = 16;
    uint32_t *slots;

    while (n_slots < (size_t)n * 2) {
        n_slots *= 2;
    }
    slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL) {
        return PS_ENOMEM;
    }
    size_t mask = n_slots - 1;
    for (uint32_t id = 0; id < n; id++) {
        const ps_node *node = ps_stacks_node(s, id);
        uint32_t parent = node->parent == PS_NO_PARENT ? PS_NO_PARENT : out[node->parent];
        size_t i = node_hash(parent, node->frame, 0) & mask;
        out[id] = id;
        while (slots[i] != 0) {
            uint32_t other = slots[i] - 1;
            const ps_node *o = ps_stacks_node(s, other);
            uint32_t other_parent = o->parent == PS_NO_PARENT ? PS_NO_PARENT : out[o->parent];
            if (o->frame == node->frame && other_parent == parent) {
                out[id] = other;
                break;
            }
            i = (i + 1) & mask;
        }
        if (out[id] == id) {
            slots[i] = id + 1;
        }
    }
    free(slots);
    return PS_OK;
}

size_t
ps_stacks_heap_bytes(const ps_stacks *s)
{
    return ps_strtab_heap_bytes(&s->names) + ps_strtab_heap_bytes(&s->files) +
           ps_vec_heap_bytes(&s->frames) + ps_vec_heap_bytes(&s->nodes) +
           (s->n_frame_slots + s->n_node_slots) * sizeof(uint32_t);
}
