"""Fused kernel: Graph + Columns -> VectorResult in compiled passes over blocks of claims, equal to interp's.

vector.run_columns uses it when Numba is importable and `supports(graph, options)`; it hands an input back
to the NumPy engine (vector._Engine) when that engine must answer (see `evaluate`).

1. Facts. A claim's parameters depend on a few discrete facts: its epoch, hospital level, whether it is an
   inpatient claim, the truth of every predicate leaf the policy tests, and which identities it holds on its
   date and by the end of its year. They are packed into one int64 *word* per claim (`_Facts`): leaves that
   read only claim data are evaluated column-wise over the claims (vector.py's `_Preds`), leaves that read
   only person data over each block's persons, identities held from the grants as the kernel walks persons.
2. Blocks. One counting pass and one stable scatter (a share of the input per thread) partition the claims
   into blocks of about BLOCK_CLAIMS claims over ranges of persons. Each block is then sorted on its own by
   (person, date) with an LSD radix sort, ties by claim id (integer ids by value, text ids as text, as
   vector.py does), and its words are numbered through a small hash table.
3. Tables. The distinct words of all blocks are the *combinations* (usually a few dozen to a few hundred); the
   programs are evaluated once per combination, selected identity schedule and admission-number class
   (vector.py's `_Env`) into small parameter tables. A deductible reading previous_deductible p is kept as
   min(max(a ± p, lo), hi) per row (`_Form`).
4. Loop. One `@njit` pass per block over its person-years doing interp's `_step` arithmetic in int64: exact
   payments in fen × 10⁶ with the cumulative kept as whole fen plus remainders (as vector.py's
   `_round_cumulative`), caps as paid-so-far, shared caps claim by claim, `best` candidates each run in full
   and the largest total kept (tie: first declared). Payments go back to the claims' input rows; person-year
   rows are written for the person-years with claims (and those with an alert or subsidy).

Blocks run on `threads()` threads (the compiled steps release the GIL); a block's arrays stay in the cache.
Shapes the kernel does not handle make `supports` return False (the NumPy engine runs). Numba compiles once
per process and caches the machine code on disk (cache=True). TIMINGS holds the phases of the last run.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from policy_lang import interp, vector
from policy_lang.columns import Columns, day_number, from_dataset
from policy_lang.data import Dataset
from policy_lang.graph import (
    RATE_ONE,
    Below,
    BonusSpec,
    Epoch,
    Flat,
    Graph,
    LayerVersion,
    Op,
    PAdmission,
    PAnd,
    PCompare,
    PHas,
    PHolds,
    PIn,
    PNonEmpty,
    PNot,
    POr,
    Pred,
    Prev,
    Program,
    PSelected,
    PTrue,
    Rule,
    Tiered,
    Unit,
    Val,
)
from policy_lang.vector import (
    FEN_LIMIT,
    HALF,
    INF,
    INPATIENT,
    Arr,
    VectorResult,
    _Dyn,
    _Env,
    _Field,
    _Preds,
    _Sink,
    _YearFrame,
    _zeros,
)

_njit: Callable[..., Any] | None
try:
    from numba import njit as _njit
except ImportError:  # pragma: no cover - numba is a dependency; without it the NumPy engine runs
    _njit = None

F = TypeVar("F", bound=Callable[..., Any])
NO_PRICING, FLAT, TIERED, UNIT = 0, 1, 2, 3
NO_CAP = np.iinfo(np.int64).max  # a per-claim limit that never binds
MAX_LAYERS = 62  # sets of layers (columns, schedules) are int64 bit masks
TABLE_ROWS = 1 << 20  # parameter rows always allowed (beyond: 2 per claim), else the NumPy engine runs
_ADM, _PREV, _UHI, _ULO, _ROUNDED, _PAID = range(6)  # per-layer running state of one pass
NONNEG = (1 << 63) - 1  # `index & NONNEG` tells the compiler an index is not negative: no wraparound code
TIMINGS: dict[str, float] = {}  # seconds of each phase of the last kernel evaluation
HANDOVER: dict[str, str] = {}  # "reason": why the last evaluation was handed to the NumPy engine (if it was)


def _jit(fn: F) -> F:
    """numba.njit(cache=True, nogil=True) (blocks run in threads), typed for mypy; the plain function when numba
    is missing."""
    return fn if _njit is None else cast(F, _njit(cache=True, nogil=True)(fn))


def _inline(fn: F) -> F:
    """_jit, inlined into its callers by Numba (the call itself costs more than these small steps)."""
    return fn if _njit is None else cast(F, _njit(cache=True, nogil=True, inline="always")(fn))


def available() -> bool:
    """Numba is importable and the kernel is not switched off (POLC_KERNEL=0)."""
    return _njit is not None and os.environ.get("POLC_KERNEL", "1") != "0"


# ---- which graphs ------------------------------------------------------------------------------------------
def supports(graph: Graph, options: interp.Options = interp.Options()) -> bool:
    """Whether the kernel evaluates this graph (with these options) exactly; False: use the NumPy engine."""
    return unsupported(graph, options) is None


def unsupported(graph: Graph, options: interp.Options = interp.Options()) -> str | None:
    """Why the kernel does not handle the graph, or None when it does."""
    del options  # every option (--as-of, --set) is handled
    if len(graph.layers) > MAX_LAYERS:
        return f"more than {MAX_LAYERS} layers"
    if not _contiguous(graph.epochs):
        return "epochs are not contiguous date intervals in order"
    if len(_numbers_of(graph)) > MAX_LAYERS:
        return f"more than {MAX_LAYERS} number columns"
    for index in range(len(graph.layers)):
        slots = {s for e in graph.epochs if (v := e.layers[index]) is not None and v.identity is not None
                 for s in v.identity.order}
        if len(slots) >= MAX_LAYERS:
            return f"{MAX_LAYERS} or more identity schedules in a layer"
    for epoch in graph.epochs:
        if any(_mentions_prev(pool.cap) for pool in epoch.pools):
            return "previous_deductible in a shared cap"
        for version in epoch.layers:
            if version is not None and (reason := _version_unsupported(version)) is not None:
                return reason
    return None


def _contiguous(epochs: tuple[Epoch, ...]) -> bool:
    if not epochs or epochs[0].start is not None or epochs[-1].end is not None:
        return False
    return all(a.end is not None and a.end == b.start for a, b in pairwise(epochs))


def _version_unsupported(version: LayerVersion) -> str | None:
    if len(set(version.base_from)) < len(version.base_from) or len(set(version.base_plus)) < len(version.base_plus):
        return "a layer or column named twice in a base"
    for name in ("pricing", "period", "bonus", "cap_claim", "cap_year", "accumulator"):
        if any(_mentions_prev(r.value) for r in _rules(getattr(version, name))):
            return f"previous_deductible outside a deductible ({name})"
    for rule in version.deductible.rules:
        if rule.value is not None and _prev_form(rule.value, rule.below) is None:
            return "previous_deductible in a deductible that is not min/max/±-linear in it"
    return None


def _rules(prog: Program[Any]) -> Iterator[Rule[Any]]:
    """Every rule of a program and of the programs below its rules."""
    for rule in prog.rules:
        yield rule
        if rule.below is not None:
            yield from _rules(rule.below)


def _mentions_prev(value: object) -> bool:
    match value:
        case Prev():
            return True
        case Op(_op, left, right):
            return _mentions_prev(left) or _mentions_prev(right)
        case Flat(rate) | BonusSpec(rate, _):
            return _mentions_prev(rate)
        case Unit(amount, _):
            return _mentions_prev(amount)
    return False


def _prev_form(value: Val, below: Program[Any] | None) -> bool | None:
    """Whether a deductible depends on previous_deductible (True/False), None if not as clamp(±p + a)."""
    match value:
        case Prev():
            return True
        case Below():
            if below is None:
                return False
            deps = [False if r.value is None else _prev_form(r.value, r.below) for r in below.rules]
            return None if None in deps else any(deps)
        case Op(op, left, right):
            a, b = _prev_form(left, below), _prev_form(right, below)
            if a is None or b is None or (a and b) or (op == "mul" and (a or b)):
                return None
            return a or b
    return False


# ---- combinations of a claim's static facts ----------------------------------------------------------------
class _Rows(vector._ClaimFrame):
    """Claim fields over chosen rows of the input (None: every claim, in input order; or one claim per
    combination): vector's claim frame on any rows (its fields, diseases and numbers through `_own`, `_pick`
    and `_of_person`; the sorted frame's constructor is not run). Identities held come from the grants sorted by
    person (`_Grants`)."""

    def __init__(self, cols: Columns, rows: Arr | None, grants: _Grants):
        c = cols.claims
        self.cols, self.rows, self.grants = cols, rows, grants
        self.n = c.m if rows is None else len(rows)
        self.person = self._own(c.person)
        self.day = self._own(c.day)
        self.idents = {name: i for i, name in enumerate(cols.identity_names)}
        self.diseases = {name: i for i, name in enumerate(cols.disease_names)}
        self._fields: dict[str, _Field] = {}
        self._since: dict[int, Arr] = {}

    def _own(self, values: Arr) -> Arr:
        return values if self.rows is None else values[self.rows]

    def _pick(self, f: _Field) -> _Field:
        return f if self.rows is None else vector._take(_lean(f), self.rows)

    def _of_person(self, f: _Field) -> _Field:
        return vector._take(_lean(f), self.person)

    def since(self, identity: str) -> Arr:
        """Per row: the earliest day its person holds the identity (data name) from (int32 max: never)."""
        code = self.idents.get(identity, -1)
        if code not in self._since:
            g = self.grants
            self._since[code] = _since_rows(g.person, g.code, g.since, np.asarray(self.person, dtype=np.int64), code)
        return self._since[code]

    def holds(self, identity: str) -> Arr:
        """Held on the claim's date."""
        return self.since(identity) <= self.day

    def held_by(self, identity: str, day: Arr) -> Arr:
        """Held on or before `day` (one day per row)."""
        return self.since(identity) <= day


class _PersonFrame:
    """Person fields over the persons [low, high): the frame of the predicate leaves that read only person data
    (their truth is a bit of each person's word, read by the kernel at the claim's person)."""

    level: Arr | None = None

    def __init__(self, cols: Columns, low: int, high: int):
        self.cols, self.low, self.high, self.n = cols, low, high, high - low
        self.diseases = {name: i for i, name in enumerate(cols.disease_names)}

    def field(self, name: str) -> _Field:
        f = vector._person_field(self.cols, name)
        if f is None:
            f = vector._extra_field(self.cols.persons.extra[name])
        low, high = self.low, self.high
        return _Field(f.values[low:high], None if f.missing is None else f.missing[low:high], f.vocab)

    def has(self, field: str, disease: str) -> Arr:
        assert field == "chronic"
        certified = np.zeros(self.n, dtype=bool)
        code = self.diseases.get(disease)
        if code is not None:
            p = self.cols.persons
            certified[self._mine(p.chronic_person[p.chronic_disease == code])] = True
        return certified

    def nonempty(self, field: str) -> Arr:
        assert field == "chronic"
        out = np.zeros(self.n, dtype=bool)
        out[self._mine(self.cols.persons.chronic_person)] = True
        return out

    def holds(self, identity: str) -> Arr:
        """Never asked: held identities are bits of the word the kernel tests from the grants (`_Facts`)."""
        raise AssertionError(f"person-only leaves do not test identities held ({identity})")  # pragma: no cover

    def _mine(self, persons: Arr) -> Arr:
        return persons[(persons >= self.low) & (persons < self.high)] - self.low


