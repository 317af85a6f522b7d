"""Real populations (Parquet, CSV or JSON Lines) validated as policy_lang.data does and streamed as Columns."""

# How it works (iter_columns):
# * Persons are read whole (ids -> rows); claims are read in batches, each validated, mapped to its person,
#   split by chunk (person row // chunk_persons) and spilled to one temporary Arrow IPC stream per chunk;
#   claim ids go to hash buckets on disk so duplicates are found with bounded memory. Only when both files
#   are valid are the chunks yielded, in order, each with its persons and their claims (cut further when
#   they hold more than chunk_claims claims).
# * Validation is vectorised (pyarrow.compute / NumPy; `;`-lists and identity grants are parsed once per
#   distinct text). It flags exactly the records policy_lang.data rejects; the first one is then read again
#   and handed to policy_lang.data's own record check, so the message, the column and the precedence of
#   faults within a record are the ones `polc eval` gives. Text files are first decoded whole, strictly
#   (policy_lang.data does so too: a bad byte is the first fault wherever it is).
# * Positions: `path:line:column` as in policy_lang.data. CSV and JSON Lines give the physical line a
#   record starts on (the header is line 1, so the first data row is line 2; a quoted field spanning lines
#   counts all its lines, and blank lines count too) and the 1-based column of the field (of the key, in
#   JSON Lines). Parquet gives `path:row:column`: the 1-based row of the file (no header: the first row is
#   1) and the 1-based index of the column in its schema; a fault of the whole file (not Parquet, missing
#   columns) is at 1:1, as in policy_lang.data. Messages keep policy_lang.data's words ("first on line N"
#   names a row of a Parquet file).

from __future__ import annotations

import codecs
import contextlib
import csv
import ctypes
import ctypes.util
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Final, NoReturn, Protocol

import attrs
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from policy_lang import data as D
from policy_lang import vocabulary as V
from policy_lang.columns import (
    CLAIM_BOOLS,
    CLAIM_MONEY,
    DESIGNATIONS,
    KINDS,
    NO_DATE,
    SCHEMES,
    Claims,
    Columns,
    Extra,
    Persons,
    day_number,
)
from policy_lang.graph import ColumnInfo

Array = npt.NDArray[Any]
Notify = Callable[[str], None]

FORMATS: Final = (".parquet", ".csv", ".jsonl")
PERSON_COLUMNS: Final = ("person_id", "scheme", "retired", "age", "sex", "identities", "region", "chronic",
                         "resettled")
CLAIM_COLUMNS: Final = ("claim_id", "person_id", "date", "kind", "hospital_level", "total_cost", "eligible_cost",
                        "grassroots", "tcm_institution", "designation", "diseases", "referred", "in_province",
                        "in_pooling_area", "direct_settlement", "emergency", "pure_tcm", "tcm_cost",
                        "material_over_limit", "bed_days")
TOKEN_COLUMNS: Final = frozenset({"identities", "chronic", "diseases"})

_BATCH_ROWS: Final = 32_768  # records per batch read by Python (JSON Lines, CSV fallback, Parquet)
_CSV_BLOCK: Final = 1 << 19  # bytes per pyarrow CSV block (its streaming reader holds ~40 blocks)
_TEXT_BLOCK: Final = 1 << 20  # bytes read at a time when decoding text in Python
_BUCKET_BYTES: Final = 1 << 24  # input bytes per claim-id bucket (bounds the duplicate check's memory)
_MAX_BUCKETS: Final = 4096
_CACHE_LIMIT: Final = 200_000  # distinct `;`-list texts remembered between batches
_MAX_FEN: Final = 100_000_000_000  # 1e9 yuan, policy_lang.data's maximum amount
_INT_BOUND: Final = 10**15
_MAX_AGE: Final = 150
_MAX_BED_DAYS: Final = 100_000
_MIN_DAY: Final = -719_162  # 0001-01-01
_MAX_DAY: Final = 2_932_896  # 9999-12-31
# Python's str.strip() set (str.isspace), so values are trimmed exactly as policy_lang.data trims them.
WHITESPACE: Final = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                     "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_INT_RE: Final = r"^-?[0-9]+$"
_MONEY_RE: Final = r"^[0-9]+(\.[0-9]{1,2})?$"
_FLAG_WORDS: Final = pa.array(["true", "1", "false", "0", ""])
_ASCII_PROBE: Final = "\n\r\t ,;\"'@-.:{}[]0123456789AZaz_"


class PopulationFilesError(ValueError):
    """A directory without exactly one persons file and one claims file; the message says which."""


