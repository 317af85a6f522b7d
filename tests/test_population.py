"""Tests for simulator.profile, simulator.population and simulator.parquet_io, and `polc population`."""

from __future__ import annotations

import datetime
import json
import os
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import attrs
import numpy as np
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from policy_lang.cli import main
from policy_lang.columns import KINDS, Columns, day_number
from policy_lang.data import load_dataset
from policy_lang.pipeline import build, data_vocabulary
from simulator import parquet_io
from simulator.population import BLOCK, concat, describe, generate, generate_block, generate_chunks
from simulator.profile import (
    Expectation,
    ProfileError,
    Tolerance,
    available_profiles,
    expectations,
    load_profile,
)

PROFILES = ("jining", "liaoning-provincial-direct", "liaoning-resident")
ROOT = Path(__file__).resolve().parent.parent
TEST_SIZE = 200_000
# The policies whose vocabulary a profile's data must satisfy (DESIGN.md §4, policy_lang.data).
POLICIES = {
    "liaoning-resident": ("policies/shenyang/poverty-2019.pol", "policies/yingkou/major-illness-2023.pol"),
    "jining": ("policies/jining/benefits-2021.pol",),
    "liaoning-provincial-direct": ("policies/liaoning/provincial-direct-2019.pol",),
}


@pytest.fixture(scope="module", params=PROFILES)
def big(request: pytest.FixtureRequest) -> tuple[str, Columns]:
    """A 200000-person population of each profile (generated once per module)."""
    name = str(request.param)
    return name, generate(load_profile(name), TEST_SIZE, seed=20231)


def arrays(cols: Columns) -> dict[str, object]:
    """Every array and name table of a Columns, for exact comparisons."""
    out: dict[str, object] = {"identity_names": cols.identity_names, "disease_names": cols.disease_names}
    for prefix, record in (("persons", cols.persons), ("claims", cols.claims)):
        for field in attrs.fields(type(record)):
            if field.name != "extra":
                out[f"{prefix}.{field.name}"] = getattr(record, field.name)
    return out


def assert_same(a: Columns, b: Columns) -> None:
    left, right = arrays(a), arrays(b)
    assert left.keys() == right.keys()
    for key, value in left.items():
        other = right[key]
        if isinstance(value, np.ndarray):
            assert isinstance(other, np.ndarray) and value.dtype == other.dtype, key
            assert np.array_equal(value, other), key
        else:
            assert value == other, key


# ---- profiles ------------------------------------------------------------------------------------------------------
def test_the_bundled_profiles_are_listed() -> None:
    assert available_profiles() == list(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_with_sources_and_tolerances(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    kinds = {e.kind for e in expectations(profile)}
    assert kinds <= set(profile.tolerances)
    assert all(e.value is not None or e.minimum is not None for e in expectations(profile))


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="unknown profile `nowhere`; known profiles: jining, "):
        load_profile("nowhere")


def _edited_profile(tmp_path: Path, old: str, new: str) -> str:
    text = (ROOT / "simulator/profiles/jining.toml").read_text("utf-8")
    assert old in text
    path = tmp_path / "edited.toml"
    path.write_text(text.replace(old, new, 1), "utf-8")
    return str(path)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('out_of_area = 0.07\n', 'out_of_area = 0.07\nsurprise = 1\n', r"inpatient\.flags\.surprise: unknown key"),
    ('"tekun" = 0.0035', '"tekun" = 1.5', r"identities\.holdings\.tekun: 1\.5 is out of range"),
    ('schemes = { resident = 0.8, employee = 0.2, assumed', 'schemes = { resident = 0.8, employee = 0.3, assumed',
     r"persons\.schemes: shares sum to 1\.1"),
    ('cost = 120\n', 'cost = "cheap"\n', r"chronic\[0\]\.cost: must be a number"),
    ('"tekun" = 0.0035', '"tekun;tekun" = 0.0035', r"identities\.holdings\.tekun;tekun: identities must be distinct ids"),
    ('parent = "diabetes"', 'parent = "nothing"', r"chronic\[2\]\.parent: must name a condition"),
    ('min_age = 18\nmax_age = 110\nage_slope = 0.04', 'min_age = 105\nmax_age = 110\nage_slope = 0.04',
     r"chronic\[0\]: `hypertension`: nobody in the population is aged 105-110"),
    ('prevalence = 0.09\n', 'prevalence = 0.9\n', r"chronic\[0\]: `hypertension`: prevalence 0.9 .* above 1"),
])
def test_profile_errors_name_the_file_and_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _edited_profile(tmp_path, old, new)
    with pytest.raises(ProfileError, match=f"edited.toml: {message}"):
        load_profile(path)


