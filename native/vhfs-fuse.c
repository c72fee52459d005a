/*
 * vhfs-fuse: fuse-native's binding compiled together with vhfs's native read path.
 *
 * Why: fuse-native hands every FUSE request to the one JavaScript thread and waits for its answer (about
 * 45 us per request here, and one request at a time however many libfuse threads there are). For an input
 * that is already resolved, most requests need no JavaScript at all: `getattr` and `readdir` are lookups in
 * the input's TreeIndex (flat typed arrays), and `read` of a package member on a local disk is a `pread` and
 * a CRC-32. This file answers those requests on libfuse's own threads, in parallel, and hands everything
 * else (unresolved inputs, remote sources, a failed check, any doubt) to fuse-native's JavaScript path
 * unchanged. So the JavaScript handlers stay the definition of what the mount does, and this is a cache of
 * their answers for the common case; a request it is unsure about costs one extra lookup, never a wrong
 * answer.
 *
 * How it is wired without editing fuse-native: fuse-native.c is compiled as part of this file, with
 * `fuse_new` renamed so that the operations table fuse-native builds passes through `vhfs_fuse_new`, which
 * puts the native handlers in front of fuse-native's getattr/readdir/read. The module's init runs
 * fuse-native's init, then adds the `vhfs_native_*` functions. The result is installed as fuse-native's
 * `build/Release/fuse.node`, which fuse-native's loader prefers to its prebuilt binary; where it was not
 * built, fuse-native runs as shipped and vhfs reads through JavaScript only (src/fuse/native-reads.ts).
 *
 * Integrity is the JavaScript path's (src/cache/block-cache.ts): bytes are served only once checked
 * against the member's CRC-32 (a zip package) or the source's chunk table (CRC-32 per 64 KiB chunk), and a
 * source with neither and no other check (a plain local file) is served as the JavaScript path serves it,
 * unchecked. A source whose only check is a whole-object SHA-256 is left to JavaScript. A mismatch is not
 * answered here: JavaScript reads again, finds it, logs it and answers EIO.
 *
 * Lifetime: a mount's record is found by fuse-native's per-mount thread struct (libfuse's private_data).
 * The typed arrays of an index stay referenced (napi_ref) until the mount is detached; detaching waits
 * until no libfuse thread is inside a native handler of that mount (an `active` count checked against a
 * `closing` flag, both sequentially consistent), then frees. Mount records themselves are never freed (a
 * few hundred bytes per mount) so a thread that found one just before it closed never touches freed memory.
 */
#include <node_api.h>
#include <napi-macros.h>
#undef NAPI_INIT
#define NAPI_INIT() static void fuse_native_napi_init(napi_env env, napi_value exports)
#define fuse_new vhfs_fuse_new
#include "fuse-native/fuse-native.c"
#undef fuse_new

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

struct fuse *fuse_new(struct fuse_chan *ch, struct fuse_args *args, const struct fuse_operations *op, size_t op_size, void *user_data);

/* zlib's CRC-32, exported by the node binary itself (the same function node:zlib's crc32 calls). */
extern unsigned long crc32(unsigned long crc, const unsigned char *buf, unsigned int len);

/* "Not answered here": no byte count (>= 0) and no -errno can be this. */
#define VHFS_MISS INT_MIN
#define NOT_FOUND INT64_MIN
/* The JavaScript path checks a member whole up to this size (block-cache.ts MEMBER_CHECK_MAX). */
#define MEMBER_CHECK_MAX (64u * 1024 * 1024)
/* A partial read of an unchecked member reads and checks it whole; bigger members wait for a chunk table. */
#define MEMBER_WHOLE_MAX (16u * 1024 * 1024)
#define MAX_MOUNTS 64
#define MAX_CACHED_FDS 1024
#define INDEX_ARRAYS 13

enum { SOURCE_UNCHECKED = 0, SOURCE_MEMBER_CRC = 1, SOURCE_OTHER_CHECK = 2 };

typedef struct {
  uint32_t chunk_size;
  uint64_t covered;
  uint32_t count;
  uint32_t *crcs;
  _Atomic uint8_t *checked;
} vhfs_chunks_t;

typedef struct {
  char *path;              /* the object's local file; NULL: not on a local disk */
  _Atomic int fd;          /* -1: not opened yet; -2: cannot be opened (left to JavaScript) */
  uint32_t kind;
  double size;
  _Atomic(vhfs_chunks_t *) chunks;
} vhfs_source_t;

