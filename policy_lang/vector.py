"""Vector evaluator: Graph + Columns -> payments per claim and person-year (NumPy int64), equal to interp's."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from itertools import count
from typing import Any, Protocol

import attrs
import numpy as np
import numpy.typing as npt

from policy_lang import interp
from policy_lang.columns import (
    CLAIM_BOOLS,
    CLAIM_MONEY,
    DESIGNATIONS,
    KINDS,
    SCHEMES,
    SEXES,
    Columns,
    Extra,
    day_number,
    from_dataset,
)
from policy_lang.data import Dataset
from policy_lang.graph import (
    COMPARISONS,
    RATE_ONE,
    Below,
    BonusSpec,
    Epoch,
    Flat,
    Graph,
    LayerVersion,
    Lit,
    Lvl,
    Op,
    PAdmission,
    PAnd,
    Param,
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

Arr = npt.NDArray[Any]
HALF = RATE_ONE // 2
INF = 1 << 62  # "no cap": above any sum of payments, and INF + a sum still fits in int64
FEN_LIMIT = INF // RATE_ONE  # a per-claim cap above this cannot bind an exact amount
NO_PRICING, FLAT, TIERED, UNIT = 0, 1, 2, 3
YEAR_PERIOD = 2  # index of "year" in the period names
_RANK_EPOCH = 1 << 20  # more than any identity list is long
INPATIENT = KINDS.index("inpatient")


@attrs.frozen(eq=False)
class VectorResult:
    """Payments per claim (input order) and per person-year; the person-year rows are SPARSE.

    A person-year row is present iff some value of it is non-zero: any payment, out_of_pocket, total_cost or
    eligible_cost ≠ 0, an alert fired, or a subsidy given (subsidy_given True, even with amount 0; a subsidy
    amount ≠ 0 counts as well). Rows are sorted by (person, year). An absent person-year of a year the run
    considers (`considered_years`: the claims' years, or the --as-of year when there are none) means: all
    amounts zero, no alert, no subsidy. `sparse_rows` brings a dense result to this form; `run_columns`
    always returns it, and `_result` lists every person × year again, as interp.run does.
    """

    layers: tuple[str, ...]
    payments: Arr  # m × L fen
    out_of_pocket: Arr  # m
    py_person: Arr  # k: row of persons
    py_year: Arr  # k
    py_payments: Arr  # k × L
    py_out_of_pocket: Arr
    py_total_cost: Arr
    py_eligible_cost: Arr
    alert_ids: tuple[str, ...]
    alerts: Arr  # k × A bool
    subsidy_ids: tuple[str, ...]
    subsidies: Arr  # k × S fen
    subsidy_given: Arr  # k × S bool: the person-year gets this subsidy (possibly 0)


def run_columns(graph: Graph, cols: Columns, options: interp.Options = interp.Options()) -> VectorResult:
    """Evaluate every claim of `cols` under `graph`; raise interp.EvalError as interp would.

    The fused Numba kernel (policy_lang/kernel.py) runs when Numba is importable and it handles the graph;
    otherwise, and for what it hands over, this module's NumPy engine."""
    from policy_lang import kernel

    if kernel.available() and kernel.supports(graph, options):
        return kernel.run_columns(graph, cols, options)  # (its rows are sparse already)
    return sparse_rows(_Engine(graph, cols, options).run())


def sparse_rows(result: VectorResult) -> VectorResult:
    """`result` with only its person-year rows that have some non-zero value (VectorResult's rule).

    Takes dense or already sparse rows and gives the same answer; returns `result` itself when no row goes."""
    keep = _nonzero_rows(result)
    if keep.all():
        return result
    return attrs.evolve(
        result, py_person=result.py_person[keep], py_year=result.py_year[keep],
        py_payments=result.py_payments[keep], py_out_of_pocket=result.py_out_of_pocket[keep],
        py_total_cost=result.py_total_cost[keep], py_eligible_cost=result.py_eligible_cost[keep],
        alerts=result.alerts[keep], subsidies=result.subsidies[keep], subsidy_given=result.subsidy_given[keep])


def _nonzero_rows(r: VectorResult) -> Arr:
    keep: Arr = (r.py_out_of_pocket != 0) | (r.py_total_cost != 0) | (r.py_eligible_cost != 0)
    for matrix in (r.py_payments, r.alerts, r.subsidies, r.subsidy_given):
        keep |= (matrix != 0).any(axis=1)
    return keep


def considered_years(cols: Columns, options: interp.Options = interp.Options()) -> Arr:
    """The years a run over `cols` considers, ascending: its claims' years, or the --as-of year if none."""
    return _years(cols, options)


def run(graph: Graph, data: Dataset, options: interp.Options = interp.Options()) -> interp.Result:
    """interp.run's contract (same Result), computed column-wise."""
    result = run_columns(graph, from_dataset(data, graph), options)
    return _result(graph, data, result, options)


# ---- small array helpers -----------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class _Segs:
    """Runs of equal keys in a sorted key array: the segment of each row and each segment's first row."""

    seg: Arr
    starts: Arr

    def excl_cumsum(self, x: Arr) -> Arr:
        before = np.cumsum(x, dtype=np.int64) - x
        return before - before[self.starts][self.seg]

    def incl_cumsum(self, x: Arr) -> Arr:
        return self.excl_cumsum(x) + x


def _segments(keys: Arr) -> _Segs:
    new = np.ones(len(keys), dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    return _Segs(np.cumsum(new) - 1, np.flatnonzero(new))


def _distinct(keys: Arr) -> Arr:
    """The sorted distinct values of an int array; by counting when their range is small (no sort)."""
    if not len(keys):
        return keys
    low, high = int(keys.min()), int(keys.max())
    if high - low < (1 << 16):
        return np.flatnonzero(np.bincount(keys - low)) + low
    return np.unique(keys)


def _groups(keys: Arr) -> Iterator[tuple[int, Arr]]:
    """(value, row indices) for each distinct value of a small-valued key array (epochs, codes)."""
    values = _distinct(keys)
    if len(values) == 1:
        yield int(values[0]), np.arange(len(keys))
        return
    for value in values:
        yield int(value), np.flatnonzero(keys == value)


def _all(parts: Sequence[Arr], n: int) -> Arr:
    out = np.ones(n, dtype=bool)
    for p in parts:
        out &= p
    return out


def _any(parts: Sequence[Arr], n: int) -> Arr:
    out = np.zeros(n, dtype=bool)
    for p in parts:
        out |= p
    return out


def _mul_round(a: Arr, b: Arr) -> Arr:
    """money × rate (or rate × rate) rounded half-up to an integer, exactly."""
    if len(a) and int(np.abs(a).max()) * int(np.abs(b).max()) < (1 << 62):
        return (a * b + HALF) // RATE_ONE
    exact = [(int(x) * int(y) + HALF) // RATE_ONE for x, y in zip(a, b, strict=True)]
    return np.array(exact, dtype=np.int64)


def _min_product(limit: Arr, a: Arr, b: Arr) -> Arr:
    """min(limit, a × b) exactly (bed_days × a unit amount may be large)."""
    if len(a) and int(np.abs(a).max()) * int(np.abs(b).max()) < (1 << 62):
        return np.minimum(limit, a * b)  # type: ignore[no-any-return]
    exact = [min(int(x), int(y) * int(z)) for x, y, z in zip(limit, a, b, strict=True)]
    return np.array(exact, dtype=np.int64)


def _round_cumulative(hi: Arr, lo: Arr) -> Arr:
    """Half-up rounding of hi + lo / 1e6 fen, where lo is a sum of remainders (kept apart against overflow)."""
    return hi + (lo + HALF) // RATE_ONE  # type: ignore[no-any-return]


def _year_of(days: Arr) -> Arr:
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


# ---- fields ---------------------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class _Field:
    """A scalar field over the rows of a frame; with `vocab`, values are codes into it (-1 = empty)."""

    values: Arr
    missing: Arr | None = None
    vocab: tuple[object, ...] | None = None


def _compare(f: _Field, op: str, value: object) -> Arr:
    if f.vocab is not None:
        table = np.array([bool(COMPARISONS[op](v, value)) for v in f.vocab] + [False], dtype=bool)
        return table[f.values]
    if isinstance(value, str):  # a number never equals text
        out = np.full(len(f.values), op == "!=", dtype=bool)
    else:
        out = np.asarray(COMPARISONS[op](f.values, value), dtype=bool)
    return out if f.missing is None else out & ~f.missing


def _member(f: _Field, values: frozenset[int | str | bool]) -> Arr:
    if f.vocab is not None:
        table = np.array([v in values for v in f.vocab] + [False], dtype=bool)
        return table[f.values]
    out = np.isin(f.values, [v for v in values if not isinstance(v, str)])
    return out if f.missing is None else out & ~f.missing


_PERSON_VOCAB: dict[str, tuple[str, ...]] = {"scheme": SCHEMES, "sex": SEXES}
_CLAIM_VOCAB: dict[str, tuple[str, ...]] = {"kind": KINDS, "designation": DESIGNATIONS}
_CLAIM_PLAIN = frozenset({"level", "bed_days", *CLAIM_BOOLS, *CLAIM_MONEY})


def _person_field(cols: Columns, name: str) -> _Field | None:
    p = cols.persons
    if name in _PERSON_VOCAB:
        return _Field(getattr(p, name), None, _PERSON_VOCAB[name])
    if name == "region":
        return _Field(p.region, None, p.region_names)
    if name == "age":
        return _Field(p.age.astype(np.int64), p.age < 0)
    if name in ("retired", "resettled"):
        return _Field(getattr(p, name))
    return None


def _claim_field(cols: Columns, name: str) -> _Field | None:
    c = cols.claims
    if name in _CLAIM_VOCAB:
        return _Field(getattr(c, name), None, _CLAIM_VOCAB[name])
    if name in _CLAIM_PLAIN:
        values = getattr(c, name)
        return _Field(values if values.dtype == bool else values.astype(np.int64))
    return None


def _extra_field(extra: Extra) -> _Field:
    return _Field(extra.values, extra.missing, extra.names)


def _take(f: _Field, index: Arr) -> _Field:
    return _Field(f.values[index], None if f.missing is None else f.missing[index], f.vocab)


def _person_held(cols: Columns, code: int | None, day: int) -> Arr:
    """Per person: holds the identity (data code) on `day`."""
    out = np.zeros(cols.persons.n, dtype=bool)
    if code is not None:
        p = cols.persons
        ok = (p.grant_identity == code) & (p.grant_since <= day)
        out[p.grant_person[ok]] = True
    return out


class _ClaimFrame:
    """The claims sorted by (person, date, claim_id), with their person-year, epoch and fields."""

    def __init__(self, cols: Columns, years: Arr, as_of: int | None):
        c = cols.claims
        self.cols, self.n, self.as_of = cols, c.m, as_of
        self.order = _claim_order(c.person, c.day, _id_rank(c.claim_id, c.m))
        self.person = c.person[self.order].astype(np.int64)
        self.day = c.day[self.order].astype(np.int64)
        self.level: Arr | None = c.level[self.order].astype(np.int64)
        self.kind = c.kind[self.order]
        self.py = self.person * len(years) + np.searchsorted(years, _year_of(self.day))
        self.segs = _segments(self.py)
        self.pos = np.arange(self.n) - self.segs.starts[self.segs.seg]  # rank within the person-year
        self.epoch = np.zeros(self.n, dtype=np.int64)
        self.idents = {name: i for i, name in enumerate(cols.identity_names)}
        self.diseases = {name: i for i, name in enumerate(cols.disease_names)}
        self._fields: dict[str, _Field] = {}
        self._holds: dict[str, Arr] = {}

    def field(self, name: str) -> _Field:
        if name not in self._fields:
            self._fields[name] = self._field(name)
        return self._fields[name]

    def _own(self, values: Arr) -> Arr:
        """A claim column over the frame's rows."""
        return values[self.order]

    def _pick(self, f: _Field) -> _Field:
        """A claim field over the frame's rows."""
        return _take(f, self.order)

    def _of_person(self, f: _Field) -> _Field:
        """A person field at each row's person."""
        return _take(f, self.person)

    def _field(self, name: str) -> _Field:
        # interp's field_value order: claim fields, person fields, claim columns, person columns
        own = _claim_field(self.cols, "level" if name == "hospital_level" else name)
        if own is not None:
            return self._pick(own)
        person = _person_field(self.cols, name)
        if person is not None:
            return self._of_person(person)
        if name in self.cols.claims.extra:
            return self._pick(_extra_field(self.cols.claims.extra[name]))
        if name in self.cols.persons.extra:
            return self._of_person(_extra_field(self.cols.persons.extra[name]))
        return _Field(np.zeros(self.n, dtype=np.int64), np.ones(self.n, dtype=bool))

    def number(self, name: str) -> Arr:
        """A claim column as an amount or count (empty = 0), as `int(value or 0)`."""
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

    def holds(self, identity: str) -> Arr:
        """Held on the claim's date (predicates)."""
        if identity not in self._holds:
            self._holds[identity] = self._held_on_claim_day(self.idents.get(identity))
        return self._holds[identity]

    def held_for_selection(self, identity: str) -> Arr:
        """Held on the claim's date (--as-of picks the rules, not the person's identities)."""
        return self.holds(identity)

    def _held_on_claim_day(self, code: int | None) -> Arr:
        if code is None or not self.n:
            return np.zeros(self.n, dtype=bool)
        p = self.cols.persons
        ok = p.grant_identity == code
        person, since = p.grant_person[ok].astype(np.int64), p.grant_since[ok].astype(np.int64)
        low, span = int(self.day.min()), int(self.day.max() - self.day.min()) + 2
        key = self.person * span + (self.day - low)  # nondecreasing: claims are sorted by person, date
        start = np.searchsorted(key, person * span + np.clip(since - low, 0, span - 1))
        end = np.searchsorted(key, (person + 1) * span)
        edges = np.bincount(start, minlength=self.n + 1) - np.bincount(end, minlength=self.n + 1)
        return np.cumsum(edges)[: self.n] > 0


class _YearFrame:
    """Person-years (person-major, years ascending): the context of alert thresholds and subsidies."""

    level: Arr | None = None

    def __init__(self, cols: Columns, years: Arr):
        self.cols, self.years = cols, years
        self.n = cols.persons.n * len(years)
        self.person = np.repeat(np.arange(cols.persons.n), len(years))
        self.year = np.tile(years, cols.persons.n)
        self.idents = {name: i for i, name in enumerate(cols.identity_names)}
        self.diseases = {name: i for i, name in enumerate(cols.disease_names)}
        self._holds: dict[str, Arr] = {}

    def field(self, name: str) -> _Field:
        person = _person_field(self.cols, name)
        if person is not None:
            return _take(person, self.person)
        if name in self.cols.persons.extra:
            return _take(_extra_field(self.cols.persons.extra[name]), self.person)
        return _Field(np.zeros(self.n, dtype=np.int64), np.ones(self.n, dtype=bool))

    def has(self, field: str, disease: str) -> Arr:
        code = self.diseases.get(disease)
        p = self.cols.persons
        certified = np.zeros(p.n, dtype=bool)
        if field == "chronic" and code is not None:
            certified[p.chronic_person[p.chronic_disease == code]] = True
        return certified[self.person]

    def nonempty(self, field: str) -> Arr:
        if field != "chronic":  # no claim here: no diseases, none certified
            return np.zeros(self.n, dtype=bool)
        return np.isin(self.person, self.cols.persons.chronic_person)

    def holds(self, identity: str) -> Arr:
        """Held by Dec 31 of the year."""
        if identity not in self._holds:
            code = self.idents.get(identity)
            held = [_person_held(self.cols, code, day_number(datetime.date(int(y), 12, 31))) for y in self.years]
            self._holds[identity] = np.stack(held, axis=1).reshape(-1) if held else np.zeros(0, dtype=bool)
        return self._holds[identity]


class _Frame(Protocol):
    """What predicates read: fields, disease sets and identities held over n rows (claims, person-years, or
    the kernel's persons and representative claims)."""

    n: int

    def field(self, name: str) -> _Field: ...

    def has(self, field: str, disease: str) -> Arr: ...

    def nonempty(self, field: str) -> Arr: ...

    def holds(self, identity: str) -> Arr: ...


def _id_rank(ids: Arr | None, m: int) -> Arr:
    """An integer key ordering claim ids as strings (interp sorts by claim_id text)."""
    if ids is not None:
        if len(ids) > 1 and bool(np.all(ids[1:] > ids[:-1])):  # already in order (generated, most files)
            return np.arange(len(ids), dtype=np.int64)
        return np.unique(ids, return_inverse=True)[1].reshape(-1)
    index = np.arange(m, dtype=np.int64)
    digits = np.ones(m, dtype=np.int64)
    for d in range(1, 19):
        digits += index >= 10**d
    width = int(digits.max()) if m else 1
    # "10" < "100" < "11" < "2": compare digit strings left-aligned, shorter first on a tie
    return index * 10 ** (width - digits) * (width + 1) + digits


def _claim_order(person: Arr, day: Arr, rank: Arr) -> Arr:
    """Rows sorted by (person, date, claim id); one composite int64 key when it fits, else lexsort."""
    if not len(person):
        return np.zeros(0, dtype=np.int64)
    low = int(day.min())
    days, ranks = int(day.max()) - low + 1, int(rank.max()) + 1
    if (int(person.max()) + 1) * days * ranks < (1 << 62):
        key = (person.astype(np.int64) * days + (day.astype(np.int64) - low)) * ranks + rank
        return np.argsort(key, kind="stable")
    return np.lexsort((rank, day, person))


# ---- predicates -----------------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class _Dyn:
    """What varies along a layer's evaluation: the selected identity (code, -1 none) and the admission number."""

    sel: Arr
    adm: Arr

    @staticmethod
    def null(n: int) -> _Dyn:
        return _Dyn(np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64))


@cache
def _dynamic(pred: Pred) -> bool:
    match pred:
        case PSelected() | PAdmission():
            return True
        case PAnd(items) | POr(items):
            return any(_dynamic(p) for p in items)
        case PNot(item):
            return _dynamic(item)
    return False


class _Preds:
    """Predicates over a frame; those that do not depend on the layer's evaluation are cached."""

    def __init__(self, frame: _Frame, idents: Mapping[str, int]):
        self.frame, self.idents = frame, idents
        self.cache: dict[Pred, Arr] = {}

    def static(self, pred: Pred) -> Arr:
        hit = self.cache.get(pred)
        if hit is None:
            hit = self.cache[pred] = self._static(pred)
        return hit

    def _static(self, pred: Pred) -> Arr:
        f, n = self.frame, self.frame.n
        match pred:
            case PTrue():
                return np.ones(n, dtype=bool)
            case PAnd(items):
                return _all([self.static(p) for p in items], n)
            case POr(items):
                return _any([self.static(p) for p in items], n)
            case PNot(item):
                return ~self.static(item)
            case PCompare(field, op, value):
                return _compare(f.field(field), op, value)
            case PIn(field, values):
                return _member(f.field(field), values)
            case PHas(field, values, all_):
                parts = [f.has(field, d) for d in sorted(values)]
                return _all(parts, n) if all_ else _any(parts, n)
            case PNonEmpty(field):
                return f.nonempty(field)
            case PHolds(identities):
                return _any([f.holds(i) for i in sorted(identities)], n)
        raise AssertionError(pred)  # pragma: no cover - dynamic predicates go through eval

    def eval(self, pred: Pred, rows: Arr, dyn: _Dyn) -> Arr:
        if not _dynamic(pred):
            return self.static(pred)[rows]
        match pred:
            case PAnd(items):
                return _all([self.eval(p, rows, dyn) for p in items], len(rows))
            case POr(items):
                return _any([self.eval(p, rows, dyn) for p in items], len(rows))
            case PNot(item):
                return ~self.eval(item, rows, dyn)
            case PSelected(identities):
                return np.isin(dyn.sel, [self.idents[i] for i in identities if i in self.idents])
            case PAdmission(op, value):
                return (dyn.adm > 0) & COMPARISONS[op](dyn.adm, value)  # type: ignore[no-any-return]
        raise AssertionError(pred)  # pragma: no cover


# ---- values ---------------------------------------------------------------------------------------------------
class _Sink:
    """The first unspecified parameter each row needs, in interp's order of evaluation (it stops there)."""

    def __init__(self, n: int):
        self.code = np.zeros(n, dtype=np.int32)
        self.names: list[str] = []

    def record(self, idx: Arr, name: str) -> None:
        if not len(idx):
            return
        if name not in self.names:
            self.names.append(name)
        fresh = idx[self.code[idx] == 0]
        self.code[fresh] = self.names.index(name) + 1

    def merged(self, sub: Arr, other: _Sink) -> _Sink:
        out = _Sink(len(self.code))
        out.names = list(dict.fromkeys([*self.names, *other.names]))
        recode = np.array([0, *(out.names.index(n) + 1 for n in self.names)], dtype=np.int32)
        out.code = recode[self.code]
        recode = np.array([0, *(out.names.index(n) + 1 for n in other.names)], dtype=np.int32)
        out.code[sub] = recode[other.code]
        return out

    def failed(self) -> tuple[Arr, list[str]]:
        where = np.flatnonzero(self.code)
        return where, [self.names[c - 1] for c in self.code[where]]


def _zeros(idx: Arr) -> Arr:
    return np.zeros(len(idx), dtype=np.int64)


Winners = list[tuple[Rule[Any] | None, Arr]]


class _Env:
    """Values and programs over the rows of one evaluation in one epoch (its parameters)."""

    def __init__(self, pred: Callable[[Pred], Arr], level: Arr | None, prev: Arr | None,
                 params: Mapping[str, int | None], settings: Mapping[str, int], sink: _Sink):
        self.pred, self.level, self.prev = pred, level, prev
        self.params, self.settings, self.sink = params, settings, sink

    def winners(self, prog: Program[Any], idx: Arr) -> Winners:
        """(rule, positions in idx) for the last rule whose predicate holds; rule None where none holds."""
        taken = np.zeros(len(idx), dtype=bool)
        out: Winners = []
        for rule in reversed(prog.rules):
            if taken.all():
                break
            hit = self.pred(rule.pred)[idx] & ~taken
            if hit.any():
                out.append((rule, np.flatnonzero(hit)))
                taken |= hit
        if not taken.all():
            out.append((None, np.flatnonzero(~taken)))
        return out

    def values(self, prog: Program[Any], idx: Arr) -> tuple[Arr, Arr]:
        """A program of amounts (None allowed): values and whether each is None."""
        out = np.zeros(len(idx), dtype=np.int64)
        none = np.ones(len(idx), dtype=bool)
        for rule, pos in self.winners(prog, idx):
            if rule is not None and rule.value is not None:
                out[pos] = self.val(rule.value, idx[pos], self.below_val(rule.below))
                none[pos] = False
        return out, none

    def codes(self, prog: Program[Any], idx: Arr, names: list[str], default: str) -> Arr:
        """A program of names (period, accumulator) as codes into `names` (extended as needed)."""
        out = np.zeros(len(idx), dtype=np.int64)
        for rule, pos in self.winners(prog, idx):
            name = default if rule is None else rule.value
            if name not in names:
                names.append(name)
            out[pos] = names.index(name)
        return out

    def below_val(self, below: Program[Any] | None) -> Callable[[Arr], Arr]:
        def value(idx: Arr) -> Arr:
            if below is None:
                return _zeros(idx)
            got, none = self.values(below, idx)
            return np.where(none, 0, got)
        return value

    def below_rate(self, below: Program[Any] | None) -> Callable[[Arr], Arr]:
        def rate(idx: Arr) -> Arr:
            out = _zeros(idx)
            for rule, pos in self.winners(below, idx) if below is not None else [(None, np.arange(len(idx)))]:
                if rule is None or not isinstance(rule.value, Flat):
                    raise AssertionError("a relative rate with no flat rate below it")
                out[pos] = self.val(rule.value.rate, idx[pos], self.below_rate(rule.below))
            return out
        return rate

    def val(self, value: Val, idx: Arr, below: Callable[[Arr], Arr]) -> Arr:
        match value:
            case Lit(v):
                return np.full(len(idx), v, dtype=np.int64)
            case Lvl(vs):
                assert self.level is not None, "a by-level value outside a claim"
                return np.array(vs, dtype=np.int64)[self.level[idx] - 1]  # type: ignore[no-any-return]
            case Below():
                return below(idx)
            case Prev():
                return _zeros(idx) if self.prev is None else self.prev[idx]
            case Param(name):
                return self.param(name, idx)
            case Op(op, left, right):
                a, b = self.val(left, idx, below), self.val(right, idx, below)
                return _apply(op, a, b)
        raise AssertionError(value)  # pragma: no cover

    def param(self, name: str, idx: Arr) -> Arr:
        if name in self.settings:
            return np.full(len(idx), self.settings[name], dtype=np.int64)
        value = self.params.get(name)
        if value is None:
            self.sink.record(idx, name)
            return _zeros(idx)
        return np.full(len(idx), value, dtype=np.int64)


def _apply(op: str, a: Arr, b: Arr) -> Arr:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return _mul_round(a, b)
    return np.maximum(a, b) if op == "max" else np.minimum(a, b)


# ---- errors ---------------------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class _Failure:
    keys: Arr  # n × 6: person, year, phase (layer step), candidate, position in the year, sub-step
    on_claim: bool  # refs are sorted-claim rows (else person-years)
    refs: Arr
    names: list[str]


class _Errors:
    """Missing parameters met anywhere; the one interp meets first is raised (its traversal order as key)."""

    def __init__(self) -> None:
        self.failures: list[_Failure] = []

    def add(self, keys: Arr, on_claim: bool, refs: Arr, names: list[str]) -> None:
        if len(refs):
            self.failures.append(_Failure(keys, on_claim, refs, names))

    def raise_first(self, describe: Callable[[bool, int], str]) -> None:
        if not self.failures:
            return
        keys = np.concatenate([f.keys for f in self.failures])
        first = int(np.lexsort(keys.T[::-1])[0])
        for f in self.failures:
            if first < len(f.refs):
                name = f.names[first]
                who = describe(f.on_claim, int(f.refs[first]))
                raise interp.EvalError(
                    f"claim {who} needs the parameter `{name}`, which the policy leaves unspecified "
                    f"(parameter `{name}`); supply it with --set {name}=VALUE")
            first -= len(f.refs)


# ---- one layer over a set of claims ---------------------------------------------------------------------------
@attrs.frozen(eq=False)
class _Core:
    covered: Arr
    kind: Arr
    rate: Arr
    tier: Arr
    amount: Arr
    unit_col: Arr
    part: Arr
    payable: Arr
    acc_before: Arr
    x_before: Arr
    sink: _Sink

    def merged(self, sub: Arr, other: _Core) -> _Core:
        """This core with the rows at `sub` replaced by `other`'s (a pass over those rows only)."""
        fields = {}
        for field in attrs.fields(_Core):
            if field.name != "sink":
                mine = getattr(self, field.name).copy()
                mine[sub] = getattr(other, field.name)
                fields[field.name] = mine
        return _Core(**fields, sink=self.sink.merged(sub, other.sink))


@attrs.frozen(eq=False)
class _LayerOut:
    """The covered claims of one layer run, with their rounded increments and caps (not yet applied)."""

    scope_rows: Arr  # sorted-claim rows in scope
    rows: Arr  # sorted-claim rows covered
    py: Arr
    inc: Arr
    cap: Arr  # per-year cap in force on the claim, INF = none
    pool: Arr  # shared-cap slot, -1 = none
    pool_cap: Arr
    failed: Arr  # sorted-claim rows that need a missing parameter
    failed_names: list[str]


class _LayerRun:
    """One layer over a set of claim rows, each with its selected identity: DESIGN §3 step by step."""

    def __init__(self, eng: _Engine, index: int, rows: Arr, sel: Arr, base: Arr):
        self.eng, self.index, self.rows, self.sel, self.base = eng, index, rows, sel, base
        c = eng.claims
        self.ep, self.py = c.epoch[rows], c.py[rows]
        self.segs = _segments(self.py)
        self.level = None if c.level is None else c.level[rows]
        self.inpatient = c.kind[rows] == INPATIENT
        self.epochs = list(_groups(self.ep))

    @classmethod
    def over(cls, eng: _Engine, index: int, rows: Arr, sel: Arr) -> _LayerRun:
        """The run over those of `rows` in the layer's scope (the others touch none of its accumulators)."""
        keep = eng.in_scope(index, rows)
        rows = rows[keep]
        return cls(eng, index, rows, sel[keep], eng.base(index, rows, eng.claims.epoch[rows]))

    def subset(self, sub: Arr) -> _LayerRun:
        return _LayerRun(self.eng, self.index, self.rows[sub], self.sel[sub], self.base[sub])

    def version(self, epoch: int) -> LayerVersion:
        version = self.eng.graph.epochs[epoch].layers[self.index]
        assert version is not None
        return version

    def env(self, dyn: _Dyn, prev: Arr, sink: _Sink, epoch: int, cache: dict[Pred, Arr]) -> _Env:
        def pred(p: Pred) -> Arr:
            hit = cache.get(p)
            if hit is None:
                hit = cache[p] = self.eng.cpreds.eval(p, self.rows, dyn)
            return hit
        params = dict(self.eng.graph.epochs[epoch].params)
        return _Env(pred, self.level, prev, params, self.eng.options.settings, sink)

    def settle(self, pool_slots: dict[str, int] | None = None) -> _LayerOut:
        """Admission numbers and previous deductibles depend on which earlier claims were covered and what
        they were charged: guess, then repeat the pass on the person-years whose guesses moved. Each pass
        settles at least the next claim of every such year, so this ends at interp's sequential answer."""
        uses_adm, uses_prev = self.eng.uses(self.index)
        adm = np.where(self.inpatient, 1 + self.segs.excl_cumsum(self.inpatient.astype(np.int64)), 0)
        prev = _zeros(self.rows)
        core = self._core(adm, prev)
        while True:
            counted = core.covered & self.inpatient
            adm2 = np.where(self.inpatient, 1 + self.segs.excl_cumsum(counted.astype(np.int64)), 0)
            prev2 = _previous(self.segs, counted, core.part)
            moved = (uses_adm & (adm != adm2)) | (uses_prev & (prev != prev2))
            adm, prev = adm2, prev2
            if not moved.any():
                return self._finish(core, _Dyn(self.sel, adm), prev, pool_slots)
            sub = np.flatnonzero(np.bincount(self.segs.seg[moved], minlength=len(self.segs.starts))[self.segs.seg])
            core = core.merged(sub, self.subset(sub)._core(adm[sub], prev[sub]))

    def _core(self, adm: Arr, prev: Arr) -> _Core:
        n, dyn, sink = len(self.rows), _Dyn(self.sel, adm), _Sink(len(self.rows))
        cache: dict[Pred, Arr] = {}
        kind, rate, amount = np.zeros(n, dtype=np.int8), _zeros(self.rows), _zeros(self.rows)
        tier, unit_col = np.full(n, -1), np.full(n, -1)
        nominal, period, key = _zeros(self.rows), _zeros(self.rows), _zeros(self.rows)
        for epoch, idx in self.epochs:
            version, env = self.version(epoch), self.env(dyn, prev, sink, epoch, cache)
            self._pricing(env, version.pricing, idx, (kind, rate, tier, amount, unit_col))
            cov = idx[kind[idx] != NO_PRICING]
            value, none = env.values(version.deductible, cov)
            nominal[cov] = np.where(none, 0, np.maximum(value, 0))
            period[cov] = env.codes(version.period, cov, self.eng.periods, "claim")
            key[cov] = env.codes(version.accumulator, cov, self.eng.accumulators, "main")
        covered = kind != NO_PRICING
        acc_before = self._keyed_before(self.base, covered, key)
        part = np.where(period == YEAR_PERIOD, np.minimum(self.base, np.maximum(0, nominal - acc_before)),
                        np.minimum(self.base, nominal))
        part = np.where(covered, part, 0)
        payable = self.base - part
        x_before = self._keyed_before(payable, covered, key)
        return _Core(covered, kind, rate, tier, amount, unit_col, part, payable, acc_before, x_before, sink)

    def _pricing(self, env: _Env, prog: Program[Any], idx: Arr, out: tuple[Arr, ...]) -> None:
        kind, rate, tier, amount, unit_col = out
        for rule, pos in env.winners(prog, idx):
            sub, value = idx[pos], None if rule is None else rule.value
            if isinstance(value, Flat):
                assert rule is not None
                kind[sub], rate[sub] = FLAT, env.val(value.rate, sub, env.below_rate(rule.below))
            elif isinstance(value, Tiered):
                kind[sub], tier[sub] = TIERED, self.eng.code(self.eng.tiers, value)
            elif isinstance(value, Unit):
                kind[sub], amount[sub] = UNIT, env.val(value.amount, sub, _zeros)
                unit_col[sub] = self.eng.code(self.eng.unit_columns, value.column)

    def _keyed_before(self, values: Arr, covered: Arr, key: Arr) -> Arr:
        """The sum over earlier covered claims of the person-year with the same accumulator."""
        out = _zeros(self.rows)
        for k in _distinct(key[covered]):
            mask = covered & (key == k)
            out[mask] = self.segs.excl_cumsum(np.where(mask, values, 0))[mask]
        return out

    def _finish(self, core: _Core, dyn: _Dyn, prev: Arr, pool_slots: dict[str, int] | None) -> _LayerOut:
        exact, cap = _zeros(self.rows), np.full(len(self.rows), INF, dtype=np.int64)
        pool, pool_cap = np.full(len(self.rows), -1, dtype=np.int64), _zeros(self.rows)
        cache: dict[Pred, Arr] = {}
        for epoch, idx in self.epochs:
            version, env = self.version(epoch), self.env(dyn, prev, core.sink, epoch, cache)
            cov = idx[core.covered[idx]]
            exact[cov] = self._exact(env, version, cov, core)
            limit, none = env.values(version.cap_claim, cov)
            limit = np.maximum(0, np.minimum(limit, FEN_LIMIT)) * RATE_ONE
            exact[cov] = np.where(none, exact[cov], np.minimum(exact[cov], limit))
            value, none = env.values(version.cap_year, cov)
            cap[cov] = np.where(none, INF, value)
            if pool_slots is not None:
                self._pool(env, epoch, cov, pool_slots, pool, pool_cap)
        rows = np.flatnonzero(core.covered)
        inc = _increments(_segments(self.py[rows]), exact[rows])
        failed, names = core.sink.failed()
        return _LayerOut(self.rows, self.rows[rows], self.py[rows], inc, cap[rows], pool[rows], pool_cap[rows],
                         self.rows[failed], names)

    def _exact(self, env: _Env, version: LayerVersion, cov: Arr, core: _Core) -> Arr:
        """The exact payment of each covered claim, in millionths of a fen."""
        out = _zeros(cov)
        flat = core.kind[cov] == FLAT
        out[flat] = self._flat(env, version, cov[flat], core)
        tiered = np.flatnonzero(core.kind[cov] == TIERED)
        for t in _distinct(core.tier[cov[tiered]]):
            pos = tiered[core.tier[cov[tiered]] == t]
            out[pos] = self._tiers(self.eng.tiers[t], cov[pos], core)
        units = np.flatnonzero(core.kind[cov] == UNIT)
        for u in _distinct(core.unit_col[cov[units]]):
            pos = units[core.unit_col[cov[units]] == u]
            units_held = self.eng.claims.number(self.eng.unit_columns[u])[self.rows[cov[pos]]]
            paid = _min_product(core.payable[cov[pos]], units_held, core.amount[cov[pos]])
            if len(paid) and int(np.abs(paid).max()) >= FEN_LIMIT:
                raise OverflowError("a unit payment beyond the int64 range")
            out[pos] = paid * RATE_ONE
        return out

    def _flat(self, env: _Env, version: LayerVersion, idx: Arr, core: _Core) -> Arr:
        rate, payable = np.clip(core.rate[idx], 0, RATE_ONE), core.payable[idx]
        exact = rate * payable
        for rule, pos in env.winners(version.bonus, idx):
            if rule is None or not isinstance(rule.value, BonusSpec):
                continue
            extra = np.clip(env.val(rule.value.rate, idx[pos], _zeros), 0, RATE_ONE)
            extra = np.maximum(0, np.minimum(extra, RATE_ONE - rate[pos]))  # rate + bonus <= 100%
            column = self.eng.claims.number(rule.value.column)[self.rows[idx[pos]]]
            exact[pos] += extra * np.minimum(payable[pos], column)
        return exact

    def _tiers(self, spec: Tiered, idx: Arr, core: _Core) -> Arr:
        if spec.axis == "payable":
            low, high = core.x_before[idx], core.x_before[idx] + core.payable[idx]
        else:
            low = core.acc_before[idx] + core.part[idx]
            high = core.acc_before[idx] + self.base[idx]
        out = _zeros(idx)
        for tier in spec.tiers:
            lo = np.maximum(low, tier.low)
            hi = high if tier.high is None else np.minimum(high, tier.high)
            out += np.where(hi > lo, min(max(tier.rate, 0), RATE_ONE) * (hi - lo), 0)
        return out

    def _pool(self, env: _Env, epoch: int, cov: Arr, slots: dict[str, int], pool: Arr, pool_cap: Arr) -> None:
        shared = next((p for p in self.eng.graph.epochs[epoch].pools if self.index in p.layers), None)
        if shared is not None:
            pool[cov] = slots.setdefault(shared.id, len(slots))
            pool_cap[cov] = env.val(shared.cap, cov, _zeros)


def _previous(segs: _Segs, mask: Arr, values: Arr) -> Arr:
    """For each row, `values` at the last earlier masked row of its segment (0 if none)."""
    n = len(mask)
    last = np.maximum.accumulate(np.where(mask, np.arange(n), -1)) if n else np.zeros(0, dtype=np.int64)
    before = np.concatenate([[-1], last[:-1]]).astype(np.int64) if n else last
    valid = before >= segs.starts[segs.seg]
    return np.where(valid, values[np.maximum(before, 0)], 0)


def _increments(segs: _Segs, exact: Arr) -> Arr:
    """Differences of the half-up rounded person-year cumulative exact payments."""
    hi, lo = np.divmod(exact, RATE_ONE)
    upto_hi, upto_lo = segs.incl_cumsum(hi), segs.incl_cumsum(lo)
    return _round_cumulative(upto_hi, upto_lo) - _round_cumulative(upto_hi - hi, upto_lo - lo)


# ---- caps: "paid so far" limits as a scan over runs of constant caps ---------------------------------------------
def _solve_caps(py: Arr, slot: Arr, inc: Arr, cap: Arr, pool: Arr, pool_cap: Arr, n_slots: int,
                n_pools: int) -> Arr:
    """Payments under per-year caps (per layer slot) and shared caps (per pool), claims in settlement order.

    pay = min(inc, cap - paid(slot), pool_cap - paid(pool)) each floored at 0, so a cap that rises counts
    earlier payments and one that falls pays nothing more. Within a run of rows of one person-year, slot
    and pool with constant caps this has the closed form P = min(P0 + S, max(P0, cap)); runs are chained
    with one vectorised pass per run rank. A negative increment is a run of its own.
    """
    out = np.zeros(len(inc), dtype=np.int64)
    nz = np.flatnonzero(inc != 0)  # a zero increment pays 0 whatever the caps
    if not len(nz):
        return out
    g, s, x, c, p, pc = py[nz], slot[nz], inc[nz], cap[nz], pool[nz], pool_cap[nz]
    neg = x < 0
    brk = np.ones(len(x), dtype=bool)
    brk[1:] = ((g[1:] != g[:-1]) | (s[1:] != s[:-1]) | (c[1:] != c[:-1]) | (p[1:] != p[:-1])
               | (pc[1:] != pc[:-1]) | neg[1:] | neg[:-1])
    starts = np.flatnonzero(brk)
    run = np.cumsum(brk) - 1
    own0, pool0 = _chain_runs(g[starts], s[starts], c[starts], p[starts], pc[starts],
                              np.add.reduceat(x, starts), n_slots, n_pools)
    runs = _Segs(run, starts)
    a, b = own0[run], pool0[run]
    own = np.minimum(a + runs.incl_cumsum(x), np.maximum(a, c))
    own_pay = own - np.where(brk, a, np.concatenate([[0], own[:-1]]))
    shared = np.minimum(b + runs.incl_cumsum(own_pay), np.maximum(b, pc))
    pool_pay = shared - np.where(brk, b, np.concatenate([[0], shared[:-1]]))
    out[nz] = np.where(p >= 0, pool_pay, own_pay)
    return out


def _chain_runs(g: Arr, slot: Arr, cap: Arr, pool: Arr, pool_cap: Arr, total: Arr, n_slots: int,
                n_pools: int) -> tuple[Arr, Arr]:
    """Paid so far (own slot, pool) at the start of each run: one vectorised step per run rank."""
    groups = _segments(g)
    rank = np.arange(len(g)) - groups.starts[groups.seg]
    own = np.zeros((len(groups.starts), n_slots), dtype=np.int64)
    shared = np.zeros((len(groups.starts), max(n_pools, 1)), dtype=np.int64)
    own0, pool0 = np.zeros(len(g), dtype=np.int64), np.zeros(len(g), dtype=np.int64)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
    for k in range(int(rank.max()) + 1):
        idx = by_rank[bounds[k]:bounds[k + 1]]
        gi, si, pi = groups.seg[idx], slot[idx], pool[idx]
        a = own[gi, si]
        o = np.minimum(a + total[idx], np.maximum(a, cap[idx])) - a
        has = pi >= 0
        b = np.where(has, shared[gi, np.maximum(pi, 0)], 0)
        paid = np.where(has, np.minimum(b + o, np.maximum(b, pool_cap[idx])) - b, o)
        own[gi, si] = a + paid
        shared[gi[has], pi[has]] = b[has] + paid[has]
        own0[idx], pool0[idx] = a, b
    return own0, pool0


# ---- the engine -----------------------------------------------------------------------------------------------
class _Engine:
    """Evaluates all layers in settlement order over all person-years at once."""

    def __init__(self, graph: Graph, cols: Columns, options: interp.Options):
        self.graph, self.cols, self.options = graph, cols, options
        self.years = _years(cols, options)
        as_of = None if options.as_of is None else day_number(options.as_of)
        self.claims = _ClaimFrame(cols, self.years, as_of)
        self.person_years = _YearFrame(cols, self.years)
        self.idents = dict(self.claims.idents)
        for name in graph.identities:  # schedule identities absent from the data are never held
            self.idents.setdefault(name, len(self.idents))
        self.names = list(self.idents)
        self.cpreds = _Preds(self.claims, self.idents)
        self.ypreds = _Preds(self.person_years, self.idents)
        self.claims.epoch = self._claim_epochs()
        self.pay = np.zeros((self.claims.n, len(graph.layers)), dtype=np.int64)
        self.present = np.zeros((self.person_years.n, len(graph.epochs)), dtype=bool)
        self.present[self.claims.py, self.claims.epoch] = True
        self.errors = _Errors()
        self.tiers: list[Tiered] = []
        self.unit_columns: list[str] = []
        self.periods = ["claim", "admission", "year"]
        self.accumulators = ["main"]
        self._uses: dict[int, tuple[bool, bool]] = {}

    def _claim_epochs(self) -> Arr:
        index = {id(e): i for i, e in enumerate(self.graph.epochs)}
        if self.options.as_of is not None:
            return np.full(self.claims.n, index[id(self.graph.epoch_at(self.options.as_of))], dtype=np.int64)
        days = _distinct(self.claims.day)
        if not len(days):
            return _zeros(days)
        per_day = np.array([index[id(self.graph.epoch_at(_date(d)))] for d in days], dtype=np.int64)
        return per_day[np.searchsorted(days, self.claims.day)]

    def code(self, table: list[Any], value: Any) -> int:
        if value not in table:
            table.append(value)
        return table.index(value)

    def uses(self, index: int) -> tuple[bool, bool]:
        """Whether coverage or the deductible depend on the admission number / previous deductible."""
        if index not in self._uses:
            rules = [r for e in self.graph.epochs if (v := e.layers[index]) is not None
                     for prog in (v.pricing, v.deductible, v.period, v.accumulator) for r in _rules(prog)]
            self._uses[index] = (any(_has_admission(r.pred) for r in rules),
                                 any(_has_prev(r.value) for r in rules))
        return self._uses[index]

    # -- driving ---------------------------------------------------------------------------------------------
    def run(self) -> VectorResult:
        for rows, steps in self._schedules():
            for phase, block in steps:
                if len(block) == 1:
                    self._layer_step(block[0], rows)
                else:
                    self._block_step(phase, block, rows)
        result = self._outputs()
        self.errors.raise_first(self._describe)
        return result

    def _schedules(self) -> Iterator[tuple[Arr, list[tuple[int, tuple[int, ...]]]]]:
        """Person-years grouped by the epochs their claims fall in, which fix how layers are grouped
        into shared-cap blocks (interp takes a layer's block from the first claim whose epoch pools it)."""
        if not self.claims.n:
            return
        epochs = self.present.shape[1]
        if epochs < 62:  # the set of epochs as a bit mask
            mask = self.present.astype(np.int64) @ (np.int64(1) << np.arange(epochs, dtype=np.int64))
            for bits, rows in _groups(mask[self.claims.py]):
                yield rows, self._steps([e for e in range(epochs) if bits >> e & 1])
            return
        patterns, which = np.unique(self.present, axis=0, return_inverse=True)
        for i, rows in _groups(which.reshape(-1)[self.claims.py]):
            yield rows, self._steps(list(np.flatnonzero(patterns[i])))

    def _steps(self, epochs: list[int]) -> list[tuple[int, tuple[int, ...]]]:
        done: set[int] = set()
        steps = []
        for index in range(len(self.graph.layers)):
            if index in done:
                continue
            block = next((pool.layers for e in epochs for pool in self.graph.epochs[e].pools
                          if index in pool.layers), (index,))
            done.update(block)
            steps.append((index, tuple(block) if len(block) > 1 else (index,)))
        return steps

    def in_scope(self, index: int, rows: Arr) -> Arr:
        keep = np.zeros(len(rows), dtype=bool)
        for epoch, idx in _groups(self.claims.epoch[rows]):
            version = self.graph.epochs[epoch].layers[index]
            if version is not None:
                keep[idx] = self.cpreds.eval(version.scope, rows[idx], _Dyn.null(len(idx)))
        return keep

    def base(self, index: int, rows: Arr, ep: Arr) -> Arr:
        """What the layer is offered: eligible cost less earlier layers' payments, plus extra columns."""
        out = _zeros(rows)
        c, order = self.cols.claims, self.claims.order
        for epoch, idx in _groups(ep):
            version = self.graph.epochs[epoch].layers[index]
            assert version is not None
            r = rows[idx]
            paid = self.pay[r]
            remaining = c.eligible_cost[order[r]] - paid[:, list(version.base_from)].sum(axis=1)
            extra = sum((self.claims.number(col)[r] for col in version.base_plus), _zeros(r))
            left = c.total_cost[order[r]] - paid[:, :index].sum(axis=1)
            out[idx] = np.maximum(0, np.minimum(np.maximum(0, remaining) + extra, left))
        return out

    def _fail(self, rows: Arr, names: list[str], phase: int, candidate: Arr | int, sub: int) -> None:
        c = self.claims
        keys = np.zeros((len(rows), 6), dtype=np.int64)
        keys[:, 0], keys[:, 1] = c.person[rows], self.years[c.py[rows] % max(len(self.years), 1)]
        keys[:, 2], keys[:, 3], keys[:, 4], keys[:, 5] = phase, candidate, c.pos[rows], sub
        self.errors.add(keys, True, rows, names)

    def _describe(self, on_claim: bool, ref: int) -> str:
        if on_claim:
            return str(self.cols.claims.ids()[self.claims.order[ref]])
        return str(self.cols.persons.ids()[self.person_years.person[ref]])

    # -- identities ------------------------------------------------------------------------------------------
    def _held_schedule(self, mapping: Mapping[str, str], name: str, rows: Arr) -> Arr:
        return _any([self.claims.held_for_selection(raw)[rows] for raw, s in mapping.items() if s == name],
                    len(rows))

    def _selection(self, index: int, rows: Arr, fixed: Arr) -> Arr:
        """The schedule each claim is paid under: `fixed` (code) if held, or with -1 the first held in order."""
        sel = np.full(len(rows), -1, dtype=np.int64)
        for epoch, idx in _groups(self.claims.epoch[rows]):
            version = self.graph.epochs[epoch].layers[index]
            if version is None or version.identity is None:
                continue
            mapping, r, f = dict(version.identity.mapping), rows[idx], fixed[idx]
            out = np.full(len(idx), -1, dtype=np.int64)
            for name in reversed(version.identity.order):
                out = np.where((f < 0) & self._held_schedule(mapping, name, r), self.idents[name], out)
            for s in _distinct(f[f >= 0]):
                out = np.where((f == s) & self._held_schedule(mapping, self.names[s], r), s, out)
            sel[idx] = out
        return sel

    def _modes(self, index: int, pys: Arr) -> tuple[Arr, Arr, Arr]:
        """Per person-year: the one candidate of a `best` layer (-1: order precedence), whether several
        candidates compete, and each identity's rank among the candidates (INF: not one)."""
        present = self.present[pys]
        specs = [(e, v) for e, ep in enumerate(self.graph.epochs)
                 if (v := ep.layers[index]) is not None and v.identity is not None]
        first = np.full(len(pys), -1)
        for e, _v in specs:
            first = np.where((first < 0) & present[:, e], e, first)
        best = _any([(first == e) & (v.identity is not None and v.identity.precedence == "best")
                     for e, v in specs], len(pys))
        rank = np.full((len(pys), len(self.names)), INF, dtype=np.int64)
        for e, v in specs:
            assert v.identity is not None
            mapping = dict(v.identity.mapping)
            for pos, name in enumerate(v.identity.order):
                held = _any([self.person_years.holds(raw)[pys] for raw, s in mapping.items() if s == name],
                            len(pys))
                s = self.idents[name]
                new = best & present[:, e] & held & (rank[:, s] == INF)
                rank[new, s] = e * _RANK_EPOCH + pos  # candidates in first-seen order
        n_cand = (rank < INF).sum(axis=1)
        fixed = np.where(best & (n_cand == 1), np.argmin(rank, axis=1), -1)
        return fixed, best & (n_cand >= 2), rank

    # -- steps -----------------------------------------------------------------------------------------------
    def _layer_step(self, index: int, rows: Arr) -> None:
        segs = _segments(self.claims.py[rows])
        pys = self.claims.py[rows][segs.starts]
        fixed, best, rank = self._modes(index, pys)
        self.pay[rows, index] = 0
        main = ~best[segs.seg]
        if main.any():
            mrows = rows[main]
            out = _LayerRun.over(self, index, mrows, self._selection(index, mrows, fixed[segs.seg[main]])).settle()
            self.pay[out.rows, index] = _solve_caps(out.py, np.zeros_like(out.py), out.inc, out.cap, out.pool,
                                                    out.pool_cap, 1, 0)
            self._fail(out.failed, out.failed_names, index, 0, 0)
        if best.any():
            self._best(index, rows[~main], pys, best, rank)

    def _best(self, index: int, rows: Arr, pys: Arr, best: Arr, rank: Arr) -> None:
        """就高不重复: run the layer once per candidate schedule; keep each person-year's largest total."""
        position = np.argsort(np.argsort(rank, axis=1, kind="stable"), axis=1)
        local = np.searchsorted(pys, self.claims.py[rows])
        top, top_rank = np.full(len(pys), -INF, dtype=np.int64), np.full(len(pys), INF, dtype=np.int64)
        choice = np.full(len(pys), -1, dtype=np.int64)
        runs = []
        for s in np.flatnonzero((rank[best] < INF).any(axis=0)):
            r = rows[rank[local, s] < INF]
            out = _LayerRun.over(self, index, r, self._selection(index, r, np.full(len(r), s))).settle()
            pays = _solve_caps(out.py, np.zeros_like(out.py), out.inc, out.cap, out.pool, out.pool_cap, 1, 0)
            total = _zeros(pys)
            np.add.at(total, np.searchsorted(pys, out.py), pays)
            fail_local = np.searchsorted(pys, self.claims.py[out.failed])
            self._fail(out.failed, out.failed_names, index, position[fail_local, s], 0)
            better = best & (rank[:, s] < INF) & ((total > top) | ((total == top) & (rank[:, s] < top_rank)))
            top, top_rank, choice = (np.where(better, total, top), np.where(better, rank[:, s], top_rank),
                                     np.where(better, s, choice))
            runs.append((s, out.rows, np.searchsorted(pys, out.py), pays))
        for s, r, loc, pays in runs:
            keep = choice[loc] == s
            self.pay[r[keep], index] = pays[keep]

    def _block_step(self, phase: int, block: tuple[int, ...], rows: Arr) -> None:
        """Layers sharing a cap, claim by claim. Their scopes are disjoint, so a later layer's base does not
        see an earlier one's (pool-limited) payment; if it does, repeat until the payments settle."""
        sels = {i: self._selection(i, rows, np.full(len(rows), -1)) for i in block}
        for i in block:
            self.pay[rows, i] = 0
        slots: dict[str, int] = {}
        for attempt in count():
            outs = []
            for i in block:
                out = _LayerRun.over(self, i, rows, sels[i]).settle(slots)
                if attempt == 0:  # a first guess for the later layers' bases: the own-capped payments
                    self.pay[out.rows, i] = _solve_caps(out.py, np.zeros_like(out.py), out.inc, out.cap,
                                                        np.full_like(out.py, -1), out.pool_cap, 1, 0)
                outs.append(out)
            final = _joint(outs, len(slots))
            unsettled = self._unsettled(block, outs, final)
            for i, out, pays in zip(block, outs, final, strict=True):
                self.pay[out.scope_rows, i] = 0
                self.pay[out.rows, i] = pays
            if not unsettled:
                break
        for pos, out in enumerate(outs):
            self._fail(out.failed, out.failed_names, phase, 0, pos)

    def _unsettled(self, block: tuple[int, ...], outs: list[_LayerOut], final: list[Arr]) -> bool:
        for k, (i, out, pays) in enumerate(zip(block, outs, final, strict=True)):
            now = self.pay[:, i].copy()
            now[out.scope_rows] = 0
            now[out.rows] = pays
            changed = np.flatnonzero(now != self.pay[:, i])
            if any(np.isin(changed, later.scope_rows).any() for later in outs[k + 1:]):
                return True
        return False

    # -- person-years ------------------------------------------------------------------------------------------
    def _outputs(self) -> VectorResult:
        c, k, order = self.claims, self.person_years.n, self.claims.order
        py_pay = np.zeros((k, len(self.graph.layers)), dtype=np.int64)
        total, eligible = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
        if c.n:
            starts, pys = c.segs.starts, c.py[c.segs.starts]
            py_pay[pys] = np.add.reduceat(self.pay, starts, axis=0)
            total[pys] = np.add.reduceat(self.cols.claims.total_cost[order], starts)
            eligible[pys] = np.add.reduceat(self.cols.claims.eligible_cost[order], starts)
        alert_ids, alerts = self._alerts()
        subsidy_ids, subsidies, given = self._subsidies()
        payments = np.zeros_like(self.pay)
        payments[order] = self.pay
        return VectorResult(
            tuple(layer.id for layer in self.graph.layers), payments,
            self.cols.claims.total_cost - payments.sum(axis=1), self.person_years.person, self.person_years.year,
            py_pay, total - py_pay.sum(axis=1), total, eligible, alert_ids, alerts, subsidy_ids, subsidies, given)

    def _year_epochs(self) -> Iterator[tuple[int, Epoch, Arr]]:
        """(year index, epoch on Dec 31 or --as-of, person-year rows of that year)."""
        n_years = len(self.years)
        for yi, year in enumerate(self.years):
            day = self.options.as_of or datetime.date(int(year), 12, 31)
            yield yi, self.graph.epoch_at(day), np.arange(self.cols.persons.n) * n_years + yi

    def _year_env(self, rows: Arr, sink: _Sink, epoch: Epoch) -> _Env:
        dyn = _Dyn.null(len(rows))
        return _Env(lambda p: self.ypreds.eval(p, rows, dyn), None, None, dict(epoch.params),
                    self.options.settings, sink)

    def _fail_years(self, rows: Arr, sink: _Sink, phase: int, candidate: int, sub: int) -> None:
        where, names = sink.failed()
        keys = np.zeros((len(where), 6), dtype=np.int64)
        keys[:, 0], keys[:, 1] = self.person_years.person[rows[where]], self.person_years.year[rows[where]]
        keys[:, 2], keys[:, 3], keys[:, 5] = phase, candidate, sub
        self.errors.add(keys, False, rows[where], names)

    def _burden(self, layers: tuple[int, ...], where: Pred) -> Arr:
        c = self.claims
        counted = self.cpreds.eval(where, np.arange(c.n), _Dyn.null(c.n))
        own = self.cols.claims.total_cost[c.order] - self.pay[:, list(layers)].sum(axis=1)
        out = np.zeros(self.person_years.n, dtype=np.int64)
        np.add.at(out, c.py, np.where(counted, own, 0))
        return out

    def _alerts(self) -> tuple[tuple[str, ...], Arr]:
        ids = tuple(dict.fromkeys(a.id for _yi, e, _r in self._year_epochs() for a in e.alerts))
        fired = np.zeros((self.person_years.n, len(ids)), dtype=bool)
        for _yi, epoch, rows in self._year_epochs():
            for ai, alert in enumerate(epoch.alerts):
                which = np.full(len(rows), -1)
                for ti in reversed(range(len(alert.thresholds))):
                    which = np.where(self.ypreds.eval(alert.thresholds[ti].pred, rows, _Dyn.null(len(rows))),
                                     ti, which)
                burden = self._burden(alert.layers, alert.where)[rows]
                sink = _Sink(len(rows))
                env = self._year_env(rows, sink, epoch)
                amount = _zeros(rows)
                for ti, threshold in enumerate(alert.thresholds):
                    pos = np.flatnonzero(which == ti)
                    amount[pos] = env.val(threshold.amount, pos, _zeros)
                fired[rows, ids.index(alert.id)] = (which >= 0) & (burden >= amount)
                self._fail_years(rows, sink, len(self.graph.layers), ai, 0)
        return ids, fired

    def _subsidies(self) -> tuple[tuple[str, ...], Arr, Arr]:
        ids = tuple(dict.fromkeys(s.id for _yi, e, _r in self._year_epochs() for s in e.subsidies))
        amounts = np.zeros((self.person_years.n, len(ids)), dtype=np.int64)
        given = np.zeros((self.person_years.n, len(ids)), dtype=bool)
        for _yi, epoch, rows in self._year_epochs():
            for si, sub in enumerate(epoch.subsidies):
                sink = _Sink(len(rows))
                env = self._year_env(rows, sink, epoch)
                scope = self.ypreds.eval(sub.scope, rows, _Dyn.null(len(rows)))
                top, held_any = np.full(len(rows), -INF, dtype=np.int64), np.zeros(len(rows), dtype=bool)
                for share in sub.shares:
                    held = scope & _any([self.person_years.holds(i)[rows] for i in sorted(share.identities)],
                                        len(rows))
                    pos = np.flatnonzero(held)
                    top[pos] = np.maximum(top[pos], env.val(share.rate, pos, _zeros))
                    held_any |= held
                pos = np.flatnonzero(held_any)
                amount = env.val(sub.amount, pos, _zeros)
                col = ids.index(sub.id)
                amounts[rows[pos], col] = _mul_round(amount, np.clip(top[pos], 0, RATE_ONE))
                given[rows[pos], col] = True
                self._fail_years(rows, sink, len(self.graph.layers) + 1, si, 0)
        return ids, amounts, given


def _joint(outs: list[_LayerOut], n_pools: int) -> list[Arr]:
    """Caps of a shared-cap block: the layers' increments merged claim by claim, capped, split back."""
    rows = np.concatenate([o.rows for o in outs])
    slot = np.concatenate([np.full(len(o.rows), k) for k, o in enumerate(outs)])
    order = np.lexsort((slot, rows))

    def merged(name: str) -> Arr:
        return np.concatenate([getattr(o, name) for o in outs])[order]

    pays = np.empty(len(rows), dtype=np.int64)
    pays[order] = _solve_caps(merged("py"), slot[order], merged("inc"), merged("cap"), merged("pool"),
                              merged("pool_cap"), len(outs), n_pools)
    return np.split(pays, np.cumsum([len(o.rows) for o in outs])[:-1])


def _years(cols: Columns, options: interp.Options) -> Arr:
    years = np.unique(_year_of(cols.claims.day.astype(np.int64)))
    if not len(years) and options.as_of is not None:
        years = np.array([options.as_of.year], dtype=np.int64)
    return years.astype(np.int64)


def _date(day: int) -> datetime.date:
    return datetime.date(1970, 1, 1) + datetime.timedelta(days=int(day))


def _rules(prog: Program[Any]) -> Iterator[Rule[Any]]:
    for rule in prog.rules:
        yield rule
        if rule.below is not None:
            yield from _rules(rule.below)


def _has_admission(pred: Pred) -> bool:
    match pred:
        case PAdmission():
            return True
        case PAnd(items) | POr(items):
            return any(_has_admission(p) for p in items)
        case PNot(item):
            return _has_admission(item)
    return False


def _has_prev(value: object) -> bool:
    match value:
        case Prev():
            return True
        case Op(_op, left, right):
            return _has_prev(left) or _has_prev(right)
        case Flat(rate) | BonusSpec(rate, _):
            return _has_prev(rate)
        case Unit(amount, _):
            return _has_prev(amount)
    return False


# ---- records ----------------------------------------------------------------------------------------------------
def _result(graph: Graph, data: Dataset, vr: VectorResult, options: interp.Options) -> interp.Result:
    """interp's Result: every person × year (persons in input order, years ascending), absent rows as zeros."""
    claims = tuple(
        interp.ClaimResult(c.claim_id, c.person_id, c.date, tuple(int(x) for x in vr.payments[i]),
                           int(vr.out_of_pocket[i]))
        for i, c in enumerate(data.claims))
    row = {(int(p), int(y)): j for j, (p, y) in enumerate(zip(vr.py_person, vr.py_year, strict=True))}
    zeros, years = (0,) * len(vr.layers), interp._years(data, options)
    persons = []
    for i, person in enumerate(data.persons):
        for year in years:
            j = row.get((i, year))
            if j is None:
                persons.append(interp.PersonYear(person.person_id, year, zeros, 0, 0, 0, (), ()))
                continue
            epoch = graph.epoch_at(options.as_of or datetime.date(year, 12, 31))
            alerts = tuple(a.id for a in epoch.alerts if vr.alerts[j, vr.alert_ids.index(a.id)])
            subsidies = tuple((s.id, int(vr.subsidies[j, vr.subsidy_ids.index(s.id)])) for s in epoch.subsidies
                              if vr.subsidy_given[j, vr.subsidy_ids.index(s.id)])
            persons.append(interp.PersonYear(
                person.person_id, year, tuple(int(x) for x in vr.py_payments[j]), int(vr.py_out_of_pocket[j]),
                int(vr.py_total_cost[j]), int(vr.py_eligible_cost[j]), alerts, subsidies))
    return interp.Result(vr.layers, claims, tuple(persons))
