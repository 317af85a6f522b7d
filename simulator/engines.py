"""Engines for the simulator: one chunk of Columns -> VectorResult, by the vector or the reference evaluator."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from policy_lang import interp, vector
from policy_lang.columns import DESIGNATIONS, KINDS, NO_DATE, SCHEMES, SEXES, Columns, day_date
from policy_lang.data import Claim, Dataset, Grant, Person
from policy_lang.graph import Graph


def evaluate(graph: Graph, cols: Columns, options: interp.Options, engine: str) -> vector.VectorResult:
    if engine == "interp":
        return _by_interp(graph, cols, options)
    return vector.run_columns(graph, cols, options)


def to_dataset(cols: Columns) -> Dataset:
    """Records for the reference evaluator (small populations: it is the oracle, not the fast path)."""
    p = cols.persons
    pids = [str(x) for x in p.ids()]
    grants: list[list[Grant]] = [[] for _ in range(p.n)]
    for person, ident, since in zip(p.grant_person, p.grant_identity, p.grant_since, strict=True):
        day = None if since == NO_DATE else day_date(int(since))
        grants[int(person)].append(Grant(cols.identity_names[int(ident)], day))
    chronic: list[set[str]] = [set() for _ in range(p.n)]
    for person, disease in zip(p.chronic_person, p.chronic_disease, strict=True):
        chronic[int(person)].add(cols.disease_names[int(disease)])
    persons = tuple(
        Person(pids[i], SCHEMES[int(p.scheme[i])], bool(p.retired[i]), None if p.age[i] < 0 else int(p.age[i]),
               SEXES[int(p.sex[i])] or None, tuple(grants[i]),
               p.region_names[int(p.region[i])] if p.region[i] >= 0 else None, frozenset(chronic[i]),
               bool(p.resettled[i]))
        for i in range(p.n))
    return Dataset(persons, _claims(cols, pids))


def _claims(cols: Columns, pids: list[str]) -> tuple[Claim, ...]:
    c = cols.claims
    cids = [str(x) for x in c.ids()]
    diseases: list[set[str]] = [set() for _ in range(c.m)]
    for claim, code in zip(c.disease_claim, c.disease_code, strict=True):
        diseases[int(claim)].add(cols.disease_names[int(code)])
    return tuple(
        Claim(cids[i], pids[int(c.person[i])], day_date(int(c.day[i])), KINDS[int(c.kind[i])], int(c.level[i]),
              int(c.total_cost[i]), int(c.eligible_cost[i]), grassroots=bool(c.grassroots[i]),
              tcm_institution=bool(c.tcm_institution[i]), designation=DESIGNATIONS[int(c.designation[i])],
              diseases=frozenset(diseases[i]), referred=bool(c.referred[i]), in_province=bool(c.in_province[i]),
              in_pooling_area=bool(c.in_pooling_area[i]), direct_settlement=bool(c.direct_settlement[i]),
              emergency=bool(c.emergency[i]), pure_tcm=bool(c.pure_tcm[i]), tcm_cost=int(c.tcm_cost[i]),
              material_over_limit=int(c.material_over_limit[i]), bed_days=int(c.bed_days[i]))
        for i in range(c.m))


def _by_interp(graph: Graph, cols: Columns, options: interp.Options) -> vector.VectorResult:
    """interp.run's Result as a VectorResult, with the vector engine's sparse person-year rows."""
    result = interp.run(graph, to_dataset(cols), options)
    n_layers = len(result.layers)
    payments = _matrix([list(c.payments) for c in result.claims], n_layers, np.int64)
    index = {pid: i for i, pid in enumerate(str(x) for x in cols.persons.ids())}
    years = result.persons
    alert_ids = tuple(dict.fromkeys(a.id for e in graph.epochs for a in e.alerts))
    subsidy_ids = tuple(dict.fromkeys(s.id for e in graph.epochs for s in e.subsidies))
    alerts = _matrix([[a in py.alerts for a in alert_ids] for py in years], len(alert_ids), bool)
    given = [dict(py.subsidies) for py in years]
    return vector.sparse_rows(vector.VectorResult(
        layers=result.layers, payments=payments,
        out_of_pocket=np.array([c.out_of_pocket for c in result.claims], np.int64),
        py_person=np.array([index[py.person_id] for py in years], np.int64),
        py_year=np.array([py.year for py in years], np.int64),
        py_payments=_matrix([list(py.payments) for py in years], n_layers, np.int64),
        py_out_of_pocket=np.array([py.out_of_pocket for py in years], np.int64),
        py_total_cost=np.array([py.total_cost for py in years], np.int64),
        py_eligible_cost=np.array([py.eligible_cost for py in years], np.int64),
        alert_ids=alert_ids, alerts=alerts, subsidy_ids=subsidy_ids,
        subsidies=_matrix([[g.get(s, 0) for s in subsidy_ids] for g in given], len(subsidy_ids), np.int64),
        subsidy_given=_matrix([[s in g for s in subsidy_ids] for g in given], len(subsidy_ids), bool)))


def _matrix(rows: list[list[Any]], width: int, dtype: Any) -> npt.NDArray[Any]:
    """Rows of equal width as a 2-D array, also when there are no rows or no columns."""
    out = np.zeros((len(rows), width), dtype=dtype)
    if rows and width:
        out[:] = rows
    return out
