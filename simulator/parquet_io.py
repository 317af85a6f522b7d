"""Populations as Parquet (DESIGN.md §4 columns): persons.parquet and claims.parquet, chunk by chunk, vectorised."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from policy_lang import vocabulary as V
from policy_lang.columns import (
    CLAIM_BOOLS,
    CLAIM_MONEY,
    DESIGNATIONS,
    EPOCH_ORDINAL,
    KINDS,
    NO_DATE,
    SCHEMES,
    SEXES,
    Claims,
    Columns,
    Persons,
    day_date,
)
from simulator.population import Array, as_str, concat

PERSONS_FILE: Final = "persons.parquet"
CLAIMS_FILE: Final = "claims.parquet"
METADATA_KEY: Final = b"polc.population"
MONEY: Final = pa.decimal128(18, 2)

PERSONS_SCHEMA: Final = pa.schema([
    ("person_id", pa.string()), ("scheme", pa.string()), ("retired", pa.bool_()), ("age", pa.int32()),
    ("sex", pa.string()), ("identities", pa.string()), ("region", pa.string()), ("chronic", pa.string()),
    ("resettled", pa.bool_())])
CLAIMS_SCHEMA: Final = pa.schema([
    ("claim_id", pa.string()), ("person_id", pa.string()), ("date", pa.date32()), ("kind", pa.string()),
    ("hospital_level", pa.int32()), ("total_cost", MONEY), ("eligible_cost", MONEY), ("grassroots", pa.bool_()),
    ("tcm_institution", pa.bool_()), ("designation", pa.string()), ("diseases", pa.string()),
    ("referred", pa.bool_()), ("in_province", pa.bool_()), ("in_pooling_area", pa.bool_()),
    ("direct_settlement", pa.bool_()), ("emergency", pa.bool_()), ("pure_tcm", pa.bool_()),
    ("tcm_cost", MONEY), ("material_over_limit", MONEY), ("bed_days", pa.int32())])


class PopulationError(ValueError):
    """A population directory that cannot be read or written; the message names the file and column."""


# ---- writing ------------------------------------------------------------------------------------------------------
def write_population(population: Columns | Iterable[Columns], out_dir: str | os.PathLike[str],
                     metadata: Mapping[str, object] | None = None) -> tuple[Path, Path]:
    """Write persons.parquet and claims.parquet (one row group per chunk in each), atomically.

    Both files are written under temporary names in `out_dir` and renamed into place only when every
    chunk has been written; a failure leaves the directory as it was.
    """
    chunks = [population] if isinstance(population, Columns) else population
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    temps = [_temp_path(out, PERSONS_FILE), _temp_path(out, CLAIMS_FILE)]
    try:
        _write_chunks(chunks, temps, metadata or {})
        targets = [out / PERSONS_FILE, out / CLAIMS_FILE]
        for temp, target in zip(temps, targets, strict=True):
            os.replace(temp, target)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    return out / PERSONS_FILE, out / CLAIMS_FILE


def _temp_path(directory: Path, name: str) -> Path:
    """A fresh temporary file beside the target, with the permissions a plain new file would get."""
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return Path(path)


def _write_chunks(chunks: Iterable[Columns], temps: Sequence[Path], metadata: Mapping[str, object]) -> None:
    persons_writer = claims_writer = None
    try:
        for chunk in chunks:
            if persons_writer is None or claims_writer is None:
                meta = {METADATA_KEY: json.dumps({**metadata, **_names(chunk)}, ensure_ascii=False).encode()}
                persons_writer = pq.ParquetWriter(temps[0], PERSONS_SCHEMA.with_metadata(meta))
                claims_writer = pq.ParquetWriter(temps[1], CLAIMS_SCHEMA.with_metadata(meta))
            _write_table(persons_writer, persons_table(chunk))
            _write_table(claims_writer, claims_table(chunk))
        if persons_writer is None:
            raise PopulationError("no persons to write")
    finally:
        for writer in (persons_writer, claims_writer):
            if writer is not None:
                writer.close()


def _names(cols: Columns) -> dict[str, list[str]]:
    return {"identity_names": list(cols.identity_names), "disease_names": list(cols.disease_names),
            "region_names": list(cols.persons.region_names)}


def _write_table(writer: pq.ParquetWriter, table: pa.Table) -> None:
    writer.write_table(table, row_group_size=max(1, table.num_rows))


def persons_table(cols: Columns) -> pa.Table:
    """The persons of a chunk as a table with exactly the DESIGN.md §4 persons columns."""
    p = cols.persons
    tokens, names = _grant_tokens(p, cols.identity_names)
    return pa.Table.from_arrays([
        _strings(p.ids()), _coded(p.scheme, SCHEMES), pa.array(p.retired, pa.bool_()),
        pa.array(p.age.astype(np.int32), mask=np.less(p.age, 0)), _coded(p.sex, SEXES, none=0),
        _joined(p.n, p.grant_person, tokens, names), _coded(p.region, p.region_names),
        _joined(p.n, p.chronic_person, p.chronic_disease, cols.disease_names),
        pa.array(p.resettled, pa.bool_())], schema=PERSONS_SCHEMA)


def claims_table(cols: Columns) -> pa.Table:
    """The claims of a chunk as a table with exactly the DESIGN.md §4 claims columns (amounts exact)."""
    c, person_ids = cols.claims, cols.persons.ids()
    columns: dict[str, pa.Array] = {
        "claim_id": _strings(c.ids()), "person_id": pc.take(_strings(person_ids), pa.array(c.person, pa.int32())),
        "date": pa.array(c.day.astype(np.int32), pa.int32()).cast(pa.date32()),
        "kind": _coded(c.kind, KINDS), "hospital_level": pa.array(c.level.astype(np.int32), pa.int32()),
        "designation": _coded(c.designation, DESIGNATIONS),
        "diseases": _joined(c.m, c.disease_claim, c.disease_code, cols.disease_names),
        "bed_days": pa.array(c.bed_days.astype(np.int32), pa.int32()),
        **{name: pa.array(getattr(c, name), pa.bool_()) for name in CLAIM_BOOLS},
        **{name: money_array(getattr(c, name)) for name in CLAIM_MONEY}}
    return pa.Table.from_arrays([columns[f.name] for f in CLAIMS_SCHEMA], schema=CLAIMS_SCHEMA)


def money_array(fen: Array) -> pa.Array:
    """Whole fen (int64) as exact decimal128(18, 2) yuan, built from the integers' bytes."""
    fen = np.ascontiguousarray(fen, np.int64)
    words = np.empty((len(fen), 2), "<i8")
    words[:, 0], words[:, 1] = fen, fen >> 63  # little-endian 128-bit two's complement
    return pa.Array.from_buffers(MONEY, len(fen), [None, pa.py_buffer(words)])