typedef struct vhfs_input {
  struct vhfs_input *next;
  char *name;
  size_t name_len;
  const uint8_t *file_names;
  const uint32_t *file_name_start;
  const double *file_size;
  const double *file_offset;
  const uint32_t *file_source;
  const uint32_t *file_mtime;
  const uint32_t *file_crc;
  const uint8_t *dir_names;
  const uint32_t *dir_name_start;
  const uint32_t *dir_child_start;
  const uint32_t *dir_child_count;
  const uint32_t *dir_file_start;
  const uint32_t *dir_file_count;
  uint32_t file_count;
  uint32_t dir_count;
  uint32_t source_count;
  vhfs_source_t *sources;
  _Atomic uint8_t *member_checked;
  napi_ref refs[INDEX_ARRAYS];
} vhfs_input_t;

typedef struct {
  void *ft;
  _Atomic(vhfs_input_t *) inputs;
  uid_t uid;
  gid_t gid;
  struct timespec mount_time;
  _Atomic int active;
  _Atomic int closing;
} vhfs_mount_t;

static _Atomic(vhfs_mount_t *) vhfs_mounts[MAX_MOUNTS];
static _Atomic int vhfs_cached_fds;

/* What the native path answered, for `vhfs cache stats`-style reporting and tests. */
static _Atomic uint64_t stat_getattr, stat_readdir, stat_reads, stat_read_bytes, stat_checked_bytes, stat_misses, stat_check_failures,
  stat_opens_declined;

static int (*orig_getattr)(const char *, struct stat *);
static int (*orig_readdir)(const char *, void *, fuse_fill_dir_t, off_t, struct fuse_file_info *);
static int (*orig_read)(const char *, char *, size_t, off_t, struct fuse_file_info *);

/* ------------------------------------------------------------------------------------------ lookup */

static vhfs_mount_t *mount_enter(void) {
  struct fuse_context *ctx = fuse_get_context();
  void *ft = ctx ? ctx->private_data : NULL;
  if (!ft) return NULL;
  for (int i = 0; i < MAX_MOUNTS; i++) {
    vhfs_mount_t *m = atomic_load(&vhfs_mounts[i]);
    if (!m || m->ft != ft) continue;
    atomic_fetch_add(&m->active, 1);
    if (atomic_load(&m->closing)) {
      atomic_fetch_sub(&m->active, 1);
      return NULL;
    }
    return m;
  }
  return NULL;
}

static void mount_leave(vhfs_mount_t *m) {
  atomic_fetch_sub(&m->active, 1);
}

/* The registered input a path is in, and the path inside it ("" for its root); NULL when not registered. */
static vhfs_input_t *input_of(vhfs_mount_t *m, const char *path, const char **rest) {
  if (path[0] != '/' || path[1] == 0) return NULL;
  const char *name = path + 1;
  const char *slash = strchr(name, '/');
  size_t len = slash ? (size_t) (slash - name) : strlen(name);
  for (vhfs_input_t *in = atomic_load(&m->inputs); in; in = in->next) {
    if (in->name_len == len && memcmp(in->name, name, len) == 0) {
      *rest = slash ? slash + 1 : name + len;
      return in;
    }
  }
  return NULL;
}

/* Buffer.compare's order: bytes, then length. */
static int compare_name(const uint8_t *names, const uint32_t *starts, uint32_t i, const char *key, size_t key_len) {
  uint32_t a = starts[i], b = starts[i + 1];
  size_t len = b - a;
  int c = memcmp(names + a, key, len < key_len ? len : key_len);
  if (c != 0) return c;
  return len < key_len ? -1 : len > key_len ? 1 : 0;
}

static int64_t search(const uint8_t *names, const uint32_t *starts, uint32_t first, uint32_t count, const char *key, size_t key_len) {
  int64_t lo = first, hi = (int64_t) first + count - 1;
  while (lo <= hi) {
    int64_t mid = (lo + hi) / 2;
    int c = compare_name(names, starts, (uint32_t) mid, key, key_len);
    if (c == 0) return mid;
    if (c > 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return -1;
}

/* TreeIndex.lookup: >= 0 a file, <= -1 directory (-1 - ref), NOT_FOUND. */
static int64_t lookup(const vhfs_input_t *in, const char *p) {
  if (*p == 0) return -1;
  uint32_t dir = 0;
  for (;;) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t) (slash - p) : strlen(p);
    int last = !slash || slash[1] == 0;
    int64_t child = search(in->dir_names, in->dir_name_start, in->dir_child_start[dir], in->dir_child_count[dir], p, len);
    if (last) {
      if (child >= 0) return -1 - child;
      if (slash) return NOT_FOUND;
      int64_t f = search(in->file_names, in->file_name_start, in->dir_file_start[dir], in->dir_file_count[dir], p, len);
      return f >= 0 ? f : NOT_FOUND;
    }
    if (child < 0) return NOT_FOUND;
    dir = (uint32_t) child;
    p = slash + 1;
  }
}

/* ----------------------------------------------------------------------------------------- getattr */

