"""The model's side of the conformance run: each operation of a sequence
applied to :class:`~iommu_viz.LpaeTable` / :class:`~iommu_viz.V7sTable`,
and the driver's input line and expected output for it, in the driver's
text format (see ``conformance/driver.c``).
"""

from __future__ import annotations

from itertools import compress

from iommu_viz import LpaeTable, V7sTable
from iommu_viz.pgtable.common import PgtableError, RecordingFlushOps

from .gen import LPAE_SIZES

M64 = (1 << 64) - 1
ERRNO = {"EINVAL": 22, "ERANGE": 34, "EEXIST": 17, "ENOMEM": 12}
LPAE_TABLE_ADDR = ((1 << 48) - 1) & ~0xFFF          # bits 47:12
V7S_TABLE_ADDR = 0xFFFFFC00


class Gather:
    """What the table code reads of an iommu_iotlb_gather: ``queued``."""

    __slots__ = ("queued", "name")

    def __init__(self, name):
        self.name = name
        self.queued = name == "q"


GATHERS = {"n": None, "g": Gather("g"), "q": Gather("q")}


def make_table(cfg: dict, era: str):
    """The model's table for configuration ``cfg`` (``ValueError`` when the
    model refuses it)."""
    if cfg["fmt"] == "lpae":
        return LpaeTable(granule=cfg["granule"], ias=cfg["ias"], oas=cfg["oas"],
                         stage=cfg["stage"], kernel=era, ns=cfg["ns"],
                         tlb=RecordingFlushOps())
    return V7sTable(ias=cfg["ias"], oas=cfg["oas"], kernel=era, ns=cfg["ns"],
                    no_perms=cfg["no_perms"], mtk_ext=cfg["mtk_ext"],
                    pgsize_bitmap=cfg["pgsize_bitmap"], tlb=RecordingFlushOps())


def new_line(cfg: dict, pt) -> str:
    """The driver's N line. LPAE also passes the number of levels, which the
    dump needs to tell a page from a table descriptor."""
    if cfg["fmt"] == "lpae":
        quirks = 1 if cfg["ns"] else 0
        bitmap = sum(LPAE_SIZES[cfg["granule"]])
        levels = pt.levels if pt is not None else 4
        return (f"N l {cfg['stage']:x} {bitmap:x} {cfg['ias']:x} {cfg['oas']:x} "
                f"{quirks << 8 | levels:x}")
    quirks = (1 if cfg["ns"] else 0) | (2 if cfg["no_perms"] else 0) \
        | (8 if cfg["mtk_ext"] else 0)
    return (f"N v {cfg['pgsize_bitmap']:x} {cfg['ias']:x} {cfg['oas']:x} "
            f"{quirks:x}")


def op_line(op) -> str:
    k = op[0]
    if k == "M":
        return "M %x %x %x %x %x" % op[1:]
    if k == "U":
        return "U %x %x %x %s" % op[1:]
    if k == "P":
        return "P %x" % op[1]
    return k


# ------------------------------------------------------------------ dump
def dump(pt) -> list[str]:
    """Every descriptor reachable from the root, in the driver's format."""
    v7s = pt.fmt == "v7s"
    tables = pt._tables
    if v7s:
        esize, addr_mask, last = 4, V7S_TABLE_ADDR, 1
    else:
        esize, addr_mask, last = 8, LPAE_TABLE_ADDR, pt.levels - 1
    out = []
    queue = [(pt.pgd, 0)]
    k = 0
    while k < len(queue):
        t, depth = queue[k]
        p = t.ptes
        nbytes = max(len(p) * esize, 1024 if v7s and depth else 4096)
        nbytes = 1 << (nbytes - 1).bit_length()
        out.append(f"T {k:d} {nbytes // esize:x}")
        k += 1
        idxs = list(compress(range(len(p)), p))
        m = len(idxs)
        a = 0
        while a < m:
            i = idxs[a]
            pte = p[i]
            if depth < last and (pte & 3) == (1 if v7s else 3):
                out.append(f"I {i:x} t{len(queue)}:{pte & ~addr_mask & M64:x}")
                queue.append((tables[pte & addr_mask], depth + 1))
                a += 1
                continue
            b = a + 1
            step = 0
            if b < m and idxs[b] == i + 1 and not (
                    depth < last and (p[i + 1] & 3) == (1 if v7s else 3)):
                step = (p[i + 1] - pte) & M64
                while b < m and idxs[b] == idxs[b - 1] + 1 and not (
                        depth < last and (p[idxs[b]] & 3) == (1 if v7s else 3)) \
                        and (p[idxs[b]] - p[idxs[b - 1]]) & M64 == step:
                    b += 1
            if b - a > 1:
                out.append(f"I {i:x} {pte:x} {b - a:x} {step:x}")
            else:
                out.append(f"I {i:x} {pte:x}")
            a = b
    return out


# ------------------------------------------------------------------ events
def tlb_lines(calls) -> list[str]:
    out = []
    for c in calls:
        name = c[0]
        if name == "tlb_add_page":
            g = c[1]
            out.append(f"A {'n' if g is None else g.name} {c[2]:x} {c[3]:x}")
        elif name == "tlb_flush_walk":
            out.append(f"F {c[1]:x} {c[2]:x} {c[3]:x}")
        elif name == "tlb_flush_all":
            out.append("X")
        else:       # a callback the 6.x flush ops do not have
            out.append(" ".join(str(x) for x in c))
    return out


def warn_tag(func: str, cond: str) -> str:
    """A kernel WARN line's condition, reduced to what the model records
    (``kernel_warnings`` entries are ``(function, tag)``)."""
    if cond in ("!pte", "!ARM_V7S_PTE_IS_VALID(pte[i])"):
        return "empty"
    if cond == "!selftest_running":
        return "eexist"
    if "pgsize" in cond:
        return "pgsize"
    if "iaext" in cond or "ias" in cond or "oas" in cond:
        return "range"
    return cond


def run_model(pt, op):
    """Apply ``op`` to ``pt``: (kind, lines) where kind is ``'ok'`` with the
    expected output lines (events, then the '=' line), or ``'err'`` with the
    errno number as the only line."""
    k = op[0]
    calls = pt.tlb.calls
    nwarn = len(pt.kernel_warnings)
    try:
        if k == "M":
            got = pt.map(op[1], op[2], op[3], op[5], op[4])
            res = f"= 0 {got:x}"
        elif k == "U":
            got = pt.unmap(op[1], op[2], GATHERS[op[4]], op[3])
            res = f"= {got:x}"
        elif k == "P":
            return "ok", [f"= {pt.iova_to_phys(op[1]):x}"]
        else:
            return "ok", dump(pt) + ["="]
    except PgtableError as e:
        del calls[:]
        del pt.kernel_warnings[nwarn:]
        return "err", [ERRNO[e.errno]]
    lines = [f"W {f} {t}" for f, t in pt.kernel_warnings[nwarn:]]
    lines += tlb_lines(calls)
    del calls[:]
    lines.append(res)
    return "ok", lines
