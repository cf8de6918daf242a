"""The errors iommu-viz raises when a call refuses its input.

Every refusal is an :class:`IommuVizError` carrying the kernel's errno name
(``'EINVAL'``, ``'EEXIST'``, ``'ERANGE'``, ...) and a message that names the
offending value and the rule it broke; the model is unchanged when one is
raised. Catch the base class to handle any of them::

    >>> from iommu_viz import LpaeTable, SZ_4K
    >>> from iommu_viz.errors import IommuVizError
    >>> try:
    ...     LpaeTable(kernel="v5.4").map(0x1001, 0x2000, SZ_4K)
    ... except IommuVizError as e:
    ...     print(e.errno, type(e).__name__)
    EINVAL PgtableError

Which layer refused is the subclass: :class:`ApiError` for the IOMMU API
and the device (``iommu_viz.sim``), ``PgtableError`` for a page-table
format (``iommu_viz.pgtable``). A bad option of a simulation is a
``ValueError``, as for any Python callable.
"""

from __future__ import annotations


class IommuVizError(Exception):
    """A call of the model refused its input, with the kernel's errno name.

    ``str(err)`` is ``"<message> (-<errno>)"``.
    """

    def __init__(self, errno: str, message: str):
        super().__init__(f"{message} (-{errno})")
        self.errno = errno
        self.message = message

    def __reduce__(self):
        # rebuilt from (errno, message), not from the formatted text
        return type(self), (self.errno, self.message)


class ApiError(IommuVizError):
    """An IOMMU API call (or a device access) refused its input.

    The run is unchanged when this is raised.
    """


def check_uint(name: str, value) -> None:
    """Refuse (EINVAL) a ``value`` that is not a non-negative int."""
    if not isinstance(value, int) or value < 0:
        raise ApiError("EINVAL", f"{name} {value!r} must be a "
                       "non-negative integer")


__all__ = ["IommuVizError", "ApiError", "check_uint"]
