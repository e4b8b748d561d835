/* String interning with dense ids: see ps_strtab.h. Strings live in arena
 * blocks that are never moved, so a ps_str pointer stays valid. */
#include "ps_strtab.h"

#include <stdlib.h>
#include <string.h>

#include "ps_error.h"

#define ARENA_BLOCK 65536

/* Each arena block starts with a pointer to the previous block. */
typedef struct arena_head {
    struct arena_head *prev;
} arena_head;

static uint32_t
hash_bytes(const char *s, size_t len)
{
    /* FNV-1a: short keys, no adversary (they are code object names). */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

void
ps_strtab_init(ps_strtab *t)
{
    memset(t, 0, sizeof(*t));
    ps_vec_init(&t->strings, sizeof(ps_str), 16384);
}

void
ps_strtab_free(ps_strtab *t)
{
    arena_head *block = (arena_head *)t->arena;
    while (block != NULL) {
        arena_head *prev = block->prev;
        free(block);
        block = prev;
    }
    free(t->slots);
    ps_vec_free(&t->strings);
    memset(t, 0, sizeof(*t));
    ps_vec_init(&t->strings, sizeof(ps_str), 16384);
}

static char *
arena_copy(ps_strtab *t, const char *s, size_t len)
{
    size_t need = len + 1;
    if (t->arena == NULL || t->arena_used + need > t->arena_size) {
        size_t size = sizeof(arena_head) + need;
        if (size < ARENA_BLOCK) {
            size = ARENA_BLOCK;
        }
        arena_head *block = malloc(size);
        if (block == NULL) {
            return NULL;
        }
        block->prev = (arena_head *)t->arena;
        t->arena = (char *)block;
        t->arena_used = sizeof(arena_head);
        t->arena_size = size;
        t->heap_bytes += size;
    }
    char *dst = t->arena + t->arena_used;
    memcpy(dst, s, len);
    dst[len] = '\0';
    t->arena_used += need;
    return dst;
}

static int
grow_slots(ps_strtab *t)
{
    size_t n = t->n_slots ? t->n_slots * 2 : 1024;
    uint32_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL) {
        return PS_ENOMEM;
    }
    for (size_t id = 0; id < t->strings.len; id++) {
        const ps_str *str = ps_vec_at(&t->strings, id);
        size_t i = str->hash & (n - 1);
        while (slots[i] != 0) {
            i = (i + 1) & (n - 1);
        }
        slots[i] = (uint32_t)id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
    return PS_OK;
}

int
ps_strtab_intern(ps_strtab *t, const char *s, size_t len, uint32_t *id)
{
    uint32_t hash = hash_bytes(s, len);

    if (len > UINT32_MAX - 1) {
        return PS_EINVAL;
    }
    /* Keep the load factor under 1/2. */
    if ((t->strings.len + 1) * 2 > t->n_slots && grow_slots(t) < 0) {
        return PS_ENOMEM;
    }
    size_t mask = t->n_slots - 1;
    size_t i = hash & mask;
    while (t->slots[i] != 0) {
        const ps_str *str = ps_vec_at(&t->strings, t->slots[i] - 1);
        if (str->hash == hash && str->len == len &&
            memcmp(str->ptr, s, len) == 0) {
            *id = t->slots[i] - 1;
            return PS_OK;
        }
        i = (i + 1) & mask;
    }
    char *copy = arena_copy(t, s, len);
    if (copy == NULL) {
        return PS_ENOMEM;
    }
    ps_str *str = ps_vec_push(&t->strings);
    if (str == NULL) {
        return PS_ENOMEM;  /* the arena bytes stay unused until free */
    }
    str->ptr = copy;
    str->len = (uint32_t)len;
    str->hash = hash;
    *id = (uint32_t)(t->strings.len - 1);
    t->slots[i] = *id + 1;
    return PS_OK;
}

size_t
ps_strtab_heap_bytes(const ps_strtab *t)
{
    return t->heap_bytes + t->n_slots * sizeof(uint32_t) +
           ps_vec_heap_bytes(&t->strings);
}
