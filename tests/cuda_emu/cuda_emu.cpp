/* flashmoe CUDA-on-CPU emulator: the runtime (memory, streams, events,
 * errors) and the kernel scheduler (blocks of cooperative fibers, barriers,
 * warp exchanges). See README.md for what it checks and what it cannot.
 *
 * Environment (all optional):
 *   CUDA_EMU_DEVICES=N       devices reported (default 1; 0: cudaErrorNoDevice)
 *   CUDA_EMU_NO_DRIVER=1     cudaGetDeviceCount answers cudaErrorInsufficientDriver
 *   CUDA_EMU_MEM=4G          device memory (suffix K, M, G)
 *   CUDA_EMU_SCHEDULE=eager  eager: every operation runs when it is issued;
 *                            lazy: stream work runs only when something waits for it
 *                            (stream/event sync, a legacy-stream call, cudaFree, ...)
 *   CUDA_EMU_ORDER=forward   reverse: blocks and threads run in reverse order
 *   CUDA_EMU_POISON=1        0: no NaN-pattern filling of new memory / shared memory
 *   CUDA_EMU_ON_ERROR=abort  continue: after a deadlock or a fault in a kernel, abandon the
 *                            launch (cudaErrorLaunchFailure / cudaErrorIllegalAddress) and go on
 *   CUDA_EMU_VERBOSE=1       one line per launch on stderr */
#include "cuda_runtime_api.h"
#include "cuda_emu_kernel.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <thread>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>


namespace cuemu {

__thread uint3 t_threadIdx, t_blockIdx, t_blockDim, t_gridDim;
__thread unsigned long long t_block_gen;
__thread char *t_smem_static;
__thread char *t_smem_dyn;

/* ======================================================================== */
/* configuration and reports                                                */
/* ======================================================================== */

static const size_t PAGE = 4096;
static const size_t SMEM_STATIC_MAX = 48 * 1024;    /* static __shared__ per block */
static const size_t SMEM_DEFAULT_MAX = 48 * 1024;   /* dynamic without the opt-in attribute */
static const size_t SMEM_OPTIN_MAX = 232448;        /* 227 KiB: sharedMemPerBlockOptin (H100/H200) */
static const size_t POISON_MAX = (size_t)256 << 20; /* larger allocations are not filled */
static const unsigned char POISON = 0xff;           /* float NaN, int -1, pointer non-canonical */
static const unsigned char CANARY = 0xfd;
static const size_t CANARY_BELOW = 256;

struct Config {
    int devices = 1, no_driver = 0, lazy = 0, reverse = 0, poison = 1, cont = 0, verbose = 0, threads = 1;
    size_t mem = (size_t)4 << 30;
};
static Config cfg_;
static std::once_flag cfg_once;
static std::atomic<unsigned long long> n_errors, n_warnings;
static unsigned long long n_launches;
static std::recursive_mutex report_mutex; /* reports may come from several kernel threads */

static size_t parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    default: break;
    }
    return (size_t)v;
}

static void at_exit_report();

static const Config &conf() {
    std::call_once(cfg_once, [] {
        const char *e;
        if ((e = getenv("CUDA_EMU_DEVICES"))) cfg_.devices = atoi(e);
        if ((e = getenv("CUDA_EMU_NO_DRIVER"))) cfg_.no_driver = atoi(e);
        if ((e = getenv("CUDA_EMU_MEM"))) cfg_.mem = parse_size(e);
        if ((e = getenv("CUDA_EMU_SCHEDULE"))) cfg_.lazy = !strcmp(e, "lazy");
        if ((e = getenv("CUDA_EMU_ORDER"))) cfg_.reverse = !strcmp(e, "reverse");
        if ((e = getenv("CUDA_EMU_POISON"))) cfg_.poison = atoi(e);
        if ((e = getenv("CUDA_EMU_ON_ERROR"))) cfg_.cont = !strcmp(e, "continue");
        if ((e = getenv("CUDA_EMU_VERBOSE"))) cfg_.verbose = atoi(e);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cfg_.threads = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (int)ncpu;
        if ((e = getenv("CUDA_EMU_THREADS"))) cfg_.threads = atoi(e) < 1 ? 1 : atoi(e) > 64 ? 64 : atoi(e);
        if (cfg_.reverse) cfg_.threads = 1; /* a fixed (reversed) order */
        atexit(at_exit_report);
    });
    return cfg_;
}

static void at_exit_report() {
    if (n_errors || n_warnings)
        fprintf(stderr, "cuda-emu: %llu error(s), %llu warning(s) reported (%llu kernel launches)\n",
                n_errors.load(), n_warnings.load(), n_launches);
}

/* "function (file:line)" of a code address, through addr2line (errors only). */
static std::string symbolize(const void *addr) {
    std::lock_guard<std::recursive_mutex> lock(report_mutex);
    static std::map<const void *, std::string> cache;
    auto it = cache.find(addr);
    if (it != cache.end()) return it->second;
    Dl_info info;
    std::string out;
    char buf[512];
    if (dladdr(addr, &info) && info.dli_fname) {
        uintptr_t off = (uintptr_t)addr - (uintptr_t)info.dli_fbase;
        /* the return address points after the call: look one byte back */
        snprintf(buf, sizeof buf, "addr2line -f -C -e '%s' 0x%lx 2>/dev/null", info.dli_fname, (unsigned long)(off - 1));
        if (FILE *p = popen(buf, "r")) {
            char fn[512] = "", loc[512] = "";
            if (fgets(fn, sizeof fn, p) && fgets(loc, sizeof loc, p)) {
                fn[strcspn(fn, "\n")] = 0;
                loc[strcspn(loc, "\n")] = 0;
                const char *l = strstr(loc, "/src/") ? strstr(loc, "/src/") + 1
                                : strstr(loc, "/tests/") ? strstr(loc, "/tests/") + 1
                                                         : loc;
                out = std::string(fn) + " (" + l + ")";
            }
            pclose(p);
        }
    }
    if (out.empty()) {
        snprintf(buf, sizeof buf, "%p", addr);
        out = buf;
    }
    cache[addr] = out;
    return out;
}

static void vreport(const char *kind, const char *fmt, va_list ap) {
    std::lock_guard<std::recursive_mutex> lock(report_mutex);
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "cuda-emu: %s: %s\n", kind, msg);
    fflush(stderr);
}
/* An error of the code under test (counted; run.sh fails on any). */
static void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    n_errors++;
    vreport("ERROR", fmt, ap);
    va_end(ap);
}
static void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warning(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    n_warnings++;
    vreport("warning", fmt, ap);
    va_end(ap);
}
/* Once per key. */
static bool first_time(const std::string &key) {
    std::lock_guard<std::recursive_mutex> lock(report_mutex);
    static std::unordered_set<std::string> seen;
    return seen.insert(key).second;
}

static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static std::recursive_mutex api_mutex;
#define API_LOCK std::lock_guard<std::recursive_mutex> api_lock_(api_mutex)

static __thread cudaError_t last_error = cudaSuccess;
static cudaError_t fail(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}

/* ======================================================================== */
/* memory                                                                   */
/* ======================================================================== */

enum AllocKind { A_DEVICE, A_PINNED, A_REGISTERED };
static const char *kind_name(int k) {
    return k == A_DEVICE ? "device" : k == A_PINNED ? "pinned host (cudaMallocHost)" : "registered host";
}

struct Alloc {
    uintptr_t ptr;
    size_t size, rsize; /* requested, rounded to 256 */
    char *map;          /* whole mapping incl. guard pages (NULL: registered) */
    size_t map_len;
    int kind;
    const void *caller;
    unsigned long long id;
};
static std::map<uintptr_t, Alloc> allocs; /* by ptr */
static size_t dev_used, dev_live;
static unsigned long long alloc_ids;
struct Freed {
    uintptr_t lo, hi;
    int kind;
    const void *caller, *freer;
};
static Freed freed_ring[512];
static unsigned freed_next;

/* The allocation containing [p, p + n) (n = 0: p may be one past the end). */
static Alloc *find_alloc(const void *p, size_t n = 1) {
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return nullptr;
    --it;
    Alloc &al = it->second;
    if (n == 0) return a <= al.ptr + al.size ? &al : nullptr;
    return a + n <= al.ptr + al.size ? &al : nullptr;
}
/* The allocation whose mapping (guards and slack included) holds p. */
static Alloc *find_mapping(uintptr_t a) {
    for (auto &kv : allocs) {
        Alloc &al = kv.second;
        if (al.map && a >= (uintptr_t)al.map && a < (uintptr_t)al.map + al.map_len) return &al;
    }
    return nullptr;
}

/* Human description of what p is (for reports). */
static std::string describe(const void *p, size_t n) {
    char buf[1024];
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it != allocs.begin()) {
        --it;
        Alloc &al = it->second;
        if (a >= al.ptr && a < al.ptr + al.size) {
            if (a + n <= al.ptr + al.size)
                snprintf(buf, sizeof buf, "%s memory (offset %zu of a %zu-byte allocation by %s)", kind_name(al.kind),
                         (size_t)(a - al.ptr), al.size, symbolize(al.caller).c_str());
            else
                snprintf(buf, sizeof buf,
                         "offset %zu of a %zu-byte %s allocation, but %zu bytes from there run %zu bytes past its end "
                         "(allocated by %s)",
                         (size_t)(a - al.ptr), al.size, kind_name(al.kind), n, (size_t)(a + n - al.ptr - al.size),
                         symbolize(al.caller).c_str());
            return buf;
        }
        if (a >= al.ptr + al.size && a < al.ptr + al.size + 4096) {
            snprintf(buf, sizeof buf, "%zu bytes past the end of a %zu-byte %s allocation (allocated by %s)",
                     (size_t)(a - al.ptr - al.size), al.size, kind_name(al.kind), symbolize(al.caller).c_str());
            return buf;
        }
    }
    for (unsigned i = 0; i < sizeof freed_ring / sizeof *freed_ring; i++) {
        const Freed &f = freed_ring[i];
        if (f.hi && a >= f.lo && a < f.hi) {
            snprintf(buf, sizeof buf, "inside freed %s memory (allocated by %s, freed by %s)", kind_name(f.kind),
                     symbolize(f.caller).c_str(), symbolize(f.freer).c_str());
            return buf;
        }
    }
    if (!p) return "NULL";
    int on_stack = 0;
    {
        char probe;
        uintptr_t s = (uintptr_t)&probe;
        on_stack = a > s - (1u << 20) && a < s + (64u << 20);
    }
    snprintf(buf, sizeof buf, "not memory the emulated runtime handed out (%s)",
             on_stack ? "looks like a host stack address" : "pageable host memory, or garbage");
    return buf;
}

