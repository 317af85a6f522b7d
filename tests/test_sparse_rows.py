"""Sparse person-year rows (vector.VectorResult): present iff some value is non-zero, absent = all zeros."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from policy_lang import interp, vector
from policy_lang.columns import Columns, from_dataset
from policy_lang.data import Dataset
from policy_lang.pipeline import Built
from simulator import compare, metrics
from simulator.compare import Change, Movers
from simulator.engines import evaluate
from tests.helpers import build_source, dataset

Row = Mapping[str, object]
HEAD = 'effective 2019-01-01 schemes resident source "test"'
# basic pays 50% of the eligible cost of inpatient claims; dibao persons get the 380-yuan premium in full
POLICY = ("param premium: money = 380\n"
          'layer basic "b" fund basic_fund { scope kind = inpatient rate 50% }\n'
          'subsidy help "h" best { amount premium dibao: 100% }')
PERSONS: list[Row] = [
    {"person_id": "p1", "scheme": "resident"},  # no claims, no subsidy
    {"person_id": "p2", "scheme": "resident"},  # one claim costing 0
    {"person_id": "p3", "scheme": "resident", "identities": "dibao"},  # no claims, a subsidy
    {"person_id": "p4", "scheme": "resident"},  # a claimant
]


def policy(body: str) -> str:
    return f'policy t "test" {HEAD} {{\n{body}\n}}\n'


def claim(cid: str, person: str, day: str, total: int, eligible: int) -> dict[str, object]:
    return {"claim_id": cid, "person_id": person, "date": day, "kind": "inpatient", "hospital_level": 1,
            "total_cost": total, "eligible_cost": eligible}


CLAIMS = [claim("c1", "p2", "2019-03-01", 0, 0), claim("c2", "p4", "2019-05-01", 1000, 800)]


def columns(built: Built, persons: Sequence[Row], claims: Sequence[Row]) -> tuple[Dataset, Columns]:
    data = dataset(built, persons, claims)
    return data, from_dataset(data, built.graph)


def rows(r: vector.VectorResult) -> dict[tuple[int, int], tuple[object, ...]]:
    """(person row, year) -> every value of the person-year, as plain ints and bools."""
    return {(int(p), int(y)): (r.py_payments[j].tolist(), int(r.py_out_of_pocket[j]), int(r.py_total_cost[j]),
                               int(r.py_eligible_cost[j]), r.alerts[j].tolist(), r.subsidies[j].tolist(),
                               r.subsidy_given[j].tolist())
            for j, (p, y) in enumerate(zip(r.py_person, r.py_year, strict=True))}


# ---- the rule, by hand ------------------------------------------------------------------------------------
def test_only_person_years_with_a_non_zero_value_are_rows(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(POLICY))
    _data, cols = columns(built, PERSONS, CLAIMS)
    got = vector.run_columns(built.graph, cols)
    # p1 (row 0): nothing → absent; p2 (row 1): its claim costs 0 → absent
    # p3 (row 2): no claims, dibao: subsidy 380 yuan → present with zero amounts
    # p4 (row 3): 1000 yuan, 800 eligible: basic 50% × 800 = 400 paid, 600 out of pocket
    assert rows(got) == {(2, 2019): ([0], 0, 0, 0, [], [38000], [True]),
                         (3, 2019): ([40000], 60000, 100000, 80000, [], [0], [False])}
    assert got.py_person.dtype == np.int64 and got.py_payments.shape == (2, 1)
    assert got.alerts.shape == (2, 0) and got.subsidies.shape == got.subsidy_given.shape == (2, 1)


def test_a_subsidy_of_zero_makes_a_row(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(POLICY.replace("= 380", "= 0")))
    _data, cols = columns(built, PERSONS, CLAIMS)
    got = vector.run_columns(built.graph, cols)
    assert rows(got)[(2, 2019)] == ([0], 0, 0, 0, [], [0], [True])
    assert sorted(rows(got)) == [(2, 2019), (3, 2019)]


def test_an_alert_makes_a_row(tmp_path: Path) -> None:
    # threshold 0: the burden (0) reaches it for everyone, claims or not
    built = build_source(tmp_path, policy(POLICY + '\nalert risk "r" { measure burden after basic '
                                                   "where kind in (inpatient) when true { threshold 0 } }"))
    _data, cols = columns(built, PERSONS, CLAIMS)
    got = vector.run_columns(built.graph, cols)
    assert sorted(rows(got)) == [(0, 2019), (1, 2019), (2, 2019), (3, 2019)]
    assert rows(got)[(0, 2019)] == ([0], 0, 0, 0, [True], [0], [False])


def test_rows_are_sorted_by_person_then_year(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(POLICY))
    claims = [*CLAIMS, claim("c3", "p4", "2020-02-01", 300, 300), claim("c4", "p1", "2020-01-01", 100, 0)]
    _data, cols = columns(built, PERSONS, claims)
    got = vector.run_columns(built.graph, cols)
    # p1 2020: 100 yuan, none eligible → 0 paid, 100 out of pocket; p3 gets the subsidy in both years
    assert list(rows(got)) == [(0, 2020), (2, 2019), (2, 2020), (3, 2019), (3, 2020)]
    assert rows(got)[(0, 2020)] == ([0], 10000, 10000, 0, [], [0], [False])
    assert rows(got)[(3, 2020)] == ([15000], 15000, 30000, 30000, [], [0], [False])


def test_sparse_rows_takes_dense_or_sparse_rows(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(POLICY))
    _data, cols = columns(built, PERSONS, CLAIMS)
    dense = vector._Engine(built.graph, cols, interp.Options()).run()
    assert len(dense.py_person) == 4  # the NumPy engine itself: one row per person × year
    sparse = vector.sparse_rows(dense)
    assert rows(sparse) == rows(vector.run_columns(built.graph, cols))
    assert sorted(rows(sparse)) == [(2, 2019), (3, 2019)]
    assert vector.sparse_rows(sparse) is sparse  # nothing to drop: the same object back
    assert rows(dense)[(0, 2019)] == ([0], 0, 0, 0, [], [0], [False])  # what was dropped is all zeros


def test_the_interp_engine_of_the_simulator_is_sparse_too(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(POLICY))
    _data, cols = columns(built, PERSONS, CLAIMS)
    by_interp = evaluate(built.graph, cols, interp.Options(), "interp")
    assert rows(by_interp) == rows(evaluate(built.graph, cols, interp.Options(), "vector"))
    assert sorted(rows(by_interp)) == [(2, 2019), (3, 2019)]


# ---- vector._result: every person × year, as interp lists them ---------------------------------------------
def test_the_result_lists_every_person_year(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(POLICY))
    claims = [*CLAIMS, claim("c3", "p4", "2020-02-01", 300, 300)]
    data, _cols = columns(built, PERSONS, claims)
    got = vector.run(built.graph, data)
    assert got == interp.run(built.graph, data)
    assert [(p.person_id, p.year) for p in got.persons] == [
        (p, y) for p in ("p1", "p2", "p3", "p4") for y in (2019, 2020)]
    zero = interp.PersonYear("p1", 2019, (0,), 0, 0, 0, (), ())
    assert got.persons[0] == zero and got.persons[2] == interp.PersonYear("p2", 2019, (0,), 0, 0, 0, (), ())
    assert got.persons[4] == interp.PersonYear("p3", 2019, (0,), 0, 0, 0, (), (("help", 38000),))
    assert got.persons[6] == interp.PersonYear("p4", 2019, (40000,), 60000, 100000, 80000, (), ())


@pytest.mark.parametrize("claims", [[], CLAIMS])
def test_the_result_lists_the_as_of_year(tmp_path: Path, claims: list[Row]) -> None:
    built = build_source(tmp_path, policy(POLICY))
    data, _cols = columns(built, PERSONS, claims)
    options = interp.Options(as_of=datetime.date(2021, 6, 1))
    got = vector.run(built.graph, data, options)
    assert got == interp.run(built.graph, data, options)
    want_year = 2021 if not claims else 2019  # --as-of names the year only when there are no claims
    assert [(p.person_id, p.year) for p in got.persons] == [(p, want_year) for p in ("p1", "p2", "p3", "p4")]


# ---- the simulator's comparison: rows aligned by (person, year) ---------------------------------------------
OLD = ('layer basic "b" fund basic_fund { scope kind = inpatient rate 50% }\n'
       'subsidy help "h" best { amount 100 near_dibao: 100% }')
NEW = ('layer basic "b" fund basic_fund { scope kind = inpatient rate 60% }\n'
       'subsidy help "h" best { amount 380 dibao: 100% }\n'
       'alert spare "s" { measure burden after basic where kind in (inpatient) '
       "when identities has any (near_dibao) { threshold 1 } }")
MOVERS: list[Row] = [*PERSONS, {"person_id": "p5", "scheme": "resident", "identities": "near_dibao"}]


def test_compare_chunk_aligns_different_rows(tmp_path: Path) -> None:
    old = build_source(tmp_path / "old", policy(OLD))
    new = build_source(tmp_path / "new", policy(NEW))
    data = dataset(new, MOVERS, CLAIMS)
    cols = from_dataset(data, new.graph)
    a, b = vector.run_columns(old.graph, cols), vector.run_columns(new.graph, cols)
    # old: p4 paid, p5 subsidised (near_dibao); new: p3 subsidised (dibao), p4 paid
    assert sorted(rows(a)) == [(3, 2019), (4, 2019)] and sorted(rows(b)) == [(2, 2019), (3, 2019)]
    got = compare.compare_chunk(cols, b, a, 2019)
    # p4: old 1000 − 50% × 800 = 600 out of pocket, new 1000 − 60% × 800 = 520: 80 yuan less
    assert got.total == Movers(1, 8000, 0, 0)
    assert got.by_group == {"dibao": Movers(), "near_dibao": Movers(), "none": Movers(1, 8000, 0, 0)}
    assert got.biggest == [Change("p4", "none", 60000, 52000)]
    dense = [vector._Engine(g.graph, cols, interp.Options()).run() for g in (old, new)]
    assert compare.compare_chunk(cols, dense[1], dense[0], 2019) == got  # as with one row per person-year
    # the other way round: p4 pays 80 yuan more
    back = compare.compare_chunk(cols, a, b, 2019)
    assert back.total == Movers(0, 0, 1, 8000) and back.biggest == [Change("p4", "none", 52000, 60000)]


def test_compare_chunk_lists_every_group_of_a_year_the_run_considers(tmp_path: Path) -> None:
    old = build_source(tmp_path / "old", policy(OLD))  # subsidises near_dibao persons: none here
    new = build_source(tmp_path / "new", policy(NEW))
    cols = from_dataset(dataset(new, PERSONS, CLAIMS[:1]), new.graph)  # only p2's claim costing 0
    a = vector.run_columns(old.graph, cols)
    assert rows(a) == {}
    got = compare.compare_chunk(cols, a, a, 2019)
    # 2019 is considered (a claim falls in it), so every group is listed, all without movers
    assert got == compare.Comparison(Movers(), {"dibao": Movers(), "none": Movers()}, [])
    dense = vector._Engine(old.graph, cols, interp.Options()).run()
    assert compare.compare_chunk(cols, dense, dense, 2019) == got
    # 2020 is not: no person-years at all, so no groups
    assert compare.compare_chunk(cols, a, a, 2020) == compare.Comparison()
    # without claims, --as-of names the one year considered
    empty = from_dataset(dataset(new, PERSONS, []), new.graph)
    as_of = interp.Options(as_of=datetime.date(2021, 6, 1))
    none = vector.run_columns(old.graph, empty, as_of)
    assert rows(none) == {}
    assert compare.compare_chunk(empty, none, none, 2021, as_of).by_group == {"dibao": Movers(), "none": Movers()}
    assert compare.compare_chunk(empty, none, none, 2021).by_group == {}


def test_chunk_stats_are_those_of_one_row_per_person_year(tmp_path: Path) -> None:
    new = build_source(tmp_path, policy(NEW))
    cols = from_dataset(dataset(new, MOVERS, CLAIMS), new.graph)
    sparse = metrics.chunk_stats(new.graph, cols, vector.run_columns(new.graph, cols), 2019)
    dense = metrics.chunk_stats(new.graph, cols, vector._Engine(new.graph, cols, interp.Options()).run(), 2019)
    assert (sparse.persons, sparse.claimants, sparse.total_cost, sparse.eligible_cost) == (5, 1, 100000, 80000)
    assert sparse.layer_totals == {"basic": 48000} and sparse.subsidies == {"help": (1, 38000)}
    assert sparse.alerts == {"spare": 0} and sparse.oop_values().tolist() == [52000]
    for field in ("persons", "claimants", "total_cost", "eligible_cost", "layer_totals", "groups", "alerts",
                  "subsidies", "catastrophic", "inpatient"):
        assert getattr(sparse, field) == getattr(dense, field), field
    assert sparse.oop_values().tolist() == dense.oop_values().tolist()