def test_a_value_without_a_source_is_an_error(tmp_path: Path) -> None:
    path = _edited_profile(tmp_path, ', assumed = "cost per bed day by level; stays of about 8–10 days"', "")
    with pytest.raises(ProfileError, match=r"inpatient\.bed_days\.per_diem\.1: a value without `source`"):
        load_profile(path)


def test_every_number_in_the_bundled_profiles_is_covered_by_a_source() -> None:
    for name in PROFILES:
        data = tomllib.loads((ROOT / f"simulator/profiles/{name}.toml").read_text("utf-8"))
        texts = [v for v in _walk(data) if isinstance(v, str)]
        assert any("DOMAIN.md §5" in t for t in texts), name


def _walk(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def test_tolerance_and_sampling_allowance() -> None:
    assert Tolerance(abs=0.01).allows(0.5, 0.509) and not Tolerance(abs=0.01).allows(0.5, 0.52)
    assert Tolerance(rel=0.1).allows(200.0, 219.0) and not Tolerance(rel=0.1).allows(200.0, 221.0)
    rare = Expectation("k", "rare", 0.01, "share", Tolerance(abs=0.001), sampling_z=4)
    assert rare.ok(0.0105) and not rare.ok(0.02)
    assert rare.ok(0.02, count=500)  # 4 standard errors of 500 draws is 0.0178
    cost = Expectation("c", "cost", 1000.0, "cost", Tolerance(rel=0.05), sampling_z=4)
    assert not cost.ok(1100.0) and cost.ok(1100.0, error=30.0) and not cost.ok(1100.0, error=20.0)
    assert Expectation("m", "most", None, "share", Tolerance(), minimum=0.5).ok(0.7)


# ---- calibration: each target within its stated tolerance --------------------------------------------------------
def test_a_200k_population_hits_every_target(big: tuple[str, Columns]) -> None:
    name, cols = big
    rows = describe([cols], load_profile(name))
    targets = [r for r in rows if r.target]
    assert len(targets) == len(expectations(load_profile(name)))
    missing = [r.key for r in targets if r.status == ""]
    off = [f"{r.label}: target {r.target}, realised {r.realised}" for r in rows if r.status == "off"]
    assert not missing, missing
    assert not off, "\n".join(off)


def test_generated_values_are_valid(big: tuple[str, Columns]) -> None:
    _name, cols = big
    cols.check()
    p, c = cols.persons, cols.claims
    assert (c.eligible_cost <= c.total_cost).all() and (c.eligible_cost >= 0).all() and (c.total_cost > 0).all()
    assert (c.tcm_cost <= c.eligible_cost).all() and (c.tcm_cost >= 0).all()
    assert (c.material_over_limit <= c.total_cost - c.eligible_cost).all() and (c.material_over_limit >= 0).all()
    assert not (c.in_pooling_area & ~c.in_province).any()
    assert set(np.unique(c.level)) <= {1, 2, 3}
    start, end = day_number(datetime.date(2023, 1, 1)), day_number(datetime.date(2023, 12, 31))
    assert c.day.min() >= start and c.day.max() <= end
    dated = p.grant_since[p.grant_since > np.iinfo(np.int32).min]
    assert len(dated) == 0 or (dated.min() > start and dated.max() <= end)
    assert len(dated) > 0 or not len(p.grant_since)
    inpatient = c.kind == KINDS.index("inpatient")
    assert (c.bed_days[inpatient] >= 1).all() and (c.bed_days[~inpatient] == 0).all()
    assert (c.designation[~inpatient] == 0).all()
    key = c.person.astype(np.int64) * 100_000 + c.day
    assert (np.diff(key) >= 0).all(), "claims must be sorted by person and date"
    assert len(np.unique(c.ids())) == c.m and len(np.unique(p.ids())) == p.n
    assert (np.diff(p.grant_person) >= 0).all() and (np.diff(p.chronic_person) >= 0).all()
    assert (np.diff(c.disease_claim) >= 0).all()


# ---- determinism and chunking --------------------------------------------------------------------------------------
SIZE = BLOCK + 23_456  # two blocks, the second one partial


@pytest.fixture(scope="module")
def jining() -> Columns:
    """A two-block Jining population (seed 5)."""
    return generate(load_profile("jining"), SIZE, seed=5)


def test_same_seed_same_population(jining: Columns) -> None:
    cols = jining
    assert_same(cols, generate(load_profile("jining"), SIZE, seed=5))
    other = generate(load_profile("jining"), SIZE, seed=6)
    assert not np.array_equal(other.claims.total_cost[:100], cols.claims.total_cost[:100])


@pytest.mark.parametrize("chunk", [997, 40_000, BLOCK, 10 * BLOCK])
def test_any_chunk_size_gives_the_same_population(jining: Columns, chunk: int) -> None:
    cols = jining
    chunks = list(generate_chunks(load_profile("jining"), SIZE, seed=5, chunk_persons=chunk))
    assert [c.persons.n for c in chunks[:-1]] == [chunk] * (len(chunks) - 1)
    assert_same(concat(chunks), cols)


def test_blocks_can_be_generated_in_any_order(jining: Columns) -> None:
    cols = jining
    profile = load_profile("jining")
    blocks = {b: generate_block(profile, SIZE, 5, 2023, b) for b in (1, 0)}
    assert_same(concat([blocks[0], blocks[1]]), cols)
    assert blocks[1].persons.ids()[0] == f"P{BLOCK + 1:07d}"


def test_bad_arguments_are_rejected() -> None:
    profile = load_profile("jining")
    for size, seed in ((0, 1), (10, -1)):
        with pytest.raises(ValueError, match="must be"):
            list(generate_chunks(profile, size, seed))


# ---- parquet ---------------------------------------------------------------------------------------------------------
def test_parquet_round_trip_is_exact(tmp_path: Path, jining: Columns) -> None:
    cols = jining
    parquet_io.write_population(generate_chunks(load_profile("jining"), SIZE, 5, chunk_persons=50_000), tmp_path,
                                {"profile": "jining", "seed": 5})
    assert sorted(os.listdir(tmp_path)) == ["claims.parquet", "persons.parquet"]
    assert_same(parquet_io.read_population(tmp_path), cols)
    chunks = list(parquet_io.iter_population(tmp_path, chunk_persons=60_000))
    assert [c.persons.n for c in chunks] == [100_000, 23_456]
    assert_same(concat(chunks), cols)
    assert parquet_io.read_metadata(tmp_path)["profile"] == "jining"
    persons = pq.ParquetFile(tmp_path / "persons.parquet")
    assert persons.num_row_groups == 3 == pq.ParquetFile(tmp_path / "claims.parquet").num_row_groups


def test_parquet_columns_and_values_follow_the_design(tmp_path: Path, jining: Columns) -> None:
    cols = jining
    parquet_io.write_population(cols, tmp_path)
    persons = pq.read_table(tmp_path / "persons.parquet")
    claims = pq.read_table(tmp_path / "claims.parquet")
    assert persons.column_names == ["person_id", "scheme", "retired", "age", "sex", "identities", "region",
                                    "chronic", "resettled"]
    assert claims.column_names[:7] == ["claim_id", "person_id", "date", "kind", "hospital_level", "total_cost",
                                       "eligible_cost"]
    assert str(claims.schema.field("total_cost").type) == "decimal128(18, 2)"
    assert str(claims.schema.field("date").type) == "date32[day]"
    assert claims.column("total_cost")[0].as_py() == Decimal(int(cols.claims.total_cost[0])) / 100
    grants = [g for g in persons.column("identities").to_pylist() if g]
    assert any("@2023-" in g for g in grants) and any(";" in g for g in grants)
    assert set(claims.column("designation").to_pylist()) == {"none"}


def test_same_seed_gives_identical_parquet_bytes(tmp_path: Path) -> None:
    profile = load_profile("liaoning-resident")
    for out in ("a", "b"):
        parquet_io.write_population(generate_chunks(profile, 5_000, 9, chunk_persons=2_000), tmp_path / out)
    for name in ("persons.parquet", "claims.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_writing_is_atomic(tmp_path: Path) -> None:
    profile = load_profile("jining")

    def failing() -> Iterator[Columns]:
        yield from generate_chunks(profile, 3_000, 1, chunk_persons=1_000)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        parquet_io.write_population(failing(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_reading_a_bad_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(parquet_io.PopulationError, match=r"persons\.parquet: no such file"):
        parquet_io.read_population(tmp_path)
    (tmp_path / "persons.parquet").write_text("not parquet", "utf-8")
    (tmp_path / "claims.parquet").write_text("not parquet", "utf-8")
    with pytest.raises(parquet_io.PopulationError, match="not a Parquet file"):
        parquet_io.read_population(tmp_path)


def test_aliases_canonicalise_disease_names(tmp_path: Path) -> None:
    cols = generate(load_profile("jining"), 3_000, 2)
    parquet_io.write_population(cols, tmp_path)
    back = parquet_io.read_population(tmp_path, aliases={"uremia": "尿毒症"})
    assert "尿毒症" in back.disease_names and "uremia" not in back.disease_names


# ---- every claim passes policy_lang.data validation ----------------------------------------------------------------
@pytest.mark.parametrize("name", PROFILES)
def test_a_sample_loads_with_the_data_loader(tmp_path: Path, name: str) -> None:
    profile = load_profile(name)
    for policy in POLICIES[name]:
        if "yingkou" in policy:  # Yingkou does not list Shenyang's 40 diseases
            profile = attrs.evolve(profile, inpatient=attrs.evolve(profile.inpatient, tags=()))
        cols = generate(profile, 2_000, 17)
        pacsv.write_csv(parquet_io.persons_table(cols), tmp_path / "persons.csv")
        pacsv.write_csv(parquet_io.claims_table(cols), tmp_path / "claims.csv")
        vocab = data_vocabulary(build(ROOT / policy).graph)
        data = load_dataset(tmp_path / "persons.csv", tmp_path / "claims.csv", vocab)
        assert len(data.persons) == 2_000 and len(data.claims) == cols.claims.m > 2_000


# ---- command line ------------------------------------------------------------------------------------------------
def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_generate_and_describe(tmp_path: Path) -> None:
    out = tmp_path / "pop"
    code, _stdout, stderr = invoke("population", "generate", "--size", "4000", "--seed", "3",
                                   "--profile", "liaoning-provincial-direct", "--out", str(out))
    assert code == 0, stderr
    assert "wrote 4,000 persons" in stderr
    assert parquet_io.read_population(out).persons.n == 4_000
    code, stdout, stderr = invoke("population", "describe", str(out))
    assert code == 0, stderr
    assert "against profile liaoning-provincial-direct" in stdout
    assert "admissions per person-year: retired" in stdout and " ok" in stdout
    code, stdout, _ = invoke("population", "describe", str(out), "--format", "json", "--profile", "jining")
    rows = json.loads(stdout)
    assert code == 0 and {r["key"] for r in rows} >= {"persons", "admissions.active", "top5_cost_share"}


def test_cli_describe_strict_exits_1_when_off(tmp_path: Path) -> None:
    out = tmp_path / "pop"
    assert invoke("population", "generate", "--size", "500", "--profile", "jining", "--out", str(out))[0] == 0
    code, _stdout, _stderr = invoke("population", "describe", str(out), "--profile", "liaoning-resident",
                                    "--strict")
    assert code == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "10", "--profile", "nowhere"], "unknown profile `nowhere`; known profiles: jining"),
    (["--size", "0", "--profile", "jining"], "--size"),
    (["--size", "ten", "--profile", "jining"], "--size"),
])
def test_cli_generate_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, _stdout, stderr = invoke("population", "generate", *args, "--out", str(tmp_path / "x"))
    assert code == 2 and message in stderr


def test_cli_generate_to_an_unwritable_place_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", "utf-8")
    code, _stdout, stderr = invoke("population", "generate", "--size", "10", "--profile", "jining",
                                   "--out", str(blocker / "sub"))
    assert code == 2 and "cannot write the population" in stderr
    code, _stdout, stderr = invoke("population", "generate", "--size", "10", "--profile", "jining",
                                   "--out", str(blocker))
    assert code == 2 and "is a file" in stderr


def test_cli_describe_of_a_missing_population_exits_2(tmp_path: Path) -> None:
    code, _stdout, stderr = invoke("population", "describe", str(tmp_path))
    assert code == 2 and "persons.parquet: no such file" in stderr


def test_cli_lists_profiles() -> None:
    code, stdout, _ = invoke("population", "profiles")
    assert code == 0 and [line.split("\t")[0] for line in stdout.splitlines()] == list(PROFILES)
