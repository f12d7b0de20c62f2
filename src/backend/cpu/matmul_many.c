/* cpu_matmul_many (kernels.h): several products in one pass over the pool.
 *
 * Decode runs many small products back to back (an MoE layer: gate and up of
 * every chosen expert on one input, then their down projections): one
 * parallel pass over all their row blocks replaces a fork/join per product,
 * and the input of products that share it is quantized once. The prepared
 * inputs live in one scratch buffer that only grows. */
#include "backend/cpu/kernels.h"

#include "backend/cpu/qkernels.h"
#include "core/pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What each product needs in the pass. */
typedef struct {
    const cpu_product *p;
    size_t act;      /* offset of its prepared input in the scratch (quantized W) */
    int first_item;  /* its first work item */
    int rows_per_item;
} planned;

typedef struct {
    const planned *plan;
    int n;
    const char *scratch;
} pass;

static struct {
    pthread_mutex_t lock;
    char *mem;
    size_t cap;
    planned *plan;
    int plan_cap;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static void item_many(void *arg, int item, int thread) {
    (void)thread;
    const pass *ps = arg;
    int lo = 0, hi = ps->n - 1; /* the last product whose first item is ≤ item */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (ps->plan[mid].first_item <= item) lo = mid;
        else hi = mid - 1;
    }
    const planned *pl = &ps->plan[lo];
    const fm_mat *W = pl->p->W;
    const int r0 = (item - pl->first_item) * pl->rows_per_item;
    const int r1 = r0 + pl->rows_per_item < W->rows ? r0 + pl->rows_per_item : W->rows;
    if (W->bits) {
        cpu_qact_rows(pl->p->y, W, r0, r1, ps->scratch + pl->act);
    } else {
        for (int r = r0; r < r1; r++) pl->p->y[r] = cpu_dot_row(W, r, pl->p->x);
    }
}

/* Bytes of p's prepared input, 0 when it runs on its own (cpu_matmul_whole). */
static size_t act_bytes(const cpu_product *p) {
    if (!p->W->bits) return 0;
    return cpu_qact_bytes(p->T, p->W->cols, p->W->bits, p->W->group);
}

static int same_input(const cpu_product *a, const cpu_product *b) {
    return a->x == b->x && a->T == b->T && a->W->cols == b->W->cols && a->W->bits == b->W->bits &&
           a->W->group == b->W->group;
}

void cpu_matmul_many(const cpu_product *p, int n) {
    if (n <= 0) return;
    pthread_mutex_lock(&S.lock);
    if (n > S.plan_cap) {
        planned *np = realloc(S.plan, (size_t)n * sizeof *np);
        if (np) S.plan = np, S.plan_cap = n;
    }
    int batched = 0; /* products in the pass */
    size_t bytes = 0;
    if (S.plan_cap >= n) {
        for (int i = 0; i < n; i++) {
            const cpu_product *q = &p[i];
            const size_t ab = act_bytes(q);
            if (!(ab || (!q->W->bits && q->T == 1))) continue;
            planned *pl = &S.plan[batched++];
            *pl = (planned){.p = q, .rows_per_item = cpu_rows_per_item(q->W), .act = SIZE_MAX};
            if (!ab) continue;
            for (int k = 0; k < batched - 1 && pl->act == SIZE_MAX; k++)
                if (S.plan[k].p->W->bits && same_input(S.plan[k].p, q)) pl->act = S.plan[k].act;
            if (pl->act == SIZE_MAX) {
                pl->act = bytes;
                bytes += align64(ab);
            }
        }
    }
    if (bytes > S.cap) {
        free(S.mem);
        S.mem = aligned_alloc(64, bytes);
        S.cap = S.mem ? bytes : 0;
        if (!S.mem) batched = 0; /* no scratch: every product on its own */
    }
    /* Prepare each distinct input once (in plan order, so the first user does). */
    int items = 0;
    for (int i = 0; i < batched; i++) {
        planned *pl = &S.plan[i];
        const fm_mat *W = pl->p->W;
        if (W->bits) {
            int first_user = 1;
            for (int k = 0; k < i && first_user; k++) first_user = S.plan[k].act != pl->act || !S.plan[k].p->W->bits;
            if (first_user) cpu_qact_prepare(S.mem + pl->act, pl->p->x, pl->p->T, W->cols, W->bits, W->group);
        }
        pl->first_item = items;
        items += (W->rows + pl->rows_per_item - 1) / pl->rows_per_item;
    }
    if (batched) {
        pass ps = {.plan = S.plan, .n = batched, .scratch = S.mem};
        pool_run(items, item_many, &ps);
    }
    /* The rest: products of many tokens, or without scratch. */
    for (int i = 0, k = 0; i < n; i++) {
        if (k < batched && S.plan[k].p == &p[i]) {
            k++;
            continue;
        }
        cpu_matmul_whole(p[i].y, p[i].x, p[i].T, p[i].W);
    }
    pthread_mutex_unlock(&S.lock);
}
