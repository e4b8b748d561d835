/* Chunked vector: see ps_vec.h. */
#include "ps_vec.h"

#include <stdlib.h>
#include <string.h>

void
ps_vec_init(ps_vec *v, size_t elem_size, size_t chunk_bytes)
{
    size_t per_chunk = 1;
    unsigned shift = 0;

    while (per_chunk * 2 * elem_size <= chunk_bytes) {
        per_chunk *= 2;
        shift++;
    }
    memset(v, 0, sizeof(*v));
    v->elem_size = elem_size;
    v->per_chunk = per_chunk;
    v->shift = shift;
}

void
ps_vec_free(ps_vec *v)
{
    for (size_t i = 0; i < v->n_chunks; i++) {
        free(v->chunks[i]);
    }
    free(v->chunks);
    v->chunks = NULL;
    v->len = v->n_chunks = v->cap_chunks = 0;
}

void *
ps_vec_push(ps_vec *v)
{
    void *slot;

    if (v->len == v->n_chunks * v->per_chunk) {
        if (v->n_chunks == v->cap_chunks) {
            size_t cap = v->cap_chunks ? v->cap_chunks * 2 : 8;
            char **chunks = realloc(v->chunks, cap * sizeof(*chunks));
            if (chunks == NULL) {
                return NULL;
            }
            v->chunks = chunks;
            v->cap_chunks = cap;
        }
        char *chunk = malloc(v->per_chunk * v->elem_size);
        if (chunk == NULL) {
            return NULL;
        }
        v->chunks[v->n_chunks++] = chunk;
    }
    slot = ps_vec_at(v, v->len);
    memset(slot, 0, v->elem_size);
    v->len++;
    return slot;
}

size_t
ps_vec_heap_bytes(const ps_vec *v)
{
    return v->n_chunks * v->per_chunk * v->elem_size +
           v->cap_chunks * sizeof(char *);
}
