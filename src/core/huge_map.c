#include "core/huge_map.h"

#include <stdint.h>
#include <sys/mman.h>

void *fm_huge_map(size_t bytes) {
    /* Over-map by a huge page and trim both ends, so the start is 2 MB-aligned. */
    char *raw = mmap(NULL, bytes + FM_HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)fm_huge_round((uintptr_t)raw);
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (p + bytes < raw + bytes + FM_HUGE_PAGE) munmap(p + bytes, (size_t)(raw + bytes + FM_HUGE_PAGE - (p + bytes)));
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without THP the memory stays in 4 KB pages */
#endif
    return p;
}