static void fill_canaries(const Alloc &al) {
    memset((void *)(al.ptr + al.size), CANARY, al.rsize - al.size);
    size_t below = al.ptr - (uintptr_t)al.map - PAGE;
    if (below > CANARY_BELOW) below = CANARY_BELOW;
    memset((void *)(al.ptr - below), CANARY, below);
}
/* Bytes written outside [ptr, ptr+size) but inside the slack (0: none). */
static bool check_canaries(const Alloc &al, const char *when) {
    if (!al.map) return true;
    const unsigned char *end = (const unsigned char *)(al.ptr + al.size);
    size_t after = al.rsize - al.size;
    for (size_t i = 0; i < after; i++)
        if (end[i] != CANARY) {
            error("%s: byte %zu past the end of a %zu-byte %s allocation (allocated by %s) was written: buffer overrun",
                  when, i, al.size, kind_name(al.kind), symbolize(al.caller).c_str());
            memset((void *)(al.ptr + al.size), CANARY, after);
            return false;
        }
    size_t below = al.ptr - (uintptr_t)al.map - PAGE;
    if (below > CANARY_BELOW) below = CANARY_BELOW;
    const unsigned char *lo = (const unsigned char *)(al.ptr - below);
    for (size_t i = 0; i < below; i++)
        if (lo[i] != CANARY) {
            error("%s: byte %zu before the start of a %zu-byte %s allocation (allocated by %s) was written: buffer "
                  "underrun",
                  when, below - i, al.size, kind_name(al.kind), symbolize(al.caller).c_str());
            memset((void *)(al.ptr - below), CANARY, below);
            return false;
        }
    return true;
}

/* A guarded mapping: [guard page][slack][data (size rounded to 256)][guard page]. */
static void *guarded_alloc(size_t size, int kind, const void *caller) {
    size_t rsize = (size + 255) & ~(size_t)255;
    size_t pages = (rsize + PAGE - 1) / PAGE * PAGE;
    size_t len = pages + 2 * PAGE;
    char *m = (char *)mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect(m, PAGE, PROT_NONE);
    mprotect(m + PAGE + pages, PAGE, PROT_NONE);
    Alloc al;
    al.ptr = (uintptr_t)(m + PAGE + pages - rsize);
    al.size = size;
    al.rsize = rsize;
    al.map = m;
    al.map_len = len;
    al.kind = kind;
    al.caller = caller;
    al.id = ++alloc_ids;
    if (conf().poison && size <= POISON_MAX) memset((void *)al.ptr, POISON, size);
    fill_canaries(al);
    allocs[al.ptr] = al;
    return (void *)al.ptr;
}

static void guarded_free(Alloc &al, const void *freer) {
    check_canaries(al, "free");
    Freed &f = freed_ring[freed_next++ % (sizeof freed_ring / sizeof *freed_ring)];
    f.lo = (uintptr_t)al.map;
    f.hi = (uintptr_t)al.map + al.map_len;
    f.kind = al.kind;
    f.caller = al.caller;
    f.freer = freer;
    munmap(al.map, al.map_len);
    allocs.erase(al.ptr);
}


/* ======================================================================== */
/* streams and events                                                       */
/* ======================================================================== */

static const uint32_t STREAM_MAGIC = 0x5354524d, EVENT_MAGIC = 0x4556454e, DEAD_MAGIC = 0xdeadbeef;

struct Event;
struct Op {
    enum { KERNEL, COPY, SET, RECORD, WAIT, HOSTFN } kind;
    std::function<void()> fn; /* KERNEL, COPY, SET, HOSTFN */
    Event *ev = nullptr;
    unsigned long long seq = 0;
};
struct CUstream_st_emu {
    uint32_t magic;
    unsigned flags;
    int id;
    bool legacy;
    std::deque<Op> q;
};
struct Event {
    uint32_t magic;
    unsigned flags;
    unsigned long long recorded = 0, done = 0;
    double t = 0;
    std::vector<std::pair<unsigned long long, CUstream_st_emu *>> pending; /* records not yet run */
    int queried = 0;
};
typedef CUstream_st_emu Stream;

static Stream legacy_stream = {STREAM_MAGIC, 0, 0, true, {}};
static Stream per_thread_stream = {STREAM_MAGIC, 0, -1, false, {}};
static std::set<Stream *> streams;
static int stream_ids;

static Stream *get_stream(cudaStream_t h, const char *api, cudaError_t *err) {
    *err = cudaSuccess;
    if (!h || h == cudaStreamLegacy) return &legacy_stream;
    if (h == cudaStreamPerThread) return &per_thread_stream;
    Stream *s = reinterpret_cast<Stream *>(h);
    if (!streams.count(s)) {
        bool dead = false;
        /* destroyed streams are kept (magic DEAD) so the handle stays recognisable */
        if (s->magic == DEAD_MAGIC) dead = true;
        error("%s: stream %p is %s", api, (void *)h, dead ? "destroyed" : "not a stream");
        *err = cudaErrorInvalidResourceHandle;
        return nullptr;
    }
    return s;
}
static std::set<Event *> events;
static Event *get_event(cudaEvent_t h, const char *api) {
    Event *e = reinterpret_cast<Event *>(h);
    if (!h || !events.count(e)) {
        error("%s: event %p is %s", api, (void *)h, h && e->magic == DEAD_MAGIC ? "destroyed" : "not an event");
        return nullptr;
    }
    return e;
}

static void run_op(Op &op);
static void drain(Stream *s, Event *until = nullptr, unsigned long long seq = 0);

static void ensure_event(Event *e, unsigned long long seq) {
    while (e->done < seq) {
        Stream *s = nullptr;
        for (auto &p : e->pending)
            if (p.first <= seq) {
                s = p.second;
                break;
            }
        if (!s) break; /* cannot happen */
        drain(s, e, seq);
    }
}

static void run_op(Op &op) {
    switch (op.kind) {
    case Op::RECORD:
        op.ev->done = op.seq > op.ev->done ? op.seq : op.ev->done;
        op.ev->t = now_s();
        for (size_t i = 0; i < op.ev->pending.size(); i++)
            if (op.ev->pending[i].first == op.seq) {
                op.ev->pending.erase(op.ev->pending.begin() + (long)i);
                break;
            }
        break;
    case Op::WAIT: ensure_event(op.ev, op.seq); break;
    default: op.fn(); break;
    }
}

/* Runs s's queue up to (with `until`) the record of until/seq, else to the end. */
static void drain(Stream *s, Event *until, unsigned long long seq) {
    while (!s->q.empty()) {
        if (until && until->done >= seq) return;
        Op op = std::move(s->q.front());
        s->q.pop_front();
        run_op(op);
    }
}
static void drain_all() {
    bool any = true;
    while (any) {
        any = false;
        drain(&legacy_stream);
        drain(&per_thread_stream);
        for (Stream *s : streams)
            if (!s->q.empty()) {
                drain(s);
                any = true;
            }
    }
}
/* The legacy default stream waits for all blocking streams. */
static void drain_blocking() {
    drain(&per_thread_stream);
    for (Stream *s : streams)
        if (!(s->flags & cudaStreamNonBlocking)) drain(s);
}

static void enqueue(Stream *s, Op op) {
    if (!conf().lazy) {
        run_op(op);
        return;
    }
    if (s->legacy) {
        drain_blocking();
        run_op(op);
        return;
    }
    s->q.push_back(std::move(op));
}

/* ======================================================================== */
/* fibers                                                                   */
/* ======================================================================== */

enum FState : unsigned char { F_NEW, F_READY, F_BAR, F_WARP, F_DONE };

struct Fiber {
    void *sp;
    int stack; /* index into the pool, -1 none */
    FState state;
    unsigned lin;
    uint3 tid;
    /* the pending warp exchange */
    int op, arg, width, size, is_signed;
    unsigned mask;
    uint64_t val, out;
    const char *file;
    int line;
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
};

static const size_t STACK_SIZE = 256 * 1024;
struct Stack {
    char *base; /* guard page at base, usable above */
};

struct Launch {
    LaunchInfo info;
    std::string pretty;
    std::atomic<bool> entered{false};
    std::atomic<int> stop{0}; /* a launch error: no more blocks */
    int max_threads = 0;
    cudaError_t failed = cudaSuccess;
    std::vector<uintptr_t> arg_allocs;
};

struct ThreadState {
    Fiber fibers[1024];
    std::vector<Stack> stacks;
    std::vector<int> free_stacks;
    /* the block */
    int n = 0, live = 0, nwarps = 0, bar_waiting = 0, next_new = 0;
    unsigned warp_live[32], warp_wait[32];
    int bar_kind = 0, bar_acc = 0, bar_result = 0, bar_line = 0;
    const char *bar_file = nullptr;
    int q[1024];
    int qh = 0, qn = 0;
    int cur = -1, dying = -1;
    bool abandon = false;
    cudaError_t abandon_err = cudaSuccess;
    void *sched_sp = nullptr;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
    Launch *L = nullptr;
    bool in_kernel = false;
    /* shared memory */
    char *dyn_region = nullptr; /* SMEM_OPTIN_MAX rounded to pages, guard page after */
    size_t dyn_region_len = 0;
    char *static_arena = nullptr;
    size_t static_used = 0, static_peak = 0;
    /* faults */
    sigjmp_buf jmp;
    bool jmp_armed = false;
    char *altstack = nullptr;
};
static __thread ThreadState *ts;
static __thread Fiber *t_fiber;
static std::atomic<unsigned long long> block_gens;

static char *map_guarded(size_t len, bool guard_low, bool guard_high) {
    size_t total = len + (guard_low ? PAGE : 0) + (guard_high ? PAGE : 0);
    char *m = (char *)mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "cuda-emu: out of host memory\n");
        abort();
    }
    if (guard_low) mprotect(m, PAGE, PROT_NONE);
    if (guard_high) mprotect(m + total - PAGE, PAGE, PROT_NONE);
    return guard_low ? m + PAGE : m;
}

