// SPDX-License-Identifier: MIT
/*
 * iommu-viz conformance driver: runs the kernel's io-pgtable-arm.c and
 * io-pgtable-arm-v7s.c (compiled unmodified, see conformance/build.py) on
 * operations read from stdin, one a line, and prints what the kernel code
 * did as deterministic text on stdout.
 *
 * Input (numbers in hex):
 *   N l STAGE PGSIZES IAS OAS QUIRKS LEVELS   new LPAE table (ARM_64_LPAE_S1/S2)
 *   N v PGSIZES IAS OAS QUIRKS               new v7s table (ARM_V7S)
 *   M IOVA PADDR PGSIZE PGCOUNT PROT         map, looping as iommu_map does
 *   U IOVA PGSIZE PGCOUNT G                  unmap, looping as __iommu_unmap
 *                                            does; G: n (NULL gather),
 *                                            g (a gather), q (a queued one)
 *   P IOVA                                   iova_to_phys
 *   D                                        dump the table
 *   S                                        the kernel's own selftests
 * Output, per operation: the events in order, then one line starting '='.
 *   W FUNC COND            a WARN (the function and the condition's text)
 *   X                      tlb_flush_all
 *   F IOVA SIZE GRANULE    tlb_flush_walk
 *   A G IOVA GRANULE       tlb_add_page with gather G (n, g or q)
 *   = RET MAPPED           map: the return value and bytes mapped
 *   = UNMAPPED             unmap
 *   = PHYS                 iova_to_phys
 *   T ID N / I IDX PTE [COUNT STEP]   dump: each table reachable from the
 *                          root (breadth first, ids in order of discovery),
 *                          its non-zero entries; a run of COUNT leaves whose
 *                          descriptors grow by STEP is one line; a table
 *                          descriptor prints as tID:ATTRS (address replaced)
 *
 * A map that fails has done part of its work in the kernel (iommu_map would
 * then unmap it again). The driver reports it, then rebuilds the table from
 * the operations that succeeded since N, silently, so that the next
 * operation starts from the state before the failed map.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/io-pgtable.h>

/* ------------------------------------------------------------ output */
static int quiet;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

void conf_warn(const char *func, const char *cond)
{
	char buf[256];
	size_t i, j = 0;

	/* one token: squeeze the condition's blanks out */
	for (i = 0; cond[i] && j < sizeof(buf) - 1; i++)
		if (cond[i] != ' ' && cond[i] != '\t' && cond[i] != '\n')
			buf[j++] = cond[i];
	buf[j] = 0;
	out("W %s %s\n", func, buf);
}

static int verbose;

