/* SPDX-License-Identifier: MIT */
/* iommu-viz conformance shim: drivers/iommu/iommu-pages.h (v6.12) over the arena. */
#ifndef CONF_IOMMU_PAGES_H
#define CONF_IOMMU_PAGES_H

static inline void *iommu_alloc_pages_node(int nid, gfp_t gfp, int order)
{
	(void)nid; (void)gfp;
	return conf_alloc(PAGE_SIZE << order);
}

static inline void iommu_free_pages(void *virt, int order)
{
	if (virt)
		conf_free(virt, PAGE_SIZE << order);
}

#endif