static void install_signals();

static ThreadState *state() {
    if (!ts) {
        ts = new ThreadState();
        ts->dyn_region_len = (SMEM_OPTIN_MAX + PAGE - 1) / PAGE * PAGE;
        ts->dyn_region = map_guarded(ts->dyn_region_len, false, true);
        ts->static_arena = map_guarded(SMEM_STATIC_MAX, false, true);
        install_signals();
    }
    return ts;
}

extern "C" void cuemu_switch(void **save_sp, void *new_sp);
extern "C" void cuemu_fiber_start();
extern "C" void cuemu_fiber_main(Fiber *f);

static int get_stack(ThreadState *t) {
    if (!t->free_stacks.empty()) {
        int s = t->free_stacks.back();
        t->free_stacks.pop_back();
        return s;
    }
    Stack st;
    st.base = map_guarded(STACK_SIZE, true, false);
    t->stacks.push_back(st);
    return (int)t->stacks.size() - 1;
}

static void start_fiber(ThreadState *t, Fiber *f) {
    f->stack = get_stack(t);
    /* Stack tops staggered (cache colouring): tops STACK_SIZE apart would all map to the same
     * cache sets, and every switch between fibers would miss. */
    char *top = t->stacks[f->stack].base + STACK_SIZE - (((size_t)f->stack * 1088) % 32768 & ~(size_t)63);
#if defined(__x86_64__)
    /* what cuemu_switch pops: r15 r14 r13 r12 rbx rbp, then the return address */
    uint64_t *sp = (uint64_t *)(top - 64);
    sp[0] = sp[1] = sp[2] = 0; /* r15 r14 r13 */
    sp[3] = (uint64_t)f;       /* r12: the argument */
    sp[4] = sp[5] = 0;         /* rbx rbp */
    sp[6] = (uint64_t)&cuemu_fiber_start;
    sp[7] = 0;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = t->stacks[f->stack].base;
    f->uc.uc_stack.ss_size = STACK_SIZE;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, (void (*)())cuemu_fiber_main, 1, f);
#endif
    f->state = F_READY;
}

static inline void set_current(Fiber *f) {
    t_fiber = f;
    t_threadIdx = f->tid;
}

/* Switches from fiber `from` (NULL: the scheduler) to fiber `to` (NULL: the scheduler). */
static inline void switch_to(ThreadState *t, Fiber *from, Fiber *to) {
    if (to) set_current(to);
#if defined(__x86_64__)
    cuemu_switch(from ? &from->sp : &t->sched_sp, to ? to->sp : t->sched_sp);
#else
    swapcontext(from ? &from->uc : &t->sched_uc, to ? &to->uc : &t->sched_uc);
#endif
}

static void push_ready(ThreadState *t, int i) {
    t->q[(t->qh + t->qn) % 1024] = i;
    t->qn++;
}
/* Next fiber to run (starting it if new), or -1. */
static int pick(ThreadState *t) {
    if (t->qn) {
        int i = t->q[t->qh];
        t->qh = (t->qh + 1) % 1024;
        t->qn--;
        return i;
    }
    if (t->next_new < t->n) {
        int k = t->next_new++;
        int i = cfg_.reverse ? t->n - 1 - k : k;
        start_fiber(t, &t->fibers[i]);
        return i;
    }
    return -1;
}

/* The current fiber waits: run someone else (or return to the scheduler). */
static void block_current(ThreadState *t) {
    Fiber *me = t_fiber;
    int i = pick(t);
    Fiber *to = i >= 0 ? &t->fibers[i] : nullptr;
    switch_to(t, me, to);
    /* resumed: whoever switched here set the thread-locals */
}

static std::string kernel_name(ThreadState *t) {
    std::lock_guard<std::recursive_mutex> lock(report_mutex);
    Launch *L = t->L;
    if (!L) return "?";
    std::string s = L->info.text;
    if (!L->pretty.empty()) s = L->pretty;
    char buf[256];
    snprintf(buf, sizeof buf, " launched at %s:%d", L->info.file, L->info.line);
    return s + buf;
}
static std::string coords(const Fiber *f) {
    char buf[160];
    snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", t_blockIdx.x, t_blockIdx.y, t_blockIdx.z,
             f ? f->tid.x : 0, f ? f->tid.y : 0, f ? f->tid.z : 0);
    return buf;
}

/* Abandons the launch from inside a fiber: back to the scheduler for good. */
[[noreturn]] static void abandon_launch(ThreadState *t, cudaError_t err) {
    t->abandon = true;
    t->abandon_err = err;
    Fiber *me = t_fiber;
    switch_to(t, me, nullptr);
    abort(); /* never resumed */
}

/* ---- barriers -------------------------------------------------------------- */

static void release_barrier(ThreadState *t, Fiber *me) {
    t->bar_result = t->bar_acc;
    t->bar_waiting = 0;
    if (!cfg_.reverse) {
        for (int i = 0; i < t->n; i++)
            if (t->fibers[i].state == F_BAR) {
                t->fibers[i].state = F_READY;
                if (&t->fibers[i] != me) push_ready(t, i);
            }
    } else {
        for (int i = t->n - 1; i >= 0; i--)
            if (t->fibers[i].state == F_BAR) {
                t->fibers[i].state = F_READY;
                if (&t->fibers[i] != me) push_ready(t, i);
            }
    }
}

__attribute__((noinline, cold)) static void cold_divergent_barrier(ThreadState *t, Fiber *me, const char *file,
                                                                  int line) {
    char key[600];
    snprintf(key, sizeof key, "divbar %s:%d %s:%d", t->bar_file, t->bar_line, file, line);
    if (first_time(key))
        warning("%s: %s reaches a different barrier (%s:%d) than other threads of its block (%s:%d): a "
                "__syncthreads in divergent code is undefined behaviour",
                kernel_name(t).c_str(), coords(me).c_str(), file, line, t->bar_file, t->bar_line);
}

int block_barrier(int kind, int pred, const char *file, int line) {
    ThreadState *t = ts;
    Fiber *me = t_fiber;
    if (!me) {
        error("__syncthreads() called outside a kernel (%s:%d)", file, line);
        return 0;
    }
    if (t->bar_waiting == 0) {
        t->bar_kind = kind;
        t->bar_file = file;
        t->bar_line = line;
        t->bar_acc = kind == B_AND ? 1 : 0;
    } else if (t->bar_line != line || t->bar_kind != kind || (t->bar_file != file && strcmp(t->bar_file, file))) {
        cold_divergent_barrier(t, me, file, line);
    }
    if (kind == B_COUNT)
        t->bar_acc += pred;
    else if (kind == B_AND)
        t->bar_acc &= pred;
    else if (kind == B_OR)
        t->bar_acc |= pred;
    me->state = F_BAR;
    me->file = file;
    me->line = line;
    if (++t->bar_waiting == t->live) {
        release_barrier(t, me);
        me->state = F_READY;
    } else {
        block_current(t);
    }
    return t->bar_result;
}

/* ---- warp exchanges -------------------------------------------------------- */

static const char *op_name(int op) {
    static const char *names[] = {"__syncwarp",      "__shfl_sync",       "__shfl_up_sync",    "__shfl_down_sync",
                                  "__shfl_xor_sync", "__ballot_sync",     "__any_sync",        "__all_sync",
                                  "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync",
                                  "__reduce_or_sync", "__reduce_xor_sync", "__match_any_sync", "__match_all_sync"};
    return op >= 0 && op < W_KIND_COUNT ? names[op] : "?";
}

__attribute__((noinline, cold)) static void cold_mismatch(ThreadState *t, int w, const Fiber &f0, const Fiber &f) {
    char key[600];
    snprintf(key, sizeof key, "mismatch %s:%d %s:%d", f0.file, f0.line, f.file, f.line);
    if (first_time(key))
        error("%s: block (%u,%u,%u) warp %d: lanes meet in different warp intrinsics (%s at %s:%d, %s at %s:%d)",
              kernel_name(t).c_str(), t_blockIdx.x, t_blockIdx.y, t_blockIdx.z, w, op_name(f0.op), f0.file, f0.line,
              op_name(f.op), f.file, f.line);
}
__attribute__((noinline, cold)) static int cold_bad_width(ThreadState *t, const Fiber &f0) {
    error("%s: %s with width %d (must be a power of 2, at most 32) at %s:%d", kernel_name(t).c_str(), op_name(f0.op),
          f0.width, f0.file, f0.line);
    return 32;
}
__attribute__((noinline, cold)) static void cold_shfl_src(ThreadState *t, int w, int lane, const Fiber &f, int src) {
    char key[600];
    snprintf(key, sizeof key, "shflsrc %s:%d", f.file, f.line);
    if (first_time(key))
        warning("%s: block (%u,%u,%u) lane %d of warp %d: %s reads lane %d, which %s: the value is undefined on the "
                "GPU (poisoned here; harmless if discarded) [%s:%d]",
                kernel_name(t).c_str(), t_blockIdx.x, t_blockIdx.y, t_blockIdx.z, lane, w, op_name(f.op), src,
                (w * 32 + src) >= t->n ? "does not exist (partial warp)"
                : t->fibers[w * 32 + src].state == F_DONE ? "has exited"
                                                           : "is not in the mask",
                f.file, f.line);
}
static void resolve_collective(ThreadState *t, Fiber *F, unsigned group, Fiber &f0);
static void wake_group(ThreadState *t, int w, unsigned group, Fiber *me);