def _strings(values: Array) -> pa.Array:
    return pa.array(np.asarray(values, dtype=str), pa.string())


def _coded(codes: Array, names: Sequence[str], none: int = -1) -> pa.Array:
    """Codes into `names` as strings; the `none` code (-1 by default) is null."""
    indices = pa.array(np.asarray(codes, np.int32), pa.int32(), mask=np.asarray(codes) == none)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(names), pa.string())).cast(pa.string())


def _grant_tokens(p: Persons, identity_names: Sequence[str]) -> tuple[Array, list[str]]:
    """Each grant as a code into distinct `id` / `id@YYYY-MM-DD` texts (formatted once per distinct grant)."""
    key = p.grant_identity.astype(np.int64) * 2 ** 32 + (p.grant_since.astype(np.int64) - NO_DATE)
    unique, codes = np.unique(key, return_inverse=True)
    names = [_grant_text(identity_names[int(k) >> 32], int(k) % 2 ** 32 + NO_DATE) for k in unique]
    return codes.reshape(-1), names


def _grant_text(identity: str, since: int) -> str:
    return identity if since == NO_DATE else f"{identity}@{day_date(since).isoformat()}"


def _joined(n: int, rows: Array, codes: Array, names: Sequence[str]) -> pa.Array:
    """`;`-joined names per row from (row, code) pairs sorted by row; null where a row has none."""
    if len(rows) == 0:
        return pa.nulls(n, pa.string())
    counts = np.bincount(rows, minlength=n)
    has = counts > 0
    _rows, position = _positions(counts[has])
    matrix = np.full((int(has.sum()), int(counts.max())), -1, np.int64)
    matrix[_rows, position] = codes
    unique, inverse = _unique_rows(matrix, len(names))
    texts = [";".join(names[int(k)] for k in row if k >= 0) for row in unique]
    indices = np.full(n, -1, np.int32)
    indices[has] = inverse
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=indices < 0), pa.array(texts, pa.string())) \
        .cast(pa.string())


