"""The evaluation graph: small frozen data, every lookup resolved, consumed by both evaluators.

Units: money is integer fen, rates are integer parts per million (ppm; 75% = 750_000), counts are ints.
A Graph is a list of layers (in settlement order) and a list of epochs, contiguous date intervals in
which one concrete version of each layer is in force. A layer version holds one Program per
parameter; a Program is a decision list read from the end: the last rule whose predicate holds for
the claim gives the value (rules are ordered so that a more specific rule comes later, and the
checker guarantees that two rules that can hold together either agree or are ordered).
"""

from __future__ import annotations

import datetime
import operator
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import attrs

RATE_ONE = 1_000_000  # 100% in ppm
FEN_PER_YUAN = 100

# The comparison operators of PCompare and PAdmission, as functions, for every evaluator: the `operator`
# functions compare Python values (giving a bool) and NumPy arrays elementwise (giving a bool array).
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@attrs.frozen
class Cite:
    """Where a value came from: the document, the article, and the .pol line that encodes it."""

    document: str | None
    article: str | None
    path: str
    line: int

    def text(self) -> str:
        parts = [p for p in (self.document, self.article) if p]
        return " ".join(parts) if parts else "(no citation)"

    def location(self) -> str:
        return f"{self.path}:{self.line}"


# ---- values: evaluated per claim to an int (fen, ppm or count) ------------------------------------------
@attrs.frozen
class Lit:
    value: int


@attrs.frozen
class Lvl:
    """A value by the claim's hospital level 1/2/3."""

    values: tuple[int, int, int]


@attrs.frozen
class Below:
    """The value the rules below this one give (a claim-time relative change refers to it)."""


@attrs.frozen
class Prev:
    """The deductible charged on the person's previous in-scope inpatient claim this year."""


@attrs.frozen
class Param:
    """A named parameter left unspecified by the policy; supplied with `--set name=value`."""

    name: str


@attrs.frozen
class Op:
    """add | sub | mul (money × rate, rounded half-up to the fen; or rate × rate) | max | min."""

    op: Literal["add", "sub", "mul", "max", "min"]
    left: Val
    right: Val


Val: TypeAlias = Lit | Lvl | Below | Prev | Param | Op


# ---- predicates over a claim and its person ------------------------------------------------------------
@attrs.frozen
class PTrue:
    pass


@attrs.frozen
class PAnd:
    items: tuple[Pred, ...]


@attrs.frozen
class POr:
    items: tuple[Pred, ...]


@attrs.frozen
class PNot:
    item: Pred


@attrs.frozen
class PCompare:
    """A scalar field compared with a constant: field is a claim/person field or a declared column."""

    field: str
    op: Literal["=", "!=", "<", "<=", ">", ">="]
    value: int | str | bool


@attrs.frozen
class PIn:
    field: str
    values: frozenset[int | str | bool]


@attrs.frozen
class PHas:
    """A set field (diseases, chronic, certified = diseases ∩ chronic) holds any / all of values."""

    field: Literal["diseases", "chronic", "certified"]
    values: frozenset[str]
    all: bool


@attrs.frozen
class PNonEmpty:
    """A set field holds anything at all (`certified`: some disease of the claim is certified)."""

    field: Literal["diseases", "chronic", "certified"]


@attrs.frozen
class PHolds:
    """The person holds any of these identities on the claim's date (or in the year, for persons)."""

    identities: frozenset[str]


@attrs.frozen
class PSelected:
    """The identity schedule selected for this layer (by precedence) is one of these."""

    identities: frozenset[str]


@attrs.frozen
class PAdmission:
    """The claim is the n-th in-scope inpatient claim of the person-year in this layer, compared."""

    op: Literal["=", "!=", "<", "<=", ">", ">="]
    value: int


Pred: TypeAlias = (PTrue | PAnd | POr | PNot | PCompare | PIn | PHas | PNonEmpty | PHolds | PSelected
                   | PAdmission)


# ---- programs ------------------------------------------------------------------------------------------
T = TypeVar("T")


@attrs.frozen
class Rule(Generic[T]):
    name: str
    pred: Pred
    value: T
    below: Program[T] | None  # what Below() refers to inside value
    cites: tuple[Cite, ...]


@attrs.frozen
class Program(Generic[T]):
    rules: tuple[Rule[T], ...]


# ---- pricing: how the payable part of the base is paid ------------------------------------------------------
@attrs.frozen
class Tier:
    low: int  # fen
    high: int | None  # fen; None = no upper bound
    rate: int  # ppm


@attrs.frozen
class Flat:
    rate: Val  # ppm


