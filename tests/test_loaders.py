"""Tests for simulator.loaders: real populations read like policy_lang.data, streamed in chunks."""

from __future__ import annotations

import csv
import decimal
import io
import json
import random
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from policy_lang.cli import main
from policy_lang.columns import Columns, Extra
from policy_lang.data import (
    Claim,
    DataError,
    Dataset,
    DataVocabulary,
    Person,
    default_vocabulary,
    load_dataset,
)
from policy_lang.graph import ColumnInfo
from simulator import job, loaders, parquet_io, run
from simulator.engines import to_dataset
from simulator.population import concat, generate_chunks
from simulator.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
PROVINCIAL = str(ROOT / "policies/liaoning/provincial-direct-2019.pol")
PROVINCIAL_BASE = str(ROOT / "policies/liaoning/provincial-direct-base.pol")
VOCAB = attrs.evolve(default_vocabulary(), columns=(
    ColumnInfo("ward", "claim", "text"), ColumnInfo("day_rate", "claim", "money"), ColumnInfo("trial", "claim", "bool"),
    ColumnInfo("visits", "person", "int"), ColumnInfo("village", "person", "text"), ColumnInfo("age", "person", "int")))


def write(directory: Path, files: Mapping[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return directory


def records(chunks: Iterator[Columns]) -> Dataset:
    """The chunks as policy_lang.data records, declared columns included."""
    persons: list[Person] = []
    claims: list[Claim] = []
    for cols in chunks:
        data = to_dataset(cols)
        persons += [attrs.evolve(p, extra=_extra(cols.persons.extra, i, Person)) for i, p in enumerate(data.persons)]
        claims += [attrs.evolve(c, extra=_extra(cols.claims.extra, i, Claim)) for i, c in enumerate(data.claims)]
    return Dataset(tuple(persons), tuple(claims))


def _extra(extra: Mapping[str, Extra], i: int, record: type) -> dict[str, object]:
    """The declared columns of row i, as policy_lang.data keeps them (not those named like a field)."""
    out: dict[str, object] = {}
    for name, column in extra.items():
        if name in attrs.fields_dict(record):
            assert column.missing.all()
        elif column.missing[i]:
            out[name] = None
        elif column.names is not None:
            out[name] = column.names[column.values[i]]
        else:
            out[name] = bool(column.values[i]) if column.values.dtype == bool else int(column.values[i])
    return out


def outcome(fn: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", fn()
    except DataError as exc:
        return "error", exc


def same_as_data(directory: Path, persons: str, claims: str, vocab: DataVocabulary = VOCAB,
                 chunk_persons: int = 100_000, chunk_claims: int | None = None) -> tuple[str, object]:
    """policy_lang.data and the loader agree: the same error text, or the same records."""
    expected = outcome(lambda: load_dataset(directory / persons, directory / claims, vocab))
    got = outcome(lambda: records(loaders.iter_columns(directory, vocab, chunk_persons=chunk_persons,
                                                       chunk_claims=chunk_claims)))
    assert got[0] == expected[0], (expected[1], got[1])
    if expected[0] == "error":
        assert str(got[1]) == str(expected[1])
    else:
        data, loaded = expected[1], got[1]
        assert isinstance(data, Dataset) and isinstance(loaded, Dataset)
        assert loaded.persons == data.persons
        assert sorted(loaded.claims, key=lambda c: c.claim_id) == sorted(data.claims, key=lambda c: c.claim_id)
    return expected


# ---- random files: the loader says what policy_lang.data says ---------------------------------------------------
PERSON_VALUES = {
    "person_id": ["P1", "P2", "P3", " P1", "", "张三"],
    "scheme": ["resident", "employee", "provincial_direct", "Resident", "", "居民", " resident "],
    "retired": ["", "true", "FALSE", "1", "0", "yes", "True ", "2"],
    "age": ["", "0", "150", "151", "-1", "-0", "007", "6o", "1.0", "99999999999999999999"],
    "sex": ["", "F", "M", "f", "女"],
    "identities": ["", "dibao", "dibao;tekun", "低保", "dibao@2023-03-01", "dibao@2023-02-30", "dibo", "dibao;dibao",
                   "dibao@", " ; tekun ;"],
    "region": ["", "liaozhong", "辽中"],
    "chronic": ["", "uremia", "尿毒症;diabetes", "高血亚", ";"],
    "resettled": ["", "false", "x"],
    "visits": ["", "3", "-3", "1e3", "1000000000000001"],
    "village": ["", "a", " b "],
}
CLAIM_VALUES = {
    "claim_id": ["C1", "C2", "C3", "C4", "", " C1"],
    "person_id": ["P1", "P2", "P3", "P9", "", " P2 "],
    "date": ["2023-01-05", "2023-02-29", "2024-02-29", "2023-13-01", "2023/01/05", "0000-01-01", "", " 2023-01-05",
             "9999-12-31", "2023-1-05"],
    "kind": ["inpatient", "outpatient", "住院", "Inpatient", ""],
    "hospital_level": ["1", "2", "3", "4", "", " 2", "02"],
    "total_cost": ["1000", "1000.00", "1000.5", "0", "-5", "+5", "1.005", "1e3", "", "1000000000.00", "1000000000.01",
                   "00000000000000000000000000000000001.00", ".5", "5.", "１０"],
    "eligible_cost": ["800", "800.00", "0.01", "1000", "1200", "", "-0"],
    "grassroots": ["", "1", "true", "no"],
    "designation": ["", "none", "county_poverty", "county"],
    "diseases": ["", "uremia", "hemophila", "尿毒症; hypertension"],
    "in_province": ["", "true", "false"],
    "in_pooling_area": ["", "true", "false"],
    "tcm_cost": ["", "0", "100", "900", "1.001"],
    "material_over_limit": ["", "0", "100", "250"],
    "bed_days": ["", "0", "5", "-1", "2.5", "100001"],
    "ward": ["", "A", "b"],
    "day_rate": ["", "80.5", "1.234", "-1"],
    "trial": ["", "1", "maybe"],
}
PERSONS_REQUIRED = ("person_id", "scheme")
CLAIMS_REQUIRED = ("claim_id", "person_id", "date", "kind", "hospital_level", "total_cost", "eligible_cost")


def random_table(rnd: random.Random, values: dict[str, list[str]], required: tuple[str, ...], rows: int,
                 valid: bool) -> list[list[str]]:
    names = rnd.sample(list(values), rnd.randint(len(required), len(values)))
    names = [*(r for r in required if r not in names and rnd.random() < 0.97), *names]
    pool = {name: values[name][:3] if valid else values[name] for name in names}
    body = [[rnd.choice(pool[name]) for name in names] for _ in range(rows)]
    if valid and names[0] == "person_id":
        body = [[f"P{i + 1}", *row[1:]] for i, row in enumerate(body)]
    return [names, *body]


def as_csv(table: list[list[str]], newline: str, quote: bool) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline, quoting=csv.QUOTE_ALL if quote else csv.QUOTE_MINIMAL).writerows(table)
    return buffer.getvalue()


def as_jsonl(table: list[list[str]]) -> str:
    return "".join(json.dumps(dict(zip(table[0], row, strict=True)), ensure_ascii=False) + "\n" for row in table[1:])


def as_parquet(table: list[list[str]]) -> bytes:
    arrays = [pa.array([row[i] for row in table[1:]], pa.string()) for i in range(len(table[0]))]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, table[0]), sink)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize("seed", range(0, 240, 40))
