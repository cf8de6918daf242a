"""iommu-viz: see what an Arm IOMMU does to its page tables and TLB."""
