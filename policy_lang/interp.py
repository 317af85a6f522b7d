"""Reference evaluator: Graph + persons and claims -> payments per claim and person-year (exact, readable).

This module is the executable statement of DESIGN.md §3. Each person's claims are taken per calendar
year in (date, claim_id) order; each layer is evaluated over the year in settlement order, on what the
layers before it left of each claim. Payments are exact fractions of a fen until the person-year
cumulative payment of a layer is rounded half-up; a claim's payment is the difference of the rounded
cumulatives before and after it, then limited by the caps.
"""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import attrs

from policy_lang.data import Claim, Dataset, Person
from policy_lang.graph import (
    COMPARISONS,
    RATE_ONE,
    Below,
    BonusSpec,
    Cite,
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


class EvalError(Exception):
    """An evaluation that cannot proceed (an unspecified parameter); the message names what is missing."""


@attrs.frozen
class Options:
    as_of: datetime.date | None = None  # pay every claim under the rules in force on this date
    settings: Mapping[str, int] = attrs.field(factory=dict)  # values for unspecified parameters


@attrs.frozen
class ClaimResult:
    claim_id: str
    person_id: str
    date: datetime.date
    payments: tuple[int, ...]  # fen, one per layer of the graph
    out_of_pocket: int


@attrs.frozen
class PersonYear:
    person_id: str
    year: int
    payments: tuple[int, ...]
    out_of_pocket: int
    total_cost: int
    eligible_cost: int
    alerts: tuple[str, ...]
    subsidies: tuple[tuple[str, int], ...]


@attrs.frozen
class Segment:
    low: int
    high: int
    rate: int
    amount: Fraction


@attrs.frozen
class LayerTrace:
    """Why a layer paid what it paid on one claim (for `polc explain`)."""

    layer: str
    status: str  # paid | not in force | out of scope | not covered
    identity: str | None = None
    alternatives: tuple[tuple[str | None, int], ...] = ()  # best: each candidate's person-year total
    base: int = 0
    deductible: int = 0
    deductible_rule: tuple[str, tuple[Cite, ...]] | None = None
    period: str = "claim"
    payable: int = 0
    pricing: str = ""
    pricing_rule: tuple[str, tuple[Cite, ...]] | None = None
    segments: tuple[Segment, ...] = ()
    bonus: Fraction = Fraction(0)
    exact: Fraction = Fraction(0)
    rounded: int = 0
    cap_year: int | None = None
    cap_left: int | None = None
    cap_rule: tuple[str, tuple[Cite, ...]] | None = None
    pool: tuple[str, int] | None = None
    payment: int = 0
    scope_cites: tuple[Cite, ...] = ()
    base_cites: tuple[Cite, ...] = ()


@attrs.frozen
class Result:
    layers: tuple[str, ...]
    claims: tuple[ClaimResult, ...]
    persons: tuple[PersonYear, ...]
    traces: Mapping[str, tuple[LayerTrace, ...]] = attrs.field(factory=dict)  # claim_id -> per layer


def run(graph: Graph, data: Dataset, options: Options = Options(), trace_person: str | None = None) -> Result:
    """Evaluate every claim of `data` under `graph`; trace the layers of `trace_person`'s claims."""
    by_person: dict[str, list[Claim]] = defaultdict(list)
    for claim in data.claims:
        by_person[claim.person_id].append(claim)
    results: dict[str, ClaimResult] = {}
    traces: dict[str, tuple[LayerTrace, ...]] = {}
    persons: list[PersonYear] = []
    years = _years(data, options)
    for person in data.persons:
        claims = by_person.get(person.person_id, [])
        for year in years:
            in_year = sorted((c for c in claims if c.date.year == year), key=lambda c: (c.date, c.claim_id))
            py = _PersonYear(graph, person, year, in_year, options, trace_person == person.person_id)
            py.evaluate()
            for claim, payments in zip(in_year, py.payments_by_claim(), strict=True):
                results[claim.claim_id] = ClaimResult(claim.claim_id, claim.person_id, claim.date, payments,
                                                      claim.total_cost - sum(payments))
            traces.update(py.traces_by_claim())
            persons.append(py.summary())
    ordered = tuple(results[c.claim_id] for c in data.claims)
    return Result(tuple(layer.id for layer in graph.layers), ordered, tuple(persons), traces)


def _years(data: Dataset, options: Options) -> list[int]:
    years = sorted({c.date.year for c in data.claims})
    if not years and options.as_of is not None:
        years = [options.as_of.year]
    return years


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


# ---- predicates and values ---------------------------------------------------------------------------------
@attrs.define
class _Ctx:
    """What predicates and values see: the claim (None for person-level), its person and date."""

    person: Person
    claim: Claim | None
    day: datetime.date
    selected: str | None = None
    admission: int = 0
    previous_deductible: int = 0


def field_value(ctx: _Ctx, field: str) -> Any:
    if field == "level":
        field = "hospital_level"
    if ctx.claim is not None and hasattr(ctx.claim, field):
        return getattr(ctx.claim, field)
    if hasattr(ctx.person, field):
        value = getattr(ctx.person, field)
        return "" if value is None and field == "sex" else value
    if ctx.claim is not None and field in ctx.claim.extra:
        return ctx.claim.extra[field]
    return ctx.person.extra.get(field)


def holds(person: Person, identity: str, day: datetime.date) -> bool:
    return any(g.identity == identity and (g.since is None or g.since <= day) for g in person.identities)


def test_pred(pred: Pred, ctx: _Ctx) -> bool:
    match pred:
        case PTrue():
            return True
        case PAnd(items):
            return all(test_pred(p, ctx) for p in items)
        case POr(items):
            return any(test_pred(p, ctx) for p in items)
        case PNot(item):
            return not test_pred(item, ctx)
        case PCompare(field, op, value):
            actual = field_value(ctx, field)
            return actual is not None and bool(COMPARISONS[op](actual, value))
        case PIn(field, values):
            return field_value(ctx, field) in values
        case PHas(field, values, all_):
            have = _set_field(ctx, field)
            return values <= have if all_ else bool(values & have)
        case PNonEmpty(field):
            return bool(_set_field(ctx, field))
        case PHolds(identities):
            return any(holds(ctx.person, i, ctx.day) for i in identities)
        case PSelected(identities):
            return ctx.selected in identities
        case PAdmission(op, value):
            return ctx.admission > 0 and bool(COMPARISONS[op](ctx.admission, value))
    raise AssertionError(pred)  # pragma: no cover


def _set_field(ctx: _Ctx, field: str) -> frozenset[str]:
    diseases = ctx.claim.diseases if ctx.claim is not None else frozenset()
    if field == "diseases":
        return diseases
    if field == "chronic":
        return ctx.person.chronic
    return diseases & ctx.person.chronic  # certified


class _Values:
    """Evaluates values and programs for one claim (Below refers to a rule's `below` program)."""

    def __init__(self, ctx: _Ctx, params: Mapping[str, int | None], settings: Mapping[str, int], cites: Callable[
            [str], str]):
        self.ctx, self.params, self.settings, self.cites = ctx, params, settings, cites

    def program(self, prog: Program[Any], default: Any) -> tuple[Any, Rule[Any] | None]:
        for rule in reversed(prog.rules):
            if test_pred(rule.pred, self.ctx):
                return self.resolve(rule.value, rule.below), rule
        return default, None

    def resolve(self, value: Any, below: Program[Any] | None) -> Any:
        if isinstance(value, Flat):
            return Flat(Lit(self.val(value.rate, below, lambda: self._below_rate(below))))
        if isinstance(value, Unit):
            return Unit(Lit(self.val(value.amount, below, lambda: 0)), value.column)
        if isinstance(value, BonusSpec):
            return BonusSpec(Lit(self.val(value.rate, below, lambda: 0)), value.column)
        if isinstance(value, (Lit, Lvl, Below, Prev, Param, Op)):
            return self.val(value, below, lambda: self._below_val(below))
        return value

    def _below_val(self, below: Program[Any] | None) -> int:
        value, _ = self.program(below, None) if below is not None else (None, None)
        return 0 if value is None else int(value)

    def _below_rate(self, below: Program[Any] | None) -> int:
        value, _ = self.program(below, None) if below is not None else (None, None)
        assert isinstance(value, Flat) and isinstance(value.rate, Lit)
        return value.rate.value

    def val(self, value: Val, below: Program[Any] | None, below_value: Callable[[], int]) -> int:
        match value:
            case Lit(v):
                return v
            case Lvl(vs):
                assert self.ctx.claim is not None
                return vs[self.ctx.claim.hospital_level - 1]
            case Below():
                return below_value()
            case Prev():
                return self.ctx.previous_deductible
            case Param(name):
                return self._param(name)
            case Op(op, left, right):
                a = self.val(left, below, below_value)
                b = self.val(right, below, below_value)
                return _apply(op, a, b)
        raise AssertionError(value)  # pragma: no cover

    def _param(self, name: str) -> int:
        if name in self.settings:
            return self.settings[name]
        value = self.params.get(name)
        if value is None:
            claim = self.ctx.claim.claim_id if self.ctx.claim else self.ctx.person.person_id
            raise EvalError(f"claim {claim} needs the parameter `{name}`, which the policy leaves unspecified "
                            f"({self.cites(name)}); supply it with --set {name}=VALUE")
        return value


def _apply(op: str, a: int, b: int) -> int:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return round_half_up(Fraction(a * b, RATE_ONE))
    return max(a, b) if op == "max" else min(a, b)


# ---- one layer over a person-year ------------------------------------------------------------------------------
@attrs.define
class _LayerState:
    base_acc: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))  # A: base accumulated
    payable_acc: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))  # X: above the deductible
    exact: Fraction = Fraction(0)  # U: exact cumulative payment
    rounded: int = 0  # R: rounded cumulative payment, before caps
    paid: int = 0  # P: paid so far this year
    admissions: int = 0
    previous_deductible: int = 0


