"""Invariants of DESIGN.md §3 on random policies and populations (shapes in tests/gen_policies.py)."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from policy_lang import interp
from policy_lang.data import Dataset
from policy_lang.graph import Flat, Graph, PAdmission, Pred, Prev, Program, Tiered
from tests.gen_policies import Case, DrawChooser, build_case, gen_case

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _case(data: st.DataObject) -> tuple[Case, Any]:
    case = gen_case(DrawChooser(data.draw))
    built = build_case(case)
    if built is None:
        reject()
    return case, built


def _run(built: Any, case: Case, persons: Any = None, claims: Any = None, trace: str | None = None) -> Any:
    data = Dataset(persons if persons is not None else case.persons, claims if claims is not None else case.claims)
    try:
        return interp.run(built.graph, data, case.options, trace_person=trace)
    except interp.EvalError:
        reject()


@SETTINGS
@given(st.data())
def test_conservation_no_negative_payment_no_cap_exceeded_no_more_than_the_base(data: st.DataObject) -> None:
    case, built = _case(data)
    traced = case.persons[0].person_id if case.persons else None
    result = _run(built, case, trace=traced)
    by_id = {c.claim_id: c for c in case.claims}
    for r in result.claims:
        assert sum(r.payments) + r.out_of_pocket == by_id[r.claim_id].total_cost  # conservation
        assert all(p >= 0 for p in r.payments)
    for traces in result.traces.values():
        for t in traces:
            assert t.payment <= t.base  # a layer never pays more than the base offered to it
            if t.cap_left is not None:
                assert t.payment <= t.cap_left  # nor more than its year cap leaves
            if t.pool is not None:
                assert t.payment <= t.pool[1]


@SETTINGS
@given(st.data(), st.integers(1, 500_000))
def test_payments_never_fall_when_a_claim_costs_more(data: st.DataObject, extra: int) -> None:
    case, built = _case(data)
    if not case.claims:
        reject()
    index = data.draw(st.integers(0, len(case.claims) - 1))
    claim = case.claims[index]
    dearer = attrs.evolve(claim, eligible_cost=claim.eligible_cost + extra, total_cost=claim.total_cost + extra)
    before = _run(built, case)
    after = _run(built, case, claims=(*case.claims[:index], dearer, *case.claims[index + 1:]))
    year = claim.date.year
    for a, b in zip(before.persons, after.persons, strict=True):
        if a.person_id == claim.person_id and a.year == year:
            assert sum(b.payments) >= sum(a.payments)


@st.composite
def _per_year_policy(draw: st.DrawFn) -> str:
    """A policy whose every layer works per person-year (the shape where splitting a claim changes nothing)."""
    layers = []
    for i in range(draw(st.integers(1, 3))):
        kinds = draw(st.sampled_from(["inpatient", "inpatient, chronic_outpatient", "outpatient, maternity"]))
        body = [f"scope kind in ({kinds})", f"deductible {draw(st.integers(0, 3000))} per year"]
        if draw(st.booleans()):
            body.append(f"rate {draw(st.integers(1, 100))}%")
        else:
            axis = draw(st.sampled_from(["on payable", "on base"]))
            body.append(f"tiers {axis} {{ 0 to 5000: {draw(st.integers(0, 100))}%; above 5000: "
                        f"{draw(st.integers(0, 100))}% }}")
        if draw(st.booleans()):
            body.append(f"cap {draw(st.integers(100, 20000))} per year")
            if draw(st.booleans()):
                body.append(f"cap {draw(st.integers(100, 20000))} per year effective 2023-07-01")
        if draw(st.booleans()):
            body.append(f"by identity {draw(st.sampled_from(['best', 'order']))} {{ dibao {{ rate "
                        f"{draw(st.integers(1, 100))}% }} tekun {{ deductible 0 per year rate 90% }} }}")
        layers.append(f'layer l{i} "l{i}" fund basic_fund {{ ' + " ".join(body) + " }")
    return 'policy p "p" effective 2019-01-01 source "assumed" {\n' + "\n".join(layers) + "\n}\n"


@SETTINGS
@given(st.data(), _per_year_policy())
def test_splitting_a_claim_changes_nothing_when_every_layer_works_per_year(data: st.DataObject, text: str) -> None:
    case = gen_case(DrawChooser(data.draw))
    case = attrs.evolve(case, files={"main.pol": text}, main="main.pol", options=interp.Options())
    built = build_case(case)
    assert built is not None, text
    assert _per_year_only(built.graph)
    plain = [c for c in case.claims if c.tcm_cost == 0 and c.material_over_limit == 0 and c.bed_days == 0
             and c.eligible_cost >= 2]
    if not plain:
        reject()
    claim = data.draw(st.sampled_from(plain))
    cut = data.draw(st.integers(1, claim.eligible_cost - 1))
    out_of_list = claim.total_cost - claim.eligible_cost
    first = attrs.evolve(claim, claim_id=claim.claim_id + "_1", eligible_cost=cut, total_cost=cut + out_of_list)
    second = attrs.evolve(claim, claim_id=claim.claim_id + "_2", eligible_cost=claim.eligible_cost - cut,
                          total_cost=claim.eligible_cost - cut)
    split = (*(c for c in case.claims if c is not claim), first, second)
    assert _run(built, case).persons == _run(built, case, claims=split).persons, text


@SETTINGS
@given(st.data())
def test_the_same_input_gives_the_same_output(data: st.DataObject) -> None:
    case, built = _case(data)
    assert _run(built, case) == _run(built, case)


def _per_year_only(graph: Graph) -> bool:
    """Every layer works on person-year amounts: yearly deductibles, no per-claim caps, units or bonuses."""
    for epoch in graph.epochs:
        for v in epoch.layers:
            if v is None:
                continue
            if any(r.value != "year" for r in v.period.rules) or v.cap_claim.rules or v.bonus.rules:
                return False
            if any(not isinstance(r.value, Flat | Tiered | None) for r in v.pricing.rules):
                return False
            programs: list[Program[Any]] = [v.deductible, v.pricing, v.cap_year, v.accumulator]
            if any(_uses_admission(r.pred) or _has_prev(r.value) for p in programs for r in p.rules):
                return False
            if _uses_admission(v.scope):
                return False
    return True


def _uses_admission(pred: Pred) -> bool:
    if isinstance(pred, PAdmission):
        return True
    return any(_uses_admission(p) for p in getattr(pred, "items", ())) or (
        hasattr(pred, "item") and _uses_admission(pred.item))


def _has_prev(value: object) -> bool:
    if isinstance(value, Prev):
        return True
    return any(_has_prev(getattr(value, f)) for f in ("left", "right", "rate") if hasattr(value, f))
