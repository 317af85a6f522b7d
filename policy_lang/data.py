"""Load and validate persons and claims from CSV or JSON Lines into frozen records (DESIGN.md §4)."""

from __future__ import annotations

import codecs
import csv
import datetime
import difflib
import io
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NoReturn

import attrs

from policy_lang import vocabulary as V
from policy_lang.graph import ColumnInfo

if TYPE_CHECKING:
    import _csv

# --- message wording: every text the loader can show lives here -----------------------------------

_MESSAGES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "unsupported_format": "unsupported data file format {suffix!r}: supported are .csv and "
        "JSON Lines (.jsonl, .ndjson, .json)",
        "cannot_read": "cannot read the file: {reason}",
        "unknown_encoding": "unknown encoding {encoding!r}",
        "not_encoded": "the file is not {encoding}: byte 0x{byte:02X} cannot be decoded",
        "empty_file": "no header row: the first line must name the columns, at least {names}",
        "duplicate_column": "duplicate column {name!r} in the header (first at column {first})",
        "missing_columns": "missing required column(s): {names}",
        "too_many_fields": "row has {found} fields but the header has {expected} "
        "(extra field(s) after the last column {last!r})",
        "too_few_fields": "row has {found} fields but the header has {expected} "
        "(missing from column {first_missing!r} on)",
        "csv_syntax": "malformed CSV: {reason}",
        "bad_json": "invalid JSON: {reason}",
        "json_constant": "{constant} is not allowed",
        "not_object": "a JSON Lines record must be an object {{...}}, found {found}",
        "duplicate_key": "duplicate key {name!r} in the record (first at position {first})",
        "required_empty": "{name} is required but empty",
        "not_scalar": "{name} must be a single value, found {found}",
        "bool_not_text": "{name} must be a string or a number, found a JSON boolean",
        "bad_item": "{name} list items must be strings, found {found}",
        "bad_bool": "{name} {value!r} is not a boolean: use true, false, 1 or 0",
        "bad_int": "{name} {value!r} is not a whole number",
        "int_range": "{name} {value} is out of range: expected {low} to {high}",
        "bad_choice": "{name} {value!r} is not one of: {allowed}",
        "bad_date": "{name} {value!r} is not a date: expected YYYY-MM-DD",
        "impossible_date": "{name} {value!r} is not a calendar date ({reason})",
        "bad_money": "{name}: {reason}",
        "money_empty": "the amount is empty",
        "money_negative": "amount {text!r} is negative: amounts must be zero or more",
        "money_sign": "amount {text!r} has a sign: write the bare number",
        "money_decimals": "amount {text!r} has more than two decimals (amounts are exact to the fen)",
        "money_not_number": "amount {text!r} is not a number: write yuan as 12, 12.5 or 12.50",
        "money_too_large": "amount {text!r} is above the maximum {maximum}",
        "eligible_above_total": "eligible_cost {eligible} is above total_cost {total}",
        "tcm_above_eligible": "tcm_cost {tcm} is above eligible_cost {eligible}",
        "material_above_out_of_list": "material_over_limit {material} is above the out-of-list "
        "cost total_cost - eligible_cost = {out_of_list} (total_cost {total}, "
        "eligible_cost {eligible})",
        "pooling_outside_province": "in_pooling_area is true but in_province is false: a claim "
        "outside the province is outside the pooling area too",
        "unknown_identity": "identities: unknown identity {value!r}",
        "repeated_identity": "identities: identity {value!r} is listed twice",
        "bad_grant_date": "identities: {value!r} has a bad date: expected id@YYYY-MM-DD",
        "unknown_disease": "{name}: unknown disease {value!r}",
        "duplicate_id": "duplicate {name} {value!r} (first on line {first})",
        "unknown_person": "person_id {value!r} is not in the persons file",
    }
)

_HINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "gbk": "the file looks GBK-encoded: convert it (e.g. `iconv -f GBK -t UTF-8 in.csv > "
        "out.csv`) or pass `--encoding gbk`",
        "did_you_mean": "did you mean {candidates}?",
        "known": "known values: {candidates}",
        "utf8": "the file looks UTF-8-encoded: leave out `--encoding`",
        "chinese_name": "write the id {id_!r} instead of the Chinese name {value!r}",
    }
)


def _msg(key: str, **args: object) -> str:
    return _MESSAGES[key].format(**args)


def _hint(key: str, **args: object) -> str:
    return _HINTS[key].format(**args)


# --- public records ------------------------------------------------------------------------------


