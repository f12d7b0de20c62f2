/* Anonymous memory in 2 MB pages where transparent huge pages allow (even in
 * "madvise" mode): for buffers read all the time (dense weights, the expert
 * cache), where 4 KB pages cost TLB misses and page walks. */
#ifndef FM_CORE_HUGE_MAP_H
#define FM_CORE_HUGE_MAP_H

#include <stddef.h>

#define FM_HUGE_PAGE ((size_t)2 << 20)

/* n rounded up to a whole number of huge pages. */
static inline size_t fm_huge_round(size_t n) { return (n + FM_HUGE_PAGE - 1) / FM_HUGE_PAGE * FM_HUGE_PAGE; }

/* `bytes` (a multiple of FM_HUGE_PAGE) of zeroed, 2 MB-aligned anonymous
 * memory marked MADV_HUGEPAGE; free with munmap(p, bytes). NULL when out of
 * memory. */
void *fm_huge_map(size_t bytes);

#endif
