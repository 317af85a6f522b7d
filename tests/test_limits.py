"""Limits: huge or deeply nested input ends in a clear error or in bounded time, never a RecursionError,
a hang or a memory blow-up (issue "Robustness and security").

The parser refuses a parse tree deeper than MAX_DEPTH right after parsing (so the Transformer and the
recursive passes after it are safe); named conditions are bounded in depth and size as they expand;
a policy file is at most MAX_SOURCE_BYTES; layers, rules per layer and periods × policy size are
bounded in resolve and check. Each test prints how long it took (`pytest -s`).
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner

from policy_lang import check, conditions, resolve
from policy_lang.cli import main
from policy_lang.data import DataVocabulary, load_persons
from policy_lang.diagnostics import PolicyError
from policy_lang.parse import MAX_DEPTH, MAX_SOURCE_BYTES
from policy_lang.pipeline import build

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
PERSONS = str(ROOT / "examples/persons.csv")
CLAIMS = str(ROOT / "examples/claims.csv")
LIMIT_SECONDS = 60  # generous: every case here takes a few seconds at most on the CI machine

HEAD = 'policy p "限额" effective 2023-01-01 source "assumed: limits" {\n  fund f\n  identity tekun\n'


def layer_policy(body: str, decls: str = "") -> str:
    return f'{HEAD}{decls}  layer basic "b" fund f {{\n    scope kind = inpatient\n{body}\n  }}\n}}\n'


def write(tmp: Path, text: str, name: str = "main.pol") -> str:
    (tmp / "polc.toml").write_text("", "utf-8")
    (tmp / name).write_text(text, "utf-8")
    return str(tmp / name)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    return result.exit_code, result.output


def timed(label: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"\n[limits] {label}: {seconds:.2f} s")
    assert seconds < LIMIT_SECONDS, f"{label} took {seconds:.0f} s"
    return out


def with_stack(frames: int, fn: Callable[[], T]) -> T:
    """Call fn with `frames` extra Python frames below it: a deep caller (pytest, a server) is safe too."""
    return fn() if frames == 0 else with_stack(frames - 1, fn)


def all_commands(path: str) -> dict[str, tuple[int, str]]:
    data = ["--persons", PERSONS, "--claims", CLAIMS]
    formatted = Path(path).with_suffix(".fmt.pol")
    formatted.write_bytes(Path(path).read_bytes())
    return {
        "check": run("check", path), "eval": run("eval", path, *data),
        "explain": run("explain", path, *data, "--person", "p1"), "graph": run("graph", path),
        "dot": run("graph", path, "--format", "dot"), "test": run("test", path),
        "fmt": run("fmt", str(formatted)), "fmt --check": run("fmt", "--check", str(formatted)),
    }


# ---- deep nesting ----------------------------------------------------------------------------------------
def test_ten_thousand_nested_parentheses_in_a_condition(tmp_path: Path) -> None:
    # `( … )` adds no level to the parse tree (the LALR parser keeps its own stack): it just works.
    cond = "(" * 10_000 + "referred" + ")" * 10_000
    path = write(tmp_path, layer_policy(f"    rate 60%\n    when {cond} {{ rate 50% }}"))
    code, out = timed("10,000 nested parentheses, check", lambda: run("check", path))
    assert code == 0, out
    code, out = timed("10,000 nested parentheses, eval", lambda: run("eval", path, "--persons", PERSONS,
                                                                      "--claims", CLAIMS))
    assert code == 0, out


@pytest.mark.parametrize(("label", "body", "where"), [
    ("5,000 nested when blocks", "    rate 60%\n" + "    when referred {\n" * 5000 + "rate 50%\n" + "}\n" * 5000,
     f"main.pol:{MAX_DEPTH + 2}:10:"),
    ("a value with 10,000 nested max(", "    rate " + "max(" * 10_000 + "50%" + ", 10%)" * 10_000, "main.pol:6:394:"),
    ("10,000 nested not", "    rate 60%\n    when " + "not " * 10_000 + "referred { rate 50% }", "main.pol:7:394:"),
    ("a chain of 10,000 +", "    rate 50%\n    deductible " + " + ".join(["1"] * 10_000), "main.pol:7:16:"),
    ("10,000 nested by level", "    rate " + "by level " * 10_000 + "1% / 2% / 3%" + " / 2% / 3%" * 9_999,
     "main.pol:6:874:"),
    ("alternating and/or 10,000 deep",
     "    rate 60%\n    when " + "(referred or (in_province and " * 5_000 + "emergency" + "))" * 5_000
     + " { rate 50% }", "main.pol:7:1421:"),
])
def test_deep_nesting_is_a_clear_error(tmp_path: Path, label: str, body: str, where: str) -> None:
    path = write(tmp_path, layer_policy(body))
    for command in ("check", "fmt"):
        code, out = timed(f"{label}, {command}", lambda c=command: run(c, path))  # type: ignore[misc]
        assert code == 1, out
        assert f"error: nested too deeply (more than {MAX_DEPTH} levels)" in out
        assert where in out, out
    with pytest.raises(PolicyError) as exc:
        build(path)
    assert exc.value.diagnostics[0].message.startswith("nested too deeply")


def test_nesting_just_under_the_limit_works_everywhere(tmp_path: Path) -> None:
    """Every recursive pass (transformer, conditions, DNF, values, check, resolve, compile, interp,
    explain, graph output, fmt) copes with the deepest accepted input, with 200 frames to spare."""
    n = MAX_DEPTH - 8
    cases = {
        "when": "    rate 60%\n" + "    when referred {\n" * n + "rate 50%\n" + "}\n" * n,
        "not": "    rate 60%\n    when " + "not " * n + "referred { rate 50% }",
        "and-or": "    rate 60%\n    when " + "(referred or (in_province and " * (n // 2) + "emergency"
                  + "))" * (n // 2) + " { rate 50% }",
        "max": "    rate " + "max(" * n + "50%" + ", 10%)" * n,
        "sum": "    rate 50%\n    deductible " + " + ".join(["1"] * n),
        "relative": "    rate 50%\n    deductible 1000\n    when referred { deductible -" + " + ".join(["1"] * n) + " }",
    }
    for label, body in cases.items():
        path = write(tmp_path, layer_policy(body), f"{label}.pol")
        results = timed(f"{n} levels of {label}, every command",
                        lambda p=path: with_stack(200, lambda: all_commands(p)))  # type: ignore[misc]
        for command, (code, out) in results.items():
            assert code == 0, f"{label} {command}: {out}"


def test_a_chain_of_named_conditions(tmp_path: Path) -> None:
    # c999 = c998 = … = c0: each use expands the one before; the expansion is bounded in depth.
    decls = "  condition c0 = referred\n" + "".join(f"  condition c{i} = c{i - 1}\n" for i in range(1, 1000))
    path = write(tmp_path, layer_policy("    rate 60%\n    when c999 { rate 50% }", decls))
    code, out = timed("1,000 chained named conditions, check", lambda: run("check", path))
    assert code == 1
    assert f"condition nested too deeply (more than {conditions.MAX_COND_DEPTH} levels" in out


def test_named_conditions_that_double_at_each_step(tmp_path: Path) -> None:
    # c1 = c0 and c0, c2 = c1 and c1, …: 2^40 parts if expanded (it hung before the bound).
    decls = "  condition c0 = referred\n" + "".join(f"  condition c{i} = c{i - 1} and c{i - 1}\n"
                                                      for i in range(1, 41))
    path = write(tmp_path, layer_policy("    rate 60%\n    when c40 { rate 50% }", decls))
    code, out = timed("40 doubling named conditions, check", lambda: run("check", path))
    assert code == 1
    assert f"condition too large: with the named conditions it uses it has more than " \
           f"{conditions.MAX_COND_PARTS} parts" in out


# ---- size ---------------------------------------------------------------------------------------------
def _diseases(n: int) -> str:
    entries = ",\n".join(f'    "疾病{i}号-长名称"' for i in range(n))
    return layer_policy("    rate 50%\n    when diseases has big { rate 60% }", f'  diseases big "大病" {{\n{entries}\n  }}\n')


def test_a_10_mb_policy_is_refused_quickly(tmp_path: Path) -> None:
    text = _diseases(400_000)
    assert len(text.encode()) > 10 * 2**20
    path = write(tmp_path, text)
    limit = f"error: policy file is larger than {MAX_SOURCE_BYTES // 2**20} MB"
    for command in (["check"], ["fmt"], ["eval", "--persons", PERSONS, "--claims", CLAIMS]):
        code, out = timed(f"a 10 MB policy, {command[0]}", lambda c=command: run(*c, path))  # type: ignore[misc]
        assert code == 1 and limit in out, out[:500]


def test_a_policy_just_under_the_size_limit_finishes(tmp_path: Path) -> None:
    text = _diseases(60_000)  # a disease list of 60,000 entries
    size = len(text.encode())
    assert MAX_SOURCE_BYTES * 0.7 < size < MAX_SOURCE_BYTES
    path = write(tmp_path, text)
    code, out = timed(f"a {size / 2**20:.1f} MB disease list of 60,000 entries, check", lambda: run("check", path))
    assert code == 0, out[:500]


def test_100000_layers(tmp_path: Path) -> None:
    text = HEAD + "".join(f"  layer l{i} fund f {{ rate 1% }}\n" for i in range(100_000)) + "}\n"
    path = write(tmp_path, text)
    code, out = timed("100,000 layers, check", lambda: run("check", path))
    assert code == 1 and "policy file is larger than" in out


def test_too_many_layers_is_a_clear_error(tmp_path: Path) -> None:
    text = HEAD + "".join(f"  layer l{i} fund f {{ rate 1% }}\n" for i in range(2_000)) + "}\n"
    path = write(tmp_path, text)
    code, out = timed("2,000 layers, check", lambda: run("check", path))
    assert code == 1
    assert f"main.pol:{resolve.MAX_LAYERS + 4}:3: error: too many layers (more than {resolve.MAX_LAYERS})" in out
    assert out.count("error: too many layers") == 1


def test_100000_tiers_in_one_layer(tmp_path: Path) -> None:
    tiers = " ".join(f"{i * 10} to {i * 10 + 10}: 50%" for i in range(100_000))
    path = write(tmp_path, layer_policy(f"    tiers {{ {tiers} }}"))
    code, out = timed("100,000 tiers, check", lambda: run("check", path))
    assert code == 1 and "policy file is larger than" in out


def test_10000_tiers_in_one_layer(tmp_path: Path) -> None:
    tiers = "\n".join(f"      {i * 10} to {i * 10 + 10}: {50 + i % 40}%" for i in range(10_000))
    path = write(tmp_path, layer_policy(f"    tiers {{\n{tiers}\n    }}"))
    code, out = timed("10,000 tiers, check", lambda: run("check", path))
    assert code == 0, out[:500]
    code, out = timed("10,000 tiers, eval", lambda: run("eval", path, "--persons", PERSONS, "--claims", CLAIMS))
    assert code == 0, out[:500]


def test_a_million_identities(tmp_path: Path) -> None:
    text = layer_policy("    rate 50%", "".join(f"  identity id{i}\n" for i in range(1_000_000)))
    path = write(tmp_path, text)
    code, out = timed("1,000,000 identities, check", lambda: run("check", path))
    assert code == 1 and "policy file is larger than" in out


def test_20000_identities(tmp_path: Path) -> None:
    text = layer_policy("    rate 50%", "".join(f"  identity id{i} \"身份{i}\"\n" for i in range(20_000)))
    path = write(tmp_path, text)
    code, out = timed("20,000 identities, check", lambda: run("check", path))
    assert code == 0, out[:500]


def test_too_many_rules_is_a_clear_error(tmp_path: Path) -> None:
    rules = "".join(f"    rule r{i} when total_cost >= {i} {{ rate 60% }}\n" for i in range(2_000))
    path = write(tmp_path, layer_policy("    rate 50%\n" + rules))
    code, out = timed("2,000 rules in a layer, check", lambda: run("check", path))
    assert code == 1
    assert "error: too many rules to check: layer `basic` has 2001 rules" in out


def test_a_date_on_every_statement(tmp_path: Path) -> None:
    import datetime

    day = datetime.date(2023, 1, 1)
    rates = "".join(f"    rate {i % 90}% effective {day + datetime.timedelta(days=i)} "
                    f"until {day + datetime.timedelta(days=i)}\n" for i in range(5_000))
    path = write(tmp_path, layer_policy(rates + "    rate 50%"))
    code, out = timed("5,000 change dates, check", lambda: run("check", path))
    assert code == 1
    assert "error: policy too large to check: 5002 periods" in out  # 5,001 change dates and the time before
    assert check.MAX_PERIOD_NODES >= 1_000_000


def test_a_person_holding_10000_identities(tmp_path: Path) -> None:
    ids = [f"id{i}" for i in range(10_000)]
    entries = "".join(f"      {i} {{ rate {50 + k % 40}% }}\n" for k, i in enumerate(ids[:300]))
    text = layer_policy(f"    rate 50%\n    by identity best {{\n{entries}    }}",
                        "".join(f"  identity {i}\n" for i in ids))
    path = write(tmp_path, text)
    persons = tmp_path / "persons.csv"
    persons.write_text("person_id,scheme,identities\np1,resident," + ";".join(ids) + "\n", "utf-8")
    claims = tmp_path / "claims.csv"
    claims.write_text("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost\n"
                      "c1,p1,2023-05-10,inpatient,3,300000,250000\n", "utf-8")
    code, out = timed("a person with 10,000 identities, eval",
                      lambda: run("eval", path, "--persons", str(persons), "--claims", str(claims)))
    assert code == 0, out[:500]
    doc = json.loads(out)
    assert doc["claims"][0]["payments"]["basic"] == "222500.00"  # the best identity's 89% of 250000
    # the same person in a policy that does not know the identities: a data error, exit 2
    plain = write(tmp_path, layer_policy("    rate 50%"), "plain.pol")
    code, out = timed("a person with 10,000 unknown identities, eval",
                      lambda: run("eval", plain, "--persons", str(persons), "--claims", str(claims)))
    assert code == 2 and "persons.csv:2:" in out and "error: identities: unknown identity 'id0'" in out


# ---- huge numbers ------------------------------------------------------------------------------------------
HUGE = "99999999999999999999999"
HUGE_NUMBERS = {
    "a deductible": layer_policy(f"    rate 50%\n    deductible {HUGE}"),
    "a by-level deductible (found by fuzzing)":
        layer_policy("    rate 50%\n    deductible by level 99999999999999999999.99万元 / 500 / 800 per admission"),
    "a cap": layer_policy(f"    rate 50%\n    cap {HUGE} per year"),
    "a tier bound": layer_policy(f"    tiers {{ 0 to {HUGE}: 50% above {HUGE}: 60% }}"),
    "a unit rate": layer_policy(f"    unit_rate {HUGE} per bed_days"),
    "a relative change": layer_policy(f"    rate 50%\n    deductible 100\n    when referred {{ deductible +{HUGE} }}"),
    "a product of rates": layer_policy("    rate 50%\n    deductible 100\n    when referred { deductible ×"
                                       + " × ".join(["1000%"] * 12) + " }"),
    "a parameter": layer_policy("    rate 50%\n    deductible d", f"  param d: money = {HUGE}\n"),
    "a condition": layer_policy(f"    rate 50%\n    when admission >= {HUGE} {{ rate 60% }}"),
    "a shared cap": HEAD + "  layer a fund f { scope kind = inpatient\n rate 50% }\n"
                    "  layer b fund f { scope kind = outpatient\n rate 50% }\n"
                    f"  shared cap pool {HUGE} per year for a, b\n}}\n",
    "an alert threshold": HEAD + "  layer basic fund f { rate 50% }\n  alert a { measure burden after basic where "
                          f"kind = inpatient\n when true {{ threshold {HUGE} }} }}\n}}\n",
    "a target more precise than 0.0001% (found by fuzzing)":
        HEAD + "  layer basic fund f { rate 50% }\n  target t { payout of basic where kind = inpatient "
        "at least 0." + "0" * 300 + "1% by 2025-12-31 }\n}\n",
}


@pytest.mark.parametrize("label", list(HUGE_NUMBERS))
def test_huge_numbers_are_a_clear_error(tmp_path: Path, label: str) -> None:
    # The vector engine computes in 64-bit integers: each of these crashed `polc eval` with OverflowError
    # (the target crashed the compiler with an uncaught ValueError_).
    path = write(tmp_path, HUGE_NUMBERS[label])
    code, out = timed(f"{label}, eval", lambda: run("eval", path, "--persons", PERSONS, "--claims", CLAIMS))
    assert code == 1, out
    assert re.search(r"main\.pol:\d+:\d+: error: (value too large|`\d+(\.\d+)?` is too large|"
                     r"1E-301% is more precise than 0\.0001%)", out), out


def test_a_huge_value_set_in_a_test(tmp_path: Path) -> None:
    text = layer_policy("    unit_rate bed_day_rate per bed_days",
                        "  param bed_day_rate: money unspecified\n"
                        f'  test "t" {{\n    set bed_day_rate = {HUGE}\n    person p1 {{ scheme = resident }}\n'
                        "    claim c1 { person = p1, date = 2023-03-01, kind = inpatient, level = 3, total = 10, "
                        "eligible = 10, bed_days = 3 }\n    expect c1 { basic = 10 }\n  }\n")
    path = write(tmp_path, text)
    code, out = timed("a huge `set` in a test, test", lambda: run("test", path))
    assert code == 1 and "error: value too large" in out and "0 passed, 1 failed" in out, out


# ---- linear in the size of a list ---------------------------------------------------------------------------
def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def test_loading_a_person_with_many_identities_is_linear(tmp_path: Path) -> None:
    # data._grants once checked each identity against every earlier one: 40,000 identities took ~40 s.
    def load(n: int) -> None:
        ids = [f"id{i}" for i in range(n)]
        path = tmp_path / f"p{n}.jsonl"
        path.write_text(json.dumps({"person_id": "p1", "scheme": "resident", "identities": ids}) + "\n", "utf-8")
        load_persons(path, DataVocabulary(frozenset(ids), {}))

    small, large = _cpu(lambda: load(1_000)), _cpu(lambda: load(8_000))
    print(f"\n[limits] a person with 1,000 identities: {small:.2f} s, with 8,000: {large:.2f} s")
    assert large < 20 * max(small, 0.02)  # linear: ×8 (or the 0.02 s floor); quadratic: ×64


def test_formatting_a_long_disease_list_is_linear() -> None:
    # fmt._Emitter.entry_list once tested every child against every entry: 30,000 entries took ~25 s.
    from policy_lang.fmt import format_source

    def lists(n: int, per: int) -> str:
        return layer_policy("    rate 50%", "".join(
            f'  diseases list{j} "病种{j}" {{\n' + ",\n".join(f'    "疾病{j}-{i}号"' for i in range(per)) + "\n  }\n"
            for j in range(n)))

    format_source(lists(1, 3))  # build the formatter's parser first
    one = _cpu(lambda: format_source(lists(1, 10_000)))
    many = _cpu(lambda: format_source(lists(100, 100)))
    print(f"\n[limits] fmt of one list of 10,000 diseases: {one:.2f} s; of 100 lists of 100: {many:.2f} s")
    assert one < 2 * many  # the same entries: a linear formatter takes about as long


def test_a_huge_set_on_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, layer_policy("    unit_rate bed_day_rate per bed_days",
                                        "  param bed_day_rate: money unspecified\n"))
    code, out = run("eval", path, "--persons", PERSONS, "--claims", CLAIMS, "--set", "bed_day_rate=1e30")
    assert code == 2 and "polc: error: --set bed_day_rate" in out


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_AS and a sparse file")
def test_fmt_refuses_a_huge_file_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.pol"
    with path.open("wb") as handle:
        handle.truncate(4 * 2**30)  # sparse: no disk used

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    proc = subprocess.run([sys.executable, "-c", "from policy_lang.cli import main; main()", "fmt", str(path)],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit_memory)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-500:]
    assert "larger than" in proc.stderr