@attrs.frozen
class Grant:
    """An identity a person holds, from `since` (None: the whole year)."""

    identity: str
    since: datetime.date | None


@attrs.frozen
class Person:
    """One insured person (DESIGN.md §4 persons)."""

    person_id: str
    scheme: str
    retired: bool = False
    age: int | None = None
    sex: str | None = None
    identities: tuple[Grant, ...] = ()
    region: str | None = None
    chronic: frozenset[str] = frozenset()
    resettled: bool = False
    # Excluded from the hash (a mapping is unhashable) but still compared.
    extra: Mapping[str, object] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class Claim:
    """One claim; amounts in fen (DESIGN.md §4 claims)."""

    claim_id: str
    person_id: str
    date: datetime.date
    kind: str
    hospital_level: int
    total_cost: int
    eligible_cost: int
    grassroots: bool = False
    tcm_institution: bool = False
    designation: str = "none"
    diseases: frozenset[str] = frozenset()
    referred: bool = False
    in_province: bool = True
    in_pooling_area: bool = True
    direct_settlement: bool = True
    emergency: bool = False
    pure_tcm: bool = False
    tcm_cost: int = 0
    material_over_limit: int = 0
    bed_days: int = 0
    extra: Mapping[str, object] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class DataVocabulary:
    """What the policy being evaluated accepts: identity ids, disease tokens, extra columns."""

    identities: frozenset[str]
    diseases: Mapping[str, str]
    columns: tuple[ColumnInfo, ...] = ()


@attrs.frozen
class Dataset:
    """Validated persons and their claims, in file order."""

    persons: tuple[Person, ...]
    claims: tuple[Claim, ...]


class DataError(Exception):
    """Bad input data, rendered as `path:line:column: error: message` and an optional hint."""

    def __init__(
        self, path: str, line: int, column: int, message: str, hint: str | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.hint = hint
        super().__init__(path, line, column, message, hint)

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.column}: error: {self.message}"
        return text if self.hint is None else f"{text}\n  hint: {self.hint}"


# --- money ---------------------------------------------------------------------------------------

_MAX_YUAN: Final = Decimal("1000000000.00")
_AMOUNT = re.compile(r"[0-9]+(?:\.([0-9]+))?")


def parse_money(text: str) -> int:
    """Yuan text to fen: "1234.5" -> 123450; ValueError on anything not a plain amount.

    >>> parse_money("0.05")
    5
    """
    text = text.strip()
    if not text:
        raise ValueError(_msg("money_empty"))
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise ValueError(_msg(_not_amount_key(text), text=text))
    if match.group(1) is not None and len(match.group(1)) > 2:
        raise ValueError(_msg("money_decimals", text=text))
    yuan = Decimal(text)
    if yuan > _MAX_YUAN:
        raise ValueError(_msg("money_too_large", text=text, maximum=_MAX_YUAN))
    return int(yuan * 100)


def _not_amount_key(text: str) -> str:
    if text[0] in "+-" and _AMOUNT.fullmatch(text[1:]) is not None:
        return "money_negative" if text[0] == "-" else "money_sign"
    return "money_not_number"


def format_money(fen: int) -> str:
    """Fen to yuan text with two decimals: 123450 -> "1234.50", -5 -> "-0.05"."""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


# --- vocabulary ----------------------------------------------------------------------------------


def default_vocabulary() -> DataVocabulary:
    """The built-in identities and diseases; diseases are accepted by id or Chinese name."""
    diseases = {**{id_: id_ for id_ in V.DISEASES}, **{zh: id_ for id_, zh in V.DISEASES.items()}}
    return DataVocabulary(frozenset(V.IDENTITIES), diseases)


def _suggest(value: str, candidates: Iterable[str]) -> str | None:
    pool = sorted(set(candidates))
    same_case = [c for c in pool if c.lower() == value.lower()]
    close = same_case or difflib.get_close_matches(value, pool, n=3)
    return _hint("did_you_mean", candidates=" or ".join(map(repr, close))) if close else None


# --- reading text --------------------------------------------------------------------------------

_CSV_SUFFIXES: Final = frozenset({".csv"})
_JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})
_BOM: Final = codecs.BOM_UTF8


def _read_text(path: str, encoding: str) -> str:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(path, 1, 1, _msg("unknown_encoding", encoding=encoding)) from None
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, 1, 1, _msg("cannot_read", reason=exc.strerror or exc)) from None
    skip = len(_BOM) if codec == "utf-8" and raw.startswith(_BOM) else 0
    try:
        return raw[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, raw, skip + exc.start, codec) from None