def test_random_files_read_as_policy_lang_data_reads_them(tmp_path: Path, seed: int) -> None:
    kinds: dict[str, int] = {}
    for case in range(seed, seed + 40):
        rnd = random.Random(case)
        valid = rnd.random() < 0.3
        people = random_table(rnd, PERSON_VALUES, PERSONS_REQUIRED, rnd.randint(0, 4), valid)
        bills = random_table(rnd, CLAIM_VALUES, CLAIMS_REQUIRED, rnd.randint(0, 6), valid)
        fmt = rnd.choice(["csv", "jsonl"])
        newline, quote = rnd.choice(["\n", "\r\n"]), rnd.random() < 0.3
        people_text, bills_text = (as_csv(t, newline, quote) if fmt == "csv" else as_jsonl(t) for t in (people, bills))
        directory = write(tmp_path / str(case), {f"persons.{fmt}": people_text, f"claims.{fmt}": bills_text})
        kind = same_as_data(directory, f"persons.{fmt}", f"claims.{fmt}", chunk_persons=rnd.randint(1, 3),
                            chunk_claims=rnd.randint(1, 4))[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == {"ok", "error"}


def test_parquet_of_strings_reads_as_the_same_csv(tmp_path: Path) -> None:
    """Parquet rows count from 1 (no header): a fault on CSV line k is on Parquet row k - 1."""
    for case in range(60):
        rnd = random.Random(case)
        valid = rnd.random() < 0.4
        people = random_table(rnd, PERSON_VALUES, PERSONS_REQUIRED, rnd.randint(0, 4), valid)
        bills = random_table(rnd, CLAIM_VALUES, CLAIMS_REQUIRED, rnd.randint(0, 6), valid)
        text = write(tmp_path / f"csv{case}", {"persons.csv": as_csv(people, "\n", False),
                                               "claims.csv": as_csv(bills, "\n", False)})
        same_as_csv(write(tmp_path / f"pq{case}", {"persons.parquet": as_parquet(people),
                                                   "claims.parquet": as_parquet(bills)}), text)


def same_as_csv(parquet_directory: Path, csv_directory: Path) -> None:
    """A population of Parquet strings reads as its CSV twin: the same records or the same message, on row
    k - 1 of the Parquet file for line k of the CSV (no header row)."""
    expected = outcome(lambda: records(loaders.iter_columns(csv_directory, VOCAB)))
    got = outcome(lambda: records(loaders.iter_columns(parquet_directory, VOCAB)))
    assert got[0] == expected[0], (expected[1], got[1])
    if isinstance(got[1], DataError) and isinstance(expected[1], DataError):
        assert (got[1].line, got[1].column) == (max(1, expected[1].line - 1), expected[1].column)
        assert got[1].message == re.sub(r"\(first on line (\d+)\)", lambda m: f"(first on line {int(m[1]) - 1})",
                                        expected[1].message)
    else:
        assert got[1] == expected[1]


EDGE_VALUES = {
    "date": ["0000-01-01", "0001-01-01", "9999-12-31", "2024-02-29", "2023-02-29", "1900-02-29", "2000-02-29",
             "2023-04-31", "2023-00-10", "2023-01-00", " 2023-01-05 ", "2023-1-5", "２０２３-01-01", "2023-01-05T00:00",
             "20230105"],
    "total_cost": ["0", "0.0", "0.00", "0.000", "1.5", "1.505", "01", "-0", "-0.00", "+1", "1,000", "1 000", "１",
                   "1e2", ".5", "5.", "1000000000", "1000000000.00", "1000000000.001", "1000000000.01",
                   "99999999999999999999", "0" * 40 + "1", "1" * 45, "nan", "inf", "0x10", "", " 7 "],
    "hospital_level": ["1", "3", "0", "4", "01", " 2 ", "2.0", "二", ""],
    "grassroots": ["true", "TRUE", "tRuE", "1", "0", "FALSE", " yes", "ｔｒｕｅ", "t", "", "01"],
    "bed_days": ["0", "100000", "100001", "-0", " 5 ", "5.0", "1e2", "0" * 30 + "7"],
    "kind": ["inpatient", " inpatient ", "INPATIENT", "住院", "maternity", ""],
    "designation": ["none", "NONE", "county_poverty", "市级扶贫定点", ""],
    "diseases": ["uremia;uremia", "尿毒症;uremia", " ; ", "Uremia", "uremia,diabetes", "重大疾病"],
    "age": ["0", "150", "151", "-0", "-1", "0150", "0" * 25 + "150", "1.0", "１", "+1", ""],
    "identities": ["dibao@2023-02-29", "dibao@2024-02-29", "dibao @ 2023-01-01", "dibao@ 2023-01-01 ", "低保", "特困",
                   "tekun;;dibao", "dibao;DIBAO", "dibao@2023-01-01@2023-02-01", "@2023-01-01"],
    "sex": ["F", "f", "", "M ", "男"],
    "scheme": ["employee", "职工", " provincial_direct", "Employee", ""],
}


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in EDGE_VALUES.items() for v in values])
def test_one_value_reads_as_policy_lang_data_reads_it(tmp_path: Path, name: str, value: str) -> None:
    person = {"person_id": "P1", "scheme": "resident", "age": "40", "identities": "", "sex": "F"}
    claim = {"claim_id": "C1", "person_id": "P1", "date": "2023-01-05", "kind": "inpatient", "hospital_level": "2",
             "total_cost": "100", "eligible_cost": "0", "grassroots": "", "bed_days": "", "designation": "",
             "diseases": ""}
    (person if name in person else claim)[name] = value
    tables = {"persons": [list(person), list(person.values())], "claims": [list(claim), list(claim.values())]}
    text = write(tmp_path / "csv", {f"{k}.csv": as_csv(t, "\n", True) for k, t in tables.items()})
    same_as_data(text, "persons.csv", "claims.csv")
    same_as_csv(write(tmp_path / "parquet", {f"{k}.parquet": as_parquet(t) for k, t in tables.items()}), text)


