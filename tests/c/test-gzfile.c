/* ps_gzfile: gzip round trip through zlib's inflate, atomic replacement, the
 * file mode, and the failure paths (missing directory, a file where the
 * directory should be, a full disk simulated with RLIMIT_FSIZE): each leaves
 * no temporary file, the target untouched, and a retry succeeds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_error.h"
#include "ps_gzfile.h"
#include "ps_test.h"
#include "ps_testfs.h"

/* Every test runs twice: with O_TMPFILE, then with a named temporary file. */
static unsigned tmp_flags;

/* `n` bytes of incompressible data (xorshift), so the output is as large as
 * the input. */
static unsigned char *
noise(size_t n)
{
    unsigned char *data = malloc(n);
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = (unsigned char)x;
    }
    return data;
}

/* Write `data` in uneven pieces (1 byte up to larger than the buffers). */
static int
write_pieces(ps_gzfile *f, const unsigned char *data, size_t n)
{
    size_t piece = 1, done = 0;
    int rc = 0;
    while (done < n && rc == 0) {
        size_t k = piece < n - done ? piece : n - done;
        rc = ps_gzfile_write(f, data + done, k);
        done += k;
        piece = piece * 3 + 1;
        if (piece > 3 * PS_GZFILE_IN_BYTES) {
            piece = 1;
        }
    }
    return rc;
}

static void
test_round_trip(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/out.json.gz", dir);
    size_t n = 3 * PS_GZFILE_IN_BYTES + 12345;
    unsigned char *data = noise(n);

    for (int level = 0; level <= 9; level += 3) {
        ps_gzfile *f = NULL;
        CHECK(ps_gzfile_open(path, level, tmp_flags, &f, NULL, NULL) == PS_OK);
        CHECK(f != NULL);
        /* While writing, the temporary file is unnamed (O_TMPFILE) or
         * named and hidden. */
        int tmp, named = tmp_flags & PS_GZFILE_NAMED_TMP ? 1 : 0;
        CHECK(ps_test_dir_entries(dir, &tmp) == (level == 0 ? 0 : 1) + named);
        CHECK(tmp == named);
        CHECK(write_pieces(f, data, n) == PS_OK);
        CHECK(ps_gzfile_write(f, "", 0) == PS_OK);
        CHECK(ps_gzfile_commit(f) == PS_OK);
        CHECK(ps_gzfile_error(f, NULL, NULL) == PS_OK);
        size_t size = ps_gzfile_bytes_out(f);
        ps_gzfile_close(f);

        struct stat st;
        CHECK(stat(path, &st) == 0 && (size_t)st.st_size == size);
        mode_t mask = umask(0);
        umask(mask);
        CHECK((st.st_mode & 0777) == (0644 & ~mask));
        size_t len = 0;
        char *back = ps_test_gunzip(path, &len);
        CHECK(back != NULL && len == n && memcmp(back, data, n) == 0);
        free(back);
        CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    }
    free(data);
    ps_test_rmdir(dir);
}

static void
test_compresses_and_empty(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/empty.gz", dir);
    ps_gzfile *f = NULL;
    CHECK(ps_gzfile_open(path, 0, tmp_flags, &f, NULL, NULL) == PS_OK);
    CHECK(ps_gzfile_commit(f) == PS_OK);
    /* A second commit is a state error, not a second rename. */
    CHECK(ps_gzfile_commit(f) == PS_ESTATE);
    ps_gzfile_close(f);
    size_t len = 99;
    char *back = ps_test_gunzip(path, &len);
    CHECK(back != NULL && len == 0);
    free(back);

    /* Repetitive text shrinks a lot: zlib really runs. */
    snprintf(path, sizeof(path), "%s/text.gz", dir);
    CHECK(ps_gzfile_open(path, 9, tmp_flags, &f, NULL, NULL) == PS_OK);
    for (int i = 0; i < 100000; i++) {
        ps_gzfile_write(f, "[1,2,3],", 8);
    }
    CHECK(ps_gzfile_commit(f) == PS_OK);
    CHECK(ps_gzfile_bytes_out(f) < 800000 / 50);
    ps_gzfile_close(f);
    back = ps_test_gunzip(path, &len);
    CHECK(back != NULL && len == 800000 && memcmp(back + 799992, "[1,2,3],", 8) == 0);
    free(back);
    ps_test_rmdir(dir);
}