def _decode_error(path: str, raw: bytes, offset: int, codec: str) -> DataError:
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    name = "UTF-8" if codec == "utf-8" else codec
    message = _msg("not_encoded", encoding=name, byte=raw[offset])
    other, hint = ("gb18030", "gbk") if codec == "utf-8" else ("utf-8-sig", "utf8")
    return DataError(path, line, column, message, _hint(hint) if _decodes(raw, other) else None)


def _decodes(raw: bytes, codec: str) -> bool:
    try:
        raw.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


# --- records: one raw row with its position ------------------------------------------------------


class _Row:
    """One input record: raw values by column name, with where each came from."""

    __slots__ = ("line", "path", "positions", "values")

    def __init__(
        self, path: str, line: int, values: Mapping[str, object], positions: Mapping[str, int]
    ) -> None:
        self.path = path
        self.line = line
        self.values = values
        self.positions = positions

    def fail(self, name: str, message: str, hint: str | None = None) -> NoReturn:
        raise DataError(self.path, self.line, self.positions.get(name, 1), message, hint)

    def text(self, name: str) -> str:
        value = self.values.get(name)
        if value is None:
            return ""
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, bool):
            self.fail(name, _msg("bool_not_text", name=name))
        if isinstance(value, int | Decimal):
            return str(value)
        self.fail(name, _msg("not_scalar", name=name, found=_json_kind(value)))

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            self.fail(name, _msg("required_empty", name=name))
        return value

    def tokens(self, name: str) -> list[str]:
        value = self.values.get(name)
        if not isinstance(value, list) or isinstance(value, _JsonObject):
            return [t.strip() for t in self.text(name).split(";") if t.strip()]
        for item in value:
            if not isinstance(item, str):
                self.fail(name, _msg("bad_item", name=name, found=_json_kind(item)))
        return [t.strip() for t in value if t.strip()]

    def maybe_flag(self, name: str) -> bool | None:
        value = self.values.get(name)
        if isinstance(value, bool):
            return value
        text = self.text(name)
        if not text:
            return None
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        self.fail(name, _msg("bad_bool", name=name, value=text))

    def flag(self, name: str, default: bool) -> bool:
        value = self.maybe_flag(name)
        return default if value is None else value

    def integer(self, name: str, low: int, high: int) -> int | None:
        text = self.text(name)
        if not text:
            return None
        if not _INTEGER.fullmatch(text):
            self.fail(name, _msg("bad_int", name=name, value=text))
        value = Decimal(text)  # not int(): that has a digit limit on absurdly long input
        if not low <= value <= high:
            self.fail(name, _msg("int_range", name=name, value=text, low=low, high=high))
        return int(value)

    def money(self, name: str) -> int | None:
        text = self.text(name)
        if not text:
            return None
        try:
            return parse_money(text)
        except ValueError as exc:
            self.fail(name, _msg("bad_money", name=name, reason=exc))

    def choice(self, name: str, allowed: Collection[str]) -> str | None:
        value = self.text(name)
        if not value or value in allowed:
            return value or None
        alias = V.VALUE_ALIASES.get(value)
        hint = (
            _hint("chinese_name", id_=alias, value=value)
            if alias is not None and alias in allowed
            else _suggest(value, allowed)
        )
        message = _msg("bad_choice", name=name, value=value, allowed=", ".join(allowed))
        self.fail(name, message, hint)

    def required_choice(self, name: str, allowed: Collection[str]) -> str:
        value = self.choice(name, allowed)
        if value is None:
            self.fail(name, _msg("required_empty", name=name))
        return value

    def date(self, name: str) -> datetime.date:
        return _parse_date(self.required(name), lambda m: self.fail(name, m), name)


_INTEGER = re.compile(r"-?[0-9]+")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def _parse_date(text: str, fail: Callable[[str], NoReturn], name: str) -> datetime.date:
    match = _DATE.fullmatch(text)
    if match is None:
        fail(_msg("bad_date", name=name, value=text))
    year, month, day = (int(g) for g in match.groups())
    try:
        return datetime.date(year, month, day)
    except ValueError as exc:
        fail(_msg("impossible_date", name=name, value=text, reason=exc))


# --- CSV -----------------------------------------------------------------------------------------


