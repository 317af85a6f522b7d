"""Tests for policy_lang.data: loading and validating persons and claims."""

from __future__ import annotations

import datetime
import pickle
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_lang.data import (
    Claim,
    DataError,
    Dataset,
    DataVocabulary,
    Grant,
    Person,
    default_vocabulary,
    format_money,
    load_claims,
    load_dataset,
    load_persons,
    parse_money,
)
from policy_lang.graph import ColumnInfo

DATA = Path(__file__).parent / "data"
VOCAB = default_vocabulary()
PEOPLE = frozenset({"P1", "P2"})

CLAIM_HEADER = "claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost"
CLAIM_ROW = "C1,P1,2023-01-05,inpatient,2,1000.00,800.00"
PERSON_HEADER = "person_id,scheme,identities,chronic,sex,age"
PERSON_ROW = "P1,resident,dibao,uremia,F,60"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def claims_csv(*rows: str, extra: str = "") -> str:
    """A claims CSV: the base header plus `extra` columns, then the given rows."""
    header = CLAIM_HEADER + ("," + extra if extra else "")
    return "\n".join([header, *rows]) + "\n"


def jline(**fields: object) -> str:
    """A JSON object text keeping the given key order (values already JSON text)."""
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


JSON_CLAIM = jline(
    claim_id='"J1"',
    person_id='"P1"',
    date='"2023-01-05"',
    kind='"inpatient"',
    hospital_level="2",
    total_cost="1000",
    eligible_cost="800.5",
)


# --- happy paths ---------------------------------------------------------------------------------


def test_persons_fixture_every_optional_field() -> None:
    p1, p2, p3 = load_persons(DATA / "persons.csv", VOCAB)
    assert p1 == Person(
        person_id="P001",
        scheme="resident",
        retired=False,
        age=67,
        sex="F",
        identities=(Grant("dibao", datetime.date(2023, 3, 1)), Grant("tekun", None)),
        region="liaozhong",
        chronic=frozenset({"hypertension", "diabetes"}),
        resettled=False,
    )
    assert (p2.scheme, p2.retired, p2.age, p2.sex, p2.resettled) == (
        "employee",
        True,
        45,
        "M",
        True,
    )
    assert p3.identities == (
        Grant("near_dibao", None),
        Grant("relapse_poor", datetime.date(2023, 7, 15)),
    )


def test_persons_defaults() -> None:
    (p3,) = load_persons(DATA / "persons.csv", VOCAB)[2:]
    assert (p3.retired, p3.age, p3.sex, p3.region, p3.chronic, p3.resettled) == (
        False,
        None,
        None,
        None,
        frozenset(),
        False,
    )
    assert p3.extra == {}


def test_claims_csv_fixture_every_optional_field() -> None:
    c1, c2, c3 = load_claims(DATA / "claims.csv", VOCAB)
    assert c1 == Claim(
        claim_id="C001",
        person_id="P001",
        date=datetime.date(2023, 4, 2),
        kind="inpatient",
        hospital_level=3,
        total_cost=1_200_050,
        eligible_cost=1_000_000,
        grassroots=False,
        tcm_institution=True,
        designation="county_poverty",
        diseases=frozenset({"uremia", "hypertension"}),
        referred=True,
        in_province=True,
        in_pooling_area=False,
        direct_settlement=False,
        emergency=True,
        pure_tcm=True,
        tcm_cost=200_005,
        material_over_limit=50_000,
        bed_days=7,
    )
    assert c2 == Claim("C002", "P002", datetime.date(2023, 5, 10), "outpatient", 1, 30_000, 25_050)
    assert c3.diseases == frozenset({"diabetes_insulin"})
    # in_pooling_area left empty follows in_province
    assert (c3.in_province, c3.in_pooling_area, c3.grassroots) == (False, False, True)