def _lean(f: _Field) -> _Field:
    """The field without its `missing` mask when nothing is missing (one gather less)."""
    return f if f.missing is None or f.missing.any() else _Field(f.values, None, f.vocab)


def _leaves(pred: Pred) -> Iterator[Pred]:
    """The static predicate leaves (fields, sets, identities held) a predicate is built from."""
    match pred:
        case PAnd(items) | POr(items):
            for item in items:
                yield from _leaves(item)
        case PNot(item):
            yield from _leaves(item)
        case PTrue() | PSelected() | PAdmission():
            return
        case _:
            yield pred


def _preds_of(graph: Graph) -> Iterator[Pred]:
    """Every claim-level predicate the evaluation tests: scopes, rules, alert filters."""
    for epoch in graph.epochs:
        for version in epoch.layers:
            if version is None:
                continue
            yield version.scope
            for name in _PROGRAMS:
                yield from (r.pred for r in _rules(getattr(version, name)))
        yield from (alert.where for alert in epoch.alerts)


_PROGRAMS = ("pricing", "deductible", "period", "bonus", "cap_claim", "cap_year", "accumulator")


def _mapped_raw(graph: Graph) -> list[str]:
    """Data identities that some identity schedule maps."""
    out: dict[str, None] = {}
    for epoch in graph.epochs:
        for version in epoch.layers:
            if version is not None and version.identity is not None:
                out.update((raw, None) for raw, _s in version.identity.mapping)
    return list(out)


def _has_best(graph: Graph) -> bool:
    """Whether some layer selects its identity schedule by `best` (candidates need year-end holdings)."""
    return any(v is not None and v.identity is not None and v.identity.precedence == "best"
               for e in graph.epochs for v in e.layers)


def _leaves_of(graph: Graph) -> tuple[list[Pred], list[str]]:
    """The predicate leaves a claim's parameters depend on (with every identity some schedule maps), and the
    mapped identities whose holding by the year's end matters (`best` candidates; none without `best`)."""
    atoms = list(dict.fromkeys(leaf for p in _preds_of(graph) for leaf in _leaves(p)))
    atoms += [h for raw in _mapped_raw(graph) if (h := PHolds(frozenset({raw}))) not in atoms]
    return atoms, _mapped_raw(graph) if _has_best(graph) else []


_PERSON_FIELDS = frozenset({*vector._PERSON_VOCAB, "region", "age", "retired", "resettled"})  # as vector._person_field


def _source(atom: Pred, cols: Columns) -> str:
    """Where a leaf's truth comes from: "hold" (identities held), "person" (person data only), else "claim"."""
    match atom:
        case PHolds():
            return "hold"
        case PCompare(field=field) | PIn(field=field):
            name = "level" if field == "hospital_level" else field
            if name in vector._CLAIM_VOCAB or name in vector._CLAIM_PLAIN or field in cols.claims.extra:
                return "claim"
            return "person" if field in _PERSON_FIELDS or field in cols.persons.extra else "claim"
        case PHas(field=field) | PNonEmpty(field=field):
            return "person" if field == "chronic" else "claim"
    return "claim"  # pragma: no cover - leaves are the kinds above


class _Grants(NamedTuple):
    """The identity grants sorted by person (the kernel walks them person by person)."""

    person: Arr  # int64
    code: Arr  # int64: data identity
    since: Arr  # int64 day number (NO_DATE: held all along)

    @staticmethod
    def of(cols: Columns) -> _Grants:
        p = cols.persons
        person = np.asarray(p.grant_person, dtype=np.int64)
        code, since = np.asarray(p.grant_identity, dtype=np.int64), np.asarray(p.grant_since, dtype=np.int64)
        if len(person) > 1 and bool(np.any(person[1:] < person[:-1])):
            order = np.argsort(person, kind="stable")
            person, code, since = person[order], code[order], since[order]
        return _Grants(person, code, since)


class _Facts(NamedTuple):
    """How the kernel assembles a claim's combination word (int64) from its static facts, low bits first: epoch,
    hospital level − low, inpatient, the claim-only leaves (`claim_word`, column-wise over the claims), the
    person-only leaves (per block over its persons, read at the claim's person), then one bit per
    identity test (a leaf `holds`, or a mapped identity held by the year's end)."""

    claim_word: Arr  # m (input order); empty without claim-only leaves
    person_leaves: tuple[Pred, ...]  # evaluated per block over its persons (`_person_word`)
    hold_mask: Arr  # H × data identities (int64 0/1): the identities each test counts
    hold_ye: Arr  # H int64: 1 = held by Dec 31 of the claim's year, 0 = on the claim's date
    layout: Arr  # L_* below
    epoch_starts: Arr  # day numbers where epochs 1, 2 … start


L_LEVEL_LOW, L_LEVEL_BITS, L_EPOCH_BITS, L_CLAIM_BITS, L_PERSON_BITS, L_AS_OF = range(6)  # of _Facts.layout
WORD_BITS = 63


def _facts(graph: Graph, cols: Columns, options: interp.Options, atoms: list[Pred], ye_raw: list[str],
           grants: _Grants) -> _Facts | None:
    """The word layout of these claims, or None when the facts need more than 63 bits."""
    c = cols.claims
    kinds = [_source(atom, cols) for atom in atoms]
    names = cols.identity_names
    holds = [[name in a.identities for name in names] for a, k in zip(atoms, kinds, strict=True)
             if k == "hold" and isinstance(a, PHolds)]
    holds += [[name == raw for name in names] for raw in ye_raw]
    n_claim, n_person = kinds.count("claim"), kinds.count("person")
    low, high = int(c.level.min()), int(c.level.max())
    level_bits, epoch_bits = (high - low).bit_length(), (len(graph.epochs) - 1).bit_length()
    if level_bits + epoch_bits + 1 + n_claim + n_person + len(holds) > WORD_BITS:
        return None
    idents = {name: i for i, name in enumerate(names)}
    claim_word = _packed(_Preds(_Rows(cols, None, grants), idents), [a for a, k in zip(atoms, kinds, strict=True)
                                                                      if k == "claim"], c.m)
    as_of = -1 if options.as_of is None else graph.epochs.index(graph.epoch_at(options.as_of))
    starts = [day_number(e.start) for e in graph.epochs[1:] if e.start is not None]
    return _Facts(
        claim_word, tuple(a for a, k in zip(atoms, kinds, strict=True) if k == "person"),
        np.array(holds, dtype=np.int64).reshape(len(holds), len(names)),
        np.array([0] * (len(holds) - len(ye_raw)) + [1] * len(ye_raw), dtype=np.int64),
        np.array([low, level_bits, epoch_bits, n_claim, n_person, as_of], dtype=np.int64),
        np.array(starts, dtype=np.int64))


def _person_word(cols: Columns, facts: _Facts, low: int, high: int) -> Arr:
    """The person-only leaves of the persons [low, high), packed."""
    return _packed(_Preds(_PersonFrame(cols, low, high), {}), list(facts.person_leaves), high - low)


def _packed(preds: _Preds, atoms: list[Pred], n: int) -> Arr:
    """Leaf k's truth as bit k of one integer per row: int8 for up to 7 leaves (empty without leaves), else int64
    (two shapes, so the compiled steps have few variants)."""
    dtype = np.int8 if len(atoms) <= 7 else np.int64
    word = np.zeros(n if atoms else 0, dtype=dtype)
    for bit, atom in enumerate(atoms):
        np.bitwise_or(word, np.left_shift(preds.static(atom).astype(dtype), bit, dtype=dtype), out=word)
        preds.cache.clear()
    return word


# ---- precompute: parameter tables per (combination, selected identity, admission class) ------------------
class _Ctx:
    """What the tables are built from: the graph and one representative claim of each combination."""

    def __init__(self, graph: Graph, cols: Columns, options: interp.Options, ye_raw: list[str], grants: _Grants,
                 reps: Arr, words: Arr, epoch_bits: int, year_start: Arr):
        self.graph, self.cols, self.options = graph, cols, options
        self.idents = {name: i for i, name in enumerate(cols.identity_names)}
        for name in graph.identities:  # schedule identities absent from the data are never held
            self.idents.setdefault(name, len(self.idents))
        self.ye_raw = ye_raw
        self.n_combos = len(reps)
        self.rep = _Rows(cols, reps, grants)
        self.preds = _Preds(self.rep, self.idents)
        day = np.asarray(cols.claims.day[reps], dtype=np.int64)
        self.epoch = words & ((1 << epoch_bits) - 1)  # the word's low bits (`_Facts`)
        self.level = cols.claims.level[reps].astype(np.int64)
        self.inpatient = (cols.claims.kind[reps] == INPATIENT).astype(np.int64)
        year = np.searchsorted(year_start, day, side="right") - 1
        self.rep_year_end = _year_ends(year_start)[year] if ye_raw else None

    def static(self, pred: Pred) -> Arr:
        """A predicate per combination, with no identity selected and no admission (scopes, filters)."""
        return self.preds.eval(pred, np.arange(self.n_combos), _Dyn.null(self.n_combos))

    def epoch_groups(self, combos: Arr) -> Iterator[tuple[int, Arr]]:
        """(epoch, positions in `combos`) for each epoch the combinations fall in."""
        yield from vector._groups(self.epoch[combos])


class _LayerPlan(NamedTuple):
    """How one layer's rows are laid out: per combination, n_sel selected identities × n_adm classes."""

    slots: tuple[str, ...]  # schedule identities; slot 0 = none selected, slot k = slots[k - 1]
    n_sel: int
    n_adm: int


def _uses(version_list: list[LayerVersion], kind: type) -> bool:
    found = False
    for version in version_list:
        for name in _PROGRAMS:
            for rule in _rules(getattr(version, name)):
                found = found or _has(rule.pred, kind)
    return found


def _has(pred: Pred, kind: type) -> bool:
    match pred:
        case PAnd(items) | POr(items):
            return any(_has(p, kind) for p in items)
        case PNot(item):
            return _has(item, kind)
    return isinstance(pred, kind)


