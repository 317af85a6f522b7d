"""The fused Numba kernel (policy_lang/kernel.py) against the reference evaluator and the NumPy engine."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from policy_lang import ast, interp, kernel, vector
from policy_lang.cli import main
from policy_lang.columns import from_dataset
from policy_lang.data import Dataset
from policy_lang.graph import Flat, Graph, Lit, Op, Prev, Val
from policy_lang.pipeline import Built, build
from policy_lang.testing import run_tests
from simulator.population import generate
from simulator.profile import load_profile
from tests.gen_policies import Case, DrawChooser, build_case, gen_case, outcome
from tests.helpers import build_source, dataset

pytestmark = pytest.mark.skipif(not kernel.available(), reason="numba is not importable (or POLC_KERNEL=0)")

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = [*sorted(str(p.relative_to(ROOT)) for p in (ROOT / "policies").rglob("*.pol")), "bench/anchor_v2.pol"]
HEAD = 'effective 2019-01-01 schemes resident source "test"'
P1 = {"person_id": "p1", "scheme": "resident"}


def policy(body: str) -> str:
    return f'policy t "test" {HEAD} {{\n{body}\n}}\n'


def numpy_run(graph: Graph, data: Dataset, options: interp.Options = interp.Options()) -> interp.Result:
    """vector.run with the NumPy engine forced (the kernel would otherwise answer)."""
    result = vector._Engine(graph, from_dataset(data, graph), options).run()
    return vector._result(graph, data, result, options)


def differs(want: interp.Result | str, got: interp.Result | str) -> str | None:
    """What differs between two outcomes (results or EvalError texts), or None."""
    if isinstance(want, str) or isinstance(got, str):
        return None if want == got else f"{want if isinstance(want, str) else 'ok'} | {got}"
    if len(want.persons) != len(got.persons):
        return "person-year counts differ"
    pairs = [*zip(want.claims, got.claims, strict=True), *zip(want.persons, got.persons, strict=True)]
    return next((f"want {a}\ngot  {b}" for a, b in pairs if a != b), None)


def assert_same_vectors(a: vector.VectorResult, b: vector.VectorResult) -> None:
    """Every array of two VectorResults equal, with the same dtype and shape (person-year rows by the sparse rule:
    the kernel leaves out rows the NumPy engine may give as zeros)."""
    a, b = vector.sparse_rows(a), vector.sparse_rows(b)
    for field in attrs.fields(vector.VectorResult):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), field.name
        else:
            assert x == y, field.name


# ---- the differential harness, with the kernel forced -----------------------------------------------------
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_kernel_agrees_with_interp_on_random_policies(data: st.DataObject) -> None:
    case = gen_case(DrawChooser(data.draw))
    try:
        built = build_case(case)
    except KeyError:  # a known front-end crash on exceptions ordered in a cycle (see test_differential)
        reject()
    if built is None:
        reject()
    want = outcome(interp.run, built, case)
    problem = differs(want, outcome(numpy_run, built, case))
    assert problem is None, f"numpy engine: {problem}\n{case.source()}"
    if not kernel.supports(built.graph, case.options):
        return
    problem = differs(want, outcome(kernel.run, built, case))
    assert problem is None, f"kernel: {problem}\n{case.source()}\n{case.options}\n{case.persons}\n{case.claims}"
    _check_kernel_answered(built, case, want)


def _check_kernel_answered(built: Built, case: Case, want: interp.Result | str) -> None:
    """Where interp pays, the kernel itself answers (no hand-over), with the NumPy engine's exact arrays."""
    if isinstance(want, str) or not case.claims:
        return
    cols = from_dataset(Dataset(case.persons, case.claims), built.graph)
    got = kernel.evaluate(built.graph, cols, case.options)
    if got is None:  # handed over: only a unit payment beyond int64 may do that when interp pays
        assert kernel.HANDOVER["reason"] == "unit payments may leave int64"
        return
    assert vector.sparse_rows(got) is got  # the kernel's rows follow VectorResult's rule as they are
    assert_same_vectors(got, vector._Engine(built.graph, cols, case.options).run())
    with tiny_blocks():  # every person range its own block, on two threads: the same arrays
        split = kernel.evaluate(built.graph, cols, case.options)
    assert split is not None
    assert_same_vectors(split, got)


@contextlib.contextmanager
def tiny_blocks() -> Iterator[None]:
    """The kernel cutting claims into blocks of about two claims over 8 person ranges, run on two threads."""
    saved = kernel.BLOCK_CLAIMS, kernel.BLOCK_MIN, kernel.BUCKET_BITS, os.environ.get("POLC_THREADS")
    kernel.BLOCK_CLAIMS, kernel.BLOCK_MIN, kernel.BUCKET_BITS, os.environ["POLC_THREADS"] = 2, 1, 3, "2"
    try:
        yield
    finally:
        kernel.BLOCK_CLAIMS, kernel.BLOCK_MIN, kernel.BUCKET_BITS = saved[:3]
        if saved[3] is None:
            del os.environ["POLC_THREADS"]
        else:
            os.environ["POLC_THREADS"] = saved[3]