static void dir_stat(const vhfs_mount_t *m, uint32_t subdirs, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_mode = S_IFDIR | 0555;
  st->st_uid = m->uid;
  st->st_gid = m->gid;
  st->st_size = 4096;
  st->st_nlink = 2 + subdirs;
  st->st_atim = st->st_mtim = st->st_ctim = m->mount_time;
}

static void file_stat(const vhfs_mount_t *m, const vhfs_input_t *in, uint32_t f, struct stat *st) {
  memset(st, 0, sizeof *st);
  uint64_t size = (uint64_t) in->file_size[f];
  st->st_mode = S_IFREG | 0444;
  st->st_uid = m->uid;
  st->st_gid = m->gid;
  st->st_size = (off_t) size;
  st->st_nlink = 1;
  st->st_blocks = (blkcnt_t) ((size + 511) / 512);
  st->st_blksize = 65536;
  st->st_mtim.tv_sec = in->file_mtime[f];
  st->st_atim = st->st_ctim = st->st_mtim;
}

static int vhfs_getattr(const char *path, struct stat *st) {
  vhfs_mount_t *m = mount_enter();
  if (!m) return orig_getattr(path, st);
  int r = VHFS_MISS;
  const char *rest;
  vhfs_input_t *in = input_of(m, path, &rest);
  if (in) {
    if (*rest == 0) {
      dir_stat(m, 0, st); /* as the JavaScript handler answers an input's root, resolved or not */
      r = 0;
    } else {
      int64_t ref = lookup(in, rest);
      if (ref == NOT_FOUND) r = -ENOENT;
      else if (ref >= 0) { file_stat(m, in, (uint32_t) ref, st); r = 0; }
      else { dir_stat(m, in->dir_child_count[-1 - ref], st); r = 0; }
    }
    atomic_fetch_add_explicit(&stat_getattr, 1, memory_order_relaxed);
  }
  mount_leave(m);
  return r == VHFS_MISS ? orig_getattr(path, st) : r;
}

/* ----------------------------------------------------------------------------------------- readdir */

static int fill_names(void *buf, fuse_fill_dir_t filler, const uint8_t *names, const uint32_t *starts, uint32_t first, uint32_t count, const struct stat *st) {
  char name[1024];
  for (uint32_t i = first; i < first + count; i++) {
    size_t len = starts[i + 1] - starts[i];
    if (len >= sizeof name) return -ENAMETOOLONG;
    memcpy(name, names + starts[i], len);
    name[len] = 0;
    if (filler(buf, name, st, 0) == 1) return -ENOMEM;
  }
  return 0;
}

static int vhfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset, struct fuse_file_info *fi) {
  vhfs_mount_t *m = mount_enter();
  if (!m) return orig_readdir(path, buf, filler, offset, fi);
  int r = VHFS_MISS;
  const char *rest;
  vhfs_input_t *in = input_of(m, path, &rest);
  if (in) {
    int64_t ref = lookup(in, rest);
    if (ref == NOT_FOUND) r = -ENOENT;
    else if (ref >= 0) r = -ENOTDIR;
    else {
      /* Only the type matters to libfuse 2 (it becomes d_type), as in the JavaScript handler. */
      uint32_t d = (uint32_t) (-1 - ref);
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_mode = S_IFDIR | 0555;
      r = fill_names(buf, filler, in->dir_names, in->dir_name_start, in->dir_child_start[d], in->dir_child_count[d], &st);
      st.st_mode = S_IFREG | 0444;
      if (r == 0) r = fill_names(buf, filler, in->file_names, in->file_name_start, in->dir_file_start[d], in->dir_file_count[d], &st);
      if (r == -ENAMETOOLONG) r = VHFS_MISS;
    }
    if (r != VHFS_MISS) atomic_fetch_add_explicit(&stat_readdir, 1, memory_order_relaxed);
  }
  mount_leave(m);
  return r == VHFS_MISS ? orig_readdir(path, buf, filler, offset, fi) : r;
}

/* -------------------------------------------------------------------------------------------- read */

static int source_fd(vhfs_source_t *s) {
  int fd = atomic_load(&s->fd);
  if (fd != -1) return fd;
  if (atomic_load(&vhfs_cached_fds) >= MAX_CACHED_FDS) return -2;
  int opened = open(s->path, O_RDONLY | O_CLOEXEC);
  int expected = -1;
  if (opened < 0) {
    atomic_compare_exchange_strong(&s->fd, &expected, -2);
    return -2;
  }
  if (!atomic_compare_exchange_strong(&s->fd, &expected, opened)) {
    close(opened);
    return expected;
  }
  atomic_fetch_add(&vhfs_cached_fds, 1);
  return opened;
}