def _admission_reps(graph: Graph) -> list[int]:
    """Admission numbers that stand for all others: n behaves as the largest of these <= n (0: none)."""
    reps = {0, 1}

    def visit(pred: Pred) -> None:
        match pred:
            case PAnd(items) | POr(items):
                for p in items:
                    visit(p)
            case PNot(item):
                visit(item)
            case PAdmission(_op, value) if value >= 1:
                reps.update((value, value + 1))

    for epoch in graph.epochs:
        for version in epoch.layers:
            if version is not None:
                for name in _PROGRAMS:
                    for rule in _rules(getattr(version, name)):
                        visit(rule.pred)
    return sorted(reps)


class _Form(NamedTuple):
    """A deductible as a function of previous_deductible p: min(max(a + s·p, lo), hi) per row."""

    a: Arr
    s: Arr
    lo: Arr
    hi: Arr

    @staticmethod
    def const(a: Arr) -> _Form:
        return _Form(a, np.zeros_like(a), np.full_like(a, -INF), np.full_like(a, INF))

    def shifted(self, c: Arr) -> _Form:
        return _Form(self.a + c, self.s, _bound_add(self.lo, c), _bound_add(self.hi, c))

    def negated(self) -> _Form:
        return _Form(-self.a, -self.s, -self.hi, -np.minimum(self.lo, self.hi))

    def value(self) -> Arr:
        """The value where the form does not depend on p (s = 0)."""
        return np.minimum(np.maximum(self.a, self.lo), self.hi)


def _bound_add(bound: Arr, c: Arr) -> Arr:
    return np.where(np.abs(bound) >= INF, bound, bound + c)


class _Symbolic:
    """Deductible programs that read previous_deductible, evaluated to per-row _Forms (the rest via _Env)."""

    def __init__(self, env: _Env):
        self.env = env

    def values(self, prog: Program[Any], idx: Arr) -> _Form:
        out = _Form.const(_zeros(idx))
        for rule, pos in self.env.winners(prog, idx):
            if rule is not None and rule.value is not None:
                got = self.val(rule.value, idx[pos], rule.below)
                for mine, theirs in zip(out, got, strict=True):
                    mine[pos] = theirs
        return out

    def val(self, value: Val, idx: Arr, below: Program[Any] | None) -> _Form:
        dep = _prev_form(value, below)
        if not dep:
            return _Form.const(self.env.val(value, idx, self.env.below_val(below)))
        if isinstance(value, Prev):
            zero = _zeros(idx)
            return _Form(zero, np.ones_like(zero), np.full_like(zero, -INF), np.full_like(zero, INF))
        if isinstance(value, Below):
            assert below is not None
            return self.values(below, idx)
        assert isinstance(value, Op)
        left, right = self.val(value.left, idx, below), self.val(value.right, idx, below)
        return _combine(value.op, left, right, _prev_form(value.left, below) is True)


def _combine(op: str, left: _Form, right: _Form, left_dynamic: bool) -> _Form:
    """add/sub/max/min of a p-dependent form and a constant (the checker allows one dependent side)."""
    form, const = (left, right.value()) if left_dynamic else (right, left.value())
    if op == "add":
        return form.shifted(const)
    if op == "sub":
        return form.shifted(-const) if left_dynamic else form.negated().shifted(const)
    if op == "max":
        return _Form(form.a, form.s, np.maximum(form.lo, const), np.maximum(form.hi, const))
    assert op == "min"
    return _Form(form.a, form.s, form.lo, np.minimum(form.hi, const))


_ROW_FIELDS = ("kind", "rate", "tier", "amount", "unit_col", "ded_a", "ded_s", "ded_lo", "ded_hi", "is_year", "acc",
               "bonus_rate", "bonus_col", "cap_claim", "cap_year", "pool", "pool_cap", "fail")
(R_KIND, R_RATE, R_TIER, R_AMOUNT, R_UNIT_COL, R_DED_A, R_DED_S, R_DED_LO, R_DED_HI, R_IS_YEAR, R_ACC, R_BONUS_RATE,
 R_BONUS_COL, R_CAP_CLAIM, R_CAP_YEAR, R_POOL, R_POOL_CAP, R_FAIL) = range(len(_ROW_FIELDS))