def _unique_rows(matrix: Array, base: int) -> tuple[Array, Array]:
    """Distinct rows of a small-integer matrix (entries -1 … base-1) and each row's index among them."""
    width = matrix.shape[1]
    if (base + 1) ** width < 2 ** 62:  # one int64 key per row: much faster than np.unique(axis=0)
        key = ((matrix + 1) * ((base + 1) ** np.arange(width))).sum(axis=1)
        _keys, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return matrix[first], inverse.reshape(-1)
    unique, inverse = np.unique(matrix, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)


def _positions(counts: Array) -> tuple[Array, Array]:
    """For runs of the given lengths: the run index and the position within the run of every element."""
    runs = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return runs, np.arange(len(runs)) - starts[runs]


# ---- reading ------------------------------------------------------------------------------------------------------
def read_metadata(directory: str | os.PathLike[str]) -> dict[str, object]:
    """What the writer recorded (profile, seed, size, year, name tables); {} for other files."""
    schema = pq.read_schema(_file(directory, PERSONS_FILE))
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


def read_population(directory: str | os.PathLike[str], aliases: Mapping[str, str] | None = None) -> Columns:
    """The whole population in one Columns."""
    return concat(list(iter_population(directory, chunk_persons=2 ** 62, aliases=aliases)))


def iter_population(directory: str | os.PathLike[str], chunk_persons: int = 100_000,
                    aliases: Mapping[str, str] | None = None) -> Iterator[Columns]:
    """The population in chunks of at least `chunk_persons` persons (whole row groups; the last may be
    smaller), claims with their persons. Disease names are kept as written unless `aliases` maps them
    to canonical ids (e.g. `data_vocabulary(graph).diseases`, as the vector evaluator needs)."""
    persons_path, claims_path = _file(directory, PERSONS_FILE), _file(directory, CLAIMS_FILE)
    persons_file, claims_file = _open(persons_path), _open(claims_path)
    names = _Names.from_metadata(read_metadata(directory), aliases or {})
    groups = _row_groups(persons_file, claims_file, persons_path, claims_path)
    for batch in _batches(persons_file, chunk_persons):
        whole = not groups or not batch
        persons = persons_file.read() if whole else persons_file.read_row_groups(batch)
        claims = claims_file.read() if whole else claims_file.read_row_groups(batch)
        yield _columns(persons, claims, names, persons_path, claims_path)


def _file(directory: str | os.PathLike[str], name: str) -> Path:
    path = Path(directory) / name
    if not path.is_file():
        raise PopulationError(f"{path}: no such file (a population directory holds {PERSONS_FILE} and {CLAIMS_FILE})")
    return path


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise PopulationError(f"{path}: not a Parquet file ({exc})") from None


def _row_groups(persons: pq.ParquetFile, claims: pq.ParquetFile, persons_path: Path, claims_path: Path) -> bool:
    """True when the files pair their row groups (as written here); else claims are read whole, once."""
    if persons.num_row_groups == claims.num_row_groups:
        return True
    if persons.num_row_groups > 1:
        raise PopulationError(f"{claims_path}: {claims.num_row_groups} row groups but {persons_path} has "
                              f"{persons.num_row_groups}: chunked reading needs one claims row group per persons "
                              "row group")
    return False


def _batches(persons: pq.ParquetFile, chunk_persons: int) -> Iterator[list[int]]:
    batch: list[int] = []
    count = 0
    for group in range(persons.num_row_groups):
        batch.append(group)
        count += persons.metadata.row_group(group).num_rows
        if count >= chunk_persons:
            yield batch
            batch, count = [], 0
    if batch or not persons.num_row_groups:
        yield batch


