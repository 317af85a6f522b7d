"""Fused kernel: Graph + Columns -> VectorResult in one Numba pass over the sorted claims, equal to interp's.

vector.run_columns uses it when Numba is importable and `supports(graph, options)`; it hands an input back
to the NumPy engine (vector._Engine) when that engine must answer (see `evaluate`).

1. Order. An LSD radix sort (11-bit digits, a few O(m) passes) of person × 2^k + day orders the claims by
   (person, date); runs of equal (person, date) are then ordered by claim id (integer ids by value, text ids
   as text, as vector.py does). One pass gathers what the loop reads into that order.
2. Precompute. Everything a claim's step reads that does not depend on the sequential state is a function
   of a few discrete facts about the claim: its epoch, hospital level, whether it is an inpatient claim, the
   truth of every predicate leaf the policy tests (evaluated column-wise with vector.py's `_Preds`), and
   which identities it holds on its date and by the end of its year. Claims are grouped by those facts into
   *combinations* (usually a few dozen to a few hundred); the programs are evaluated once per combination,
   selected identity schedule and admission-number class (vector.py's `_Env`) into small parameter tables.
   A deductible reading previous_deductible p is kept as min(max(a ± p, lo), hi) per row (`_Form`).
3. One `@njit` pass over the person-years doing interp's `_step` arithmetic in int64: exact payments in
   fen × 10⁶ with the cumulative kept as whole fen plus remainders (as vector.py's `_round_cumulative`),
   caps as paid-so-far, shared caps claim by claim, `best` candidates each run in full and the largest total
   kept (tie: first declared). Payments are written in sorted order and scattered back in one tight pass.

Shapes the kernel does not handle make `supports` return False (the NumPy engine runs). Numba compiles once
per process and caches the machine code on disk (cache=True). TIMINGS holds the phases of the last run.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Iterator
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
    PHolds,
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
KEY_SPACE = 1 << 22  # combination keys are renumbered densely before they outgrow this
TABLE_ROWS = 1 << 20  # parameter rows always allowed (beyond: 2 per claim), else the NumPy engine runs
_ADM, _PREV, _UHI, _ULO, _ROUNDED, _PAID = range(6)  # per-layer running state of one pass
NONNEG = (1 << 63) - 1  # `index & NONNEG` tells the compiler an index is not negative: no wraparound code
TIMINGS: dict[str, float] = {}  # seconds of each phase of the last kernel evaluation
HANDOVER: dict[str, str] = {}  # "reason": why the last evaluation was handed to the NumPy engine (if it was)


def _jit(fn: F) -> F:
    """numba.njit(cache=True), typed for mypy; the plain function when numba is missing."""
    return fn if _njit is None else cast(F, _njit(cache=True)(fn))


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
    """Claim fields over chosen rows of the input (all in sorted order, or one per combination): vector's
    claim frame on any rows (every method _Preds uses is its own; the sorted frame's constructor is not run).
    `person` and `day` of the rows may be given when already at hand."""

    def __init__(self, cols: Columns, rows: Arr, person: Arr | None = None, day: Arr | None = None):
        c = cols.claims
        self.cols, self.rows = cols, rows
        self.n = len(rows)
        self.person = self._own(c.person) if person is None else person
        self.day = self._own(c.day) if day is None else day
        self.idents = {name: i for i, name in enumerate(cols.identity_names)}
        self.diseases = {name: i for i, name in enumerate(cols.disease_names)}
        self._fields: dict[str, _Field] = {}
        self._since: dict[int, Arr] = {}

    def _own(self, values: Arr) -> Arr:
        return values[self.rows]

    def _of_person(self, f: _Field) -> _Field:
        return vector._take(_lean(f), self.person)

    def field(self, name: str) -> _Field:
        if name not in self._fields:
            self._fields[name] = self._field(name)
        return self._fields[name]

    def _field(self, name: str) -> _Field:
        # interp's field_value order: claim fields, person fields, claim columns, person columns
        own = vector._claim_field(self.cols, "level" if name == "hospital_level" else name)
        if own is not None:
            return vector._take(own, self.rows)
        person = vector._person_field(self.cols, name)
        if person is not None:
            return self._of_person(person)
        if name in self.cols.claims.extra:
            return vector._take(_lean(vector._extra_field(self.cols.claims.extra[name])), self.rows)
        if name in self.cols.persons.extra:
            return self._of_person(vector._extra_field(self.cols.persons.extra[name]))
        return _Field(np.zeros(self.n, dtype=np.int64), np.ones(self.n, dtype=bool))

    def number(self, name: str) -> Arr:
        """A claim column as an amount or count (empty = 0), as interp's `int(value or 0)`."""
        f = self.field(name)
        if f.vocab is not None:
            raise TypeError(f"`{name}` is not a number")
        values = f.values.astype(np.int64)
        return values if f.missing is None else np.where(f.missing, 0, values)

    def has(self, field: str, disease: str) -> Arr:
        code = self.diseases.get(disease)
        if code is None:
            return np.zeros(self.n, dtype=bool)
        c, p = self.cols.claims, self.cols.persons
        on_claim = np.zeros(c.m, dtype=bool)
        on_claim[c.disease_claim[c.disease_code == code]] = True
        certified = np.zeros(p.n, dtype=bool)
        certified[p.chronic_person[p.chronic_disease == code]] = True
        if field == "diseases":
            return self._own(on_claim)
        if field == "chronic":
            return certified[self.person]
        return self._own(on_claim) & certified[self.person]

    def nonempty(self, field: str) -> Arr:
        c, p = self.cols.claims, self.cols.persons
        if field == "chronic":
            return np.isin(self.person, p.chronic_person)
        pairs = c.disease_claim
        if field == "certified":
            n_codes = len(self.cols.disease_names) + 1
            own = c.person[pairs].astype(np.int64) * n_codes + c.disease_code
            pairs = pairs[np.isin(own, p.chronic_person.astype(np.int64) * n_codes + p.chronic_disease)]
        mask = np.zeros(c.m, dtype=bool)
        mask[pairs] = True
        return self._own(mask)

    def since(self, identity: str) -> Arr:
        """Per person: the earliest day the identity (data name) is held from (int32 max: never)."""
        code = self.idents.get(identity, -1)
        if code not in self._since:
            p = self.cols.persons
            first = np.full(p.n, np.iinfo(np.int32).max, dtype=np.int32)
            ok = p.grant_identity == code
            np.minimum.at(first, p.grant_person[ok], p.grant_since[ok])
            self._since[code] = first
        return self._since[code]

    def holds(self, identity: str) -> Arr:
        """Held on the claim's date."""
        return self.since(identity)[self.person] <= self.day

    def held_by(self, identity: str, day: Arr) -> Arr:
        """Held on or before `day` (one day per row)."""
        return self.since(identity)[self.person] <= day


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


class _Keys:
    """Builds one dense int32 key per claim from parts (code, cardinality), renumbering as it grows."""

    def __init__(self, m: int):
        self.key = np.zeros(m, dtype=np.int32)
        self.space = 1

    def add(self, code: Arr, card: int) -> None:
        if card <= 1 or (code.dtype == bool and (code.all() or not code.any())):  # a constant part
            return
        if self.space * card > KEY_SPACE:
            self._dense()
        if self.space * card >= 1 << 31:  # (only with very many distinct claims)
            self.key = self.key.astype(np.int64)
        self.key *= card
        self.key += code.astype(np.int32, copy=False)
        self.space *= card

    def _dense(self) -> None:
        present = np.zeros(self.space, dtype=bool)
        present[self.key] = True
        remap = (np.cumsum(present) - 1).astype(self.key.dtype)
        self.key = remap[self.key]
        self.space = int(remap[-1]) + 1 if len(remap) else 1

    def finish(self) -> tuple[Arr, Arr]:
        """(combination of each row, one representative row per combination)."""
        self._dense()
        reps = np.zeros(self.space, dtype=np.int64)
        reps[self.key] = np.arange(len(self.key))
        return self.key.astype(np.int32, copy=False), reps


# ---- precompute: parameter tables per (combination, selected identity, admission class) ------------------
class _Ctx:
    """What the tables are built from: the graph, the claims (sorted, as `frame` and `order`), their
    combinations and a representative claim of each."""

    def __init__(self, graph: Graph, cols: Columns, options: interp.Options, frame: _Rows, epoch: Arr,
                 year_end: Arr | None):
        self.graph, self.cols, self.options = graph, cols, options
        self.idents = {name: i for i, name in enumerate(cols.identity_names)}
        for name in graph.identities:  # schedule identities absent from the data are never held
            self.idents.setdefault(name, len(self.idents))
        self.atoms = list(dict.fromkeys(leaf for p in _preds_of(graph) for leaf in _leaves(p)))
        self.atoms += [h for raw in _mapped_raw(graph) if (h := PHolds(frozenset({raw}))) not in self.atoms]
        self.ye_raw = _mapped_raw(graph) if year_end is not None else []
        self.combo, reps = self._combine(frame, epoch, year_end)
        self.n_combos = len(reps)
        self.rep = _Rows(cols, frame.rows[reps])
        self.preds = _Preds(self.rep, self.idents)
        self.epoch = epoch[reps].astype(np.int64)
        self.level = cols.claims.level[self.rep.rows].astype(np.int64)
        self.inpatient = (cols.claims.kind[self.rep.rows] == INPATIENT).astype(np.int64)
        self.rep_year_end = None if year_end is None else year_end[reps]

    def _combine(self, frame: _Rows, epoch: Arr, year_end: Arr | None) -> tuple[Arr, Arr]:
        keys = _Keys(frame.n)
        keys.add(epoch, len(self.graph.epochs))
        level = frame._own(self.cols.claims.level)
        low, high = int(level.min()), int(level.max())
        keys.add(level.astype(np.int64) - low, high - low + 1)
        keys.add(frame._own(self.cols.claims.kind) == INPATIENT, 2)
        preds = _Preds(frame, self.idents)
        for atom in self.atoms:
            keys.add(preds.static(atom), 2)
            preds.cache.clear()
        for raw in self.ye_raw:
            assert year_end is not None
            keys.add(frame.held_by(raw, year_end), 2)
        return keys.finish()

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
LC_SCOPE, LC_SEL, LC_HELD_DAY, LC_HELD_YE = 0, 1, 2, 3  # of _Tables.lc
L_SEL, L_ADM, L_ROW = 0, 1, 2  # of _Tables.layer
E_PREC, E_SPEC_LEN, E_BASE_FROM, E_BASE_PLUS, E_BLOCK_LEN = 0, 1, 2, 3, 4  # of _Tables.le


class _Tables(NamedTuple):
    """Everything the kernel reads besides the claims (small), packed into few arrays: the hot loop keeps
    every array it reads in registers or on the stack."""

    combo: Arr  # C × 2: epoch, inpatient claim (1)
    lc: Arr  # L × C × 4: in force and in scope; slot selected by declared order on the claim's date (0: none);
    #          bit masks of the slots held on the claim's date, and by the end of its year
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
    """The claims in (person, date, claim id) order: the hot loop reads them in sequence."""

    order: Arr  # m: input row of each sorted position
    person: Arr  # m
    year: Arr  # m: index of the claim's year among those with claims
    combo: Arr  # m
    eligible: Arr
    total: Arr
    numbers: Arr  # K × m


class _Outputs(NamedTuple):
    sorted_payments: Arr  # m × L, sorted order
    py_years: int  # person-year rows per person
    py_payments: Arr  # k × L
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
    scope, sel, held_day, held_ye, rows, offsets = [], [], [], [], [], []
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
        table = builder.rows(index, plan, in_scope)
        rows.append(np.stack([table[name] for name in _ROW_FIELDS], axis=1))
        offsets.append(start)
        start += len(rows[-1])
    alerts, instances = _alert_tables(ctx, years)
    per_layer = (n_l, ctx.n_combos)
    lc = np.stack([np.array(part, dtype=np.int64).reshape(per_layer) for part in (scope, sel, held_day, held_ye)],
                  axis=2)
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
RADIX_BITS = 11  # digits of the radix sort: 2048 buckets, whose counts stay in the L1 cache


@_jit
def _sort_claims(person: Arr, day: Arr, rank: Arr, day_low: int, shift: int, n: int) -> tuple[Arr, Arr]:
    """Claims by (person, day, rank), stably: an LSD radix sort of person << shift | day (a few O(m) passes),
    then runs of equal (person, day) ordered by rank. Returns (input row per position, sorted keys)."""
    m = person.shape[0]
    key = np.empty(m, np.int64)
    order = np.empty(m, np.int64)
    for c in range(m):
        key[c] = (np.int64(person[c]) << shift) | (day[c] - day_low)
        order[c] = c
    bits = shift + 1
    while (1 << bits) < (max(n, 1) << shift):
        bits += 1
    passes = (bits + RADIX_BITS - 1) // RADIX_BITS
    mask = (1 << RADIX_BITS) - 1
    counts = np.zeros((passes, mask + 2), np.int64)
    for c in range(m):
        for d in range(passes):
            counts[d, ((key[c] >> (d * RADIX_BITS)) & mask) + 1] += 1
    key2, order2 = np.empty(m, np.int64), np.empty(m, np.int64)
    for d in range(passes):
        for v in range(mask + 1):
            counts[d, v + 1] += counts[d, v]
        low_bit = d * RADIX_BITS
        for i in range(m):
            k = key[i]
            slot = counts[d, (k >> low_bit) & mask]
            counts[d, (k >> low_bit) & mask] = slot + 1
            key2[slot], order2[slot] = k, order[i]
        key, key2 = key2, key
        order, order2 = order2, order
    _order_ties(key, order, rank)
    return order, key


@_jit
def _order_ties(key: Arr, order: Arr, rank: Arr) -> None:
    """Within runs of equal keys (same person and day), a stable sort by rank: insertion for the usual few
    claims, a merge sort for long runs."""
    a = 0
    m = key.shape[0]
    while a < m:
        b = a + 1
        while b < m and key[b] == key[a]:
            b += 1
        if b - a > 32:
            run = order[a:b].copy()
            order[a:b] = run[np.argsort(rank[run], kind="mergesort")]
        else:
            for i in range(a + 1, b):
                c = order[i]
                j = i - 1
                while j >= a and rank[order[j]] > rank[c]:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = c
        a = b


@_jit
def _gather(order: Arr, key: Arr, shift: int, day_low: int, year_start: Arr, eligible: Arr,
            total: Arr) -> tuple[Arr, Arr, Arr, Arr, Arr]:
    """Person, day, year (index) and costs of the claims in sorted order (one tight pass)."""
    m = order.shape[0]
    person, day, year = np.empty(m, np.int32), np.empty(m, np.int32), np.empty(m, np.int32)
    s_eligible = np.empty(m, np.int64)
    s_total = s_eligible if total is eligible else np.empty(m, np.int64)  # one column for both (anchor)
    last, low_mask = year_start.shape[0] - 1, (np.int64(1) << shift) - 1
    for i in range(m):
        c = order[i]
        person[i] = key[i] >> shift
        day[i] = (key[i] & low_mask) + day_low
        y = last
        while y > 0 and year_start[y] > day[i]:
            y -= 1
        year[i] = y
        s_eligible[i] = eligible[c]
        s_total[i] = total[c]
    return person, day, year, s_eligible, s_total


@_jit
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
    """interp's evaluation of every person-year (claims sorted); True when some claim needs what the tables
    could not give (an unspecified parameter, a unit payment beyond int64): the caller then falls back.

    A person-year's layers run in *stages*: consecutive steps evaluated claim by claim together, each layer
    (lane) with its own running state. That equals interp's layer after layer, as a layer's step reads only
    its own state and the earlier layers' payments on the same claim. A layer choosing among several `best`
    schedules is a stage of its own, run once per candidate; a stage holds at most one shared-cap block."""
    # (fields are read out of the tuples once: inside the loop each read would cost a reference count)
    _order, person, year, combo_of, eligible, total, numbers = cl
    (combo, lc, layer_info, adm_reps, le, spec, block, rows, tier_specs, tier_items, n_keys, n_pools, alert_year,
     alert_layers, alert_where) = tb
    pay, n_years, py_payments, py_total, py_eligible, py_oop, burden = out  # pay: zeros, nothing paid yet
    n_layers, width, m = pay.shape[1], max(pay.shape[1], 1), person.shape[0]
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
    a = 0
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
                                for j in range(n_layers):
                                    if j < own:
                                        before += pay[i, j]
                                    if (subtract >> j) & 1:
                                        extra -= pay[i, j]
                                added = le[own, ep, E_BASE_PLUS]
                                plus = 0
                                if added:
                                    for j in range(numbers.shape[0]):
                                        if (added >> j) & 1:
                                            plus += numbers[j, i]
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
                                        exact += rows[r, R_BONUS_RATE] * min(payable, numbers[rows[r, R_BONUS_COL], i])
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
                                    units = min(payable, numbers[rows[r, R_UNIT_COL], i] * rows[r, R_AMOUNT])
                                    failed = failed or units <= -FEN_LIMIT or units >= FEN_LIMIT
                                    exact = units * RATE_ONE
                                exact = min(exact, rows[r, R_CAP_CLAIM])
                                state[k, 6 + key] += base
                                state[k, 6 + n_keys + key] += payable
                                whole = exact // RATE_ONE
                                state[k, _UHI] += whole
                                state[k, _ULO] += exact - whole * RATE_ONE
                                rounded = state[k, _UHI] + (state[k, _ULO] + HALF) // RATE_ONE
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
        _commit(total, eligible, pay, py_payments, py_total, py_eligible, py_oop, p * n_years + yi, a, e)
        if alert_year.shape[0]:
            _burdens(combo_of, total, alert_year, alert_layers, alert_where, burden, p * n_years + yi, yi, a, e, pay)
        a = e
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


@_jit
def _commit(total_cost: Arr, eligible_cost: Arr, payments: Arr, py_payments: Arr, py_total: Arr, py_eligible: Arr,
            py_oop: Arr, py: int, a: int, e: int) -> None:
    """A person-year's own row: its payments by layer and its costs."""
    paid = 0
    for layer in range(payments.shape[1]):
        own = payments[a, layer]
        for i in range(a + 1, e):
            own += payments[i, layer]
        py_payments[py, layer] = own
        paid += own
    total, eligible = total_cost[a], eligible_cost[a]
    for i in range(a + 1, e):
        total += total_cost[i]
        eligible += eligible_cost[i]
    py_total[py] = total
    py_eligible[py] = eligible
    py_oop[py] = total - paid


@_jit
def _scatter(order: Arr, sorted_payments: Arr, total_cost: Arr, payments: Arr, out_of_pocket: Arr) -> None:
    """Claims' payments back into input order (one tight pass: the random writes overlap)."""
    for i in range(order.shape[0]):
        c = order[i]
        own = 0
        for layer in range(payments.shape[1]):
            payments[c, layer] = sorted_payments[i, layer]
            own += sorted_payments[i, layer]
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
def run_columns(graph: Graph, cols: Columns, options: interp.Options = interp.Options()) -> VectorResult:
    """vector.run_columns' contract, by the kernel; the NumPy engine for what the kernel hands over."""
    result = evaluate(graph, cols, options)
    return result if result is not None else vector._Engine(graph, cols, options).run()


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
    claims, day = _sorted(cols, year_start)
    clock.lap("sort")
    frame = _Rows(cols, claims.order, claims.person, day)
    year_end = _year_ends(year_start)[claims.year] if _has_best(graph) else None
    ctx = _Ctx(graph, cols, options, frame, _claim_epochs(graph, day, options), year_end)
    del day, year_end
    clock.lap("combinations")
    if _table_rows(graph, ctx) > max(TABLE_ROWS, 2 * cols.claims.m):
        return _hand_over("too many combinations of claim facts for parameter tables")
    names = _numbers_of(graph)
    tables, instances = _build_tables(ctx, {name: i for i, name in enumerate(names)}, years)
    claims = claims._replace(combo=ctx.combo, numbers=np.stack([frame.number(name) for name in names]) if names
                             else np.zeros((0, cols.claims.m), dtype=np.int64))
    del frame
    if _unit_overflow(tables, claims.numbers):
        return _hand_over("unit payments may leave int64")
    clock.lap("tables")
    out = _outputs(cols.claims.m, cols.persons.n, len(years), len(graph.layers), len(instances))
    if _evaluate(claims, tables, out):
        return _hand_over("a claim needs an unspecified parameter, or a unit payment leaves int64")
    clock.lap("loop")
    order, total, idents = claims.order, claims.total, ctx.idents
    del claims, ctx  # (what the outputs do not need is freed before they are allocated)
    payments = np.empty((cols.claims.m, len(graph.layers)), np.int64)
    out_of_pocket = np.empty(cols.claims.m, np.int64)
    _scatter(order, out.sorted_payments, total, payments, out_of_pocket)
    del order, total
    out = out._replace(sorted_payments=np.zeros((0, 0), np.int64))
    result = _result(graph, cols, options, years, idents, out, payments, out_of_pocket, instances)
    clock.lap("outputs")
    return result if result is not None else _hand_over("an alert or subsidy needs an unspecified parameter")


def _table_rows(graph: Graph, ctx: _Ctx) -> int:
    """How many parameter rows the tables would have (combinations × selected slots × admission classes)."""
    builder = _Builder(ctx, {})
    return ctx.n_combos * sum(p.n_sel * p.n_adm for p in map(builder.plan, range(len(graph.layers))))


def _sorted(cols: Columns, year_start: Arr) -> tuple[_ClaimData, Arr]:
    """The claims in (person, date, claim id) order (combinations and numbers still to fill), and their days."""
    c = cols.claims
    day = np.asarray(c.day, dtype=np.int32)
    day_low = int(day.min())
    shift = max(1, int(day.max()) - day_low).bit_length()
    order, key = _sort_claims(np.asarray(c.person, dtype=np.int32), day, _rank(c.claim_id, c.m), day_low, shift,
                              cols.persons.n)
    eligible = np.asarray(c.eligible_cost, dtype=np.int64)
    total = eligible if c.total_cost is c.eligible_cost else np.asarray(c.total_cost, dtype=np.int64)
    person, day, year, s_eligible, s_total = _gather(order, key, shift, day_low, year_start, eligible, total)
    return _ClaimData(order, person, year, np.zeros(0, np.int32), s_eligible, s_total, np.zeros((0, 0))), day


def _outputs(m: int, n: int, n_years: int, n_layers: int, n_alerts: int) -> _Outputs:
    """Zeroed outputs of the loop (k = n × n_years person-year rows)."""
    k = n * n_years
    return _Outputs(np.zeros((m, n_layers), np.int64), n_years, np.zeros((k, n_layers), np.int64),
                    np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64),
                    np.zeros((k if n_alerts else 0, n_alerts), np.int64))


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
            out: _Outputs, payments: Arr, out_of_pocket: Arr,
            instances: list[tuple[int, int, int]]) -> VectorResult | None:
    n = cols.persons.n
    epochs = _year_epochs(graph, years, options)
    alert_ids: tuple[str, ...] = ()
    subsidy_ids: tuple[str, ...] = ()
    alerts = np.zeros((n * len(years), 0), dtype=bool)
    subsidies, given = np.zeros((n * len(years), 0), dtype=np.int64), np.zeros((n * len(years), 0), dtype=bool)
    if any(e.alerts or e.subsidies for e in epochs):
        year = _YearLevel(graph, cols, years, options, idents)
        alert_ids, alerts = year.alerts(out.burden, instances)
        subsidy_ids, subsidies, given = year.subsidies()
        if year.failed:
            return None
    return VectorResult(
        tuple(layer.id for layer in graph.layers), payments, out_of_pocket, *_py_keys(n, years), out.py_payments,
        out.py_oop, out.py_total, out.py_eligible, alert_ids, alerts, subsidy_ids, subsidies, given)