# ---- bundled policies ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", BUNDLED)
def test_every_bundled_policy_is_supported(path: str) -> None:
    graph = build(ROOT / path).graph
    assert kernel.unsupported(graph) is None
    assert kernel.supports(graph, interp.Options(as_of=datetime.date(2023, 6, 1)))


@pytest.mark.parametrize("path", BUNDLED)
def test_in_file_tests_pass_through_the_kernel(path: str) -> None:
    built = build(ROOT / path)
    answered: list[bool] = []

    def engine(b: Built, d: Dataset, o: interp.Options) -> interp.Result:
        got = kernel.evaluate(b.graph, from_dataset(d, b.graph), o) if d.claims else None
        answered.append(got is not None)
        return kernel.run(b.graph, d, o)

    outcomes = run_tests(built, [("kernel", engine)])
    assert all(o.passed for o in outcomes), [o.failures for o in outcomes if not o.passed]
    # the NumPy engine answers only tests that expect an error (it raises interp's message) or have no claims
    tests = [t for t, _path in built.checked.tests]
    handed = sum(any(isinstance(i, ast.ExpectError) for i in t.items)
                 or not any(isinstance(i, ast.TestRecord) and i.kind == "claim" for i in t.items) for t in tests)
    assert answered.count(False) <= handed


@pytest.mark.parametrize("profile,path", [("liaoning-resident", "policies/yingkou/major-illness-2023.pol"),
                                          ("liaoning-resident", "policies/shenyang/poverty-2019.pol"),
                                          ("liaoning-provincial-direct", "policies/liaoning/provincial-direct-2019.pol"),
                                          ("jining", "policies/jining/benefits-2021.pol")])
def test_blocks_on_threads_give_the_numpy_engines_arrays(profile: str, path: str) -> None:
    """A simulated population (identities with dates, `best`, shared caps, epochs inside the year) cut into many
    blocks on two threads: every array equal to the NumPy engine's."""
    cols = generate(load_profile(profile), 3000, seed=11, year=2023)
    options = interp.Options(settings={"bed_day_rate": 8000})
    graph = build(ROOT / path).graph
    with tiny_blocks():
        kernel.BLOCK_CLAIMS = 97
        got = kernel.evaluate(graph, cols, options)
    assert got is not None, kernel.HANDOVER
    assert_same_vectors(got, vector._Engine(graph, cols, options).run())


def test_polc_test_runs_the_bundled_tests_through_the_kernel() -> None:
    result = CliRunner().invoke(main, ["test", "--engine", "vector", str(ROOT / "policies"),
                                       str(ROOT / "bench" / "anchor_v2.pol")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0 failed")


# ---- mechanisms ----------------------------------------------------------------------------------------------
def test_the_kernel_answers_with_the_numpy_engines_arrays(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer basic "b" fund basic_fund { scope kind = inpatient deductible 300 per year rate 80% '
        "cap 20000 per year }\n"
        'layer ci "c" fund critical_illness_fund { base after basic deductible 1000 per year '
        "tiers on base { 0 to 5000: 50%; above 5000: 80% } }"))
    people = [P1, {"person_id": "p2", "scheme": "resident"}]
    claims = [{"claim_id": f"c{i}", "person_id": f"p{1 + i % 2}", "date": f"20{19 + i % 2}-0{1 + i % 9}-1{i % 10}",
               "kind": "inpatient", "hospital_level": 1 + i % 3, "total_cost": 1000 + 997 * i,
               "eligible_cost": 1000 + 997 * i} for i in range(12)]
    cols = from_dataset(dataset(built, people, claims), built.graph)
    got = kernel.evaluate(built.graph, cols)
    assert got is not None
    assert_same_vectors(got, vector._Engine(built.graph, cols, interp.Options()).run())
    assert set(kernel.TIMINGS) == {"facts", "sort", "tables", "loop", "outputs"}


def test_vector_run_columns_uses_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 50% }'))
    cols = from_dataset(dataset(built, [P1], [{"claim_id": "c1", "person_id": "p1", "date": "2019-05-01",
                                                "kind": "inpatient", "hospital_level": 1, "total_cost": 100,
                                                "eligible_cost": 100}]), built.graph)
    calls: list[int] = []
    real: Callable[..., vector.VectorResult] = kernel.run_columns

    def counted(*args: object) -> vector.VectorResult:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(kernel, "run_columns", counted)
    assert vector.run_columns(built.graph, cols).payments.tolist() == [[5000]]
    monkeypatch.setenv("POLC_KERNEL", "0")
    assert not kernel.available()
    assert vector.run_columns(built.graph, cols).payments.tolist() == [[5000]]
    assert calls == [1]


def test_an_unspecified_parameter_gives_interps_message(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        "param bed_rate: money unspecified\n"
        'layer l "l" fund basic_fund { unit_rate bed_rate per bed_days }'))
    rows = [{"claim_id": "c1", "person_id": "p1", "date": "2019-05-01", "kind": "inpatient", "hospital_level": 1,
             "total_cost": 1000, "eligible_cost": 1000, "bed_days": 3}]
    data = dataset(built, [P1], rows)
    assert kernel.evaluate(built.graph, from_dataset(data, built.graph)) is None  # handed to the NumPy engine
    with pytest.raises(interp.EvalError) as want:
        interp.run(built.graph, data)
    with pytest.raises(interp.EvalError) as got:
        kernel.run(built.graph, data)
    assert str(got.value) == str(want.value)
    settled = interp.Options(settings={"bed_rate": 8000})
    assert kernel.run(built.graph, data, settled) == interp.run(built.graph, data, settled)


