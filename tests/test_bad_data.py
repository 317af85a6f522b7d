"""Bad population data through `polc eval` and `polc simulate --population`: one catalogue, the same answers."""

# Every bad input gives exit 2, `path:line:column: error: message` on stderr naming the column, and no output
# file (an existing one is left as it was). CSV and JSON Lines faults read exactly as `polc eval` reports
# them; Parquet (simulate only) gives `path:row:column`, the 1-based row of the file and the 1-based column
# of its schema. Inputs that look odd but are valid (a byte-order mark, CRLF, GBK with `--encoding gbk`,
# unknown columns, header-only files, …) are read as the plain file is.

from __future__ import annotations

import decimal
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from policy_lang.cli import main

ROOT = Path(__file__).resolve().parent.parent
POLICY = str(ROOT / "policies/yingkou/major-illness-2023.pol")

PERSONS = "person_id,scheme,identities,chronic,sex,age\nP1,resident,dibao,uremia,F,60\nP2,resident,,,M,40\n"
PERSON_HEADER = "person_id,scheme,identities,chronic,sex,age"
CLAIM_HEADER = "claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost"
CLAIM = "C1,P1,2023-01-05,inpatient,2,1000.00,800.00"
CLAIM2 = "C2,P2,2023-03-01,outpatient,1,200.00,150.00"
JSON_CLAIM = ('{"claim_id": "J1", "person_id": "P1", "date": "2023-01-05", "kind": "inpatient", '
              '"hospital_level": 2, "total_cost": 1000, "eligible_cost": 800.50}')


def claims(*rows: str, extra: str = "") -> str:
    """A claims CSV: the required header plus `extra` columns, then the rows."""
    return "\n".join([CLAIM_HEADER + ("," + extra if extra else ""), *rows]) + "\n"


def persons(*rows: str) -> str:
    return "\n".join([PERSON_HEADER, *rows]) + "\n"


Content = str | bytes | Callable[[Path], None]


def parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path)


def claims_table(**columns: pa.Array) -> pa.Table:
    """One valid claim (C1 of P1) as a Parquet table of typed columns, with `columns` replaced or added."""
    base: dict[str, pa.Array] = {
        "claim_id": pa.array(["C1"]), "person_id": pa.array(["P1"]), "date": pa.array(["2023-01-05"]),
        "kind": pa.array(["inpatient"]), "hospital_level": pa.array([2], pa.int32()),
        "total_cost": pa.array([decimal.Decimal("1000.00")], pa.decimal128(18, 2)),
        "eligible_cost": pa.array([decimal.Decimal("800.00")], pa.decimal128(18, 2))}
    base.update(columns)
    return pa.table(base)


