"""Columnar persons and claims: NumPy arrays with no Python object per row, for the vector evaluator."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from policy_lang import vocabulary as V
from policy_lang.data import Claim, Dataset, Person
from policy_lang.graph import ColumnInfo, Graph

Array = npt.NDArray[Any]
NO_DATE = int(np.iinfo(np.int32).min)  # grant_since of an identity held with no start date
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
SCHEMES: tuple[str, ...] = tuple(V.SCHEMES)
KINDS: tuple[str, ...] = tuple(V.KINDS)
DESIGNATIONS: tuple[str, ...] = tuple(V.DESIGNATIONS)
SEXES: tuple[str, ...] = ("", "F", "M")  # code 0 = unknown (interp reads a missing sex as "")


def day_number(day: datetime.date) -> int:
    """Days since 1970-01-01: `day_number(date(1970, 1, 2)) == 1`."""
    return day.toordinal() - EPOCH_ORDINAL


def day_date(number: int) -> datetime.date:
    return datetime.date.fromordinal(int(number) + EPOCH_ORDINAL)


@attrs.frozen(eq=False)
class Extra:
    """A declared extra column: bool, int64 (int and money) or int32 codes into `names` (text)."""

    values: Array
    missing: Array  # bool: the value is empty
    names: tuple[str, ...] | None = None


@attrs.frozen(eq=False)
class Persons:
    person_id: Array | None  # str; None: the ids are "0", "1", …
    scheme: Array  # int8 into SCHEMES
    retired: Array  # bool
    age: Array  # int16, -1 = unknown
    sex: Array  # int8 into SEXES
    region: Array  # int32 into region_names, -1 = none
    region_names: tuple[str, ...]
    resettled: Array  # bool
    grant_person: Array  # int32 row of persons
    grant_identity: Array  # int16 into Columns.identity_names
    grant_since: Array  # int32 day number, NO_DATE = held all along
    chronic_person: Array  # int32
    chronic_disease: Array  # int32 into Columns.disease_names
    extra: Mapping[str, Extra] = attrs.field(factory=dict)

    @property
    def n(self) -> int:
        return len(self.scheme)

    def ids(self) -> Array:
        return self.person_id if self.person_id is not None else np.arange(self.n).astype(str)


@attrs.frozen(eq=False)
class Claims:
    claim_id: Array | None  # str; None: the ids are "0", "1", …
    person: Array  # int32 row of persons
    day: Array  # int32 day number
    kind: Array  # int8 into KINDS
    level: Array  # int8 1..3
    total_cost: Array  # int64 fen
    eligible_cost: Array
    tcm_cost: Array
    material_over_limit: Array
    bed_days: Array  # int32
    grassroots: Array  # bool
    tcm_institution: Array
    referred: Array
    in_province: Array
    in_pooling_area: Array
    direct_settlement: Array
    emergency: Array
    pure_tcm: Array
    designation: Array  # int8 into DESIGNATIONS
    disease_claim: Array  # int32 row of claims
    disease_code: Array  # int32 into Columns.disease_names
    extra: Mapping[str, Extra] = attrs.field(factory=dict)

    @property
    def m(self) -> int:
        return len(self.person)

    def ids(self) -> Array:
        return self.claim_id if self.claim_id is not None else np.arange(self.m).astype(str)


CLAIM_BOOLS = ("grassroots", "tcm_institution", "referred", "in_province", "in_pooling_area", "direct_settlement",
               "emergency", "pure_tcm")
CLAIM_MONEY = ("total_cost", "eligible_cost", "tcm_cost", "material_over_limit")


@attrs.frozen(eq=False)
class Columns:
    persons: Persons
    claims: Claims
    identity_names: tuple[str, ...]
    disease_names: tuple[str, ...]  # canonical disease ids

    def check(self) -> None:
        """Raise ValueError when array lengths or codes are inconsistent (for generated populations)."""
        p, c = self.persons, self.claims
        _same_length("persons", p.n, [p.scheme, p.retired, p.age, p.sex, p.region, p.resettled])
        _same_length("claims", c.m, [c.day, c.kind, c.level, c.bed_days, c.designation,
                                     *(getattr(c, n) for n in CLAIM_BOOLS + CLAIM_MONEY)])
        _same_length("grants", len(p.grant_person), [p.grant_identity, p.grant_since])
        _same_length("chronic", len(p.chronic_person), [p.chronic_disease])
        _same_length("claim diseases", len(c.disease_claim), [c.disease_code])
        if c.m and (c.person.min() < 0 or c.person.max() >= p.n):
            raise ValueError("claims.person must index persons")


def _same_length(what: str, n: int, arrays: Iterable[Array]) -> None:
    if any(len(a) != n for a in arrays):
        raise ValueError(f"{what}: columns of different lengths")


# ---- from records ---------------------------------------------------------------------------------------
def from_dataset(data: Dataset, graph: Graph) -> Columns:
    """Persons and claims as loaded by policy_lang.data -> Columns (ids kept for the output)."""
    identities = tuple(dict.fromkeys([*graph.identities, *(g.identity for p in data.persons
                                                           for g in p.identities)]))
    diseases = tuple(dict.fromkeys([*sorted({c for _t, c in graph.diseases}),
                                    *sorted({d for p in data.persons for d in p.chronic}
                                            | {d for c in data.claims for d in c.diseases})]))
    persons = _persons(data.persons, identities, diseases, graph.columns)
    index = {p.person_id: i for i, p in enumerate(data.persons)}
    claims = _claims(data.claims, index, diseases, graph.columns)
    return Columns(persons, claims, identities, diseases)


def _persons(persons: Sequence[Person], identities: tuple[str, ...], diseases: tuple[str, ...],
             columns: Sequence[ColumnInfo]) -> Persons:
    regions = tuple(dict.fromkeys(p.region for p in persons if p.region is not None))
    region_code = {name: i for i, name in enumerate(regions)}
    ident = {name: i for i, name in enumerate(identities)}
    code = {name: i for i, name in enumerate(diseases)}
    grants = [(i, ident[g.identity], NO_DATE if g.since is None else day_number(g.since))
              for i, p in enumerate(persons) for g in p.identities]
    chronic = [(i, code[d]) for i, p in enumerate(persons) for d in sorted(p.chronic)]
    return Persons(
        person_id=np.array([p.person_id for p in persons], dtype=str),
        scheme=np.array([SCHEMES.index(p.scheme) for p in persons], dtype=np.int8),
        retired=np.array([p.retired for p in persons], dtype=bool),
        age=np.array([-1 if p.age is None else p.age for p in persons], dtype=np.int16),
        sex=np.array([SEXES.index(p.sex or "") for p in persons], dtype=np.int8),
        region=np.array([-1 if p.region is None else region_code[p.region] for p in persons], dtype=np.int32),
        region_names=regions,
        resettled=np.array([p.resettled for p in persons], dtype=bool),
        grant_person=np.array([g[0] for g in grants], dtype=np.int32),
        grant_identity=np.array([g[1] for g in grants], dtype=np.int16),
        grant_since=np.array([g[2] for g in grants], dtype=np.int32),
        chronic_person=np.array([c[0] for c in chronic], dtype=np.int32),
        chronic_disease=np.array([c[1] for c in chronic], dtype=np.int32),
        extra=_extras([p.extra for p in persons], columns, "person"))


def _claims(claims: Sequence[Claim], person_index: Mapping[str, int], diseases: tuple[str, ...],
            columns: Sequence[ColumnInfo]) -> Claims:
    code = {name: i for i, name in enumerate(diseases)}
    pairs = [(i, code[d]) for i, c in enumerate(claims) for d in sorted(c.diseases)]

    def col(name: str, dtype: type) -> Array:
        return np.array([getattr(c, name) for c in claims], dtype=dtype)

    return Claims(
        claim_id=np.array([c.claim_id for c in claims], dtype=str),
        person=np.array([person_index[c.person_id] for c in claims], dtype=np.int32),
        day=np.array([day_number(c.date) for c in claims], dtype=np.int32),
        kind=np.array([KINDS.index(c.kind) for c in claims], dtype=np.int8),
        level=col("hospital_level", np.int8),
        **{name: col(name, np.int64) for name in CLAIM_MONEY},
        bed_days=col("bed_days", np.int32),
        **{name: col(name, bool) for name in CLAIM_BOOLS},
        designation=np.array([DESIGNATIONS.index(c.designation) for c in claims], dtype=np.int8),
        disease_claim=np.array([p[0] for p in pairs], dtype=np.int32),
        disease_code=np.array([p[1] for p in pairs], dtype=np.int32),
        extra=_extras([c.extra for c in claims], columns, "claim"))


def _extras(rows: Sequence[Mapping[str, object]], columns: Sequence[ColumnInfo], entity: str) -> dict[str, Extra]:
    out: dict[str, Extra] = {}
    for info in columns:
        if info.entity != entity:
            continue
        values = [r.get(info.name) for r in rows]
        missing = np.array([v is None for v in values], dtype=bool)
        if info.type == "text":
            code = {name: i for i, name in enumerate(dict.fromkeys(str(v) for v in values if v is not None))}
            codes = np.array([-1 if v is None else code[str(v)] for v in values], dtype=np.int32)
            out[info.name] = Extra(codes, missing, tuple(code))
        else:
            dtype: type = bool if info.type == "bool" else np.int64
            out[info.name] = Extra(np.array([0 if v is None else v for v in values], dtype=dtype), missing)
    return out
