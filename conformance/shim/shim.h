/* SPDX-License-Identifier: MIT */
/*
 * iommu-viz conformance shim: just enough of the kernel's environment for
 * drivers/iommu/io-pgtable-arm.c and io-pgtable-arm-v7s.c to build and run
 * as ordinary user-space C. Forced in front of each kernel file with
 * -include; the kernel's own <linux/...> headers are replaced by the empty
 * files next to this one, except <linux/io-pgtable.h>, which is the
 * kernel's own, from the same source tree.
 *
 * Table memory comes from one arena with made-up physical addresses below
 * 4 GiB (v7s insists on that), so virt_to_phys/phys_to_virt are offsets.
 * WARNs and the selftest's printk are routed to the driver (conf_warn,
 * conf_log), which decides what to print.
 */
#ifndef CONF_SHIM_H
#define CONF_SHIM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ types */
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t s32;
typedef int64_t s64;
typedef u64 phys_addr_t;
typedef u64 dma_addr_t;
typedef unsigned int gfp_t;
typedef unsigned int slab_flags_t;

struct device { int numa_node; };
struct page;
struct kmem_cache { size_t size; };
typedef struct { int unused; } spinlock_t;
struct list_head { struct list_head *next, *prev; };

/* ------------------------------------------------------------ compiler */
#define __init
#define __initconst
#define __initdata
#define __maybe_unused __attribute__((unused))
#define __aligned(x) __attribute__((aligned(x)))
#define __packed __attribute__((packed))
#define __noipa __attribute__((noipa))
#define upper_32_bits(n) ((u32)(((u64)(n)) >> 32))
#define lower_32_bits(n) ((u32)(n))
#define fallthrough __attribute__((fallthrough))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))
#define barrier() __asm__ __volatile__("" ::: "memory")
#define wmb() barrier()
#define dma_wmb() barrier()
#define smp_wmb() barrier()
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define static_assert(c, ...) _Static_assert(c, #c)
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* IS_ENABLED: 1 when CONFIG_FOO is defined as 1 (-DCONFIG_FOO=1) */
#define conf_take_second(ignored, val, ...) val
#define conf_probe_1 ~, 1
#define conf_is_one(x) conf_is_one_(conf_probe_##x)
#define conf_is_one_(probe) conf_is_one__(probe, 0, ~)
#define conf_is_one__(...) conf_take_second(__VA_ARGS__)
#define IS_ENABLED(option) conf_is_one(option)

/* ------------------------------------------------------------ bits */
#define BITS_PER_LONG 64
#define BIT(n) (1UL << (n))
#define BIT_ULL(n) (1ULL << (n))
#define GENMASK(h, l) ((~0UL << (l)) & (~0UL >> (BITS_PER_LONG - 1 - (h))))
#define GENMASK_ULL(h, l) ((~0ULL << (l)) & (~0ULL >> (63 - (h))))
#define __ffs(x) ((unsigned long)__builtin_ctzl(x))
#define __fls(x) ((unsigned long)(63 - __builtin_clzl(x)))
#define ffs(x) __builtin_ffs(x)
static inline int fls(unsigned int x) { return x ? 32 - __builtin_clz(x) : 0; }
static inline int fls64(u64 x) { return x ? 64 - __builtin_clzll(x) : 0; }
#define ilog2(n) ((int)(63 - __builtin_clzll((u64)(n))))
#define is_power_of_2(n) ((n) != 0 && (((n) & ((n) - 1)) == 0))
#define for_each_set_bit(bit, addr, size) \
	for ((bit) = 0; (bit) < (size); (bit)++) \
		if (!((*(addr) >> (bit)) & 1UL)) {} else
static inline void set_bit(long nr, volatile unsigned long *addr)
{
	addr[nr / BITS_PER_LONG] |= 1UL << (nr % BITS_PER_LONG);
}
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ALIGN(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))

#define SZ_1K 0x00000400
#define SZ_4K 0x00001000
#define SZ_16K 0x00004000
#define SZ_64K 0x00010000
#define SZ_1M 0x00100000
#define SZ_2M 0x00200000
#define SZ_16M 0x01000000
#define SZ_32M 0x02000000
#define SZ_512M 0x20000000
#define SZ_1G 0x40000000
#define SZ_2G 0x80000000UL
#define SZ_4G 0x100000000ULL

/* ------------------------------------------------------------ errors */
#define ENOMEM 12
#define EFAULT 14
#define EEXIST 17
#define EINVAL 22
#define ERANGE 34

