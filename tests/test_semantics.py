"""Semantics of every language construct, each with amounts derived by hand from the rule it encodes."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from policy_lang import interp
from policy_lang.pipeline import build
from policy_lang.requirements import check_against
from tests.helpers import build_source, evaluate, paid, write

P = {"person_id": "p1", "scheme": "resident"}


def claim(cid: str, day: str, kind: str = "inpatient", level: int = 1, total: object = 1000,
          eligible: object = None, **extra: object) -> dict[str, object]:
    row = {"claim_id": cid, "person_id": "p1", "date": day, "kind": kind, "hospital_level": level,
           "total_cost": total, "eligible_cost": total if eligible is None else eligible}
    row.update(extra)
    return row


def policy(body: str, head: str = 'effective 2019-01-01 schemes resident source "assumed: test"') -> str:
    return f'policy t "test" {head} {{\n{body}\n}}\n'


def test_money_literals_are_exact_yuan(tmp_path: Path) -> None:
    # 1.2万元 = 12000 yuan deductible; rate 50%: (20000 − 12000) × 50% = 4000
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { deductible 1.2万元 per claim rate 50% }'))
    r = evaluate(built, [P], [claim("c1", "2019-05-01", total="20,000".replace(",", ""))])
    assert paid(r, "c1") == {"l": "4000.00", "out_of_pocket": "16000.00"}


def test_second_admission_halves_the_deductible(tmp_path: Path) -> None:
    src = policy('layer basic "b" fund basic_fund { scope kind = inpatient '
                 'deductible by level 200 / 500 / 800 per admission when admission >= 2 { deductible ×50% } '
                 'rate 80% }')
    built = build_source(tmp_path, src)
    # c1 level 3: (2000 − 800) × 80% = 960; c2 (2nd admission) level 3: (2000 − 400) × 80% = 1280;
    # an outpatient claim between them is outside the scope and is no admission
    r = evaluate(built, [P], [claim("c1", "2019-02-01", level=3, total=2000),
                              claim("o1", "2019-02-15", kind="outpatient", total=100),
                              claim("c2", "2019-03-01", level=3, total=2000)])
    assert paid(r, "c1")["basic"] == "960.00"
    assert paid(r, "o1")["basic"] == "0.00"
    assert paid(r, "c2")["basic"] == "1280.00"


def test_mid_year_cap_rise_counts_earlier_payments(tmp_path: Path) -> None:
    # 二(三) of 辽医保发〔2019〕15号 shape: cap 2000 until 2019-09-30, 5000 from 2019-10-01.
    src = policy('layer op "门诊统筹" fund basic_fund { scope kind = outpatient rate 50% cap 2000 per year '
                 'cap 5000 per year effective 2019-10-01 }')
    built = build_source(tmp_path, src)
    # Jan: 3000 × 50% = 1500; Jun: 2000 × 50% = 1000, only 500 left under 2000 → 500;
    # Oct: cap 5000, paid so far 2000: 8000 × 50% = 4000 → 3000 left → 3000; Nov: nothing left
    r = evaluate(built, [P], [claim(f"c{i}", d, kind="outpatient", total=t) for i, (d, t) in enumerate(
        [("2019-01-10", 3000), ("2019-06-10", 2000), ("2019-10-10", 8000), ("2019-11-10", 1000)])])
    assert [paid(r, f"c{i}")["op"] for i in range(4)] == ["1500.00", "500.00", "3000.00", "0.00"]
    assert r.persons[0].payments == (500_000,)


def test_mid_year_cap_fall_pays_nothing_more(tmp_path: Path) -> None:
    src = policy('layer op "o" fund basic_fund { rate 50% cap 3000 per year '
                 'cap 2000 per year effective 2020-07-01 }')
    built = build_source(tmp_path, src)
    # Jan 2020: 5000 × 50% = 2500 (under 3000); Aug: the cap is 2000 < 2500 paid → 0
    r = evaluate(built, [P], [claim("c1", "2020-01-10", total=5000), claim("c2", "2020-08-10", total=1000)])
    assert paid(r, "c1")["op"] == "2500.00"
    assert paid(r, "c2")["op"] == "0.00"


def test_scope_that_starts_mid_year(tmp_path: Path) -> None:
    # maternity joins the outpatient pool's scope on 2019-10-01 (000 二(三))
    src = policy('layer op "o" fund basic_fund { scope kind = outpatient rate 70% '
                 'scope kind in (outpatient, maternity) effective 2019-10-01 }')
    built = build_source(tmp_path, src)
    r = evaluate(built, [P], [claim("a", "2019-09-30", kind="maternity", total=100),
                              claim("b", "2019-10-01", kind="maternity", total=100)])
    assert paid(r, "a")["op"] == "0.00"
    assert paid(r, "b")["op"] == "70.00"


def test_best_identity_wins_by_person_year_total(tmp_path: Path) -> None:
    # dibao: 70% capped at 1000; near_dibao: 50%, no cap.
    src = policy('layer a "救助" fund assistance_fund { by identity best { '
                 'dibao { rate 70% cap 1000 per year } near_dibao { rate 50% } } }')
    built = build_source(tmp_path, src)
    person = {**P, "identities": "dibao;near_dibao"}
    # a year of 1000: dibao 700 vs near_dibao 500 → dibao
    r = evaluate(built, [person], [claim("c1", "2019-03-01", total=1000)])
    assert paid(r, "c1")["a"] == "700.00"
    # a year of 4000: dibao 1000 (capped) vs near_dibao 2000 → near_dibao, on every claim of the year
    r = evaluate(built, [person], [claim("c1", "2019-03-01", total=1000), claim("c2", "2019-04-01", total=3000)])
    assert (paid(r, "c1")["a"], paid(r, "c2")["a"]) == ("500.00", "1500.00")


def test_order_precedence_takes_the_first_declared(tmp_path: Path) -> None:
    src = policy('layer a "救助" fund assistance_fund { by identity order { '
                 'near_dibao { rate 50% } dibao { rate 70% } } }')
    built = build_source(tmp_path, src)
    r = evaluate(built, [{**P, "identities": "dibao;near_dibao"}], [claim("c1", "2019-03-01", total=1000)])
    assert paid(r, "c1")["a"] == "500.00"


def test_identity_granted_mid_year_applies_from_its_date(tmp_path: Path) -> None:
    src = policy('layer a "救助" fund assistance_fund { by identity best { dibao { rate 70% } } }')
    built = build_source(tmp_path, src)
    r = evaluate(built, [{**P, "identities": "dibao@2019-06-01"}],
                 [claim("c1", "2019-05-31", total=1000), claim("c2", "2019-06-01", total=1000)])
    assert (paid(r, "c1")["a"], paid(r, "c2")["a"]) == ("0.00", "700.00")


def test_exception_beats_a_general_reduction(tmp_path: Path) -> None:
    # 004 二(二): deductible 600; TCM institutions −100; uremia no deductible, over the TCM rule.
    src = policy('layer co "门诊慢病" fund basic_fund { deductible 600 per year rate 60% '
                 'exception tcm when tcm_institution { deductible -100 } '
                 'exception uremia when diseases has any (uremia, hemophilia, severe_mental) over tcm '
                 '{ deductible 0 } }')
    built = build_source(tmp_path, src)
    # TCM: (1000 − 500) × 60% = 300; uremia at a TCM institution: 1000 × 60% = 600
    r = evaluate(built, [P], [claim("c1", "2019-03-01", total=1000, tcm_institution="true")])
    assert paid(r, "c1")["co"] == "300.00"
    r = evaluate(built, [P], [claim("c1", "2019-03-01", total=1000, tcm_institution="true", diseases="uremia")])
    assert paid(r, "c1")["co"] == "600.00"


def test_equal_reductions_apply_once(tmp_path: Path) -> None:
    # 004 四: −100 at a TCM institution and −100 for pure TCM: not stacked.
    src = policy('layer b "住院" fund basic_fund { deductible 500 per claim rate 50% '
                 'exception inst when tcm_institution { deductible -100 } '
                 'exception pure when pure_tcm { deductible -100 } }')
    built = build_source(tmp_path, src)
    r = evaluate(built, [P], [claim("c1", "2019-03-01", total=1400, tcm_institution="true", pure_tcm="true")])
    assert paid(r, "c1")["b"] == "500.00"  # (1400 − 400) × 50%


def test_a_document_that_expires_gives_back_the_old_values(tmp_path: Path) -> None:
    base = policy('layer op "o" fund basic_fund { rate 45% cap 200 per year }')
    amend = ('import "base.pol"\npolicy new "n" amends t document "新文件" effective 2021-09-01 until 2024-08-31 {\n'
             '  layer op { rate max(base_value + 10%, 50%) source "一(一)" cap 300 per year source "一(一)" }\n}\n')
    write(tmp_path, {"base.pol": base, "new.pol": amend})
    built = build(tmp_path / "new.pol")
    # 45% + 10 points = 55% (≥ 50%); on 2024-08-31 in force, on 2024-09-01 lapsed back to 45%
    r = evaluate(built, [P], [claim("a", "2021-08-31", total=100), claim("b", "2021-09-01", total=100),
                              claim("c", "2024-08-31", total=100), claim("d", "2024-09-01", total=100)])
    assert [paid(r, x)["op"] for x in "abcd"] == ["45.00", "55.00", "55.00", "45.00"]


def test_half_up_rounding_on_the_cumulative_payment(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { rate 85% }'))
    # 0.10 × 85% = 8.5 fen → 9 fen; then 0.10 more: cumulative 17 fen exactly → this claim 8 fen
    r = evaluate(built, [P], [claim("c1", "2019-01-01", total="0.10"), claim("c2", "2019-01-02", total="0.10")])
    assert (paid(r, "c1")["l"], paid(r, "c2")["l"]) == ("0.09", "0.08")
    assert r.persons[0].payments == (17,)


def test_tiers_on_the_base_and_above_the_deductible(tmp_path: Path) -> None:
    src = policy('layer s "年度补助" fund civil_servant_fund { tiers on base { 5000 to 50000: 65% above 50000: 75% } } '
                 'layer t "大病" fund critical_illness_fund { base after deductible_none deductible 1000 per year '
                 'tiers { 0 to 2000: 50% above 2000: 60% } }'.replace("base after deductible_none ", ""))
    built = build_source(tmp_path, src)
    # s on 60000: (50000 − 5000) × 65% + 10000 × 75% = 29250 + 7500 = 36750; self-pay left 23250
    # t on 23250: above the deductible 22250: 2000 × 50% + 20250 × 60% = 1000 + 12150 = 13150
    r = evaluate(built, [P], [claim("c1", "2019-03-01", total=60000)])
    assert paid(r, "c1") == {"s": "36750.00", "t": "13150.00", "out_of_pocket": "10100.00"}


def test_tier_payment_is_spread_as_cumulative_differences(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer s "s" fund civil_servant_fund { '
                                          'tiers on base { 5000 to 50000: 65% above 50000: 75% } }'))
    # 3000 (below 5000) → 0; 4000: accumulated 7000 → 2000 × 65% = 1300; 50000: to 57000 → 43000 × 65%
    # + 7000 × 75% = 27950 + 5250 = 33200
    r = evaluate(built, [P], [claim("a", "2019-01-01", total=3000), claim("b", "2019-02-01", total=4000),
                              claim("c", "2019-03-01", total=50000)])
    assert [paid(r, x)["s"] for x in "abc"] == ["0.00", "1300.00", "33200.00"]


def test_per_claim_deductible_and_cap(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer l "l" fund basic_fund { deductible 10 per claim rate 45% '
                                          'cap 50 per claim cap 60 per year }'))
    # c1: (100 − 10) × 45% = 40.50; c2: (300 − 10) × 45% = 130.50 → 50 per claim → 19.50 left of 60
    r = evaluate(built, [P], [claim("c1", "2019-01-01", total=100), claim("c2", "2019-01-02", total=300)])
    assert (paid(r, "c1")["l"], paid(r, "c2")["l"]) == ("40.50", "19.50")


def test_shared_cap_between_two_layers(tmp_path: Path) -> None:
    src = policy('layer b "住院" fund basic_fund { scope kind = inpatient rate 90% } '
                 'layer c "门诊慢病" fund basic_fund { scope kind = chronic_outpatient rate 85% } '
                 'shared cap pool 10000 per year for b, c')
    built = build_source(tmp_path, src)
    # inpatient 10000 × 90% = 9000; chronic 2000 × 85% = 1700 but only 1000 left of the shared 10000
    r = evaluate(built, [P], [claim("i", "2019-01-01", total=10000),
                              claim("k", "2019-02-01", kind="chronic_outpatient", total=2000)])
    assert (paid(r, "i")["b"], paid(r, "k")["c"]) == ("9000.00", "1000.00")


def test_bonus_on_part_of_a_claim_is_capped_at_100_percent(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer b "住院" fund basic_fund { rate 95% bonus 10% on tcm_cost }'))
    # 1000 × 95% + min(10%, 5%) × 400 = 950 + 20 = 970
    r = evaluate(built, [P], [claim("c1", "2019-01-01", total=1000, tcm_cost=400)])
    assert paid(r, "c1")["b"] == "970.00"


def test_unit_rate_needs_its_unspecified_amount(tmp_path: Path) -> None:
    src = policy('param per_day: money unspecified\nlayer a "救助" fund assistance_fund { unit_rate per_day per bed_days }')
    built = build_source(tmp_path, src)
    rows = [claim("c1", "2019-01-01", total=5000, bed_days=10)]
    with pytest.raises(interp.EvalError, match="per_day"):
        evaluate(built, [P], rows)
    r = evaluate(built, [P], rows, interp.Options(settings={"per_day": 12000}))  # 120 yuan a day
    assert paid(r, "c1")["a"] == "1200.00"


def test_treat_as_and_relative_identity_values(tmp_path: Path) -> None:
    src = policy('layer a "救助" fund assistance_fund { by identity { dibao { rate 70% } } '
                 'treat relapse_poor as dibao }')
    built = build_source(tmp_path, src)
    r = evaluate(built, [{**P, "identities": "relapse_poor"}], [claim("c1", "2019-01-01", total=100)])
    assert paid(r, "c1")["a"] == "70.00"


def test_exclusive_layer_takes_its_claims_even_after_its_cap(tmp_path: Path) -> None:
    src = policy('layer two "两病" fund basic_fund exclusive of op { scope kind = outpatient and diseases has any '
                 '(hypertension, diabetes) rate 50% cap 100 per year } '
                 'layer op "门诊统筹" fund basic_fund { scope kind = outpatient rate 45% }')
    built = build_source(tmp_path, src)
    # two: 300 × 50% = 150 → 100 (cap); op pays nothing on it. A plain outpatient claim goes to op: 45
    r = evaluate(built, [P], [claim("c1", "2019-01-01", kind="outpatient", total=300, diseases="hypertension"),
                              claim("c2", "2019-01-02", kind="outpatient", total=100)])
    assert (paid(r, "c1")["two"], paid(r, "c1")["op"]) == ("100.00", "0.00")
    assert (paid(r, "c2")["two"], paid(r, "c2")["op"]) == ("0.00", "45.00")


def test_repeal_and_remove(tmp_path: Path) -> None:
    base = policy('layer a "a" fund basic_fund { rate 50% when referred { rate 80% } } '
                  'layer b "b" fund basic_fund { rate 10% }')
    mid = ('import "base.pol"\npolicy mid "m" amends t document "中间文件" effective 2020-01-01 {\n'
           '  layer a { rate 60% source "一" }\n}\n')
    new = ('import "mid.pol"\npolicy new "n" amends mid document "新文件" effective 2021-01-01 {\n'
           '  repeal mid source "五"\n  remove layer b source "六"\n'
           '  layer a { remove rule referred_rate source "七" }\n}\n')
    write(tmp_path, {"base.pol": base.replace("when referred", "rule referred_rate when referred"),
                     "mid.pol": mid, "new.pol": new})
    built = build(tmp_path / "new.pol")
    # 2020: mid in force → a 60% (referred 80%), b 10%; 2021: mid repealed (base 50%), b removed, rule removed
    r = evaluate(built, [P], [claim("x", "2020-06-01", total=100, referred="true"),
                              claim("y", "2021-06-01", total=100, referred="true")])
    assert (paid(r, "x")["a"], paid(r, "x")["b"]) == ("80.00", "2.00")
    assert (paid(r, "y")["a"], paid(r, "y")["b"]) == ("50.00", "0.00")


def test_chinese_keywords_give_the_same_policy(tmp_path: Path) -> None:
    en = policy('layer basic "住院" fund basic_fund { scope kind = inpatient deductible by level 200 / 500 / 800 '
                'per admission rate by level 85% / 75% / 60% cap 150000 per year }')
    zh = ('政策 t "test" 生效 2019-01-01 险种范围 居民 来源 "assumed: test" {\n'
          '  待遇层 basic "住院" 基金 basic_fund { 范围 就诊类型 = 住院 起付线 按级别 200 / 500 / 800 每次住院 '
          '比例 按级别 85% / 75% / 60% 封顶线 15万元 每年 }\n}\n')
    a = build_source(tmp_path / "en", en).graph.epochs[1].layers[0]
    b = build_source(tmp_path / "zh", zh).graph.epochs[1].layers[0]
    assert a is not None and b is not None
    assert a.scope == b.scope
    for slot in ("deductible", "period", "pricing", "cap_year"):
        assert [(r.pred, r.value) for r in getattr(a, slot).rules] == [(r.pred, r.value) for r in getattr(b, slot).rules]


def test_alerts_and_subsidies(tmp_path: Path) -> None:
    src = policy('param premium: money = 380\n'
                 'layer b "b" fund basic_fund { rate 50% }\n'
                 'alert risk "预警" { measure burden after b where kind = inpatient '
                 'when identities has any (dibao) { threshold 5000 } when true { threshold 20000 } }\n'
                 'subsidy s "资助" best { amount premium dibao: 100% near_dibao: 60% }')
    built = build_source(tmp_path, src)
    # burden = 12000 − 6000 = 6000 ≥ 5000 for dibao; < 20000 for others
    persons = [{**P, "identities": "near_dibao;dibao@2019-11-01"}, {"person_id": "p2", "scheme": "resident"}]
    claims = [claim("c1", "2019-03-01", total=12000), {**claim("c2", "2019-03-01", total=12000), "person_id": "p2"}]
    r = evaluate(built, persons, claims)
    years = {p.person_id: p for p in r.persons}
    assert years["p1"].alerts == ("risk",) and years["p2"].alerts == ()
    assert years["p1"].subsidies == (("s", 38_000),) and years["p2"].subsidies == ()


def test_continuity_of_deductibles_on_referral(tmp_path: Path) -> None:
    src = policy('layer b "住院" fund basic_fund { scope kind = inpatient deductible by level 200 / 500 / 800 '
                 'per admission rate 50% exception cont when referred { deductible - previous_deductible } }')
    built = build_source(tmp_path, src)
    # c1 level 1: 200 charged; c2 referred to level 3: 800 − 200 = 600 → (2000 − 600) × 50% = 700
    r = evaluate(built, [P], [claim("c1", "2019-01-01", total=1000),
                              claim("c2", "2019-02-01", level=3, total=2000, referred="true")])
    assert (paid(r, "c1")["b"], paid(r, "c2")["b"]) == ("400.00", "700.00")


def test_as_of_pays_every_claim_under_one_date(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer op "o" fund basic_fund { rate 50% rate 70% effective 2020-01-01 }'))
    rows = [claim("c1", "2019-06-01", total=100)]
    assert paid(evaluate(built, [P], rows), "c1")["op"] == "50.00"
    later = interp.Options(as_of=datetime.date(2020, 6, 1))
    assert paid(evaluate(built, [P], rows, later), "c1")["op"] == "70.00"


def test_conservation_holds_on_every_claim(tmp_path: Path) -> None:
    src = policy('layer b "b" fund basic_fund { rate 95% } layer c "c" fund basic_fund { rate 90% } '
                 'layer d "d" fund basic_fund { base after b plus material_over_limit rate 100% }')
    built = build_source(tmp_path, src)
    # d's base adds material_over_limit but never pays more than what is left of the total
    r = evaluate(built, [P], [claim("c1", "2019-01-01", total=1000, eligible=800, material_over_limit=100)])
    c = r.claims[0]
    assert sum(c.payments) + c.out_of_pocket == 100_000
    assert all(p >= 0 for p in c.payments)


def test_requirement_that_fails_cites_both_documents(tmp_path: Path) -> None:
    floors = ('policy floors "底线" document "底线文件" effective 2021-05-17 {\n'
              '  require large_supplement cap >= 400000 or none source "三(五)"\n'
              '  require op rate[retired] > rate[not retired] source "三(六)"\n}\n')
    local = policy('layer large_supplement "大额" fund large_supplement_fund { rate 80% cap 350000 per year } '
                   'layer op "门诊" fund basic_fund { rate 75% }', 'effective 2019-01-01 schemes employee '
                   'source "assumed: test"')
    write(tmp_path, {"floors.pol": floors, "local.pol": local})
    found = check_against(build(tmp_path / "floors.pol"), build(tmp_path / "local.pol"))
    messages = [d.message for d in found]
    assert any("cap 350000 is not >= the floor 400000" in m and "底线文件 三(五)" in m for m in messages)
    assert any("`op`" in m and "三(六)" in m for m in messages)
    assert all(d.related and d.related[0].span.path.endswith("floors.pol") for d in found)


def test_as_of_picks_rules_but_identities_are_held_on_the_claim_date(tmp_path: Path) -> None:
    built = build_source(tmp_path, policy('layer a "救助" fund assistance_fund { by identity order { '
                                          'tekun { rate 10% } dibao { rate 50% } } }'))
    # dibao granted in 2020: a 2019 claim paid under the rules of 2020-12-31 still finds the person not dibao
    persons = [{**P, "identities": "dibao@2020-03-01"}]
    r = evaluate(built, persons, [claim("c1", "2019-06-01", total=100)],
                 interp.Options(as_of=datetime.date(2020, 12, 31)))
    assert paid(r, "c1")["a"] == "0.00"