def _csv_rows(path: str, text: str, required: Iterable[str]) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = _csv_header(path, reader, required)
    positions = {name: i + 1 for i, name in enumerate(header) if name}
    while (record := _next_record(path, reader)) is not None:
        line, fields = record
        if fields:  # a blank line
            _check_width(path, line, header, fields)
            yield _Row(path, line, dict(zip(header, fields, strict=True)), positions)


def _next_record(path: str, reader: _csv.Reader) -> tuple[int, list[str]] | None:
    """The next record with the physical line it starts on; None at the end."""
    line = reader.line_num + 1
    try:
        return line, next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise DataError(path, line, 1, _msg("csv_syntax", reason=exc)) from None


def _csv_header(path: str, reader: _csv.Reader, required: Iterable[str]) -> list[str]:
    record = _next_record(path, reader)
    first = record[1] if record is not None else []
    if not any(f.strip() for f in first):
        raise DataError(path, 1, 1, _msg("empty_file", names=", ".join(required)))
    header = [name.strip() for name in first]
    seen: dict[str, int] = {}
    for index, name in enumerate(header, start=1):
        if name in seen:
            message = _msg("duplicate_column", name=name, first=seen[name])
            raise DataError(path, 1, index, message)
        if name:
            seen[name] = index
    _check_required(path, 1, header, required)
    return header


def _check_required(path: str, line: int, names: Collection[str], required: Iterable[str]) -> None:
    missing = [name for name in required if name not in names]
    if missing:
        raise DataError(path, line, 1, _msg("missing_columns", names=", ".join(missing)))


def _check_width(path: str, line: int, header: list[str], fields: list[str]) -> None:
    found, expected = len(fields), len(header)
    if found > expected:
        message = _msg("too_many_fields", found=found, expected=expected, last=header[-1])
        raise DataError(path, line, expected + 1, message)
    if found < expected:
        message = _msg(
            "too_few_fields", found=found, expected=expected, first_missing=header[found]
        )
        raise DataError(path, line, found + 1, message)


# --- JSON Lines ----------------------------------------------------------------------------------


class _JsonObject(list[tuple[str, object]]):
    """A JSON object's key/value pairs in order, so duplicate keys and key positions survive."""


def _reject_constant(constant: str) -> NoReturn:
    raise ValueError(_msg("json_constant", constant=constant))


def _json_kind(value: object) -> str:
    kinds = ((_JsonObject, "an object"), (list, "a list"), (bool, "a boolean"), (str, "a string"))
    return next(
        (k for t, k in kinds if isinstance(value, t)), "null" if value is None else "a number"
    )


def _json_rows(path: str, text: str, required: Iterable[str]) -> Iterator[_Row]:
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield _json_row(path, number, line, required)


def _json_row(path: str, number: int, line: str, required: Iterable[str]) -> _Row:
    try:
        parsed = json.loads(
            line,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_JsonObject,
        )
    except (ValueError, RecursionError) as exc:
        raise DataError(path, number, 1, _msg("bad_json", reason=exc)) from None
    if not isinstance(parsed, _JsonObject):
        raise DataError(path, number, 1, _msg("not_object", found=_json_kind(parsed)))
    values: dict[str, object] = {}
    positions: dict[str, int] = {}
    for index, (key, value) in enumerate(parsed, start=1):
        if key in positions:
            message = _msg("duplicate_key", name=key, first=positions[key])
            raise DataError(path, number, index, message)
        values[key], positions[key] = value, index
    _check_required(path, number, values, required)
    return _Row(path, number, values, positions)


def _rows(path: str, encoding: str, required: Iterable[str]) -> Iterator[_Row]:
    suffix = Path(path).suffix.lower()
    if suffix in _CSV_SUFFIXES:
        return _csv_rows(path, _read_text(path, encoding), required)
    if suffix in _JSONL_SUFFIXES:
        return _json_rows(path, _read_text(path, encoding), required)
    raise DataError(path, 1, 1, _msg("unsupported_format", suffix=suffix or Path(path).name))


# --- field groups shared by persons and claims ---------------------------------------------------


# Bounds keep every integer inside the vector evaluator's int64 arithmetic.
_INT_BOUND: Final = 10**15
_MAX_AGE: Final = 150
_MAX_BED_DAYS: Final = 100_000


def _extra(
    row: _Row, vocab: DataVocabulary, entity: str, standard: AbstractSet[str]
) -> Mapping[str, object]:
    parsers: dict[str, Callable[[str], object]] = {
        "bool": row.maybe_flag,
        "int": lambda name: row.integer(name, -_INT_BOUND, _INT_BOUND),
        "money": row.money,
        "text": lambda name: row.text(name) or None,
    }
    # A plain dict, not a MappingProxyType: records must pickle (the Dask runner ships them).
    return {
        decl.name: parsers[decl.type](decl.name)
        for decl in vocab.columns
        if decl.entity == entity and decl.name not in standard
    }