/*
 * Per-thread scratch memory for reads that must check more than they return. Reused, because glibc
 * serves a fresh malloc of more than 128 KiB with mmap, and mapping, faulting in and unmapping a
 * 192 KiB buffer per 128 KiB request would cost more than the read. Bigger needs (a whole member read
 * to check it) are rare and get their own allocation, so no thread keeps megabytes.
 */
#define SCRATCH_MAX (1024u * 1024)
static pthread_key_t scratch_key;

typedef struct {
  size_t capacity;
  char data[];
} vhfs_scratch_t;

static char *scratch_get(size_t len) {
  if (len > SCRATCH_MAX) return malloc(len);
  vhfs_scratch_t *s = pthread_getspecific(scratch_key);
  if (!s || s->capacity < len) {
    free(s);
    s = malloc(sizeof *s + SCRATCH_MAX);
    pthread_setspecific(scratch_key, s);
    if (!s) return NULL;
    s->capacity = SCRATCH_MAX;
  }
  return s->data;
}

static void scratch_put(char *data, size_t len) {
  if (len > SCRATCH_MAX) free(data);
}

/* All of [at, at+len) or -1 (a short file is a damaged or replaced object: JavaScript says which). */
static int pread_all(int fd, char *buf, size_t len, uint64_t at) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, buf + done, len - done, (off_t) (at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t) n;
  }
  return 0;
}

static int crc_matches(const char *data, size_t len, uint32_t expected) {
  unsigned long crc = 0;
  size_t done = 0;
  while (done < len) {
    unsigned int step = len - done > (1u << 30) ? (1u << 30) : (unsigned int) (len - done);
    crc = crc32(crc, (const unsigned char *) data + done, step);
    done += step;
  }
  return (uint32_t) crc == expected;
}

/* A member checked whole against its CRC-32 once; after that its bytes are read as they are asked for. */
static int read_member(vhfs_input_t *in, uint32_t f, int fd, uint64_t start, uint64_t size, char *buf, size_t n, uint64_t pos) {
  if (atomic_load_explicit(&in->member_checked[f], memory_order_acquire)) {
    return pread_all(fd, buf, n, start + pos) == 0 ? (int) n : VHFS_MISS;
  }
  int whole = pos == 0 && n == size;
  if (!whole && size > MEMBER_WHOLE_MAX) return VHFS_MISS;
  char *data = whole ? buf : scratch_get(size);
  if (!data) return VHFS_MISS;
  int r = VHFS_MISS;
  if (pread_all(fd, data, size, start) == 0) {
    if (crc_matches(data, size, in->file_crc[f])) {
      atomic_store_explicit(&in->member_checked[f], 1, memory_order_release);
      atomic_fetch_add_explicit(&stat_checked_bytes, size, memory_order_relaxed);
      if (!whole) memcpy(buf, data + pos, n);
      r = (int) n;
    } else {
      atomic_fetch_add_explicit(&stat_check_failures, 1, memory_order_relaxed);
    }
  }
  if (!whole) scratch_put(data, size);
  return r;
}

/*
 * Bytes [at, at+n) of a source with a chunk table, read straight into the kernel's buffer and checked there:
 * a chunk not yet checked is checked over those bytes plus, where the request covers only part of it, the
 * rest of the chunk read beside them (CRC-32 runs on across the pieces). So the bytes served are the bytes
 * checked, nothing is copied twice, and a sequential reader reads each byte from the disk about once (the
 * rest of a chunk read here is the next request's start, then in the page cache).
 */
static int read_chunked(vhfs_chunks_t *c, int fd, char *buf, size_t n, uint64_t at) {
  if (at + n > c->covered) return VHFS_MISS;
  if (pread_all(fd, buf, n, at) != 0) return VHFS_MISS;
  uint64_t cs = c->chunk_size, end = at + n;
  for (uint64_t k = at / cs; k <= (end - 1) / cs; k++) {
    if (atomic_load_explicit(&c->checked[k], memory_order_acquire)) continue;
    uint64_t a = k * cs, b = a + cs < c->covered ? a + cs : c->covered;
    uint64_t inside_a = a > at ? a : at, inside_b = b < end ? b : end;
    unsigned long crc = 0;
    if (a < inside_a || inside_b < b) {
      char *rest = scratch_get(cs);
      if (!rest) return VHFS_MISS;
      int ok = 1;
      if (a < inside_a) {
        ok = pread_all(fd, rest, inside_a - a, a) == 0;
        if (ok) crc = crc32(crc, (const unsigned char *) rest, (unsigned int) (inside_a - a));
      }
      if (ok) crc = crc32(crc, (const unsigned char *) buf + (inside_a - at), (unsigned int) (inside_b - inside_a));
      if (ok && inside_b < b) {
        ok = pread_all(fd, rest, b - inside_b, inside_b) == 0;
        if (ok) crc = crc32(crc, (const unsigned char *) rest, (unsigned int) (b - inside_b));
      }
      scratch_put(rest, cs);
      if (!ok) return VHFS_MISS;
    } else {
      crc = crc32(crc, (const unsigned char *) buf + (a - at), (unsigned int) (b - a));
    }
    if ((uint32_t) crc != c->crcs[k]) {
      atomic_fetch_add_explicit(&stat_check_failures, 1, memory_order_relaxed);
      return VHFS_MISS;
    }
    atomic_store_explicit(&c->checked[k], 1, memory_order_release);
    atomic_fetch_add_explicit(&stat_checked_bytes, b - a, memory_order_relaxed);
  }
  return (int) n;
}