class _Names:
    """Name tables that grow as values are met (seeded from the writer's metadata, so codes are stable)."""

    def __init__(self, identities: Sequence[str], diseases: Sequence[str], regions: Sequence[str],
                 aliases: Mapping[str, str]) -> None:
        self.aliases = aliases
        self.identities = dict.fromkeys([*V.IDENTITIES, *identities])
        self.diseases = dict.fromkeys(aliases.get(d, d) for d in diseases)
        self.regions = dict.fromkeys(regions)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, object], aliases: Mapping[str, str]) -> _Names:
        def names(key: str) -> list[str]:
            value = meta.get(key)
            return [str(v) for v in value] if isinstance(value, list) else []

        return cls(names("identity_names"), names("disease_names"), names("region_names"), aliases)

    def disease(self, token: str) -> int:
        return self.code(self.diseases, self.aliases.get(token, token))

    @staticmethod
    def code(table: dict[str, None], name: str) -> int:
        table.setdefault(name, None)
        return list(table).index(name)


def _columns(persons: pa.Table, claims: pa.Table, names: _Names, persons_path: Path, claims_path: Path) -> Columns:
    person_ids = _required(persons, "person_id", persons_path)
    p = _persons(persons, names, persons_path)
    c = _claims(claims, person_ids, names, claims_path)
    return Columns(p, c, tuple(names.identities), tuple(names.diseases))


def _required(table: pa.Table, name: str, path: Path) -> pa.Array:
    if name not in table.column_names:
        raise PopulationError(f"{path}: missing required column `{name}`")
    column = table.column(name).combine_chunks()
    if column.null_count:
        raise PopulationError(f"{path}: column `{name}` has empty values")
    return column


def _optional(table: pa.Table, name: str) -> pa.Array | None:
    return table.column(name).combine_chunks() if name in table.column_names else None


def _persons(table: pa.Table, names: _Names, path: Path) -> Persons:
    n = table.num_rows
    grant_person, grant_identity, grant_since = _grants(_optional(table, "identities"), n, names, path)
    chronic_person, chronic_disease = _sets(_optional(table, "chronic"), n, names)
    region = _optional(table, "region")
    return Persons(
        person_id=_id_strings(_required(table, "person_id", path)),
        scheme=_choice(_required(table, "scheme", path), SCHEMES, path, "scheme").astype(np.int8),
        retired=_bools(table, "retired", False, path), age=_ints(table, "age", -1, path).astype(np.int16),
        sex=_sex(_optional(table, "sex"), n, path),
        region=_growing_codes(region, n, names.regions), region_names=tuple(names.regions),
        resettled=_bools(table, "resettled", False, path),
        grant_person=grant_person, grant_identity=grant_identity, grant_since=grant_since,
        chronic_person=chronic_person, chronic_disease=chronic_disease)


def _claims(table: pa.Table, person_ids: pa.Array, names: _Names, path: Path) -> Claims:
    person = pc.index_in(_required(table, "person_id", path), value_set=person_ids)
    if person.null_count:
        missing = pc.filter(table.column("person_id"), pc.is_null(person))[0]
        raise PopulationError(f"{path}: claim person_id `{missing}` is not among the persons")
    disease_claim, disease_code = _sets(_optional(table, "diseases"), table.num_rows, names)
    return Claims(
        claim_id=_id_strings(_required(table, "claim_id", path)),
        person=person.to_numpy().astype(np.int32), day=_days(_required(table, "date", path), path),
        kind=_choice(_required(table, "kind", path), KINDS, path, "kind").astype(np.int8),
        level=_level(_required(table, "hospital_level", path), path),
        **{name: _money(table, name, path) for name in CLAIM_MONEY},  # type: ignore[arg-type]
        bed_days=_ints(table, "bed_days", 0, path).astype(np.int32),
        **{name: _bools(table, name, name in _TRUE_BY_DEFAULT, path)  # type: ignore[arg-type]
           for name in CLAIM_BOOLS},
        designation=_designation(_optional(table, "designation"), table.num_rows, path),
        disease_claim=disease_claim, disease_code=disease_code)


