"""Build the conformance driver against a kernel source tree.

The kernel's files come from Debian's ``linux-source-<version>`` package
(``/usr/src/linux-source-<version>.tar.xz``); only the four files needed
are extracted, into ``build/conformance/src-<version>/`` (git-ignored), and
compiled unmodified with the shim headers of ``conformance/shim/``:

* ``drivers/iommu/io-pgtable-arm.c`` and ``io-pgtable-arm.h``
* ``drivers/iommu/io-pgtable-arm-v7s.c``
* ``include/linux/io-pgtable.h``

with the kernel's selftests configured in
(``CONFIG_IOMMU_IO_PGTABLE_LPAE_SELFTEST``, ``..._ARMV7S_SELFTEST``).
The binary is ``build/conformance/conf-<version>``, rebuilt when a source
or the shim changes.

    python -m conformance.build [6.1 6.12]     # build, run the selftests
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / "build" / "conformance"
SHIM = HERE / "shim"
KERNELS = ("6.1", "6.12")
FILES = ("drivers/iommu/io-pgtable-arm.c", "drivers/iommu/io-pgtable-arm.h",
         "drivers/iommu/io-pgtable-arm-v7s.c", "include/linux/io-pgtable.h")
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function",
          "-Werror=implicit-function-declaration",
          "-DCONFIG_IOMMU_IO_PGTABLE_LPAE_SELFTEST=1",
          "-DCONFIG_IOMMU_IO_PGTABLE_ARMV7S_SELFTEST=1",
          "-DCONFIG_PHYS_ADDR_T_64BIT=1", "-DCONFIG_ZONE_DMA32=1"]


class Missing(Exception):
    """A compiler or a kernel source package is not installed."""


def tarball(kver: str) -> Path:
    return Path(f"/usr/src/linux-source-{kver}.tar.xz")


def sources_present(kver: str) -> bool:
    """True when the kernel files are extracted or the tarball is there."""
    src = CACHE / f"src-{kver}"
    return all((src / f).exists() for f in FILES) or tarball(kver).exists()


def extract(kver: str) -> Path:
    """The extracted source tree of ``kver`` (extracting it if needed)."""
    src = CACHE / f"src-{kver}"
    if all((src / f).exists() for f in FILES):
        return src
    tb = tarball(kver)
    if not tb.exists():
        raise Missing(f"no kernel source for {kver}: install the Debian "
                      f"package linux-source-{kver} (apt-get install "
                      f"linux-source-{kver}), then run make conformance")
    tmp = CACHE / f"src-{kver}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    top = f"linux-source-{kver}"
    subprocess.run(["tar", "-xJf", str(tb), "-C", str(tmp), "--strip-components=1"]
                   + [f"{top}/{f}" for f in FILES], check=True)
    shutil.rmtree(src, ignore_errors=True)
    tmp.rename(src)
    return src


def ensure(kver: str) -> Path:
    """The driver binary for ``kver``, built if missing or out of date."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise Missing("no C compiler: install gcc (apt-get install gcc), "
                      "then run make conformance")
    src = extract(kver)
    out = CACHE / f"conf-{kver}"
    inputs = [src / f for f in FILES] + [HERE / "driver.c"] + \
        sorted(SHIM.rglob("*.h"))
    if out.exists() and out.stat().st_mtime >= max(p.stat().st_mtime
                                                   for p in inputs):
        return out
    obj = CACHE / f"obj-{kver}"
    obj.mkdir(parents=True, exist_ok=True)
    flags = CFLAGS + ["-include", str(SHIM / "shim.h"), "-I", str(src / "include"),
                      "-I", str(SHIM / "include")]
    units = {"arm.o": src / FILES[0], "v7s.o": src / FILES[2],
             "driver.o": HERE / "driver.c"}
    for o, c in units.items():
        r = subprocess.run([cc, *flags, "-c", str(c), "-o", str(obj / o)],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"compiling {c} failed:\n{r.stderr[-3000:]}")
    tmp = out.with_suffix(".tmp")
    subprocess.run([cc, "-o", str(tmp), *(str(obj / o) for o in units)],
                   check=True)
    tmp.rename(out)
    return out


def ensure_all(kvers=KERNELS) -> dict:
    """:func:`ensure` for each of ``kvers``; the tarballs (a minute each to
    decompress) are extracted side by side."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(kvers)) as pool:
        list(pool.map(extract, kvers))
    return {k: ensure(k) for k in kvers}


def selftests(kver: str) -> tuple[int, int]:
    """Run arm_lpae_do_selftests and arm_v7s_do_selftests from the built
    sources: their return values (0 is a pass). A WARN on the way (the
    selftests' dummy flush ops check their arguments with WARN_ON) fails
    both."""
    r = subprocess.run([str(ensure(kver))], input="S\n", capture_output=True,
                       text=True, check=True)
    lines = r.stdout.splitlines()
    last = lines[-1].split()
    if len(lines) > 1:
        return -1, -1
    return int(last[1]), int(last[2])


def main(argv=None) -> int:
    kvers = (argv if argv is not None else sys.argv[1:]) or list(KERNELS)
    try:
        binaries = ensure_all(kvers)
    except Missing as e:
        print(f"conformance: {e}")
        return 2
    for k in kvers:
        binary = binaries[k]
        lpae, v7s = selftests(k)
        print(f"linux-source-{k}: built {binary.relative_to(ROOT)}; "
              f"arm_lpae_do_selftests {'PASS' if lpae == 0 else lpae}, "
              f"arm_v7s_do_selftests {'PASS' if v7s == 0 else v7s}")
        if lpae or v7s:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