static void
test_bad_paths(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    ps_gzfile *f = (ps_gzfile *)1;
    int os_errno = 0;
    const char *step = NULL;

    snprintf(path, sizeof(path), "%s/missing/out.gz", dir);
    CHECK(ps_gzfile_open(path, 0, tmp_flags, &f, &os_errno, &step) == PS_EOS);
    CHECK(f == NULL && os_errno == ENOENT && strcmp(step, "open dir") == 0);

    /* A regular file where a directory should be: ENOTDIR, even as root. */
    snprintf(path, sizeof(path), "%s/plain", dir);
    FILE *fp = fopen(path, "w");
    fclose(fp);
    snprintf(path, sizeof(path), "%s/plain/out.gz", dir);
    CHECK(ps_gzfile_open(path, 0, tmp_flags, &f, &os_errno, &step) == PS_EOS);
    CHECK(os_errno == ENOTDIR);

    snprintf(path, sizeof(path), "%s/", dir);
    CHECK(ps_gzfile_open(path, 0, tmp_flags, &f, &os_errno, &step) == PS_EOS);
    CHECK(os_errno == EISDIR);

    /* The rename itself fails (a directory holds the target's name): the
     * temporary file, already named by then, is removed. */
    snprintf(path, sizeof(path), "%s/sub", dir);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/sub/inside", dir);
    fp = fopen(path, "w");
    fclose(fp);
    snprintf(path, sizeof(path), "%s/sub", dir);
    CHECK(ps_gzfile_open(path, 0, tmp_flags, &f, NULL, NULL) == PS_OK);
    CHECK(ps_gzfile_write(f, "data", 4) == PS_OK);
    CHECK(ps_gzfile_commit(f) == PS_EOS);
    CHECK(ps_gzfile_error(f, &os_errno, &step) == PS_EOS);
    CHECK(os_errno == EISDIR && strcmp(step, "rename") == 0);
    ps_gzfile_close(f);
    snprintf(path, sizeof(path), "%s/sub/inside", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/sub", dir);
    rmdir(path);

    CHECK(ps_gzfile_open("x.gz", 10, tmp_flags, &f, &os_errno, &step) == PS_EINVAL);
    CHECK(os_errno == 0 && strcmp(step, "level") == 0);

    int tmp;
    CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    ps_test_rmdir(dir);
}

static void
test_full_disk(void)
{
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/out.gz", dir);

    /* An older file stays as it was when writing its replacement fails. */
    FILE *fp = fopen(path, "w");
    fputs("old", fp);
    fclose(fp);

    size_t n = 8 * PS_GZFILE_IN_BYTES;
    unsigned char *data = noise(n);
    struct rlimit saved, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    small = saved;
    small.rlim_cur = 100 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);

    ps_gzfile *f = NULL;
    CHECK(ps_gzfile_open(path, 1, tmp_flags, &f, NULL, NULL) == PS_OK);
    int rc = write_pieces(f, data, n);
    CHECK(rc == PS_EOS);
    /* Sticky: later writes and the commit report the same failure. */
    CHECK(ps_gzfile_write(f, "x", 1) == PS_EOS);
    CHECK(ps_gzfile_commit(f) == PS_EOS);
    int os_errno = 0;
    const char *step = NULL;
    CHECK(ps_gzfile_error(f, &os_errno, &step) == PS_EOS);
    CHECK(os_errno == EFBIG && strcmp(step, "write") == 0);
    ps_gzfile_close(f);

    int tmp;
    CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    size_t len;
    fp = fopen(path, "r");
    char old[8] = {0};
    len = fread(old, 1, sizeof(old), fp);
    fclose(fp);
    CHECK(len == 3 && strcmp(old, "old") == 0);

    /* Room again: the retry succeeds. */
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    signal(SIGXFSZ, old_handler);
    CHECK(ps_gzfile_open(path, 1, tmp_flags, &f, NULL, NULL) == PS_OK);
    CHECK(write_pieces(f, data, n) == PS_OK);
    CHECK(ps_gzfile_commit(f) == PS_OK);
    ps_gzfile_close(f);
    char *back = ps_test_gunzip(path, &len);
    CHECK(back != NULL && len == n && memcmp(back, data, n) == 0);
    free(back);
    CHECK(ps_test_dir_entries(dir, &tmp) == 1 && tmp == 0);
    free(data);
    ps_test_rmdir(dir);
}

