/* ps_stacks: frame interning, prefix-tree folding, the node cap. */
#include <stdint.h>
#include <string.h>

#include "ps_error.h"
#include "ps_stacks.h"
#include "ps_test.h"

static uint32_t
frame(ps_stacks *s, const char *name, const char *file, uint32_t line)
{
    uint32_t id = UINT32_MAX;
    CHECK(ps_stacks_frame(s, name, strlen(name), file, strlen(file), line, 0,
                          &id) == PS_OK);
    return id;
}

static void
test_frames_are_interned(void)
{
    ps_stacks s;
    CHECK(ps_stacks_init(&s, 1000) == PS_OK);
    uint32_t a = frame(&s, "f", "a.py", 1);
    uint32_t b = frame(&s, "f", "a.py", 2);
    uint32_t c = frame(&s, "f", "b.py", 1);
    CHECK(a != b && b != c && a != c);
    CHECK(frame(&s, "f", "a.py", 1) == a);
    /* Two synthetic frames exist from init. */
    CHECK(ps_stacks_frame_count(&s) == 5);
    const ps_frame *f = ps_stacks_frame_at(&s, c);
    CHECK(strcmp(ps_strtab_get(&s.files, f->file)->ptr, "b.py") == 0);
    CHECK(f->line == 1);
    ps_stacks_free(&s);
}

static void
test_prefix_tree(void)
{
    ps_stacks s;
    CHECK(ps_stacks_init(&s, 1000) == PS_OK);
    uint32_t main_ = frame(&s, "main", "m.py", 1);
    uint32_t work = frame(&s, "work", "m.py", 5);
    uint32_t leaf = frame(&s, "leaf", "m.py", 9);
    uint32_t path1[] = {main_, work, leaf};
    uint32_t path2[] = {main_, work};
    uint32_t path3[] = {main_, leaf};
    uint32_t n1, n2, n3, again;
    uint32_t before = ps_stacks_node_count(&s);
    CHECK(ps_stacks_insert(&s, path1, 3, &n1) == PS_OK);
    CHECK(ps_stacks_node_count(&s) == before + 3);
    CHECK(ps_stacks_insert(&s, path2, 2, &n2) == PS_OK);
    CHECK(ps_stacks_node_count(&s) == before + 3); /* a prefix: no new node */
    CHECK(ps_stacks_node(&s, n1)->parent == n2);
    CHECK(ps_stacks_insert(&s, path3, 2, &n3) == PS_OK);
    CHECK(ps_stacks_node_count(&s) == before + 4);
    CHECK(ps_stacks_insert(&s, path1, 3, &again) == PS_OK && again == n1);
    /* Every parent id is smaller than its child's. */
    for (uint32_t i = 0; i < ps_stacks_node_count(&s); i++) {
        uint32_t parent = ps_stacks_node(&s, i)->parent;
        CHECK(parent == PS_NO_PARENT || parent < i);
    }
    CHECK(ps_stacks_insert(&s, path1, 0, &again) == PS_EINVAL);
    ps_stacks_free(&s);
}

static void
test_node_cap_overflows_into_truncation(void)
{
    ps_stacks s;
    CHECK(ps_stacks_init(&s, 16) == PS_OK);
    int full = 0;
    for (uint32_t i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%u", i);
        uint32_t path[] = {frame(&s, name, "x.py", i)};
        uint32_t node;
        int rc = ps_stacks_insert(&s, path, 1, &node);
        if (rc == PS_EFULL) {
            full++;
            CHECK(node == s.overflow_node);
        }
        else {
            CHECK(rc == PS_OK);
        }
    }
    CHECK(full > 0);
    CHECK(ps_stacks_node_count(&s) <= 17);
    const ps_frame *f =
        ps_stacks_frame_at(&s, ps_stacks_node(&s, s.overflow_node)->frame);
    CHECK(strcmp(ps_strtab_get(&s.names, f->name)->ptr, "[stack table full]") == 0);
    CHECK(f->flags & PS_FRAME_SYNTHETIC);
    ps_stacks_free(&s);
}

static void
test_many_nodes_rehash(void)
{
    ps_stacks s;
    CHECK(ps_stacks_init(&s, 1u << 20) == PS_OK);
    uint32_t root = frame(&s, "root", "r.py", 1);
    uint32_t first = 0;
    for (uint32_t i = 0; i < 50000; i++) {
        uint32_t path[] = {root, frame(&s, "f", "many.py", i)};
        uint32_t node;
        CHECK(ps_stacks_insert(&s, path, 2, &node) == PS_OK);
        if (i == 0) {
            first = node;
        }
    }
    uint32_t path[] = {root, frame(&s, "f", "many.py", 0)};
    uint32_t node;
    CHECK(ps_stacks_insert(&s, path, 2, &node) == PS_OK && node == first);
    CHECK(ps_stacks_heap_bytes(&s) > 50000 * sizeof(ps_node));
    ps_stacks_free(&s);
}

int
main(void)
{
    RUN(test_frames_are_interned);
    RUN(test_prefix_tree);
    RUN(test_node_cap_overflows_into_truncation);
    RUN(test_many_nodes_rehash);
    return ps_test_failures != 0;
}