_TRUE_BY_DEFAULT = ("in_province", "in_pooling_area", "direct_settlement")


def _id_strings(column: pa.Array) -> Array:
    """Ids as a NumPy str array; fixed-width ASCII ids (as written here) without a Python object per row."""
    column = column.cast(pa.string())
    offsets = np.frombuffer(column.buffers()[1], np.int32, len(column) + 1, column.offset * 4)
    widths = np.diff(offsets)
    data = column.buffers()[2]
    if len(column) and (widths == widths[0]).all() and widths[0] > 0 and data is not None:
        raw = np.frombuffer(data, np.uint8, int(offsets[-1] - offsets[0]), int(offsets[0]))
        if raw.max() < 128:
            return as_str(raw.reshape(len(column), int(widths[0])).astype(np.uint32))
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=str)


def _encoded(column: pa.Array | None, n: int) -> tuple[Array, list[str]]:
    """Dictionary codes (-1 for null or empty) and the distinct texts."""
    if column is None:
        return np.full(n, -1, np.int64), []
    encoded = pc.dictionary_encode(column.cast(pa.string()))
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
    values = [str(v).strip() for v in encoded.dictionary.to_pylist()]
    empty = np.array([not v for v in values] + [True], bool)
    return np.where(empty[codes], -1, codes), values


def _choice(column: pa.Array, allowed: Sequence[str], path: Path, name: str) -> Array:
    codes, values = _encoded(column, len(column))
    table = np.array([allowed.index(v) if v in allowed else -1 for v in values] + [-1], np.int64)
    bad = [v for v in values if v not in allowed]
    if bad or (codes < 0).any():
        shown = repr(bad[0]) if bad else "an empty value"
        raise PopulationError(f"{path}: column `{name}`: {shown} is not one of: {', '.join(allowed)}")
    return table[codes]


def _designation(column: pa.Array | None, n: int, path: Path) -> Array:
    codes, values = _encoded(column, n)
    table = np.array([DESIGNATIONS.index(v) if v in DESIGNATIONS else -1 for v in values] + [0], np.int64)
    if (table < 0).any():
        bad = next(v for v in values if v not in DESIGNATIONS)
        raise PopulationError(f"{path}: column `designation`: {bad!r} is not one of: {', '.join(DESIGNATIONS)}")
    return table[codes].astype(np.int8)


def _sex(column: pa.Array | None, n: int, path: Path) -> Array:
    codes, values = _encoded(column, n)
    table = np.array([SEXES.index(v) if v in SEXES else -1 for v in values] + [0], np.int64)
    if (table < 0).any():
        raise PopulationError(f"{path}: column `sex`: values must be F, M or empty")
    return table[codes].astype(np.int8)


def _growing_codes(column: pa.Array | None, n: int, names: dict[str, None]) -> Array:
    codes, values = _encoded(column, n)
    table = np.array([_Names.code(names, v) for v in values] + [-1], np.int64)
    return table[codes].astype(np.int32)


def _bools(table: pa.Table, name: str, default: bool, path: Path) -> Array:
    column = _optional(table, name)
    if column is None:
        return np.full(table.num_rows, default)
    if not pa.types.is_boolean(column.type):
        column = _bool_texts(column, name, path)
    return np.asarray(column.fill_null(default).to_numpy(zero_copy_only=False), bool)


def _bool_texts(column: pa.Array, name: str, path: Path) -> pa.Array:
    texts = pc.utf8_lower(pc.utf8_trim_whitespace(column.cast(pa.string())))
    ok = pc.is_in(texts, value_set=pa.array(["true", "false", "1", "0", ""]))
    if not pc.all(pc.or_kleene(ok, pc.is_null(texts))).as_py():
        raise PopulationError(f"{path}: column `{name}`: values must be true, false, 1 or 0")
    return pc.is_in(texts, value_set=pa.array(["true", "1"])).cast(pa.bool_())


