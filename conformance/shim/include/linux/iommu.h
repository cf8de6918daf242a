/* SPDX-License-Identifier: MIT */
/* iommu-viz conformance shim: the few IOMMU-core names io-pgtable uses. */
#ifndef CONF_LINUX_IOMMU_H
#define CONF_LINUX_IOMMU_H

#define IOMMU_READ	(1 << 0)
#define IOMMU_WRITE	(1 << 1)
#define IOMMU_CACHE	(1 << 2)
#define IOMMU_NOEXEC	(1 << 3)
#define IOMMU_MMIO	(1 << 4)
#define IOMMU_PRIV	(1 << 5)

/* what the io-pgtable code reads of a gather: whether it is queued
 * (lazy mode); the driver identifies a gather by its address */
struct iommu_iotlb_gather {
	unsigned long start;
	unsigned long end;
	size_t pgsize;
	bool queued;
};

static inline bool iommu_iotlb_gather_queued(struct iommu_iotlb_gather *gather)
{
	return gather && gather->queued;
}

/* dirty tracking (v6.12 read_and_clear_dirty): never called here */
#define IOMMU_DIRTY_NO_CLEAR (1 << 0)
struct iommu_dirty_bitmap { int unused; };
static inline void iommu_dirty_bitmap_record(struct iommu_dirty_bitmap *d,
					     unsigned long iova, unsigned long len)
{
	(void)d; (void)iova; (void)len;
}

#endif