static void resolve(ThreadState *t, int w, unsigned group, Fiber *me) {
    Fiber *F = &t->fibers[w * 32];
    int first = __builtin_ctz(group);
    Fiber &f0 = F[first];
    /* all lanes must call the same intrinsic */
    for (unsigned g = group; g; g &= g - 1) {
        Fiber &f = F[__builtin_ctz(g)];
        if (f.op != f0.op || f.size != f0.size || f.width != f0.width) cold_mismatch(t, w, f0, f);
    }
    const int op = f0.op;
    if (op >= W_SHFL_IDX && op <= W_SHFL_XOR) {
        int width = f0.width;
        if (width <= 0 || width > 32 || (width & (width - 1))) width = cold_bad_width(t, f0);
        for (unsigned g = group; g; g &= g - 1) {
            int lane = __builtin_ctz(g);
            Fiber &f = F[lane];
            int seg = lane & ~(width - 1), src;
            switch (op) {
            case W_SHFL_IDX: src = seg + (f.arg & (width - 1)); break;
            case W_SHFL_UP: src = (lane - seg) >= f.arg ? lane - f.arg : lane; break;
            case W_SHFL_DOWN: src = (lane - seg) + f.arg < width ? lane + f.arg : lane; break;
            default: src = lane ^ f.arg; if (src >= seg + width || src < 0) src = lane; break;
            }
            if (src == lane) {
                f.out = f.val;
            } else if (src >= 0 && src < 32 && (group >> src & 1)) {
                f.out = F[src].val;
            } else {
                /* undefined on the GPU: the source lane did not take part (exited, not in the mask, or past the block) */
                f.out = ~(uint64_t)0;
                cold_shfl_src(t, w, lane, f, src);
            }
        }
    } else if (op != W_SYNC) {
        resolve_collective(t, F, group, f0);
    }
    wake_group(t, w, group, me);
}

__attribute__((noinline)) static void resolve_collective(ThreadState *t, Fiber *F, unsigned group, Fiber &f0) {
    (void)t;
    const int op = f0.op;
    {
        /* collective results, the same for every lane (match_any: per value) */
        uint64_t vals[32];
        for (unsigned g = group; g; g &= g - 1) {
            int lane = __builtin_ctz(g);
            vals[lane] = F[lane].val;
        }
        unsigned res = 0;
        int64_t sres = 0;
        bool first_v = true;
        for (unsigned g = group; g; g &= g - 1) {
            int lane = __builtin_ctz(g);
            uint32_t u = (uint32_t)vals[lane];
            int32_t s = (int32_t)u;
            switch (op) {
            case W_BALLOT: if (u) res |= 1u << lane; break;
            case W_ANY: res |= u != 0; break;
            case W_ALL: res = first_v ? (u != 0) : (res & (u != 0)); break;
            case W_RED_ADD: res += u; break;
            case W_RED_MIN:
                if (F[lane].is_signed) sres = first_v || s < sres ? s : sres;
                else res = first_v || u < res ? u : res;
                break;
            case W_RED_MAX:
                if (F[lane].is_signed) sres = first_v || s > sres ? s : sres;
                else res = first_v || u > res ? u : res;
                break;
            case W_RED_AND: res = first_v ? u : res & u; break;
            case W_RED_OR: res |= u; break;
            case W_RED_XOR: res ^= u; break;
            default: break;
            }
            first_v = false;
        }
        if ((op == W_RED_MIN || op == W_RED_MAX) && f0.is_signed) res = (unsigned)(int32_t)sres;
        for (unsigned g = group; g; g &= g - 1) {
            int lane = __builtin_ctz(g);
            unsigned r = res;
            if (op == W_MATCH_ANY) {
                r = 0;
                for (unsigned h = group; h; h &= h - 1)
                    if (vals[__builtin_ctz(h)] == vals[lane]) r |= 1u << __builtin_ctz(h);
            } else if (op == W_MATCH_ALL) {
                r = group;
                for (unsigned h = group; h; h &= h - 1)
                    if (vals[__builtin_ctz(h)] != vals[lane]) r = 0;
            }
            F[lane].out = r;
        }
    }
}

static void wake_group(ThreadState *t, int w, unsigned group, Fiber *me) {
    Fiber *F = &t->fibers[w * 32];
    /* wake the group */
    t->warp_wait[w] &= ~group;
    if (!cfg_.reverse) {
        for (unsigned g = group; g; g &= g - 1) {
            Fiber &f = F[__builtin_ctz(g)];
            f.state = F_READY;
            if (&f != me) push_ready(t, w * 32 + __builtin_ctz(g));
        }
    } else {
        for (int lane = 31; lane >= 0; lane--)
            if (group >> lane & 1) {
                Fiber &f = F[lane];
                f.state = F_READY;
                if (&f != me) push_ready(t, w * 32 + lane);
            }
    }
}

/* Resolves the group of waiting lanes with this mask if every live lane it names waits with it. */
static bool try_resolve(ThreadState *t, int w, unsigned mask, Fiber *me) {
    unsigned need = mask & t->warp_live[w];
    if (!need) return false;
    if ((t->warp_wait[w] & need) != need) return false;
    Fiber *F = &t->fibers[w * 32];
    for (unsigned g = need; g; g &= g - 1)
        if (F[__builtin_ctz(g)].mask != mask) return false;
    resolve(t, w, need, me);
    return true;
}

__attribute__((noinline, cold)) static unsigned bad_own_mask(ThreadState *t, Fiber *me, int op, unsigned mask,
                                                            const char *file, int line) {
    const int lane = (int)(me->lin & 31);
    char key[600];
    snprintf(key, sizeof key, "ownmask %s:%d", file, line);
    if (first_time(key))
        error("%s: %s lane %d calls %s with mask 0x%08x, which does not name itself (undefined) [%s:%d]",
              kernel_name(t).c_str(), coords(me).c_str(), lane, op_name(op), mask, file, line);
    return mask | 1u << lane;
}

uint64_t warp_xchg(int op, unsigned mask, int arg, int width, uint64_t val, int size, int is_signed, const char *file,
                   int line) {
    ThreadState *t = ts;
    Fiber *me = t_fiber;
    if (__builtin_expect(!me, 0)) {
        error("%s called outside a kernel (%s:%d)", op_name(op), file, line);
        return val;
    }
    const int w = (int)(me->lin >> 5), lane = (int)(me->lin & 31);
    if (__builtin_expect(!(mask >> lane & 1), 0)) mask = bad_own_mask(t, me, op, mask, file, line);
    me->op = op;
    me->arg = arg;
    me->width = width;
    me->size = size;
    me->is_signed = is_signed;
    me->mask = mask;
    me->val = val;
    me->file = file;
    me->line = line;
    me->state = F_WARP;
    t->warp_wait[w] |= 1u << lane;
    if (try_resolve(t, w, mask, me)) {
        me->state = F_READY;
        return me->out;
    }
    block_current(t);
    return me->out;
}

void warp_op(int op, unsigned mask, int arg, int width, const void *val, int size, void *res, int is_signed,
             const char *file, int line) {
    uint64_t v = 0;
    if (size) memcpy(&v, val, (size_t)(size > 8 ? 8 : size));
    uint64_t r = warp_xchg(op, mask, arg, width, v, size, is_signed, file, line);
    if (res) memcpy(res, &r, 4);
}

unsigned active_mask() {
    ThreadState *t = ts;
    Fiber *me = t_fiber;
    if (!me) return 0;
    return t->warp_live[me->lin >> 5];
}

/* ---- thread exit ----------------------------------------------------------- */

extern "C" void cuemu_fiber_main(Fiber *f) {
    ThreadState *t = ts;
    t->L->info.run(t->L->info.call);
    /* the thread has exited */
    f->state = F_DONE;
    t->live--;
    const int w = (int)(f->lin >> 5);
    t->warp_live[w] &= ~(1u << (f->lin & 31));
    if (t->bar_waiting > 0 && t->bar_waiting == t->live) release_barrier(t, nullptr);
    /* waiting lanes of this warp may no longer need this one */
    unsigned waiting = t->warp_wait[w];
    while (waiting) {
        const unsigned m = t->fibers[w * 32 + __builtin_ctz(waiting)].mask;
        unsigned same = 0;
        for (unsigned g = waiting; g; g &= g - 1)
            if (t->fibers[w * 32 + __builtin_ctz(g)].mask == m) same |= 1u << __builtin_ctz(g);
        try_resolve(t, w, m, nullptr);
        waiting &= ~same;
    }
    t->dying = (int)(f - t->fibers);
    switch_to(t, f, nullptr);
    abort(); /* never resumed */
}

/* ---- kernel entry ------------------------------------------------------------ */

void kernel_entry(int max_threads, const char *pretty) {
    ThreadState *t = ts;
    Launch *L = t ? t->L : nullptr;
    if (!L || L->entered.load(std::memory_order_relaxed) || L->entered.exchange(true)) return;
    {
        std::lock_guard<std::recursive_mutex> lock(report_mutex);
        L->pretty = pretty;
    }
    L->max_threads = max_threads;
    const unsigned threads = t_blockDim.x * t_blockDim.y * t_blockDim.z;
    if (max_threads > 0 && threads > (unsigned)max_threads) {
        error("%s: %u threads per block, but the kernel has __launch_bounds__(%d): the GPU refuses the launch "
              "(cudaErrorInvalidValue / too many resources requested)",
              kernel_name(t).c_str(), threads, max_threads);
        L->stop = 1;
        abandon_launch(t, cudaErrorLaunchOutOfResources);
    }
    if (max_threads == 0 && threads > 256 && first_time(std::string("nolb ") + pretty))
        warning("%s: %u threads per block without __launch_bounds__: the launch fails on the GPU if the kernel needs "
                "more than %u registers per thread (check with -Xptxas -v)",
                kernel_name(t).c_str(), threads, 65536 / threads);
}

void trap(const char *what, const char *file, int line) {
    ThreadState *t = ts;
    error("%s: %s %s at %s:%d", t && t->L ? kernel_name(t).c_str() : "host", coords(t_fiber).c_str(), what, file, line);
    if (t && t->in_kernel && conf().cont) abandon_launch(t, cudaErrorLaunchFailure);
    abort();
}

void *smem_static_alloc(SmemSlot &slot, size_t size, size_t align, const char *name, const char *file, int line) {
    ThreadState *t = ts;
    if (!t || !t->in_kernel) {
        error("__shared__ %s used outside a kernel (%s:%d)", name, file, line);
        abort();
    }
    size_t off = (t->static_used + align - 1) & ~(align - 1);
    if (off + size > SMEM_STATIC_MAX) {
        error("%s: static __shared__ memory over 48 KiB (%s: %zu bytes at offset %zu, %s:%d): ptxas refuses this",
              kernel_name(t).c_str(), name, size, off, file, line);
        abort();
    }
    t->static_used = off + size;
    if (t->static_used > t->static_peak) t->static_peak = t->static_used;
    if (conf().poison) memset(t->static_arena + off, POISON, size);
    slot.gen = t_block_gen;
    slot.off = off;
    return t->static_arena + off;
}

