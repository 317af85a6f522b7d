"""The command line as a user runs it: output shapes, exit codes, files written."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from policy_lang.cli import main

ROOT = Path(__file__).resolve().parent.parent
YINGKOU = str(ROOT / "policies/yingkou/major-illness-2023.pol")
PERSONS = str(ROOT / "examples/persons.csv")
CLAIMS = str(ROOT / "examples/claims.csv")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_eval_json_has_the_shape_of_design_section_5() -> None:
    code, out, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    layers = ["basic", "chronic_outpatient", "critical_illness", "assistance", "tilted_assistance"]
    c1 = doc["claims"][0]
    assert set(c1) == {"claim_id", "person_id", "payments", "out_of_pocket"}
    assert list(c1["payments"]) == layers
    # the 特困 resident's large referred stay, derived by hand in the policy's tests
    assert c1["payments"] == {"basic": "149520.00", "chronic_outpatient": "0.00", "critical_illness": "70860.00",
                              "assistance": "20000.00", "tilted_assistance": "6734.00"}
    assert c1["out_of_pocket"] == "52886.00"
    p1 = doc["persons"][0]
    assert set(p1) == {"person_id", "year", "payments", "out_of_pocket", "alerts"}
    assert (p1["person_id"], p1["year"], p1["alerts"]) == ("p1", 2023, ["relapse_risk"])
    assert set(doc["totals"]) == {"payments", "out_of_pocket"}
    assert doc["totals"]["payments"]["basic"] == "229665.00"
    assert doc["premium_subsidies"][0] == {"person_id": "p1", "year": 2023, "subsidy": "premium_subsidy",
                                           "amount": "380.00"}


def test_eval_csv_and_table() -> None:
    code, out, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "claim_id,person_id,basic,chronic_outpatient,critical_illness,assistance,tilted_assistance," \
                       "out_of_pocket"
    assert lines[1] == "c1,p1,149520.00,0.00,70860.00,20000.00,6734.00,52886.00"
    code, out, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--format", "table")
    assert code == 0 and "total" in out.splitlines()[-1]


def test_eval_out_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    code, out, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--out", str(target))
    assert code == 0 and out == ""
    assert json.loads(target.read_text("utf-8"))["claims"][0]["claim_id"] == "c1"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_set_supplies_an_unspecified_parameter(tmp_path: Path) -> None:
    claims = tmp_path / "claims.csv"
    claims.write_text("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost,diseases,bed_days\n"
                      "m1,p1,2023-07-01,inpatient,2,20000,20000,severe_mental,30\n", "utf-8")
    target = tmp_path / "out.json"
    code, _, err = run("eval", YINGKOU, "--persons", PERSONS, "--claims", str(claims), "--out", str(target))
    assert code == 2 and "bed_day_rate" in err and "--set bed_day_rate=" in err
    assert not target.exists()
    code, out, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", str(claims), "--set", "bed_day_rate=80")
    assert code == 0
    # 30 bed-days × 80 = 2400 instead of the cost-based assistance (policy test 第十一条(二)4)
    assert json.loads(out)["claims"][0]["payments"]["assistance"] == "2400.00"
    code, _, err = run("eval", YINGKOU, "--persons", PERSONS, "--claims", str(claims), "--set", "nope=1")
    assert code == 2 and "unknown parameter `nope`" in err


def test_as_of_uses_the_rules_of_that_date() -> None:
    code, out, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--as-of", "2022-12-31")
    assert code == 0
    c1 = json.loads(out)["claims"][0]["payments"]
    # under the 2022 rules: 大病 70% for 特困: (100480 − 6000) × 70% = 66136; no tilted assistance
    assert (c1["critical_illness"], c1["tilted_assistance"]) == ("66136.00", "0.00")


def test_bad_data_exits_2_naming_file_line_column(tmp_path: Path) -> None:
    claims = tmp_path / "claims.csv"
    claims.write_text("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost\n"
                      "x1,p1,2023-01-01,inpatient,2,100.005,100\n", "utf-8")
    code, out, err = run("eval", YINGKOU, "--persons", PERSONS, "--claims", str(claims))
    assert code == 2 and out == ""
    assert err.startswith(f"{claims}:2:6: error:") and "total_cost" in err


def test_check_reports_errors_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    bad = tmp_path / "bad.pol"
    bad.write_text('policy t "t" source "assumed" {\n  layer a "a" fund basic_fund { rate 50 }\n}\n', "utf-8")
    code, _, err = run("check", str(bad))
    assert code == 1
    assert f"{bad}:2:38: error: expected a rate (like 75%), found a number" in err
    code, out, _ = run("check", "--format", "json", str(bad))
    assert code == 1 and json.loads(out)[0]["line"] == 2


def test_check_against_floors_reports_the_large_supplement_cap() -> None:
    code, _, err = run("check", "--against", str(ROOT / "policies/liaoning/floors-2021.pol"),
                       str(ROOT / "policies/liaoning/provincial-direct-base.pol"))
    assert code == 1
    assert "`large_supplement` cap 350000 is not >= the floor 400000" in err
    assert "三(五)" in err and "assumed: shared/DOMAIN.md §3.2" in err


def test_check_all_bundled_policies_is_clean() -> None:
    code, _, err = run("check", str(ROOT / "policies"))
    assert code == 0 and "0 errors, 0 warnings" in err


def test_test_command_counts(tmp_path: Path) -> None:
    code, out, _ = run("test", str(ROOT / "policies/liaoning/resident-base.pol"))
    assert code == 0 and out.strip().splitlines()[-1] == "8 passed, 0 failed"
    (tmp_path / "polc.toml").write_text("", "utf-8")
    failing = tmp_path / "f.pol"
    failing.write_text('policy t "t" source "assumed" {\n  layer a "a" fund basic_fund { rate 50% }\n'
                       '  test "wrong" {\n    person p { scheme = resident }\n'
                       '    claim c { person = p, date = 2023-01-01, kind = outpatient, level = 1, total = 100,'
                       ' eligible = 100 }\n    expect c { a = 60 }\n  }\n}\n', "utf-8")
    code, out, _ = run("test", str(failing))
    assert code == 1
    assert "claim c a: expected 60.00, got 50.00" in out and out.strip().endswith("0 passed, 1 failed")


def test_explain_names_every_layer_and_article() -> None:
    code, out, _ = run("explain", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--person", "p1")
    assert code == 0
    for needle in ("basic 基本医保统筹（住院）", "critical_illness 大病保险", "assistance 医疗救助·基本救助",
                   "tilted_assistance 医疗救助·倾斜救助", "营政办发〔2022〕23号 第九条(二)",
                   "营政办发〔2022〕23号 第十一条(二)3", "cap per year 20000.00", "out of pocket: 52886.00"):
        assert needle in out
    code, _, err = run("explain", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--person", "nobody")
    assert code == 2 and "no person `nobody`" in err


def test_graph_json_and_dot() -> None:
    code, out, _ = run("graph", YINGKOU, "--as-of", "2023-06-01")
    assert code == 0 and json.loads(out)["policy"] == "yingkou_major_illness_2023"
    code, out, _ = run("graph", YINGKOU, "--format", "dot")
    assert code == 0 and out.startswith("digraph") and "tilted_assistance" in out
    code, _, err = run("graph", YINGKOU, "--as-of", "2023-13-01")
    assert code == 2 and "not a date" in err


def test_help_for_every_command() -> None:
    for cmd in ("check", "fmt", "eval", "explain", "test", "graph"):
        code, out, _ = run(cmd, "--help")
        assert code == 0 and "Usage:" in out


def test_out_to_a_device_writes_through_it(tmp_path: Path) -> None:
    # renaming a temporary file over /dev/null (as root) would replace the device with a regular file
    import os
    import stat

    code, _, _ = run("eval", YINGKOU, "--persons", PERSONS, "--claims", CLAIMS, "--out", os.devnull)
    assert code == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_check_reports_a_test_that_needs_an_unspecified_parameter(tmp_path: Path) -> None:
    (tmp_path / "polc.toml").write_text("", "utf-8")
    pol = tmp_path / "p.pol"
    pol.write_text('policy t "t" source "assumed" {\n  param per_day: money unspecified\n'
                   '  layer a "a" fund assistance_fund { unit_rate per_day per bed_days }\n'
                   '  test "needs it" {\n    person p { scheme = resident }\n'
                   '    claim c { person = p, date = 2023-01-01, kind = inpatient, level = 1, total = 100,'
                   ' eligible = 100, bed_days = 2 }\n    expect c { a = 0 }\n  }\n}\n', "utf-8")
    code, _, err = run("check", str(pol))
    assert code == 1
    assert f"{pol}:4:3: error: test 'needs it' needs a parameter the policy leaves unspecified" in err


# ---- fmt: all files or none ---------------------------------------------------------------------------------
UNFORMATTED = 'policy p "t" {  layer a "a" fund f { rate 50% ; } }\n'
FORMATTED = 'policy p "t" {\n  layer a "a" fund f {\n    rate 50%\n  }\n}\n'  # one item a line, 2 spaces a level
BAD_PERCENT = 'policy p "t" {\n  layer basic fund f {\n    rate 50%% }\n}\n'  # the second % is line 3, column 13
BAD_STRING = 'policy p "t {\n}\n'  # the string never closes: its quote is line 1, column 10


def test_fmt_writes_nothing_when_any_file_has_an_error(tmp_path: Path) -> None:
    files = {"a.pol": UNFORMATTED, "b.pol": BAD_PERCENT, "c.pol": BAD_STRING, "d.pol": UNFORMATTED}
    for name, text in files.items():
        (tmp_path / name).write_text(text, "utf-8")
    paths = [str(tmp_path / name) for name in files]
    for args in (["fmt", *paths], ["fmt", "--check", *paths], ["fmt", str(tmp_path)]):
        code, _, err = run(*args)
        assert code == 1, err
        # every file's error, with its source line and a caret under the column (both indented by 4)
        assert f"{tmp_path / 'b.pol'}:3:13: error: unexpected character '%'\n" \
               f"        rate 50%% }}\n{' ' * (4 + 12)}^\n" in err
        assert f"{tmp_path / 'c.pol'}:1:10: error: unexpected character '\"'\n" \
               f"    policy p \"t {{\n{' ' * (4 + 9)}^\n" in err
        assert "reformat" not in err
        # nothing written: the good files before and after the bad ones are untouched, no temporary file left
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
        assert {name: (tmp_path / name).read_text("utf-8") for name in files} == files
    assert "2 files with errors: no file written" in run("fmt", *paths)[2]


def test_fmt_writes_every_changed_file_when_all_parse(tmp_path: Path) -> None:
    for name in ("a.pol", "b.pol"):
        (tmp_path / name).write_text(UNFORMATTED, "utf-8")
    (tmp_path / "c.pol").write_text(FORMATTED, "utf-8")
    paths = [str(tmp_path / name) for name in ("a.pol", "b.pol", "c.pol")]
    code, _, err = run("fmt", "--check", *paths)
    assert code == 1
    assert err.splitlines() == [f"would reformat {tmp_path / 'a.pol'}", f"would reformat {tmp_path / 'b.pol'}"]
    assert (tmp_path / "a.pol").read_text("utf-8") == UNFORMATTED
    code, _, err = run("fmt", *paths, paths[0])  # a file named twice is formatted once
    assert code == 0
    assert err.splitlines() == [f"reformatted {tmp_path / 'a.pol'}", f"reformatted {tmp_path / 'b.pol'}"]
    assert [(tmp_path / n).read_text("utf-8") for n in ("a.pol", "b.pol", "c.pol")] == [FORMATTED] * 3
    assert run("fmt", "--check", *paths) == (0, "", "")
