"""Tests for policy_lang.diff: the structural diff of two policy versions and `polc diff`."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from policy_lang import ast
from policy_lang.cli import main
from policy_lang.diff import Change, StructuralDiff, cond_text, structural_diff, to_html, to_json, to_text
from policy_lang.parse import parse
from policy_lang.pipeline import build
from tests.helpers import write

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
DOC = "测试〔2019〕1号"

LAYER = '''\
  layer basic "住院" fund basic_fund source "第一条" {
    scope kind = inpatient source "第一条"
    deductible 100 per year source "第二条"
    rate 50% source "第三条"
    cap 20000 per year source "第四条"
EXTRA
  }'''


def policy(body: str, name: str = "t", effective: str = "2019-01-01", header: str = "") -> str:
    return (f'policy {name} "测试政策" {header} document "{DOC}" effective {effective} schemes resident '
            f'source "{DOC}" {{\n{body}\n}}\n')


def layer(extra: str = "") -> str:
    return LAYER.replace("EXTRA", extra)


def diff_files(tmp: Path, old: str, new: str, **extra: str) -> StructuralDiff:
    write(tmp, {"old.pol": old, "new.pol": new, **extra})
    return structural_diff(build(tmp / "old.pol").checked, build(tmp / "new.pol").checked)


def only(diff: StructuralDiff) -> Change:
    assert len(diff.changes) == 1, [str(c) for c in diff.changes]
    return diff.changes[0]


def kinds(diff: StructuralDiff) -> list[tuple[str, str | None, str | None, str | None]]:
    return [(c.kind, c.layer, c.rule, c.parameter) for c in diff.changes]


# ---- parameters of rules --------------------------------------------------------------------------------
def test_a_rate_changed_in_the_default(tmp_path: Path) -> None:
    new = layer().replace('rate 50% source "第三条"', 'rate 62.5% source "第三条(二)"')
    change = only(diff_files(tmp_path, policy(layer()), policy(new)))
    assert (change.kind, change.layer, change.rule, change.parameter) == (
        "parameter_changed", "basic", "default", "pricing")
    assert (change.old, change.new) == ("50%", "62.5%")
    assert [c.text() for c in change.old_cites] == [f"{DOC} 第三条"]
    assert [c.text() for c in change.new_cites] == [f"{DOC} 第三条(二)"]
    assert change.old_cites[0].location().endswith("old.pol:5")
    assert change.new_cites[0].location().endswith("new.pol:5")


def test_a_deductible_changed_for_one_identity(tmp_path: Path) -> None:
    schedule = ('    by identity best {\n      tekun { deductible 0 source "第五条" }\n'
                '      dibao { deductible %s source "第五条" }\n    }')
    diff = diff_files(tmp_path, policy(layer(schedule % "100")), policy(layer(schedule % "300")))
    change = only(diff)
    assert (change.kind, change.rule, change.parameter, change.old, change.new) == (
        "parameter_changed", "identity dibao", "deductible", "100", "300")
    assert "  identity dibao: deductible 100 → 300  (测试〔2019〕1号 第五条)" in to_text(diff)


def test_a_tier_added(tmp_path: Path) -> None:
    old = layer().replace('rate 50%', 'tiers { 0 to 1000: 50%; above 1000: 60% }')
    new = layer().replace('rate 50%', 'tiers { 0 to 1000: 50%; 1000 to 5000: 60%; above 5000: 70% }')
    change = only(diff_files(tmp_path, policy(old), policy(new)))
    assert (change.kind, change.parameter) == ("parameter_changed", "pricing")
    assert change.old == "tiers on payable { 0 to 1000: 50%; above 1000: 60% }"
    assert change.new == "tiers on payable { 0 to 1000: 50%; 1000 to 5000: 60%; above 5000: 70% }"


def test_a_cap_removed_becomes_none(tmp_path: Path) -> None:
    new = layer().replace("cap 20000 per year", "cap none")
    change = only(diff_files(tmp_path, policy(layer()), policy(new)))
    assert (change.kind, change.parameter, change.old, change.new) == (
        "parameter_changed", "cap_year", "20000", "none")


def test_a_slot_set_only_in_new_is_added(tmp_path: Path) -> None:
    new = layer('    bonus 10% on tcm_cost source "第六条"')
    change = only(diff_files(tmp_path, policy(layer()), policy(new)))
    assert (change.kind, change.parameter, change.old, change.new) == (
        "parameter_added", "bonus", None, "10% on tcm_cost")
    assert change.old_cites == () and change.new_value is not None



SCHEDULE = '    by identity best {\n      tekun { rate 60% source "第五条"EXTRA }\n    }'


def test_none_written_out_is_the_same_as_not_set(tmp_path: Path) -> None:
    # No cap per claim is the built-in default. The general rule's explicit `cap none per claim` and tekun's
    # explicit `cap none per claim` (no rule of the layer sets another cap per claim) give every claim no cap
    # per claim, as leaving them unset does: nothing changes, in either direction.
    explicit = policy(layer('    cap none per claim source "第四条"\n'
                            + SCHEDULE.replace("EXTRA", ' cap none per claim source "第五条"')))
    implicit = policy(layer(SCHEDULE.replace("EXTRA", "")))
    assert diff_files(tmp_path, explicit, implicit).changes == ()
    assert diff_files(tmp_path, implicit, explicit).changes == ()
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "old.pol"), str(tmp_path / "new.pol")])
    assert result.exit_code == 0 and "cap" not in result.output, result.output
    assert result.output.endswith("\n0 changes\n"), result.output


def test_none_written_out_over_a_general_cap_is_a_change(tmp_path: Path) -> None:
    # tekun's `cap none` lifts the general 20000 cap per year; without it tekun's claims are capped at 20000.
    old = policy(layer(SCHEDULE.replace("EXTRA", ' cap none source "第五条"')))
    new = policy(layer(SCHEDULE.replace("EXTRA", "")))
    change = only(diff_files(tmp_path, old, new))
    assert (change.kind, change.rule, change.parameter, change.old, change.new) == (
        "parameter_removed", "identity tekun", "cap_year", "none", None)


# ---- rules and layers -------------------------------------------------------------------------------------
def test_a_rule_added_and_one_removed(tmp_path: Path) -> None:
    old = layer('    rule referral when referred source "第七条" { rate 70% }\n'
                '    when admission >= 2 { deductible ×50% }')
    # The unnamed rule moves to another line and is spelt in Chinese: the same rule.
    new = layer('    exception urgent when emergency source "第八条" { deductible 0 rate 80% }\n\n\n'
                '    当 admission >= 2 { 起付线 ×50% }')
    diff = diff_files(tmp_path, policy(old), policy(new))
    assert kinds(diff) == [("rule_added", "basic", "urgent", None), ("rule_removed", "basic", "referral", None)]
    added, removed = diff.changes
    assert added.new == "exception urgent when emergency: deductible 0; rate 80%"
    assert removed.old == "rule referral when referred: rate 70%"
    text = to_text(diff)
    assert "  + exception urgent when emergency: deductible 0; rate 80%  (测试〔2019〕1号 第八条)" in text
    assert "  - rule referral when referred: rate 70%  (测试〔2019〕1号 第七条)" in text


def test_nested_rules_are_keyed_by_their_path(tmp_path: Path) -> None:
    old = layer('    rule employee when scheme = employee { rate 60% rule retired when retired { rate 70% } }')
    new = old.replace("rate 70%", "rate 75%")
    change = only(diff_files(tmp_path, policy(old), policy(new)))
    assert (change.rule, change.old, change.new) == ("employee/retired", "70%", "75%")


def test_a_layer_added_with_a_new_fund_and_one_removed(tmp_path: Path) -> None:
    extra_old = '  layer gone "旧补充" fund provincial_finance { rate 10% source "第九条" }'
    extra_new = ('  fund new_fund "新基金" source "第十条"\n'
                 '  layer added "新补充" fund new_fund after basic source "第十条" { rate 20% source "第十条" }')
    diff = diff_files(tmp_path, policy(layer() + "\n" + extra_old), policy(layer() + "\n" + extra_new))
    assert kinds(diff) == [("fund_added", None, None, None), ("layer_added", "added", None, None),
                           ("layer_removed", "gone", None, None)]
    fund, added, removed = diff.changes
    assert (fund.item, fund.new) == ("new_fund", "新基金")
    assert added.new == "新补充 (fund new_fund, after basic)"
    assert removed.old == "旧补充 (fund provincial_finance, after basic)"
    text = to_text(diff)
    assert "added 新补充\n  + layer added: 新补充 (fund new_fund, after basic)  (测试〔2019〕1号 第十条)" in text


def test_scope_changed(tmp_path: Path) -> None:
    new = layer().replace("scope kind = inpatient", "scope kind in (inpatient, chronic_outpatient)")
    change = only(diff_files(tmp_path, policy(layer()), policy(new)))
    assert (change.kind, change.parameter) == ("layer_changed", "scope")
    assert (change.old, change.new) == ("kind = inpatient", "kind in (inpatient, chronic_outpatient)")
    assert [c.text() for c in change.new_cites] == [f"{DOC} 第一条"]


def test_layer_structure_changes(tmp_path: Path) -> None:
    second = '  layer extra "补充" fund provincial_finance HEAD { rate 10% BODY }'
    old = policy(layer("    by identity order { tekun { rate 80% } dibao { rate 70% } }") + "\n"
                 + second.replace("HEAD", "").replace("BODY", ""))
    new = policy(layer("    by identity best { dibao { rate 70% } tekun { rate 80% } }\n"
                       "    treat relapse_poor as dibao") + "\n"
                 + second.replace("HEAD", "exclusive of basic")
                 .replace("BODY", "base after basic plus material_over_limit"))
    diff = diff_files(tmp_path, old, new)
    params = {c.parameter: (c.old, c.new) for c in diff.changes}
    assert params == {
        "precedence": ("order", "best"), "identity_order": ("tekun, dibao", "dibao, tekun"),
        "treat:relapse_poor": (None, "as dibao"), "exclusive": ("(none)", "basic"),
        "base": ("after every earlier layer", "after basic plus material_over_limit")}


def test_settlement_order_changed(tmp_path: Path) -> None:
    a = '  layer a "甲" fund basic_fund { rate 10% }'
    b = '  layer b "乙" fund basic_fund { rate 20% }'
    change = only(diff_files(tmp_path, policy(a + "\n" + b), policy(b + "\n" + a)))
    assert (change.kind, change.old, change.new) == ("settlement_order_changed", "a → b", "b → a")


# ---- values written differently are not changes ------------------------------------------------------------
EN = '''\
policy t "t" effective 2019-01-01 schemes resident source "assumed: en" {
  param premium: money = 12000
  layer basic "住院" fund basic_fund {
    scope kind = inpatient and not emergency and level in (2, 3)
    deductible by level 200 / 500 / 800 per admission
    rate 70%
    cap 12000 per year
    by identity best { tekun, dibao { rate 80% cap 1.5万元 per year } }
    treat relapse_poor as dibao
    when admission >= 2 { deductible ×50% }
  }
}
'''

ZH = '''\
# the same policy, in Chinese, with amounts in 万元 and other line numbers

政策 t "t" 生效 2019年1月1日 险种范围 居民 来源 "assumed: zh" {
  参数 premium = 1.2万元

  待遇层 basic "住院" 基金 basic_fund {
    范围 就诊类型 = 住院 且 非 急诊 且 医院等级 属于 (3, 2)
    起付线 按级别 200 / 500 / 800 每次住院
    比例 70%
    封顶线 1.2万元 每年
    按身份 就高不重复 { 特困人员, 低保对象 { 比例 80% 封顶线 15,000元 每年 } }
    参照 返贫致贫人口 作为 低保
    当 admission >= 2 { 起付线 ×50% }
  }
}
'''


def test_equal_values_written_differently_are_not_changes(tmp_path: Path) -> None:
    write(tmp_path, {"en/t.pol": EN, "zh/t.pol": ZH})
    en, zh = build(tmp_path / "en/t.pol").checked, build(tmp_path / "zh/t.pol").checked
    assert structural_diff(en, zh).changes == ()
    assert structural_diff(zh, en).changes == ()


def test_a_policy_diffed_with_itself_is_empty(tmp_path: Path) -> None:
    checked = build(POLICIES / "yingkou" / "major-illness-2023.pol").checked
    diff = structural_diff(checked, checked)
    assert diff.empty
    assert to_text(diff).endswith("\n0 changes\n")
    assert json.loads(to_json(diff))["summary"] == {"by_kind": {}, "layers": [], "total": 0}


def test_conditions_render_canonically() -> None:
    source = ('policy t "t" { layer b "b" fund basic_fund { '
              'scope 险种 = 居民 且 (转诊 或 身份 含 任一 (低保对象, 特困人员)) 且 total_cost >= 1.2万元 } }')
    layer_item = parse(source, "t.pol").policy.items[0]
    assert isinstance(layer_item, ast.Layer)
    scope = layer_item.items[0]
    assert isinstance(scope, ast.Scope)
    text = cond_text(scope.cond)
    assert text == "scheme = resident and (referred or identities has any (dibao, tekun)) and total_cost >= 12000"
    assert cond_text(scope.cond, canonical=True) == (
        "(identities has any (dibao, tekun) or referred) and scheme = resident and total_cost >= 12000")


# ---- policy-level items ---------------------------------------------------------------------------------------
def test_parameters_without_payment_effect_and_documents(tmp_path: Path) -> None:
    base = policy(layer() + '\n  param settlement_reserve: rate = 5% source "第十一条"', name="base_t")
    amendment = ('import "base.pol"\n'
                 'policy amend "修订" amends base_t document "修订〔2021〕2号" effective 2021-09-01 until 2024-08-31 {\n'
                 '  param settlement_reserve: rate = 1% source "五(三)"\n}\n')
    write(tmp_path, {"base.pol": base, "amend.pol": amendment})
    old, new = build(tmp_path / "base.pol").checked, build(tmp_path / "amend.pol").checked
    diff = structural_diff(old, new)
    assert (diff.old.as_of, diff.new.as_of) == (datetime.date(2019, 1, 1), datetime.date(2021, 9, 1))
    assert kinds(diff) == [("document_added", None, None, None),
                           ("param_changed", None, None, "settlement_reserve")]
    doc, param = diff.changes
    assert doc.new == "修订〔2021〕2号 修订, in force 2021-09-01 – 2024-08-31"
    assert (param.old, param.new) == ("5%", "1%")
    assert "  param settlement_reserve: 5% → 1%  (测试〔2019〕1号 第十一条 → 修订〔2021〕2号 五(三))" in to_text(diff)
    # After the amendment lapses, the base is in force again: no change.
    assert structural_diff(old, new, new_as_of=datetime.date(2024, 9, 1)).changes == ()


def test_explicit_dates_resolve_each_side(tmp_path: Path) -> None:
    source = policy(layer() + '\n  param premium: money = 250 effective 2019-01-01 source "第十二条"\n'
                    '  param premium: money = 380 effective 2023-01-01 source "第十二条"')
    write(tmp_path, {"p.pol": source})
    checked = build(tmp_path / "p.pol").checked
    change = only(structural_diff(checked, checked, datetime.date(2019, 6, 1), datetime.date(2023, 6, 1)))
    assert (change.kind, change.parameter, change.old, change.new) == ("param_changed", "premium", "250", "380")


def test_lists_subsidies_alerts_requirements_targets(tmp_path: Path) -> None:
    common = layer() + '\n  param premium: money = 380\n'
    old = policy(common + '''
  diseases big "大病" { "肺癌", "胃癌", uremia }
  subsidy s "资助" best { amount premium  tekun: 100%  registered_poor: 100% }
  alert risk "预警" { measure burden after basic where kind = inpatient
    when identities has dibao { threshold 5000 } }
  require basic rate >= 50%
  target payout_2025 "报销比例" { payout of basic where kind = inpatient at least 70% by 2025-12-31 }''')
    new = policy(common + '''
  diseases big "大病" { "肺癌", "肝癌", uremia, "食管癌" }
  subsidy s "资助" best { amount premium  tekun: 100%  near_dibao: 60%  treat other_special as tekun }
  alert risk "预警" { measure burden after basic where kind = inpatient
    when identities has dibao { threshold 1万元 } }
  require basic rate >= 60%
  target payout_2025 "报销比例" { payout of basic where kind = inpatient at least 75% by 2025-12-31 }''')
    diff = diff_files(tmp_path, old, new)
    found = {(c.kind, c.item, c.parameter): (c.old, c.new) for c in diff.changes}
    assert found == {
        ("list_changed", "big", "diseases"): ("3 diseases", "4 diseases"),
        ("subsidy_changed", "s", "share:near_dibao"): (None, "60%"),
        ("subsidy_changed", "s", "share:registered_poor"): ("100%", None),
        ("subsidy_changed", "s", "treat:other_special"): (None, "as tekun"),
        ("alert_changed", "risk", "threshold:identities has dibao"): ("5000", "10000"),
        ("requirement_added", "basic rate >= 60%", None): (None, "basic rate >= 60%"),
        ("requirement_removed", "basic rate >= 50%", None): ("basic rate >= 50%", None),
        ("target_changed", "payout_2025", None): (
            "报销比例: payout of basic where kind = inpatient at least 70% by 2025-12-31",
            "报销比例: payout of basic where kind = inpatient at least 75% by 2025-12-31"),
    }
    listed = next(c for c in diff.changes if c.kind == "list_changed")
    assert (listed.added, listed.removed) == (("肝癌", "食管癌"), ("胃癌",))
    assert "  diseases list big: 3 diseases → 4 diseases  [+2: 肝癌, 食管癌; −1: 胃癌]" in to_text(diff)


# ---- output formats ----------------------------------------------------------------------------------------
def test_json_schema(tmp_path: Path) -> None:
    new = layer().replace("rate 50%", "rate 60%")
    doc = json.loads(to_json(diff_files(tmp_path, policy(layer()), policy(new))))
    assert sorted(doc) == ["changes", "format", "new", "old", "summary"]
    assert doc["format"] == "polc-diff/1"
    assert sorted(doc["old"]) == ["as_of", "documents", "path", "policy", "title"]
    assert doc["old"]["as_of"] == "2019-01-01"
    assert sorted(doc["old"]["documents"][0]) == ["dated", "document", "effective", "name", "path", "title",
                                                  "until"]
    (change,) = doc["changes"]
    assert sorted(change) == ["added", "item", "kind", "layer", "new", "new_cites", "old", "old_cites",
                              "parameter", "removed", "rule"]
    assert (change["kind"], change["layer"], change["rule"], change["parameter"], change["old"],
            change["new"]) == ("parameter_changed", "basic", "default", "pricing", "50%", "60%")
    assert sorted(change["old_cites"][0]) == ["article", "document", "line", "location", "path", "text"]
    assert change["new_cites"][0]["text"] == f"{DOC} 第三条"
    assert doc["summary"] == {"by_kind": {"parameter_changed": 1}, "layers": ["basic"], "total": 1}


def test_html_escapes_policy_strings(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    old = policy(layer())
    new = policy(layer().replace('"住院"', f'"{evil}"').replace('"第三条"', f'"{evil}"')
                 .replace("rate 50%", "rate 60%"))
    html = to_html(diff_files(tmp_path, old, new))
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.startswith("<!DOCTYPE html>") and "http" not in html
    assert "2 changes" in html


# ---- the showcase: bundled policies -----------------------------------------------------------------------
def bundled(old: str, new: str) -> StructuralDiff:
    return structural_diff(build(POLICIES / old).checked, build(POLICIES / new).checked)


def test_shenyang_to_yingkou() -> None:
    diff = bundled("shenyang/poverty-2019.pol", "yingkou/major-illness-2023.pol")
    text = to_text(diff)
    old_cite, new_cite = "沈医保发〔2019〕78号 二(一)2", "营政办发〔2022〕23号 第九条(二)"
    for ident in ("tekun", "dibao"):
        assert f"  identity {ident}: rate 70% → 75%  ({old_cite} → {new_cite})" in text
    assert "\ncritical_illness 大病保险\n" in text
    assert "  cap per year 10000 → 20000  (assumed: shared/DOMAIN.md §3.1 → 营政办发〔2022〕23号 第十一条(一)1)" in text
    assert "  identity dibao: rate 60% → 70%  (assumed: shared/DOMAIN.md §3.1 → 营政办发〔2022〕23号 第十一条(一)3)" in text
    found = {(c.kind, c.layer, c.rule) for c in diff.changes}
    assert {("rule_added", "assistance", "identity near_dibao"), ("rule_added", "assistance", "identity illness_poor"),
            ("rule_removed", "assistance", "identity registered_poor"), ("layer_added", "tilted_assistance", None),
            ("layer_removed", "supplementary", None)} <= found
    assert "  + layer tilted_assistance: 医疗救助·倾斜救助 (fund assistance_fund, after assistance)" in text
    assert text.endswith(f"\n{len(diff.changes)} changes\n")


def test_jining_base_to_benefits_2021() -> None:
    diff = bundled("jining/base.pol", "jining/benefits-2021.pol")
    text = to_text(diff)
    notice = "济宁市人民政府通知（2021年9月1日）"
    assumed = "assumed: shared/DOMAIN.md §3.3"
    for line in (f"  deductible 10 → 0  ({assumed} → {notice} 一(一))",
                 f"  rate 45% → 55%  ({assumed} → {assumed}; {notice} 一(一))",
                 f"  cap per year 200 → 300  ({assumed} → {notice} 一(一))",
                 f"  rate 50% → 60%  ({assumed} → {notice} 三)",
                 f"  combined: cap per year 300 → 600  ({assumed} → {notice} 三)",
                 "  scope kind = chronic_outpatient and certified → kind = chronic_outpatient and certified has "
                 "jining_chronic",
                 f"  param settlement_reserve: 5% → 1%  ({assumed} → {notice} 五(三))",
                 f"  + exception tcm_institution when tcm_institution: deductible -100  ({notice} 四)",
                 f"  + exception pure_tcm when pure_tcm: deductible -100; rate 90%; bonus none  ({notice} 四)"):
        assert line in text, line
    listed = next(c for c in diff.changes if c.kind == "list_added" and c.item == "jining_chronic")
    assert listed.new == "79 diseases" and len(listed.added) == 79


# ---- the command line ----------------------------------------------------------------------------------------
def test_cli_formats_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    old, new = str(POLICIES / "jining/base.pol"), str(POLICIES / "jining/benefits-2021.pol")
    result = runner.invoke(main, ["diff", old, new])
    assert result.exit_code == 0 and result.output.endswith("changes\n")
    out = tmp_path / "diff.json"
    result = runner.invoke(main, ["diff", old, new, "--format", "json", "--out", str(out)])
    assert result.exit_code == 0 and result.output == ""
    assert json.loads(out.read_text("utf-8"))["new"]["as_of"] == "2021-09-01"
    result = runner.invoke(main, ["diff", old, new, "--format", "html"])
    assert result.exit_code == 0 and "<table>" in result.output
    result = runner.invoke(main, ["diff", old, old, "--old-as-of", "2021-02-30"])
    assert result.exit_code == 2 and "not a date" in result.output


@pytest.mark.parametrize("args", [["--format", "xml"], ["--old-as-of", "yesterday"]])
def test_cli_bad_usage(args: list[str]) -> None:
    path = str(POLICIES / "jining/base.pol")
    assert CliRunner().invoke(main, ["diff", path, path, *args]).exit_code == 2


def test_cli_policy_error(tmp_path: Path) -> None:
    write(tmp_path, {"bad.pol": policy('  layer x "x" { rate 50% }')})
    path = str(tmp_path / "bad.pol")
    result = CliRunner().invoke(main, ["diff", path, path])
    assert result.exit_code == 1 and "needs a fund" in result.output
