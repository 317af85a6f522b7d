"""Tests for policy_lang.fmt: golden layouts, idempotence, AST and comment preservation."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import lark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_lang.diagnostics import PolicyError
from policy_lang.fmt import format_source
from policy_lang.parse import grammar_text, parse

GOLDEN = Path(__file__).parent / "golden" / "fmt"
POLICIES = Path(__file__).parent.parent / "policies"
INPUTS = sorted(p for p in GOLDEN.glob("*.pol") if not p.name.endswith(".expected.pol"))
REAL = sorted(POLICIES.rglob("*.pol")) if POLICIES.is_dir() else []


def _expected(path: Path) -> Path:
    return path.with_name(path.stem + ".expected.pol")


@functools.cache
def _lexer() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", lexer="basic")


def comments(text: str) -> list[str]:
    return [str(t.value).rstrip() for t in _lexer().lex(text, dont_ignore=True) if t.type == "COMMENT"]


def tokens(text: str) -> list[lark.Token]:
    return list(_lexer().lex(text))


def assert_same_program(before: str, after: str) -> None:
    a, b = parse(before), parse(after)
    assert a.policy == b.policy
    assert a.imports == b.imports
    assert comments(after) == comments(before)


# ---- golden files ----------------------------------------------------------------------------------
def test_golden_cases_exist() -> None:
    assert len(INPUTS) >= 5
    assert all(_expected(p).exists() for p in INPUTS)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_golden(path: Path, update_golden: bool) -> None:
    out = format_source(path.read_text("utf-8"), str(path))
    expected = _expected(path)
    if update_golden:
        expected.write_text(out, "utf-8")
    assert out == expected.read_text("utf-8")


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_expected_files_are_fixed_points(path: Path) -> None:
    text = _expected(path).read_text("utf-8")
    assert format_source(text) == text


# ---- properties on golden inputs and real policies ----------------------------------------------------
def _source(path: Path) -> str:
    """A golden input or a policy file; a policy someone is editing into a syntax error is skipped."""
    text = path.read_text("utf-8-sig")
    try:
        parse(text, str(path))
    except PolicyError:
        pytest.skip(f"{path} does not parse")
    return text


@pytest.mark.parametrize("path", INPUTS + REAL, ids=lambda p: p.stem)
def test_idempotent(path: Path) -> None:
    once = format_source(_source(path))
    assert format_source(once) == once


@pytest.mark.parametrize("path", INPUTS + REAL, ids=lambda p: p.stem)
def test_preserves_ast_and_comments(path: Path) -> None:
    text = _source(path)
    assert_same_program(text, format_source(text))


@pytest.mark.parametrize("path", INPUTS + REAL, ids=lambda p: p.stem)
def test_layout_hygiene(path: Path) -> None:
    out = format_source(_source(path))
    lines = out.split("\n")
    assert out.endswith("\n") and not out.endswith("\n\n")
    assert all(line == line.rstrip() for line in lines)
    assert "\n\n\n" not in out
    assert all((len(line) - len(line.lstrip(" "))) % 2 == 0 for line in lines)


def test_keeps_token_spelling() -> None:
    text = (GOLDEN / "chinese.pol").read_text("utf-8")
    before = [str(t.value) for t in tokens(text) if t.type != "SEMICOLON" and t.value != ","]
    after = [str(t.value) for t in tokens(format_source(text)) if t.type != "SEMICOLON" and t.value != ","]
    assert after == before


# ---- whitespace between tokens does not matter ------------------------------------------------------
def _gaps(text: str) -> list[tuple[int, int]]:
    """(start, end) of the whitespace between consecutive tokens, skipping gaps holding a comment."""
    toks = tokens(text)
    spans = [(a.end_pos or 0, b.start_pos or 0) for a, b in itertools.pairwise(toks)]
    return [(s, e) for s, e in spans if "#" not in text[s:e]]


def _respace(text: str, gaps: list[tuple[int, int]], fills: list[str]) -> str:
    out, last = [], 0
    for (start, end), fill in zip(gaps, fills, strict=True):
        out += [text[last:start], fill]
        last = end
    return "".join([*out, text[last:]])


def _without_blank_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if line.strip())


@settings(max_examples=25, deadline=None)
@given(data=st.data(), path=st.sampled_from(INPUTS))
def test_whitespace_between_tokens_is_irrelevant(data: st.DataObject, path: Path) -> None:
    text = path.read_text("utf-8")
    gaps = [(s, e) for s, e in _gaps(text) if text.count("\n", s, e) < 2]  # user blank lines are kept
    fills = data.draw(st.lists(st.sampled_from([" ", "  ", "\n", "\n    ", "\t", " \n "]),
                               min_size=len(gaps), max_size=len(gaps)))
    assert format_source(_respace(text, gaps, fills)) == format_source(text)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), path=st.sampled_from(INPUTS))
def test_blank_lines_change_only_blank_lines(data: st.DataObject, path: Path) -> None:
    text = path.read_text("utf-8")
    gaps = _gaps(text)
    fills = data.draw(st.lists(st.sampled_from([" ", "\n", "\n\n", "\n\n\n  ", " \n\n\t"]),
                               min_size=len(gaps), max_size=len(gaps)))
    out = format_source(_respace(text, gaps, fills))
    assert _without_blank_lines(out) == _without_blank_lines(format_source(text))
    assert "\n\n\n" not in out


# ---- specific rules --------------------------------------------------------------------------------
def test_statements_one_per_line_and_semicolons_dropped() -> None:
    out = format_source('policy p { layer l { rate 50%; cap 100 per year; ; } ; }')
    assert out == "policy p {\n  layer l {\n    rate 50%\n    cap 100 per year\n  }\n}\n"


def test_trailing_clauses_stay_on_the_statement_line() -> None:
    out = format_source('policy p { layer l {\n rate 50%\n source "第一条"\n effective 2020-01-01\n } }')
    assert '    rate 50% source "第一条" effective 2020-01-01\n' in out


def test_hash_inside_strings_is_not_a_comment() -> None:
    text = 'policy p "标题 # 1" { layer l "“#2”" { rate 50% } } # real\n'
    out = format_source(text)
    assert '"标题 # 1"' in out
    assert '"“#2”"' in out
    assert out.endswith("} # real\n")


def test_trailing_comment_forces_a_continuation_line() -> None:
    out = format_source("policy p { layer l { cap 100 # in yuan\n per year } }")
    assert "    cap 100 # in yuan\n        per year\n" in out
    assert_same_program("policy p { layer l { cap 100 # in yuan\n per year } }", out)


def test_comment_before_closing_brace_is_indented_inside_the_block() -> None:
    out = format_source("policy p {\nlayer l {\nrate 50%\n# last\n}\n}")
    assert "    rate 50%\n    # last\n  }\n" in out


def test_at_most_one_blank_line_kept() -> None:
    out = format_source("policy p {\n\n\n  fund a\n\n\n\n  fund b\n  fund c\n}\n")
    assert out == "policy p {\n  fund a\n\n  fund b\n  fund c\n}\n"


def test_blank_line_around_blocks() -> None:
    out = format_source("policy p { fund a layer l { rate 1% } layer m { rate 2% } fund b }")
    assert out == ("policy p {\n  fund a\n\n  layer l {\n    rate 1%\n  }\n\n"
                   "  layer m {\n    rate 2%\n  }\n\n  fund b\n}\n")


def test_wrapped_header_one_clause_per_line() -> None:
    out = format_source('policy p "t" effective 2020-01-01 schemes resident, employee { fund a }')
    assert out == 'policy p "t"\n    effective 2020-01-01\n    schemes resident, employee {\n\n  fund a\n}\n'


def test_short_header_stays_on_one_line() -> None:
    assert format_source('policy p "t"\n effective 2020-01-01\n{ }') == 'policy p "t" effective 2020-01-01 {\n}\n'


def test_spacing_rules() -> None:
    out = format_source("policy p { layer l { scope kind=inpatient and level<=2 and x in ( a , b )\n"
                        "deductible max( 100 , base_value ) rate + 10% } }")
    assert "    scope kind = inpatient and level <= 2 and x in (a, b)\n" in out
    assert "    deductible max(100, base_value)\n    rate +10%\n" in out


def test_tier_separators_normalised() -> None:
    out = format_source("policy p { layer l { tiers { 0 to 1: 50%, above 1: 60%, } } }")
    assert "    tiers {\n      0 to 1: 50%;\n      above 1: 60%\n    }\n" in out


def test_crlf_input() -> None:
    out = format_source("policy p {\r\n  fund a # note\r\n}\r\n")
    assert out == "policy p {\n  fund a # note\n}\n"


def test_syntax_error_raises_the_parser_diagnostic() -> None:
    text = "policy p { layer l { rate } }"
    with pytest.raises(PolicyError) as fmt_error:
        format_source(text, "bad.pol")
    with pytest.raises(PolicyError) as parse_error:
        parse(text, "bad.pol")
    assert fmt_error.value.diagnostics == parse_error.value.diagnostics


def test_long_condition_wraps_before_its_outer_and_or() -> None:
    cond = " and ".join(f"flag_{i}" for i in range(11)) + " and (a or b)"
    out = format_source(f"policy p {{ layer l {{ scope {cond} }} }}")
    lines = out.split("\n")
    assert lines[2] == "    scope flag_0"
    assert lines[3:14] == [f"        and flag_{i}" for i in range(1, 11)] + ["        and (a or b)"]
    assert format_source("policy p { layer l { scope a and b } }").count("\n") == 5
