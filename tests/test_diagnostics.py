"""The checker's findings: each kind of mistake, at its exact line and column, with a useful hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_lang.diagnostics import PolicyError, SourceCache, render
from policy_lang.pipeline import build
from tests.helpers import diagnostics, write

HEAD = 'policy t "test" effective 2019-01-01 schemes resident source "assumed: test" {\n'


def one(tmp_path: Path, body: str, extra: dict[str, str] | None = None) -> list[str]:
    return diagnostics(tmp_path, HEAD + body + "\n}\n", extra)


def test_syntax_error_names_what_was_expected(tmp_path: Path) -> None:
    found = one(tmp_path, 'layer a "a" fund basic_fund { rate }')
    assert found == ["2:36: error: unexpected `}`"]


def test_unknown_field_with_did_you_mean(tmp_path: Path) -> None:
    write(tmp_path, {"main.pol": HEAD + 'layer a "a" fund basic_fund { scope refered rate 50% }\n}\n'})
    with pytest.raises(PolicyError) as info:
        build(tmp_path / "main.pol")
    (d,) = info.value.diagnostics
    assert (d.span.line, d.span.column, d.message) == (2, 37, "unknown field `refered`")
    assert d.hint == "did you mean `referred`?"


def test_unknown_identity_and_fund(tmp_path: Path) -> None:
    found = one(tmp_path, 'layer a "a" fund basic_fnd { by identity { diboa { rate 50% } } }')
    assert "2:1: error: unknown fund `basic_fnd`" in found
    assert any("unknown identity `diboa`" in f for f in found)


def test_money_where_a_rate_is_expected(tmp_path: Path) -> None:
    found = one(tmp_path, 'layer a "a" fund basic_fund { rate 50 }')
    assert found == ["2:36: error: expected a rate (like 75%), found a number"]


def test_rate_outside_0_to_100(tmp_path: Path) -> None:
    assert one(tmp_path, 'layer a "a" fund basic_fund { rate 120% }') == [
        "2:31: error: rate 120% is outside 0–100%"]


def test_negative_cap(tmp_path: Path) -> None:
    assert one(tmp_path, 'layer a "a" fund basic_fund { rate 50% cap 100 - 200 per year }') == [
        "2:40: error: negative cap: -100"]


def test_tiers_must_ascend_without_overlap(tmp_path: Path) -> None:
    found = one(tmp_path, 'layer a "a" fund basic_fund { tiers { 0 to 50000: 60% 40000 to 90000: 65% } }')
    assert found == ["2:31: error: tier 2 starts below the end of the previous tier: tiers must be ascending "
                     "and must not overlap"]


def test_conflicting_rules_are_reported_with_both_citations(tmp_path: Path) -> None:
    body = ('layer a "a" fund basic_fund { deductible 600 per year rate 60%\n'
            '  exception tcm when tcm_institution { deductible -100 source "二(二) 中医" }\n'
            '  exception uremia when diseases has uremia { deductible 0 source "二(二) 尿毒症" } }')
    write(tmp_path, {"main.pol": HEAD + body + "\n}\n"})
    with pytest.raises(PolicyError) as info:
        build(tmp_path / "main.pol")
    (d,) = info.value.diagnostics
    assert d.message.startswith("conflict in layer `a`: rule `tcm` and rule `uremia` can both apply")
    notes = [r.message for r in d.related]
    assert "二(二) 中医" in notes[0] and "二(二) 尿毒症" in notes[1]
    assert [r.span.line for r in d.related] == [3, 4]


def test_rules_with_exclusive_conditions_do_not_conflict(tmp_path: Path) -> None:
    body = ('layer a "a" fund basic_fund { rate 60% when scheme = resident { rate 70% } '
            'when scheme = employee { rate 80% } when scheme = employee and retired { rate 90% } }')
    assert one(tmp_path, body) == []


def test_relative_value_with_nothing_below(tmp_path: Path) -> None:
    found = one(tmp_path, 'layer a "a" fund basic_fund { rate +10% }')
    assert found == ["2:36: error: nothing to raise: no earlier value of this parameter"]


def test_amendment_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    a = 'import "b.pol"\npolicy pa "a" amends pb source "assumed" { }\n'
    b = 'import "a.pol"\npolicy pb "b" amends pa source "assumed" { }\n'
    write(tmp_path, {"a.pol": a, "b.pol": b})
    with pytest.raises(PolicyError) as info:
        build(tmp_path / "a.pol")
    assert "import cycle: a.pol -> b.pol -> a.pol" in [d.message for d in info.value.diagnostics]


def test_amends_unknown_policy(tmp_path: Path) -> None:
    found = diagnostics(tmp_path, 'policy t "t" amends liaoning_base source "x" { }\n')
    assert found == ["1:1: error: `t` amends unknown policy `liaoning_base`"]


def test_import_cannot_leave_the_policy_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, {"main.pol": 'import "../outside.pol"\n' + HEAD + "}\n"})
    (tmp_path / "outside.pol").write_text(HEAD + "}\n", "utf-8")
    with pytest.raises(PolicyError) as info:
        build(root / "main.pol")
    assert "leaves the policy root" in info.value.diagnostics[0].message
    write(root, {"main.pol": 'import "/etc/passwd"\n' + HEAD + "}\n"})
    with pytest.raises(PolicyError) as info:
        build(root / "main.pol")
    assert "is an absolute path" in info.value.diagnostics[0].message


def test_number_without_citation_is_a_warning(tmp_path: Path) -> None:
    src = 'policy t "t" document "某某文件" effective 2019-01-01 {\n  layer a "a" fund basic_fund {\n    rate 50%\n  }\n}\n'
    found = diagnostics(tmp_path, src)
    assert found == ["3:5: warning: this number has no citation"]


def test_shared_cap_layers_must_be_adjacent_and_disjoint(tmp_path: Path) -> None:
    body = ('layer a "a" fund basic_fund { rate 50% } layer b "b" fund basic_fund { rate 50% } '
            'layer c "c" fund basic_fund { rate 50% } shared cap p 100 per year for a, c')
    found = one(tmp_path, body)
    assert any("must be next to each other" in f for f in found)
    assert any("can hold for the same claim" in f for f in found)


def test_bad_date_and_garbage_never_traceback(tmp_path: Path) -> None:
    assert one(tmp_path, 'layer a "a" fund basic_fund { rate 50% effective 2019-02-30 }') == [
        "2:50: error: `2019-02-30` is not a calendar date"]
    for junk in ["\x00\x01", "policy", "{{{{", "policy t { layer", '"unterminated', "政策 t 「"]:
        found = diagnostics(tmp_path, junk)
        assert found and all(": error: " in f for f in found)


def test_not_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    (tmp_path / "gbk.pol").write_bytes(('policy t "营口" { }').encode("gbk"))
    with pytest.raises(PolicyError) as info:
        build(tmp_path / "gbk.pol")
    d = info.value.diagnostics[0]
    # 营 is D3 AA in GBK, which happens to be valid UTF-8; 口 (BF DA) starts with a stray byte at byte 13
    assert (d.span.line, d.span.column, d.message) == (1, 13, "the file is not UTF-8 text")


def test_render_shows_the_line_and_a_caret(tmp_path: Path) -> None:
    write(tmp_path, {"main.pol": HEAD + 'layer a "a" fund basic_fund { rate 50 }\n}\n'})
    sources = SourceCache()
    with pytest.raises(PolicyError) as info:
        build(tmp_path / "main.pol", sources)
    text = render(info.value.diagnostics[0], sources)
    lines = text.splitlines()
    assert lines[0].endswith("main.pol:2:36: error: expected a rate (like 75%), found a number")
    assert lines[1] == '    layer a "a" fund basic_fund { rate 50 }'
    assert lines[2] == "    " + " " * 35 + "^~"
    assert lines[3] == "  hint: write rates with a percent sign, e.g. 75%"


def test_relative_rate_needs_a_rate_below_for_every_claim(tmp_path: Path) -> None:
    # dibao has 60%; other persons have no rate at all, so `rate +10%` on a grassroots claim has nothing to raise
    body = 'layer l "l" fund basic_fund { by identity { dibao { rate 60% } } exception up when grassroots { rate +10% } }'
    assert one(tmp_path, body) == ["2:97: error: rule `up` changes the rate below it, but some claims it applies to "
                                   "have no rate below it"]


def test_relative_unit_amount_or_bonus_in_a_rule_is_refused(tmp_path: Path) -> None:
    body = ('layer l "l" fund basic_fund { unit_rate 100 per bed_days bonus 10% on tcm_cost '
            'when referred { unit_rate +10 per bed_days bonus +10% on tcm_cost } }')
    assert one(tmp_path, body) == [
        "2:96: error: an amount per unit cannot change the one below it; write the amount",
        "2:123: error: a bonus rate cannot change the one below it; write the rate"]


def test_precedence_cycle_is_reported(tmp_path: Path) -> None:
    # a implies c (in_province ⇒ in_province or emergency), c is over b, b is over a: no rule can win
    body = ('layer l "l" fund basic_fund { rate 50%\n'
            '  exception a when in_province { deductible 700 }\n'
            '  exception b when emergency over a { deductible 100 }\n'
            '  exception c when in_province or emergency over b { deductible 300 } }')
    found = one(tmp_path, body)
    assert found == ["3:3: error: in layer `l`, rule `a`, rule `b`, rule `c` each end up more specific than another "
                     "of them (through `over`, nesting and conditions that imply each other)"]