/* ---- faults -------------------------------------------------------------------- */

static void fault_handler(int sig, siginfo_t *si, void *ctx) {
    ThreadState *t = ts;
    const void *pc = nullptr;
#if defined(__x86_64__)
    pc = (const void *)((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
#else
    (void)ctx;
#endif
    uintptr_t a = (uintptr_t)si->si_addr;
    char what[1024] = "";
    if (sig == SIGFPE) {
        snprintf(what, sizeof what, "arithmetic fault (integer division by zero?): the GPU does not trap, the result is "
                                    "undefined");
    } else if (Alloc *al = find_mapping(a)) {
        if (a >= al->ptr + al->size)
            snprintf(what, sizeof what, "address %p is %zu bytes past the end of a %zu-byte %s allocation", (void *)a,
                     (size_t)(a - al->ptr - al->size), al->size, kind_name(al->kind));
        else
            snprintf(what, sizeof what, "address %p is %zu bytes before the start of a %zu-byte %s allocation",
                     (void *)a, (size_t)(al->ptr - a), al->size, kind_name(al->kind));
    } else if (t && a >= (uintptr_t)t->dyn_region && a < (uintptr_t)t->dyn_region + t->dyn_region_len + PAGE) {
        snprintf(what, sizeof what, "address %p is %zu bytes past the end of the launch's dynamic shared memory (%zu bytes)",
                 (void *)a, (size_t)(a - (uintptr_t)t->dyn_region - t->dyn_region_len),
                 t->L ? t->L->info.cfg.smem : (size_t)0);
    } else if (t && a >= (uintptr_t)t->static_arena && a < (uintptr_t)t->static_arena + SMEM_STATIC_MAX + PAGE) {
        snprintf(what, sizeof what, "address %p is past the static shared memory", (void *)a);
    } else {
        bool stack = false;
        if (t)
            for (auto &s : t->stacks)
                if (a >= (uintptr_t)s.base - PAGE && a < (uintptr_t)s.base) stack = true;
        if (stack)
            snprintf(what, sizeof what, "stack overflow of a kernel thread (%zu KiB fiber stacks)", STACK_SIZE / 1024);
        else
            snprintf(what, sizeof what, "address %p is not device memory (%s)", (void *)a,
                     a < 65536 ? "NULL pointer" : a >= 0xff00000000000000ull ? "poisoned (uninitialised) value"
                                                                            : "host or freed memory?");
    }
    if (t && t->in_kernel) {
        n_errors++;
        fprintf(stderr, "cuda-emu: ERROR: %s in %s, %s: %s, at %s\n", sig == SIGFPE ? "fault" : "illegal memory access",
                kernel_name(t).c_str(), coords(t_fiber).c_str(), what,
                pc ? symbolize((const char *)pc + 1).c_str() : "?");
        if (conf().cont && t->jmp_armed) siglongjmp(t->jmp, 1);
        fprintf(stderr, "cuda-emu: aborting (CUDA_EMU_ON_ERROR=continue abandons the launch instead)\n");
    } else {
        n_errors++;
        fprintf(stderr, "cuda-emu: ERROR: host code faulted: %s, at %s\n", what,
                pc ? symbolize((const char *)pc + 1).c_str() : "?");
    }
    void *bt[32];
    int n = backtrace(bt, 32);
    backtrace_symbols_fd(bt, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signals() {
    static bool done;
    ThreadState *t = ts;
    if (!t->altstack) {
        t->altstack = (char *)malloc(256 * 1024);
        stack_t ss;
        ss.ss_sp = t->altstack;
        ss.ss_size = 256 * 1024;
        ss.ss_flags = 0;
        sigaltstack(&ss, nullptr);
    }
    if (done) return;
    done = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    sigaction(SIGFPE, &sa, nullptr);
}

/* ---- running a block and a launch -------------------------------------------------------------- */

static void reset_fibers(ThreadState *t) {
    for (int i = 0; i < t->n; i++) {
        Fiber &f = t->fibers[i];
        if (f.stack >= 0) {
            t->free_stacks.push_back(f.stack);
            f.stack = -1;
        }
    }
}

static std::string thread_list(ThreadState *t, FState st, int line, const char *file) {
    std::string out;
    int run_lo = -1, prev = -2;
    char buf[64];
    auto flush = [&](int hi) {
        if (run_lo < 0) return;
        if (!out.empty()) out += ",";
        if (run_lo == hi)
            snprintf(buf, sizeof buf, "%d", run_lo);
        else
            snprintf(buf, sizeof buf, "%d-%d", run_lo, hi);
        out += buf;
    };
    for (int i = 0; i < t->n; i++) {
        Fiber &f = t->fibers[i];
        bool match = f.state == st && (line < 0 || (f.line == line && f.file == file));
        if (match) {
            if (prev != i - 1) {
                flush(prev);
                run_lo = i;
            }
            prev = i;
        }
    }
    flush(prev);
    return out;
}

static void report_deadlock(ThreadState *t) {
    std::string msg = "deadlock: no thread of the block can go on: ";
    char buf[512];
    std::set<std::pair<const char *, int>> sites;
    for (int i = 0; i < t->n; i++)
        if (t->fibers[i].state == F_BAR || t->fibers[i].state == F_WARP)
            sites.insert({t->fibers[i].file, t->fibers[i].line});
    for (auto &s : sites) {
        for (FState st : {F_BAR, F_WARP}) {
            std::string l = thread_list(t, st, s.second, s.first);
            if (l.empty()) continue;
            int first = atoi(l.c_str());
            snprintf(buf, sizeof buf, "threads %s wait in %s at %s:%d", l.c_str(),
                     st == F_BAR ? "__syncthreads" : op_name(t->fibers[first].op), s.first, s.second);
            if (st == F_WARP) {
                char m[64];
                snprintf(m, sizeof m, " (mask 0x%08x)", t->fibers[first].mask);
                msg += buf;
                msg += m;
            } else {
                msg += buf;
            }
            msg += "; ";
        }
    }
    std::string done = thread_list(t, F_DONE, -1, nullptr);
    msg += "exited: " + (done.empty() ? std::string("none") : done);
    error("%s, block (%u,%u,%u): %s", kernel_name(t).c_str(), t_blockIdx.x, t_blockIdx.y, t_blockIdx.z, msg.c_str());
}

/* 0, or the error the block ended with. */
static cudaError_t run_block(ThreadState *t) {
    const unsigned n = t_blockDim.x * t_blockDim.y * t_blockDim.z;
    t->n = (int)n;
    t->live = (int)n;
    t->nwarps = (int)((n + 31) / 32);
    t->bar_waiting = 0;
    t->next_new = 0;
    t->qh = t->qn = 0;
    t->dying = -1;
    t->abandon = false;
    for (int w = 0; w < t->nwarps; w++) {
        unsigned lanes = n - (unsigned)w * 32 >= 32 ? 32 : n - (unsigned)w * 32;
        t->warp_live[w] = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        t->warp_wait[w] = 0;
    }
    const unsigned bx = t_blockDim.x, by = t_blockDim.y;
    for (unsigned i = 0; i < n; i++) {
        Fiber &f = t->fibers[i];
        f.state = F_NEW;
        f.stack = -1;
        f.lin = i;
        f.tid.x = i % bx;
        f.tid.y = (i / bx) % by;
        f.tid.z = i / (bx * by);
        f.line = 0;
        f.file = "";
    }
    for (;;) {
        int i = pick(t);
        if (i < 0) break;
        switch_to(t, nullptr, &t->fibers[i]);
        t_fiber = nullptr;
        if (t->dying >= 0) {
            Fiber &d = t->fibers[t->dying];
            t->free_stacks.push_back(d.stack);
            d.stack = -1;
            t->dying = -1;
        }
        if (t->abandon) {
            reset_fibers(t);
            return t->abandon_err;
        }
    }
    if (t->live > 0) {
        report_deadlock(t);
        reset_fibers(t);
        if (!conf().cont) {
            fprintf(stderr, "cuda-emu: aborting (CUDA_EMU_ON_ERROR=continue abandons the launch instead)\n");
            abort();
        }
        return cudaErrorLaunchFailure;
    }
    return cudaSuccess;
}

/* The blocks of a launch, taken one at a time by the calling thread and the workers. */
struct Job {
    Launch *L;
    unsigned long long nblocks;
    std::atomic<unsigned long long> next{0};
    std::atomic<int> err{cudaSuccess};
    std::atomic<size_t> static_peak{0};
};

static void run_blocks(Job *J) {
    ThreadState *t = state();
    Launch *L = J->L;
    const LaunchCfg &c = L->info.cfg;
    t->L = L;
    t->in_kernel = true;
    t_gridDim = uint3{c.grid.x, c.grid.y, c.grid.z};
    t_blockDim = uint3{c.block.x, c.block.y, c.block.z};
    t->static_peak = 0;
    char *dyn = t->dyn_region + t->dyn_region_len - ((c.smem + 15) & ~(size_t)15);
    if (sigsetjmp(t->jmp, 1)) {
        /* a fault inside the kernel, CUDA_EMU_ON_ERROR=continue */
        t->jmp_armed = false;
        reset_fibers(t);
        J->err = cudaErrorIllegalAddress;
        L->stop = 1;
    } else {
        t->jmp_armed = true;
        for (;;) {
            if (L->stop.load(std::memory_order_relaxed)) break;
            const unsigned long long b = J->next.fetch_add(1);
            if (b >= J->nblocks) break;
            const unsigned long long k = cfg_.reverse ? J->nblocks - 1 - b : b;
            t_blockIdx = uint3{(unsigned)(k % c.grid.x), (unsigned)((k / c.grid.x) % c.grid.y),
                               (unsigned)(k / ((unsigned long long)c.grid.x * c.grid.y))};
            t_block_gen = ++block_gens;
            t->static_used = 0;
            t_smem_static = t->static_arena;
            t_smem_dyn = dyn;
            if (cfg_.poison && c.smem) memset(dyn, POISON, c.smem);
            cudaError_t e = run_block(t);
            if (e != cudaSuccess) {
                J->err = e;
                L->stop = 1;
                break;
            }
        }
        t->jmp_armed = false;
    }
    size_t peak = J->static_peak.load();
    while (t->static_peak > peak && !J->static_peak.compare_exchange_weak(peak, t->static_peak)) {
    }
    t->in_kernel = false;
    t->L = nullptr;
    t_fiber = nullptr;
}

/* Worker threads: blocks of one launch run on several cores (blocks are independent; a kernel
 * whose result depends on the order of its blocks is racy on the GPU too). */
struct Pool { /* never destroyed: workers still wait on it at exit */
    std::mutex mutex;
    std::condition_variable cv, done_cv;
    Job *job = nullptr;
    unsigned long long gen = 0;
    int busy = 0, size = 0;
};
static Pool *the_pool = new Pool();
#define pool_mutex (the_pool->mutex)
#define pool_cv (the_pool->cv)
#define pool_done_cv (the_pool->done_cv)
#define pool_job (the_pool->job)
#define pool_gen (the_pool->gen)
#define pool_busy (the_pool->busy)

static void worker_main() {
    unsigned long long seen = 0;
    for (;;) {
        Job *J;
        {
            std::unique_lock<std::mutex> lock(pool_mutex);
            pool_cv.wait(lock, [&] { return pool_gen != seen; });
            seen = pool_gen;
            J = pool_job;
        }
        run_blocks(J);
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            if (--pool_busy == 0) pool_done_cv.notify_all();
        }
    }
}

static void run_launch(Launch *L) {
    ThreadState *t = state();
    const LaunchCfg &c = L->info.cfg;
    if (t->in_kernel) {
        error("a kernel launched from inside a kernel (dynamic parallelism is not emulated)");
        return;
    }
    Job J;
    J.L = L;
    J.nblocks = (unsigned long long)c.grid.x * c.grid.y * c.grid.z;
    if (cfg_.verbose)
        fprintf(stderr, "cuda-emu: launch %s at %s:%d grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", L->info.text,
                L->info.file, L->info.line, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.smem);
    const int helpers = (int)std::min<unsigned long long>((unsigned long long)cfg_.threads - 1, J.nblocks - 1);
    if (helpers > 0) {
        std::unique_lock<std::mutex> lock(pool_mutex);
        while (the_pool->size < cfg_.threads - 1) {
            std::thread(worker_main).detach();
            the_pool->size++;
        }
        pool_job = &J;
        pool_busy = the_pool->size;
        pool_gen++;
        pool_cv.notify_all();
    }
    run_blocks(&J);
    if (helpers > 0) {
        std::unique_lock<std::mutex> lock(pool_mutex);
        pool_done_cv.wait(lock, [] { return pool_busy == 0; });
        pool_job = nullptr;
    }
    const cudaError_t err = (cudaError_t)J.err.load();
    if (err == cudaSuccess && J.static_peak + c.smem > SMEM_OPTIN_MAX)
        error("%s: %zu bytes of static + %zu of dynamic shared memory exceed the %zu bytes a block can have",
              L->pretty.c_str(), J.static_peak.load(), c.smem, SMEM_OPTIN_MAX);
    if (err != cudaSuccess) {
        last_error = err;
        L->failed = err;
    }
    /* writes just past the end of an argument's allocation */
    for (uintptr_t p : L->arg_allocs) {
        auto it = allocs.find(p);
        if (it != allocs.end()) {
            char when[600];
            snprintf(when, sizeof when, "after kernel %s (launched at %s:%d)",
                     L->pretty.empty() ? L->info.text : L->pretty.c_str(), L->info.file, L->info.line);
            check_canaries(it->second, when);
        }
    }
}

unsigned long long error_count() { return n_errors; }

/* Registered attributes of kernels (by function address). */
static std::unordered_map<const void *, int> max_dyn_smem;

void submit_launch(const LaunchInfo &info, const ArgList &args) {
    API_LOCK;
    conf();
    n_launches++;
    const LaunchCfg &c = info.cfg;
    auto bad = [&](cudaError_t e, const char *why) {
        error("launch of %s at %s:%d refused (%s): %s", info.text, info.file, info.line, cudaGetErrorName(e), why);
        last_error = e;
        info.destroy(info.call);
    };
    char why[512];
    const unsigned long long threads = (unsigned long long)c.block.x * c.block.y * c.block.z;
    if (!threads || !c.grid.x || !c.grid.y || !c.grid.z) {
        snprintf(why, sizeof why, "grid (%u,%u,%u) block (%u,%u,%u): a dimension is 0", c.grid.x, c.grid.y, c.grid.z,
                 c.block.x, c.block.y, c.block.z);
        return bad(cudaErrorInvalidConfiguration, why);
    }
    if (c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64 || threads > 1024) {
        snprintf(why, sizeof why, "block (%u,%u,%u): at most 1024 threads (z at most 64)", c.block.x, c.block.y,
                 c.block.z);
        return bad(cudaErrorInvalidConfiguration, why);
    }
    if (c.grid.x > 2147483647u || c.grid.y > 65535 || c.grid.z > 65535) {
        snprintf(why, sizeof why, "grid (%u,%u,%u): y and z at most 65535", c.grid.x, c.grid.y, c.grid.z);
        return bad(cudaErrorInvalidConfiguration, why);
    }
    if (c.smem > SMEM_OPTIN_MAX) {
        snprintf(why, sizeof why, "%zu bytes of dynamic shared memory (at most %zu)", c.smem, SMEM_OPTIN_MAX);
        return bad(cudaErrorInvalidValue, why);
    }
    if (c.smem > SMEM_DEFAULT_MAX) {
        auto it = max_dyn_smem.find(info.func);
        if (it == max_dyn_smem.end() || (size_t)it->second < c.smem) {
            snprintf(why, sizeof why,
                     "%zu bytes of dynamic shared memory need cudaFuncSetAttribute(kernel, "
                     "cudaFuncAttributeMaxDynamicSharedMemorySize, >= %zu) first (set: %d)",
                     c.smem, c.smem, it == max_dyn_smem.end() ? 0 : it->second);
            return bad(cudaErrorInvalidValue, why);
        }
    }
    if (info.param_bytes > 32764) {
        snprintf(why, sizeof why, "%zu bytes of kernel parameters (at most 32764)", info.param_bytes);
        return bad(cudaErrorInvalidValue, why);
    }
    cudaError_t serr;
    Stream *s = get_stream(c.stream, "kernel launch", &serr);
    if (!s) return bad(serr, "invalid stream");
    Launch *L = new Launch();
    L->info = info;
    for (int i = 0; i < args.n; i++) {
        const ArgPtr &a = args.ptrs[i];
        Alloc *al = find_alloc(a.ptr, 0);
        if (!al) {
            error("launch of %s at %s:%d: argument %d%s = %p is %s: the kernel would fault on the GPU "
                  "(cudaErrorIllegalAddress); launch skipped",
                  info.text, info.file, info.line, a.arg, a.what, a.ptr, describe(a.ptr, 1).c_str());
            last_error = cudaErrorIllegalAddress;
            info.destroy(info.call);
            delete L;
            return;
        }
        L->arg_allocs.push_back(al->ptr);
    }
    Op op;
    op.kind = Op::KERNEL;
    op.fn = [L] {
        run_launch(L);
        L->info.destroy(L->info.call);
        delete L;
    };
    enqueue(s, std::move(op));
}

} // namespace cuemu

/* ======================================================================== */
/* the C API                                                                */
/* ======================================================================== */

using namespace cuemu;

#define CALLER __builtin_return_address(0)

extern "C" {

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
#define N(x)                                                                                                           \
    case x: return #x;
        N(cudaSuccess) N(cudaErrorInvalidValue) N(cudaErrorMemoryAllocation) N(cudaErrorInitializationError)
        N(cudaErrorCudartUnloading) N(cudaErrorInvalidConfiguration) N(cudaErrorInvalidPitchValue)
        N(cudaErrorInvalidSymbol) N(cudaErrorInvalidHostPointer) N(cudaErrorInvalidDevicePointer)
        N(cudaErrorInvalidMemcpyDirection) N(cudaErrorInsufficientDriver) N(cudaErrorMissingConfiguration)
        N(cudaErrorInvalidDeviceFunction) N(cudaErrorNoDevice) N(cudaErrorInvalidDevice) N(cudaErrorStartupFailure)
        N(cudaErrorInvalidKernelImage) N(cudaErrorNoKernelImageForDevice) N(cudaErrorInvalidPtx)
        N(cudaErrorUnsupportedPtxVersion) N(cudaErrorInvalidResourceHandle) N(cudaErrorNotReady)
        N(cudaErrorIllegalAddress) N(cudaErrorLaunchOutOfResources) N(cudaErrorLaunchTimeout)
        N(cudaErrorHostMemoryAlreadyRegistered) N(cudaErrorHostMemoryNotRegistered) N(cudaErrorAssert)
        N(cudaErrorMisalignedAddress) N(cudaErrorLaunchFailure) N(cudaErrorNotSupported) N(cudaErrorNotPermitted)
        N(cudaErrorDevicesUnavailable) N(cudaErrorSymbolNotFound) N(cudaErrorIllegalInstruction)
        N(cudaErrorHardwareStackError) N(cudaErrorTimeout) N(cudaErrorUnknown)
#undef N
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidHostPointer: return "invalid host pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorUnsupportedPtxVersion: return "the provided PTX was compiled with an unsupported toolchain.";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorHostMemoryAlreadyRegistered: return "part or all of the requested memory range is already mapped";
    case cudaErrorHostMemoryNotRegistered: return "pointer does not correspond to a registered memory region";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    default: return "unknown error";
    }
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }

/* ---- devices --------------------------------------------------------------------------- */

static __thread int current_device;

cudaError_t cudaGetDeviceCount(int *count) {
    const Config &c = conf();
    if (!count) return fail(cudaErrorInvalidValue);
    if (c.no_driver) {
        *count = 0;
        return fail(cudaErrorInsufficientDriver);
    }
    if (c.devices <= 0) {
        *count = 0;
        return fail(cudaErrorNoDevice);
    }
    *count = c.devices;
    return cudaSuccess;
}

static cudaError_t check_device(int d) {
    int n;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return e;
    if (d < 0 || d >= n) return fail(cudaErrorInvalidDevice);
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    cudaError_t e = check_device(device);
    if (e == cudaSuccess) current_device = device;
    return e;
}
cudaError_t cudaGetDevice(int *device) {
    if (!device) return fail(cudaErrorInvalidValue);
    *device = current_device;
    return cudaSuccess;
}
cudaError_t cudaSetDeviceFlags(unsigned int) { return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) {
    if (!v) return fail(cudaErrorInvalidValue);
    *v = conf().no_driver ? 0 : 13000;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
    if (!v) return fail(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
    cudaError_t e = check_device(device);
    if (e != cudaSuccess) return e;
    if (!p) return fail(cudaErrorInvalidValue);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "flashmoe CPU emulator");
    p->totalGlobalMem = conf().mem;
    p->sharedMemPerBlock = SMEM_DEFAULT_MAX;
    p->sharedMemPerBlockOptin = SMEM_OPTIN_MAX;
    p->sharedMemPerMultiprocessor = 233472;
    p->reservedSharedMemPerBlock = 1024;
    p->regsPerBlock = 65536;
    p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->memPitch = 2147483647;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->totalConstMem = 65536;
    p->major = 9;
    p->minor = 0;
    p->textureAlignment = 512;
    p->texturePitchAlignment = 32;
    p->multiProcessorCount = 132;
    p->canMapHostMemory = 1;
    p->concurrentKernels = 1;
    p->asyncEngineCount = 2;
    p->unifiedAddressing = 1;
    p->memoryBusWidth = 6144;
    p->l2CacheSize = 50 * 1024 * 1024;
    p->persistingL2CacheMaxSize = 0;
    p->maxThreadsPerMultiProcessor = 2048;
    p->streamPrioritiesSupported = 1;
    p->globalL1CacheSupported = 1;
    p->localL1CacheSupported = 1;
    p->managedMemory = 1;
    p->hostNativeAtomicSupported = 0;
    p->concurrentManagedAccess = 1;
    p->computePreemptionSupported = 1;
    p->cooperativeLaunch = 1;
    p->maxBlocksPerMultiProcessor = 32;
    p->hostRegisterSupported = 1;
    p->memoryPoolsSupported = 1;
    p->clusterLaunch = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    cudaError_t e = check_device(device);
    if (e != cudaSuccess) return e;
    if (!value) return fail(cudaErrorInvalidValue);
    struct cudaDeviceProp p;
    cudaGetDeviceProperties(&p, device);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = 1024; break;
    case cudaDevAttrMaxBlockDimY: *value = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *value = 64; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxGridDimY: *value = 65535; break;
    case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrTotalConstantMemory: *value = 65536; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = 65536; break;
    case cudaDevAttrClockRate: *value = 1980000; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrCanMapHostMemory: *value = 1; break;
    case cudaDevAttrConcurrentKernels: *value = 1; break;
    case cudaDevAttrMemoryClockRate: *value = 2619000; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    case cudaDevAttrAsyncEngineCount: *value = 2; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = 65536; break;
    case cudaDevAttrManagedMemory: *value = 1; break;
    case cudaDevAttrCooperativeLaunch: *value = 1; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)SMEM_OPTIN_MAX; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = 32; break;
    case cudaDevAttrMemoryPoolsSupported: *value = 1; break;
    default: *value = 0; break;
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    API_LOCK;
    drain_all();
    return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) {
    API_LOCK;
    drain_all();
    return cudaSuccess;
}