GOOD_ROW = "C{i},P{p},2023-01-{d:02d},inpatient,2,{t}.00,{e}.50"
FAULTS: list[Callable[[str, int], str]] = [
    lambda row, i: row.replace(f"C{i},", "C3,", 1),  # a duplicate claim id
    lambda row, i: row.replace(",P", ",Q", 1),  # an unknown person
    lambda row, i: row.replace("inpatient", "inpatent"),
    lambda row, i: row + ",extra",  # a field too many
    lambda row, i: row.rsplit(",", 2)[0],  # fields too few
    lambda row, i: row.replace("-01-", "-02-3", 1),  # a bad date
    lambda row, i: row.replace("inpatient", '"in\npatient"'),  # a quoted field over two lines
    lambda row, i: row.replace("inpatient", '"in"patient'),  # text after a closing quote
    lambda row, i: row.replace("inpatient", 'in"patient'),  # a quote inside a field
    lambda row, i: row.replace(f"C{i},", "\udcff", 1),  # a byte that is not UTF-8
    lambda row, i: "",  # a blank line
]


def faulty_population(rnd: random.Random) -> tuple[list[str], list[str]]:
    n = rnd.randint(1, 12)
    people = ["person_id,scheme", *(f"P{k},resident" for k in range(n))]
    if rnd.random() < 0.2:
        people.insert(rnd.randint(1, len(people)), f"P{rnd.randrange(n)},resident")
    bills = ["claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost"]
    for i in range(rnd.randint(0, 40)):
        total = rnd.randint(1, 999)
        row = GOOD_ROW.format(i=i, p=rnd.randrange(n), d=rnd.randint(1, 28), t=total, e=rnd.randint(0, total - 1))
        bills.append(rnd.choice(FAULTS)(row, i) if rnd.random() < 0.06 else row)
    return people, bills