def _py_keys(n: int, years: Arr) -> tuple[Arr, Arr]:
    """The person and year of each person-year row (persons in order, years ascending), as vector.py's; with one
    year, the year column is a read-only broadcast of it (no memory)."""
    if len(years) == 1:
        return np.arange(n, dtype=np.int64), np.broadcast_to(years[:1], (n,))
    return np.repeat(np.arange(n, dtype=np.int64), len(years)), np.tile(years, n)


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


def _claim_epochs(graph: Graph, day: Arr, options: interp.Options) -> Arr:
    """The epoch whose rules pay each claim (--as-of: one for all)."""
    if options.as_of is not None:
        return np.full(len(day), graph.epochs.index(graph.epoch_at(options.as_of)), dtype=np.int64)
    if len(graph.epochs) == 1:
        return np.zeros(len(day), dtype=np.int64)
    starts = np.array([day_number(e.start) for e in graph.epochs[1:] if e.start is not None], dtype=np.int64)
    return np.searchsorted(starts, day, side="right")


def _unit_overflow(tb: _Tables, nums: Arr) -> bool:
    """Whether units × a unit amount could leave int64 (the NumPy engine then computes it exactly)."""
    unit = tb.rows[:, R_KIND] == UNIT
    if not unit.any():
        return False
    amount = int(np.abs(tb.rows[unit, R_AMOUNT]).max())
    units = max(int(np.abs(nums[q]).max()) for q in np.unique(tb.rows[unit, R_UNIT_COL]))
    return amount * units >= FEN_LIMIT