def test_claims_jsonl_fixture_decimals_and_lists() -> None:
    j1, j2 = load_claims(DATA / "claims.jsonl", VOCAB)
    assert (j1.total_cost, j1.eligible_cost, j1.tcm_cost) == (123_456, 100_050, 1)
    assert j1.hospital_level == 3 and j1.emergency is True
    assert j1.diseases == frozenset({"uremia", "hemophilia"})
    assert j2.diseases == frozenset({"severe_mental", "major_disease"})
    assert (j2.total_cost, j2.eligible_cost, j2.material_over_limit) == (500_000, 400_000, 100_000)
    assert (j2.in_province, j2.in_pooling_area, j2.referred, j2.bed_days) == (False, False, True, 3)


def test_load_dataset_checks_persons() -> None:
    dataset = load_dataset(DATA / "persons.csv", DATA / "claims.csv", VOCAB)
    assert isinstance(dataset, Dataset)
    assert [p.person_id for p in dataset.persons] == ["P001", "P002", "P003"]
    assert [c.claim_id for c in dataset.claims] == ["C001", "C002", "C003"]


def test_chinese_identity_names(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.csv", "person_id,scheme,identities\nP1,resident,特困人员;低保@2023-02-01\n"
    )
    (person,) = load_persons(path, VOCAB)
    assert person.identities == (Grant("tekun", None), Grant("dibao", datetime.date(2023, 2, 1)))


def test_persons_jsonl_with_list_identities(tmp_path: Path) -> None:
    line = jline(
        person_id="7",
        scheme='"employee"',
        retired="true",
        age="70",
        identities='["dibao@2023-03-01", "orphan"]',
        chronic='"uremia; 尿毒症"',
    )
    (person,) = load_persons(write(tmp_path, "p.jsonl", line + "\n"), VOCAB)
    assert person.person_id == "7" and person.retired and person.age == 70
    assert person.identities == (Grant("dibao", datetime.date(2023, 3, 1)), Grant("orphan", None))
    assert person.chronic == frozenset({"uremia"})


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json"])
def test_json_lines_suffixes(tmp_path: Path, suffix: str) -> None:
    (claim,) = load_claims(write(tmp_path, "c" + suffix, JSON_CLAIM), VOCAB)
    assert (claim.claim_id, claim.total_cost, claim.eligible_cost) == ("J1", 100_000, 80_050)


def test_bom_and_crlf(tmp_path: Path) -> None:
    text = "\ufeff" + claims_csv(CLAIM_ROW, "C2,P1,2023-01-06,outpatient,1,5,5").replace(
        "\n", "\r\n"
    )
    path = write(tmp_path, "c.csv", text.encode("utf-8"))
    claims = load_claims(path, VOCAB)
    assert [c.claim_id for c in claims] == ["C1", "C2"]
    assert claims[1].total_cost == 500


def test_bom_in_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", ("\ufeff" + JSON_CLAIM + "\r\n").encode("utf-8"))
    assert load_claims(path, VOCAB)[0].claim_id == "J1"


def test_header_only_is_empty(tmp_path: Path) -> None:
    assert load_claims(write(tmp_path, "c.csv", CLAIM_HEADER + "\n"), VOCAB) == ()
    assert load_persons(write(tmp_path, "p.csv", "person_id,scheme"), VOCAB) == ()
    assert load_claims(write(tmp_path, "c.jsonl", "\n  \n"), VOCAB) == ()


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    text = claims_csv("", CLAIM_ROW, "", "C1,P1,2023-01-05,inpatient,2,1,1")
    with pytest.raises(DataError) as info:
        load_claims(write(tmp_path, "c.csv", text), VOCAB)
    assert (info.value.line, info.value.column) == (5, 1)
    assert "first on line 3" in info.value.message


def test_multiline_quoted_field_reports_record_start(tmp_path: Path) -> None:
    text = claims_csv('C1,P1,2023-01-05,"inpatient\n",2,1,1', "C2,P1,2023-01-05,x,2,1,1")
    with pytest.raises(DataError) as info:
        load_claims(write(tmp_path, "c.csv", text), VOCAB)
    assert (info.value.line, info.value.column) == (4, 4)