def encoded(lines: list[str], newline: str) -> bytes:
    return (newline.join(lines) + newline).encode("utf-8", "surrogateescape")


def test_faults_across_many_small_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks and batches: the first fault in file order wins wherever the batches break."""
    for name, value in (("_CSV_BLOCK", 300), ("_BATCH_ROWS", 4), ("_BUCKET_BYTES", 200), ("_TEXT_BLOCK", 97)):
        monkeypatch.setattr(loaders, name, value)
    kinds: dict[str, int] = {}
    for case in range(200):
        rnd = random.Random(case)
        people, bills = faulty_population(rnd)
        newline = rnd.choice(["\n", "\r\n"])
        directory = write(tmp_path / str(case), {"persons.csv": encoded(people, newline),
                                                 "claims.csv": encoded(bills, newline)})
        kind = same_as_data(directory, "persons.csv", "claims.csv", vocab=default_vocabulary(),
                            chunk_persons=rnd.randint(1, 5))[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds["ok"] > 40 and kinds["error"] > 40


# ---- formats and values -------------------------------------------------------------------------------------------
PERSONS = "person_id,scheme,age,identities,chronic\nP1,resident,60,dibao@2023-03-01,uremia\nP2,employee,,,\n"
CLAIMS = ("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost,diseases,in_province\n"
          "C1,P1,2023-01-05,inpatient,2,1000.00,800.00,uremia;hypertension,true\n"
          "C2,P2,2023-02-01,outpatient,1,20,15,,false\n")


def typed_claims(**columns: pa.Array) -> pa.Table:
    table = pacsv.read_csv(pa.py_buffer(CLAIMS.encode()), convert_options=pacsv.ConvertOptions(
        column_types=dict.fromkeys(CLAIMS.partition("\n")[0].split(","), pa.string())))
    for name, column in columns.items():
        table = table.set_column(table.column_names.index(name), name, column)
    return table


@pytest.mark.parametrize("columns", [
    {"total_cost": pa.array([decimal.Decimal("1000.000"), decimal.Decimal("20")], pa.decimal128(12, 3))},
    {"total_cost": pa.array([1000, 20], pa.int16()), "eligible_cost": pa.array([800.0, 15.0])},
    {"date": pa.array(["2023-01-05", "2023-02-01"]).cast(pa.date32())},
    {"hospital_level": pa.array([2, 1], pa.uint8()), "in_province": pa.array([True, False])},
    {"diseases": pa.array([["uremia", "hypertension"], []], pa.list_(pa.string()))},
    {"kind": pa.array(["inpatient", "outpatient"]).dictionary_encode()},
    {"claim_id": pa.array(["C1", "C2"], pa.large_string()), "in_province": pa.array([None, "0"], pa.string())},
], ids=["decimal(12,3)", "integer and float amounts", "date32", "integer level, boolean flag", "list of diseases",
        "dictionary", "large_string, null flag"])
def test_typed_parquet_columns_read_as_their_text(tmp_path: Path, columns: dict[str, pa.Array]) -> None:
    write(tmp_path / "csv", {"persons.csv": PERSONS, "claims.csv": CLAIMS})
    write(tmp_path / "pq", {"persons.csv": PERSONS})
    pq.write_table(typed_claims(**columns), tmp_path / "pq" / "claims.parquet")
    expected = records(loaders.iter_columns(tmp_path / "csv", VOCAB))
    assert records(loaders.iter_columns(tmp_path / "pq", VOCAB)) == expected


def test_declared_columns_match_policy_lang_data(tmp_path: Path) -> None:
    persons = "person_id,scheme,visits,village,age\nP1,resident,3,东村,5\nP2,resident,,,\nP3,resident,-7,东村,\n"
    claims = ("claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost,ward,day_rate,trial\n"
              "C1,P1,2023-01-05,inpatient,2,10,5,A,80.5,1\nC2,P3,2023-01-06,inpatient,2,10,5,,,\n"
              "C3,P3,2023-01-07,inpatient,2,10,5,B,0,false\n")
    write(tmp_path, {"persons.csv": persons, "claims.csv": claims})
    same_as_data(tmp_path, "persons.csv", "claims.csv")
    same_as_data(tmp_path, "persons.csv", "claims.csv", chunk_persons=1)


def test_whitespace_is_what_python_strips() -> None:
    assert "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace()) == loaders.WHITESPACE


def test_string_hash_does_not_depend_on_the_batch() -> None:
    texts = pa.array(["P8", "P10", "C0000001-0001", "x" * 40, "", "张三", "P8"])
    whole = loaders.string_hash(texts)
    assert [int(loaders.string_hash(texts.slice(i, 1))[0]) for i in range(len(texts))] == [int(h) for h in whole]
    assert loaders.string_hash(pa.array(["P8", "P8"]))[0] == whole[0] == whole[6]  # fixed-width rule
    assert len(set(whole[:6].tolist())) == 6


def test_hash_collisions_do_not_confuse_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every id hashing alike, look-ups and duplicate checks still compare the ids themselves."""
    monkeypatch.setattr(loaders, "string_hash", lambda text: np.zeros(len(text), np.uint64))
    write(tmp_path, {"persons.csv": PERSONS + "P3,resident,,,\n",
                     "claims.csv": CLAIMS + "C3,P3,2023-03-01,inpatient,2,5,5,,\n"})
    same_as_data(tmp_path, "persons.csv", "claims.csv")
    write(tmp_path, {"claims.csv": CLAIMS + "C3,P4,2023-03-01,inpatient,2,5,5,,\n"})
    assert "person_id 'P4' is not in the persons file" in str(same_as_data(tmp_path, "persons.csv", "claims.csv")[1])
    write(tmp_path, {"claims.csv": CLAIMS + "C1,P3,2023-03-01,inpatient,2,5,5,,\n"})
    assert "duplicate claim_id 'C1'" in str(same_as_data(tmp_path, "persons.csv", "claims.csv")[1])