def _diseases(row: _Row, name: str, vocab: DataVocabulary) -> frozenset[str]:
    found: set[str] = set()
    for token in row.tokens(name):
        canonical = vocab.diseases.get(token)
        if canonical is None:
            hint = _suggest(token, vocab.diseases)
            row.fail(name, _msg("unknown_disease", name=name, value=token), hint)
        found.add(canonical)
    return frozenset(found)


def _identity_id(row: _Row, token: str, vocab: DataVocabulary) -> str:
    if token in vocab.identities:
        return token
    alias = V.VALUE_ALIASES.get(token)
    if alias is not None and alias in vocab.identities:
        return alias
    names = [zh for zh, id_ in V.VALUE_ALIASES.items() if id_ in vocab.identities]
    known = _hint("known", candidates=", ".join(sorted(vocab.identities)))
    hint = _suggest(token, [*vocab.identities, *names]) or known
    row.fail("identities", _msg("unknown_identity", value=token), hint)


def _grant(row: _Row, token: str, vocab: DataVocabulary) -> Grant:
    name, at, since = token.partition("@")
    identity = _identity_id(row, name.strip(), vocab)
    if not at:
        return Grant(identity, None)
    bad = _msg("bad_grant_date", value=token)
    return Grant(identity, _parse_date(since.strip(), lambda _: row.fail("identities", bad), ""))


def _grants(row: _Row, vocab: DataVocabulary) -> tuple[Grant, ...]:
    grants: list[Grant] = []
    held: set[str] = set()  # the identities so far: a set keeps a person with many identities linear
    for token in row.tokens("identities"):
        grant = _grant(row, token, vocab)
        if grant.identity in held:
            row.fail("identities", _msg("repeated_identity", value=grant.identity))
        held.add(grant.identity)
        grants.append(grant)
    return tuple(grants)


# --- persons -------------------------------------------------------------------------------------

_PERSON_FIELDS: Final = frozenset(attrs.fields_dict(Person))


def _person(row: _Row, vocab: DataVocabulary) -> Person:
    return Person(
        person_id=row.required("person_id"),
        scheme=row.required_choice("scheme", V.SCHEMES),
        retired=row.flag("retired", False),
        age=row.integer("age", 0, _MAX_AGE),
        sex=row.choice("sex", V.SEXES),
        identities=_grants(row, vocab),
        region=row.text("region") or None,
        chronic=_diseases(row, "chronic", vocab),
        resettled=row.flag("resettled", False),
        extra=_extra(row, vocab, "person", _PERSON_FIELDS),
    )


def load_persons(
    path: str | os.PathLike[str], vocab: DataVocabulary, encoding: str = "utf-8"
) -> tuple[Person, ...]:
    """Read and validate a persons file (.csv or JSON Lines); raise DataError on the first fault."""
    path = os.fspath(path)
    persons: list[Person] = []
    first_line: dict[str, int] = {}
    for row in _rows(path, encoding, V.PERSON_COLUMNS_REQUIRED):
        person = _person(row, vocab)
        _check_unique(row, "person_id", person.person_id, first_line)
        persons.append(person)
    return tuple(persons)


def _check_unique(row: _Row, name: str, value: str, first_line: dict[str, int]) -> None:
    first = first_line.setdefault(value, row.line)
    if first != row.line:
        row.fail(name, _msg("duplicate_id", name=name, value=value, first=first))


# --- claims --------------------------------------------------------------------------------------

_CLAIM_FIELDS: Final = frozenset(attrs.fields_dict(Claim))
_LEVELS: Final = ("1", "2", "3")