def test_extra_unknown_columns_ignored(tmp_path: Path) -> None:
    text = claims_csv(CLAIM_ROW + ",whatever,!!", extra="hospital_name,remark")
    (claim,) = load_claims(write(tmp_path, "c.csv", text), VOCAB)
    assert claim.extra == {}


def test_declared_columns_are_typed(tmp_path: Path) -> None:
    vocab = attrs.evolve(
        VOCAB,
        columns=(
            ColumnInfo("day_rate", "claim", "money"),
            ColumnInfo("trial", "claim", "bool"),
            ColumnInfo("visits", "claim", "int"),
            ColumnInfo("ward", "claim", "text"),
            ColumnInfo("absent", "claim", "text"),
            ColumnInfo("village", "person", "text"),
        ),
    )
    text = claims_csv(CLAIM_ROW + ",80.5,1,-3,", extra="day_rate,trial,visits,ward")
    (claim,) = load_claims(write(tmp_path, "c.csv", text), vocab)
    assert claim.extra == {
        "day_rate": 8050,
        "trial": True,
        "visits": -3,
        "ward": None,
        "absent": None,
    }


def test_declared_column_bad_value(tmp_path: Path) -> None:
    vocab = attrs.evolve(VOCAB, columns=(ColumnInfo("day_rate", "claim", "money"),))
    text = claims_csv(CLAIM_ROW + ",1.234", extra="day_rate")
    with pytest.raises(DataError) as info:
        load_claims(write(tmp_path, "c.csv", text), vocab)
    assert (info.value.line, info.value.column) == (2, 8)
    assert "day_rate" in info.value.message and "more than two decimals" in info.value.message


def test_policy_disease_aliases(tmp_path: Path) -> None:
    vocab = DataVocabulary(frozenset({"dibao"}), {"肺癌": "肺癌", "终末期肾病": "uremia"})
    text = claims_csv(CLAIM_ROW + ",肺癌; 终末期肾病", extra="diseases")
    (claim,) = load_claims(write(tmp_path, "c.csv", text), vocab)
    assert claim.diseases == frozenset({"肺癌", "uremia"})


def test_explicit_gbk_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "person_id,scheme,region\n张三,resident,辽中\n".encode("gbk"))
    assert load_persons(path, VOCAB, encoding="gbk")[0].person_id == "张三"


def test_records_are_hashable_and_pickle(tmp_path: Path) -> None:
    persons = load_persons(DATA / "persons.csv", VOCAB)
    assert len(set(persons)) == 3
    vocab = attrs.evolve(VOCAB, columns=(ColumnInfo("ward", "claim", "text"),))
    claims = load_claims(
        write(tmp_path, "c.csv", claims_csv(CLAIM_ROW + ",A", extra="ward")), vocab
    )
    assert pickle.loads(pickle.dumps((persons, claims, vocab))) == (persons, claims, vocab)
    assert claims[0].extra == {"ward": "A"}


# --- bad input: (name, file, content, loader, line, column, phrase, hint phrase) ------------------

GBK_CSV = b"person_id,scheme\n" + "张三".encode("gbk") + b",resident\n"
BAD_UTF8_JSONL = (JSON_CLAIM + "\n").encode() + b'{"claim_id": "\xff\xfe"}\n'