# ---- chunks -------------------------------------------------------------------------------------------------------
def many_claims(persons: int, per_person: list[int]) -> dict[str, str]:
    rows = [f"C{p}-{k},P{p},2023-01-01,outpatient,1,1,1" for p in range(persons) for k in range(per_person[p])]
    random.Random(1).shuffle(rows)
    return {"persons.csv": "person_id,scheme\n" + "".join(f"P{p},resident\n" for p in range(persons)),
            "claims.csv": "claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost\n"
                          + "".join(row + "\n" for row in rows)}


def test_chunks_hold_whole_persons_within_both_budgets(tmp_path: Path) -> None:
    per_person = [3, 0, 9, 1, 1, 1, 4, 2, 0, 5]
    write(tmp_path, many_claims(10, per_person))
    chunks = list(loaders.iter_columns(tmp_path, VOCAB, chunk_persons=4, chunk_claims=4))
    sizes = [(c.persons.n, c.claims.m) for c in chunks]
    # persons 0-3 (3, 0, 9, 1 claims) | 4-7 (1, 1, 4, 2) | 8-9 (0, 5): runs of at most 4 claims or one person
    assert sizes == [(2, 3), (1, 9), (1, 1), (2, 2), (1, 4), (1, 2), (1, 0), (1, 5)]
    for cols in chunks:
        ids = cols.persons.ids()
        assert all(cid.split("-")[0][1:] == ids[p][1:] for cid, p in zip(cols.claims.ids(), cols.claims.person,
                                                                          strict=True))
    assert sum(m for _, m in sizes) == sum(per_person)