class _Builder:
    """Parameter tables of every layer over (combination, selected identity, admission class) rows."""

    def __init__(self, ctx: _Ctx, numbers: dict[str, int]):
        self.ctx, self.graph, self.numbers = ctx, ctx.graph, numbers
        self.adm_reps = _admission_reps(ctx.graph)
        self.periods = ["claim", "admission", "year"]
        self.accumulators = ["main"]
        self.pools: list[str] = []
        self.tiers: list[Tiered] = []

    def plan(self, index: int) -> _LayerPlan:
        versions = [v for e in self.graph.epochs if (v := e.layers[index]) is not None]
        slots = tuple(dict.fromkeys(s for v in versions if v.identity is not None for s in v.identity.order))
        n_sel = 1 + len(slots) if _uses(versions, PSelected) else 1
        n_adm = len(self.adm_reps) if _uses(versions, PAdmission) else 1
        return _LayerPlan(slots, n_sel, n_adm)

    def rows(self, index: int, plan: _LayerPlan, scope: Arr) -> dict[str, Arr]:
        """The layer's parameters, one row per (combination, selected slot, admission class)."""
        ctx, per = self.ctx, plan.n_sel * plan.n_adm
        n = ctx.n_combos * per
        combo = np.repeat(np.arange(ctx.n_combos), per)
        slot = np.tile(np.repeat(np.arange(plan.n_sel), plan.n_adm), ctx.n_combos)
        codes = np.array([-1, *(self.ctx.idents[s] for s in plan.slots)], dtype=np.int64)
        dyn = _Dyn(codes[slot], np.tile(np.array(self.adm_reps[:plan.n_adm], dtype=np.int64), n // plan.n_adm))
        out = {name: _zeros(combo) for name in _ROW_FIELDS}
        out["ded_lo"][:], out["ded_hi"][:], out["cap_year"][:] = -INF, INF, INF
        out["cap_claim"][:], out["tier"][:], out["unit_col"][:], out["bonus_col"][:], out["pool"][:] = \
            NO_CAP, -1, -1, -1, -1
        cache: dict[Pred, Arr] = {}

        def pred(p: Pred) -> Arr:
            if p not in cache:
                cache[p] = ctx.preds.eval(p, combo, dyn)
            return cache[p]

        sink, pool_sink = _Sink(n), _Sink(n)
        active = np.flatnonzero(scope[combo])
        for epoch, pos in ctx.epoch_groups(combo[active]):
            version = self.graph.epochs[epoch].layers[index]
            assert version is not None
            params = dict(self.graph.epochs[epoch].params)
            env = _Env(pred, ctx.level[combo], None, params, ctx.options.settings, sink)
            pool_env = _Env(pred, ctx.level[combo], None, params, ctx.options.settings, pool_sink)
            self._fill(env, pool_env, version, index, epoch, active[pos], out)
        out["fail"] = (sink.code != 0).astype(np.int64) + 2 * (pool_sink.code != 0)
        return out

    def _fill(self, env: _Env, pool_env: _Env, version: LayerVersion, index: int, epoch: int, idx: Arr,
              out: dict[str, Arr]) -> None:
        self._pricing(env, version.pricing, idx, out)
        cov = idx[out["kind"][idx] != NO_PRICING]
        self._deductible(env, version, cov, out)
        out["is_year"][cov] = env.codes(version.period, cov, self.periods, "claim") == self.periods.index("year")
        out["acc"][cov] = env.codes(version.accumulator, cov, self.accumulators, "main")
        self._bonus(env, version, cov[out["kind"][cov] == FLAT], out)
        limit, none = env.values(version.cap_claim, cov)
        out["cap_claim"][cov] = np.where(none, NO_CAP, np.maximum(0, np.minimum(limit, FEN_LIMIT)) * RATE_ONE)
        value, none = env.values(version.cap_year, cov)
        out["cap_year"][cov] = np.where(none, INF, value)
        shared = next((p for p in self.graph.epochs[epoch].pools if index in p.layers), None)
        if shared is not None:
            out["pool"][cov] = self._code(self.pools, shared.id)
            out["pool_cap"][cov] = pool_env.val(shared.cap, cov, _zeros)

    def _pricing(self, env: _Env, prog: Program[Any], idx: Arr, out: dict[str, Arr]) -> None:
        for rule, pos in env.winners(prog, idx):
            sub, value = idx[pos], None if rule is None else rule.value
            if isinstance(value, Flat):
                assert rule is not None
                rate = env.val(value.rate, sub, env.below_rate(rule.below))
                out["kind"][sub], out["rate"][sub] = FLAT, np.clip(rate, 0, RATE_ONE)
            elif isinstance(value, Tiered):
                out["kind"][sub], out["tier"][sub] = TIERED, self._code(self.tiers, value)
            elif isinstance(value, Unit):
                out["kind"][sub], out["amount"][sub] = UNIT, env.val(value.amount, sub, _zeros)
                out["unit_col"][sub] = self.numbers[value.column]

    def _deductible(self, env: _Env, version: LayerVersion, cov: Arr, out: dict[str, Arr]) -> None:
        if any(_mentions_prev(r.value) for r in _rules(version.deductible)):
            form = _Symbolic(env).values(version.deductible, cov)
        else:
            value, none = env.values(version.deductible, cov)
            form = _Form.const(np.where(none, 0, value))
        for name, part in zip(("ded_a", "ded_s", "ded_lo", "ded_hi"), form, strict=True):
            out[name][cov] = part

    def _bonus(self, env: _Env, version: LayerVersion, flat: Arr, out: dict[str, Arr]) -> None:
        for rule, pos in env.winners(version.bonus, flat):
            if rule is None or not isinstance(rule.value, BonusSpec):
                continue
            sub = flat[pos]
            extra = np.clip(env.val(rule.value.rate, sub, _zeros), 0, RATE_ONE)
            out["bonus_rate"][sub] = np.maximum(0, np.minimum(extra, RATE_ONE - out["rate"][sub]))
            out["bonus_col"][sub] = self.numbers[rule.value.column]

    @staticmethod
    def _code(table: list[Any], value: Any) -> int:
        if value not in table:
            table.append(value)
        return table.index(value)


def _numbers_of(graph: Graph) -> list[str]:
    """Claim columns read as numbers: unit columns, bonus columns, columns added to the base."""
    names: dict[str, None] = {}
    for epoch in graph.epochs:
        for version in epoch.layers:
            if version is None:
                continue
            names.update((col, None) for col in version.base_plus)
            for rule in _rules(version.pricing):
                if isinstance(rule.value, Unit):
                    names[rule.value.column] = None
            for rule in _rules(version.bonus):
                if isinstance(rule.value, BonusSpec):
                    names[rule.value.column] = None
    return list(names)


C_EPOCH, C_INPATIENT = 0, 1  # columns of _Tables.combo
LC_SCOPE, LC_SEL, LC_HELD_DAY, LC_HELD_YE, LC_ROW = 0, 1, 2, 3, 4  # of _Tables.lc
L_SEL, L_ADM, L_ROW = 0, 1, 2  # of _Tables.layer
E_PREC, E_SPEC_LEN, E_BASE_FROM, E_BASE_PLUS, E_BLOCK_LEN = 0, 1, 2, 3, 4  # of _Tables.le


class _Tables(NamedTuple):
    """Everything the kernel reads besides the claims (small), packed into few arrays: the hot loop keeps
    every array it reads in registers or on the stack."""

    combo: Arr  # C × 2: epoch, inpatient claim (1)
    lc: Arr  # L × C × 5: in force and in scope; slot selected by declared order on the claim's date (0: none);
    #          bit masks of the slots held on the claim's date, and by the end of its year; the parameter row
    #          of that slot when the layer has no admission classes (-1: `_row` works it out)
    layer: Arr  # L × 3: selected-identity rows (n_sel), admission classes (n_adm), first parameter row
    adm_reps: Arr  # admission numbers standing for their classes
    le: Arr  # L × E × 5: precedence (0 no schedule or not in force, 1 order, 2 best), schedule length, bit masks
    #          of the layers subtracted from the eligible cost and of the number columns added, shared-cap size
    spec: Arr  # L × E × S: the schedule's slots in declared order
    block: Arr  # L × E × L: the layers of the shared cap holding this layer in this epoch
    rows: Arr  # R × len(_ROW_FIELDS)
    tier_specs: Arr  # T × 3: axis (0 payable, 1 base), first item, number of items
    tier_items: Arr  # Q × 3: low, high (INF: none), rate (clamped)
    n_keys: int
    n_pools: int
    alert_year: Arr  # I: alert instances (year, alert of that year's epoch)
    alert_layers: Arr  # I × L: 1 = the layer's payment reduces the burden
    alert_where: Arr  # I × C


class _ClaimData(NamedTuple):
    """One block's claims in (person, date, claim id) order (views of the partitioned columns)."""

    idx: Arr  # input row
    key: Arr  # (person − p_low) << day_bits | (day − day_low)
    p_low: int
    day_low: int
    day_bits: int
    cid: Arr  # the block's own number of the claim's combination
    eligible: Arr
    total: Arr
    remap: Arr  # block number -> combination
    year_start: Arr  # Jan 1 of each year with claims
    numbers: Arr  # K × m, input order


class _Outputs(NamedTuple):
    payments: Arr  # m × L, input order (every block writes its own rows)
    out_of_pocket: Arr  # m
    py_person: Arr  # the block's person-years: person, year (index), payments by layer, costs, alert burdens
    py_year: Arr
    py_payments: Arr
    py_total: Arr
    py_eligible: Arr
    py_oop: Arr
    burden: Arr  # k × I


def _identity_tables(ctx: _Ctx, index: int, plan: _LayerPlan, held: Callable[[str], Arr],
                     ye: Callable[[str], Arr] | None) -> tuple[Arr, Arr, Arr]:
    """Per combination: the slot chosen in declared order, and slots held on the day / by the year's end."""
    n = ctx.n_combos
    sel, day_bits, ye_bits = _zeros(np.arange(n)), _zeros(np.arange(n)), _zeros(np.arange(n))
    for epoch, pos in ctx.epoch_groups(np.arange(n)):
        version = ctx.graph.epochs[epoch].layers[index]
        if version is None or version.identity is None:
            continue
        mapping = version.identity.mapping
        for name in reversed(version.identity.order):
            slot = plan.slots.index(name) + 1
            on_day = vector._any([held(raw)[pos] for raw, s in mapping if s == name], len(pos))
            sel[pos] = np.where(on_day, slot, sel[pos])
            day_bits[pos] |= on_day.astype(np.int64) << slot
            if ye is not None:
                by_end = vector._any([ye(raw)[pos] for raw, s in mapping if s == name], len(pos))
                ye_bits[pos] |= by_end.astype(np.int64) << slot
    return sel, day_bits, ye_bits


def _epoch_tables(graph: Graph, plans: list[_LayerPlan], numbers: dict[str, int]) -> dict[str, Arr]:
    """Per layer and epoch: identity precedence and order, base composition, shared-cap blocks."""
    n_l, n_e = len(graph.layers), len(graph.epochs)
    width = max([1, *(len(p.slots) for p in plans)])
    le, spec = np.zeros((n_l, n_e, 5), np.int64), np.zeros((n_l, n_e, width), np.int64)
    block = np.zeros((n_l, n_e, max(n_l, 1)), np.int64)
    for e, epoch in enumerate(graph.epochs):
        for index, version in enumerate(epoch.layers):
            pool = next((p for p in epoch.pools if index in p.layers), None)
            if pool is not None:
                le[index, e, E_BLOCK_LEN] = len(pool.layers)
                block[index, e, :len(pool.layers)] = pool.layers
            if version is None:
                continue
            le[index, e, E_BASE_FROM] = sum(1 << j for j in version.base_from)
            le[index, e, E_BASE_PLUS] = sum(1 << numbers[col] for col in version.base_plus)
            if version.identity is not None:
                order = version.identity.order
                le[index, e, E_PREC] = 2 if version.identity.precedence == "best" else 1
                le[index, e, E_SPEC_LEN] = len(order)
                spec[index, e, :len(order)] = [plans[index].slots.index(s) + 1 for s in order]
    return {"le": le, "spec": spec, "block": block}


def _tier_tables(tiers: list[Tiered]) -> dict[str, Arr]:
    """Marginal tiers: each spec's items sorted by their low bound (the sum of rate × overlap is the same)."""
    items = [(t.low, INF if t.high is None else t.high, min(max(t.rate, 0), RATE_ONE))
             for spec in tiers for t in sorted(spec.tiers, key=lambda t: t.low)]
    counts = [len(spec.tiers) for spec in tiers]
    specs = [(int(spec.axis == "base"), start, n)
             for spec, start, n in zip(tiers, np.cumsum([0, *counts])[:-1], counts, strict=True)]
    return {"tier_specs": np.array(specs, dtype=np.int64).reshape(len(tiers), 3),
            "tier_items": np.array(items, dtype=np.int64).reshape(len(items), 3)}


def _alert_tables(ctx: _Ctx, years: Arr) -> tuple[dict[str, Arr], list[tuple[int, int, int]]]:
    """Alert instances (one per year and alert of that year's epoch): their layers and claim filters."""
    graph = ctx.graph
    instances: list[tuple[int, int, int]] = []
    where: list[Arr] = []
    layers: list[Arr] = []
    for yi, epoch in enumerate(_year_epochs(graph, years, ctx.options)):
        for ai, alert in enumerate(epoch.alerts):
            instances.append((yi, ai, len(instances)))
            mask = np.zeros(max(len(graph.layers), 1), dtype=np.int64)
            mask[list(alert.layers)] = 1
            layers.append(mask)
            where.append(ctx.static(alert.where).astype(np.int64))
    n_l = max(len(graph.layers), 1)
    return ({"alert_year": np.array([i[0] for i in instances], dtype=np.int64),
             "alert_layers": np.array(layers, dtype=np.int64).reshape(len(instances), n_l),
             "alert_where": np.array(where, dtype=np.int64).reshape(len(instances), ctx.n_combos)}, instances)


def _year_epochs(graph: Graph, years: Arr, options: interp.Options) -> list[Epoch]:
    return [graph.epoch_at(options.as_of or datetime.date(int(y), 12, 31)) for y in years]


def _build_tables(ctx: _Ctx, numbers: dict[str, int], years: Arr) -> tuple[_Tables, list[tuple[int, int, int]]]:
    graph, builder = ctx.graph, _Builder(ctx, numbers)
    n_l = len(graph.layers)
    plans = [builder.plan(i) for i in range(n_l)]
    scope, sel, held_day, held_ye, by_order, rows, offsets = [], [], [], [], [], [], []
    holds = {raw: ctx.rep.holds(raw) for raw in _mapped_raw(graph)}
    ye = None if ctx.rep_year_end is None else {raw: ctx.rep.held_by(raw, ctx.rep_year_end) for raw in ctx.ye_raw}
    start = 0
    for index, plan in enumerate(plans):
        in_scope = np.zeros(ctx.n_combos, dtype=bool)
        for epoch, pos in ctx.epoch_groups(np.arange(ctx.n_combos)):
            version = graph.epochs[epoch].layers[index]
            if version is not None:
                in_scope[pos] = ctx.static(version.scope)[pos]
        scope.append(in_scope)
        s, d, y = _identity_tables(ctx, index, plan, holds.__getitem__, None if ye is None else ye.__getitem__)
        sel.append(s)
        held_day.append(d)
        held_ye.append(y)
        first_row = start + np.arange(ctx.n_combos) * plan.n_sel + (s if plan.n_sel > 1 else 0)
        by_order.append(first_row if plan.n_adm == 1 else np.full(ctx.n_combos, -1))
        table = builder.rows(index, plan, in_scope)
        rows.append(np.stack([table[name] for name in _ROW_FIELDS], axis=1))
        offsets.append(start)
        start += len(rows[-1])
    alerts, instances = _alert_tables(ctx, years)
    per_layer = (n_l, ctx.n_combos)
    lc = np.stack([np.array(part, dtype=np.int64).reshape(per_layer)
                   for part in (scope, sel, held_day, held_ye, by_order)], axis=2)
    tables = _Tables(
        combo=np.stack([ctx.epoch, ctx.inpatient], axis=1), lc=lc,
        layer=np.array([(p.n_sel, p.n_adm, o) for p, o in zip(plans, offsets, strict=True)],
                       dtype=np.int64).reshape(n_l, 3),
        adm_reps=np.array(builder.adm_reps, dtype=np.int64), **_epoch_tables(graph, plans, numbers),
        rows=np.concatenate(rows) if rows else np.zeros((0, len(_ROW_FIELDS)), dtype=np.int64),
        **_tier_tables(builder.tiers), n_keys=len(builder.accumulators), n_pools=max(len(builder.pools), 1),
        **alerts)
    return tables, instances


# ---- the Numba kernel ---------------------------------------------------------------------------------------
# The hot loop lives in one function, with the tables unpacked into local arrays once: arrays passed through
# calls, or read out of the tuples, on every claim cost Numba a reference-count update each time.
RADIX_BITS = 14  # widest digit of the radix sort: at most 16384 buckets, whose counts stay in the L2 cache
NEVER = (1 << 31) - 1  # the `since` of an identity never held (after every day number)


@_jit
def _sort_keys(key: Arr, rank: Arr, idx: Arr, bits: int) -> Arr:
    """Sorts keys of `bits` bits in place, stably, by an LSD radix sort (a few O(m) passes), then runs of equal
    keys (same person and day) by rank[idx[row]] (read only for those). Returns the row at each position."""
    m = key.shape[0]
    order = np.arange(m)
    passes = max(1, (bits + RADIX_BITS - 1) // RADIX_BITS)
    width = (bits + passes - 1) // passes
    mask = (1 << width) - 1
    counts = np.zeros((passes, mask + 2), np.int64)
    for c in range(m):
        for d in range(passes):
            counts[d, ((key[c] >> (d * width)) & mask) + 1] += 1
    src, dst, src_order, dst_order = key, np.empty(m, np.int64), order, np.empty(m, np.int64)
    for d in range(passes):
        for v in range(mask + 1):
            counts[d, v + 1] += counts[d, v]
        low_bit = d * width
        for i in range(m):
            k = src[i]
            slot = counts[d, (k >> low_bit) & mask]
            counts[d, (k >> low_bit) & mask] = slot + 1
            dst[slot], dst_order[slot] = k, src_order[i]
        src, dst = dst, src
        src_order, dst_order = dst_order, src_order
    if passes % 2:
        key[:] = src  # the sorted keys end in the caller's array
    _order_ties(key, src_order, rank, idx)
    return src_order


@_jit
def _order_ties(key: Arr, order: Arr, rank: Arr, idx: Arr) -> None:
    """Within runs of equal keys (same person and day), a stable sort by rank[idx[row]]: insertion for the usual
    few claims, a merge sort for long runs."""
    a = 0
    m = key.shape[0]
    while a < m:
        b = a + 1
        while b < m and key[b] == key[a]:
            b += 1
        if b - a > 32:
            run = order[a:b].copy()
            order[a:b] = run[np.argsort(rank[idx[run]], kind="mergesort")]
        elif b - a > 1:
            for i in range(a + 1, b):
                c = order[i]
                j = i - 1
                while j >= a and rank[idx[order[j]]] > rank[idx[c]]:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = c
        a = b


@_jit
def _since_rows(g_person: Arr, g_code: Arr, g_since: Arr, person: Arr, code: int) -> Arr:
    """Per row: the earliest day its person holds identity `code` from (grants sorted by person), else NEVER."""
    out = np.full(person.shape[0], NEVER, np.int64)
    for i in range(person.shape[0]):
        j = np.searchsorted(g_person, person[i])
        while j < g_person.shape[0] and g_person[j] == person[i]:
            if g_code[j] == code:
                out[i] = min(out[i], g_since[j])
            j += 1
    return out


# ---- blocks: claims partitioned by ranges of persons, each sorted and evaluated on its own -------------------
@_jit
def _bucket_counts(person: Arr, a: int, e: int, shift: int, n_buckets: int) -> Arr:
    """Claims of input rows [a, e) per person range (person >> shift)."""
    counts = np.zeros(n_buckets, np.int64)
    for c in range(a, e):
        counts[person[c] >> shift] += 1
    return counts


@_jit
def _partition(a: int, e: int, shift: int, block_of: Arr, pos: Arr, p_low: Arr, day_low: int, day_bits: int,
               person: Arr, day: Arr, eligible: Arr, total: Arr, level: Arr, kind: Arr, claim_word: Arr, layout: Arr,
               epoch_starts: Arr, idx: Arr, b_key: Arr, b_eligible: Arr, b_total: Arr, b_word: Arr) -> None:
    """Input rows [a, e) into their blocks, stably (pos[b]: the next free position of block b): their row, sort key
    (person − the block's first) << day_bits | (day − day_low), costs (`b_total` empty: not copied) and the claim's
    own part of its word (epoch, level, inpatient, claim-only leaves), all read here in input order."""
    with_total = b_total.shape[0] > 0
    level_low, level_bits, epoch_bits = layout[L_LEVEL_LOW], layout[L_LEVEL_BITS], layout[L_EPOCH_BITS]
    as_of, claim_at = layout[L_AS_OF], layout[L_EPOCH_BITS] + layout[L_LEVEL_BITS] + 1
    for c in range(a, e):
        b = block_of[person[c] >> shift]
        k = pos[b]
        pos[b] = k + 1
        idx[k], b_eligible[k] = c, eligible[c]
        b_key[k] = (np.int64(person[c] - p_low[b]) << day_bits) | (day[c] - day_low)
        if with_total:
            b_total[k] = total[c]
        ep = as_of
        if ep < 0:
            ep = 0
            while ep < epoch_starts.shape[0] and epoch_starts[ep] <= day[c]:
                ep += 1
        word = ep | ((np.int64(level[c]) - level_low) << epoch_bits) | (np.int64(kind[c] == INPATIENT)
                                                                        << (epoch_bits + level_bits))
        if claim_word.shape[0]:
            word |= np.int64(claim_word[c]) << claim_at
        b_word[k] = word


@_jit
def _permute(values: Arr, a: int, order: Arr) -> None:
    """values[a:a + len(order)] reordered: position i takes what was at a + order[i]."""
    if values.shape[0]:
        run = values[a:a + order.shape[0]].copy()
        for i in range(order.shape[0]):
            values[a + i] = run[order[i]]


@_jit
def _prepare_block(a: int, e: int, p_low: int, key_bits: int, day_low: int, day_bits: int, idx: Arr, key: Arr,
                   eligible: Arr, total: Arr, word: Arr, rank: Arr, person_word: Arr, g_person: Arr, g_code: Arr,
                   g_since: Arr, hold_mask: Arr, hold_ye: Arr, layout: Arr, year_start: Arr, year_end: Arr,
                   ) -> tuple[Arr, Arr, int]:
    """Sort a block's claims by (person, date, claim id) in place, complete their combination words (person-only
    leaves, `person_word` from p_low on; identities held) and number them locally: word[i] = local number; returns
    the distinct words (in local numbering), a claim (input row) of each, and the block's person-years."""
    order = _sort_keys(key[a:e], rank, idx[a:e], key_bits)
    _permute(idx, a, order)
    _permute(eligible, a, order)
    _permute(total, a, order)
    _permute(word, a, order)
    day_mask = (np.int64(1) << day_bits) - 1
    person_at = layout[L_EPOCH_BITS] + layout[L_LEVEL_BITS] + 1 + layout[L_CLAIM_BITS]
    hold_at = person_at + layout[L_PERSON_BITS]
    n_hold = hold_mask.shape[0]
    since = np.empty(n_hold, np.int64)
    size = 64  # open addressing: word -> local number, at most half full
    slots, slot_ids = np.full(size, -1, np.int64), np.zeros(size, np.int64)
    words, reps = np.empty(16, np.int64), np.empty(16, np.int64)
    count, n_py, g = 0, 0, np.searchsorted(g_person, p_low)
    last_person, last_year = -1, -1
    for i in range(a, e):
        p, d = p_low + (key[i] >> day_bits), day_low + (key[i] & day_mask)
        y = year_start.shape[0] - 1
        while y > 0 and year_start[y] > d:
            y -= 1
        if p != last_person:  # the person's identity tests, from the grants
            while g < g_person.shape[0] and g_person[g] < p:
                g += 1
            for h in range(n_hold):
                since[h] = NEVER
            j = g
            while j < g_person.shape[0] and g_person[j] == p:
                for h in range(n_hold):
                    if hold_mask[h, g_code[j]]:
                        since[h] = min(since[h], g_since[j])
                j += 1
        if p != last_person or y != last_year:
            n_py += 1
        last_person, last_year = p, y
        w = word[i]
        if person_word.shape[0]:
            w |= np.int64(person_word[p - p_low]) << person_at
        for h in range(n_hold):
            if since[h] <= (year_end[y] if hold_ye[h] else d):
                w |= np.int64(1) << (hold_at + h)
        s = _hash(w, size)
        while slots[s] != -1 and slots[s] != w:
            s = (s + 1) & (size - 1)
        if slots[s] == -1:
            if count == words.shape[0]:
                words, reps = _grown(words), _grown(reps)
            slots[s], slot_ids[s], words[count], reps[count] = w, count, w, idx[i]
            count += 1
            if 2 * count > size:
                size *= 2
                slots, slot_ids = _rehashed(words, count, size)
            word[i] = count - 1
        else:
            word[i] = slot_ids[s]
    return words[:count].copy(), reps[:count].copy(), n_py


@_jit
def _hash(word: int, size: int) -> int:
    """A slot of an open-addressing table of `size` (a power of two) for a word (Fibonacci hashing)."""
    h = np.uint64(word) * np.uint64(0x9E3779B97F4A7C15)
    return int(h >> np.uint64(32)) & (size - 1)


@_jit
def _grown(values: Arr) -> Arr:
    out = np.empty(2 * values.shape[0], values.dtype)
    out[:values.shape[0]] = values
    return out


@_jit
def _rehashed(words: Arr, count: int, size: int) -> tuple[Arr, Arr]:
    slots, slot_ids = np.full(size, -1, np.int64), np.zeros(size, np.int64)
    for k in range(count):
        s = _hash(words[k], size)
        while slots[s] != -1:
            s = (s + 1) & (size - 1)
        slots[s], slot_ids[s] = words[k], k
    return slots, slot_ids


@_inline
def _row(offset: int, n_sel: int, n_adm: int, adm_reps: Arr, combo: int, sel: int, adm: int) -> int:
    """The parameter row of a claim's combination, selected slot and admission number."""
    cls = 0
    if n_adm > 1:
        cls = n_adm - 1
        while adm_reps[cls] > adm:
            cls -= 1
    return int(offset + (combo * n_sel + (sel if n_sel > 1 else 0)) * n_adm + cls) & NONNEG


@_jit
def _block_epoch(combo_of: Arr, combo: Arr, le: Arr, a: int, e: int, layer: int) -> int:
    """The epoch of the first claim whose epoch puts `layer` in a shared cap (interp's _pool_block), or -1."""
    for i in range(a, e):
        ep = combo[combo_of[i], C_EPOCH]
        if le[layer, ep, E_BLOCK_LEN] > 0:
            return int(ep)
    return -1


@_jit
def _candidates(combo_of: Arr, combo: Arr, lc: Arr, le: Arr, spec: Arr, a: int, e: int, layer: int,
                slots: Arr) -> int:
    """interp's _run_layer set-up: with `best` precedence (of the first schedule in claim order), the schedules
    held by the year's end in declared order, epochs in claim order (into `slots`); 0 otherwise."""
    mode = 0
    for i in range(a, e):
        mode = le[layer, combo[combo_of[i], C_EPOCH], E_PREC]
        if mode != 0:
            break
    if mode != 2:
        return 0
    n, last = 0, -1
    for i in range(a, e):
        c = combo_of[i]
        ep = combo[c, C_EPOCH]
        if ep == last or le[layer, ep, E_PREC] == 0:
            continue
        last = ep
        for k in range(le[layer, ep, E_SPEC_LEN]):
            s = spec[layer, ep, k]
            if (lc[layer, c, LC_HELD_YE] >> s) & 1 and not _member(slots, n, s):
                slots[n] = s
                n += 1
    return n


@_jit
def _member(values: Arr, n: int, value: int) -> bool:
    for i in range(n):  # noqa: SIM110 - a loop Numba compiles
        if values[i] == value:
            return True
    return False


@_jit
def _evaluate(cl: _ClaimData, tb: _Tables, out: _Outputs) -> bool:
    """interp's evaluation of every person-year of a block (claims sorted); True when some claim needs what the
    tables could not give (an unspecified parameter, a unit payment beyond int64): the caller then falls back.

    A person-year's layers run in *stages*: consecutive steps evaluated claim by claim together, each layer
    (lane) with its own running state. That equals interp's layer after layer, as a layer's step reads only
    its own state and the earlier layers' payments on the same claim. A layer choosing among several `best`
    schedules is a stage of its own, run once per candidate; a stage holds at most one shared-cap block."""
    # (fields are read out of the tuples once: inside the loop each read would cost a reference count)
    idx, key, p_low, day_low, day_bits, cid, eligible, total, remap, year_start, numbers = cl
    (combo, lc, layer_info, adm_reps, le, spec, block, rows, tier_specs, tier_items, n_keys, n_pools, alert_year,
     alert_layers, alert_where) = tb
    payments, out_of_pocket, py_person, py_year, py_payments, py_total, py_eligible, py_oop, burden = out
    n_layers, width, m = payments.shape[1], max(payments.shape[1], 1), key.shape[0]
    person, year, combo_of = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
    day_mask = (np.int64(1) << day_bits) - 1
    for i in range(m):
        day = day_low + (key[i] & day_mask)
        y = year_start.shape[0] - 1
        while y > 0 and year_start[y] > day:
            y -= 1
        person[i], year[i], combo_of[i] = p_low + (key[i] >> day_bits), y, remap[cid[i]]
    pay = np.zeros((m, n_layers), np.int64)  # the block's payments, sorted order
    longest, a = 1, 0
    for i in range(1, m + 1):
        if i == m or person[i] != person[a] or year[i] != year[a]:
            longest = max(longest, i - a)
            a = i
    cand = np.zeros((spec.shape[2] + 1, longest), np.int64)  # one row per `best` candidate run
    n_state = 6 + 2 * n_keys
    state = np.zeros((width, n_state), np.int64)  # per lane: _ADM.._PAID, then base and payable per accumulator
    pool_paid = np.zeros(n_pools, np.int64)
    lane = np.zeros((width, 3), np.int64)  # per lane: layer, fixed schedule slot (-1: by order), pooled (1)
    for k in range(width):
        lane[k, 0], lane[k, 1] = k, -1
    slots = np.zeros(spec.shape[2] + 1, np.int64)
    static = True  # no shared cap and no `best` anywhere: one stage of every layer, identities by order
    for j in range(n_layers):
        for ep in range(le.shape[1]):
            static = static and le[j, ep, E_BLOCK_LEN] == 0 and le[j, ep, E_PREC] != 2
    failed = False
    a, n_py = 0, 0
    while a < m:  # person-years: runs of sorted claims
        p, yi = person[a], year[a]
        e = a + 1
        while e < m and person[e] == p and year[e] == yi:
            e += 1
        next_layer, done = 0, 0
        while next_layer < n_layers:
            if static:
                n_lanes, n_runs, next_layer = n_layers, 1, n_layers
            else:
                n_lanes, n_runs, next_layer, done = _stage(combo_of, combo, lc, le, spec, block, a, e, next_layer,
                                                           done, lane, slots)
                if n_lanes == 0:
                    break
            best, best_total = 0, 0
            for run in range(n_runs):
                for k in range(n_lanes):
                    for f in range(n_state):
                        state[k, f] = 0
                for q in range(n_pools):
                    pool_paid[q] = 0
                run_total = 0
                for i in range(a & NONNEG, e):
                    c = combo_of[i] & NONNEG
                    inpatient = combo[c, C_INPATIENT] == 1
                    for k in range(n_lanes):
                        own = lane[k, 0] & NONNEG
                        paid_now = 0
                        if lc[own, c, LC_SCOPE] != 0:
                            fixed = slots[run] if n_runs > 1 else lane[k, 1]  # -1: selection by order
                            r = lc[own, c, LC_ROW]  # (by order, where admission numbers do not matter)
                            if fixed >= 0 or r < 0:
                                if fixed >= 0:
                                    sel = fixed if (lc[own, c, LC_HELD_DAY] >> fixed) & 1 else 0
                                else:
                                    sel = lc[own, c, LC_SEL]
                                r = _row(layer_info[own, L_ROW], layer_info[own, L_SEL], layer_info[own, L_ADM],
                                         adm_reps, c, sel, state[k, _ADM] + 1 if inpatient else 0)
                            failed = failed or (rows[r, R_FAIL] & 1) != 0
                            kind = rows[r, R_KIND]
                            if kind != NO_PRICING:
                                # -- interp's _step: base, deductible part, exact payment, rounding, caps
                                if inpatient:
                                    state[k, _ADM] += 1
                                ep = combo[c, C_EPOCH] & NONNEG
                                subtract, before, extra = le[own, ep, E_BASE_FROM], 0, 0
                                for j in range(own):
                                    before += pay[i, j]
                                if subtract:
                                    for j in range(n_layers):
                                        if (subtract >> j) & 1:
                                            extra -= pay[i, j]
                                added = le[own, ep, E_BASE_PLUS]
                                plus = 0
                                if added:
                                    for j in range(numbers.shape[0]):
                                        if (added >> j) & 1:
                                            plus += numbers[j, idx[i]]
                                base = max(0, min(max(0, eligible[i] + extra) + plus, total[i] - before))
                                nominal = max(0, min(max(rows[r, R_DED_A] + rows[r, R_DED_S] * state[k, _PREV],
                                                         rows[r, R_DED_LO]), rows[r, R_DED_HI]))
                                key = rows[r, R_ACC] & NONNEG
                                acc_before, x_before = state[k, 6 + key], state[k, 6 + n_keys + key]
                                if rows[r, R_IS_YEAR]:
                                    part = min(base, max(0, nominal - acc_before))
                                else:
                                    part = min(base, nominal)
                                if inpatient:
                                    state[k, _PREV] = part
                                payable = base - part
                                if kind == FLAT:
                                    exact = rows[r, R_RATE] * payable
                                    if rows[r, R_BONUS_COL] >= 0:
                                        exact += rows[r, R_BONUS_RATE] * min(payable, numbers[rows[r, R_BONUS_COL], idx[i]])
                                elif kind == TIERED:
                                    t = rows[r, R_TIER] & NONNEG
                                    if tier_specs[t, 0] == 0:  # on the payable amount
                                        low, high = x_before, x_before + payable
                                    else:  # on the base
                                        low, high = acc_before + part, acc_before + base
                                    exact = 0
                                    for q in range(tier_specs[t, 1], tier_specs[t, 1] + tier_specs[t, 2]):
                                        if tier_items[q, 0] >= high:  # items by low: no later one overlaps
                                            break
                                        span = min(high, tier_items[q, 1]) - max(low, tier_items[q, 0])
                                        if span > 0:
                                            exact += tier_items[q, 2] * span
                                else:
                                    units = min(payable, numbers[rows[r, R_UNIT_COL], idx[i]] * rows[r, R_AMOUNT])
                                    failed = failed or units <= -FEN_LIMIT or units >= FEN_LIMIT
                                    exact = units * RATE_ONE
                                exact = min(exact, rows[r, R_CAP_CLAIM])
                                state[k, 6 + key] += base
                                state[k, 6 + n_keys + key] += payable
                                # (floor division by a constant: unsigned, so a multiply, where the sign allows)
                                whole = _over_one(exact) if exact >= 0 else exact // RATE_ONE
                                state[k, _UHI] += whole
                                state[k, _ULO] += exact - whole * RATE_ONE  # a remainder: never negative
                                rounded = state[k, _UHI] + _over_one(state[k, _ULO] + HALF)
                                paid_now = min(rounded - state[k, _ROUNDED], max(0, rows[r, R_CAP_YEAR] - state[k, _PAID]))
                                state[k, _ROUNDED] = rounded
                                pool = rows[r, R_POOL]
                                if lane[k, 2] and pool >= 0:
                                    failed = failed or (rows[r, R_FAIL] & 2) != 0
                                    paid_now = min(paid_now, max(0, rows[r, R_POOL_CAP] - pool_paid[pool]))
                                    pool_paid[pool] += paid_now
                                state[k, _PAID] += paid_now
                        if n_runs > 1:
                            cand[run, i - a] = paid_now
                            run_total += paid_now
                        else:
                            pay[i, own] = paid_now
                if n_runs > 1 and (run == 0 or run_total > best_total):
                    best, best_total = run, run_total
            if n_runs > 1:
                for i in range(a, e):
                    pay[i, lane[0, 0]] = cand[best, i - a]
        py_person[n_py], py_year[n_py] = p, yi
        _commit(total, eligible, pay, py_payments, py_total, py_eligible, py_oop, n_py, a, e)
        if alert_year.shape[0]:
            _burdens(combo_of, total, alert_year, alert_layers, alert_where, burden, n_py, yi, a, e, pay)
        n_py += 1
        a = e
    _scatter(idx, pay, total, payments, out_of_pocket)
    return failed


@_jit
def _stage(combo_of: Arr, combo: Arr, lc: Arr, le: Arr, spec: Arr, block: Arr, a: int, e: int, layer: int,
           done: int, lane: Arr, slots: Arr) -> tuple[int, int, int, int]:
    """The next stage of a person-year from `layer` (interp's steps: shared-cap blocks, `best` candidates):
    fills `lane` (layer, fixed schedule slot or -1 by order, pooled); returns (lanes, runs, next layer, layers
    done). Runs > 1: one lane choosing among `slots[:runs]`."""
    n_lanes, has_block = 0, False
    while layer < le.shape[0]:
        if (done >> layer) & 1:
            layer += 1
            continue
        ep = _block_epoch(combo_of, combo, le, a, e, layer)
        if ep >= 0 and le[layer, ep, E_BLOCK_LEN] > 1:
            if has_block:
                break
            for k in range(le[layer, ep, E_BLOCK_LEN]):
                lane[n_lanes, 0], lane[n_lanes, 1], lane[n_lanes, 2] = block[layer, ep, k], -1, 1
                done |= 1 << block[layer, ep, k]
                n_lanes += 1
            has_block = True
            layer += 1
            continue
        n_cand = _candidates(combo_of, combo, lc, le, spec, a, e, layer, slots)
        if n_cand >= 2:
            if n_lanes > 0:
                break
            lane[0, 0], lane[0, 1], lane[0, 2] = layer, -1, 0
            return 1, n_cand, layer + 1, done | (1 << layer)
        lane[n_lanes, 0], lane[n_lanes, 1], lane[n_lanes, 2] = layer, slots[0] if n_cand == 1 else -1, 0
        done |= 1 << layer
        n_lanes += 1
        layer += 1
    return n_lanes, 1, layer, done


@_inline
def _commit(total_cost: Arr, eligible_cost: Arr, pay: Arr, py_payments: Arr, py_total: Arr, py_eligible: Arr,
            py_oop: Arr, py: int, a: int, e: int) -> None:
    """A person-year's own row: its payments by layer and its costs."""
    paid = 0
    for layer in range(pay.shape[1]):
        own = pay[a, layer]
        for i in range(a + 1, e):
            own += pay[i, layer]
        py_payments[py, layer] = own
        paid += own
    total, eligible = total_cost[a], eligible_cost[a]
    for i in range(a + 1, e):
        total += total_cost[i]
        eligible += eligible_cost[i]
    py_total[py] = total
    py_eligible[py] = eligible
    py_oop[py] = total - paid


@_inline
def _over_one(x: int) -> np.int64:
    """x // RATE_ONE for x >= 0."""
    return np.int64(np.uint64(x) // np.uint64(RATE_ONE))


@_jit
def _scatter(idx: Arr, pay: Arr, total_cost: Arr, payments: Arr, out_of_pocket: Arr) -> None:
    """A block's payments into their input rows (one tight pass: the random writes overlap)."""
    for i in range(idx.shape[0]):
        c = idx[i]
        own = 0
        for layer in range(pay.shape[1]):
            payments[c, layer] = pay[i, layer]
            own += pay[i, layer]
        out_of_pocket[c] = total_cost[i] - own


@_jit
def _burdens(combo_of: Arr, total_cost: Arr, alert_year: Arr, alert_layers: Arr, alert_where: Arr, burden: Arr,
             py: int, yi: int, a: int, e: int, payments: Arr) -> None:
    """The burden of each alert of the person-year's year: costs less the alert's layers' payments."""
    for inst in range(alert_year.shape[0]):
        if alert_year[inst] != yi:
            continue
        total = 0
        for i in range(a, e):
            if alert_where[inst, combo_of[i]]:
                total += total_cost[i]
                for layer in range(payments.shape[1]):
                    total -= alert_layers[inst, layer] * payments[i, layer]
        burden[py, inst] = total


# ---- person-year outputs: alerts and subsidies ---------------------------------------------------------------
class _YearLevel:
    """Alert thresholds and subsidies per person-year (vector.py's code, burdens taken from the kernel)."""

    def __init__(self, graph: Graph, cols: Columns, years: Arr, options: interp.Options, idents: dict[str, int]):
        self.graph, self.cols, self.years, self.options = graph, cols, years, options
        self.frame = _YearFrame(cols, years)
        self.preds = _Preds(self.frame, idents)
        self.failed = False

    def epochs(self) -> Iterator[tuple[int, Epoch, Arr]]:
        n_years = len(self.years)
        for yi, epoch in enumerate(_year_epochs(self.graph, self.years, self.options)):
            yield yi, epoch, np.arange(self.cols.persons.n) * n_years + yi

    def env(self, rows: Arr, sink: _Sink, epoch: Epoch) -> _Env:
        dyn = _Dyn.null(len(rows))
        return _Env(lambda p: self.preds.eval(p, rows, dyn), None, None, dict(epoch.params), self.options.settings,
                    sink)

    def alerts(self, burden: Arr, instances: list[tuple[int, int, int]]) -> tuple[tuple[str, ...], Arr]:
        ids = tuple(dict.fromkeys(a.id for _yi, e, _r in self.epochs() for a in e.alerts))
        fired = np.zeros((self.frame.n, len(ids)), dtype=bool)
        where = {(yi, ai): inst for yi, ai, inst in instances}
        for yi, epoch, rows in self.epochs():
            for ai, alert in enumerate(epoch.alerts):
                which = np.full(len(rows), -1)
                for ti in reversed(range(len(alert.thresholds))):
                    which = np.where(self.preds.eval(alert.thresholds[ti].pred, rows, _Dyn.null(len(rows))), ti,
                                     which)
                sink = _Sink(len(rows))
                env = self.env(rows, sink, epoch)
                amount = _zeros(rows)
                for ti, threshold in enumerate(alert.thresholds):
                    pos = np.flatnonzero(which == ti)
                    amount[pos] = env.val(threshold.amount, pos, _zeros)
                fired[rows, ids.index(alert.id)] = (which >= 0) & (burden[rows, where[yi, ai]] >= amount)
                self.failed = self.failed or bool(sink.code.any())
        return ids, fired

    def subsidies(self) -> tuple[tuple[str, ...], Arr, Arr]:
        ids = tuple(dict.fromkeys(s.id for _yi, e, _r in self.epochs() for s in e.subsidies))
        amounts = np.zeros((self.frame.n, len(ids)), dtype=np.int64)
        given = np.zeros((self.frame.n, len(ids)), dtype=bool)
        for _yi, epoch, rows in self.epochs():
            for sub in epoch.subsidies:
                sink = _Sink(len(rows))
                env = self.env(rows, sink, epoch)
                scope = self.preds.eval(sub.scope, rows, _Dyn.null(len(rows)))
                top, held_any = np.full(len(rows), -INF, dtype=np.int64), np.zeros(len(rows), dtype=bool)
                for share in sub.shares:
                    held = scope & vector._any([self.frame.holds(i)[rows] for i in sorted(share.identities)],
                                               len(rows))
                    pos = np.flatnonzero(held)
                    top[pos] = np.maximum(top[pos], env.val(share.rate, pos, _zeros))
                    held_any |= held
                pos = np.flatnonzero(held_any)
                amount = env.val(sub.amount, pos, _zeros)
                col = ids.index(sub.id)
                amounts[rows[pos], col] = vector._mul_round(amount, np.clip(top[pos], 0, RATE_ONE))
                given[rows[pos], col] = True
                self.failed = self.failed or bool(sink.code.any())
        return ids, amounts, given


# ---- driving -------------------------------------------------------------------------------------------------
BLOCK_CLAIMS = 1 << 16  # claims per block at most: each is sorted and evaluated within the L2 cache
BLOCK_MIN = 1 << 12  # and at least (fewer claims: one block), else four blocks per thread to share out
BUCKET_BITS = 16  # the partition's person ranges (at most 2^16), merged into blocks of about BLOCK_CLAIMS claims
T = TypeVar("T")
R = TypeVar("R")


def threads() -> int:
    """Threads for the kernel's blocks: POLC_THREADS when set (>= 1), else the CPUs this process may use."""
    setting = os.environ.get("POLC_THREADS", "")
    if setting.isdigit() and int(setting) >= 1:
        return int(setting)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _each(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """fn over items, on the kernel's threads when there are several (the compiled steps release the GIL)."""
    n = min(threads(), len(items))
    if n <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, items))


def run_columns(graph: Graph, cols: Columns, options: interp.Options = interp.Options()) -> VectorResult:
    """vector.run_columns' contract, by the kernel; the NumPy engine for what the kernel hands over."""
    result = evaluate(graph, cols, options)
    return result if result is not None else vector.sparse_rows(vector._Engine(graph, cols, options).run())


def run(graph: Graph, data: Dataset, options: interp.Options = interp.Options()) -> interp.Result:
    """interp.run's contract (same Result), computed by the kernel (tests force it this way)."""
    return vector._result(graph, data, run_columns(graph, from_dataset(data, graph), options), options)


def evaluate(graph: Graph, cols: Columns, options: interp.Options = interp.Options()) -> VectorResult | None:
    """The kernel's result, or None where the NumPy engine must answer (an unspecified parameter is needed,
    a unit payment leaves int64, no claims, or a shape `supports` refuses); HANDOVER says why."""
    HANDOVER.clear()
    reason = ("no claims" if not cols.claims.m else "kernel unavailable" if not available()
              else unsupported(graph, options))
    if reason is not None:
        return _hand_over(reason)
    clock = _Clock()
    years, year_start = _years(cols.claims.day)
    atoms, ye_raw = _leaves_of(graph)
    grants = _Grants.of(cols)
    facts = _facts(graph, cols, options, atoms, ye_raw, grants)
    if facts is None:
        return _hand_over(f"the claims' facts need more than {WORD_BITS} bits")
    clock.lap("facts")
    done = _in_blocks(graph, cols, options, ye_raw, grants, facts, years, year_start, clock)
    if isinstance(done, str):
        return _hand_over(done)
    result = _result(graph, cols, options, years, *done)
    clock.lap("outputs")
    return result if result is not None else _hand_over("an alert or subsidy needs an unspecified parameter")


def _in_blocks(graph: Graph, cols: Columns, options: interp.Options, ye_raw: list[str], grants: _Grants,
               facts: _Facts, years: Arr, year_start: Arr,
               clock: _Clock) -> tuple[dict[str, int], _Outputs, list[tuple[int, int, int]]] | str:
    """Partition, sort and number combinations per block, build the tables, evaluate per block: (identities, the
    outputs with every person-year row, alert instances), or why the NumPy engine must answer."""
    claims = _Claims.of(cols, year_start)
    blocks = _partitioned(cols, facts, claims)
    which = blocks.nonempty()
    prepared = _each(lambda b: _prepared(cols, claims, facts, grants, blocks, b), which)
    clock.lap("sort")
    words, first, inverse = np.unique(np.concatenate([w for w, _r, _k in prepared]), return_index=True,
                                      return_inverse=True)
    ctx = _Ctx(graph, cols, options, ye_raw, grants, np.concatenate([r for _w, r, _k in prepared])[first], words,
               int(facts.layout[L_EPOCH_BITS]), year_start)
    if _table_rows(graph, ctx) > max(TABLE_ROWS, 2 * cols.claims.m):
        return "too many combinations of claim facts for parameter tables"
    names = _numbers_of(graph)
    tables, instances = _build_tables(ctx, {name: i for i, name in enumerate(names)}, years)
    everyone = _Rows(cols, None, grants)
    numbers = (np.stack([everyone.number(name) for name in names]) if names
               else np.zeros((0, cols.claims.m), dtype=np.int64))
    if _unit_overflow(tables, numbers):
        return "unit payments may leave int64"
    remaps = np.split(inverse.reshape(-1).astype(np.int64), np.cumsum([len(w) for w, _r, _k in prepared])[:-1])
    clock.lap("tables")
    out = _outputs(cols.claims.m, len(graph.layers), sum(k for _w, _r, k in prepared), len(instances))
    first_py = np.cumsum([0, *(k for _w, _r, k in prepared)])
    failed = _each(lambda j: _evaluated(claims, blocks, which[j], remaps[j], numbers, tables,
                                        _rows_of(out, int(first_py[j]), int(first_py[j + 1]))), range(len(which)))
    if any(failed):
        return "a claim needs an unspecified parameter, or a unit payment leaves int64"
    clock.lap("loop")
    return ctx.idents, out, instances


def _outputs(m: int, n_layers: int, n_py: int, n_alerts: int) -> _Outputs:
    """The outputs of every block: claims' payments (input order), person-year rows (blocks in person order)."""
    return _Outputs(np.empty((m, n_layers), np.int64), np.empty(m, np.int64), np.empty(n_py, np.int64),
                    np.empty(n_py, np.int64), np.empty((n_py, n_layers), np.int64), np.empty(n_py, np.int64),
                    np.empty(n_py, np.int64), np.empty(n_py, np.int64),
                    np.zeros((n_py if n_alerts else 0, n_alerts), np.int64))


def _rows_of(out: _Outputs, a: int, e: int) -> _Outputs:
    """A block's view of the outputs: every claim, its own person-year rows [a, e)."""
    return out._replace(**{name: getattr(out, name)[a:e] for name in _Outputs._fields[2:]})


class _Blocks(NamedTuple):
    """The claims partitioned into blocks of whole persons: each block's claims contiguous, blocks by person."""

    start: Arr  # B + 1 positions
    p_low: Arr  # B: the block's first person
    p_span: Arr  # B: persons in its range
    idx: Arr  # m: the input row at each position
    key: Arr  # m: (person − p_low) << day_bits | (day − day_low)
    eligible: Arr
    total: Arr  # empty when total_cost is the eligible_cost column itself
    word: Arr  # the claim's own part of its combination word, completed, then the block's number of the word

    def nonempty(self) -> list[int]:
        return [int(b) for b in np.flatnonzero(np.diff(self.start) > 0)]


def _partitioned(cols: Columns, facts: _Facts, claims: _Claims) -> _Blocks:
    """Claims into blocks of whole persons, of BLOCK_MIN to BLOCK_CLAIMS claims (four per thread where that
    many) over ranges of persons: one counting pass and one stable scatter, each over a share of the input per
    thread."""
    c, n = cols.claims, cols.persons.n
    person, day = np.asarray(c.person, dtype=np.int32), np.asarray(c.day, dtype=np.int32)
    eligible = np.asarray(c.eligible_cost, dtype=np.int64)
    total = eligible if c.total_cost is c.eligible_cost else np.asarray(c.total_cost, dtype=np.int64)
    shift = max(0, (n - 1).bit_length() - BUCKET_BITS)
    n_buckets = ((n - 1) >> shift) + 1
    edges = np.linspace(0, c.m, min(threads(), c.m) + 1).astype(np.int64)
    shares = [(int(a), int(e)) for a, e in pairwise(edges)]
    counts = np.stack(_each(lambda r: _bucket_counts(person, r[0], r[1], shift, n_buckets), shares))
    per_bucket = counts.sum(axis=0)
    size = min(BLOCK_CLAIMS, max(BLOCK_MIN, -(-c.m // (4 * threads()))))
    cut = (np.cumsum(per_bucket) - per_bucket) // size
    block_of = np.concatenate([[0], np.cumsum(np.diff(cut) > 0)]).astype(np.int64)
    first = np.flatnonzero(np.concatenate([[True], np.diff(block_of) > 0]))  # each block's first bucket
    per_share = np.add.reduceat(counts, first, axis=1)  # shares × blocks
    start = np.concatenate([[0], np.cumsum(per_share.sum(axis=0))]).astype(np.int64)
    pos = start[:-1] + np.cumsum(per_share, axis=0) - per_share  # where each share's claims of a block go
    p_low = (first << shift).astype(np.int64)
    blocks = _Blocks(start, p_low, np.diff(np.append(p_low, n)), np.empty(c.m, np.int64), np.empty(c.m, np.int64),
                     np.empty(c.m, np.int64), np.empty(0 if total is eligible else c.m, np.int64),
                     np.empty(c.m, np.int64))
    level, kind = np.asarray(c.level, dtype=np.int8), np.asarray(c.kind, dtype=np.int8)
    _each(lambda k: _partition(*shares[k], shift, block_of, pos[k], p_low, claims.day_low, claims.day_bits, person,
                               day, eligible, total, level, kind, facts.claim_word, facts.layout, facts.epoch_starts,
                               *blocks[3:]), range(len(shares)))
    return blocks


class _Claims(NamedTuple):
    """What every block reads: claim id order (by input row), days and years."""

    rank: Arr  # claim id order
    day_low: int
    day_bits: int
    year_start: Arr
    year_end: Arr

    @staticmethod
    def of(cols: Columns, year_start: Arr) -> _Claims:
        c = cols.claims
        day_low = int(c.day.min())
        return _Claims(_rank(c.claim_id, c.m), day_low, max(1, int(c.day.max()) - day_low).bit_length(), year_start,
                       _year_ends(year_start))


def _prepared(cols: Columns, claims: _Claims, facts: _Facts, grants: _Grants, blocks: _Blocks,
              b: int) -> tuple[Arr, Arr, int]:
    """Block b sorted and its claims' combinations numbered: (its words, a claim of each, its person-years)."""
    a, e = int(blocks.start[b]), int(blocks.start[b + 1])
    p_low, p_span = int(blocks.p_low[b]), int(blocks.p_span[b])
    key_bits = claims.day_bits + max(1, (p_span - 1).bit_length())
    return _prepare_block(a, e, p_low, key_bits, claims.day_low, claims.day_bits, blocks.idx, blocks.key,
                          blocks.eligible, blocks.total, blocks.word, claims.rank,
                          _person_word(cols, facts, p_low, p_low + p_span), grants.person, grants.code, grants.since,
                          facts.hold_mask, facts.hold_ye, facts.layout, claims.year_start, claims.year_end)


def _evaluated(claims: _Claims, blocks: _Blocks, b: int, remap: Arr, numbers: Arr, tables: _Tables,
               out: _Outputs) -> bool:
    """Block b evaluated into `out` (its claims' input rows, its person-year rows); whether it failed."""
    a, e = int(blocks.start[b]), int(blocks.start[b + 1])
    total = blocks.eligible if not len(blocks.total) else blocks.total
    data = _ClaimData(blocks.idx[a:e], blocks.key[a:e], int(blocks.p_low[b]), claims.day_low, claims.day_bits,
                      blocks.word[a:e], blocks.eligible[a:e], total[a:e], remap, claims.year_start, numbers)
    return bool(_evaluate(data, tables, out))


def _table_rows(graph: Graph, ctx: _Ctx) -> int:
    """How many parameter rows the tables would have (combinations × selected slots × admission classes)."""
    builder = _Builder(ctx, {})
    return ctx.n_combos * sum(p.n_sel * p.n_adm for p in map(builder.plan, range(len(graph.layers))))


def _hand_over(reason: str) -> VectorResult | None:
    """None (the NumPy engine answers), noting why in HANDOVER."""
    HANDOVER["reason"] = reason
    return None


class _Clock:
    """Phase timers into TIMINGS."""

    def __init__(self) -> None:
        TIMINGS.clear()
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        TIMINGS[name] = now - self.t
        self.t = now


def _result(graph: Graph, cols: Columns, options: interp.Options, years: Arr, idents: dict[str, int],
            py: _Outputs, instances: list[tuple[int, int, int]]) -> VectorResult | None:
    """The result, with VectorResult's sparse rows: the person-years with a claim that costs something (a year
    whose claims cost nothing pays nothing: every amount of its row is 0), and those with an alert or a
    subsidy."""
    n_years = len(years)
    spent = py.py_total != 0
    if not spent.all():
        py = py._replace(**{name: getattr(py, name)[spent] for name in _Outputs._fields[2:] if name != "burden"},
                         burden=py.burden[spent] if len(py.burden) else py.burden)
    key = py.py_person * n_years + py.py_year  # ascending: blocks by person, claims by person and date
    epochs = _year_epochs(graph, years, options)
    alert_ids: tuple[str, ...] = ()
    subsidy_ids: tuple[str, ...] = ()
    alerts = np.zeros((len(key), 0), dtype=bool)
    subsidies, given = np.zeros((len(key), 0), dtype=np.int64), np.zeros((len(key), 0), dtype=bool)
    rows = [py.py_payments, py.py_oop, py.py_total, py.py_eligible]
    if any(e.alerts or e.subsidies for e in epochs):
        year = _YearLevel(graph, cols, years, options, idents)
        burden = np.zeros((cols.persons.n * n_years, len(instances)), np.int64)
        if instances:
            burden[key] = py.burden
        alert_ids, alerts = year.alerts(burden, instances)
        subsidy_ids, subsidies, given = year.subsidies()
        if year.failed:
            return None
        present = np.union1d(key, np.flatnonzero(alerts.any(axis=1) | given.any(axis=1)))
        rows = [_spread(values, np.searchsorted(present, key), len(present)) for values in rows]
        key, alerts, subsidies, given = present, alerts[present], subsidies[present], given[present]
    payments, oop, total, eligible = rows
    return VectorResult(tuple(layer.id for layer in graph.layers), py.payments, py.out_of_pocket, key // n_years,
                        years[key % n_years], payments, oop, total, eligible, alert_ids, alerts, subsidy_ids,
                        subsidies, given)


def _spread(values: Arr, at: Arr, n: int) -> Arr:
    """values placed at rows `at` of n rows (zeros elsewhere)."""
    out = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
    out[at] = values
    return out


def _years(day: Arr) -> tuple[Arr, Arr]:
    """The calendar years with claims and their Jan 1 day numbers."""
    first, last = vector._date(int(day.min())).year, vector._date(int(day.max())).year
    starts = np.array([day_number(datetime.date(y, 1, 1)) for y in range(first, last + 1)], dtype=np.int64)
    if first == last:
        return np.array([first], dtype=np.int64), starts
    present = np.bincount(np.searchsorted(starts, day, side="right") - 1, minlength=len(starts)) > 0
    return np.arange(first, last + 1, dtype=np.int64)[present], starts[present]


def _year_ends(year_start: Arr) -> Arr:
    """Dec 31 of each year (day numbers)."""
    return np.array([day_number(vector._date(int(s)).replace(month=12, day=31)) for s in year_start], np.int64)


def _rank(ids: Arr | None, m: int) -> Arr:
    """An int64 key ordering claims as vector.py does: integer ids by value, text ids as text."""
    if ids is not None and np.issubdtype(ids.dtype, np.integer):
        return np.asarray(ids, dtype=np.int64)
    return np.asarray(vector._id_rank(ids, m), dtype=np.int64)


def _unit_overflow(tb: _Tables, nums: Arr) -> bool:
    """Whether units × a unit amount could leave int64 (the NumPy engine then computes it exactly)."""
    unit = tb.rows[:, R_KIND] == UNIT
    if not unit.any():
        return False
    amount = int(np.abs(tb.rows[unit, R_AMOUNT]).max())
    units = max(int(np.abs(nums[q]).max()) for q in np.unique(tb.rows[unit, R_UNIT_COL]))
    return amount * units >= FEN_LIMIT
