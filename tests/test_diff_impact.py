"""Tests for policy_lang.diff_impact: `polc diff --population / --synthetic`, derived by hand."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from policy_lang import diff_impact
from policy_lang.cli import main
from policy_lang.columns import from_dataset
from policy_lang.compile import compile_resolved
from policy_lang.data import load_dataset
from policy_lang.diff import StructuralDiff, compare, slot_text, structural_diff, to_text
from policy_lang.diff_impact import Attribution, Totals, apply_change, apply_part, attribute, plan_parts
from policy_lang.graph import Graph
from policy_lang.interp import Options
from policy_lang.pipeline import build, data_vocabulary
from simulator.engines import evaluate
from simulator.parquet_io import write_population
from simulator.run import Stored, Synthetic
from tests.helpers import write

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
DOC = "测试〔2019〕1号"


def policy(body: str, title: str = "测试政策") -> str:
    return (f'policy t "{title}" document "{DOC}" effective 2019-01-01 schemes resident source "{DOC}" {{\n'
            f'{body}\n}}\n')


def basic(rate: str = "50%", cap: str = "1000", title: str = "住院") -> str:
    return (f'  layer basic "{title}" fund basic_fund source "第一条" {{\n    scope kind = inpatient\n'
            f'    rate {rate}\n    cap {cap} per year\n  }}')


ASSIST = ('  condition poor = identities has dibao\n'
          '  layer assist "救助" fund assistance_fund after basic source "第九条" {\n'
          '    scope poor\n    rate 50%\n  }')

# Three persons of 2019: P1 one claim of 1000 (a dibao recipient), P2 two of 1500, P3 one of 5000.
PERSONS = "person_id,scheme,identities\nP1,resident,dibao\nP2,resident,\nP3,resident,\n"
CLAIMS = ("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost\n"
          "C1,P1,2019-03-01,inpatient,2,1000,1000\n"
          "C2,P2,2019-04-01,inpatient,2,1500,1500\n"
          "C3,P2,2019-05-01,inpatient,2,1500,1500\n"
          "C4,P3,2019-06-01,inpatient,2,5000,5000\n")


def pair(tmp: Path, old: str, new: str) -> StructuralDiff:
    write(tmp, {"old.pol": old, "new.pol": new})
    return structural_diff(build(tmp / "old.pol").checked, build(tmp / "new.pol").checked)


def population(tmp: Path) -> Stored:
    """The three persons as a stored population directory (persons.parquet, claims.parquet)."""
    write(tmp, {"persons.csv": PERSONS, "claims.csv": CLAIMS})
    graph = build(tmp / "new.pol").graph
    data = load_dataset(tmp / "persons.csv", tmp / "claims.csv", data_vocabulary(graph))
    write_population(from_dataset(data, graph), tmp / "pop")
    return Stored(tmp / "pop")


def run(tmp: Path, old: str, new: str) -> tuple[StructuralDiff, Attribution]:
    diff = pair(tmp, old, new)
    result = attribute(diff.old.resolved, diff.new.resolved, diff.changes, population(tmp), 2019, {})
    return diff, result


def yuan(t: Totals) -> tuple[dict[str, int], dict[str, int], int]:
    """Funds and layers in whole yuan (zeros left out), and the total."""
    def clean(d: Mapping[str, int]) -> dict[str, int]:
        return {k: v // 100 for k, v in d.items() if v}

    assert all(v % 100 == 0 for v in (*t.funds.values(), *t.layers.values()))
    return clean(t.funds), clean(t.layers), t.total // 100


def kinds(diff: StructuralDiff) -> list[tuple[str, str | None, str | None, str | None, str | None]]:
    return [(c.kind, c.layer, c.parameter, c.old, c.new) for c in diff.changes]


# ---- a two-change pair on three persons ------------------------------------------------------------------------
def test_rate_and_cap_attributed_by_hand(tmp_path: Path) -> None:
    diff, result = run(tmp_path, policy(basic()), policy(basic("60%", "2000")))
    assert kinds(diff) == [("parameter_changed", "basic", "pricing", "50%", "60%"),
                           ("parameter_changed", "basic", "cap_year", "1000", "2000")]
    # OLD (50%, cap 1000 a year):  P1 500;  P2 750 + 250 (cap) = 1000;  P3 2500 → 1000.   2500
    # rate alone (60%, cap 1000):  P1 600;  P2 900 + 100 (cap) = 1000;  P3 3000 → 1000.   2600  (+100)
    # cap alone (50%, cap 2000):   P1 500;  P2 750 + 750       = 1500;  P3 2500 → 2000.   4000  (+1500)
    # NEW (60%, cap 2000):         P1 600;  P2 900 + 900       = 1800;  P3 3000 → 2000.   4400  (+1900)
    # remainder: 1900 − 100 − 1500 = 300, all of it P2's (the higher rate counts only under the higher cap).
    rate, cap = result.parts
    assert (rate.part.changes, cap.part.changes) == ((0,), (1,))
    assert rate.simulated and cap.simulated
    assert yuan(rate.delta) == ({"basic_fund": 100}, {"basic": 100}, 100)
    assert yuan(cap.delta) == ({"basic_fund": 1500}, {"basic": 1500}, 1500)
    assert yuan(result.remainder) == ({"basic_fund": 300}, {"basic": 300}, 300)
    assert yuan(result.total) == ({"basic_fund": 1900}, {"basic": 1900}, 1900)
    assert diff_impact.totals_of(result.old).total == 2500_00
    assert diff_impact.totals_of(result.new).total == 4400_00
    movers = result.comparison.total
    assert (movers.winners, movers.gained, movers.losers, movers.lost) == (3, 1900_00, 0, 0)


def test_each_change_alone_is_exactly_one_change(tmp_path: Path) -> None:
    diff = pair(tmp_path, policy(basic()), policy(basic("60%", "2000")))
    old, new = diff.old.resolved, diff.new.resolved
    rate_only = apply_change(old, diff.changes[0], new)
    assert [(c.parameter, c.old, c.new) for c in compare(old, rate_only)] == [("pricing", "50%", "60%")]
    assert [(c.parameter, c.old, c.new) for c in compare(rate_only, new)] == [("cap_year", "1000", "2000")]
    assert slot_text("pricing", old.layers[0].default.settings["pricing"].value) == "50%"  # OLD itself unchanged


# ---- changes without a fund effect -----------------------------------------------------------------------------------
def test_changes_without_fund_effect_are_listed_with_zero_and_not_simulated(tmp_path: Path) -> None:
    extra = '\n  param settlement_reserve: rate = {} source "第十一条"'
    old = policy(basic() + extra.format("5%"))
    new = policy(basic(title="住院统筹") + extra.format("1%") + '\n  require basic rate >= 50%', title="测试政策（修订）")
    diff, result = run(tmp_path, old, new)
    assert [c.kind for c in diff.changes] == ["document_changed", "param_changed", "layer_changed",
                                              "requirement_added"]
    assert [(m.simulated, m.part.effect, m.delta) for m in result.parts] == [(False, False, diff_impact.ZERO)] * 4
    assert yuan(result.total) == ({}, {}, 0)
    assert yuan(result.remainder) == ({}, {}, 0)


def test_a_parameter_has_an_effect_only_when_a_value_uses_it(tmp_path: Path) -> None:
    used = '  param base_rate: rate unspecified source "第二条"\n' + basic("base_rate")
    diff = pair(tmp_path, policy(used), policy(used.replace("rate unspecified", "rate = 60%")))
    # NEW folds the value into the rate: the parameter and the rate both change; OLD's rate uses the parameter.
    assert [(c.kind, c.parameter) for c in diff.changes] == [("param_changed", "base_rate"),
                                                             ("parameter_changed", "pricing")]
    assert [p.effect for p in plan_parts(diff.changes, diff.old.resolved, diff.new.resolved)] == [True, True]
    unused = basic() + '\n  param settlement_reserve: rate = 5%'
    diff = pair(tmp_path, policy(unused), policy(unused.replace("5%", "1%")))
    assert [p.effect for p in plan_parts(diff.changes, diff.old.resolved, diff.new.resolved)] == [False]


# ---- a layer added, with the condition it needs --------------------------------------------------------------------
def test_a_layer_added_brings_its_condition(tmp_path: Path) -> None:
    diff, result = run(tmp_path, policy(basic()), policy(basic() + "\n" + ASSIST))
    assert [(c.kind, c.item or c.layer) for c in diff.changes] == [("condition_added", "poor"),
                                                                    ("layer_added", "assist")]
    condition, layer = result.parts
    assert (condition.part.effect, condition.simulated, condition.delta) == (False, False, diff_impact.ZERO)
    assert (layer.part.changes, layer.part.brings) == ((1,), (0,))
    # P1 (dibao) only: basic pays 500 of 1000; the new layer 50% of the 500 left = 250.
    assert yuan(layer.delta) == ({"assistance_fund": 250}, {"assist": 250}, 250)
    assert yuan(result.remainder) == ({}, {}, 0)
    assert yuan(result.total) == ({"assistance_fund": 250}, {"assist": 250}, 250)
    text = to_text(diff, behaviour_of(diff, result))
    assert "with + condition poor: identities has dibao" in text


def test_a_layer_added_with_a_rate_change_leaves_their_interaction(tmp_path: Path) -> None:
    diff, result = run(tmp_path, policy(basic()), policy(basic("60%") + "\n" + ASSIST))
    parts = {diff.changes[m.part.changes[0]].kind: m for m in result.parts}
    # rate alone +100 (P1 600 instead of 500, the others capped); the layer alone +250 (P1: 50% of 500);
    # both: basic 600, the layer 50% of the 400 left = 200; total +300, remainder 300 − 100 − 250 = −50.
    assert yuan(parts["parameter_changed"].delta)[2] == 100
    assert yuan(parts["layer_added"].delta)[2] == 250
    assert yuan(result.total) == ({"basic_fund": 100, "assistance_fund": 200}, {"basic": 100, "assist": 200}, 300)
    assert yuan(result.remainder) == ({"assistance_fund": -50}, {"assist": -50}, -50)


def behaviour_of(diff: StructuralDiff, result: Attribution) -> diff_impact.Behaviour:
    return diff_impact.Behaviour(result, {"source": "stored", "directory": "pop", "year": 2019, "persons": 3,
                                          "claims": 4, "claimants": 3}, (), ())


# ---- the command line -------------------------------------------------------------------------------------------------
def test_polc_diff_with_a_population(tmp_path: Path) -> None:
    pair(tmp_path, policy(basic()), policy(basic("60%", "2000")))
    pop = population(tmp_path)
    args = ["diff", str(tmp_path / "old.pol"), str(tmp_path / "new.pol"), "--population", str(pop.directory)]
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["impact"]["population"]["year"] == 2019
    assert doc["impact"]["changes"]["funds"] == {"basic_fund": "1900.00"}
    assert doc["impact"]["winners_losers"]["total"]["winners"] == 3
    attribution = doc["attribution"]
    assert [(p["changes"], p["funds"], p["total"]) for p in attribution["parts"]] == [
        ([0], {"basic_fund": "100.00"}, "100.00"), ([1], {"basic_fund": "1500.00"}, "1500.00")]
    assert (attribution["remainder"]["total"], attribution["total"]["total"]) == ("300.00", "1900.00")
    text = CliRunner().invoke(main, args).output
    plain = CliRunner().invoke(main, args[:3]).output
    assert text.startswith(plain)  # the structural output is unchanged, the behavioural sections follow
    assert "fund impact — 3 persons, 4 claims" in text
    assert "+300.00  interaction remainder" in text and "+1900.00  total (NEW − OLD)" in text
    html = CliRunner().invoke(main, [*args, "--format", "html"]).output
    assert "<h2>attribution</h2>" in html and "interaction remainder" in html


def test_population_options_need_a_population(tmp_path: Path) -> None:
    pair(tmp_path, policy(basic()), policy(basic("60%")))
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "old.pol"), str(tmp_path / "new.pol"), "--year", "2019"])
    assert result.exit_code == 2
    assert "need --population DIR or --synthetic N" in result.output


# ---- the showcase: Shenyang 2019 → Yingkou 2023 ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def showcase() -> tuple[StructuralDiff, Attribution]:
    diff = structural_diff(build(POLICIES / "shenyang/poverty-2019.pol").checked,
                           build(POLICIES / "yingkou/major-illness-2023.pol").checked)
    result = attribute(diff.old.resolved, diff.new.resolved, diff.changes, Synthetic("liaoning-resident", 2000, 1),
                       2023, {"bed_day_rate": 8000})
    return diff, result


def test_showcase_parts_and_remainder_add_up_to_the_total(showcase: tuple[StructuralDiff, Attribution]) -> None:
    diff, result = showcase
    total = diff_impact.ZERO
    for measured in result.parts:
        total = total + measured.delta
    total = total + result.remainder
    assert dict(total.funds) == dict(result.total.funds)
    assert dict(total.layers) == dict(result.total.layers)
    assert (total.total, total.subsidies) == (result.total.total, result.total.subsidies)
    assert result.total.total != 0 and sorted(i for m in result.parts for i in m.part.changes) == list(
        range(len(diff.changes)))
    assert all(m.note is None for m in result.parts)


def test_showcase_groups(showcase: tuple[StructuralDiff, Attribution]) -> None:
    diff, result = showcase

    def part(kind: str, layer: str | None, rule: str | None = None, parameter: str | None = None) -> diff_impact.Part:
        index = next(i for i, c in enumerate(diff.changes)
                     if (c.kind, c.layer, c.rule, c.parameter) == (kind, layer, rule, parameter))
        return next(m.part for m in result.parts if index in m.part.changes)

    def named(indices: Sequence[int]) -> list[str]:
        return [f"{diff.changes[i].kind} {diff.changes[i].parameter or diff.changes[i].rule}" for i in indices]

    deductible = part("parameter_added", "assistance", "identity tekun", "deductible")
    assert named(deductible.changes) == ["parameter_added deductible", "parameter_added period"]
    bed_day = part("rule_added", "assistance", "identity tekun/bed_day")
    assert named(bed_day.brings) == ["param_added bed_day_rate"]
    tilted = part("layer_added", "tilted_assistance")
    assert named(tilted.brings) == ["param_added bed_day_rate"]
    title = part("layer_changed", "assistance", None, "title")
    assert not title.effect


def test_showcase_changes_applied_one_by_one_give_new(showcase: tuple[StructuralDiff, Attribution]) -> None:
    diff, result = showcase
    old, new = diff.old.resolved, diff.new.resolved
    every = old
    for measured in result.parts:
        every = apply_part(every, measured.part, diff.changes, new)
    source, settings = Synthetic("liaoning-resident", 2000, 1), {"bed_day_rate": 8000}
    assert totals(compile_resolved(every), source, settings) == totals(compile_resolved(new), source, settings)
    base = totals(compile_resolved(old), source, settings)
    for measured in (m for m in result.parts if not m.part.effect):  # not simulated: really no effect
        variant = compile_resolved(apply_part(old, measured.part, diff.changes, new))
        assert totals(variant, source, settings) == base, diff_impact.describe_part(measured.part, diff)


def totals(graph: Graph, source: Synthetic, settings: dict[str, int]) -> Totals:
    out = diff_impact.ZERO
    for cols in diff_impact.chunks(source, 2023):
        out = out + diff_impact.result_totals(graph, evaluate(graph, cols, Options(settings=settings), "vector"), 2023)
    return out
