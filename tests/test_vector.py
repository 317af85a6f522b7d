"""The vector evaluator against hand-derived amounts, each mechanism on its own, always beside interp."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
import pytest

from policy_lang import interp, vector
from policy_lang.columns import from_dataset
from policy_lang.data import Dataset
from policy_lang.pipeline import Built, build
from policy_lang.testing import run_tests
from tests.helpers import build_source, dataset

Row = Mapping[str, object]
HEAD = 'effective 2019-01-01 schemes resident source "test"'
P1 = {"person_id": "p1", "scheme": "resident"}


def policy(body: str, head: str = HEAD) -> str:
    return f'policy t "test" {head} {{\n{body}\n}}\n'


def claim(cid: str, day: str, kind: str = "inpatient", level: int = 1, total: object = 1000,
          eligible: object = None, person: str = "p1", **extra: object) -> dict[str, object]:
    row = {"claim_id": cid, "person_id": person, "date": day, "kind": kind, "hospital_level": level,
           "total_cost": total, "eligible_cost": total if eligible is None else eligible}
    row.update(extra)
    return row


def both(built: Built, persons: Sequence[Row], claims: Sequence[Row],
         options: interp.Options = interp.Options()) -> interp.Result:
    """Run interp and vector; they must agree exactly; return the (common) result."""
    data = dataset(built, persons, claims)
    want = interp.run(built.graph, data, options)
    got = vector.run(built.graph, data, options)
    assert got.claims == want.claims
    assert got.persons == want.persons
    return got


def pays(result: interp.Result, layer: str) -> dict[str, int]:
    """Fen paid by one layer on each claim."""
    i = result.layers.index(layer)
    return {c.claim_id: c.payments[i] for c in result.claims}


def year(result: interp.Result, person: str, y: int = 2019) -> interp.PersonYear:
    return next(p for p in result.persons if p.person_id == person and p.year == y)


def test_per_admission_deductible_halved_from_the_second_admission(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer basic "b" fund basic_fund { scope kind = inpatient deductible by level 200 / 500 / 800 per admission '
        "when admission >= 2 { deductible ×50% } rate 80% }"))
    r = both(built, [P1], [claim("c1", "2019-02-01", level=2, total=3000),
                           claim("o1", "2019-02-15", kind="outpatient", total=100),
                           claim("c2", "2019-03-01", level=3, total=2000),
                           claim("c3", "2019-04-01", level=1, total=1000)])
    # c1 1st admission, level 2: (3000 − 500) × 80% = 2000.00
    # o1 is outside the scope: no admission, no payment
    # c2 2nd admission, level 3: 800 × 50% = 400; (2000 − 400) × 80% = 1280.00
    # c3 3rd admission, level 1: 200 × 50% = 100; (1000 − 100) × 80% = 720.00
    assert pays(r, "basic") == {"c1": 200000, "o1": 0, "c2": 128000, "c3": 72000}


def test_per_year_deductible_with_a_tcm_reduction_on_some_claims(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer op "o" fund basic_fund { scope kind = chronic_outpatient deductible 600 per year '
        "rule tcm when tcm_institution { deductible -100 } rate 60% }"))
    r = both(built, [P1], [claim("c1", "2019-03-01", kind="chronic_outpatient", total=400),
                           claim("c2", "2019-04-01", kind="chronic_outpatient", total=300, tcm_institution="true"),
                           claim("c3", "2019-05-01", kind="chronic_outpatient", total=1000)])
    # each claim uses its own deductible against the base accumulated before it:
    # c1: D 600, accumulated 0 → deductible part 400, nothing payable → 0
    # c2 (TCM): D 500, accumulated 400 → part 100; (300 − 100) × 60% = 120.00
    # c3: D 600, accumulated 700 → part 0; 1000 × 60% = 600.00
    assert pays(r, "op") == {"c1": 0, "c2": 12000, "c3": 60000}


@pytest.mark.parametrize(("axis", "second"), [("base", 260000), ("payable", 230000)])
def test_marginal_tiers_on_either_axis(tmp_path: Path, axis: str, second: int) -> None:
    built = build_source(tmp_path, policy(
        f'layer ci "c" fund critical_illness_fund {{ deductible 1000 per year '
        f"tiers on {axis} {{ 0 to 5000: 50%; above 5000: 80% }} }}"))
    r = both(built, [P1], [claim("c1", "2019-03-01", total=3000), claim("c2", "2019-04-01", total=4000)])
    # c1: deductible part 1000, payable 2000.
    #   on base:    segment [1000, 3000] all below 5000 → 2000 × 50% = 1000.00
    #   on payable: segment [0, 2000] → 1000.00
    # c2: no deductible left, payable 4000.
    #   on base:    [3000, 7000] → 2000 × 50% + 2000 × 80% = 1000 + 1600 = 2600.00
    #   on payable: [2000, 6000] → 3000 × 50% + 1000 × 80% = 1500 + 800 = 2300.00
    assert pays(r, "ci") == {"c1": 100000, "c2": second}


def test_mid_year_cap_rise_counts_earlier_payments(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer op "o" fund basic_fund { scope kind = outpatient rate 50% cap 2000 per year '
        "cap 5000 per year effective 2019-10-01 }"))
    r = both(built, [P1], [claim(f"c{i}", d, kind="outpatient", total=t) for i, (d, t) in enumerate(
        [("2019-01-10", 3000), ("2019-06-10", 2000), ("2019-10-10", 8000), ("2019-11-10", 1000)])])
    # Jan: 3000 × 50% = 1500 (cap 2000); Jun: 1000 but only 500 left → 500;
    # Oct: cap 5000 and 2000 already paid → 4000 asked, 3000 left → 3000; Nov: nothing left → 0
    assert pays(r, "op") == {"c0": 150000, "c1": 50000, "c2": 300000, "c3": 0}
    assert year(r, "p1").payments == (500000,)


def test_mid_year_cap_fall_pays_nothing_more(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer op "o" fund basic_fund { scope kind = outpatient rate 50% cap 5000 per year '
        "cap 2000 per year effective 2019-07-01 }"))
    people = [P1, {"person_id": "p2", "scheme": "resident"}]
    r = both(built, people, [
        claim("a1", "2019-01-10", kind="outpatient", total=6000), claim("a2", "2019-08-10", kind="outpatient", total=1000),
        claim("b1", "2019-03-10", kind="outpatient", total=2000, person="p2"),
        claim("b2", "2019-08-10", kind="outpatient", total=3000, person="p2")])
    # p1: Jan 3000 (under 5000); Aug: cap falls to 2000 with 3000 paid → 0
    # p2: Mar 1000; Aug: 1500 asked, 2000 − 1000 = 1000 left → 1000
    assert pays(r, "op") == {"a1": 300000, "a2": 0, "b1": 100000, "b2": 100000}


def test_scope_that_starts_mid_year(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer op "o" fund basic_fund { scope kind = outpatient deductible 500 per year rate 50% }\n'
        'layer extra "new from Oct" fund provincial_finance effective 2019-10-01 { scope kind = outpatient '
        "rate 50% }"))
    r = both(built, [P1], [claim("c1", "2019-09-30", kind="outpatient", total=1000),
                           claim("c2", "2019-10-01", kind="outpatient", total=1000)])
    # op: c1 (1000 − 500) × 50% = 250; c2 1000 × 50% = 500 (the year deductible is used up)
    # extra, from 2019-10-01 on what op left: c1 not in force → 0; c2 (1000 − 500) × 50% = 250
    assert pays(r, "op") == {"c1": 25000, "c2": 50000}
    assert pays(r, "extra") == {"c1": 0, "c2": 25000}


_BEST = policy(
    'layer aid "a" fund assistance_fund { cap 1000 per year by identity best { '
    "tekun { rate 70% deductible 500 per year } dibao { rate 50% } } }")


def test_best_identity_ties_go_to_the_first_declared(tmp_path: Path) -> None:
    built = build_source(tmp_path, _BEST)
    person = {"person_id": "p1", "scheme": "resident", "identities": "dibao;tekun"}
    r = both(built, [person], [claim("c1", "2019-03-01", total=1000), claim("c2", "2019-05-01", total=1000)])
    # as tekun: c1 (1000 − 500) × 70% = 350; c2 1000 × 70% = 700, capped to 650 left → year 1000
    # as dibao: 500 + 500 → year 1000. A tie: tekun, declared first, is kept
    assert pays(r, "aid") == {"c1": 35000, "c2": 65000}


def test_best_identity_takes_the_larger_year_total(tmp_path: Path) -> None:
    built = build_source(tmp_path, _BEST)
    person = {"person_id": "p1", "scheme": "resident", "identities": "tekun;dibao"}
    r = both(built, [person], [claim("c1", "2019-03-01", total=600)])
    # as tekun: (600 − 500) × 70% = 70; as dibao: 600 × 50% = 300 → dibao
    assert pays(r, "aid") == {"c1": 30000}


def test_identity_granted_mid_year(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer aid "a" fund assistance_fund { rate 50% by identity { dibao { rate 80% } } }'))
    person = {"person_id": "p1", "scheme": "resident", "identities": "dibao@2023-03-01"}
    r = both(built, [person], [claim("c1", "2023-02-28", total=1000), claim("c2", "2023-03-01", total=1000)])
    # before the grant the general 50% applies; from the day it is granted, 80%
    assert pays(r, "aid") == {"c1": 50000, "c2": 80000}


def test_exception_beats_a_general_reduction(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer co "c" fund basic_fund { scope kind = chronic_outpatient deductible 600 per year rate 60% '
        "rule tcm when tcm_institution { deductible -100 } "
        "exception severe when diseases has uremia over tcm { deductible 0 } }"))
    people = [P1, {"person_id": "p2", "scheme": "resident"}]
    r = both(built, people, [
        claim("c1", "2019-03-01", kind="chronic_outpatient", tcm_institution="true", diseases="uremia"),
        claim("c2", "2019-03-01", kind="chronic_outpatient", tcm_institution="true", person="p2")])
    # c1: the uremia exception (deductible 0) wins over the TCM −100: 1000 × 60% = 600
    # c2: TCM only: deductible 500 → (1000 − 500) × 60% = 300
    assert pays(r, "co") == {"c1": 60000, "c2": 30000}


def test_shared_cap_between_two_layers(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer inp "i" fund basic_fund { scope kind = inpatient rate 50% }\n'
        'layer chr "c" fund basic_fund { scope kind = chronic_outpatient rate 50% cap 800 per year }\n'
        "shared cap both 1000 per year for inp, chr"))
    r = both(built, [P1], [claim("c1", "2019-01-10", kind="chronic_outpatient", total=1200),
                           claim("c2", "2019-02-10", total=600),
                           claim("c3", "2019-03-10", kind="chronic_outpatient", total=1000),
                           claim("c4", "2019-04-10", total=1000)])
    # c1 chr: 600 (own cap 800, pool 1000) → 600; c2 inp: 300, pool left 400 → 300
    # c3 chr: 500, own cap left 200 → 200, pool left 100 → 100; c4 inp: 500, pool empty → 0
    assert pays(r, "chr") == {"c1": 60000, "c2": 0, "c3": 10000, "c4": 0}
    assert pays(r, "inp") == {"c1": 0, "c2": 30000, "c3": 0, "c4": 0}


def test_shared_cap_that_lapses_before_the_scopes_overlap(tmp_path: Path) -> None:
    base = policy('layer a "a" fund basic_fund { scope kind = inpatient rate 50% cap 1000 per year }\n'
                  'layer c "c" fund basic_fund { scope kind = chronic_outpatient rate 50% }\n'
                  "shared cap both 800 per year for a, c effective 2019-01-01 until 2019-06-30")
    amend = ('import "base.pol"\npolicy m "m" amends t effective 2019-07-01 source "test" {\n'
             "  layer c { scope kind in (inpatient, chronic_outpatient) }\n}\n")
    built = build_source(tmp_path, amend, {"base.pol": base})
    r = both(built, [P1], [claim("c1", "2019-01-10", kind="chronic_outpatient"), claim("c2", "2019-02-10"),
                           claim("c3", "2019-08-10"), claim("c4", "2019-09-10")])
    # c1 c: 500 (pool 800 → 300 left); c2 a: 500 asked, pool 300 → 300 (a has paid 300)
    # c3: pool lapsed; a 500 (cap 1000, 800 paid); c, now also inpatient, on 1000 − 500: 250
    # c4: a 500 asked, 200 left under its own cap → 200; c on 1000 − 200: 400. The year's layers are
    # evaluated claim by claim together, so c4's base depends on a's pool-limited payment of February.
    assert pays(r, "a") == {"c1": 0, "c2": 30000, "c3": 50000, "c4": 20000}
    assert pays(r, "c") == {"c1": 50000, "c2": 0, "c3": 25000, "c4": 40000}


def test_per_claim_cap_on_the_exact_amount(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 85% cap 300.05 per claim }'))
    r = both(built, [P1], [claim("c1", "2019-01-10", total=1000), claim("c2", "2019-02-10", total="0.10"),
                           claim("c3", "2019-03-10", total="0.10")])
    # c1: 850.00 capped to 300.05 (30005 fen exactly); c2: 8.5 fen below the cap, the cumulative
    # 30013.5 rounds to 30014 → 9 fen; c3: cumulative 30022 → 8 fen
    assert pays(r, "l") == {"c1": 30005, "c2": 9, "c3": 8}


def test_unit_pricing_with_a_supplied_parameter(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        "param bed_rate: money unspecified\n"
        'layer beds "b" fund assistance_fund { scope kind = inpatient unit_rate bed_rate per bed_days }'))
    claims = [claim("c1", "2019-01-10", total=400, bed_days=10), claim("c2", "2019-02-10", total=1000, bed_days=3)]
    r = both(built, [P1], claims, interp.Options(settings={"bed_rate": 5000}))
    # 50 yuan a bed-day: c1 min(400, 10 × 50) = 400; c2 min(1000, 3 × 50) = 150
    assert pays(r, "beds") == {"c1": 40000, "c2": 15000}
    data = dataset(built, [P1], claims)
    with pytest.raises(interp.EvalError) as want:
        interp.run(built.graph, data)
    with pytest.raises(interp.EvalError) as got:
        vector.run(built.graph, data)
    assert str(got.value) == str(want.value)
    assert "claim c1 needs the parameter `bed_rate`" in str(got.value)


def test_missing_parameter_error_names_the_claim_interp_meets_first(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        "param x: money unspecified\nparam y: money unspecified\n"
        'layer a "a" fund basic_fund { scope kind = outpatient unit_rate x per bed_days }\n'
        'layer b "b" fund basic_fund { scope kind = inpatient unit_rate y per bed_days }'))
    people = [P1, {"person_id": "p2", "scheme": "resident"}]
    # persons are taken in file order, then layers: p1's inpatient claim (layer b) comes before
    # p2's outpatient claim (layer a)
    data = dataset(built, people, [claim("q", "2019-01-01", kind="outpatient", person="p2"),
                                   claim("z", "2019-05-01", person="p1"), claim("a", "2019-06-01", person="p1")])
    messages = []
    for engine in (interp.run, vector.run):
        with pytest.raises(interp.EvalError) as err:
            engine(built.graph, data)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("claim z needs the parameter `y`")


def test_bonus_on_tcm_cost_keeps_the_rate_at_most_100(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer l "l" fund basic_fund { deductible 100 per claim rate 95% bonus 10% on tcm_cost }'))
    r = both(built, [P1], [claim("c1", "2019-01-10", total=1000, tcm_cost=400),
                           claim("c2", "2019-02-10", total=1000, tcm_cost=1000)])
    # the bonus is capped at 100% − 95% = 5 points, on min(tcm_cost, payable):
    # c1: 900 × 95% = 855 + 400 × 5% = 20 → 875.00; c2: 855 + min(1000, 900) × 5% = 45 → 900.00
    assert pays(r, "l") == {"c1": 87500, "c2": 90000}


def test_half_up_rounding_on_the_cumulative(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 85% }'))
    r = both(built, [P1], [claim(f"c{i}", f"2019-0{i + 1}-01", total="0.10") for i in range(3)])
    # exact cumulatives 8.5, 17, 25.5 fen round half-up to 9, 17, 26: payments 9, 8, 9 fen
    assert pays(r, "l") == {"c0": 9, "c1": 8, "c2": 9}
    assert year(r, "p1").payments == (26,)


def test_previous_deductible_is_counted_on_a_referral(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer basic "b" fund basic_fund { scope kind = inpatient deductible by level 200 / 500 / 800 per admission '
        "rule referral when referred { deductible max(base_value - previous_deductible, 0) } rate 50% }"))
    r = both(built, [P1], [claim("c1", "2019-01-10", level=2, total=2000),
                           claim("c2", "2019-02-10", level=3, total=2000, referred="true"),
                           claim("c3", "2019-03-10", level=3, total=2000, referred="true")])
    # c1: deductible 500 → 750; c2: 800 − 500 = 300 → 850; c3: 800 − 300 (charged on c2) = 500 → 750
    assert pays(r, "basic") == {"c1": 75000, "c2": 85000, "c3": 75000}


def test_separate_accumulators(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        'layer ci "c" fund critical_illness_fund { deductible 1000 per year rate 50% '
        "rule designated when designation = county_poverty { accumulate designated } }"))
    r = both(built, [P1], [claim("c1", "2019-01-10", total=800), claim("c2", "2019-02-10", total=800,
                                                                          designation="county_poverty"),
                           claim("c3", "2019-03-10", total=800)])
    # c1: main accumulator: 800 all deductible → 0; c2: its own accumulator, 800 deductible → 0
    # c3: main has 800: deductible part 200 → (800 − 200) × 50% = 300
    assert pays(r, "ci") == {"c1": 0, "c2": 0, "c3": 30000}


def test_as_of_pays_every_claim_under_one_date(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 50% rate 80% effective 2019-10-01 }'))
    claims = [claim("c1", "2019-03-01"), claim("c2", "2019-11-01")]
    assert pays(both(built, [P1], claims), "l") == {"c1": 50000, "c2": 80000}
    as_of = interp.Options(as_of=datetime.date(2019, 12, 1))
    assert pays(both(built, [P1], claims, as_of), "l") == {"c1": 80000, "c2": 80000}


def test_alerts_and_subsidies(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy(
        "param premium: money = 380\n"
        'layer basic "b" fund basic_fund { scope kind = inpatient rate 50% }\n'
        'alert risk "r" { measure burden after basic where kind in (inpatient) '
        "when identities has any (dibao) { threshold 5000 } when true { threshold 20000 } }\n"
        'subsidy help "h" best { amount premium dibao: 100% near_dibao: 60% }'))
    people = [{"person_id": "p1", "scheme": "resident", "identities": "dibao"},
              {"person_id": "p2", "scheme": "resident"},
              {"person_id": "p3", "scheme": "resident", "identities": "near_dibao@2019-06-01"}]
    r = both(built, people, [claim("c1", "2019-03-01", total=12000), claim("c2", "2019-03-01", total=12000, person="p2")])
    # burden after basic = 12000 − 6000 = 6000: p1 (dibao, threshold 5000) alerted; p2 (20000) not
    # premium subsidy: p1 dibao 100% = 380; p3 near_dibao 60% = 228 (held by Dec 31); p2 none
    assert year(r, "p1").alerts == ("risk",) and year(r, "p2").alerts == ()
    assert year(r, "p1").subsidies == (("help", 38000),)
    assert year(r, "p3").subsidies == (("help", 22800),)
    assert year(r, "p2").subsidies == ()


def test_claim_ids_absent_sort_as_text(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 50% cap 600 per year }'))
    # eleven claims on one day: without ids they are "0" … "10", and "10" sorts before "2"
    rows = [claim(str(i), "2019-05-01", total=100 * (i + 1)) for i in range(11)]
    data = dataset(built, [P1], rows)
    want = interp.run(built.graph, data)
    cols = from_dataset(data, built.graph)
    cols = attrs.evolve(cols, claims=attrs.evolve(cols.claims, claim_id=None))
    got = vector.run_columns(built.graph, cols)
    assert got.payments[:, 0].tolist() == [c.payments[0] for c in want.claims]
    # order 0, 1, 10, 2, …: 50 + 100 + 550 (cap 600 reached) → nothing after "10"
    assert got.payments[:, 0].tolist()[:3] == [5000, 10000, 0] and got.payments[10, 0] == 45000


def test_columns_from_dataset_round_trip(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 50% }'))
    data = dataset(built, [{"person_id": "p1", "scheme": "employee", "identities": "dibao@2019-03-01;tekun",
                            "chronic": "diabetes", "age": "61", "sex": "F"}],
                   [claim("c1", "2019-05-01", kind="chronic_outpatient", level=2, diseases="uremia;hypertension",
                          tcm_cost="1.5")])
    cols = from_dataset(data, built.graph)
    cols.check()
    p, c = cols.persons, cols.claims
    assert [cols.identity_names[i] for i in p.grant_identity] == ["dibao", "tekun"]
    assert p.grant_since[1] < p.grant_since[0] and p.age.tolist() == [61] and p.sex.tolist() == [1]
    assert sorted(cols.disease_names[d] for d in c.disease_code) == ["hypertension", "uremia"]
    assert c.tcm_cost.tolist() == [150] and c.kind.tolist() == [2] and c.level.tolist() == [2]


def test_empty_data(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 50% }'))
    assert vector.run(built.graph, Dataset((), ())) == interp.run(built.graph, Dataset((), ()))
    options = interp.Options(as_of=datetime.date(2019, 6, 1))
    data = dataset(built, [P1], [])
    assert vector.run(built.graph, data, options) == interp.run(built.graph, data, options)


def test_results_are_numpy_per_person_year(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 50% }'))
    data = dataset(built, [P1], [claim("c1", "2019-05-01"), claim("c2", "2020-05-01", total=3000)])
    got = vector.run_columns(built.graph, from_dataset(data, built.graph))
    assert got.py_year.tolist() == [2019, 2020] and got.py_payments[:, 0].tolist() == [50000, 150000]
    assert np.array_equal(got.py_out_of_pocket, got.py_total_cost - got.py_payments.sum(axis=1))


@pytest.mark.parametrize("path", ["/tmp/p/base.pol", "policies/liaoning/resident-base.pol"])
def test_in_file_tests_pass_on_both_engines(path: str) -> None:
    source = Path(path) if Path(path).is_absolute() else Path(__file__).parent.parent / path
    if not source.exists():
        pytest.skip(f"{path} is not on this machine")
    built = build(source)
    engines = [("interp", lambda b, d, o: interp.run(b.graph, d, o)),
               ("vector", lambda b, d, o: vector.run(b.graph, d, o))]
    outcomes = run_tests(built, engines)
    assert outcomes and all(o.passed for o in outcomes), [o.failures for o in outcomes]


def test_claim_ids_rank_as_text_whether_or_not_they_come_in_order() -> None:
    # in order (a generated population, most files): their positions; else their places in text order
    assert vector._id_rank(np.array(["c08", "c09", "c10"]), 3).tolist() == [0, 1, 2]
    assert vector._id_rank(np.array(["c9", "c10", "c08"]), 3).tolist() == [2, 1, 0]  # "c08" < "c10" < "c9"
    assert vector._id_rank(np.array(["x", "x", "a"]), 3).tolist() == [1, 1, 0]  # not strictly in order
