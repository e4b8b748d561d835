/* A chunked vector of fixed-size elements. Growing it never moves existing
 * elements, so appending on the sampler's hot path costs at most one
 * chunk-sized malloc and never a large realloc-and-copy under the GIL. */
#ifndef PS_VEC_H
#define PS_VEC_H

#include <stddef.h>

typedef struct {
    size_t elem_size;   /* bytes per element */
    size_t per_chunk;   /* elements per chunk (a power of two) */
    unsigned shift;     /* log2(per_chunk) */
    size_t len;         /* elements in use */
    size_t n_chunks;    /* chunks allocated */
    size_t cap_chunks;  /* slots in `chunks` */
    char **chunks;      /* Owned: each chunk is per_chunk * elem_size bytes */
} ps_vec;

/* Initialise an empty vector; `chunk_bytes` is rounded so that a chunk holds
 * a power-of-two number of elements. Never allocates. */
void ps_vec_init(ps_vec *v, size_t elem_size, size_t chunk_bytes);

/* Release every chunk; the vector is empty and reusable afterwards. */
void ps_vec_free(ps_vec *v);

/* Append one zeroed element and return a pointer to it, or NULL when memory
 * is exhausted (the vector is unchanged then). */
void *ps_vec_push(ps_vec *v);

/* Keep the first `len` (<= v->len) elements; their memory stays allocated
 * for reuse. Never allocates. */
static inline void
ps_vec_truncate(ps_vec *v, size_t len)
{
    if (len < v->len) {
        v->len = len;
    }
}

/* Pointer to element `i` (< len). */
static inline void *
ps_vec_at(const ps_vec *v, size_t i)
{
    return v->chunks[i >> v->shift] + (i & (v->per_chunk - 1)) * v->elem_size;
}

/* Bytes of heap held by the vector (chunks and chunk table). */
size_t ps_vec_heap_bytes(const ps_vec *v);

#endif /* PS_VEC_H */
