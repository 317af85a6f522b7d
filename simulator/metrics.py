"""Metrics: exact integer aggregates of one evaluated chunk, merged across chunks in a fixed order."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import attrs
import numpy as np
import numpy.typing as npt

from policy_lang.columns import KINDS, SCHEMES, Columns, day_number
from policy_lang.graph import Graph, PAnd, PCompare, PIn, Pred, TargetNode
from policy_lang.vector import VectorResult

Arr = npt.NDArray[np.int64]

# A person's group is the first identity they hold in this order (就高: the most protected status).
GROUP_ORDER: tuple[str, ...] = (
    "tekun", "orphan", "dibao", "relapse_poor", "near_dibao", "monitored_assisted", "monitored_other",
    "illness_poor", "other_special", "registered_poor", "ex_poor",
)
NO_GROUP = "none"
CATASTROPHIC_FEN: tuple[int, ...] = (500_000, 2_000_000, 5_000_000)  # 5000 / 20000 / 50000 yuan a year
# Person-year rows are sparse (an absent one is all zeros), so a threshold must be above 0 to count right.
assert min(CATASTROPHIC_FEN) > 0
INPATIENT = KINDS.index("inpatient")


@attrs.define
class GroupStats:
    persons: int = 0
    claimants: int = 0
    total_cost: int = 0
    eligible_cost: int = 0
    payments: dict[str, int] = attrs.field(factory=dict)
    out_of_pocket: int = 0

    def add(self, other: GroupStats) -> None:
        self.persons += other.persons
        self.claimants += other.claimants
        self.total_cost += other.total_cost
        self.eligible_cost += other.eligible_cost
        self.out_of_pocket += other.out_of_pocket
        for layer, v in other.payments.items():
            self.payments[layer] = self.payments.get(layer, 0) + v


@attrs.define
class Stats:
    """Everything a simulation reports about one policy on one population, as exact sums."""

    layers: tuple[str, ...]
    funds: dict[str, str]  # layer -> fund
    persons: int = 0
    claims: int = 0
    claimants: int = 0
    total_cost: int = 0
    eligible_cost: int = 0
    layer_totals: dict[str, int] = attrs.field(factory=dict)
    groups: dict[tuple[str, str], GroupStats] = attrs.field(factory=dict)  # (group, scheme)
    alerts: dict[str, int] = attrs.field(factory=dict)
    subsidies: dict[str, tuple[int, int]] = attrs.field(factory=dict)  # id -> (persons, fen)
    catastrophic: dict[int, int] = attrs.field(factory=dict)  # threshold fen -> persons at or above
    inpatient: dict[str, tuple[int, dict[str, int]]] = attrs.field(factory=dict)  # scheme -> (eligible, paid)
    oop_claimants: list[Arr] = attrs.field(factory=list)  # per claimant person-year, chunk by chunk

    def merge(self, other: Stats) -> None:
        self.persons += other.persons
        self.claims += other.claims
        self.claimants += other.claimants
        self.total_cost += other.total_cost
        self.eligible_cost += other.eligible_cost
        _add(self.layer_totals, other.layer_totals)
        for key, g in other.groups.items():
            self.groups.setdefault(key, GroupStats()).add(g)
        _add(self.alerts, other.alerts)
        for sid, (n, amount) in other.subsidies.items():
            n0, a0 = self.subsidies.get(sid, (0, 0))
            self.subsidies[sid] = (n0 + n, a0 + amount)
        _add(self.catastrophic, other.catastrophic)
        for scheme, (eligible, paid) in other.inpatient.items():
            e0, p0 = self.inpatient.get(scheme, (0, {}))
            self.inpatient[scheme] = (e0 + eligible, _add(dict(p0), paid))
        self.oop_claimants.extend(other.oop_claimants)

    def fund_totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for layer, v in self.layer_totals.items():
            fund = self.funds.get(layer, "")
            out[fund] = out.get(fund, 0) + v
        return out

    def oop_values(self) -> Arr:
        return np.concatenate(self.oop_claimants) if self.oop_claimants else np.zeros(0, np.int64)


K = TypeVar("K")


def _add(into: dict[K, int], other: Mapping[K, int]) -> dict[K, int]:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v
    return into


def person_groups(cols: Columns) -> npt.NDArray[np.int16]:
    """Each person's group: index into GROUP_ORDER of the first identity they hold, or len(GROUP_ORDER)."""
    rank = np.full(len(cols.identity_names), len(GROUP_ORDER), np.int16)
    for i, name in enumerate(cols.identity_names):
        if name in GROUP_ORDER:
            rank[i] = GROUP_ORDER.index(name)
    group = np.full(cols.persons.n, len(GROUP_ORDER), np.int16)
    if len(cols.persons.grant_person):
        persons: npt.NDArray[Any] = cols.persons.grant_person
        np.minimum.at(group, persons, rank[cols.persons.grant_identity])
    return group


def group_name(code: int) -> str:
    return GROUP_ORDER[code] if code < len(GROUP_ORDER) else NO_GROUP