def test_no_persons_is_one_empty_chunk(tmp_path: Path) -> None:
    write(tmp_path, {"persons.csv": "person_id,scheme\n", "claims.jsonl": ""})
    (chunk,) = loaders.iter_columns(tmp_path, VOCAB)
    assert (chunk.persons.n, chunk.claims.m) == (0, 0)


def test_temporary_files_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    population = write(tmp_path / "ok", many_claims(10, [2] * 10))
    assert len(list(loaders.iter_columns(population, VOCAB, chunk_persons=3))) == 4
    assert list(temp.iterdir()) == []
    chunks = loaders.iter_columns(population, VOCAB, chunk_persons=3)
    next(chunks)
    assert list(temp.iterdir())  # the spilled claims of the chunks to come
    chunks.close()
    assert list(temp.iterdir()) == []
    bad = write(tmp_path / "bad", {**many_claims(10, [2] * 10), "persons.csv": "person_id,scheme\nP0,resident\n"})
    with pytest.raises(DataError, match="not in the persons file"):
        list(loaders.iter_columns(bad, VOCAB))
    assert list(temp.iterdir()) == []


# ---- encodings ----------------------------------------------------------------------------------------------------
def test_encodings(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"persons.csv": "person_id,scheme,region\n张三,resident,辽中\n".encode("gbk"),
             "claims.csv": "claim_id,person_id,date,kind,hospital_level,total_cost,eligible_cost\n"}
    write(tmp_path, files)
    said: list[str] = []
    (chunk,) = loaders.iter_columns(tmp_path, VOCAB, encoding="gbk", notify=said.append)
    assert list(chunk.persons.ids()) == ["张三"] and chunk.persons.region_names == ("辽中",)
    assert said == ["reading persons.csv as GBK", "reading claims.csv as GBK"]
    with pytest.raises(DataError, match="unknown encoding 'klingon'"):
        list(loaders.iter_columns(tmp_path, VOCAB, encoding="klingon"))
    with pytest.raises(DataError, match="not supported for data files: use an ASCII-compatible encoding"):
        list(loaders.iter_columns(tmp_path, VOCAB, encoding="utf-16"))


