/* A string table: interns byte strings and hands out dense ids in insertion
 * order, so a writer can emit the table as a JSON array whose index is the id. */
#ifndef PS_STRTAB_H
#define PS_STRTAB_H

#include <stddef.h>
#include <stdint.h>

#include "ps_vec.h"

typedef struct {
    const char *ptr;   /* Borrowed from the table's arena; NUL-terminated */
    uint32_t len;
    uint32_t hash;
} ps_str;

typedef struct {
    ps_vec strings;    /* ps_str by id */
    uint32_t *slots;   /* Owned: open-addressing table of id + 1, 0 = empty */
    size_t n_slots;    /* power of two */
    char *arena;       /* Owned: current arena block (linked through its head) */
    size_t arena_used;
    size_t arena_size;
    size_t heap_bytes;
} ps_strtab;

void ps_strtab_init(ps_strtab *t);
void ps_strtab_free(ps_strtab *t);

/* Intern `len` bytes at `s` (need not be NUL-terminated). On success stores the
 * id in *id and returns 0; returns PS_ENOMEM otherwise. */
int ps_strtab_intern(ps_strtab *t, const char *s, size_t len, uint32_t *id);

static inline uint32_t
ps_strtab_count(const ps_strtab *t)
{
    return (uint32_t)t->strings.len;
}

/* The string with id `id` (< count). Borrowed; lives as long as the table. */
static inline const ps_str *
ps_strtab_get(const ps_strtab *t, uint32_t id)
{
    return (const ps_str *)ps_vec_at(&t->strings, id);
}

size_t ps_strtab_heap_bytes(const ps_strtab *t);

#endif /* PS_STRTAB_H */