def _ints(table: pa.Table, name: str, default: int, path: Path) -> Array:
    column = _optional(table, name)
    if column is None:
        return np.full(table.num_rows, default, np.int64)
    try:
        column = column.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise PopulationError(f"{path}: column `{name}` must hold whole numbers") from None
    return np.asarray(column.fill_null(default).to_numpy(), np.int64)


def _level(column: pa.Array, path: Path) -> Array:
    try:
        levels = np.asarray(column.cast(pa.int64()).to_numpy(), np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        levels = np.zeros(1, np.int64)
    if len(levels) and (levels.min() < 1 or levels.max() > 3):
        raise PopulationError(f"{path}: column `hospital_level` must be 1, 2 or 3")
    return levels.astype(np.int8)


def _days(column: pa.Array, path: Path) -> Array:
    try:
        dates = column.cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise PopulationError(f"{path}: column `date` must hold dates (YYYY-MM-DD)") from None
    return np.asarray(dates.cast(pa.int32()).to_numpy(), np.int32)


def _money(table: pa.Table, name: str, path: Path) -> Array:
    """A money column as int64 fen, exactly (decimal with at most two decimals)."""
    column = _optional(table, name)
    if column is None:
        return np.zeros(table.num_rows, np.int64)
    if name in ("total_cost", "eligible_cost") and column.null_count:
        raise PopulationError(f"{path}: column `{name}` has empty values")
    try:
        exact = column.cast(MONEY)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PopulationError(f"{path}: column `{name}`: not an amount with at most two decimals ({exc})") from None
    exact = exact.fill_null(pa.scalar(0, MONEY)) if exact.null_count else exact
    words = np.frombuffer(exact.buffers()[1], "<i8", 2 * len(exact), exact.offset * 16).reshape(-1, 2)
    if len(words) and ((words[:, 1] != words[:, 0] >> 63).any() or (words[:, 0] < 0).any()):
        raise PopulationError(f"{path}: column `{name}`: amounts must be zero or more and below 10^16 fen")
    return words[:, 0].astype(np.int64)


def _sets(column: pa.Array | None, n: int, names: _Names) -> tuple[Array, Array]:
    """`;`-separated diseases per row -> (row, code) pairs sorted by row; each distinct text split once."""
    return _expand_texts(column, n, lambda text: [(names.disease(t), 0) for t in _tokens(text)])[:2]


def _grants(column: pa.Array | None, n: int, names: _Names, path: Path) -> tuple[Array, Array, Array]:
    def parse(text: str) -> list[tuple[int, int]]:
        return [_grant(token, names, path) for token in _tokens(text)]

    rows, identity, since = _expand_texts(column, n, parse)
    return rows, identity.astype(np.int16), since.astype(np.int32)


def _tokens(text: str) -> list[str]:
    return [t.strip() for t in text.split(";") if t.strip()]


def _grant(token: str, names: _Names, path: Path) -> tuple[int, int]:
    name, at, since = token.partition("@")
    code = _Names.code(names.identities, name.strip())
    if not at:
        return code, NO_DATE
    try:
        return code, datetime.date.fromisoformat(since.strip()).toordinal() - EPOCH_ORDINAL
    except ValueError:
        raise PopulationError(f"{path}: column `identities`: {token!r} has a bad date (id@YYYY-MM-DD)") from None


def _expand_texts(column: pa.Array | None, n: int,
                  parse: Callable[[str], list[tuple[int, int]]]) -> tuple[Array, Array, Array]:
    """Parse each distinct text once into (code, extra) items, then give every row its items, vectorised."""
    codes, values = _encoded(column, n)
    parsed = [parse(v) for v in values]
    lengths = np.array([len(items) for items in parsed] + [0], np.int64)
    flat = np.array([item for items in parsed for item in items] or np.zeros((0, 2)), np.int64).reshape(-1, 2)
    starts = np.cumsum(lengths) - lengths
    counts = lengths[codes]
    rows, position = _positions(counts)
    items = flat[starts[codes][rows] + position]
    return rows.astype(np.int32), items[:, 0].astype(np.int32), items[:, 1].astype(np.int64)