static int read_file(vhfs_input_t *in, uint32_t f, char *buf, size_t len, off_t off) {
  uint64_t size = (uint64_t) in->file_size[f];
  if (off < 0) return -EINVAL;
  if ((uint64_t) off >= size || len == 0) return 0;
  size_t n = (uint64_t) off + len > size ? (size_t) (size - (uint64_t) off) : len;
  vhfs_source_t *s = &in->sources[in->file_source[f]];
  if (!s->path) return VHFS_MISS;
  int fd = source_fd(s);
  if (fd < 0) return VHFS_MISS;
  uint64_t start = (uint64_t) in->file_offset[f];
  if ((double) (start + size) > s->size) return VHFS_MISS;
  vhfs_chunks_t *chunks = atomic_load_explicit(&s->chunks, memory_order_acquire);
  /* A small member is checked on its own (its bytes only); a big one by chunks when there is a table. */
  if (s->kind == SOURCE_MEMBER_CRC && size <= MEMBER_CHECK_MAX && (size <= MEMBER_WHOLE_MAX || !chunks)) {
    return read_member(in, f, fd, start, size, buf, n, (uint64_t) off);
  }
  if (chunks) return read_chunked(chunks, fd, buf, n, start + (uint64_t) off);
  if (s->kind == SOURCE_UNCHECKED) return pread_all(fd, buf, n, start + (uint64_t) off) == 0 ? (int) n : VHFS_MISS;
  return VHFS_MISS;
}

static int vhfs_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi) {
  vhfs_mount_t *m = mount_enter();
  if (!m) return orig_read(path, buf, len, off, fi);
  int r = VHFS_MISS;
  const char *rest;
  vhfs_input_t *in = input_of(m, path, &rest);
  if (in) {
    int64_t ref = lookup(in, rest);
    if (ref < 0) r = -ENOENT;
    else r = read_file(in, (uint32_t) ref, buf, len, off);
  }
  mount_leave(m);
  if (r == VHFS_MISS) {
    atomic_fetch_add_explicit(&stat_misses, 1, memory_order_relaxed);
    return orig_read(path, buf, len, off, fi);
  }
  if (r > 0) {
    atomic_fetch_add_explicit(&stat_reads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stat_read_bytes, (uint64_t) r, memory_order_relaxed);
  }
  return r;
}

/*
 * The kernel's FUSE protocol minor, from its INIT (every mount of a process talks to the same kernel). `no_open`
 * (below) came with Linux 4.19/4.20 without a protocol bump of its own; 7.28 is Linux 4.20's, so a kernel that
 * reports it has `no_open`. An older kernel would fail the open with ENOSYS instead of skipping it.
 */
#define NO_OPEN_PROTO_MINOR 28
static _Atomic unsigned kernel_proto_minor;

static void *vhfs_fuse_init(struct fuse_conn_info *conn) {
  atomic_store(&kernel_proto_minor, conn->proto_minor);
  return fuse_native_init(conn);
}

/*
 * `open` of a mount with no open handler in JavaScript (the inputs mount: files are found by path, nothing is
 * kept per open file). libfuse 2 would answer each open itself, but still as a round trip to the daemon, and
 * each close costs a `release` round trip too. Answering ENOSYS once tells the kernel (Linux 4.20+, `no_open`)
 * that this filesystem needs neither: from then on it opens and closes files without asking, and keeps their
 * page cache (the FOPEN_KEEP_CACHE default that `kernel_cache` also gives). That halves the requests per small
 * file. Only once the native path is attached: a mount without it (no compiler, `--no-native-reads`, `vhfs
 * serve`) gets libfuse's own answer, as if there were no handler, and so does a kernel older than `no_open`
 * (NO_OPEN_PROTO_MINOR).
 */
static int vhfs_open(const char *path, struct fuse_file_info *fi) {
  (void) path;
  (void) fi;
  if (atomic_load_explicit(&kernel_proto_minor, memory_order_relaxed) < NO_OPEN_PROTO_MINOR) return 0;
  vhfs_mount_t *m = mount_enter();
  if (!m) return 0;
  mount_leave(m);
  atomic_fetch_add_explicit(&stat_opens_declined, 1, memory_order_relaxed);
  return -ENOSYS;
}