def chunk_stats(graph: Graph, cols: Columns, result: VectorResult, year: int) -> Stats:
    """Aggregate one evaluated chunk (persons without claims count as persons with zero cost).

    The result's person-year rows are sparse: an absent one adds 0 to every sum, is no claimant (total 0)
    and reaches no catastrophic threshold; persons are counted from `cols`, never from the rows."""
    layers = result.layers
    stats = Stats(layers, {layer.id: layer.fund for layer in graph.layers})
    p = cols.persons
    stats.persons = p.n
    stats.claims = cols.claims.m
    in_year = result.py_year == year
    py_person = result.py_person[in_year]
    py_pay = result.py_payments[in_year]
    py_oop = result.py_out_of_pocket[in_year]
    py_total = result.py_total_cost[in_year]
    claimant = py_total > 0
    stats.claimants = int(claimant.sum())
    stats.total_cost = int(py_total.sum())
    stats.eligible_cost = int(result.py_eligible_cost[in_year].sum())
    stats.layer_totals = {layer: int(py_pay[:, i].sum()) for i, layer in enumerate(layers)}
    stats.oop_claimants = [np.ascontiguousarray(py_oop[claimant], dtype=np.int64)]
    stats.groups = _groups(cols, py_person, py_pay, py_oop, py_total, result.py_eligible_cost[in_year], layers)
    stats.alerts = {a: int(result.alerts[in_year][:, i].sum()) for i, a in enumerate(result.alert_ids)}
    given = result.subsidy_given[in_year]
    amounts = result.subsidies[in_year]
    stats.subsidies = {s: (int(given[:, i].sum()), int(amounts[:, i].sum()))
                       for i, s in enumerate(result.subsidy_ids)}
    stats.catastrophic = {t: int((py_oop >= t).sum()) for t in CATASTROPHIC_FEN}
    stats.inpatient = _inpatient(cols, result, year, layers)
    return stats


def _groups(cols: Columns, py_person: npt.NDArray[np.int64], py_pay: Arr, py_oop: Arr, py_total: Arr,
            py_eligible: Arr, layers: tuple[str, ...]) -> dict[tuple[str, str], GroupStats]:
    group = person_groups(cols)
    scheme = cols.persons.scheme
    out: dict[tuple[str, str], GroupStats] = {}
    n_schemes = len(SCHEMES)
    person_key = group.astype(np.int64) * n_schemes + scheme.astype(np.int64)
    persons_per_key = np.bincount(person_key, minlength=(len(GROUP_ORDER) + 1) * n_schemes)
    key = person_key[py_person]
    for k in np.flatnonzero(persons_per_key):
        rows = key == k
        g = GroupStats(int(persons_per_key[k]), int((py_total[rows] > 0).sum()), int(py_total[rows].sum()),
                       int(py_eligible[rows].sum()),
                       {layer: int(py_pay[rows, i].sum()) for i, layer in enumerate(layers)},
                       int(py_oop[rows].sum()))
        out[(group_name(int(k) // n_schemes), SCHEMES[int(k) % n_schemes])] = g
    return out


def _inpatient(cols: Columns, result: VectorResult, year: int,
               layers: tuple[str, ...]) -> dict[str, tuple[int, dict[str, int]]]:
    c = cols.claims
    start, end = day_number(datetime.date(year, 1, 1)), day_number(datetime.date(year + 1, 1, 1))
    day: npt.NDArray[Any] = c.day
    rows = (c.kind == INPATIENT) & (day >= start) & (day < end)
    scheme = cols.persons.scheme[c.person]
    out: dict[str, tuple[int, dict[str, int]]] = {}
    for code, name in enumerate(SCHEMES):
        sel = rows & (scheme == code)
        if sel.any():
            out[name] = (int(c.eligible_cost[sel].sum()),
                         {layer: int(result.payments[sel, i].sum()) for i, layer in enumerate(layers)})
    return out


def payout_ratios(stats: Stats, targets: Iterable[TargetNode]) -> list[dict[str, object]]:
    """Policy-range inpatient payout ratio (payments of the target's layers / eligible cost) by scheme."""
    rows: list[dict[str, object]] = []
    for target in targets:
        schemes = _target_schemes(target.where)
        eligible = sum(stats.inpatient.get(s, (0, {}))[0] for s in schemes)
        paid = sum(stats.inpatient.get(s, (0, {}))[1].get(layer, 0) for s in schemes for layer in target.layers)
        if eligible == 0:
            continue
        rows.append({"target": target.id, "title": target.title, "schemes": sorted(schemes),
                     "layers": list(target.layers), "eligible_cost": eligible, "paid": paid,
                     "ratio_ppm": paid * 1_000_000 // eligible, "minimum_ppm": target.minimum,
                     "by": target.by.isoformat()})
    return rows


def _target_schemes(pred: Pred) -> set[str]:
    """The schemes a target's condition selects (targets are written `… and scheme in (…)`)."""
    if isinstance(pred, PAnd):
        found = [_target_schemes(p) for p in pred.items]
        narrowed = [f for f in found if f != set(SCHEMES)]
        return narrowed[0] if narrowed else set(SCHEMES)
    if isinstance(pred, PIn) and pred.field == "scheme":
        return {str(v) for v in pred.values}
    if isinstance(pred, PCompare) and pred.field == "scheme" and pred.op == "=":
        return {str(pred.value)}
    return set(SCHEMES)


def percentile(sorted_values: Arr, q: int) -> int:
    """The q-th percentile (nearest rank) of sorted fen values; 0 for none."""
    if len(sorted_values) == 0:
        return 0
    rank = max(1, -(-q * len(sorted_values) // 100))  # ceil(q/100 × n)
    return int(sorted_values[rank - 1])