/* ---- memory ---------------------------------------------------------------------------- */

static cudaError_t do_malloc(void **p, size_t size, const void *caller) {
    API_LOCK;
    const Config &c = conf();
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (c.devices <= 0 || c.no_driver) return fail(c.no_driver ? cudaErrorInsufficientDriver : cudaErrorNoDevice);
    if (size == 0) return cudaSuccess;
    size_t rsize = (size + 255) & ~(size_t)255;
    if (rsize < size || dev_used + rsize > c.mem) return fail(cudaErrorMemoryAllocation);
    void *q = guarded_alloc(size, A_DEVICE, caller);
    if (!q) return fail(cudaErrorMemoryAllocation);
    dev_used += rsize;
    dev_live++;
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t size) { return do_malloc(p, size, CALLER); }
cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t) { return do_malloc(p, size, CALLER); }

static cudaError_t do_free(void *p, const void *caller) {
    API_LOCK;
    if (!p) return cudaSuccess;
    drain_all(); /* cudaFree synchronises the device */
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end() || it->second.kind != A_DEVICE) {
        error("cudaFree(%p) by %s: %s", p, symbolize(caller).c_str(),
              it != allocs.end() ? "pinned host memory: use cudaFreeHost" : describe(p, 1).c_str());
        return fail(cudaErrorInvalidValue);
    }
    dev_used -= it->second.rsize;
    dev_live--;
    guarded_free(it->second, caller);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) { return do_free(p, CALLER); }