/* fuse-native's operations table passes through here on its way to libfuse. */
struct fuse *vhfs_fuse_new(struct fuse_chan *ch, struct fuse_args *args, const struct fuse_operations *op, size_t op_size, void *user_data) {
  struct fuse_operations ops = *op;
  orig_getattr = fuse_native_getattr;
  orig_readdir = fuse_native_readdir;
  orig_read = fuse_native_read;
  if (ops.getattr == fuse_native_getattr) ops.getattr = vhfs_getattr;
  if (ops.readdir == fuse_native_readdir) ops.readdir = vhfs_readdir;
  if (ops.read == fuse_native_read) ops.read = vhfs_read;
  /* A read-only mount whose files JavaScript opens without state (no open, release or write handler). */
  if (ops.read == vhfs_read && !ops.open && !ops.release && !ops.write) ops.open = vhfs_open;
  /* fuse-native always has an init; were it missing, the minor stays 0 and no open is declined. */
  if (ops.init == fuse_native_init) ops.init = vhfs_fuse_init;
  return fuse_new(ch, args, &ops, op_size, user_data);
}

/* ------------------------------------------------------------------------------------- JavaScript */

static vhfs_mount_t *mount_of(napi_env env, napi_value thread) {
  void *ft;
  size_t len;
  if (napi_get_buffer_info(env, thread, &ft, &len) != napi_ok) return NULL;
  for (int i = 0; i < MAX_MOUNTS; i++) {
    vhfs_mount_t *m = atomic_load(&vhfs_mounts[i]);
    if (m && m->ft == ft && !atomic_load(&m->closing)) return m;
  }
  return NULL;
}

/* vhfs_native_attach(thread, uid, gid, mountTimeMs): answer this mount's registered inputs natively. */
NAPI_METHOD(vhfs_native_attach) {
  NAPI_ARGV(4)
  void *ft;
  size_t len;
  NAPI_STATUS_THROWS(napi_get_buffer_info(env, argv[0], &ft, &len));
  NAPI_ARGV_UINT32(uid, 1)
  NAPI_ARGV_UINT32(gid, 2)
  double ms;
  NAPI_STATUS_THROWS(napi_get_value_double(env, argv[3], &ms));
  vhfs_mount_t *m = calloc(1, sizeof *m);
  if (!m) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  m->ft = ft;
  m->uid = uid;
  m->gid = gid;
  m->mount_time.tv_sec = (time_t) (ms / 1000);
  m->mount_time.tv_nsec = (long) ((uint64_t) ms % 1000) * 1000000;
  for (int i = 0; i < MAX_MOUNTS; i++) {
    vhfs_mount_t *expected = NULL;
    if (atomic_compare_exchange_strong(&vhfs_mounts[i], &expected, m)) return NULL;
  }
  free(m);
  napi_throw_error(env, NULL, "too many native mounts in one process");
  return NULL;
}

static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *count) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, count, data, &ab, &offset) != napi_ok) return 0;
  return type == want;
}

static void free_chunks(vhfs_chunks_t *c) {
  if (!c) return;
  free(c->crcs);
  free((void *) c->checked);
  free(c);
}

static void free_input(napi_env env, vhfs_input_t *in) {
  for (int i = 0; i < INDEX_ARRAYS; i++) if (in->refs[i]) napi_delete_reference(env, in->refs[i]);
  for (uint32_t s = 0; s < in->source_count; s++) {
    vhfs_source_t *src = &in->sources[s];
    int fd = atomic_load(&src->fd);
    if (fd >= 0) { close(fd); atomic_fetch_sub(&vhfs_cached_fds, 1); }
    free(src->path);
    free_chunks(atomic_load(&src->chunks));
  }
  free(in->sources);
  free((void *) in->member_checked);
  free(in->name);
  free(in);
}