def test_population_files(tmp_path: Path) -> None:
    write(tmp_path, {"persons.parquet": b"", "claims.jsonl": ""})
    assert loaders.population_files(tmp_path) == (tmp_path / "persons.parquet", tmp_path / "claims.jsonl")
    write(tmp_path, {"claims.csv": ""})
    with pytest.raises(loaders.PopulationFilesError, match=r"claims\.csv and claims\.jsonl both exist"):
        loaders.population_files(tmp_path)


# ---- generated populations ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("generated")
    profile = load_profile("liaoning-provincial-direct")
    parquet_io.write_population(generate_chunks(profile, 6000, 11, 2023, chunk_persons=2500), directory)
    return directory


def test_generated_population_reads_as_iter_population(generated: Path) -> None:
    vocab = default_vocabulary()
    loaded = records(loaders.iter_columns(generated, vocab, chunk_persons=2000, chunk_claims=5000))
    expected = to_dataset(concat(list(parquet_io.iter_population(generated))))
    assert loaded.persons == expected.persons
    assert sorted(loaded.claims, key=lambda c: c.claim_id) == sorted(expected.claims, key=lambda c: c.claim_id)


@pytest.mark.parametrize("baseline", [(), ("--baseline", PROVINCIAL_BASE)], ids=["policy", "with baseline"])
def test_generated_population_simulates_byte_identically(generated: Path, monkeypatch: pytest.MonkeyPatch,
                                                         baseline: tuple[str, ...]) -> None:
    """The simulate JSON of a generated population is the same read by the loader or by iter_population."""
    monkeypatch.setattr(run, "CHUNK_CLAIMS", 7_000)  # several chunks, unlike iter_population's one row group
    args = ["simulate", PROVINCIAL, "--population", str(generated), "--format", "json", *baseline]
    through_loader = CliRunner().invoke(main, args, catch_exceptions=False)
    monkeypatch.setattr(loaders, "iter_columns", lambda directory, *_, **__: parquet_io.iter_population(directory))
    through_parquet_io = CliRunner().invoke(main, args, catch_exceptions=False)
    assert through_loader.exit_code == through_parquet_io.exit_code == 0, through_loader.stderr
    assert through_loader.stdout == through_parquet_io.stdout
    assert json.loads(through_loader.stdout)["population"]["persons"] == 6000


def test_job_checks_the_directory_and_reproduces_the_encoding(tmp_path: Path) -> None:
    request = job.Request(PROVINCIAL, None, str(tmp_path), None, None, 1, 2023, "vector", 1, None, 1, (), (),
                          encoding="gbk")
    with pytest.raises(job.JobError, match=r"no persons file .* Parquet, CSV or JSON Lines"):
        job._source(request, "liaoning-provincial-direct")
    write(tmp_path, {"persons.csv": "", "claims.csv": ""})
    source = job._source(request, "liaoning-provincial-direct")
    assert source == run.Stored(tmp_path, "gbk")