static void
test_abandoned(void)
{
    /* Closing without commit (the writer gave up) leaves nothing. */
    char dir[256], path[512];
    ps_test_mkdtemp(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/out.gz", dir);
    ps_gzfile *f = NULL;
    CHECK(ps_gzfile_open(path, 0, tmp_flags, &f, NULL, NULL) == PS_OK);
    CHECK(ps_gzfile_write(f, "partial", 7) == PS_OK);
    ps_gzfile_close(f);
    int tmp;
    CHECK(ps_test_dir_entries(dir, &tmp) == 0 && tmp == 0);
    ps_gzfile_close(NULL);
    ps_test_rmdir(dir);
}

/* The name of the one temporary file in `dir` (copied to `out`), or "". */
static void
tmp_entry(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    out[0] = '\0';
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp-") != NULL) {
            snprintf(out, cap, "%s", e->d_name);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

/* Target names up to NAME_MAX (255 bytes): the temporary name is cut to fit,
 * at a UTF-8 boundary, and the writer holds an flock on it (a cleanup tells
 * a live writer's file by it). */
static void
test_long_names(void)
{
    char dir[256], path[1024], name[256], tmp_name[256], tmp_path[1024];
    ps_test_mkdtemp(dir, sizeof(dir));
    /* 248 ASCII bytes; 255 bytes; 255 bytes of two-byte characters. */
    static const size_t lengths[] = {248, 255, 255};
    for (int k = 0; k < 3; k++) {
        size_t len = lengths[k];
        if (k < 2) {
            memset(name, 'p', len);
        }
        else {
            for (size_t i = 0; i + 1 < len; i += 2) {
                memcpy(name + i, "\xC3\xA9", 2);  /* U+00E9 */
            }
            name[len - 1] = 'p';
        }
        name[len] = '\0';
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        ps_gzfile *f = NULL;
        CHECK(ps_gzfile_open(path, 1, tmp_flags, &f, NULL, NULL) == PS_OK);
        if (f == NULL) {
            continue;
        }
        CHECK(ps_gzfile_write(f, "{}", 2) == PS_OK);
        if (tmp_flags & PS_GZFILE_NAMED_TMP) {
            tmp_entry(dir, tmp_name, sizeof(tmp_name));
            size_t tmp_len = strlen(tmp_name);
            CHECK(tmp_len > 12 && tmp_len <= 255 && tmp_len >= 252);
            /* The kept part of the name ends on a character boundary. */
            const char *infix = tmp_name + tmp_len - 11;
            CHECK(strncmp(infix, ".tmp-", 5) == 0);
            CHECK(strncmp(tmp_name + 1, name, (size_t)(infix - tmp_name - 1)) == 0);
            CHECK(((unsigned char)name[infix - tmp_name - 1] & 0xC0) != 0x80);
            snprintf(tmp_path, sizeof(tmp_path), "%s/%s", dir, tmp_name);
            int fd = open(tmp_path, O_RDONLY);
            CHECK(fd >= 0);
            CHECK(flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK);
            close(fd);
        }
        CHECK(ps_gzfile_commit(f) == PS_OK);
        ps_gzfile_close(f);
        size_t out_len = 0;
        char *back = ps_test_gunzip(path, &out_len);
        CHECK(back != NULL && out_len == 2 && memcmp(back, "{}", 2) == 0);
        free(back);
        int tmp;
        CHECK(ps_test_dir_entries(dir, &tmp) == k + 1 && tmp == 0);
    }
    ps_test_rmdir(dir);
}

int
main(void)
{
    for (int named = 0; named <= 1; named++) {
        tmp_flags = named ? PS_GZFILE_NAMED_TMP : 0;
        printf("# %s temporary file\n", named ? "named" : "O_TMPFILE");
        RUN(test_round_trip);
        RUN(test_compresses_and_empty);
        RUN(test_bad_paths);
        RUN(test_full_disk);
        RUN(test_abandoned);
        RUN(test_long_names);
    }
    return ps_test_failures != 0;
}