BAD = [
    ("empty file", "c.csv", "", "claims", 1, 1, "no header row", None),
    ("blank header", "c.csv", "\n\n", "claims", 1, 1, "no header row", None),
    (
        "missing columns",
        "c.csv",
        "claim_id,person_id,date,hospital_level,total_cost\nC1,P1,2023-01-01,1,1\n",
        "claims",
        1,
        1,
        "missing required column(s): kind, eligible_cost",
        None,
    ),
    (
        "duplicate column",
        "p.csv",
        "person_id,scheme,age,age\nP1,resident,1,2\n",
        "persons",
        1,
        4,
        "duplicate column 'age' in the header (first at column 3)",
        None,
    ),
    (
        "too few fields",
        "c.csv",
        claims_csv(CLAIM_ROW, "C2,P1,2023-01-05,inpatient,2"),
        "claims",
        3,
        6,
        "row has 5 fields but the header has 7 (missing from column 'total_cost' on)",
        None,
    ),
    (
        "too many fields",
        "c.csv",
        claims_csv(CLAIM_ROW + ",x"),
        "claims",
        2,
        8,
        "row has 8 fields but the header has 7",
        None,
    ),
    (
        "unterminated quote",
        "c.csv",
        claims_csv(CLAIM_ROW, 'C2,"P1,2023'),
        "claims",
        3,
        1,
        "malformed CSV",
        None,
    ),
    (
        "required empty",
        "c.csv",
        claims_csv(" ,P1,2023-01-05,inpatient,2,1,1"),
        "claims",
        2,
        1,
        "claim_id is required but empty",
        None,
    ),
    (
        "bad bool",
        "c.csv",
        claims_csv(CLAIM_ROW + ",yes", extra="grassroots"),
        "claims",
        2,
        8,
        "grassroots 'yes' is not a boolean: use true, false, 1 or 0",
        None,
    ),
    (
        "bad level",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,4,1,1"),
        "claims",
        2,
        5,
        "hospital_level '4' is not one of: 1, 2, 3",
        None,
    ),
    (
        "unknown kind",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,Inpatient,2,1,1"),
        "claims",
        2,
        4,
        "kind 'Inpatient' is not one of",
        "did you mean 'inpatient'?",
    ),
    (
        "kind in Chinese",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,住院,2,1,1"),
        "claims",
        2,
        4,
        "kind '住院' is not one of",
        "write the id 'inpatient'",
    ),
    (
        "unknown designation",
        "c.csv",
        claims_csv(CLAIM_ROW + ",county", extra="designation"),
        "claims",
        2,
        8,
        "designation 'county' is not one of",
        None,
    ),
    (
        "unknown scheme",
        "p.csv",
        "person_id,scheme\nP1,employe\n",
        "persons",
        2,
        2,
        "scheme 'employe' is not one of: employee, resident, provincial_direct",
        "did you mean 'employee'?",
    ),
    (
        "bad sex",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,,,女,\n",
        "persons",
        2,
        5,
        "sex '女' is not one of: F, M",
        None,
    ),
    (
        "age too high",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,,,F,200\n",
        "persons",
        2,
        6,
        "age 200 is out of range: expected 0 to 150",
        None,
    ),
    (
        "age not a number",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,,,F,6o\n",
        "persons",
        2,
        6,
        "age '6o' is not a whole number",
        None,
    ),
    (
        "unknown identity",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,tekun;dibo,,F,1\n",
        "persons",
        2,
        3,
        "identities: unknown identity 'dibo'",
        "did you mean 'dibao'",
    ),
    (
        "repeated identity",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,dibao;低保@2023-01-01,,F,1\n",
        "persons",
        2,
        3,
        "identities: identity 'dibao' is listed twice",
        None,
    ),
    (
        "bad identity date",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,dibao@2023-13-01,,F,1\n",
        "persons",
        2,
        3,
        "identities: 'dibao@2023-13-01' has a bad date",
        None,
    ),
    (
        "unknown chronic disease",
        "p.csv",
        PERSON_HEADER + "\nP1,resident,,uremia;高血亚,F,1\n",
        "persons",
        2,
        4,
        "chronic: unknown disease '高血亚'",
        "did you mean '高血压'?",
    ),
    (
        "unknown claim disease",
        "c.csv",
        claims_csv(CLAIM_ROW + ",hemophila", extra="diseases"),
        "claims",
        2,
        8,
        "diseases: unknown disease 'hemophila'",
        "did you mean 'hemophilia'?",
    ),
    (
        "duplicate person id",
        "p.csv",
        PERSON_HEADER + "\n" + PERSON_ROW + "\nP2,resident,,,,\n" + PERSON_ROW + "\n",
        "persons",
        4,
        1,
        "duplicate person_id 'P1' (first on line 2)",
        None,
    ),
    (
        "duplicate claim id",
        "c.csv",
        claims_csv(CLAIM_ROW, CLAIM_ROW),
        "claims",
        3,
        1,
        "duplicate claim_id 'C1' (first on line 2)",
        None,
    ),
    (
        "unknown person",
        "c.csv",
        claims_csv("C1,P11,2023-01-05,inpatient,2,1,1"),
        "claims",
        2,
        2,
        "person_id 'P11' is not in the persons file",
        "did you mean 'P1'?",
    ),
    (
        "impossible date",
        "c.csv",
        claims_csv("C1,P1,2023-02-30,inpatient,2,1,1"),
        "claims",
        2,
        3,
        "date '2023-02-30' is not a calendar date",
        None,
    ),
    (
        "bad date format",
        "c.csv",
        claims_csv("C1,P1,2023/01/05,inpatient,2,1,1"),
        "claims",
        2,
        3,
        "date '2023/01/05' is not a date: expected YYYY-MM-DD",
        None,
    ),
    (
        "negative amount",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,2,-5,0"),
        "claims",
        2,
        6,
        "total_cost: amount '-5' is negative",
        None,
    ),
    (
        "three decimals",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,2,10,1.005"),
        "claims",
        2,
        7,
        "eligible_cost: amount '1.005' has more than two decimals",
        None,
    ),
    (
        "amount not a number",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,2,1e3,1"),
        "claims",
        2,
        6,
        "total_cost: amount '1e3' is not a number",
        None,
    ),
    (
        "amount too large",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,2,1000000000.01,1"),
        "claims",
        2,
        6,
        "total_cost: amount '1000000000.01' is above the maximum 1000000000.00",
        None,
    ),
    (
        "empty amount",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,2,,1"),
        "claims",
        2,
        6,
        "total_cost is required but empty",
        None,
    ),
    (
        "eligible above total",
        "c.csv",
        claims_csv("C1,P1,2023-01-05,inpatient,2,1000,1200"),
        "claims",
        2,
        7,
        "eligible_cost 1200.00 is above total_cost 1000.00",
        None,
    ),
    (
        "tcm above eligible",
        "c.csv",
        claims_csv(CLAIM_ROW + ",800.01", extra="tcm_cost"),
        "claims",
        2,
        8,
        "tcm_cost 800.01 is above eligible_cost 800.00",
        None,
    ),
    (
        "material above out-of-list",
        "c.csv",
        claims_csv(CLAIM_ROW + ",200.01", extra="material_over_limit"),
        "claims",
        2,
        8,
        (
            "material_over_limit 200.01 is above the out-of-list cost total_cost - eligible_cost"
            " = 200.00 (total_cost 1000.00, eligible_cost 800.00)"
        ),
        None,
    ),
    (
        "pooling area outside province",
        "c.csv",
        claims_csv(CLAIM_ROW + ",false,true", extra="in_province,in_pooling_area"),
        "claims",
        2,
        9,
        "a claim outside the province is outside the pooling area too",
        None,
    ),
    (
        "negative bed days",
        "c.csv",
        claims_csv(CLAIM_ROW + ",-1", extra="bed_days"),
        "claims",
        2,
        8,
        "bed_days -1 is out of range: expected 0 to",
        None,
    ),
    (
        "fractional bed days",
        "c.csv",
        claims_csv(CLAIM_ROW + ",2.5", extra="bed_days"),
        "claims",
        2,
        8,
        "bed_days '2.5' is not a whole number",
        None,
    ),
    (
        "GBK bytes",
        "p.csv",
        GBK_CSV,
        "persons",
        2,
        1,
        "the file is not UTF-8: byte 0xD5 cannot be decoded",
        "looks GBK-encoded",
    ),
    (
        "non-UTF-8 JSONL",
        "c.jsonl",
        BAD_UTF8_JSONL,
        "claims",
        2,
        15,
        "the file is not UTF-8: byte 0xFF",
        None,
    ),
    (
        "bad JSON",
        "c.jsonl",
        JSON_CLAIM + "\n\n" + '{"claim_id": "J2",}\n',
        "claims",
        3,
        1,
        "invalid JSON",
        None,
    ),
    ("JSON NaN", "c.jsonl", '{"total_cost": NaN}\n', "claims", 1, 1, "NaN is not allowed", None),
    (
        "JSON not an object",
        "c.jsonl",
        "[" + JSON_CLAIM + "]\n",
        "claims",
        1,
        1,
        "a JSON Lines record must be an object {...}, found a list",
        None,
    ),
    (
        "JSON missing keys",
        "c.jsonl",
        JSON_CLAIM + "\n" + jline(claim_id='"J2"', person_id='"P1"') + "\n",
        "claims",
        2,
        1,
        "missing required column(s): date, kind, hospital_level, total_cost, eligible_cost",
        None,
    ),
    (
        "JSON duplicate key",
        "c.jsonl",
        JSON_CLAIM[:-1] + ', "kind": "outpatient"}\n',
        "claims",
        1,
        8,
        "duplicate key 'kind' in the record (first at position 4)",
        None,
    ),
    (
        "JSON list for a scalar",
        "c.jsonl",
        JSON_CLAIM.replace('"inpatient"', '["inpatient"]'),
        "claims",
        1,
        4,
        "kind must be a single value, found a list",
        None,
    ),
    (
        "JSON boolean for an amount",
        "c.jsonl",
        JSON_CLAIM.replace('"total_cost": 1000', '"total_cost": true'),
        "claims",
        1,
        6,
        "total_cost must be a string or a number, found a JSON boolean",
        None,
    ),
    (
        "JSON exponent amount",
        "c.jsonl",
        JSON_CLAIM.replace('"total_cost": 1000', '"total_cost": 1e3'),
        "claims",
        1,
        6,
        "total_cost: amount '1E+3' is not a number",
        None,
    ),
    (
        "JSON null required",
        "c.jsonl",
        JSON_CLAIM.replace('"P1"', "null"),
        "claims",
        1,
        2,
        "person_id is required but empty",
        None,
    ),
    (
        "JSON list item not a string",
        "c.jsonl",
        JSON_CLAIM[:-1] + ', "diseases": ["uremia", 3]}',
        "claims",
        1,
        8,
        "diseases list items must be strings, found a number",
        None,
    ),
    (
        "JSON number for a flag",
        "c.jsonl",
        JSON_CLAIM[:-1] + ', "emergency": 2}',
        "claims",
        1,
        8,
        "emergency '2' is not a boolean",
        None,
    ),
    (
        "unsupported format",
        "c.xlsx",
        "whatever",
        "claims",
        1,
        1,
        "unsupported data file format '.xlsx': supported are .csv and JSON Lines",
        None,
    ),
]


