/* File helpers for the writer's C tests: read and gunzip a whole file with
 * zlib (an independent reader of what ps_gzfile wrote), count the temporary
 * files left in a directory, make and remove scratch directories. */
#ifndef PS_TESTFS_H
#define PS_TESTFS_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* The file's decompressed bytes, NUL-terminated (new malloc'd buffer), with
 * their length in *len; NULL if the file is missing or not one complete
 * gzip stream. */
static char *
ps_test_gunzip(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return NULL;
    }
    size_t in_cap = 1 << 16, in_len = 0, out_cap = 1 << 16;
    unsigned char *in = malloc(in_cap);
    size_t n;
    while ((n = fread(in + in_len, 1, in_cap - in_len, fp)) > 0) {
        in_len += n;
        if (in_len == in_cap) {
            in = realloc(in, in_cap *= 2);
        }
    }
    fclose(fp);
    char *out = malloc(out_cap);
    z_stream zs = {0};
    inflateInit2(&zs, 15 + 16);
    zs.next_in = in;
    zs.avail_in = (uInt)in_len;
    int rc;
    do {
        if (zs.total_out + 1 >= out_cap) {
            out = realloc(out, out_cap *= 2);
        }
        zs.next_out = (unsigned char *)out + zs.total_out;
        zs.avail_out = (uInt)(out_cap - zs.total_out - 1);
        rc = inflate(&zs, Z_NO_FLUSH);
    } while (rc == Z_OK);
    int complete = rc == Z_STREAM_END && zs.avail_in == 0;
    *len = zs.total_out;
    inflateEnd(&zs);
    free(in);
    if (!complete) {
        free(out);
        return NULL;
    }
    out[*len] = '\0';
    return out;
}

/* Entries of `dir` other than "." and "..", and how many of them look like
 * a writer's temporary file (".<name>.tmp-XXXXXX") in *tmp. */
static int
ps_test_dir_entries(const char *dir, int *tmp)
{
    DIR *d = opendir(dir);
    int n = 0;
    *tmp = 0;
    if (d == NULL) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        n++;
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp-") != NULL) {
            (*tmp)++;
        }
    }
    closedir(d);
    return n;
}

/* A new empty directory under $TMPDIR (or /tmp), its path in `out`. */
static void
ps_test_mkdtemp(char *out, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, cap, "%s/ps-test-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(out) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

/* Remove the files of a flat directory, then the directory. */
static void
ps_test_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

#endif /* PS_TESTFS_H */
