"""Conformance of the model with the kernel's own io-pgtable code.

:mod:`conformance.build` compiles the unmodified ``io-pgtable-arm.c`` and
``io-pgtable-arm-v7s.c`` of Debian's linux-source packages with this
folder's shim headers and ``driver.c``; :mod:`conformance.gen` makes
seeded random operation sequences; :mod:`conformance.run` feeds them to
the driver and to the model and compares every operation. ``make
conformance`` runs it all; see the README's "Fidelity" section.
"""