def truncated_parquet(path: Path) -> None:
    pq.write_table(claims_table(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@attrs.frozen
class Bad:
    """A population whose `file` is at fault: where policy_lang.data (and the loader) must say so."""

    name: str
    file: str  # persons.csv, claims.jsonl, claims.parquet, …
    content: Content
    line: int
    column: int
    phrase: str  # in the message
    names: str | None  # a column the message names (None: the fault is not in a column)
    hint: str | None = None
    encoding: str | None = None


BAD = [
    Bad("empty persons file", "persons.csv", "", 1, 1, "no header row", "person_id"),
    Bad("empty claims file", "claims.csv", "", 1, 1, "no header row", "claim_id"),
    Bad("blank header line", "claims.csv", "\n" + claims(CLAIM), 1, 1, "no header row", "claim_id"),
    Bad("missing claim columns", "claims.csv", "claim_id,person_id,date,hospital_level,total_cost\nC1,P1,2023-01-05,1,1\n",
        1, 1, "missing required column(s): kind, eligible_cost", "kind"),
    Bad("missing person column", "persons.csv", "person_id,age\nP1,30\n", 1, 1, "missing required column(s): scheme",
        "scheme"),
    Bad("duplicate column", "persons.csv", "person_id,scheme,age,age\nP1,resident,1,2\n", 1, 4,
        "duplicate column 'age' in the header (first at column 3)", "age"),
    Bad("too few fields", "claims.csv", claims(CLAIM, "C2,P1,2023-01-05,inpatient,2"), 3, 6,
        "row has 5 fields but the header has 7", "total_cost"),
    Bad("too many fields", "claims.csv", claims(CLAIM + ",x"), 2, 8, "row has 8 fields but the header has 7",
        "eligible_cost"),
    Bad("unterminated quote", "claims.csv", claims(CLAIM, 'C2,"P1,2023'), 3, 1, "malformed CSV", None),
    Bad("text after a closing quote", "claims.csv", claims('C1,P1,2023-01-05,"in"patient,2,1000.00,800.00'), 2, 1,
        "malformed CSV: ',' expected after '\"'", None),
    Bad("required id empty", "claims.csv", claims(" ,P1,2023-01-05,inpatient,2,1,1"), 2, 1,
        "claim_id is required but empty", "claim_id"),
    Bad("not a boolean", "claims.csv", claims(CLAIM + ",yes", extra="grassroots"), 2, 8,
        "grassroots 'yes' is not a boolean: use true, false, 1 or 0", "grassroots"),
    Bad("hospital level 4", "claims.csv", claims("C1,P1,2023-01-05,inpatient,4,1,1"), 2, 5,
        "hospital_level '4' is not one of: 1, 2, 3", "hospital_level"),
    Bad("unknown kind", "claims.csv", claims("C1,P1,2023-01-05,Inpatient,2,1,1"), 2, 4, "kind 'Inpatient' is not one of",
        "kind", "did you mean 'inpatient'?"),
    Bad("kind in Chinese", "claims.csv", claims("C1,P1,2023-01-05,住院,2,1,1"), 2, 4, "kind '住院' is not one of", "kind",
        "write the id 'inpatient'"),
    Bad("unknown designation", "claims.csv", claims(CLAIM + ",county", extra="designation"), 2, 8,
        "designation 'county' is not one of", "designation"),
    Bad("unknown scheme", "persons.csv", "person_id,scheme\nP1,employe\nP2,resident\n", 2, 2,
        "scheme 'employe' is not one of", "scheme", "did you mean 'employee'?"),
    Bad("unknown sex", "persons.csv", persons("P1,resident,,,女,", "P2,resident,,,,"), 2, 5, "sex '女' is not one of: F, M",
        "sex"),
    Bad("age out of range", "persons.csv", persons("P1,resident,,,F,200", "P2,resident,,,,"), 2, 6,
        "age 200 is out of range: expected 0 to 150", "age"),
    Bad("age not a number", "persons.csv", persons("P1,resident,,,F,6o", "P2,resident,,,,"), 2, 6,
        "age '6o' is not a whole number", "age"),
    Bad("unknown identity", "persons.csv", persons("P1,resident,tekun;dibo,,F,1", "P2,resident,,,,"), 2, 3,
        "identities: unknown identity 'dibo'", "identities", "did you mean 'dibao'"),
    Bad("repeated identity", "persons.csv", persons("P1,resident,dibao;低保@2023-01-01,,F,1", "P2,resident,,,,"), 2, 3,
        "identities: identity 'dibao' is listed twice", "identities"),
    Bad("impossible grant date", "persons.csv", persons("P1,resident,dibao@2023-13-01,,F,1", "P2,resident,,,,"), 2, 3,
        "identities: 'dibao@2023-13-01' has a bad date", "identities"),
    Bad("unknown chronic disease", "persons.csv", persons("P1,resident,,uremia;高血亚,F,1", "P2,resident,,,,"), 2, 4,
        "chronic: unknown disease '高血亚'", "chronic", "did you mean '高血压'?"),
    Bad("unknown claim disease", "claims.csv", claims(CLAIM + ",hemophila", extra="diseases"), 2, 8,
        "diseases: unknown disease 'hemophila'", "diseases", "did you mean 'hemophilia'?"),
    Bad("duplicate person id", "persons.csv", persons("P1,resident,,,,", "P2,resident,,,,", "P1,employee,,,,"), 4, 1,
        "duplicate person_id 'P1' (first on line 2)", "person_id"),
    Bad("duplicate claim id", "claims.csv", claims(CLAIM, CLAIM2, "C1,P2,2023-06-01,inpatient,2,5,5"), 4, 1,
        "duplicate claim_id 'C1' (first on line 2)", "claim_id"),
    Bad("claim of an unknown person", "claims.csv", claims(CLAIM, "C2,P11,2023-01-05,inpatient,2,1,1"), 3, 2,
        "person_id 'P11' is not in the persons file", "person_id", "did you mean 'P1'?"),
    Bad("impossible date", "claims.csv", claims("C1,P1,2023-02-30,inpatient,2,1,1"), 2, 3,
        "date '2023-02-30' is not a calendar date", "date"),
    Bad("date not YYYY-MM-DD", "claims.csv", claims("C1,P1,2023/01/05,inpatient,2,1,1"), 2, 3,
        "date '2023/01/05' is not a date: expected YYYY-MM-DD", "date"),
    Bad("negative amount", "claims.csv", claims("C1,P1,2023-01-05,inpatient,2,-5,0"), 2, 6,
        "total_cost: amount '-5' is negative", "total_cost"),
    Bad("three decimals", "claims.csv", claims("C1,P1,2023-01-05,inpatient,2,10,1.005"), 2, 7,
        "eligible_cost: amount '1.005' has more than two decimals", "eligible_cost"),
    Bad("amount not a number", "claims.csv", claims("C1,P1,2023-01-05,inpatient,2,1e3,1"), 2, 6,
        "total_cost: amount '1e3' is not a number", "total_cost"),
    Bad("amount above the maximum", "claims.csv", claims("C1,P1,2023-01-05,inpatient,2,1000000000.01,1"), 2, 6,
        "total_cost: amount '1000000000.01' is above the maximum 1000000000.00", "total_cost"),
    Bad("required amount empty", "claims.csv", claims("C1,P1,2023-01-05,inpatient,2,,1"), 2, 6,
        "total_cost is required but empty", "total_cost"),
    Bad("eligible above total", "claims.csv", claims("C1,P1,2023-01-05,inpatient,2,1000,1200"), 2, 7,
        "eligible_cost 1200.00 is above total_cost 1000.00", "eligible_cost"),
    Bad("tcm above eligible", "claims.csv", claims(CLAIM + ",800.01", extra="tcm_cost"), 2, 8,
        "tcm_cost 800.01 is above eligible_cost 800.00", "tcm_cost"),
    Bad("material above out-of-list", "claims.csv", claims(CLAIM + ",200.01", extra="material_over_limit"), 2, 8,
        "material_over_limit 200.01 is above the out-of-list cost", "material_over_limit"),
    Bad("pooling area outside the province", "claims.csv",
        claims(CLAIM + ",false,true", extra="in_province,in_pooling_area"), 2, 9,
        "in_pooling_area is true but in_province is false", "in_pooling_area"),
    Bad("negative bed days", "claims.csv", claims(CLAIM + ",-1", extra="bed_days"), 2, 8,
        "bed_days -1 is out of range", "bed_days"),
    Bad("GBK without --encoding", "persons.csv", "person_id,scheme\n张三,resident\n".encode("gbk"), 2, 1,
        "the file is not UTF-8: byte 0xD5 cannot be decoded", None, "`--encoding gbk`"),
    Bad("UTF-8 read as GBK", "persons.csv", "person_id,scheme,region\nP1,resident,€\n".encode(), 2, 15,
        "the file is not gbk: byte 0xAC cannot be decoded", None, "leave out `--encoding`", encoding="gbk"),
    Bad("BOM and CRLF, fault on line 3", "claims.csv",
        b"\xef\xbb\xbf" + claims(CLAIM, "C2,P2,2023-03-01,outpatent,1,5,5").replace("\n", "\r\n").encode(), 3, 4,
        "kind 'outpatent' is not one of", "kind", "did you mean 'outpatient'"),
    Bad("fault after a quoted field of two lines", "claims.csv",
        claims(CLAIM + ',"first\nsecond"', "C2,P2,2023-02-30,outpatient,1,5,5,x", extra="remark"), 4, 3,
        "date '2023-02-30' is not a calendar date", "date"),
    Bad("fault after blank lines", "claims.csv", claims(CLAIM, "", "", "C2,P2,2023-01-05,inpatient,2,5,6"), 5, 7,
        "eligible_cost 6.00 is above total_cost 5.00", "eligible_cost"),
    Bad("bad byte in JSON Lines", "claims.jsonl", (JSON_CLAIM + "\n").encode() + b'{"claim_id": "\xff\xfe"}\n', 2, 15,
        "the file is not UTF-8: byte 0xFF", None),
    Bad("invalid JSON", "claims.jsonl", JSON_CLAIM + "\n\n" + '{"claim_id": "J2",}\n', 3, 1, "invalid JSON", None),
    Bad("JSON NaN", "claims.jsonl", JSON_CLAIM.replace("800.50", "NaN") + "\n", 1, 1, "NaN is not allowed", None),
    Bad("JSON record not an object", "claims.jsonl", "[" + JSON_CLAIM + "]\n", 1, 1,
        "a JSON Lines record must be an object {...}, found a list", None),
    Bad("JSON record missing keys", "claims.jsonl", JSON_CLAIM + '\n{"claim_id": "J2", "person_id": "P1"}\n', 2, 1,
        "missing required column(s): date, kind, hospital_level, total_cost, eligible_cost", "date"),
    Bad("JSON duplicate key", "claims.jsonl", JSON_CLAIM[:-1] + ', "kind": "outpatient"}\n', 1, 8,
        "duplicate key 'kind' in the record (first at position 4)", "kind"),
    Bad("JSON list for a scalar", "claims.jsonl", JSON_CLAIM.replace('"inpatient"', '["inpatient"]') + "\n", 1, 4,
        "kind must be a single value, found a list", "kind"),
    Bad("JSON boolean for an amount", "claims.jsonl", JSON_CLAIM.replace("1000", "true") + "\n", 1, 6,
        "total_cost must be a string or a number, found a JSON boolean", "total_cost"),
    Bad("JSON exponent amount", "claims.jsonl", JSON_CLAIM.replace("800.50", "8e2") + "\n", 1, 7,
        "eligible_cost: amount '8E+2' is not a number", "eligible_cost"),
    # Parquet (simulate only): path:row:column, the row counted from 1, the column in the schema
    Bad("truncated Parquet", "claims.parquet", truncated_parquet, 1, 1, "not a valid Parquet file", None),
    Bad("CSV text named .parquet", "persons.parquet", PERSONS, 1, 1, "not a valid Parquet file", None),
    Bad("Parquet missing column", "claims.parquet", parquet(claims_table().drop_columns(["eligible_cost"])), 1, 1,
        "missing required column(s): eligible_cost", "eligible_cost"),
    Bad("Parquet duplicate column", "claims.parquet",
        parquet(pa.Table.from_arrays([*claims_table().columns, pa.array(["x"])], [*claims_table().column_names, "kind"])),
        1, 8, "duplicate column 'kind' in the header (first at column 4)", "kind"),
    Bad("Parquet list for an amount", "claims.parquet", parquet(claims_table(total_cost=pa.array([[1]]))), 1, 6,
        "total_cost: a Parquet column of type list<element: int64> cannot be read", "total_cost"),
    Bad("Parquet boolean for an amount", "claims.parquet", parquet(claims_table(total_cost=pa.array([True]))), 1, 6,
        "total_cost: amount 'true' is not a number", "total_cost"),
    Bad("Parquet three decimals", "claims.parquet",
        parquet(pa.concat_tables([claims_table().cast(claims_table(
            total_cost=pa.array([decimal.Decimal("1.000")], pa.decimal128(18, 3))).schema),
            claims_table(claim_id=pa.array(["C2"]), total_cost=pa.array([decimal.Decimal("1000.005")],
                                                                        pa.decimal128(18, 3)))])),
        2, 6, "total_cost: amount '1000.005' has more than two decimals", "total_cost"),
    Bad("Parquet negative amount", "claims.parquet",
        parquet(claims_table(eligible_cost=pa.array([decimal.Decimal("-5")], pa.decimal128(18, 2)))), 1, 7,
        "eligible_cost: amount '-5.00' is negative", "eligible_cost"),
    Bad("Parquet unknown kind", "claims.parquet", parquet(claims_table(kind=pa.array(["inpatent"]))), 1, 4,
        "kind 'inpatent' is not one of", "kind", "did you mean 'inpatient'"),
    Bad("Parquet empty person id", "claims.parquet", parquet(claims_table(person_id=pa.array([None], pa.string()))), 1, 2,
        "person_id is required but empty", "person_id"),
    Bad("Parquet duplicate claim id", "claims.parquet",
        parquet(pa.concat_tables([claims_table(), claims_table(person_id=pa.array(["P2"]))])), 2, 1,
        "duplicate claim_id 'C1' (first on line 1)", "claim_id"),
    Bad("Parquet claim of an unknown person", "claims.parquet", parquet(claims_table(person_id=pa.array(["P3"]))), 1, 2,
        "person_id 'P3' is not in the persons file", "person_id"),
    Bad("Parquet impossible date", "claims.parquet", parquet(claims_table(date=pa.array(["2023-04-31"]))), 1, 3,
        "date '2023-04-31' is not a calendar date", "date"),
    Bad("Parquet date beyond year 9999", "claims.parquet",
        parquet(claims_table(date=pa.array([2_932_897], pa.int32()).cast(pa.date32()))), 1, 3,
        "date '10000-01-01' is not a date: expected YYYY-MM-DD", "date"),
    Bad("Parquet unknown scheme", "persons.parquet",
        parquet(pa.table({"person_id": ["P1", "P2"], "scheme": ["resident", "rural"]})), 2, 2,
        "scheme 'rural' is not one of", "scheme"),
]


def write(directory: Path, name: str, content: Content) -> Path:
    path = directory / name
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def population(directory: Path, files: dict[str, Content]) -> tuple[Path, Path]:
    """A population directory: the given files, and valid persons.csv / claims.csv for the others."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {name: write(directory, name, content) for name, content in files.items()}
    found = {name.partition(".")[0]: path for name, path in written.items()}
    persons_path = found.get("persons") or write(directory, "persons.csv", PERSONS)
    claims_path = found.get("claims") or write(directory, "claims.csv", claims(CLAIM, CLAIM2))
    return persons_path, claims_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def simulate(directory: Path, out: Path, *extra: str) -> Result:
    return run("simulate", POLICY, "--population", str(directory), "--out", str(out), "--format", "json", *extra)


def evaluate(persons_path: Path, claims_path: Path, out: Path, *extra: str) -> Result:
    return run("eval", POLICY, "--persons", str(persons_path), "--claims", str(claims_path), "--out", str(out), *extra)


def is_text(path: Path) -> bool:
    return path.suffix in (".csv", ".jsonl")


def check_error(result: Result, case: Bad, path: Path) -> str:
    """After any `reading … as GBK` notice: `path:line:column: error: message`, and the hint if the case has
    one. Returns stderr without the notices."""
    assert result.exit_code == 2, result.stderr
    stderr = "".join(line for line in result.stderr.splitlines(keepends=True) if not line.startswith("polc: reading"))
    first, _, rest = stderr.partition("\n")
    assert first.startswith(f"{path}:{case.line}:{case.column}: error: "), result.stderr
    message = first.partition(": error: ")[2]
    assert case.phrase in message
    if case.names is not None:
        assert case.names in message
    if case.hint is not None:
        assert rest.startswith("  hint: ") and case.hint in rest
    return stderr


@pytest.mark.parametrize("case", BAD, ids=[case.name for case in BAD])
def test_bad_input_is_reported_at_its_place(tmp_path: Path, case: Bad) -> None:
    directory = tmp_path / "population"
    persons_path, claims_path = population(directory, {case.file: case.content})
    extra = ("--encoding", case.encoding) if case.encoding else ()
    sim_out = tmp_path / "simulate.json"
    simulated = check_error(simulate(directory, sim_out, *extra), case, directory / case.file)
    assert not sim_out.exists()
    if is_text(persons_path) and is_text(claims_path):
        eval_out = tmp_path / "eval.json"
        evaluated = check_error(evaluate(persons_path, claims_path, eval_out, *extra), case, directory / case.file)
        assert not eval_out.exists()
        assert simulated == evaluated  # word for word what `polc eval` says


def test_the_catalogue_is_large() -> None:
    assert len({case.name for case in BAD}) == len(BAD) >= 30


@pytest.mark.parametrize("name", ["duplicate claim id", "truncated Parquet", "GBK without --encoding",
                                  "JSON record missing keys", "claim of an unknown person"])
def test_bad_input_leaves_an_existing_output_alone(tmp_path: Path, name: str) -> None:
    case = next(c for c in BAD if c.name == name)
    directory = tmp_path / "population"
    persons_path, claims_path = population(directory, {case.file: case.content})
    out = tmp_path / "out.json"
    out.write_text("previous run\n")
    assert simulate(directory, out).exit_code == 2
    if is_text(persons_path) and is_text(claims_path):
        assert evaluate(persons_path, claims_path, out).exit_code == 2
    assert out.read_text() == "previous run\n"
    assert set(os.listdir(tmp_path)) == {"population", "out.json"}  # no temporary file left beside it


# ---- good but unusual: read as the plain files are ------------------------------------------------------------
GOOD_PERSONS = ("person_id,scheme,retired,age,sex,identities,region,chronic,resettled\n"
                "P1,resident,false,60,F,dibao,,uremia,false\n"
                "P2,resident,true,40,M,,,,false\n"
                "张三,resident,false,70,M,tekun@2023-03-01,辽中,,true\n")
GOOD_CLAIMS = ("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost,diseases,in_province\n"
               "C1,P1,2023-01-05,inpatient,2,12000.00,9000.00,uremia,true\n"
               "C2,P2,2023-03-01,outpatient,1,200.00,150.00,,true\n"
               "C3,张三,2023-04-01,inpatient,3,50000.50,40000.25,,false\n"
               "C4,张三,2023-05-01,inpatient,3,8000,6000,尿毒症,true\n")


def plain_table(text: str) -> pa.Table:
    """A CSV text as a table of string columns (empty fields null)."""
    names = text.partition("\n")[0].split(",")
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    return pacsv.read_csv(pa.py_buffer(text.encode()), convert_options=convert)


def jsonl(text: str, typed: bool = False) -> str:
    """A CSV text as JSON Lines (amounts as JSON numbers, lists for diseases when `typed`)."""
    rows = []
    for record in plain_table(text).to_pylist():
        values: dict[str, object] = {k: v for k, v in record.items() if v is not None}
        if typed:
            values |= {k: json.loads(str(v)) for k, v in values.items() if k in ("total_cost", "eligible_cost", "age")}
            values |= {"diseases": [values["diseases"]]} if "diseases" in values else {}
        rows.append(json.dumps(values, ensure_ascii=False))
    return "\n".join(rows) + "\n"


def add_column(text: str, name: str, value: str) -> str:
    lines = text.rstrip("\n").split("\n")
    return "\n".join([f"{lines[0]},{name}", *(f"{line},{value}" for line in lines[1:])]) + "\n"


GOOD: dict[str, tuple[dict[str, Content], tuple[str, ...]]] = {
    "BOM-prefixed UTF-8": ({"persons.csv": "\ufeff" + GOOD_PERSONS, "claims.csv": "\ufeff" + GOOD_CLAIMS}, ()),
    "Windows CRLF": ({"persons.csv": GOOD_PERSONS.replace("\n", "\r\n"),
                      "claims.csv": GOOD_CLAIMS.replace("\n", "\r\n")}, ()),
    "GBK with --encoding gbk": ({"persons.csv": GOOD_PERSONS.encode("gbk"), "claims.csv": GOOD_CLAIMS.encode("gbk")},
                                ("--encoding", "gbk")),
    "unknown extra columns": ({"persons.csv": add_column(GOOD_PERSONS, "备注", '"a, b"'),
                               "claims.csv": add_column(GOOD_CLAIMS, "hospital", '"营口市中心医院\n(门诊)"')}, ()),
    "blank lines": ({"persons.csv": GOOD_PERSONS.replace("\nP2", "\n\nP2"),
                     "claims.csv": GOOD_CLAIMS.replace("\nC3", "\n\n\nC3") + "\n"}, ()),
    "padded values and Chinese names": ({"persons.csv": GOOD_PERSONS.replace(",dibao,", ", 低保 ,"),
                                         "claims.csv": GOOD_CLAIMS.replace("C2,P2,", " C2 , P2 ,").replace(
                                             ",uremia,", ",尿毒症 ,")}, ()),
    "JSON Lines with numbers, lists, BOM and CRLF": (
        {"persons.jsonl": jsonl(GOOD_PERSONS, typed=True),
         "claims.jsonl": "\ufeff" + jsonl(GOOD_CLAIMS, typed=True).replace("\n", "\r\n")}, ()),
    "Parquet of plain strings": ({"persons.parquet": parquet(plain_table(GOOD_PERSONS)),
                                  "claims.parquet": parquet(plain_table(GOOD_CLAIMS))}, ()),
    "Parquet persons, CSV claims": ({"persons.parquet": parquet(plain_table(GOOD_PERSONS)), "claims.csv": GOOD_CLAIMS},
                                    ()),
    "Parquet exact decimals of scale 3": ({"claims.parquet": parquet(plain_table(GOOD_CLAIMS).set_column(
        5, "total_cost", pa.array([decimal.Decimal(v) for v in ("12000", "200", "50000.5", "8000")],
                                  pa.decimal128(18, 3)))), "persons.csv": GOOD_PERSONS}, ()),
}


def comparable(doc_text: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(doc_text)
    doc.pop("reproduce")
    population_ = doc["population"]
    assert isinstance(population_, dict)
    population_.pop("directory")
    return doc


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    directory = tmp_path_factory.mktemp("plain")
    persons_path, claims_path = population(directory, {"persons.csv": GOOD_PERSONS, "claims.csv": GOOD_CLAIMS})
    simulated = simulate(directory, directory / "sim.json")
    evaluated = evaluate(persons_path, claims_path, directory / "eval.json")
    assert simulated.exit_code == evaluated.exit_code == 0, simulated.stderr + evaluated.stderr
    return comparable((directory / "sim.json").read_text()), (directory / "eval.json").read_text()


@pytest.mark.parametrize("name", list(GOOD))
def test_unusual_but_valid_input_reads_as_the_plain_file(tmp_path: Path, name: str,
                                                         reference: tuple[dict[str, object], str]) -> None:
    files, extra = GOOD[name]
    persons_path, claims_path = population(tmp_path / "population", files)
    result = simulate(tmp_path / "population", tmp_path / "sim.json", *extra)
    assert result.exit_code == 0, result.stderr
    assert comparable((tmp_path / "sim.json").read_text()) == reference[0]
    if is_text(persons_path) and is_text(claims_path):
        result = evaluate(persons_path, claims_path, tmp_path / "eval.json", *extra)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "eval.json").read_text() == reference[1]


def test_gbk_is_said_on_stderr(tmp_path: Path) -> None:
    files, extra = GOOD["GBK with --encoding gbk"]
    population(tmp_path, files)
    result = simulate(tmp_path, tmp_path / "sim.json", *extra)
    assert result.stderr == "polc: reading persons.csv as GBK\npolc: reading claims.csv as GBK\n"
    assert "--encoding gbk" in json.loads((tmp_path / "sim.json").read_text())["reproduce"]


@pytest.mark.parametrize("files", [
    {"claims.csv": CLAIM_HEADER + "\n"},
    {"persons.csv": PERSON_HEADER, "claims.csv": CLAIM_HEADER},
    {"persons.jsonl": "", "claims.jsonl": "\n \n"},
    {"claims.parquet": parquet(claims_table().slice(0, 0))},
], ids=["header-only claims", "header-only persons and claims", "empty JSON Lines", "Parquet without rows"])
def test_files_without_records_are_valid(tmp_path: Path, files: dict[str, Content]) -> None:
    population(tmp_path, files)
    result = simulate(tmp_path, tmp_path / "sim.json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "sim.json").read_text())
    assert doc["population"]["claims"] == 0


def test_population_directory_must_hold_one_file_of_each(tmp_path: Path) -> None:
    population(tmp_path, {"persons.jsonl": jsonl(PERSONS)})
    write(tmp_path, "persons.csv", PERSONS)
    result = simulate(tmp_path, tmp_path / "sim.json")
    assert result.exit_code == 2
    assert "persons.csv and persons.jsonl both exist" in result.stderr
    (tmp_path / "persons.csv").unlink()
    (tmp_path / "persons.jsonl").unlink()
    result = simulate(tmp_path, tmp_path / "sim.json")
    assert result.exit_code == 2
    assert "no persons file (expected one of persons.parquet, persons.csv, persons.jsonl)" in result.stderr


# ---- a large file is streamed ------------------------------------------------------------------------------------
LARGE_HEADER = ("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost,grassroots,tcm_institution,"
                "designation,diseases,referred,in_province,in_pooling_area,direct_settlement,emergency,pure_tcm,"
                "tcm_cost,material_over_limit,bed_days,hospital,remark\n")
# A fixed-width row: ids, dates, kinds, amounts, diseases and bed days are overwritten per row (the padding
# spaces are trimmed, as in every file); the hospital and remark columns are not read.
LARGE_ROW = ("C000000000,P0000000,2023-00-00,inpatient ,0,000000.00,000000.00,0,0,none,hypertension,0,1,1,1,0,0,"
             "0.00,0.00,000,营口市中心医院,")
KINDS = np.frombuffer(b"inpatient outpatient", np.uint8).reshape(2, 10)
DISEASES = np.frombuffer(b"            hypertensiondiabetes    uremia      ", np.uint8).reshape(4, 12)


def put_digits(matrix: np.ndarray, offset: int, width: int, values: np.ndarray) -> None:
    values = values.astype(np.int64)
    for k in range(width - 1, -1, -1):
        matrix[:, offset + k] = ord("0") + values % 10
        values = values // 10


def write_large_claims(path: Path, rows: int, persons: int, row_bytes: int = 250, batch: int = 1 << 16) -> None:
    """`rows` claims of random persons, each row `row_bytes` long, written a NumPy block at a time."""
    template = (LARGE_ROW + "x" * (row_bytes - len(LARGE_ROW.encode()) - 1) + "\n").encode()
    rng = np.random.default_rng(7)
    with path.open("wb") as handle:
        handle.write(LARGE_HEADER.encode())
        for start in range(0, rows, batch):
            k = min(batch, rows - start)
            m = np.frombuffer(template, np.uint8)[None, :].repeat(k, axis=0)
            put_digits(m, 1, 9, np.arange(start, start + k))
            put_digits(m, 12, 7, rng.integers(0, persons, k))
            put_digits(m, 25, 2, rng.integers(1, 13, k))
            put_digits(m, 28, 2, rng.integers(1, 29, k))
            m[:, 31:41] = KINDS[rng.integers(0, 2, k)]
            put_digits(m, 42, 1, rng.integers(1, 4, k))
            total = rng.integers(100, 99_999_999, k)
            eligible = (total * rng.uniform(0.5, 1.0, k)).astype(np.int64)
            for offset, fen in ((44, total), (54, eligible)):
                put_digits(m, offset, 6, fen // 100)
                put_digits(m, offset + 7, 2, fen % 100)
            m[:, 73:85] = DISEASES[rng.integers(0, 4, k)]
            put_digits(m, 108, 3, rng.integers(0, 30, k))
            m.tofile(handle)


def write_large_persons(path: Path, persons: int) -> None:
    rows = (f"P{i:07d},resident,0,{i % 90},{'FM'[i % 2]},{'dibao' if i % 17 == 0 else ''},,,0" for i in range(persons))
    path.write_text("person_id,scheme,retired,age,sex,identities,region,chronic,resettled\n" + "\n".join(rows) + "\n")


MEASURE = """
import resource, subprocess, sys
code = subprocess.run([sys.executable, "-c", "from policy_lang.cli import main; main()", *sys.argv[1:]]).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_of_simulate(directory: Path, out: Path, temp: Path) -> int:
    """Peak RSS in bytes of `polc simulate --population directory`, run by a fresh process that runs only it
    (RUSAGE_CHILDREN of that process covers this run alone)."""
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, "simulate", POLICY, "--population", str(directory), "--format", "json",
         "--out", str(out), "--quiet"], capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temp)},
        check=True)
    code, peak_kib = (int(v) for v in measured.stdout.split())
    assert code == 0, measured.stderr
    return peak_kib * 1024


