"""AST of a .pol file: frozen attrs nodes, children in tuples, the source span last (not compared)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Literal, TypeAlias

import attrs


@attrs.frozen
class Span:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


NO_SPAN = Span("<none>", 0, 0, 0, 0)


def _span() -> Span:
    span: Span = attrs.field(default=NO_SPAN, eq=False, repr=False)
    return span


# ---- values -------------------------------------------------------------------------------------
@attrs.frozen
class Amount:
    """A number written without `%`: yuan in a money slot, a count elsewhere (`1.2万元` -> 12000)."""

    value: Decimal
    is_int: bool
    span: Span = _span()


@attrs.frozen
class Percent:
    value: Decimal  # percentage points: 62.5 for 62.5%
    span: Span = _span()


@attrs.frozen
class ByLevel:
    values: tuple[Value, Value, Value]
    span: Span = _span()


@attrs.frozen
class NoneValue:
    span: Span = _span()


@attrs.frozen
class Text:
    value: str
    span: Span = _span()


@attrs.frozen
class Bool:
    value: bool
    span: Span = _span()


@attrs.frozen
class Ref:
    """`base_value` (the value replaced), `general` (the layer default) or `previous_deductible`."""

    which: Literal["base_value", "general", "previous_deductible"]
    span: Span = _span()


@attrs.frozen
class ParamRef:
    name: str
    span: Span = _span()


@attrs.frozen
class BinOp:
    op: Literal["+", "-", "×"]
    left: Value
    right: Value
    span: Span = _span()


@attrs.frozen
class Call:
    fn: Literal["max", "min"]
    args: tuple[Value, Value]
    span: Span = _span()


@attrs.frozen
class Relative:
    """`+10%`, `-100`, `×50%`: a change to the value that would otherwise apply."""

    op: Literal["+", "-", "×"]
    operand: Value
    span: Span = _span()


Value: TypeAlias = (
    Amount | Percent | ByLevel | NoneValue | Text | Bool | Ref | ParamRef | BinOp | Call | Relative
)


# ---- conditions ---------------------------------------------------------------------------------
@attrs.frozen
class Lit:
    """A literal in a condition: a name (id), a string, or a number."""

    kind: Literal["name", "string", "int", "money", "percent", "none", "bool"]
    text: str
    span: Span = _span()


@attrs.frozen
class Compare:
    field: str
    op: str
    value: Lit
    span: Span = _span()


@attrs.frozen
class Member:
    field: str
    values: tuple[Lit, ...]
    negated: bool
    span: Span = _span()


@attrs.frozen
class Has:
    field: str
    values: tuple[Lit, ...]
    all: bool
    span: Span = _span()


@attrs.frozen
class Flag:
    name: str
    span: Span = _span()


@attrs.frozen
class Always:
    span: Span = _span()


@attrs.frozen
class And:
    items: tuple[Cond, ...]
    span: Span = _span()


@attrs.frozen
class Or:
    items: tuple[Cond, ...]
    span: Span = _span()


@attrs.frozen
class Not:
    item: Cond
    span: Span = _span()


Cond: TypeAlias = Compare | Member | Has | Flag | Always | And | Or | Not


# ---- statement clauses --------------------------------------------------------------------------
@attrs.frozen
class Clauses:
    source: str | None = None
    effective: datetime.date | None = None
    until: datetime.date | None = None
    source_span: Span = _span()


NO_CLAUSES = Clauses()

Period: TypeAlias = Literal["claim", "admission", "year"]


# ---- layer settings -----------------------------------------------------------------------------
@attrs.frozen
class Scope:
    cond: Cond
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Base:
    after: tuple[str, ...] | None
    plus: tuple[str, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Deductible:
    value: Value
    period: Period | None
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Rate:
    value: Value
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Tier:
    low: Value
    high: Value | None  # None: no upper bound ("above")
    rate: Value
    span: Span = _span()


@attrs.frozen
class Tiers:
    axis: Literal["payable", "base"]
    tiers: tuple[Tier, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class UnitRate:
    value: Value
    column: str
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Bonus:
    value: Value
    column: str | None
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Cap:
    value: Value
    period: Period | None
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Accumulate:
    name: str
    clauses: Clauses
    span: Span = _span()


Setting: TypeAlias = Scope | Base | Deductible | Rate | Tiers | UnitRate | Bonus | Cap | Accumulate


@attrs.frozen
class RuleBlock:
    kind: Literal["when", "rule", "exception"]
    name: str | None
    cond: Cond
    over: tuple[str, ...]
    items: tuple[LayerItem, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class IdentityEntry:
    identities: tuple[str, ...]
    items: tuple[LayerItem, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class IdentityBlock:
    precedence: Literal["best", "order"] | None
    entries: tuple[IdentityEntry, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Treat:
    identities: tuple[str, ...]
    as_: str
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class RemoveRule:
    name: str
    clauses: Clauses
    span: Span = _span()


LayerItem: TypeAlias = Setting | RuleBlock | IdentityBlock | Treat | RemoveRule


@attrs.frozen
class Layer:
    name: str
    title: str | None
    fund: str | None
    after: str | None
    before: str | None
    exclusive: tuple[str, ...]
    items: tuple[LayerItem, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class RemoveLayer:
    name: str
    clauses: Clauses
    span: Span = _span()


# ---- declarations -------------------------------------------------------------------------------
@attrs.frozen
class IdentityDecl:
    name: str
    title: str | None
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class RegionDecl:
    name: str
    title: str | None
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class DiseaseEntry:
    ref: str
    is_name: bool  # an id (uremia) or a list name, rather than a Chinese disease name
    aliases: tuple[str, ...]
    span: Span = _span()


@attrs.frozen
class DiseaseList:
    name: str
    title: str | None
    entries: tuple[DiseaseEntry, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class HospitalList:
    name: str
    title: str | None
    designation: str
    hospitals: tuple[str, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class ColumnDecl:
    name: str
    entity: Literal["person", "claim"]
    type: str
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class FundDecl:
    name: str
    title: str | None
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Param:
    name: str
    type: str | None
    value: Value | None  # None: unspecified
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class ConditionDef:
    name: str
    title: str | None
    cond: Cond
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class SharedCap:
    name: str
    value: Value
    layers: tuple[str, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Share:
    identities: tuple[str, ...]
    value: Value
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class SubsidyAmount:
    value: Value
    clauses: Clauses
    span: Span = _span()


SubsidyItem: TypeAlias = SubsidyAmount | Scope | Share | Treat


@attrs.frozen
class Subsidy:
    name: str
    title: str | None
    precedence: Literal["best", "order"] | None
    items: tuple[SubsidyItem, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Measure:
    after: tuple[str, ...]
    where: Cond
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Threshold:
    cond: Cond
    value: Value
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Alert:
    name: str
    title: str | None
    items: tuple[Measure | Threshold, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class ReqExists:
    span: Span = _span()


@attrs.frozen
class ReqTiered:
    span: Span = _span()


@attrs.frozen
class ReqRate:
    op: str
    value: Value
    span: Span = _span()


@attrs.frozen
class ReqCap:
    op: str
    value: Value
    or_none: bool
    span: Span = _span()


@attrs.frozen
class ReqNoCap:
    span: Span = _span()


@attrs.frozen
class ReqRateRelation:
    left: Cond
    op: str
    right: Cond
    span: Span = _span()


ReqProp: TypeAlias = ReqExists | ReqTiered | ReqRate | ReqCap | ReqNoCap | ReqRateRelation


@attrs.frozen
class Requirement:
    layer: str
    prop: ReqProp
    schemes: tuple[str, ...]
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Target:
    name: str
    title: str | None
    layers: tuple[str, ...]
    where: Cond
    minimum: Value
    by: datetime.date
    clauses: Clauses
    span: Span = _span()


@attrs.frozen
class Repeal:
    target: str
    is_name: bool
    clauses: Clauses
    span: Span = _span()


# ---- in-file tests ------------------------------------------------------------------------------
@attrs.frozen
class Field:
    name: str
    value: str  # the value as it would be written in a data file ("tekun;dibao@2023-03-01")
    span: Span = _span()


@attrs.frozen
class TestRecord:
    kind: Literal["person", "claim"]
    name: str
    fields: tuple[Field, ...]
    span: Span = _span()


@attrs.frozen
class Expect:
    kind: Literal["claim", "person"]
    name: str
    year: int | None
    fields: tuple[Field, ...]
    span: Span = _span()


@attrs.frozen
class ExpectError:
    message: str
    span: Span = _span()


@attrs.frozen
class TestAsOf:
    date: datetime.date
    span: Span = _span()


@attrs.frozen
class TestSet:
    name: str
    value: Value
    span: Span = _span()


TestItem: TypeAlias = TestRecord | Expect | ExpectError | TestAsOf | TestSet


@attrs.frozen
class Test:
    title: str
    items: tuple[TestItem, ...]
    clauses: Clauses
    span: Span = _span()


PolicyItem: TypeAlias = (
    IdentityDecl
    | RegionDecl
    | DiseaseList
    | HospitalList
    | ColumnDecl
    | FundDecl
    | Param
    | ConditionDef
    | Layer
    | RemoveLayer
    | SharedCap
    | Subsidy
    | Alert
    | Requirement
    | Target
    | Test
    | Repeal
)


@attrs.frozen
class Policy:
    name: str
    title: str | None
    amends: str | None
    document: str | None
    dated: datetime.date | None
    effective: datetime.date | None
    until: datetime.date | None
    schemes: tuple[str, ...]
    source: str | None
    items: tuple[PolicyItem, ...]
    span: Span = _span()


@attrs.frozen
class Import:
    path: str
    alias: str | None
    span: Span = _span()


@attrs.frozen
class Comment:
    text: str
    line: int
    column: int


@attrs.frozen
class File:
    path: str
    imports: tuple[Import, ...]
    policy: Policy
    comments: tuple[Comment, ...] = attrs.field(default=(), eq=False, repr=False)