cudaError_t cudaFreeAsync(void *p, cudaStream_t) { return do_free(p, CALLER); }

static cudaError_t do_host_alloc(void **p, size_t size, const void *caller) {
    API_LOCK;
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (conf().devices <= 0) return fail(cudaErrorNoDevice);
    if (size == 0) return cudaSuccess;
    void *q = guarded_alloc(size, A_PINNED, caller);
    if (!q) return fail(cudaErrorMemoryAllocation);
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t size) { return do_host_alloc(p, size, CALLER); }
cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int) { return do_host_alloc(p, size, CALLER); }

cudaError_t cudaFreeHost(void *p) {
    API_LOCK;
    if (!p) return cudaSuccess;
    drain_all();
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end() || it->second.kind != A_PINNED) {
        error("cudaFreeHost(%p) by %s: %s", p, symbolize(CALLER).c_str(),
              it != allocs.end() ? "device memory: use cudaFree" : describe(p, 1).c_str());
        return fail(cudaErrorInvalidValue);
    }
    guarded_free(it->second, CALLER);
    return cudaSuccess;
}

cudaError_t cudaHostRegister(void *p, size_t size, unsigned int) {
    API_LOCK;
    if (!p || !size) return fail(cudaErrorInvalidValue);
    if (find_alloc(p, 1) || find_alloc((char *)p + size - 1, 1)) return fail(cudaErrorHostMemoryAlreadyRegistered);
    Alloc al;
    al.ptr = (uintptr_t)p;
    al.size = al.rsize = size;
    al.map = nullptr;
    al.map_len = 0;
    al.kind = A_REGISTERED;
    al.caller = CALLER;
    al.id = ++alloc_ids;
    allocs[al.ptr] = al;
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *p) {
    API_LOCK;
    drain_all();
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end() || it->second.kind != A_REGISTERED) return fail(cudaErrorHostMemoryNotRegistered);
    allocs.erase(it);
    return cudaSuccess;
}
cudaError_t cudaHostGetDevicePointer(void **pd, void *ph, unsigned int) {
    API_LOCK;
    Alloc *al = find_alloc(ph, 1);
    if (!pd || !al || al->kind == A_DEVICE) return fail(cudaErrorInvalidValue);
    *pd = ph;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
    API_LOCK;
    const Config &c = conf();
    if (c.devices <= 0) return fail(cudaErrorNoDevice);
    if (free_b) *free_b = c.mem - dev_used;
    if (total) *total = c.mem;
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p) {
    API_LOCK;
    if (!a) return fail(cudaErrorInvalidValue);
    Alloc *al = find_alloc(p, 1);
    a->device = 0;
    if (!al) {
        a->type = cudaMemoryTypeUnregistered;
        a->devicePointer = a->hostPointer = nullptr;
    } else if (al->kind == A_DEVICE) {
        a->type = cudaMemoryTypeDevice;
        a->devicePointer = (void *)p;
        a->hostPointer = nullptr;
    } else {
        a->type = cudaMemoryTypeHost;
        a->devicePointer = a->hostPointer = (void *)p;
    }
    return cudaSuccess;
}

static const char *copy_kind_name(int k) {
    static const char *n[] = {"HostToHost", "HostToDevice", "DeviceToHost", "DeviceToDevice", "Default"};
    return k >= 0 && k <= 4 ? n[k] : "?";
}

/* Where a copy end lies: 2 device range, 1 pinned/registered host range, 0 pageable host
 * (anything else), -1 a range that starts in an allocation but runs past its end. */
static int classify(const void *p, size_t n) {
    Alloc *al = find_alloc(p, n);
    if (al) return al->kind == A_DEVICE ? 2 : 1;
    if (find_alloc(p, 1)) return -1;
    return 0;
}

/* Validates a copy; on success sets *async_src (host memory the copy reads: pageable?) */
static cudaError_t check_copy(const char *api, void *dst, const void *src, size_t n, int kind, const void *caller,
                              int *dst_class, int *src_class) {
    if (kind < 0 || kind > 4) {
        error("%s by %s: kind %d is not a cudaMemcpyKind", api, symbolize(caller).c_str(), kind);
        return fail(cudaErrorInvalidMemcpyDirection);
    }
    int dc = classify(dst, n), sc = classify(src, n);
    *dst_class = dc;
    *src_class = sc;
    const bool want_dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    auto complain = [&](const char *which, const void *p, bool want_dev) {
        error("%s(%s, %zu bytes) by %s: the %s %p %s %s", api, copy_kind_name(kind), n, symbolize(caller).c_str(), which,
              p, want_dev ? "should be device memory, but is" : "should be host memory, but is",
              describe(p, n).c_str());
        return fail(cudaErrorInvalidValue);
    };
    if (dc < 0) return complain("destination", dst, true);
    if (sc < 0) return complain("source", src, true);
    if (kind == cudaMemcpyDefault) return cudaSuccess;
    if (want_dst_dev && dc != 2) return complain("destination", dst, true);
    if (!want_dst_dev && dc == 2) return complain("destination", dst, false);
    if (want_src_dev && sc != 2) return complain("source", src, true);
    if (!want_src_dev && sc == 2) return complain("source", src, false);
    return cudaSuccess;
}