# ---- the public entry ---------------------------------------------------------------------------------------------
def population_files(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The persons and claims files of a population directory (one of FORMATS each)."""
    return _entity_file(Path(directory), "persons"), _entity_file(Path(directory), "claims")


def iter_columns(directory: str | os.PathLike[str], vocab: D.DataVocabulary, encoding: str = "utf-8",
                 chunk_persons: int = 100_000, notify: Notify | None = None,
                 chunk_claims: int | None = None) -> Generator[Columns, None, None]:
    """The population in chunks of consecutive persons, each with its persons' claims in file order: blocks
    of `chunk_persons` persons (the last may be smaller; at least one chunk), each cut further where its
    persons have more than `chunk_claims` claims (a person's claims stay together), as the memory of an
    evaluation grows with the claims it holds. Raises policy_lang.data.DataError on the first fault,
    before any chunk is yielded; the temporary files are removed at the end and on errors."""
    if chunk_persons < 1 or (chunk_claims is not None and chunk_claims < 1):
        raise ValueError("chunk sizes must be positive")
    persons_path, claims_path = population_files(directory)
    ctx = _Context(vocab)
    with tempfile.TemporaryDirectory(prefix="polc-population-") as temp:
        people = _read_persons(_open_source(persons_path, encoding, ctx.spec("person"), notify), ctx)
        _release()
        chunks = max(1, math.ceil(people.n / chunk_persons))
        spill = _Spill(Path(temp), "chunk", _claim_schema(ctx))
        buckets = _Buckets(Path(temp), _bucket_count(claims_path))
        try:
            claims = _open_source(claims_path, encoding, ctx.spec("claim"), notify)
            _read_claims(claims, people, ctx, spill, buckets, chunk_persons)
        finally:
            spill.close()
            buckets.spill.close()
        for k in range(chunks):
            _release()
            low, high = k * chunk_persons, min(people.n, (k + 1) * chunk_persons)
            for begin, end, claims_table in _split(low, high, spill.read(k), chunk_claims):
                yield _chunk(people, begin, end, claims_table, ctx)


def _release() -> None:
    """Hand freed memory back to the system: Arrow's allocator and glibc's keep it otherwise, and the peaks
    of reading persons, claims and each chunk would add up."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM: Final = _malloc_trim()


def _entity_file(directory: Path, stem: str) -> Path:
    found = [directory / f"{stem}{suffix}" for suffix in FORMATS if (directory / f"{stem}{suffix}").is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        names = ", ".join(f"{stem}{suffix}" for suffix in FORMATS)
        raise PopulationFilesError(f"{directory}: no {stem} file (expected one of {names})")
    raise PopulationFilesError(f"{directory}: {' and '.join(p.name for p in found)} both exist: keep one")


def _bucket_count(path: Path) -> int:
    return max(1, min(_MAX_BUCKETS, math.ceil(path.stat().st_size / _BUCKET_BYTES)))


# ---- what a file must hold ----------------------------------------------------------------------------------------
@attrs.frozen
class _Spec:
    """The columns of one entity: required, read (standard and declared), flags and `;`-lists."""

    entity: str
    required: tuple[str, ...]
    names: tuple[str, ...]
    flags: frozenset[str]
    declared: tuple[ColumnInfo, ...]

    def kind(self, name: str) -> str:
        return "flag" if name in self.flags else "tokens" if name in TOKEN_COLUMNS else "text"


def _make_spec(entity: str, vocab: D.DataVocabulary) -> _Spec:
    person = entity == "person"
    standard = D._PERSON_FIELDS if person else D._CLAIM_FIELDS
    declared = tuple(d for d in vocab.columns if d.entity == entity and d.name not in standard)
    base = PERSON_COLUMNS if person else CLAIM_COLUMNS
    flags = {"retired", "resettled"} if person else set(CLAIM_BOOLS)
    flags |= {d.name for d in declared if d.type == "bool"}
    required = V.PERSON_COLUMNS_REQUIRED if person else V.CLAIM_COLUMNS_REQUIRED
    names = tuple(dict.fromkeys([*base, *(d.name for d in declared)]))
    return _Spec(entity, tuple(required), names, frozenset(flags), declared)


# ---- the parsing context: name tables and caches ------------------------------------------------------------------
Items = list[tuple[int, int]]


class _Context:
    """The vocabulary, the code tables of the Columns, and the parse caches of `;`-list texts."""

    def __init__(self, vocab: D.DataVocabulary) -> None:
        self.vocab = vocab
        self.identity_names = tuple(dict.fromkeys([*V.IDENTITIES, *sorted(vocab.identities)]))
        self.disease_names = tuple(sorted(set(vocab.diseases.values())))
        self.identity_code = {name: i for i, name in enumerate(self.identity_names)}
        self.disease_code = {name: i for i, name in enumerate(self.disease_names)}
        self.regions: dict[str, int] = {}
        self.texts: dict[str, dict[str, int]] = {}  # declared person text columns: value -> code
        self._specs = {entity: _make_spec(entity, vocab) for entity in ("person", "claim")}
        self._cache: dict[tuple[str, str], Items | None] = {}

    def spec(self, entity: str) -> _Spec:
        return self._specs[entity]

    def items(self, name: str, text: str) -> Items | None:
        """The parsed `;`-list (None: policy_lang.data rejects it), remembered by text."""
        key = (name, text)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = self._parse(name, text)
        return self._cache[key]

    def _parse(self, name: str, text: str) -> Items | None:
        row = D._Row("", 0, {name: text}, {})
        try:
            if name == "identities":
                return [(self.identity_code[g.identity], NO_DATE if g.since is None else day_number(g.since))
                        for g in D._grants(row, self.vocab)]
            return [(self.disease_code[d], 0) for d in sorted(D._diseases(row, name, self.vocab))]
        except D.DataError:
            return None


# ---- decoding text ------------------------------------------------------------------------------------------------
def _codec(path: str, encoding: str) -> str:
    """The codec name for `encoding`; DataError if unknown or not ASCII-compatible (needed to stream)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise D.DataError(path, 1, 1, D._msg("unknown_encoding", encoding=encoding)) from None
    name = "utf-8" if name == "utf-8-sig" else name
    try:
        compatible = _ASCII_PROBE.encode(name) == _ASCII_PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        compatible = False
    if not compatible:
        raise D.DataError(path, 1, 1, f"encoding {encoding!r} is not supported for data files: use an "
                                      "ASCII-compatible encoding such as utf-8 or gbk")
    return name


@contextlib.contextmanager
def _binary(path: str) -> Iterator[BinaryIO]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise D.DataError(path, 1, 1, D._msg("cannot_read", reason=exc.strerror or exc)) from None
    with handle:
        yield handle


def _raw_pieces(handle: BinaryIO) -> Iterator[bytes]:
    """The bytes in pieces that end just after a newline (the last piece may not)."""
    carry = b""
    while block := handle.read(_TEXT_BLOCK):
        data = carry + block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]
    if carry:
        yield carry


def _pieces(path: str, codec: str, hint: bool = True) -> Iterator[str]:
    """The file decoded strictly, piece by piece (whole lines); a bad byte raises DataError with its line
    and byte column as policy_lang.data reports it. A UTF-8 byte-order mark is skipped."""
    for _raw, text in _decoded(path, codec, hint):
        yield text


def _decoded(path: str, codec: str, hint: bool = True) -> Iterator[tuple[bytes, str]]:
    line, first = 1, True
    with _binary(path) as handle:
        for raw in _raw_pieces(handle):
            skip = len(codecs.BOM_UTF8) if first and codec == "utf-8" and raw.startswith(codecs.BOM_UTF8) else 0
            first = False
            try:
                text = raw[skip:].decode(codec)
            except UnicodeDecodeError as exc:
                raise _decode_error(path, raw, skip + exc.start, line, codec, hint) from None
            line += raw.count(b"\n")
            yield raw, text


def _prescan(path: str, codec: str, quotes: bool) -> bool:
    """Decode the whole file (policy_lang.data does so before it reads a record: a bad byte is the first
    fault); with `quotes`, say whether some closing quote is followed by a character other than a comma,
    a quote or a line end, which Python's csv rejects and pyarrow's reader would accept."""
    parity, stray = 0, False
    for raw, _text in _decoded(path, codec):
        if quotes and not stray:
            stray, parity = _stray_quote(raw, parity)
    return stray


_AFTER_QUOTE: Final = np.frombuffer(b'",\r\n', np.uint8)


def _stray_quote(raw: bytes, parity: int) -> tuple[bool, int]:
    """Quotes counted from the start of the file: an even one closes a quoted field (or starts a doubled
    quote); is one followed by anything else than `"`, `,` or a line end? And the parity after `raw`."""
    if b'"' not in raw:
        return False, parity
    data = np.frombuffer(raw, np.uint8)
    quotes = np.flatnonzero(data == ord('"'))
    after = quotes[(np.arange(len(quotes)) + parity) % 2 == 1] + 1
    after = after[after < len(data)]
    return bool((~np.isin(data[after], _AFTER_QUOTE)).any()), (parity + len(quotes)) % 2


def _decode_error(path: str, raw: bytes, offset: int, line: int, codec: str, hint: bool) -> D.DataError:
    line += raw.count(b"\n", 0, offset)
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    name = "UTF-8" if codec == "utf-8" else codec
    message = D._msg("not_encoded", encoding=name, byte=raw[offset])
    other, key = ("gb18030", "gbk") if codec == "utf-8" else ("utf-8", "utf8")
    return D.DataError(path, line, column, message, D._hint(key) if hint and _decodes(path, other) else None)


def _decodes(path: str, codec: str) -> bool:
    try:
        for _ in _pieces(path, codec, hint=False):
            pass
    except D.DataError:
        return False
    return True


# ---- sources: a file read as batches of raw columns ---------------------------------------------------------------
@attrs.frozen(eq=False)
class _Batch:
    """Consecutive records of a file: raw columns by name (absent: not in the file) and records the format
    itself rejects (JSON values of the wrong kind)."""

    start: int  # index of the first record in the file (0-based, data records only)
    size: int
    columns: Mapping[str, Any]
    bad: Array | None = None


class _Source(Protocol):
    path: str
    spec: _Spec

    def batches(self) -> Iterator[_Batch]: ...

    def rows(self, indices: Collection[int]) -> dict[int, D._Row]:
        """The records at these indices as policy_lang.data reads them (may raise its DataError)."""
        ...


def _open_source(path: Path, encoding: str, spec: _Spec, notify: Notify | None) -> _Source:
    name = str(path)
    if path.suffix == ".parquet":
        return _ParquetSource(name, spec)
    codec = _codec(name, encoding)
    if codec != "utf-8" and notify is not None:
        notify(f"reading {path.name} as {codec.upper()}")
    stray_quote = _prescan(name, codec, quotes=path.suffix == ".csv")
    if path.suffix == ".csv":
        return _CsvSource(name, codec, spec, arrow=not stray_quote)
    return _JsonlSource(name, codec, spec)


def _strings(values: Sequence[object]) -> pa.Array:
    return pa.array(values, pa.string())


def _gather(rows: Sequence[D._Row], start: int, names: Iterable[str]) -> _Batch:
    columns = {name: _strings([_raw_text(r.values.get(name)) for r in rows]) for name in names}
    return _Batch(start, len(rows), columns)


def _raw_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class _CsvSource:
    """CSV through pyarrow's streaming reader (every column a string); when pyarrow stops (a malformed row)
    the rest is read record by record with Python's csv module as policy_lang.data reads it, up to the
    exact fault; so is the whole file when its quoting is one pyarrow reads more leniently than Python."""

    def __init__(self, path: str, codec: str, spec: _Spec, arrow: bool = True) -> None:
        self.path, self.codec, self.spec = path, codec, spec
        with contextlib.closing(self._lines()) as lines:
            reader = csv.reader(lines, strict=True)
            self.header = D._csv_header(path, reader, spec.required)
            self.arrow = arrow and reader.line_num == 1  # pyarrow skips the header as one line
        self.read = [name for name in dict.fromkeys(self.header) if name in spec.names]

    def batches(self) -> Iterator[_Batch]:
        done = 0
        if self.arrow:
            try:
                for batch in _merged(self._arrow()):
                    yield _Batch(done, batch.num_rows, self._columns(batch))
                    done += batch.num_rows
                return
            except (pa.ArrowException, UnicodeError):
                pass
        yield from _python_batches(self._records(), done, self.read)

    def rows(self, indices: Collection[int]) -> dict[int, D._Row]:
        return _pick(self._records(), indices)

    def _lines(self) -> Generator[str, None, None]:
        for piece in _pieces(self.path, self.codec):
            yield from io.StringIO(piece, newline="")

    def _arrow(self) -> Iterator[pa.RecordBatch]:
        names = [f"c{i}" for i in range(len(self.header))]
        read = pacsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK, skip_rows=1, column_names=names,
                                 encoding="utf8" if self.codec == "utf-8" else self.codec)
        parse = pacsv.ParseOptions(newlines_in_values=True)
        # only the columns read; no UTF-8 check: the pre-scan decoded every byte already
        convert = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False,
                                       quoted_strings_can_be_null=False, check_utf8=False,
                                       include_columns=[f"c{self.header.index(name)}" for name in self.read])
        yield from pacsv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=convert)

    def _columns(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        return dict(zip(self.read, batch.columns, strict=True))

    def _records(self) -> Iterator[D._Row]:
        """policy_lang.data's CSV records, streamed: header, blank lines skipped, field counts checked."""
        with contextlib.closing(self._lines()) as lines:
            reader = csv.reader(lines, strict=True)
            header = D._csv_header(self.path, reader, self.spec.required)
            positions = {name: i + 1 for i, name in enumerate(header) if name}
            while (record := D._next_record(self.path, reader)) is not None:
                line, fields = record
                if fields:
                    D._check_width(self.path, line, header, fields)
                    yield D._Row(self.path, line, dict(zip(header, fields, strict=True)), positions)


def _merged(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Consecutive small record batches joined into batches of about _BATCH_ROWS rows."""
    pending: list[pa.RecordBatch] = []
    for batch in batches:
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= _BATCH_ROWS:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
            pending = []
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _python_batches(records: Iterator[D._Row], skip: int, names: Sequence[str]) -> Iterator[_Batch]:
    """Records after the first `skip`, in batches; a DataError is raised after the records before it."""
    pending: list[D._Row] = []
    start, error = skip, None
    try:
        for index, row in enumerate(records):
            if index < skip:
                continue
            pending.append(row)
            if len(pending) == _BATCH_ROWS:
                yield _gather(pending, start, names)
                start, pending = start + len(pending), []
    except D.DataError as exc:
        error = exc
    if pending:
        yield _gather(pending, start, names)
    if error is not None:
        raise error


def _pick(records: Iterator[D._Row], indices: Collection[int]) -> dict[int, D._Row]:
    wanted, found = set(indices), {}
    for index, row in enumerate(records):
        if index in wanted:
            found[index] = row
            if len(found) == len(wanted):
                break
    return found


class _JsonlSource:
    """JSON Lines, line by line with Python's json (numbers kept exact); values become text as
    policy_lang.data reads them, and values it rejects (a list for a scalar, a boolean for an amount, …)
    mark their record."""

    def __init__(self, path: str, codec: str, spec: _Spec) -> None:
        self.path, self.codec, self.spec = path, codec, spec

    def batches(self) -> Iterator[_Batch]:
        pending: list[dict[str, object]] = []
        start = 0
        for number, line in self._lines():
            record = _json_record(line)
            if record is None:
                if pending:
                    yield self._batch(pending, start)
                _raise_json(self.path, number, line, self.spec)
            pending.append(record)
            if len(pending) == _BATCH_ROWS:
                yield self._batch(pending, start)
                start, pending = start + len(pending), []
        if pending:
            yield self._batch(pending, start)

    def rows(self, indices: Collection[int]) -> dict[int, D._Row]:
        wanted, found = set(indices), {}
        for index, (number, line) in enumerate(self._lines()):
            if index in wanted:
                found[index] = D._json_row(self.path, number, line, self.spec.required)
                if len(found) == len(wanted):
                    break
        return found

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of every non-blank line, numbered as policy_lang.data numbers them."""
        number = 0
        for piece in _pieces(self.path, self.codec):
            lines = piece.split("\n")
            if piece.endswith("\n"):
                lines.pop()
            for line in lines:
                number += 1
                if line.strip():
                    yield number, line

    def _batch(self, records: Sequence[Mapping[str, object]], start: int) -> _Batch:
        columns, bad = {}, np.zeros(len(records), bool)
        for name in self.spec.names:
            columns[name], wrong = _json_column([r.get(name) for r in records], self.spec.kind(name))
            bad |= wrong
        return _Batch(start, len(records), columns, bad)


def _json_record(line: str) -> dict[str, object] | None:
    """The object of one line; None when policy_lang.data rejects the line itself."""
    try:
        parsed = json.loads(line, parse_float=Decimal, parse_constant=D._reject_constant,
                            object_pairs_hook=D._JsonObject)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, D._JsonObject):
        return None
    record = dict(parsed)
    return record if len(record) == len(parsed) else None


def _raise_json(path: str, number: int, line: str, spec: _Spec) -> NoReturn:
    D._json_row(path, number, line, spec.required)  # raises policy_lang.data's error for this line
    raise D.DataError(path, number, 1, "this line cannot be read as a JSON Lines record")


def _json_column(values: Sequence[object], kind: str) -> tuple[pa.Array, Array]:
    if all(value is None or type(value) is str for value in values):
        return _strings(values), np.zeros(len(values), bool)
    texts = [_json_text(value, kind) for value in values]
    return _strings([t for t, _ in texts]), np.array([wrong for _, wrong in texts], bool)


def _json_text(value: object, kind: str) -> tuple[str | None, bool]:
    """A JSON value as the text policy_lang.data reads, and whether it rejects the value's kind."""
    if value is None or isinstance(value, str):
        return value, False
    if isinstance(value, bool):
        return ("true" if value else "false", False) if kind == "flag" else (None, True)
    if isinstance(value, int | Decimal):
        return str(value), False
    items = value if kind == "tokens" and isinstance(value, list) and not isinstance(value, D._JsonObject) else None
    if items is not None and all(isinstance(item, str) for item in items):
        return ";".join(items), False
    return None, True


class _ParquetSource:
    """Parquet, row group by row group: typed columns (bool, decimal, integer, date) as they are, every
    other scalar type as its text; list<string> for the `;`-list columns."""

    def __init__(self, path: str, spec: _Spec) -> None:
        self.path, self.spec = path, spec
        with self._open() as file:
            schema = file.schema_arrow
        names = [field.name.strip() for field in schema]
        _check_parquet_names(path, names, spec.required)
        self.fields = {name: i for i, name in enumerate(names) if name in spec.names}
        for name, i in self.fields.items():
            _check_parquet_type(path, name, i + 1, schema.field(i).type)

    def batches(self) -> Iterator[_Batch]:
        start = 0
        with self._open() as file:
            for batch in self._iter(file, start):
                yield _Batch(start, batch.num_rows, self._columns(batch))
                start += batch.num_rows

    def rows(self, indices: Collection[int]) -> dict[int, D._Row]:
        positions = {name: i + 1 for name, i in self.fields.items()}
        found = {}
        for batch in self.batches():
            for index in sorted(i for i in indices if batch.start <= i < batch.start + batch.size):
                values = {name: _render(column, index - batch.start) for name, column in batch.columns.items()}
                found[index] = D._Row(self.path, index + 1, values, positions)
        return found

    def _open(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.path)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError | PermissionError):
                raise D.DataError(self.path, 1, 1, D._msg("cannot_read", reason=exc.strerror or exc)) from None
            raise _not_parquet(self.path, exc) from None
        except pa.ArrowException as exc:
            raise _not_parquet(self.path, exc) from None

    def _iter(self, file: pq.ParquetFile, start: int) -> Iterator[pa.RecordBatch]:
        columns = [file.schema_arrow.field(i).name for i in self.fields.values()]
        batches = file.iter_batches(batch_size=_BATCH_ROWS, columns=columns, use_threads=False)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                raise D.DataError(self.path, start + 1, 1, f"not a valid Parquet file: cannot read the rows from "
                                                           f"row {start + 1} on ({exc})") from None
            start += batch.num_rows
            yield batch

    def _columns(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        out = {}
        for position, name in enumerate(self.fields):
            column = batch.column(position)
            out[name] = pc.binary_join(column, ";") if _is_list(column.type) else column
        return out


def _not_parquet(path: str, exc: Exception) -> D.DataError:
    return D.DataError(path, 1, 1, f"not a valid Parquet file ({exc})",
                       "the file may be truncated or not Parquet: CSV files end in .csv, JSON Lines in .jsonl")


def _check_parquet_names(path: str, names: Sequence[str], required: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names, start=1):
        if name in seen:
            raise D.DataError(path, 1, index, D._msg("duplicate_column", name=name, first=seen[name]))
        seen[name] = index
    D._check_required(path, 1, names, required)


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _check_parquet_type(path: str, name: str, column: int, kind: pa.DataType) -> None:
    if name in TOKEN_COLUMNS and _is_list(kind) and _is_text(kind.value_type):
        return
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    scalar = (_is_text(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
              or pa.types.is_decimal(kind) or pa.types.is_boolean(kind) or pa.types.is_date(kind)
              or pa.types.is_timestamp(kind) or pa.types.is_null(kind))
    if not scalar:
        lists = " or a list of strings" if name in TOKEN_COLUMNS else ""
        raise D.DataError(path, 1, column, f"{name}: a Parquet column of type {kind} cannot be read: use a "
                                           f"string, integer, decimal, boolean or date column{lists}")


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


# ---- values: the same text for validating and for messages --------------------------------------------------------
def _to_strings(column: pa.Array) -> pa.Array:
    """A column as text (nulls kept): decimals with trailing zeros beyond the fen dropped (1.500 -> 1.50)."""
    kind = column.type
    if pa.types.is_string(kind):
        return column
    text = column.cast(pa.string())
    if pa.types.is_decimal(kind):
        return pc.replace_substring_regex(text, r"^(-?[0-9]+\.[0-9]{2})0+$", r"\1")
    return text


def _render(column: pa.Array, index: int) -> str | None:
    value: str | None = _to_strings(column.slice(index, 1))[0].as_py()
    return value


def _text(column: pa.Array | None, n: int) -> pa.Array:
    """Trimmed text ("" for empty or absent), as policy_lang.data's row.text()."""
    if column is None:
        return pa.nulls(n, pa.string()).fill_null("")
    return pc.utf8_trim(_to_strings(column).fill_null(""), characters=WHITESPACE)


def _np(values: Any) -> Array:
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _mask(values: Any) -> Array:
    return np.asarray(_np(values.fill_null(False)), bool)


def _empty(text: pa.Array) -> Array:
    empty: Array = _np(pc.binary_length(text)) == 0
    return empty


def _matches(text: pa.Array, pattern: str) -> Array:
    return _mask(pc.match_substring_regex(text, pattern))


@attrs.frozen(eq=False)
class _Value:
    """A parsed column: values, which are empty, and which policy_lang.data rejects."""

    value: Array
    missing: Array
    bad: Array

    def required(self) -> Array:
        return self.bad | self.missing

    def default(self, default: Any) -> Array:
        return np.where(self.missing, default, self.value)


def _absent(n: int, dtype: Any) -> _Value:
    return _Value(np.zeros(n, dtype), np.ones(n, bool), np.zeros(n, bool))


def _flag(column: pa.Array | None, n: int) -> _Value:
    if column is None:
        return _absent(n, bool)
    if pa.types.is_boolean(column.type):
        return _Value(_mask(column), _mask(column.is_null()), np.zeros(n, bool))
    # ASCII lowering suffices: no other character lowers to a letter of "true" or "false"
    code = _np(pc.index_in(pc.ascii_lower(_text(column, n)), value_set=_FLAG_WORDS).fill_null(-1))
    return _Value((code >= 0) & (code <= 1), code == 4, code < 0)


def _choice(column: pa.Array | None, n: int, allowed: Sequence[str]) -> _Value:
    """Index into `allowed` (-1 when empty)."""
    if column is None:
        return _Value(np.full(n, -1, np.int64), np.ones(n, bool), np.zeros(n, bool))
    text = _text(column, n)
    code = _np(pc.index_in(text, value_set=pa.array(list(allowed), pa.string())).fill_null(-1)).astype(np.int64)
    missing = _empty(text)
    return _Value(code, missing, (code < 0) & ~missing)


def _integer(column: pa.Array | None, n: int, low: int, high: int) -> _Value:
    if column is None:
        return _absent(n, np.int64)
    if pa.types.is_integer(column.type) and not pa.types.is_uint64(column.type):
        missing = _mask(column.is_null())
        value = _np(column.cast(pa.int64()).fill_null(0)).astype(np.int64)
        return _Value(value, missing, ~missing & ((value < low) | (value > high)))
    text = _text(column, n)
    ok = _matches(text, _INT_RE)
    digits = pc.utf8_ltrim(text, characters="-0")
    short = ok & (_np(pc.utf8_length(digits)) <= 18)
    value = np.zeros(n, np.int64)
    if short.any():
        chosen = pc.filter(digits, pa.array(short))
        value[short] = _np(pc.if_else(pc.equal(chosen, ""), "0", chosen).cast(pa.int64()))
    value = np.where(_mask(pc.starts_with(text, "-")), -value, value)
    missing = _empty(text)
    return _Value(value, missing, ~missing & ~(short & (value >= low) & (value <= high)))


def _money(column: pa.Array | None, n: int) -> _Value:
    """Amounts in fen: at most two decimals, zero or more, at most 1e9 yuan (policy_lang.data.parse_money)."""
    if column is None:
        return _absent(n, np.int64)
    kind = column.type
    if pa.types.is_integer(kind) and not pa.types.is_uint64(kind):
        missing = _mask(column.is_null())
        yuan = _np(column.cast(pa.int64()).fill_null(0)).astype(np.int64)
        bad = ~missing & ((yuan < 0) | (yuan > _MAX_FEN // 100))
        return _Value(np.where(bad, 0, yuan) * 100, missing, bad)
    if pa.types.is_decimal128(kind):
        return _decimal_money(column)
    return _text_money(_text(column, n))


def _decimal_money(column: pa.Array) -> _Value:
    missing = _mask(column.is_null())
    fen_decimal = pc.cast(column, pa.decimal128(38, 2), safe=False)
    exact = _mask(pc.equal(pc.cast(fen_decimal, column.type, safe=False), column))
    fen, fits = _fen(fen_decimal)
    return _Value(fen, missing, ~missing & ~(exact & fits & (fen >= 0) & (fen <= _MAX_FEN)))


def _fen(decimals: pa.Array) -> tuple[Array, Array]:
    """decimal128(38, 2) -> int64 fen (the low word) and whether the value fits in it."""
    decimals = decimals.fill_null(pa.scalar(0, decimals.type)) if decimals.null_count else decimals
    words = np.frombuffer(decimals.buffers()[1], "<i8", 2 * len(decimals), decimals.offset * 16).reshape(-1, 2)
    return words[:, 0].astype(np.int64), words[:, 1] == words[:, 0] >> 63


def _text_money(text: pa.Array) -> _Value:
    n = len(text)
    ok = _matches(text, _MONEY_RE)
    long = ok & (_np(pc.binary_length(text)) > 30)
    if long.any():  # leading zeros beyond what decimal128 holds: 0000…0012.50 is 12.50
        trimmed = pc.binary_join_element_wise("0", pc.utf8_ltrim(text, characters="0"), "")
        text = pc.if_else(pa.array(long), trimmed, text)
        ok &= _np(pc.binary_length(text)) <= 30
    fen, fits = np.zeros(n, np.int64), np.zeros(n, bool)
    if ok.all():
        fen, fits = _fen(text.cast(pa.decimal128(38, 2)))
    elif ok.any():
        fen[ok], fits[ok] = _fen(pc.filter(text, pa.array(ok)).cast(pa.decimal128(38, 2)))
    missing = _empty(text)
    return _Value(fen, missing, ~missing & ~(ok & fits & (fen <= _MAX_FEN)))


def _date(column: pa.Array | None, n: int) -> _Value:
    """Day numbers of YYYY-MM-DD calendar dates (years 1 to 9999, as Python's datetime.date)."""
    if column is None:
        return _absent(n, np.int32)
    if pa.types.is_date32(column.type):
        missing = _mask(column.is_null())
        day = _np(column.cast(pa.int32()).fill_null(0)).astype(np.int64)
        return _Value(day.astype(np.int32), missing, ~missing & ((day < _MIN_DAY) | (day > _MAX_DAY)))
    text = _text(column, n)
    length = _np(pc.binary_length(text))
    ten = length == 10  # YYYY-MM-DD is 10 bytes
    day, real = np.zeros(n, np.int64), np.zeros(n, bool)
    if ten.all():
        day, real = _civil_days(text)
    elif ten.any():
        day[ten], real[ten] = _civil_days(pc.filter(text, pa.array(ten)))
    missing = length == 0
    return _Value(day.astype(np.int32), missing, ~missing & ~real)


_DASHES: Final = [4, 7]
_DIGITS: Final = [0, 1, 2, 3, 5, 6, 8, 9]


def _civil_days(text: pa.Array) -> tuple[Array, Array]:
    """For 10-byte texts: days since 1970-01-01 and whether the text is a YYYY-MM-DD calendar date
    (years 1 to 9999, as datetime.date), by H. Hinnant's days_from_civil."""
    offsets = np.frombuffer(text.buffers()[1], np.int32, len(text) + 1, text.offset * 4)
    raw = np.frombuffer(text.buffers()[2], np.uint8, 10 * len(text), int(offsets[0])).reshape(-1, 10)
    digits = raw[:, _DIGITS].astype(np.int64) - ord("0")
    shaped = ((digits >= 0) & (digits <= 9)).all(axis=1) & (raw[:, _DASHES] == ord("-")).all(axis=1)
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month, day = digits[:, 4] * 10 + digits[:, 5], digits[:, 6] * 10 + digits[:, 7]
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    lengths = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    lengths = lengths + (leap & (month == 2))
    real = shaped & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= lengths)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return np.where(real, era * 146_097 + doe - 719_468, 0), real


def _expand(text: pa.Array, parse: Callable[[str], Items | None]) -> tuple[Array, Array, Array, Array]:
    """Parse each distinct `;`-list text once: (rejected rows, item rows, item codes, item extras)."""
    encoded = pc.dictionary_encode(text)
    codes = _np(encoded.indices).astype(np.int64)
    parsed = [parse(value) for value in encoded.dictionary.to_pylist()]
    rejected = np.array([items is None for items in parsed] + [False], bool)
    lengths = np.array([len(items or ()) for items in parsed] + [0], np.int64)
    flat = np.array([item for items in parsed for item in items or ()] or np.zeros((0, 2)), np.int64).reshape(-1, 2)
    counts = lengths[codes]
    rows = np.repeat(np.arange(len(codes)), counts)
    within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    items = flat[(np.cumsum(lengths) - lengths)[codes][rows] + within]
    return rejected[codes], rows.astype(np.int32), items[:, 0], items[:, 1]


def _codes(text: pa.Array, table: dict[str, int]) -> Array:
    """Codes of the texts in a growing name table; -1 for empty."""
    encoded = pc.dictionary_encode(text)
    mapping = np.array([table.setdefault(v, len(table)) if v else -1
                        for v in encoded.dictionary.to_pylist()] + [-1], np.int64)
    return mapping[_np(encoded.indices).astype(np.int64)]


def _declared(batch: _Batch, decl: ColumnInfo) -> _Value:
    """A declared bool, int (±1e15) or money (fen) column; empty values are 0 / false."""
    column, n = batch.columns.get(decl.name), batch.size
    if decl.type == "bool":
        parsed = _flag(column, n)
    elif decl.type == "int":
        parsed = _integer(column, n, -_INT_BOUND, _INT_BOUND)
    else:
        parsed = _money(column, n)
    return _Value(np.where(parsed.missing, 0, parsed.value), parsed.missing, parsed.bad)


# ---- persons ------------------------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class _PersonPart:
    """The validated persons of one batch (grant and chronic rows are file rows)."""

    ids: pa.Array
    fields: Mapping[str, Array]  # scheme, retired, age, sex, region, resettled
    grants: tuple[Array, Array, Array]
    chronic: tuple[Array, Array]
    extra: Mapping[str, tuple[Array, Array]]  # name -> (values, missing)


def _person_part(batch: _Batch, ctx: _Context) -> tuple[_PersonPart, Array]:
    col, n = batch.columns.get, batch.size
    ids = _text(col("person_id"), n)
    scheme, sex = _choice(col("scheme"), n, SCHEMES), _choice(col("sex"), n, V.SEXES)
    retired, resettled = _flag(col("retired"), n), _flag(col("resettled"), n)
    age = _integer(col("age"), n, 0, _MAX_AGE)
    grants_bad, g_rows, g_ident, g_since = _expand(_text(col("identities"), n),
                                                   lambda t: ctx.items("identities", t))
    chronic_bad, c_rows, c_codes, _ = _expand(_text(col("chronic"), n), lambda t: ctx.items("chronic", t))
    extra, extra_bad = _person_extra(batch, ctx)
    bad = (_empty(ids) | scheme.required() | retired.bad | age.bad | sex.bad | grants_bad | chronic_bad
           | resettled.bad | extra_bad | _format_bad(batch))
    fields = {"scheme": scheme.value.astype(np.int8), "retired": retired.default(False),
              "age": age.default(-1).astype(np.int16), "sex": (sex.value + 1).astype(np.int8),
              "region": _codes(_text(col("region"), n), ctx.regions).astype(np.int32),
              "resettled": resettled.default(False)}
    start = batch.start
    part = _PersonPart(ids, fields, (g_rows + start, g_ident.astype(np.int16), g_since.astype(np.int32)),
                       (c_rows + start, c_codes.astype(np.int32)), extra)
    return part, bad


def _format_bad(batch: _Batch) -> Array:
    return batch.bad if batch.bad is not None else np.zeros(batch.size, bool)


def _person_extra(batch: _Batch, ctx: _Context) -> tuple[dict[str, tuple[Array, Array]], Array]:
    """Declared person columns: (values, missing); text as codes into ctx.texts."""
    out, bad = {}, np.zeros(batch.size, bool)
    for decl in ctx.spec("person").declared:
        if decl.type == "text":
            text = _text(batch.columns.get(decl.name), batch.size)
            out[decl.name] = (_codes(text, ctx.texts.setdefault(decl.name, {})), _empty(text))
            continue
        parsed = _declared(batch, decl)
        out[decl.name] = (parsed.value, parsed.missing)
        bad |= parsed.bad
    return out, bad


@attrs.frozen(eq=False)
class _People:
    """Every person, validated: ids, their hashes sorted (for look-ups) and the Persons fields."""

    ids: pa.Array
    hashes: Array  # sorted string_hash of the ids
    order: Array  # sorted position -> file row
    fields: Mapping[str, Array]
    grants: tuple[Array, Array, Array]
    chronic: tuple[Array, Array]
    extra: Mapping[str, tuple[Array, Array]]

    @property
    def n(self) -> int:
        return len(self.ids)

    def lookup(self, keys: pa.Array, hashes: Array) -> tuple[Array, Array]:
        """(row, found) of each person id, given the ids' string_hash."""
        if self.n == 0:
            return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
        needles = np.argsort(hashes)
        position = np.empty(len(hashes), np.int64)
        position[needles] = np.searchsorted(self.hashes, hashes[needles])
        position = np.minimum(position, self.n - 1)
        row = self.order[position]
        found = (self.hashes[position] == hashes) & _mask(pc.equal(self.ids.take(pa.array(row)), keys))
        for i in np.flatnonzero((self.hashes[position] == hashes) & ~found):  # another id, same hash
            row[i], found[i] = self._exact(keys[i].as_py(), hashes[i])
        return row, found

    def _exact(self, key: str, hashed: np.uint64) -> tuple[int, bool]:
        low, high = int(np.searchsorted(self.hashes, hashed, "left")), int(np.searchsorted(self.hashes, hashed, "right"))
        for row in self.order[low:high]:
            if self.ids[int(row)].as_py() == key:
                return int(row), True
        return 0, False


def _read_persons(source: _Source, ctx: _Context) -> _People:
    parts: list[_PersonPart] = []

    def fault(exc: D.DataError) -> NoReturn:  # a malformed record: an earlier duplicate comes first
        ids = _concat_ids(parts)
        duplicate = _duplicates(ids, string_hash(ids), np.arange(len(ids)))
        if duplicate is not None:
            _raise_fault(source, ctx, duplicate[0], duplicate, "person_id")
        raise exc

    batches = source.batches()
    while (batch := _next_batch(batches, fault)) is not None:
        part, bad = _person_part(batch, ctx)
        parts.append(part)
        if bad.any():
            _person_fault(source, ctx, _concat_ids(parts), batch.start + int(np.argmax(bad)))
    ids = _concat_ids(parts)
    hashes = string_hash(ids)
    duplicate = _duplicates(ids, hashes, np.arange(len(ids)))
    if duplicate is not None:
        _raise_fault(source, ctx, duplicate[0], duplicate, "person_id")
    order = np.argsort(hashes, kind="stable")
    return _People(ids, hashes[order], order, _concat_fields(parts), _concat_items(parts, "grants"),
                   _concat_items(parts, "chronic"), _concat_extra(parts))


def _next_batch(batches: Iterator[_Batch], fault: Callable[[D.DataError], NoReturn]) -> _Batch | None:
    """The next batch; None at the end; a DataError of the file itself goes to `fault`."""
    _release()
    try:
        return next(batches)
    except StopIteration:
        return None
    except D.DataError as exc:
        fault(exc)


def _concat_ids(parts: Sequence[_PersonPart]) -> pa.Array:
    return pa.chunked_array([p.ids for p in parts], pa.string()).combine_chunks()


def _concat_fields(parts: Sequence[_PersonPart]) -> dict[str, Array]:
    names = ("scheme", "retired", "age", "sex", "region", "resettled")
    dtypes = (np.int8, bool, np.int16, np.int8, np.int32, bool)
    return {name: np.concatenate([p.fields[name] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)
            for name, dtype in zip(names, dtypes, strict=True)}


def _concat_items(parts: Sequence[_PersonPart], name: str) -> Any:
    dtypes = (np.int32, np.int16, np.int32) if name == "grants" else (np.int32, np.int32)
    return tuple(np.concatenate([getattr(p, name)[i] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)
                 for i, dtype in enumerate(dtypes))


def _concat_extra(parts: Sequence[_PersonPart]) -> dict[str, tuple[Array, Array]]:
    names = parts[0].extra if parts else {}
    return {name: (np.concatenate([p.extra[name][0] for p in parts]),
                   np.concatenate([p.extra[name][1] for p in parts])) for name in names}


def _person_fault(source: _Source, ctx: _Context, ids: pa.Array, row: int) -> NoReturn:
    """Raise policy_lang.data's error for the first faulty person at or before `row`."""
    head = ids.slice(0, min(len(ids), row + 1))
    _raise_fault(source, ctx, row, _duplicates(head, string_hash(head), np.arange(len(head))), "person_id")


# ---- duplicates ---------------------------------------------------------------------------------------------------
def _first_duplicate(sorted_ids: pa.Array, rows: Array) -> tuple[int, int] | None:
    """(row, first row of its id) of the earliest row repeating an earlier id, given ids sorted by (id, row)."""
    if len(sorted_ids) < 2:
        return None
    new = np.ones(len(sorted_ids), bool)
    new[1:] = ~_mask(pc.equal(sorted_ids.slice(1), sorted_ids.slice(0, len(sorted_ids) - 1)))
    if new.all():
        return None
    group_first = np.maximum.accumulate(np.where(new, np.arange(len(new)), 0))
    repeats = np.flatnonzero(~new)
    earliest = repeats[np.argmin(rows[repeats])]
    return int(rows[earliest]), int(rows[group_first[earliest]])


def _duplicates(ids: pa.Array, hashes: Array, rows: Array) -> tuple[int, int] | None:
    """(row, first row of its id) of the earliest row repeating an earlier id: only ids sharing a hash with
    another are compared (as strings)."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    shared = np.zeros(len(order), bool)
    shared[1:] = ordered[1:] == ordered[:-1]
    shared[:-1] |= shared[1:]
    if not shared.any():
        return None
    chosen = order[shared]
    return _first_duplicate(*_sorted_by_id(ids.take(pa.array(chosen)), rows[chosen]))


def _sorted_by_id(ids: pa.Array, rows: Array) -> tuple[pa.Array, Array]:
    table = pa.table({"id": ids, "row": pa.array(rows, pa.int64())})
    order = pc.sort_indices(table, sort_keys=[("id", "ascending"), ("row", "ascending")])
    return ids.take(order), rows[_np(order).astype(np.int64)]


_HASH_BASE: Final = np.uint64(0x100000001B3)


def string_hash(text: pa.Array) -> Array:
    """A 64-bit hash of each string (polynomial over its UTF-8 bytes, then mixed), vectorised."""
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], np.int32, n + 1, text.offset * 4).astype(np.int64)
    base, total = int(offsets[0]), int(offsets[-1] - offsets[0])
    data = text.buffers()[2]
    raw = np.frombuffer(data, np.uint8, total, base) if total else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    if n and total == n * int(lengths[0]):  # all of one width: Horner's rule, column by column
        return _mix(_fixed_width_hash(raw.reshape(n, int(lengths[0]))))
    within = np.arange(total) - np.repeat(offsets[:-1] - base, lengths)
    powers = np.cumprod(np.concatenate([[np.uint64(1)], np.full(int(lengths.max(initial=0)), _HASH_BASE)]),
                        dtype=np.uint64)  # BASE^j, wrapping
    sums = np.zeros(total + 1, np.uint64)
    np.cumsum((raw.astype(np.uint64) + np.uint64(1)) * powers[within], out=sums[1:])
    hashed = sums[offsets[1:] - base] - sums[offsets[:-1] - base] + lengths.astype(np.uint64)
    return _mix(hashed)


def _fixed_width_hash(matrix: Array) -> Array:
    """The polynomial sum_j (byte_j + 1) * BASE^j + width of each row, as in string_hash."""
    hashed = np.zeros(len(matrix), np.uint64)
    for j in range(matrix.shape[1] - 1, -1, -1):
        hashed = hashed * _HASH_BASE + (matrix[:, j].astype(np.uint64) + np.uint64(1))
    return hashed + np.uint64(matrix.shape[1])


def _mix(h: Array) -> Array:
    """splitmix64's finaliser."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: Array = h ^ (h >> np.uint64(31))
    return mixed


class _Buckets:
    """Claim ids spilled to hash buckets as they are read, so duplicates are found bucket by bucket."""

    def __init__(self, directory: Path, count: int) -> None:
        self.count = count
        schema = pa.schema([("id", pa.string()), ("row", pa.int64()), ("hash", pa.uint64())])
        self.spill = _Spill(directory, "ids", schema)

    def add(self, ids: pa.Array, start: int) -> None:
        rows = pa.array(np.arange(start, start + len(ids), dtype=np.int64))
        hashes = string_hash(ids)
        keys = (hashes % np.uint64(self.count)).astype(np.int64)
        self.spill.write(pa.table({"id": ids, "row": rows, "hash": pa.array(hashes)}), keys)

    def first_duplicate(self, limit: int | None = None) -> tuple[int, int] | None:
        """The earliest repeated claim (and its first row) among rows up to `limit`."""
        self.spill.close()
        found: list[tuple[int, int]] = []
        for k in range(self.count):
            table = self.spill.read(k)
            rows = _np(table.column("row")).astype(np.int64)
            keep = rows <= limit if limit is not None else np.ones(len(rows), bool)
            ids = table.column("id").combine_chunks().filter(pa.array(keep))
            duplicate = _duplicates(ids, _np(table.column("hash"))[keep], rows[keep])
            if duplicate is not None:
                found.append(duplicate)
        return min(found) if found else None


# ---- the first fault, with policy_lang.data's message -------------------------------------------------------------
def _raise_fault(source: _Source, ctx: _Context, row: int, duplicate: tuple[int, int] | None,
                 key: str, people: _People | None = None) -> NoReturn:
    """Report the earlier of `row` (a faulty record) and `duplicate` (row, first row of its id): the record
    check of policy_lang.data first, then the id's uniqueness, then (claims) whether its person exists."""
    target = duplicate[0] if duplicate is not None and duplicate[0] <= row else row
    first = duplicate[1] if duplicate is not None and duplicate[0] == target else None
    records = source.rows({target} | ({first} if first is not None else set()))
    record = records[target]
    if key == "person_id":
        D._person(record, ctx.vocab)
    else:
        D._claim(record, ctx.vocab)
    if first is not None:
        value = record.required(key)
        D._check_unique(record, key, value, {value: records[first].line})
    if people is not None:
        _unknown_person(record, people)
    raise D.DataError(record.path, record.line, 1,
                      "this record passes policy_lang.data's record check but not the bulk check (a polc bug)")


# ---- claims -------------------------------------------------------------------------------------------------------
def _claim_schema(ctx: _Context) -> pa.Schema:
    fields = [("person", pa.int32()), ("claim_id", pa.string()), ("day", pa.int32()), ("kind", pa.int8()),
              ("level", pa.int8()), *((name, pa.int64()) for name in CLAIM_MONEY), ("bed_days", pa.int32()),
              *((name, pa.bool_()) for name in CLAIM_BOOLS), ("designation", pa.int8()),
              ("diseases", pa.list_(pa.int32()))]
    types = {"bool": pa.bool_(), "int": pa.int64(), "money": pa.int64(), "text": pa.string()}
    for decl in ctx.spec("claim").declared:
        fields += [(f"x:{decl.name}", types[decl.type]), (f"m:{decl.name}", pa.bool_())]
    return pa.schema(fields)


@attrs.frozen(eq=False)
class _ClaimPart:
    table: pa.Table  # _claim_schema, person = file row of the person
    ids: pa.Array
    person: Array
    bad: Array


def _claim_part(batch: _Batch, ctx: _Context, people: _People, schema: pa.Schema) -> _ClaimPart:
    col, n = batch.columns.get, batch.size
    values, bad = _claim_values(batch)
    ids, person_ids = _text(col("claim_id"), n), _text(col("person_id"), n)
    person, known = people.lookup(person_ids, string_hash(person_ids))
    diseases_bad, d_rows, d_codes, _ = _expand(_text(col("diseases"), n), lambda t: ctx.items("diseases", t))
    extra, extra_bad = _claim_extra(batch, ctx)
    bad |= _empty(ids) | _empty(person_ids) | diseases_bad | extra_bad | _format_bad(batch) | ~known
    offsets = np.concatenate([[0], np.cumsum(np.bincount(d_rows, minlength=n))]).astype(np.int32)
    diseases = pa.ListArray.from_arrays(pa.array(offsets), pa.array(d_codes.astype(np.int32)))
    arrays = {"person": np.where(known, person, 0).astype(np.int32), "claim_id": ids, **values,
              "diseases": diseases, **extra}
    table = pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)
    return _ClaimPart(table, ids, person, bad)


def _claim_values(batch: _Batch) -> tuple[dict[str, Any], Array]:
    """The scalar claim fields, parsed, and the records policy_lang.data rejects for them."""
    col, n = batch.columns.get, batch.size
    flags = {name: _flag(col(name), n) for name in CLAIM_BOOLS}
    money = {name: _money(col(name), n) for name in CLAIM_MONEY}
    date, kind = _date(col("date"), n), _choice(col("kind"), n, KINDS)
    level, designation = _choice(col("hospital_level"), n, ("1", "2", "3")), _choice(col("designation"), n, DESIGNATIONS)
    bed_days = _integer(col("bed_days"), n, 0, _MAX_BED_DAYS)
    in_province = flags["in_province"].default(True)
    pooling = flags["in_pooling_area"]
    bools = {name: flags[name].default(name in ("direct_settlement",)) for name in CLAIM_BOOLS}
    bools |= {"in_province": in_province, "in_pooling_area": pooling.default(in_province)}
    fen = {name: np.where(money[name].missing, 0, money[name].value) for name in CLAIM_MONEY}
    bad = (date.required() | kind.required() | level.required() | designation.bad | bed_days.bad
           | money["total_cost"].required() | money["eligible_cost"].required()
           | money["tcm_cost"].bad | money["material_over_limit"].bad
           | np.logical_or.reduce([f.bad for f in flags.values()])
           | (~pooling.missing & pooling.value & ~in_province) | _amounts_bad(fen))
    values = {"day": date.value, "kind": kind.value.astype(np.int8), "level": (level.value + 1).astype(np.int8),
              **fen, "bed_days": bed_days.default(0).astype(np.int32), **bools,
              "designation": np.maximum(designation.value, 0).astype(np.int8)}
    return values, bad


def _amounts_bad(fen: Mapping[str, Array]) -> Array:
    total, eligible = fen["total_cost"], fen["eligible_cost"]
    return (eligible > total) | (fen["tcm_cost"] > eligible) | (fen["material_over_limit"] > total - eligible)


def _claim_extra(batch: _Batch, ctx: _Context) -> tuple[dict[str, Any], Array]:
    out: dict[str, Any] = {}
    bad = np.zeros(batch.size, bool)
    for decl in ctx.spec("claim").declared:
        if decl.type == "text":
            text = _text(batch.columns.get(decl.name), batch.size)
            missing = _empty(text)
            out[f"x:{decl.name}"] = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), text)
        else:
            parsed = _declared(batch, decl)
            out[f"x:{decl.name}"], missing = parsed.value, parsed.missing
            bad |= parsed.bad
        out[f"m:{decl.name}"] = missing
    return out, bad


def _read_claims(source: _Source, people: _People, ctx: _Context, spill: _Spill, buckets: _Buckets,
                 chunk_persons: int) -> None:
    """Validate the claims batch by batch, spilling them by chunk; raise on the first fault."""
    schema = _claim_schema(ctx)

    def fault(exc: D.DataError) -> NoReturn:  # a malformed record: an earlier duplicate comes first
        duplicate = buckets.first_duplicate()
        if duplicate is not None:
            _raise_fault(source, ctx, duplicate[0], duplicate, "claim_id", people)
        raise exc

    batches = source.batches()
    while (batch := _next_batch(batches, fault)) is not None:
        part = _claim_part(batch, ctx, people, schema)
        buckets.add(part.ids, batch.start)
        if part.bad.any():
            row = batch.start + int(np.argmax(part.bad))
            _raise_fault(source, ctx, row, buckets.first_duplicate(row), "claim_id", people)
        spill.write(part.table, part.person // chunk_persons)
    duplicate = buckets.first_duplicate()
    if duplicate is not None:
        _raise_fault(source, ctx, duplicate[0], duplicate, "claim_id", people)


def _unknown_person(record: D._Row, people: _People) -> None:
    person_id = record.required("person_id")
    key = pa.array([person_id])
    if not people.lookup(key, string_hash(key))[1][0]:
        known = people.ids.to_pylist() if people.n <= D._MAX_HINT_CANDIDATES else ()
        record.fail("person_id", D._msg("unknown_person", value=person_id),
                    D._suggest(person_id, known) if known else None)


# ---- spilling -----------------------------------------------------------------------------------------------------
class _Spill:
    """Tables partitioned by a small integer key, appended to one Arrow IPC stream per key."""

    def __init__(self, directory: Path, name: str, schema: pa.Schema) -> None:
        self.directory, self.name, self.schema = directory, name, schema
        self.writers: dict[int, pa.RecordBatchStreamWriter] = {}
        self.closed = False

    def path(self, key: int) -> Path:
        return self.directory / f"{self.name}-{key}.arrow"

    def write(self, table: pa.Table, keys: Array) -> None:
        if not len(keys):
            return
        small = keys.astype(np.int16) if keys.max() < 2**15 else keys  # NumPy radix-sorts 16-bit keys
        order = np.argsort(small, kind="stable")
        counts = np.bincount(keys)
        table = table.take(pa.array(order))
        start = 0
        for key in np.flatnonzero(counts):
            self._writer(int(key)).write_table(table.slice(start, int(counts[key])))
            start += int(counts[key])

    def _writer(self, key: int) -> pa.RecordBatchStreamWriter:
        if key not in self.writers:
            self.writers[key] = pa.ipc.new_stream(pa.OSFile(str(self.path(key)), "wb"), self.schema)
        return self.writers[key]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for writer in self.writers.values():
                writer.close()

    def read(self, key: int) -> pa.Table:
        if key not in self.writers:
            return self.schema.empty_table()
        with pa.OSFile(str(self.path(key))) as handle:
            return pa.ipc.open_stream(handle).read_all()


# ---- chunks -------------------------------------------------------------------------------------------------------
def _split(low: int, high: int, claims: pa.Table, budget: int | None) -> Iterator[tuple[int, int, pa.Table]]:
    """Persons low..high and their claims, cut into runs of persons with at most `budget` claims each (a
    person with more is a run alone); claims keep their file order within a run."""
    person = _np(claims.column("person")).astype(np.int64) - low
    cuts = _cuts(np.bincount(person, minlength=high - low), budget) if budget is not None else [0]
    if len(cuts) == 1:
        yield low, high, claims
        return
    run = np.searchsorted(np.asarray(cuts), person, side="right") - 1
    sizes = np.bincount(run, minlength=len(cuts))
    ordered = claims.take(pa.array(np.argsort(run, kind="stable")))
    starts = np.cumsum(sizes) - sizes
    for k, begin in enumerate(cuts):
        end = cuts[k + 1] if k + 1 < len(cuts) else high - low
        yield low + begin, low + end, ordered.slice(int(starts[k]), int(sizes[k]))


def _cuts(counts: Array, budget: int) -> list[int]:
    """Where runs of persons start so that each run has at most `budget` claims (or is one person)."""
    total = np.cumsum(counts)
    cuts, before = [0], 0
    while True:
        end = max(int(np.searchsorted(total, before + budget, side="right")), cuts[-1] + 1)
        if end >= len(counts):
            return cuts
        cuts.append(end)
        before = int(total[end - 1])


def _chunk(people: _People, low: int, high: int, claims: pa.Table, ctx: _Context) -> Columns:
    cols = Columns(_chunk_persons(people, low, high, ctx), _chunk_claims(claims, low, ctx), ctx.identity_names,
                   ctx.disease_names)
    cols.check()
    return cols


def _chunk_persons(people: _People, low: int, high: int, ctx: _Context) -> Persons:
    f = people.fields
    g_rows, g_ident, g_since = people.grants
    c_rows, c_codes = people.chronic
    ga, gb = np.searchsorted(g_rows, [low, high])
    ca, cb = np.searchsorted(c_rows, [low, high])
    return Persons(
        person_id=str_array(people.ids.slice(low, high - low)), scheme=f["scheme"][low:high],
        retired=f["retired"][low:high], age=f["age"][low:high], sex=f["sex"][low:high],
        region=f["region"][low:high], region_names=tuple(ctx.regions), resettled=f["resettled"][low:high],
        grant_person=g_rows[ga:gb] - low, grant_identity=g_ident[ga:gb], grant_since=g_since[ga:gb],
        chronic_person=c_rows[ca:cb] - low, chronic_disease=c_codes[ca:cb],
        extra={decl.name: _person_extra_column(people, decl, low, high, ctx) for decl in ctx.vocab.columns
               if decl.entity == "person"})


def _person_extra_column(people: _People, decl: ColumnInfo, low: int, high: int, ctx: _Context) -> Extra:
    n = high - low
    if decl.name not in people.extra:  # a declared column with a standard name: never an extra
        return _missing_extra(decl, n)
    values, missing = people.extra[decl.name]
    values, missing = values[low:high], missing[low:high]
    if decl.type == "text":
        return Extra(values.astype(np.int32), missing, tuple(ctx.texts.get(decl.name, {})))
    return Extra(values.astype(bool if decl.type == "bool" else np.int64), missing)


def _missing_extra(decl: ColumnInfo, n: int) -> Extra:
    if decl.type == "text":
        return Extra(np.full(n, -1, np.int32), np.ones(n, bool), ())
    return Extra(np.zeros(n, bool if decl.type == "bool" else np.int64), np.ones(n, bool))


def _chunk_claims(table: pa.Table, low: int, ctx: _Context) -> Claims:
    def col(name: str) -> Array:
        return _np(table.column(name))

    diseases = table.column("diseases").combine_chunks()
    lengths = np.diff(_np(diseases.offsets))
    return Claims(
        claim_id=str_array(table.column("claim_id").combine_chunks()), person=(col("person") - low).astype(np.int32),
        day=col("day"), kind=col("kind"), level=col("level"), **{name: col(name) for name in CLAIM_MONEY},
        bed_days=col("bed_days"), **{name: col(name).astype(bool) for name in CLAIM_BOOLS},
        designation=col("designation"), disease_claim=np.repeat(np.arange(table.num_rows), lengths).astype(np.int32),
        disease_code=_np(diseases.flatten()).astype(np.int32),
        extra={decl.name: _claim_extra_column(table, decl) for decl in ctx.vocab.columns if decl.entity == "claim"})


def _claim_extra_column(table: pa.Table, decl: ColumnInfo) -> Extra:
    if f"x:{decl.name}" not in table.column_names:
        return _missing_extra(decl, table.num_rows)
    values = table.column(f"x:{decl.name}").combine_chunks()
    missing = np.asarray(_np(table.column(f"m:{decl.name}")), bool)
    if decl.type == "text":
        encoded = pc.dictionary_encode(values)
        codes = _np(encoded.indices.fill_null(-1)).astype(np.int32)
        return Extra(codes, missing, tuple(encoded.dictionary.to_pylist()))
    return Extra(np.asarray(_np(values)).astype(bool if decl.type == "bool" else np.int64), missing)


def str_array(text: pa.Array, rows: int = _BATCH_ROWS) -> Array:
    """A string array as a NumPy str array; ASCII text without a Python object per row."""
    text = text.cast(pa.string())
    n = len(text)
    if n == 0:
        return np.zeros(0, "<U1")
    offsets = np.frombuffer(text.buffers()[1], np.int32, n + 1, text.offset * 4).astype(np.int64)
    lengths = np.diff(offsets)
    total = int(offsets[-1] - offsets[0])
    raw = np.frombuffer(text.buffers()[2], np.uint8, total, int(offsets[0])) if total else np.zeros(0, np.uint8)
    if total and raw.max() >= 128:
        return np.asarray(text.to_numpy(zero_copy_only=False), dtype=str)
    width = max(1, int(lengths.max()))
    matrix = np.zeros((n, width), np.uint32)
    for low in range(0, n, rows):
        high = min(n, low + rows)
        count = lengths[low:high]
        within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        first = int(offsets[low] - offsets[0])
        matrix[np.repeat(np.arange(low, high), count), within] = raw[first:first + len(within)]
    strings: Array = matrix.view(f"<U{width}").reshape(n)
    return strings
