/* Frames and the prefix tree of stacks. A frame is a function (qualified name,
 * file, first line); a stack is a node of the tree, identified by the path of
 * (frame, line) pairs from a thread's root to its leaf: the line a frame was
 * on (executing at the leaf, calling elsewhere), 0 if unknown. Node ids are
 * dense and every node's parent id is smaller than its own, so a reader
 * rebuilds every path in one forward pass. */
#ifndef PS_STACKS_H
#define PS_STACKS_H

#include <stddef.h>
#include <stdint.h>

#include "ps_strtab.h"
#include "ps_vec.h"

#define PS_NO_PARENT UINT32_MAX

enum {
    PS_FRAME_IDLE = 1u << 0,       /* a waiting leaf: samples ending here are idle */
    PS_FRAME_SYNTHETIC = 1u << 1   /* made by the profiler ("[truncated]", ...) */
};

typedef struct {
    uint32_t name;    /* id in ps_stacks.names */
    uint32_t file;    /* id in ps_stacks.files ("" for synthetic frames) */
    uint32_t line;    /* first line of the function, 0 if unknown */
    uint32_t flags;   /* PS_FRAME_* */
} ps_frame;

typedef struct {
    uint32_t parent;  /* node id, or PS_NO_PARENT for a root-level frame */
    uint32_t frame;   /* frame id */
    uint32_t line;    /* the line the frame was on, 0 if unknown */
} ps_node;

typedef struct {
    ps_strtab names;       /* qualified names */
    ps_strtab files;       /* file names */
    ps_vec frames;         /* ps_frame by frame id */
    uint32_t *frame_slots; /* Owned: hash of (name, file, line) -> frame id + 1 */
    size_t n_frame_slots;
    ps_vec nodes;          /* ps_node by node id */
    uint32_t *node_slots;  /* Owned: hash of (parent, frame, line) -> node id + 1 */
    size_t n_node_slots;
    uint32_t max_nodes;    /* cap on distinct nodes, overflow frames excluded */
    uint32_t truncated_frame;  /* frame id of "[truncated]": root of stacks cut at max depth */
    uint32_t overflow_node;    /* node id of the root-level "[stack table full]" */
} ps_stacks;

/* Initialise with a cap on distinct stack nodes (>= 16). Creates the
 * synthetic frames "[truncated]" and "[stack table full]", and the latter's
 * root-level node, so a full table always has somewhere to put a sample.
 * Returns 0 or PS_ENOMEM. */
int ps_stacks_init(ps_stacks *s, uint32_t max_nodes);
void ps_stacks_free(ps_stacks *s);

/* Intern the frame (name, file, line) and return its id in *frame_id.
 * `flags` is OR-ed into the frame's flags. Returns 0 or PS_ENOMEM. */
int ps_stacks_frame(ps_stacks *s, const char *name, size_t name_len,
                    const char *file, size_t file_len, uint32_t line,
                    uint32_t flags, uint32_t *frame_id);

/* Fold one stack, given root first as `n` frame ids and their lines (NULL:
 * all unknown), into the tree and store its leaf node in *node_id. Returns
 * 0; PS_EFULL when the node cap was reached (then *node_id is the overflow
 * node "[stack table full]" and the caller counts a truncation); PS_ENOMEM
 * when memory ran out (nothing is stored). n == 0 is PS_EINVAL. */
int ps_stacks_insert_lines(ps_stacks *s, const uint32_t *frames,
                           const uint32_t *lines, size_t n, uint32_t *node_id);

/* ps_stacks_insert_lines with every line unknown. */
int ps_stacks_insert(ps_stacks *s, const uint32_t *frames, size_t n,
                     uint32_t *node_id);

/* The child of node `parent` (PS_NO_PARENT for root level) for `frame_id`
 * on `line`, created when missing, in *node_id. Same returns as
 * ps_stacks_insert. */
int ps_stacks_child(ps_stacks *s, uint32_t parent, uint32_t frame_id,
                    uint32_t line, uint32_t *node_id);

/* For every node, the first node on the same path of frames whatever the
 * lines (the function-level tree: the leaf node of a stack folded without
 * lines), into `out` (ps_stacks_node_count entries; out[i] <= i). Returns 0
 * or PS_ENOMEM. */
int ps_stacks_function_nodes(const ps_stacks *s, uint32_t *out);

static inline uint32_t
ps_stacks_node_count(const ps_stacks *s)
{
    return (uint32_t)s->nodes.len;
}

static inline const ps_node *
ps_stacks_node(const ps_stacks *s, uint32_t id)
{
    return (const ps_node *)ps_vec_at(&s->nodes, id);
}

static inline uint32_t
ps_stacks_frame_count(const ps_stacks *s)
{
    return (uint32_t)s->frames.len;
}

static inline const ps_frame *
ps_stacks_frame_at(const ps_stacks *s, uint32_t id)
{
    return (const ps_frame *)ps_vec_at(&s->frames, id);
}

size_t ps_stacks_heap_bytes(const ps_stacks *s);

#endif /* PS_STACKS_H */