def _claim(row: _Row, vocab: DataVocabulary) -> Claim:
    in_province = row.flag("in_province", True)
    claim = Claim(
        claim_id=row.required("claim_id"),
        person_id=row.required("person_id"),
        date=row.date("date"),
        kind=row.required_choice("kind", V.KINDS),
        hospital_level=int(row.required_choice("hospital_level", _LEVELS)),
        total_cost=_required_money(row, "total_cost"),
        eligible_cost=_required_money(row, "eligible_cost"),
        grassroots=row.flag("grassroots", False),
        tcm_institution=row.flag("tcm_institution", False),
        designation=row.choice("designation", V.DESIGNATIONS) or "none",
        diseases=_diseases(row, "diseases", vocab),
        referred=row.flag("referred", False),
        in_province=in_province,
        in_pooling_area=_in_pooling_area(row, in_province),
        direct_settlement=row.flag("direct_settlement", True),
        emergency=row.flag("emergency", False),
        pure_tcm=row.flag("pure_tcm", False),
        tcm_cost=row.money("tcm_cost") or 0,
        material_over_limit=row.money("material_over_limit") or 0,
        bed_days=row.integer("bed_days", 0, _MAX_BED_DAYS) or 0,
        extra=_extra(row, vocab, "claim", _CLAIM_FIELDS),
    )
    _check_amounts(row, claim)
    return claim


def _required_money(row: _Row, name: str) -> int:
    amount = row.money(name)
    if amount is None:
        row.fail(name, _msg("required_empty", name=name))
    return amount


def _in_pooling_area(row: _Row, in_province: bool) -> bool:
    value = row.maybe_flag("in_pooling_area")
    if value is None:
        return in_province
    if value and not in_province:
        row.fail("in_pooling_area", _msg("pooling_outside_province"))
    return value


def _check_amounts(row: _Row, claim: Claim) -> None:
    total, eligible = claim.total_cost, claim.eligible_cost
    money = format_money
    if eligible > total:
        message = _msg("eligible_above_total", eligible=money(eligible), total=money(total))
        row.fail("eligible_cost", message)
    if claim.tcm_cost > eligible:
        message = _msg("tcm_above_eligible", tcm=money(claim.tcm_cost), eligible=money(eligible))
        row.fail("tcm_cost", message)
    if claim.material_over_limit > total - eligible:
        message = _msg(
            "material_above_out_of_list",
            material=money(claim.material_over_limit),
            out_of_list=money(total - eligible),
            total=money(total),
            eligible=money(eligible),
        )
        row.fail("material_over_limit", message)


def load_claims(
    path: str | os.PathLike[str],
    vocab: DataVocabulary,
    person_ids: Collection[str] | None = None,
    encoding: str = "utf-8",
) -> tuple[Claim, ...]:
    """Read and validate a claims file; with `person_ids`, every claim must name a known person."""
    path = os.fspath(path)
    known = (
        person_ids
        if person_ids is None or isinstance(person_ids, AbstractSet)
        else frozenset(person_ids)
    )
    claims: list[Claim] = []
    first_line: dict[str, int] = {}
    for row in _rows(path, encoding, V.CLAIM_COLUMNS_REQUIRED):
        claim = _claim(row, vocab)
        _check_unique(row, "claim_id", claim.claim_id, first_line)
        if known is not None and claim.person_id not in known:
            _unknown_person(row, claim.person_id, known)
        claims.append(claim)
    return tuple(claims)


_MAX_HINT_CANDIDATES: Final = 20_000


def _unknown_person(row: _Row, person_id: str, known: Collection[str]) -> NoReturn:
    # difflib over millions of ids would take long; a hint is not worth that.
    hint = _suggest(person_id, known) if len(known) <= _MAX_HINT_CANDIDATES else None
    row.fail("person_id", _msg("unknown_person", value=person_id), hint)


def load_dataset(
    persons_path: str | os.PathLike[str],
    claims_path: str | os.PathLike[str],
    vocab: DataVocabulary,
    encoding: str = "utf-8",
) -> Dataset:
    """Load persons, then claims checked against those persons."""
    persons = load_persons(persons_path, vocab, encoding)
    ids = frozenset(p.person_id for p in persons)
    return Dataset(persons, load_claims(claims_path, vocab, ids, encoding))


# --- records written elsewhere (in-file tests of a .pol file) ------------------------------------


def person_from_fields(
    values: Mapping[str, str], vocab: DataVocabulary, path: str, line: int, positions: Mapping[str, int]
) -> Person:
    """Validate one person given as column -> text, exactly as a row of a persons file."""
    _check_required(path, line, list(values), V.PERSON_COLUMNS_REQUIRED)
    return _person(_Row(path, line, values, positions), vocab)


def claim_from_fields(
    values: Mapping[str, str], vocab: DataVocabulary, path: str, line: int, positions: Mapping[str, int]
) -> Claim:
    """Validate one claim given as column -> text, exactly as a row of a claims file."""
    _check_required(path, line, list(values), V.CLAIM_COLUMNS_REQUIRED)
    return _claim(_Row(path, line, values, positions), vocab)