@attrs.frozen
class Tiered:
    """Marginal tiers on the person-year accumulator: `payable` (above the deductible) or `base`."""

    axis: Literal["payable", "base"]
    tiers: tuple[Tier, ...]


@attrs.frozen
class Unit:
    """A fixed amount per unit of a claim column (bed_days × amount), instead of a rate."""

    amount: Val  # fen
    column: str


Pricing: TypeAlias = Flat | Tiered | Unit


@attrs.frozen
class BonusSpec:
    """Extra rate on the part of the payable amount given by a claim column (tcm_cost)."""

    rate: Val  # ppm
    column: str


Period: TypeAlias = Literal["claim", "admission", "year"]


@attrs.frozen
class IdentitySpec:
    precedence: Literal["best", "order"]
    order: tuple[str, ...]  # schedule identities, in declared order (also the tie-break of "best")
    mapping: tuple[tuple[str, str], ...]  # held identity -> schedule identity (treat … as …)


@attrs.frozen
class LayerVersion:
    scope: Pred
    scope_cites: tuple[Cite, ...]
    base_from: tuple[int, ...]  # layers whose payments are subtracted from the eligible cost
    base_plus: tuple[str, ...]  # claim money columns added to the base (material_over_limit)
    base_cites: tuple[Cite, ...]
    identity: IdentitySpec | None
    deductible: Program[Val | None]
    period: Program[Period]
    pricing: Program[Pricing | None]
    bonus: Program[BonusSpec | None]
    cap_claim: Program[Val | None]
    cap_year: Program[Val | None]
    accumulator: Program[str]


@attrs.frozen
class LayerInfo:
    id: str
    title: str
    fund: str
    cites: tuple[Cite, ...]


@attrs.frozen
class Pool:
    """A per-person-year cap shared by adjacent layers with disjoint scopes."""

    id: str
    cap: Val
    layers: tuple[int, ...]
    cites: tuple[Cite, ...]


@attrs.frozen
class Threshold:
    pred: Pred  # on the person (identities held in the year, scheme, …)
    amount: Val  # fen
    cites: tuple[Cite, ...]


@attrs.frozen
class AlertNode:
    id: str
    title: str
    layers: tuple[int, ...]  # burden = total cost − payments of these layers
    where: Pred  # which claims count
    thresholds: tuple[Threshold, ...]  # the first whose predicate holds applies
    cites: tuple[Cite, ...]


@attrs.frozen
class Share:
    identities: frozenset[str]
    rate: Val  # ppm
    cites: tuple[Cite, ...]


@attrs.frozen
class SubsidyNode:
    id: str
    title: str
    amount: Val  # fen per person-year (the premium)
    scope: Pred
    shares: tuple[Share, ...]  # the largest share among held identities applies (就高不重复)
    cites: tuple[Cite, ...]


@attrs.frozen
class TargetNode:
    """A population-level target (a payout ratio) measured by the simulator on any policy's layers."""

    id: str
    title: str
    layers: tuple[str, ...]  # layer ids of the policy being measured
    where: Pred
    minimum: int  # ppm
    by: datetime.date
    cites: tuple[Cite, ...]


@attrs.frozen
class Epoch:
    """Rules in force from start (inclusive) to end (exclusive); None = unbounded."""

    start: datetime.date | None
    end: datetime.date | None
    layers: tuple[LayerVersion | None, ...]  # aligned with Graph.layers; None = not in force
    pools: tuple[Pool, ...]
    alerts: tuple[AlertNode, ...]
    subsidies: tuple[SubsidyNode, ...]
    targets: tuple[TargetNode, ...]
    params: tuple[tuple[str, int | None], ...]  # named parameters in force (None = unspecified)
    documents: tuple[str, ...]  # documents in force, base first


@attrs.frozen
class ColumnInfo:
    name: str
    entity: Literal["claim", "person"]
    type: Literal["bool", "int", "money", "text"]


@attrs.frozen
class Graph:
    policy: str
    title: str
    schemes: tuple[str, ...]
    layers: tuple[LayerInfo, ...]
    funds: tuple[tuple[str, str], ...]  # fund id, title
    epochs: tuple[Epoch, ...]
    identities: tuple[str, ...]  # every identity id the data may carry
    diseases: tuple[tuple[str, str], ...]  # token in data -> canonical disease id
    columns: tuple[ColumnInfo, ...]

    def epoch_at(self, day: datetime.date) -> Epoch:
        for epoch in self.epochs:
            if (epoch.start is None or epoch.start <= day) and (epoch.end is None or day < epoch.end):
                return epoch
        raise LookupError(day)  # pragma: no cover - epochs cover every date

    def layer_index(self, layer_id: str) -> int:
        return next(i for i, layer in enumerate(self.layers) if layer.id == layer_id)