def load(kind: str, path: Path) -> object:
    if kind == "persons":
        return load_persons(path, VOCAB)
    return load_claims(path, VOCAB, person_ids=PEOPLE)


@pytest.mark.parametrize(
    ("file", "content", "kind", "line", "column", "phrase", "hint"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_input(
    tmp_path: Path,
    file: str,
    content: str | bytes,
    kind: str,
    line: int,
    column: int,
    phrase: str,
    hint: str | None,
) -> None:
    path = write(tmp_path, file, content)
    with pytest.raises(DataError) as info:
        load(kind, path)
    error = info.value
    assert (error.path, error.line, error.column) == (str(path), line, column), str(error)
    assert phrase in error.message
    assert str(error).startswith(f"{path}:{line}:{column}: error: {error.message}")
    if hint is not None:
        assert error.hint is not None and hint in error.hint
        assert str(error).endswith(f"\n  hint: {error.hint}")


def test_bad_input_kinds_are_many() -> None:
    assert len({case[0] for case in BAD}) >= 25


def test_gbk_hint_mentions_conversion(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_persons(write(tmp_path, "p.csv", GBK_CSV), VOCAB)
    assert info.value.hint is not None
    assert "iconv -f GBK -t UTF-8" in info.value.hint and "--encoding gbk" in info.value.hint


def test_unknown_identity_without_close_match_lists_known(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "person_id,scheme,identities\nP1,resident,xyzzy\n")
    with pytest.raises(DataError) as info:
        load_persons(path, VOCAB)
    assert info.value.hint is not None
    assert info.value.hint.startswith("known values: dibao, ex_poor")


def test_missing_file_and_unknown_encoding(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the file"):
        load_claims(tmp_path / "absent.csv", VOCAB)
    path = write(tmp_path, "c.csv", claims_csv(CLAIM_ROW))
    with pytest.raises(DataError, match="unknown encoding 'klingon'"):
        load_claims(path, VOCAB, encoding="klingon")


def test_dataset_rejects_claim_of_unknown_person(tmp_path: Path) -> None:
    claims = write(tmp_path, "c.csv", claims_csv("C1,P0001,2023-01-05,inpatient,2,1,1"))
    with pytest.raises(DataError) as info:
        load_dataset(DATA / "persons.csv", claims, VOCAB)
    assert (info.value.line, info.value.column) == (2, 2)
    assert info.value.hint is not None
    assert info.value.hint.startswith("did you mean 'P001'")


def test_data_error_pickles() -> None:
    error = DataError("c.csv", 5, 7, "eligible_cost 1200.00 is above total_cost 1000.00", "h")
    copy = pickle.loads(pickle.dumps(error))
    assert (
        str(copy)
        == str(error)
        == ("c.csv:5:7: error: eligible_cost 1200.00 is above total_cost 1000.00\n  hint: h")
    )
    assert str(DataError("c.csv", 1, 1, "m")) == "c.csv:1:1: error: m"


# --- money ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("0.01", 1),
        ("0.5", 50),
        ("0.50", 50),
        ("12", 1200),
        (" 1234.5 ", 123450),
        ("007.10", 710),
        ("1000000000.00", 100_000_000_000),
        ("999999999.99", 99_999_999_999),
    ],
)
def test_parse_money(text: str, fen: int) -> None:
    assert parse_money(text) == fen


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "empty"),
        ("-0.05", "negative"),
        ("+5", "has a sign"),
        ("1.234", "more than two decimals"),
        ("1.000", "more than two decimals"),
        ("NaN", "not a number"),
        ("inf", "not a number"),
        ("1e3", "not a number"),
        ("1,000", "not a number"),
        ("12.", "not a number"),
        (".5", "not a number"),
        ("１２", "not a number"),
        ("1000000000.01", "above the maximum"),
        ("9" * 5000, "above the maximum"),
    ],
)
def test_parse_money_rejects(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        parse_money(text)


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0.00"), (1, "0.01"), (50, "0.50"), (123450, "1234.50"), (-5, "-0.05"), (-100, "-1.00")],
)
def test_format_money(fen: int, text: str) -> None:
    assert format_money(fen) == text


def test_format_money_large() -> None:
    assert format_money(100_000_000_000) == "1000000000.00"
    assert format_money(12_345_678_901_234_567) == "123456789012345.67"


@given(st.integers(min_value=0, max_value=100_000_000_000))
def test_money_round_trip(fen: int) -> None:
    assert parse_money(format_money(fen)) == fen