/* A source's chunk table from [crcs (u32 LE per chunk), chunkSize, covered]; NULL (and an exception) if malformed. */
static vhfs_chunks_t *chunks_from(napi_env env, napi_value spec) {
  napi_value v[3];
  for (uint32_t i = 0; i < 3; i++) {
    if (napi_get_element(env, spec, i, &v[i]) != napi_ok) return NULL;
  }
  void *crcs;
  size_t crcs_len;
  uint32_t chunk_size;
  double covered;
  if (napi_get_buffer_info(env, v[0], &crcs, &crcs_len) != napi_ok || napi_get_value_uint32(env, v[1], &chunk_size) != napi_ok
      || napi_get_value_double(env, v[2], &covered) != napi_ok || chunk_size == 0 || covered < 0) {
    napi_throw_type_error(env, NULL, "vhfs_native_set_chunks: a chunk table is not [Buffer, chunkSize, covered]");
    return NULL;
  }
  uint64_t count = ((uint64_t) covered + chunk_size - 1) / chunk_size;
  if (crcs_len < count * 4) {
    napi_throw_range_error(env, NULL, "vhfs_native_set_chunks: a chunk table is shorter than what it covers");
    return NULL;
  }
  vhfs_chunks_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->chunk_size = chunk_size;
  c->covered = (uint64_t) covered;
  c->count = (uint32_t) count;
  c->crcs = malloc(count * 4 + 4);
  c->checked = calloc(count + 1, 1);
  if (!c->crcs || !c->checked) {
    free_chunks(c);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  for (uint64_t k = 0; k < count; k++) {
    const uint8_t *b = (const uint8_t *) crcs + k * 4;
    c->crcs[k] = (uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24;
  }
  return c;
}

/*
 * vhfs_native_add_input(thread, name, [13 index arrays in TreeIndexArrays order], sourcePaths, sourceKinds,
 * sourceSizes). sourcePaths[i] is the local file of source i or null. The input is answered natively from the
 * moment it is added; chunk tables follow through vhfs_native_set_chunks (until then, reads that need one go
 * to JavaScript).
 */
NAPI_METHOD(vhfs_native_add_input) {
  NAPI_ARGV(6)
  vhfs_mount_t *m = mount_of(env, argv[0]);
  if (!m) { napi_throw_error(env, NULL, "vhfs_native_add_input: mount not attached"); return NULL; }
  NAPI_ARGV_UTF8_MALLOC(name, 1)
  napi_value arrays = argv[2];
  vhfs_input_t *in = calloc(1, sizeof *in);
  if (!in) { free(name); napi_throw_error(env, NULL, "out of memory"); return NULL; }
  in->name = name;
  in->name_len = strlen(name);
  static const napi_typedarray_type types[INDEX_ARRAYS] = {
    napi_uint8_array, napi_uint32_array, napi_float64_array, napi_float64_array, napi_uint32_array, napi_uint32_array,
    napi_uint32_array, napi_uint8_array, napi_uint32_array, napi_uint32_array, napi_uint32_array, napi_uint32_array,
    napi_uint32_array,
  };
  void *data[INDEX_ARRAYS];
  size_t counts[INDEX_ARRAYS];
  for (uint32_t i = 0; i < INDEX_ARRAYS; i++) {
    napi_value v;
    if (napi_get_element(env, arrays, i, &v) != napi_ok || !typed_array(env, v, types[i], &data[i], &counts[i])) {
      free_input(env, in);
      napi_throw_type_error(env, NULL, "vhfs_native_add_input: index array of the wrong type");
      return NULL;
    }
    napi_create_reference(env, v, 1, &in->refs[i]);
  }
  in->file_names = data[0];
  in->file_name_start = data[1];
  in->file_size = data[2];
  in->file_offset = data[3];
  in->file_source = data[4];
  in->file_mtime = data[5];
  in->file_crc = data[6];
  in->dir_names = data[7];
  in->dir_name_start = data[8];
  /* dirParent is not needed here, so the JavaScript side passes the arrays from dirChildStart on. */
  in->dir_child_start = data[9];
  in->dir_child_count = data[10];
  in->dir_file_start = data[11];
  in->dir_file_count = data[12];
  in->file_count = (uint32_t) counts[2];
  in->dir_count = (uint32_t) counts[9];
  int consistent = counts[1] == counts[2] + 1 && counts[3] == counts[2] && counts[4] == counts[2] && counts[5] == counts[2]
    && counts[6] == counts[2] && counts[8] == counts[9] + 1 && counts[10] == counts[9] && counts[11] == counts[9] && counts[12] == counts[9]
    && in->dir_count > 0;
  if (!consistent) {
    free_input(env, in);
    napi_throw_range_error(env, NULL, "vhfs_native_add_input: index arrays of inconsistent lengths");
    return NULL;
  }
  napi_value paths = argv[3];
  uint32_t *kinds;
  size_t kinds_count;
  double *sizes;
  size_t sizes_count;
  uint32_t source_count;
  napi_get_array_length(env, paths, &source_count);
  if (!typed_array(env, argv[4], napi_uint32_array, (void **) &kinds, &kinds_count)
      || !typed_array(env, argv[5], napi_float64_array, (void **) &sizes, &sizes_count)
      || kinds_count != source_count || sizes_count != source_count) {
    free_input(env, in);
    napi_throw_type_error(env, NULL, "vhfs_native_add_input: sources of inconsistent lengths");
    return NULL;
  }
  in->source_count = source_count;
  in->sources = calloc(source_count ? source_count : 1, sizeof *in->sources);
  in->member_checked = calloc(in->file_count ? in->file_count : 1, 1);
  if (!in->sources || !in->member_checked) {
    free_input(env, in);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  for (uint32_t s = 0; s < source_count; s++) atomic_init(&in->sources[s].fd, -1);
  for (uint32_t s = 0; s < source_count; s++) {
    vhfs_source_t *src = &in->sources[s];
    src->kind = kinds[s];
    src->size = sizes[s];
    napi_value p;
    napi_valuetype t;
    napi_get_element(env, paths, s, &p);
    napi_typeof(env, p, &t);
    if (t != napi_string) continue;
    size_t plen;
    napi_get_value_string_utf8(env, p, NULL, 0, &plen);
    src->path = malloc(plen + 1);
    if (src->path) napi_get_value_string_utf8(env, p, src->path, plen + 1, &plen);
  }
  /* Every source index a file names must exist, or a read would run off the table. */
  for (uint32_t f = 0; f < in->file_count; f++) {
    if (in->file_source[f] >= source_count) {
      free_input(env, in);
      napi_throw_range_error(env, NULL, "vhfs_native_add_input: a file names a source that is not there");
      return NULL;
    }
  }
  in->next = atomic_load(&m->inputs);
  atomic_store(&m->inputs, in);
  return NULL;
}

/*
 * vhfs_native_set_chunks(thread, inputName, sourceIndex, [crcs, chunkSize, covered]): a source's chunk table,
 * once JavaScript has read it. Until then reads that need it went to JavaScript; a second table for the same
 * source is ignored (the first stays: readers may be using it).
 */
NAPI_METHOD(vhfs_native_set_chunks) {
  NAPI_ARGV(4)
  vhfs_mount_t *m = mount_of(env, argv[0]);
  if (!m) return NULL;
  NAPI_ARGV_UTF8_MALLOC(name, 1)
  NAPI_ARGV_UINT32(source, 2)
  vhfs_input_t *in = atomic_load(&m->inputs);
  while (in && strcmp(in->name, name) != 0) in = in->next;
  free(name);
  if (!in || source >= in->source_count) return NULL;
  vhfs_chunks_t *c = chunks_from(env, argv[3]);
  if (!c) return NULL;
  vhfs_chunks_t *expected = NULL;
  if (!atomic_compare_exchange_strong(&in->sources[source].chunks, &expected, c)) free_chunks(c);
  return NULL;
}

/* vhfs_native_detach(thread): stop answering natively, wait for handlers still running, free. */
NAPI_METHOD(vhfs_native_detach) {
  NAPI_ARGV(1)
  void *ft;
  size_t len;
  NAPI_STATUS_THROWS(napi_get_buffer_info(env, argv[0], &ft, &len));
  for (int i = 0; i < MAX_MOUNTS; i++) {
    vhfs_mount_t *m = atomic_load(&vhfs_mounts[i]);
    if (!m || m->ft != ft) continue;
    atomic_store(&m->closing, 1);
    while (atomic_load(&m->active) > 0) usleep(100);
    atomic_store(&vhfs_mounts[i], NULL);
    vhfs_input_t *in = atomic_exchange(&m->inputs, NULL);
    while (in) {
      vhfs_input_t *next = in->next;
      free_input(env, in);
      in = next;
    }
  }
  return NULL;
}

/* vhfs_native_stats() → [getattrs, readdirs, reads, readBytes, checkedBytes, misses, checkFailures, opensDeclined]. */
NAPI_METHOD(vhfs_native_stats) {
  napi_value out;
  uint64_t values[] = {
    atomic_load(&stat_getattr), atomic_load(&stat_readdir), atomic_load(&stat_reads), atomic_load(&stat_read_bytes),
    atomic_load(&stat_checked_bytes), atomic_load(&stat_misses), atomic_load(&stat_check_failures),
    atomic_load(&stat_opens_declined),
  };
  uint32_t count = sizeof values / sizeof values[0];
  napi_create_array_with_length(env, count, &out);
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    napi_create_double(env, (double) values[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

static void vhfs_exports(napi_env env, napi_value exports) {
  NAPI_EXPORT_FUNCTION(vhfs_native_attach)
  NAPI_EXPORT_FUNCTION(vhfs_native_add_input)
  NAPI_EXPORT_FUNCTION(vhfs_native_set_chunks)
  NAPI_EXPORT_FUNCTION(vhfs_native_detach)
  NAPI_EXPORT_FUNCTION(vhfs_native_stats)
}

static napi_value vhfs_init(napi_env env, napi_value exports) {
  fuse_native_napi_init(env, exports);
  pthread_key_create(&scratch_key, free);
  vhfs_exports(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, vhfs_init)