static cudaError_t do_memcpy(const char *api, void *dst, const void *src, size_t n, int kind, cudaStream_t st,
                             bool async, const void *caller) {
    API_LOCK;
    if (n == 0) return cudaSuccess;
    int dc, sc;
    cudaError_t e = check_copy(api, dst, src, n, kind, caller, &dc, &sc);
    if (e != cudaSuccess) return e;
    cudaError_t serr;
    Stream *s = async ? get_stream(st, api, &serr) : &legacy_stream;
    if (!s) return fail(serr);
    if (!conf().lazy) {
        memmove(dst, src, n);
        return cudaSuccess;
    }
    if (!async || s->legacy) { /* cudaMemcpy: the legacy stream, then the host waits */
        drain_blocking();
        drain(s);
        memmove(dst, src, n);
        return cudaSuccess;
    }
    /* device → pageable host, or host ↔ host pageable: returns once done */
    if ((dc == 0 && sc == 2) || (dc == 0 && sc == 0)) {
        drain(s);
        memmove(dst, src, n);
        return cudaSuccess;
    }
    Op op;
    op.kind = Op::COPY;
    if (sc == 0) { /* pageable → device: staged at the call */
        std::shared_ptr<std::vector<char>> snap = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        op.fn = [dst, snap, n] { memcpy(dst, snap->data(), n); };
    } else {
        op.fn = [dst, src, n] { memmove(dst, src, n); };
    }
    enqueue(s, std::move(op));
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    return do_memcpy("cudaMemcpy", dst, src, n, kind, 0, false, CALLER);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t st) {
    return do_memcpy("cudaMemcpyAsync", dst, src, n, kind, st, true, CALLER);
}
cudaError_t cudaMemcpy2D(void *dst, size_t dp, const void *src, size_t sp, size_t w, size_t h, enum cudaMemcpyKind k) {
    for (size_t r = 0; r < h; r++) {
        cudaError_t e = do_memcpy("cudaMemcpy2D", (char *)dst + r * dp, (const char *)src + r * sp, w, k, 0, false, CALLER);
        if (e) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dp, const void *src, size_t sp, size_t w, size_t h,
                              enum cudaMemcpyKind k, cudaStream_t st) {
    for (size_t r = 0; r < h; r++) {
        cudaError_t e =
            do_memcpy("cudaMemcpy2DAsync", (char *)dst + r * dp, (const char *)src + r * sp, w, k, st, true, CALLER);
        if (e) return e;
    }
    return cudaSuccess;
}

static cudaError_t do_memset(const char *api, void *p, int v, size_t n, cudaStream_t st, bool async,
                             const void *caller) {
    API_LOCK;
    if (n == 0) return cudaSuccess;
    if (classify(p, n) != 2) {
        error("%s(%p, %d, %zu bytes) by %s: not a device range: %s", api, p, v, n, symbolize(caller).c_str(),
              describe(p, n).c_str());
        return fail(cudaErrorInvalidValue);
    }
    cudaError_t serr;
    Stream *s = async ? get_stream(st, api, &serr) : &legacy_stream;
    if (!s) return fail(serr);
    Op op;
    op.kind = Op::SET;
    op.fn = [p, v, n] { memset(p, v, n); };
    enqueue(s, std::move(op));
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) { return do_memset("cudaMemset", p, v, n, 0, false, CALLER); }
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
    return do_memset("cudaMemsetAsync", p, v, n, st, true, CALLER);
}

/* ---- streams ----------------------------------------------------------------------------- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *ps, unsigned int flags) {
    API_LOCK;
    conf();
    if (!ps) return fail(cudaErrorInvalidValue);
    if (conf().devices <= 0) return fail(cudaErrorNoDevice);
    Stream *s = new Stream();
    s->magic = STREAM_MAGIC;
    s->flags = flags;
    s->id = ++stream_ids;
    s->legacy = false;
    streams.insert(s);
    *ps = reinterpret_cast<cudaStream_t>(s);
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *ps) { return cudaStreamCreateWithFlags(ps, 0); }
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *ps, unsigned int flags, int) {
    return cudaStreamCreateWithFlags(ps, flags);
}
cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest) {
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t h) {
    API_LOCK;
    cudaError_t e;
    if (!h || h == cudaStreamLegacy || h == cudaStreamPerThread) return fail(cudaErrorInvalidResourceHandle);
    Stream *s = get_stream(h, "cudaStreamDestroy", &e);
    if (!s) return fail(e);
    drain(s);
    streams.erase(s);
    s->magic = DEAD_MAGIC; /* kept: a later use is reported, not undefined */
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t h) {
    API_LOCK;
    cudaError_t e;
    Stream *s = get_stream(h, "cudaStreamSynchronize", &e);
    if (!s) return fail(e);
    if (s->legacy) drain_blocking();
    drain(s);
    return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t h) {
    API_LOCK;
    cudaError_t e;
    Stream *s = get_stream(h, "cudaStreamQuery", &e);
    if (!s) return fail(e);
    if (s->q.empty()) return cudaSuccess;
    drain(s); /* not ready this time; done by the next query */
    return cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t h, cudaEvent_t ev, unsigned int) {
    API_LOCK;
    cudaError_t e;
    Stream *s = get_stream(h, "cudaStreamWaitEvent", &e);
    if (!s) return fail(e);
    Event *E = get_event(ev, "cudaStreamWaitEvent");
    if (!E) return fail(cudaErrorInvalidResourceHandle);
    if (!E->recorded) return cudaSuccess; /* never recorded: nothing to wait for */
    Op op;
    op.kind = Op::WAIT;
    op.ev = E;
    op.seq = E->recorded;
    enqueue(s, std::move(op));
    return cudaSuccess;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t h, cudaHostFn_t fn, void *user) {
    API_LOCK;
    cudaError_t e;
    Stream *s = get_stream(h, "cudaLaunchHostFunc", &e);
    if (!s) return fail(e);
    Op op;
    op.kind = Op::HOSTFN;
    op.fn = [fn, user] { fn(user); };
    enqueue(s, std::move(op));
    return cudaSuccess;
}

/* ---- events ------------------------------------------------------------------------------ */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *pe, unsigned int flags) {
    API_LOCK;
    if (!pe) return fail(cudaErrorInvalidValue);
    if (conf().devices <= 0) return fail(cudaErrorNoDevice);
    Event *e = new Event();
    e->magic = EVENT_MAGIC;
    e->flags = flags;
    events.insert(e);
    *pe = reinterpret_cast<cudaEvent_t>(e);
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *pe) { return cudaEventCreateWithFlags(pe, 0); }
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t h) {
    API_LOCK;
    Event *E = get_event(ev, "cudaEventRecord");
    if (!E) return fail(cudaErrorInvalidResourceHandle);
    cudaError_t e;
    Stream *s = get_stream(h, "cudaEventRecord", &e);
    if (!s) return fail(e);
    Op op;
    op.kind = Op::RECORD;
    op.ev = E;
    op.seq = ++E->recorded;
    E->queried = 0;
    E->pending.push_back({op.seq, s});
    enqueue(s, std::move(op));
    return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t ev, cudaStream_t h, unsigned int) { return cudaEventRecord(ev, h); }
cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
    API_LOCK;
    Event *E = get_event(ev, "cudaEventSynchronize");
    if (!E) return fail(cudaErrorInvalidResourceHandle);
    ensure_event(E, E->recorded);
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t ev) {
    API_LOCK;
    Event *E = get_event(ev, "cudaEventQuery");
    if (!E) return fail(cudaErrorInvalidResourceHandle);
    if (E->done >= E->recorded) return cudaSuccess;
    if (!E->queried++) return cudaErrorNotReady; /* not this time; done by the next query */
    ensure_event(E, E->recorded);
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    API_LOCK;
    Event *A = get_event(a, "cudaEventElapsedTime"), *B = get_event(b, "cudaEventElapsedTime");
    if (!A || !B) return fail(cudaErrorInvalidResourceHandle);
    if (!ms) return fail(cudaErrorInvalidValue);
    if ((A->flags | B->flags) & cudaEventDisableTiming) return fail(cudaErrorInvalidResourceHandle);
    if (!A->recorded || !B->recorded) return fail(cudaErrorInvalidResourceHandle);
    if (A->done < A->recorded || B->done < B->recorded) return fail(cudaErrorNotReady);
    *ms = (float)((B->t - A->t) * 1e3);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t ev) {
    API_LOCK;
    Event *E = get_event(ev, "cudaEventDestroy");
    if (!E) return fail(cudaErrorInvalidResourceHandle);
    ensure_event(E, E->recorded);
    events.erase(E);
    E->magic = DEAD_MAGIC; /* kept: a later use is reported, not undefined */
    return cudaSuccess;
}

/* ---- kernels ------------------------------------------------------------------------------ */

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    API_LOCK;
    if (!func) return fail(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > SMEM_OPTIN_MAX) {
            error("cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d) by %s: at most %zu", value,
                  symbolize(CALLER).c_str(), SMEM_OPTIN_MAX);
            return fail(cudaErrorInvalidValue);
        }
        max_dyn_smem[func] = value;
    }
    return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *a, const void *func) {
    API_LOCK;
    if (!a || !func) return fail(cudaErrorInvalidValue);
    memset(a, 0, sizeof *a);
    a->maxThreadsPerBlock = 1024;
    a->numRegs = 32;
    a->ptxVersion = a->binaryVersion = 90;
    auto it = max_dyn_smem.find(func);
    a->maxDynamicSharedSizeBytes = it == max_dyn_smem.end() ? (int)SMEM_DEFAULT_MAX : it->second;
    return cudaSuccess;
}
cudaError_t cudaFuncSetCacheConfig(const void *, enum cudaFuncCache) { return cudaSuccess; }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *, int block, size_t smem) {
    if (!n || block <= 0) return fail(cudaErrorInvalidValue);
    int by_threads = 2048 / block, by_smem = smem ? (int)(233472 / (smem + 1024)) : 32;
    *n = by_threads < by_smem ? by_threads : by_smem;
    if (*n > 32) *n = 32;
    return cudaSuccess;
}

void cuemu_stats(size_t *live_allocs, size_t *live_bytes, unsigned long long *launches) {
    API_LOCK;
    if (live_allocs) *live_allocs = dev_live;
    if (live_bytes) *live_bytes = dev_used;
    if (launches) *launches = n_launches;
}

} /* extern "C" */