def test_a_large_claims_file_is_streamed(tmp_path: Path) -> None:
    """~500 MB of claims (2M rows): the memory the data adds to a run stays far below the file's size.

    What the data adds is the peak minus that of the same command on a population of 2000 claims: the
    interpreter, NumPy, pyarrow, the built policy and the evaluator's own fixed cost (a JIT compiler, when
    the fused kernel is available) are the same for any population and are not what streaming bounds."""
    small, large = tmp_path / "small", tmp_path / "large"
    start = time.perf_counter()
    for directory, persons, rows in ((small, 650, 2000), (large, 650_000, 2_000_000)):
        directory.mkdir()
        write_large_persons(directory / "persons.csv", persons)
        write_large_claims(directory / "claims.csv", rows, persons)
    assert time.perf_counter() - start < 30
    size = (large / "claims.csv").stat().st_size
    assert size >= 450_000_000
    temp = tmp_path / "temp"
    temp.mkdir()
    fixed = peak_of_simulate(small, tmp_path / "small.json", temp)
    peak = peak_of_simulate(large, tmp_path / "large.json", temp)
    assert peak - fixed < 0.4 * size, f"peak {peak >> 20} MiB (fixed {fixed >> 20} MiB) for {size >> 20} MiB"
    doc = json.loads((tmp_path / "large.json").read_text())
    assert (doc["population"]["persons"], doc["population"]["claims"]) == (650_000, 2_000_000)
    assert list(temp.iterdir()) == []  # the spilled chunks are gone