/* ------------------------------------------------------------ WARN and printk */
void conf_warn(const char *func, const char *cond);
void conf_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define WARN_ON(c) ({ int __w = !!(c); if (__w) conf_warn(__func__, #c); __w; })
#define WARN_ON_ONCE(c) WARN_ON(c)
#define WARN(c, ...) ({ int __w = !!(c); if (__w) conf_warn(__func__, #c); __w; })
#define WARN_ONCE(c, ...) WARN(c, __VA_ARGS__)
#define BUG_ON(c) do { if (c) { conf_warn(__func__, "BUG " #c); abort(); } } while (0)
#define VM_BUG_ON(c) BUG_ON(c)
#define pr_err(...) conf_log(__VA_ARGS__)
#define pr_info(...) conf_log(__VA_ARGS__)
#define pr_warn(...) conf_log(__VA_ARGS__)
#define pr_debug(...) do { } while (0)
#define dev_err(dev, ...) conf_log(__VA_ARGS__)
#define dev_warn(dev, ...) conf_log(__VA_ARGS__)

/* subsys_initcall(fn): the driver calls conf_initcall_fn() instead */
#define subsys_initcall(fn) int conf_initcall_##fn(void) { return fn(); }
#define EXPORT_SYMBOL(x)
#define EXPORT_SYMBOL_GPL(x)

/* ------------------------------------------------------------ memory */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define NUMA_NO_NODE (-1)
#define GFP_KERNEL 0x1u
#define GFP_ATOMIC 0x2u
#define GFP_DMA 0x4u
#define GFP_DMA32 0x8u
#define __GFP_ZERO 0x10u
#define __GFP_HIGHMEM 0x20u
#define __GFP_NOWARN 0x40u
#define SLAB_CACHE_DMA 0x1u
#define SLAB_CACHE_DMA32 0x2u

/* the arena (conformance/driver.c) */
void *conf_alloc(size_t size);
void conf_free(void *p, size_t size);
u64 conf_virt_to_phys(const void *p);
void *conf_phys_to_virt(u64 pa);

static inline int get_order(size_t size)
{
	int order = 0;

	while ((PAGE_SIZE << order) < size)
		order++;
	return order;
}
#define virt_to_phys(p) conf_virt_to_phys(p)
#define __pa(p) conf_virt_to_phys((const void *)(p))
#define phys_to_virt(pa) conf_phys_to_virt(pa)
#define __va(pa) conf_phys_to_virt(pa)
static inline unsigned long __get_free_pages(gfp_t gfp, unsigned int order)
{
	(void)gfp;
	return (unsigned long)conf_alloc(PAGE_SIZE << order);
}
static inline void free_pages(unsigned long addr, unsigned int order)
{
	conf_free((void *)addr, PAGE_SIZE << order);
}
/* struct page * is the page's address itself here */
static inline struct page *alloc_pages_node(int nid, gfp_t gfp, unsigned int order)
{
	(void)nid; (void)gfp;
	return (struct page *)conf_alloc(PAGE_SIZE << order);
}
static inline void *page_address(struct page *p) { return (void *)p; }
static inline void __free_pages(struct page *p, unsigned int order)
{
	conf_free((void *)p, PAGE_SIZE << order);
}
static inline void *kmalloc(size_t n, gfp_t gfp) { (void)gfp; return malloc(n); }
static inline void *kzalloc(size_t n, gfp_t gfp) { (void)gfp; return calloc(1, n); }
static inline void kfree(const void *p) { free((void *)p); }
static inline struct kmem_cache *kmem_cache_create(const char *name, size_t size,
						   size_t align, unsigned int flags,
						   void (*ctor)(void *))
{
	struct kmem_cache *c = malloc(sizeof(*c));

	(void)name; (void)align; (void)flags; (void)ctor;
	c->size = size;
	return c;
}
static inline void *kmem_cache_zalloc(struct kmem_cache *c, gfp_t gfp)
{
	(void)gfp;
	return conf_alloc(c->size);
}
static inline void kmem_cache_free(struct kmem_cache *c, void *p) { conf_free(p, c->size); }
static inline void kmem_cache_destroy(struct kmem_cache *c) { free(c); }
static inline void kmemleak_ignore(const void *p) { (void)p; }
static inline int dev_to_node(struct device *dev) { return dev ? dev->numa_node : NUMA_NO_NODE; }
static inline void set_dev_node(struct device *dev, int node) { dev->numa_node = node; }

/* DMA: page tables are always walked coherently here; the streaming API
 * is an identity map so a non-coherent configuration still builds. */
enum dma_data_direction { DMA_TO_DEVICE = 1 };
static inline dma_addr_t dma_map_single(struct device *d, void *p, size_t n,
					enum dma_data_direction dir)
{
	(void)d; (void)n; (void)dir;
	return conf_virt_to_phys(p);
}
static inline int dma_mapping_error(struct device *d, dma_addr_t a) { (void)d; (void)a; return 0; }
static inline void dma_unmap_single(struct device *d, dma_addr_t a, size_t n,
				    enum dma_data_direction dir)
{
	(void)d; (void)a; (void)n; (void)dir;
}
static inline void dma_sync_single_for_device(struct device *d, dma_addr_t a,
					      size_t n, enum dma_data_direction dir)
{
	(void)d; (void)a; (void)n; (void)dir;
}

/* ------------------------------------------------------------ locks and atomics */
#define spin_lock_init(l) ((void)(l))
#define spin_lock_irqsave(l, f) ((void)(l), (f) = 0)
#define spin_unlock_irqrestore(l, f) ((void)(l), (void)(f))
#define cmpxchg_relaxed(p, old, new) ({ \
	__typeof__(*(p)) __o = (old); \
	__atomic_compare_exchange_n((p), &__o, (new), false, \
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
	__o; })
#define cmpxchg64_relaxed(p, old, new) cmpxchg_relaxed(p, old, new)

#endif /* CONF_SHIM_H */