def test_previous_deductible_forms(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer l "l" fund basic_fund { scope kind = inpatient deductible 500 per admission '
        "rule cont when referred { deductible max(0, base_value - previous_deductible) } rate 80% }"))
    rows = [{"claim_id": f"c{i}", "person_id": "p1", "date": f"2019-0{i + 1}-01", "kind": "inpatient",
             "hospital_level": 1, "total_cost": t, "eligible_cost": t, "referred": "true" if i else "false"}
            for i, t in enumerate([300, 2000, 2000])]
    data = dataset(built, [P1], rows)
    assert kernel.supports(built.graph)
    # c0: part 300 (all of it); c1: 500 − 300 = 200; c2: 500 − 200 = 300
    assert [c.payments for c in kernel.run(built.graph, data).claims] == [(0,), (144000,), (136000,)]
    assert kernel.run(built.graph, data) == interp.run(built.graph, data)


def test_unsupported_shapes_are_refused(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { deductible 500 per claim rate 80% }'))
    graph = built.graph
    epoch = graph.epochs[-1]
    version = epoch.layers[0]
    assert version is not None
    rule = version.deductible.rules[-1]

    def with_deductible(value: Val) -> Graph:
        rules = (*version.deductible.rules[:-1], attrs.evolve(rule, value=value))
        changed = attrs.evolve(version, deductible=attrs.evolve(version.deductible, rules=rules))
        return attrs.evolve(graph, epochs=(*graph.epochs[:-1], attrs.evolve(epoch, layers=(changed,))))

    assert kernel.supports(with_deductible(Op("max", Lit(0), Op("sub", Lit(50000), Prev()))))
    assert not kernel.supports(with_deductible(Op("mul", Prev(), Lit(500_000))))
    assert not kernel.supports(with_deductible(Op("add", Prev(), Prev())))
    flat = version.pricing.rules[-1].value
    assert isinstance(flat, Flat)
    pricing = attrs.evolve(version.pricing.rules[-1], value=Flat(Prev()))
    changed = attrs.evolve(version, pricing=attrs.evolve(version.pricing, rules=(pricing,)))
    refused = attrs.evolve(graph, epochs=(*graph.epochs[:-1], attrs.evolve(epoch, layers=(changed,))))
    assert kernel.unsupported(refused) == "previous_deductible outside a deductible (pricing)"
    assert not kernel.supports(attrs.evolve(graph, epochs=tuple(reversed(graph.epochs))) if len(graph.epochs) > 1
                               else attrs.evolve(graph, epochs=()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(-3, 40)), max_size=120))
def test_the_claim_sort_is_vectors_order(rows: list[tuple[int, int, int]]) -> None:
    if not rows:
        return
    person = np.array([r[0] for r in rows], dtype=np.int64)
    day = np.array([18000 + r[1] for r in rows], dtype=np.int64)
    idx = np.random.default_rng(len(rows)).permutation(len(rows))  # claim ids are read through the input rows
    rank = np.zeros(len(rows), dtype=np.int64)
    rank[idx] = [r[2] for r in rows]
    shift = max(1, int(day.max() - day.min())).bit_length()
    key = person << shift | (day - day.min())
    order = kernel._sort_keys(key, rank, idx, shift + 3)
    assert order.tolist() == np.lexsort((np.arange(len(rows)), rank[idx], day, person)).tolist()
    assert np.all(np.diff(key) >= 0)  # the keys sorted in place


def test_long_runs_of_claims_on_one_day_keep_claim_id_order() -> None:
    rng = np.random.default_rng(1)
    m = 400
    day = np.zeros(m, dtype=np.int64)
    day[::7] += 3
    rank = rng.integers(0, 50, m).astype(np.int64)
    order = kernel._sort_keys(day.copy(), rank, np.arange(m), 2)
    assert order.tolist() == np.lexsort((np.arange(m), rank, day)).tolist()
