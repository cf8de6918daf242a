"""The scenario file format: one IOMMU API call a line, as the litmus tests
of memory-model discussions are one instruction a line.

A file is read by :func:`parse` into a :class:`Scenario`, which
:meth:`Scenario.run` executes on a fresh :class:`~iommu_viz.Simulation`;
:func:`to_text` writes any run back as a file that re-executes to the same
events. The grammar is in ``docs/scenario-format.md``; in short::

    # a comment; the first comment lines describe the scenario
    config kernel=v5.4 strict bbml=0 smmu=adversarial
    param fast=no                      # a knob, switched by [fast] guards
    map 0x40000000 0x80000000 2M       # [prot: read|write|cache|...]
    access 0x40001000                  # [read|write]
    [fast] gather g
    [fast] unmap_fast 0x40001000 4K g
    [!fast] unmap 0x40001000 4K
    A1: access 0x40001000
    [fast] sync g
    advance 11                         # milliseconds
    refused unmap 0x40001000 4K        # the model must refuse this call

The option names and the values they take come from
``Simulation.__init__``'s own signature and checks: a ``config`` line is
validated by building a Simulation with it. Errors are
:class:`ScenarioError`, naming the file, the line and the rule broken;
nothing runs until the whole file has been read.

Example::

    >>> sc = parse('''
    ... config kernel=v5.4
    ... map 0x40000000 0x80000000 2M
    ... gather g
    ... unmap_fast 0x40001000 4K g
    ... A1: access 0x40001000
    ... ''')
    >>> sim = sc.run(bbml=2)
    >>> sim.accesses[0].outcome
    'fault'
    >>> print(to_text(sim).splitlines()[-1])
    A1: access 0x40001000
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from ..errors import IommuVizError
from ..pgtable import common as _pgcommon
from ..pgtable.common import PgtableError, short_size
from ..sim import ApiError, Simulation
from ..sim.config import SimConfig

__all__ = ["Scenario", "ScenarioError", "Op", "parse", "to_text",
           "labelled_accesses",
           "sim_options", "parse_value", "parse_bool", "parse_number", "OPS", "ALIASES"]


class ScenarioError(IommuVizError, ValueError):
    """A scenario file broke a rule. ``source`` and ``line`` say where
    (``line`` is 0 for the file as a whole or an option given from
    outside), ``rule`` which rule, e.g. ``"unknown op"``.

    One of the package's :class:`~iommu_viz.errors.IommuVizError` (errno
    ``EINVAL``: the input was refused), and a ``ValueError`` as a bad
    argument is; ``str(err)`` is ``"<source>:<line>: <rule>: <detail>"``.
    """

    def __init__(self, source: str, line: int, rule: str, detail: str = ""):
        where = f"{source}:{line}" if line else source
        text = f"{rule}: {detail}" if detail else rule
        # the text already names where and why: no "(-EINVAL)" suffix
        Exception.__init__(self, f"{where}: {text}")
        self.errno = "EINVAL"
        self.message = f"{where}: {text}"
        self.source = source
        self.line = line
        self.rule = rule
        self.detail = detail

    def __reduce__(self):
        return type(self), (self.source, self.line, self.rule, self.detail)


# ---------------------------------------------------------------- options
def sim_options() -> dict:
    """``{name: default}`` of every option ``Simulation`` takes, read from
    its config record :class:`~iommu_viz.sim.config.SimConfig` (so a new
    option is a scenario option at once)."""
    return {f.name: f.default for f in dataclasses.fields(SimConfig)}


#: Friendlier names for Simulation options.
ALIASES = {"smmu": "personality"}
#: Bare words on a ``config`` line.
_WORDS = {"strict": ("strict", True), "lazy": ("strict", False)}
_YES = {"yes", "true", "on", "1"}
_NO = {"no", "false", "off", "0"}
_NONE = {"none", "default"}
_NUM = re.compile(r"(0x[0-9a-f_]+|[0-9][0-9_]*)(k|m|g)?(?:i?b)?",
                  re.IGNORECASE)
_SHIFT = {"k": 10, "m": 20, "g": 30}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def parse_number(text: str) -> int:
    """``'0x1000'``, ``'4096'``, ``'4K'``, ``'2M'``, ``'1G'`` -> int;
    ``ValueError`` otherwise. A K/M/G suffix goes with decimal numbers."""
    m = _NUM.fullmatch(text.strip())
    if not m or (m.group(2) and m.group(1).lower().startswith("0x")):
        raise ValueError(f"{text!r} is not a number or size (write 0x1000, "
                         "4096, 4K, 2M or 1G)")
    n = int(m.group(1), 0)
    return n << _SHIFT[m.group(2).lower()] if m.group(2) else n


def _bool(text):
    t = text.lower()
    if t in _YES:
        return True
    if t in _NO:
        return False
    return None


def parse_bool(text: str) -> bool:
    """``yes``/``no`` (``true``/``false``, ``on``/``off``, ``1``/``0``)."""
    b = _bool(text)
    if b is None:
        raise ValueError(f"{text!r} is not yes or no")
    return b


def parse_value(name: str, text: str):
    """The Python value of option ``name`` (a Simulation option, by its
    default's type) written as ``text``. Raises ``ValueError`` naming the
    rule: booleans take yes/no, numbers 0x hex, decimal or K/M/G, options
    whose default is None also take ``none``."""
    opts = sim_options()
    default = opts[name]
    if isinstance(default, bool):
        b = _bool(text)
        if b is None:
            raise ValueError(f"{name} takes yes or no, not {text!r}")
        return b
    if isinstance(default, (int, float)):
        if "." in text:
            try:
                return float(text)
            except ValueError:
                pass
        return parse_number(text)
    if default is None:
        if text.lower() in _NONE:
            return None
        try:
            return parse_number(text)
        except ValueError:
            pass
        b = _bool(text)
        if b is None:
            raise ValueError(f"{name} takes none, yes, no or a number, not "
                             f"{text!r}")
        return b
    return text


def format_value(name: str, value) -> str:
    """The text :func:`parse_value` reads back as ``value``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and name == "granule":
        return _size(value)
    return str(value)


def _size(n: int) -> str:
    """``2M`` as the kernel's SZ_ names say it, else hex."""
    text = short_size(n)
    return f"{n:#x}" if text.isdigit() else text


# ---------------------------------------------------------------- ops
#: ``op name -> argument kinds``; a trailing ``?`` marks an optional one.
#: The names are the Simulation methods' (gather is new_gather, sync is
#: iotlb_sync; both long names are accepted too).
OPS = {
    "map": ("iova", "paddr", "size", "prot?"),
    "unmap": ("iova", "size"),
    "unmap_fast": ("iova", "size", "gather"),
    "gather": ("newgather",),
    "sync": ("gather",),
    "access": ("iova", "rw?"),
    "speculate": ("iova",),
    "advance": ("ms",),
    "flush_all": (),
}
_OP_ALIASES = {"new_gather": "gather", "iotlb_sync": "sync"}
#: ``prot`` words: the IOMMU_* flags of include/linux/iommu.h.
PROT = {n[len("IOMMU_"):].lower(): v for n, v in vars(_pgcommon).items()
        if n.startswith("IOMMU_") and isinstance(v, int)}
_DEFAULT_PROT = PROT["read"] | PROT["write"]


@dataclass(frozen=True)
class Op:
    """One op line: ``op`` (a key of :data:`OPS`), its ``args``, the
    ``label`` naming an access, the ``guard`` (``(param, wanted)`` pairs
    that must all hold for the line to run) and whether the model must
    ``refuse`` the call."""

    line: int
    op: str
    args: dict
    label: str | None = None
    guard: tuple = ()
    refused: bool = False


def _prot(text):
    try:
        return parse_number(text)
    except ValueError:
        pass
    v = 0
    for w in re.split(r"[|,+]", text.lower()):
        if w not in PROT:
            raise ValueError(f"prot {text!r}: {w!r} is not one of "
                             + ", ".join(PROT) + " (join them with |)")
        v |= PROT[w]
    return v


def _prot_text(prot: int) -> str:
    words = [w for w, bit in PROT.items() if prot & bit]
    rest = prot & ~sum(PROT.values())
    return "|".join(words) if words and not rest else f"{prot:#x}"


def _ms(text):
    t = text.lower().removesuffix("ms")
    try:
        v = float(t) if any(c in t for c in ".e") else int(t, 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a time in milliseconds") from None
    if not v >= 0:
        raise ValueError(f"advance {text}: time cannot go backwards")
    return v


def _arg(kind, text):
    if kind in ("iova", "paddr", "size"):
        v = parse_number(text)
        if kind == "size" and v == 0:
            raise ValueError("a size of 0 maps nothing")
        return v
    if kind == "prot":
        return _prot(text)
    if kind == "rw":
        if text.lower() not in ("read", "write"):
            raise ValueError(f"{text!r} is not read or write")
        return text.lower() == "write"
    if kind == "ms":
        return _ms(text)
    if not _NAME.fullmatch(text):               # gather names
        raise ValueError(f"{text!r} is not a gather name (a word)")
    return text


_ARG_NAME = {"rw": "write", "newgather": "name"}
_RULE = {"iova": "bad address", "paddr": "bad address", "size": "bad size",
         "prot": "bad prot", "rw": "bad access", "ms": "bad time",
         "gather": "bad gather name", "newgather": "bad gather name"}


# ---------------------------------------------------------------- Scenario
@dataclass
class Scenario:
    """A parsed scenario file.

    ``config``  the Simulation options its ``config`` lines set
    ``params``  its knobs (``param`` lines): name -> default bool
    ``ops``     the op lines (:class:`Op`), in order
    ``labels``  the labelled accesses' names, in order
    ``source``  the file name (for messages), ``text`` the file itself,
    ``description`` its leading comment
    """

    config: dict
    params: dict
    ops: list
    source: str = "<string>"
    text: str = ""
    description: str = ""
    config_lines: dict = field(default_factory=dict)

    @property
    def labels(self) -> list:
        return [op.label for op in self.ops if op.label]

    def options(self) -> list:
        """The names :meth:`run` accepts: every Simulation option, its
        aliases and this file's params."""
        return sorted(set(sim_options()) | set(ALIASES) | set(self.params))

    def read_option(self, key: str, text: str, source: str = "<option>"):
        """``(name, value)`` of option or param ``key`` written as
        ``text`` (``"kernel", "v6.12"`` -> ``("kernel", "v6.12")``);
        :class:`ScenarioError` names ``source`` and the rule."""
        name = ALIASES.get(key, key)
        try:
            if name in self.params:
                return name, parse_bool(text)
            if name in sim_options():
                return name, parse_value(name, text)
        except ValueError as e:
            raise ScenarioError(source, 0, "bad option value",
                                f"{key}: {e}") from None
        raise ScenarioError(source, 0, "unknown option",
                            f"{key!r}; choose from " + ", ".join(
                                self.options()))

    def resolve(self, overrides: dict) -> tuple[dict, dict]:
        """``(config, params)`` with ``overrides`` applied; raises
        :class:`ScenarioError` for an unknown name or a bad param value."""
        config = dict(self.config)
        params = dict(self.params)
        opts = sim_options()
        for k, v in overrides.items():
            name = ALIASES.get(k, k)
            if name in params:
                if not isinstance(v, bool):
                    raise ScenarioError(self.source, 0, "bad param value",
                                        f"param {k} takes True or False, "
                                        f"not {v!r}")
                params[name] = v
            elif name in opts:
                config[name] = v
            else:
                raise ScenarioError(
                    self.source, 0, "unknown option",
                    f"{k!r}; this scenario takes " + ", ".join(self.options()))
        return config, params

    def run(self, **overrides) -> Simulation:
        """Execute the scenario on a fresh Simulation; ``overrides``
        replace config options (``kernel="v6.12"``, ``bbml=2``) or params
        (``fast=True``). Raises :class:`ScenarioError` naming the line
        when the model refuses a call (or does not refuse one marked
        ``refused``); the partial run is then dropped."""
        config, params = self.resolve(overrides)
        sim = _new_sim(config, self, overrides)
        gathers = {}
        undefined = {}
        for op in self.ops:
            if not all(params[p] == want for p, want in op.guard):
                if op.op == "gather":
                    undefined[op.args["name"]] = op.line
                continue
            name = op.args.get("gather")
            if name is not None and name not in gathers:
                raise ScenarioError(
                    self.source, op.line, "undefined gather",
                    f"gather {name} was not made in this configuration "
                    f"(line {undefined.get(name, '?')} is switched off by "
                    "its guard)")
            try:
                _execute(sim, op, gathers)
            except (ApiError, PgtableError, ValueError) as e:
                if op.refused:
                    continue
                raise ScenarioError(self.source, op.line,
                                    "refused by the model",
                                    f"{op.op}: {e}") from None
            if op.refused:
                raise ScenarioError(self.source, op.line, "not refused",
                                    f"the line says the model refuses this "
                                    f"{op.op}, but it did the call")
            if op.label and op.op == "access":
                sim.ops[-1]["label"] = op.label
        return sim

    def __str__(self):
        return self.text


def labelled_accesses(sim) -> dict:
    """``{label: Access}`` of a run's labelled accesses, in order: the
    labels :meth:`Scenario.run` puts on the recorded access ops, paired
    with ``sim.accesses`` (one per recorded access)."""
    ops = (op for op in sim.ops if op["op"] == "access")
    return {op["label"]: a for op, a in zip(ops, sim.accesses)
            if op.get("label")}


def _new_sim(config, sc, overrides):
    try:
        return Simulation(**config)
    except (ValueError, TypeError) as e:
        keys = [k for k in config if k in sc.config_lines]
        line = 0 if overrides else max(
            (sc.config_lines[k] for k in keys), default=0)
        raise ScenarioError(sc.source, line, "bad option value",
                            str(e)) from None


#: scenario op names that differ from the names Simulation.ops records
_RECORDED = {"gather": "new_gather", "sync": "iotlb_sync"}
_SCENARIO_NAMES = {v: k for k, v in _RECORDED.items()}


def _execute(sim, op, gathers):
    """One scenario line's call, through :meth:`Simulation.apply` (a
    gather's name is its id)."""
    call = dict(op.args, op=_RECORDED.get(op.op, op.op))
    if op.op == "gather":
        call["id"] = op.args["name"]
    sim.apply(call, gathers)


# ---------------------------------------------------------------- parse
def _description(lines) -> str:
    """The first paragraph of the leading comment."""
    out = []
    for raw in lines:
        s = raw.strip()
        if not s.startswith("#") or (out and not s.lstrip("#").strip()):
            break
        out.append(s.lstrip("#").strip())
    return " ".join(" ".join(out).split())


def parse(text: str, source: str = "<string>") -> Scenario:
    """Read scenario ``text`` (``source`` names it in messages). Raises
    :class:`ScenarioError` at the first broken rule."""
    lines = text.splitlines()
    config: dict = {}
    config_lines: dict = {}
    params: dict = {}
    ops: list = []
    labels: dict = {}
    gathers: set = set()
    opts = sim_options()

    for n, raw in enumerate(lines, 1):
        body = raw.split("#", 1)[0].strip()
        if not body:
            continue

        def err(rule, detail=""):
            return ScenarioError(source, n, rule, detail)

        guard = ()
        if body.startswith("["):
            close = body.find("]")
            if close < 0:
                raise err("bad guard", "a guard is [param ...] with a "
                          "closing bracket")
            guard = _guard(body[1:close], params, err)
            body = body[close + 1:].strip()
        label = None
        m = re.match(r"([A-Za-z_][A-Za-z0-9_.-]*):(\s+|$)", body)
        if m:
            label = m.group(1)
            body = body[m.end():].strip()
            if label in labels:
                raise err("duplicate label", f"{label} already names the "
                          f"access on line {labels[label]}")
            labels[label] = n
        words = body.split()
        if not words:
            raise err("missing op", "a label names the access that follows "
                      "it on the same line")
        refused = False
        if words[0] == "refused":
            refused = True
            words = words[1:]
            if not words:
                raise err("missing op", "refused goes before an op")
        head = words[0]
        if head in ("config", "param"):
            if guard or label or refused:
                raise err(f"bad {head} line", f"a {head} line takes no "
                          "guard, label or refused")
            if ops:
                raise err(f"late {head} line", f"{head} lines come before "
                          "the first op")
            if head == "config":
                _config(words[1:], config, config_lines, opts, n, err)
                _validate(config, err)
            else:
                _params(words[1:], params, opts, err)
            continue
        op = _OP_ALIASES.get(head, head)
        if op not in OPS:
            raise err("unknown op", f"{head!r}; the ops are "
                      + ", ".join(OPS) + " (and config, param)")
        if label and op != "access":
            raise err("label on a non-access", f"{label}: names {op}; a "
                      "label names an access")
        kinds = OPS[op]
        need = sum(not k.endswith("?") for k in kinds)
        got = words[1:]
        if not need <= len(got) <= len(kinds):
            want = " ".join(k.rstrip("?") if not k.endswith("?")
                            else f"[{k[:-1]}]" for k in kinds) or "nothing"
            raise err("wrong number of arguments",
                      f"{op} takes {want}; got {len(got)}")
        args = {}
        for kind, word in zip(kinds, got):
            kind = kind.rstrip("?")
            try:
                args[_ARG_NAME.get(kind, kind)] = _arg(kind, word)
            except ValueError as e:
                raise err(_RULE[kind], str(e)) from None
        if op == "gather":
            gathers.add(args["name"])
        elif "gather" in args and args["gather"] not in gathers:
            raise err("undefined gather", f"{args['gather']} is not made by "
                      "a gather line before this one")
        ops.append(Op(n, op, args, label, guard, refused))
    return Scenario(config, params, ops, source, text,
                    _description(lines), config_lines)


def _guard(text, params, err):
    out = []
    for w in re.split(r"[\s,]+", text.strip()):
        if not w:
            continue
        want = not w.startswith("!")
        name = w.lstrip("!")
        if name not in params:
            raise err("unknown param", f"[{w}]: declare it first with "
                      f"'param {name}=yes' or 'param {name}=no'")
        out.append((name, want))
    if not out:
        raise err("bad guard", "[] names no param")
    return tuple(out)


def _config(words, config, where, opts, n, err):
    if not words:
        raise err("empty config line", "write config key=value ...")
    for w in words:
        key, eq, text = w.partition("=")
        if not eq:
            if w in _WORDS:
                key, value = _WORDS[w]
            elif w in opts and isinstance(opts[w], bool):
                key, value = w, True
            else:
                raise err("unknown option", f"{w!r} (write key=value; the "
                          "keys are " + ", ".join(sorted(opts) + list(ALIASES))
                          + ")")
        else:
            key = ALIASES.get(key, key)
            if key not in opts:
                raise err("unknown option", f"{w.partition('=')[0]!r}; the "
                          "options are " + ", ".join(
                              sorted(list(opts) + list(ALIASES))))
            try:
                value = parse_value(key, text)
            except ValueError as e:
                raise err("bad option value", str(e)) from None
        config[key] = value
        where[key] = n


def _validate(config, err):
    """Simulation's own checks decide what a config may hold."""
    try:
        Simulation(**config)
    except (ValueError, TypeError) as e:
        raise err("bad option value", str(e)) from None


def _params(words, params, opts, err):
    if not words:
        raise err("empty param line", "write param name=yes|no ...")
    for w in words:
        name, eq, text = w.partition("=")
        if not _NAME.fullmatch(name):
            raise err("bad param", f"{name!r} is not a name")
        if name in opts or name in ALIASES:
            raise err("bad param", f"{name!r} is already a Simulation "
                      "option; choose another name")
        b = _bool(text) if eq else None
        if b is None:
            raise err("bad param", f"{w!r}: a param is name=yes or name=no")
        params[name] = b


# ---------------------------------------------------------------- write
def _config_words(config: dict) -> list:
    """The fewest ``config`` words that rebuild ``config`` exactly: the
    era, the mode, BBML and the personality always, then every option
    that differs from what Simulation would pick without it."""
    opts = sim_options()
    words = [f"kernel={config['kernel']}",
             "strict" if config["strict"] else "lazy",
             f"bbml={config['bbml']}", f"smmu={config['personality']}"]
    shown = {"kernel", "strict", "bbml", "personality"}
    given = {k: v for k, v in config.items()
             if k in opts and k not in shown and v != opts[k]}
    for k in list(given):            # derived values (tlb_entries, ias...)
        trial = {kk: vv for kk, vv in given.items() if kk != k}
        trial.update({s: config[s] for s in shown})
        if Simulation(**trial).config == config:
            del given[k]
    for k in opts:
        if k in given:
            words.append(f"{k}={format_value(k, given[k])}")
    return words


def op_line(op: dict) -> str:
    """One scenario-file line for an op in the file's own terms: gathers by
    name (``{"op": "gather", "name": "g"}``, ``{"op": "sync", "gather":
    "g"}``, ``{"op": "unmap_fast", ..., "gather": "g"}``), an access's
    ``label``, and ``{"op": "comment", "text": ...}``."""
    k = op["op"]
    if k == "comment":
        return f"# {op['text']}"
    if k == "map":
        line = f"map {op['iova']:#x} {op['paddr']:#x} {_size(op['size'])}"
        if op.get("prot", _DEFAULT_PROT) != _DEFAULT_PROT:
            line += " " + _prot_text(op["prot"])
        return line
    if k in ("unmap", "unmap_fast"):
        line = f"{k} {op['iova']:#x} {_size(op['size'])}"
        return line + f" {op['gather']}" if k == "unmap_fast" else line
    if k == "gather":
        return f"gather {op['name']}"
    if k == "sync":
        return f"sync {op['gather']}"
    if k == "access":
        line = f"access {op['iova']:#x}" + (" write" if op.get("write")
                                            else "")
        return f"{op['label']}: {line}" if op.get("label") else line
    if k == "speculate":
        return f"speculate {op['iova']:#x}"
    if k == "advance":
        return f"advance {op['ms']!r}"
    if k == "flush_all":
        return "flush_all"
    raise ValueError(f"unknown op {k!r}: it has no scenario-file form")


def to_text(sim, title: str | None = None) -> str:
    """Write a run (a Simulation) as a scenario file: its config and its
    recorded API calls, labels kept, gathers named ``g1``, ``g2``, ...
    :func:`parse` of the result runs to the same events."""
    lines = [f"# {title or 'written by iommu-viz from a run'}",
             "config " + " ".join(_config_words(sim.config))]
    for op in sim.ops:
        k = op["op"]
        if k == "new_gather":
            op = {"op": "gather", "name": f"g{op['id']}"}
        elif k in ("unmap_fast", "iotlb_sync"):
            op = dict(op, op=_SCENARIO_NAMES.get(k, k),
                      gather=f"g{op['gather']}")
        lines.append(op_line(op))
    return "\n".join(lines) + "\n"