class _PersonYear:
    def __init__(self, graph: Graph, person: Person, year: int, claims: Sequence[Claim], options: Options,
                 tracing: bool):
        self.graph, self.person, self.year, self.claims = graph, person, year, list(claims)
        self.options, self.tracing = options, tracing
        n_layers = len(graph.layers)
        self.pay = [[0] * n_layers for _ in self.claims]
        self.epochs = [graph.epoch_at(options.as_of or c.date) for c in self.claims]
        self.year_epoch = graph.epoch_at(options.as_of or datetime.date(year, 12, 31))
        self.trace: list[list[LayerTrace | None]] = [[None] * n_layers for _ in self.claims]

    # -- driving ------------------------------------------------------------------------------------------
    def evaluate(self) -> None:
        done: set[int] = set()
        for index in range(len(self.graph.layers)):
            if index in done:
                continue
            block = self._pool_block(index)
            done.update(block)
            if len(block) > 1:
                self._run_block(block)
            else:
                self._run_layer(index)

    def _pool_block(self, index: int) -> list[int]:
        for epoch in self.epochs:
            for pool in epoch.pools:
                if index in pool.layers:
                    return list(pool.layers)
        return [index]

    def _run_layer(self, index: int) -> None:
        versions = [e.layers[index] for e in self.epochs]
        spec = next((v.identity for v in versions if v is not None and v.identity is not None), None)
        candidates = self._candidates(index) if spec is not None and spec.precedence == "best" else []
        if len(candidates) <= 1:
            fixed = candidates[0] if candidates else None
            pays, traces = self._simulate(index, fixed, precedence_best=bool(candidates))
            self._commit(index, pays, traces, ())
            return
        totals = []
        runs = []
        for cand in candidates:
            pays, traces = self._simulate(index, cand, precedence_best=True)
            totals.append((cand, sum(pays)))
            runs.append((pays, traces))
        best = max(range(len(candidates)), key=lambda i: (totals[i][1], -i))
        self._commit(index, runs[best][0], runs[best][1], tuple(totals))

    def _commit(self, index: int, pays: list[int], traces: list[LayerTrace], alternatives: tuple[Any, ...]) -> None:
        for i, p in enumerate(pays):
            self.pay[i][index] = p
            if self.tracing:
                self.trace[i][index] = attrs.evolve(traces[i], alternatives=alternatives)

    def _run_block(self, block: list[int]) -> None:
        states = {i: _LayerState() for i in block}
        pool_paid: dict[str, int] = defaultdict(int)
        for ci, claim in enumerate(self.claims):
            for index in block:
                pay, tr = self._step(index, ci, claim, states[index], None, False, pool_paid)
                self.pay[ci][index] = pay
                if self.tracing:
                    self.trace[ci][index] = tr

    def _candidates(self, index: int) -> list[str]:
        """Schedule identities the person holds at some time in the year, in declared order."""
        end = datetime.date(self.year, 12, 31)
        found: list[str] = []
        for epoch in self.epochs:
            version = epoch.layers[index]
            if version is None or version.identity is None:
                continue
            mapping = dict(version.identity.mapping)
            held = {mapping[g.identity] for g in self.person.identities
                    if g.identity in mapping and (g.since is None or g.since <= end)}
            found.extend(i for i in version.identity.order if i in held and i not in found)
        return found

    def _simulate(self, index: int, fixed: str | None, precedence_best: bool) -> tuple[list[int], list[LayerTrace]]:
        state = _LayerState()
        pays, traces = [], []
        for ci, claim in enumerate(self.claims):
            pay, tr = self._step(index, ci, claim, state, fixed, precedence_best, None)
            pays.append(pay)
            traces.append(tr)
        return pays, traces

    # -- one claim in one layer -------------------------------------------------------------------------------
    def _selected(self, version: LayerVersion, day: datetime.date, fixed: str | None, best: bool) -> str | None:
        spec = version.identity
        if spec is None:
            return None
        mapping = dict(spec.mapping)
        held = {mapping[g.identity] for g in self.person.identities
                if g.identity in mapping and (g.since is None or g.since <= day)}
        if best:
            return fixed if fixed in held else None
        return next((i for i in spec.order if i in held), None)

    def _step(self, index: int, ci: int, claim: Claim, st: _LayerState, fixed: str | None, best: bool,
              pool_paid: dict[str, int] | None) -> tuple[int, LayerTrace]:
        layer_id = self.graph.layers[index].id
        epoch = self.epochs[ci]
        version = epoch.layers[index]
        if version is None:
            return 0, LayerTrace(layer_id, "not in force")
        ctx = _Ctx(self.person, claim, claim.date)
        if not test_pred(version.scope, ctx):
            return 0, LayerTrace(layer_id, "out of scope", scope_cites=version.scope_cites)
        # --as-of picks the rules; which identities the person holds is judged on the claim's own date
        ctx.selected = self._selected(version, claim.date, fixed, best)
        is_inpatient = claim.kind == "inpatient"
        ctx.admission = st.admissions + 1 if is_inpatient else 0
        ctx.previous_deductible = st.previous_deductible
        values = _Values(ctx, dict(epoch.params), self.options.settings, self._param_cite)
        pricing, pricing_rule = values.program(version.pricing, None)
        if pricing is None:
            return 0, LayerTrace(layer_id, "not covered", identity=ctx.selected, scope_cites=version.scope_cites)
        if is_inpatient:
            st.admissions += 1
        base = self._base(ci, index, version, claim)
        ded, ded_rule = values.program(version.deductible, None)
        period, _ = values.program(version.period, "claim")
        key, _ = values.program(version.accumulator, "main")
        acc_before = st.base_acc[key]
        nominal = max(0, ded or 0)
        part = min(base, nominal) if period != "year" else min(base, max(0, nominal - acc_before))
        if is_inpatient:
            st.previous_deductible = part
        payable = base - part
        x_before = st.payable_acc[key]
        exact, segments, bonus, desc = self._price(pricing, values, version, claim, payable, base, part,
                                                   acc_before, x_before)
        cap_claim, _ = values.program(version.cap_claim, None)
        if cap_claim is not None:
            exact = min(exact, Fraction(max(0, cap_claim)))
        st.base_acc[key] += base
        st.payable_acc[key] += payable
        st.exact += exact
        rounded = round_half_up(st.exact)
        increment = rounded - st.rounded
        st.rounded = rounded
        cap_year, cap_rule = values.program(version.cap_year, None)
        left = None if cap_year is None else max(0, cap_year - st.paid)
        pay = increment if left is None else min(increment, left)
        pool_info = None
        if pool_paid is not None:
            pay, pool_info = self._pool_limit(epoch, index, pay, pool_paid, values)
        st.paid += pay
        trace = LayerTrace(
            layer_id, "paid", ctx.selected, (), base, part, _rule_ref(ded_rule), period, payable, desc,
            _rule_ref(pricing_rule), segments, bonus, exact, increment, cap_year, left, _rule_ref(cap_rule),
            pool_info, pay, version.scope_cites, version.base_cites)
        return pay, trace

    def _pool_limit(self, epoch: Epoch, index: int, pay: int, pool_paid: dict[str, int],
                    values: _Values) -> tuple[int, tuple[str, int] | None]:
        for pool in epoch.pools:
            if index in pool.layers:
                cap = values.val(pool.cap, None, lambda: 0)
                left = max(0, cap - pool_paid[pool.id])
                pay = min(pay, left)
                pool_paid[pool.id] += pay
                return pay, (pool.id, left)
        return pay, None

    def _base(self, ci: int, index: int, version: LayerVersion, claim: Claim) -> int:
        paid = self.pay[ci]
        remaining = claim.eligible_cost - sum(paid[j] for j in version.base_from)
        extra = sum(int(field_value(_Ctx(self.person, claim, claim.date), col) or 0) for col in version.base_plus)
        left_of_total = claim.total_cost - sum(paid[:index])
        return max(0, min(max(0, remaining) + extra, left_of_total))

    def _price(self, pricing: Any, values: _Values, version: LayerVersion, claim: Claim, payable: int, base: int,
               part: int, acc_before: int, x_before: int) -> tuple[Fraction, tuple[Segment, ...], Fraction, str]:
        if isinstance(pricing, Unit):
            units = int(field_value(values.ctx, pricing.column) or 0)
            amount = pricing.amount.value if isinstance(pricing.amount, Lit) else 0
            exact = Fraction(min(payable, units * amount))
            return exact, (), Fraction(0), f"{amount / 100:.2f} per {pricing.column} × {units}"
        if isinstance(pricing, Flat):
            rate = _clamp_rate(pricing.rate.value if isinstance(pricing.rate, Lit) else 0)
            exact = Fraction(rate * payable, RATE_ONE)
            bonus = self._bonus(values, version, claim, rate, payable)
            return exact + bonus, (), bonus, f"{Fraction(rate, 10_000)}%"
        assert isinstance(pricing, Tiered)
        low, high = (x_before, x_before + payable) if pricing.axis == "payable" else (acc_before + part,
                                                                                      acc_before + base)
        segments = []
        exact = Fraction(0)
        for tier in pricing.tiers:
            seg_low = max(low, tier.low)
            seg_high = high if tier.high is None else min(high, tier.high)
            if seg_high > seg_low:
                share = Fraction(_clamp_rate(tier.rate) * (seg_high - seg_low), RATE_ONE)
                segments.append(Segment(seg_low, seg_high, tier.rate, share))
                exact += share
        return exact, tuple(segments), Fraction(0), f"tiers on {pricing.axis}"

    def _bonus(self, values: _Values, version: LayerVersion, claim: Claim, rate: int, payable: int) -> Fraction:
        bonus, _ = values.program(version.bonus, None)
        if not isinstance(bonus, BonusSpec) or not isinstance(bonus.rate, Lit):
            return Fraction(0)
        part = min(payable, int(field_value(values.ctx, bonus.column) or 0))
        extra = min(_clamp_rate(bonus.rate.value), RATE_ONE - rate)
        return Fraction(max(0, extra) * part, RATE_ONE)

    def _param_cite(self, name: str) -> str:
        return f"parameter `{name}`"

    # -- results ------------------------------------------------------------------------------------------------
    def payments_by_claim(self) -> list[tuple[int, ...]]:
        return [tuple(p) for p in self.pay]

    def traces_by_claim(self) -> dict[str, tuple[LayerTrace, ...]]:
        if not self.tracing:
            return {}
        out = {}
        for claim, row in zip(self.claims, self.trace, strict=True):
            out[claim.claim_id] = tuple(t or LayerTrace(self.graph.layers[i].id, "not in force")
                                        for i, t in enumerate(row))
        return out

    def summary(self) -> PersonYear:
        n = len(self.graph.layers)
        totals = tuple(sum(p[i] for p in self.pay) for i in range(n))
        total_cost = sum(c.total_cost for c in self.claims)
        oop = total_cost - sum(totals)
        return PersonYear(self.person.person_id, self.year, totals, oop, total_cost,
                          sum(c.eligible_cost for c in self.claims), self._alerts(), self._subsidies())

    def _year_ctx(self) -> _Ctx:
        return _Ctx(self.person, None, datetime.date(self.year, 12, 31))

    def _alerts(self) -> tuple[str, ...]:
        fired = []
        ctx = self._year_ctx()
        values = _Values(ctx, dict(self.year_epoch.params), self.options.settings, self._param_cite)
        for alert in self.year_epoch.alerts:
            threshold = next((t for t in alert.thresholds if test_pred(t.pred, ctx)), None)
            if threshold is None:
                continue
            burden = sum(c.total_cost - sum(self.pay[i][j] for j in alert.layers)
                         for i, c in enumerate(self.claims) if test_pred(alert.where, _Ctx(self.person, c, c.date)))
            if burden >= values.val(threshold.amount, None, lambda: 0):
                fired.append(alert.id)
        return tuple(fired)

    def _subsidies(self) -> tuple[tuple[str, int], ...]:
        out = []
        ctx = self._year_ctx()
        values = _Values(ctx, dict(self.year_epoch.params), self.options.settings, self._param_cite)
        for sub in self.year_epoch.subsidies:
            if not test_pred(sub.scope, ctx):
                continue
            shares = [values.val(s.rate, None, lambda: 0) for s in sub.shares
                      if any(holds(self.person, i, ctx.day) for i in s.identities)]
            if shares:
                amount = values.val(sub.amount, None, lambda: 0)
                out.append((sub.id, round_half_up(Fraction(amount * _clamp_rate(max(shares)), RATE_ONE))))
        return tuple(out)


def _clamp_rate(rate: int) -> int:
    return max(0, min(RATE_ONE, rate))


def _rule_ref(rule: Rule[Any] | None) -> tuple[str, tuple[Cite, ...]] | None:
    return None if rule is None else (rule.name, rule.cites)


def total_by_layer(results: Iterable[ClaimResult], n: int) -> list[int]:
    out = [0] * n
    for r in results:
        for i, p in enumerate(r.payments):
            out[i] += p
    return out