void conf_log(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ the arena */
/*
 * Table memory: power-of-two blocks (1 KiB and up) from one mapping,
 * aligned to their size like the buddy allocator's pages, recycled most
 * recently freed first. Physical addresses are the offset plus PHYS_BASE.
 */
#define ARENA_SIZE (1UL << 30)
#define PHYS_BASE 0x40000000ULL
#define MIN_SHIFT 10
#define MAX_SHIFT 30

static unsigned char *arena;
static size_t arena_top;
static u32 *free_list[MAX_SHIFT + 1];
static size_t free_len[MAX_SHIFT + 1], free_cap[MAX_SHIFT + 1];
static unsigned char *live;	/* live[off >> MIN_SHIFT]: block shift, 0 if none */

static int size_shift(size_t size)
{
	int s = MIN_SHIFT;

	while (((size_t)1 << s) < size)
		s++;
	return s;
}

void *conf_alloc(size_t size)
{
	int s = size_shift(size);
	size_t n = (size_t)1 << s, off;

	if (free_len[s]) {
		off = (size_t)free_list[s][--free_len[s]] << MIN_SHIFT;
	} else {
		off = (arena_top + n - 1) & ~(n - 1);
		if (off + n > ARENA_SIZE)
			return NULL;
		arena_top = off + n;
	}
	memset(arena + off, 0, n);
	live[off >> MIN_SHIFT] = (unsigned char)s;
	return arena + off;
}

void conf_free(void *p, size_t size)
{
	size_t off = (unsigned char *)p - arena;
	int s = size_shift(size);

	live[off >> MIN_SHIFT] = 0;
	if (free_len[s] == free_cap[s]) {
		free_cap[s] = free_cap[s] ? 2 * free_cap[s] : 64;
		free_list[s] = realloc(free_list[s], free_cap[s] * sizeof(u32));
	}
	free_list[s][free_len[s]++] = (u32)(off >> MIN_SHIFT);
}

static void arena_reset(void)
{
	memset(live, 0, ARENA_SIZE >> MIN_SHIFT);
	memset(free_len, 0, sizeof(free_len));
	arena_top = 0;
}

u64 conf_virt_to_phys(const void *p)
{
	return (u64)((const unsigned char *)p - arena) + PHYS_BASE;
}

void *conf_phys_to_virt(u64 pa)
{
	return arena + (pa - PHYS_BASE);
}

/* the live block at physical address pa, or 0 */
static int live_shift(u64 pa)
{
	if (pa < PHYS_BASE || pa - PHYS_BASE >= arena_top || (pa & ((1 << MIN_SHIFT) - 1)))
		return 0;
	return live[(pa - PHYS_BASE) >> MIN_SHIFT];
}

/* ------------------------------------------------------------ io-pgtable.c */
/* Our own alloc/free of io-pgtable ops, as drivers/iommu/io-pgtable.c does:
 * the format's alloc fills in cfg, which is then kept in the io_pgtable. */
static struct io_pgtable_init_fns *fns_of(enum io_pgtable_fmt fmt)
{
	switch (fmt) {
	case ARM_64_LPAE_S1: return &io_pgtable_arm_64_lpae_s1_init_fns;
	case ARM_64_LPAE_S2: return &io_pgtable_arm_64_lpae_s2_init_fns;
	case ARM_V7S: return &io_pgtable_arm_v7s_init_fns;
	default: return NULL;
	}
}

struct io_pgtable_ops *alloc_io_pgtable_ops(enum io_pgtable_fmt fmt,
					    struct io_pgtable_cfg *cfg,
					    void *cookie)
{
	struct io_pgtable_init_fns *fns = fns_of(fmt);
	struct io_pgtable *iop;

	if (!fns)
		return NULL;
	iop = fns->alloc(cfg, cookie);
	if (!iop)
		return NULL;
	iop->fmt = fmt;
	iop->cookie = cookie;
	iop->cfg = *cfg;
	return &iop->ops;
}

void free_io_pgtable_ops(struct io_pgtable_ops *ops)
{
	struct io_pgtable *iop;

	if (!ops)
		return;
	iop = io_pgtable_ops_to_pgtable(ops);
	io_pgtable_tlb_flush_all(iop);
	fns_of(iop->fmt)->free(iop);
}

/* ------------------------------------------------------------ flush ops */
static char gather_name(struct iommu_iotlb_gather *g)
{
	return !g ? 'n' : g->queued ? 'q' : 'g';
}

static void tlb_flush_all(void *cookie)
{
	(void)cookie;
	out("X\n");
}

static void tlb_flush_walk(unsigned long iova, size_t size, size_t granule, void *cookie)
{
	(void)cookie;
	out("F %lx %zx %zx\n", iova, size, granule);
}

static void tlb_add_page(struct iommu_iotlb_gather *g, unsigned long iova,
			 size_t granule, void *cookie)
{
	(void)cookie;
	out("A %c %lx %zx\n", gather_name(g), iova, granule);
}

static const struct iommu_flush_ops flush_ops = {
	.tlb_flush_all = tlb_flush_all,
	.tlb_flush_walk = tlb_flush_walk,
	.tlb_add_page = tlb_add_page,
};

/* ------------------------------------------------------------ the table */
struct op {
	char kind;
	u64 a, b, c, d, e;
};

static struct io_pgtable_ops *ops;
static struct io_pgtable_cfg cfg;
static struct device dev;
static struct op new_op;	/* the N that made the table */
static int is_v7s, levels;
static u64 pgd_pa;
static struct op *log_ops;
static size_t log_len, log_cap;

static void destroy(void)
{
	int q = quiet;

	quiet = 1;
	free_io_pgtable_ops(ops);
	ops = NULL;
	arena_reset();
	quiet = q;
}

static int create(const struct op *n)
{
	enum io_pgtable_fmt fmt;

	destroy();
	memset(&cfg, 0, sizeof(cfg));
	set_dev_node(&dev, NUMA_NO_NODE);
	cfg.tlb = &flush_ops;
	cfg.coherent_walk = true;
	cfg.iommu_dev = &dev;
	is_v7s = n->kind == 'v';
	if (is_v7s) {
		fmt = ARM_V7S;
		cfg.pgsize_bitmap = n->a;
		cfg.ias = n->b;
		cfg.oas = n->c;
		cfg.quirks = n->d;
		levels = 2;
	} else {
		fmt = n->a == 2 ? ARM_64_LPAE_S2 : ARM_64_LPAE_S1;
		cfg.pgsize_bitmap = n->b;
		cfg.ias = n->c;
		cfg.oas = n->d;
		cfg.quirks = n->e >> 8;
		levels = n->e & 0xff;
	}
	ops = alloc_io_pgtable_ops(fmt, &cfg, &cfg);
	if (!ops)
		return -1;
	if (is_v7s)
		pgd_pa = cfg.arm_v7s_cfg.ttbr & ~0x7fULL;
	else if (fmt == ARM_64_LPAE_S2)
		pgd_pa = cfg.arm_lpae_s2_cfg.vttbr;
	else
		pgd_pa = cfg.arm_lpae_s1_cfg.ttbr;
	new_op = *n;
	log_len = 0;
	return 0;
}

static void log_op(const struct op *o)
{
	if (log_len == log_cap) {
		log_cap = log_cap ? 2 * log_cap : 64;
		log_ops = realloc(log_ops, log_cap * sizeof(*log_ops));
	}
	log_ops[log_len++] = *o;
}

static int do_map(const struct op *o, size_t *done)
{
	size_t pgsize = o->c, total = o->c * o->d;
	int ret = 0;

	*done = 0;
	while (*done < total) {
		size_t mapped = 0;

		ret = ops->map_pages(ops, o->a + *done, o->b + *done, pgsize,
				     (total - *done) / pgsize, (int)o->e,
				     GFP_KERNEL, &mapped);
		*done += mapped;
		/* no progress without an error: a map that grants no access
		 * before v6.11 (iommu_map would loop forever) */
		if (ret || !mapped)
			break;
	}
	return ret;
}

static size_t do_unmap(const struct op *o)
{
	struct iommu_iotlb_gather g = { .queued = o->d == 'q' };
	size_t total = o->b * o->c, done = 0;

	while (done < total) {
		size_t got = ops->unmap_pages(ops, o->a + done, o->b,
					      (total - done) / o->b,
					      o->d == 'n' ? NULL : &g);
		if (!got)
			break;
		done += got;
	}
	return done;
}

/* back to the state before a failed map: the same table, rebuilt */
static void rebuild(void)
{
	struct op n = new_op, *saved = log_ops;
	size_t i, len = log_len, mapped;
	int q = quiet;

	quiet = 1;
	log_ops = NULL;
	log_cap = 0;
	create(&n);
	for (i = 0; i < len; i++) {
		if (saved[i].kind == 'M')
			do_map(&saved[i], &mapped);
		else
			do_unmap(&saved[i]);
		log_op(&saved[i]);
	}
	free(saved);
	quiet = q;
}

/* ------------------------------------------------------------ dump */
static int is_table(u64 pte, int depth)
{
	if (depth >= levels - 1)
		return 0;
	return is_v7s ? (pte & 3) == 1 : (pte & 3) == 3;
}

static u64 table_addr(u64 pte)
{
	return is_v7s ? pte & 0xfffffc00ULL : pte & GENMASK_ULL(47, 12);
}

static u64 entry(const void *t, size_t i)
{
	return is_v7s ? ((const u32 *)t)[i] : ((const u64 *)t)[i];
}

static void dump(void)
{
	u64 queue[4096];
	int depth[4096];
	size_t head = 0, tail = 0;

	queue[tail] = pgd_pa;
	depth[tail++] = 0;
	while (head < tail) {
		u64 pa = queue[head];
		int d = depth[head];
		size_t n = ((size_t)1 << live_shift(pa)) / (is_v7s ? 4 : 8), i, j;
		const void *t = conf_phys_to_virt(pa);

		out("T %zu %zx\n", head++, n);
		for (i = 0; i < n; i = j) {
			u64 pte = entry(t, i), step;

			j = i + 1;
			if (!pte)
				continue;
			if (is_table(pte, d) && live_shift(table_addr(pte)) && tail < 4096) {
				u64 attrs = pte & ~table_addr(pte);

				out("I %zx t%zu:%llx\n", i, tail, (unsigned long long)attrs);
				queue[tail] = table_addr(pte);
				depth[tail++] = d + 1;
				continue;
			}
			if (j < n && entry(t, j) && !is_table(entry(t, j), d)) {
				step = entry(t, j) - pte;
				while (j < n && entry(t, j) && !is_table(entry(t, j), d)
				       && entry(t, j) - entry(t, j - 1) == step)
					j++;
			}
			if (j - i > 1)
				out("I %zx %llx %zx %llx\n", i, (unsigned long long)pte,
				    j - i, (unsigned long long)(entry(t, i + 1) - pte));
			else
				out("I %zx %llx\n", i, (unsigned long long)pte);
		}
	}
}

/* ------------------------------------------------------------ main loop */
extern int conf_initcall_arm_lpae_do_selftests(void);
extern int conf_initcall_arm_v7s_do_selftests(void);

int main(int argc, char **argv)
{
	static char line[512];
	static char obuf[1 << 20];

	verbose = argc > 1 && !strcmp(argv[1], "-v");
	setvbuf(stdout, obuf, _IOFBF, sizeof(obuf));
	arena = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	live = calloc(ARENA_SIZE >> MIN_SHIFT, 1);
	if (arena == MAP_FAILED || !live) {
		fprintf(stderr, "conformance driver: no memory for the arena\n");
		return 1;
	}
	while (fgets(line, sizeof(line), stdin)) {
		struct op o = { .kind = line[0] };
		char c = 0;

		switch (o.kind) {
		case 'N':
			if (line[2] == 'l')
				sscanf(line + 4, "%llx %llx %llx %llx %llx",
				       (unsigned long long *)&o.a, (unsigned long long *)&o.b,
				       (unsigned long long *)&o.c, (unsigned long long *)&o.d,
				       (unsigned long long *)&o.e);
			else
				sscanf(line + 4, "%llx %llx %llx %llx",
				       (unsigned long long *)&o.a, (unsigned long long *)&o.b,
				       (unsigned long long *)&o.c, (unsigned long long *)&o.d);
			o.kind = line[2];
			out("= %s\n", create(&o) ? "fail" : "ok");
			break;
		case 'M': {
			size_t mapped;
			int ret;

			sscanf(line + 2, "%llx %llx %llx %llx %llx",
			       (unsigned long long *)&o.a, (unsigned long long *)&o.b,
			       (unsigned long long *)&o.c, (unsigned long long *)&o.d,
			       (unsigned long long *)&o.e);
			if (!ops) {
				out("= notable\n");
				break;
			}
			ret = do_map(&o, &mapped);
			out("= %d %zx\n", ret, mapped);
			if (ret)
				rebuild();
			else
				log_op(&o);
			break;
		}
		case 'U':
			sscanf(line + 2, "%llx %llx %llx %c",
			       (unsigned long long *)&o.a, (unsigned long long *)&o.b,
			       (unsigned long long *)&o.c, &c);
			o.d = (u64)c;
			if (!ops) {
				out("= notable\n");
				break;
			}
			out("= %zx\n", do_unmap(&o));
			log_op(&o);
			break;
		case 'P':
			sscanf(line + 2, "%llx", (unsigned long long *)&o.a);
			if (!ops) {
				out("= notable\n");
				break;
			}
			out("= %llx\n", (unsigned long long)ops->iova_to_phys(ops, o.a));
			break;
		case 'D':
			if (ops)
				dump();
			out("=\n");
			break;
		case 'S': {
			int l, v;

			destroy();
			l = conf_initcall_arm_lpae_do_selftests();
			v = conf_initcall_arm_v7s_do_selftests();
			arena_reset();
			out("= %d %d\n", l, v);
			break;
		}
		default:
			break;
		}
	}
	destroy();
	fflush(stdout);
	return 0;
}
