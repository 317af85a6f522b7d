"""Resolution: a base policy and its chain of amendments, at a date -> one concrete policy.

Documents are applied base first. A statement is in force when its document and every block around
it are in force at the date (`effective … until …`; `until` is the last day in force). A setting for a
parameter that already has a value replaces it; a relative setting (`+10%`, `-100`, `×50%`,
`max(base_value + 10%, 50%)`) changes the value it replaces, at resolution time. A relative setting
in a new rule changes the value below it, at claim time. Every value keeps the citations of the
statements that produced it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs

from policy_lang import ast, vocabulary
from policy_lang.diagnostics import Diagnostic, error
from policy_lang.graph import BonusSpec, Cite, Flat, Lit, Pricing, Tier, Tiered, Unit
from policy_lang.values import (
    NONE,
    Context,
    Kind,
    Lowered,
    NoneVal,
    ParamValue,
    ValueError_,
    has_below,
    lower,
    to_ppm,
)

SLOT_KINDS: dict[str, Kind] = {
    "deductible": "money", "period": "text", "pricing": "rate", "bonus": "rate",
    "cap_claim": "money", "cap_year": "money", "accumulator": "text",
}
RuleKind = Literal["default", "identity", "when", "exception"]
LEVEL = {"default": 0, "identity": 1, "when": 1, "exception": 2}


@attrs.frozen
class ChainDoc:
    policy: ast.Policy
    path: str


@attrs.define
class RSetting:
    value: Any  # Lowered | Pricing | BonusSpec | None | str
    cites: tuple[Cite, ...]
    span: ast.Span


@attrs.define
class RRule:
    key: str
    kind: RuleKind
    name: str | None
    cond: ast.Cond | None  # own condition (identity rules use `identities`)
    identities: frozenset[str]
    over: tuple[str, ...]
    parent: str | None
    settings: dict[str, RSetting]
    cites: tuple[Cite, ...]
    span: ast.Span
    seq: int


@attrs.define
class RLayer:
    id: str
    title: str
    fund: str | None
    cites: tuple[Cite, ...]
    span: ast.Span
    exclusive: list[str]
    scope: ast.Cond | None
    scope_cites: tuple[Cite, ...]
    base_after: tuple[str, ...] | None
    base_plus: tuple[str, ...]
    base_cites: tuple[Cite, ...]
    precedence: Literal["best", "order"]
    identity_order: list[str]
    treats: dict[str, str]
    rules: dict[str, RRule]

    @property
    def default(self) -> RRule:
        return self.rules["default"]


@attrs.define
class RSubsidy:
    id: str
    title: str
    precedence: str
    amount: Lowered | None
    scope: ast.Cond | None
    shares: dict[str, tuple[Lowered, tuple[Cite, ...]]]
    treats: dict[str, str]
    cites: tuple[Cite, ...]
    span: ast.Span


@attrs.define
class RAlert:
    id: str
    title: str
    measure: ast.Measure | None
    thresholds: list[tuple[ast.Cond, Lowered, tuple[Cite, ...], ast.Span]]
    cites: tuple[Cite, ...]
    span: ast.Span


@attrs.frozen
class DocInfo:
    name: str
    document: str | None
    title: str | None
    dated: datetime.date | None
    effective: datetime.date | None
    until: datetime.date | None
    path: str


@attrs.define
class Resolved:
    """One concrete policy at a date."""

    name: str
    title: str
    date: datetime.date | None
    documents: list[DocInfo]  # in force at the date, base first
    schemes: tuple[str, ...]
    identities: dict[str, str]
    regions: dict[str, str]
    diseases: dict[str, str]  # canonical id -> display name
    disease_tokens: dict[str, str]  # token in data -> canonical id
    disease_lists: dict[str, frozenset[str]]
    hospitals: dict[str, tuple[str, tuple[str, ...]]]
    columns: dict[str, ast.ColumnDecl]
    conditions: dict[str, ast.ConditionDef]
    funds: dict[str, tuple[str, tuple[Cite, ...]]]
    params: dict[str, tuple[ParamValue, tuple[Cite, ...], ast.Span]]
    layers: list[RLayer]
    shared_caps: dict[str, tuple[Lowered, tuple[str, ...], tuple[Cite, ...], ast.Span]]
    subsidies: dict[str, RSubsidy]
    alerts: dict[str, RAlert]
    requirements: list[tuple[ast.Requirement, tuple[Cite, ...]]]
    targets: list[tuple[ast.Target, tuple[Cite, ...]]]
    repealed: list[str]

    def layer(self, layer_id: str) -> RLayer | None:
        return next((layer for layer in self.layers if layer.id == layer_id), None)

    def param_value(self, name: str) -> ParamValue | None:
        entry = self.params.get(name)
        return entry[0] if entry else None


def in_force(clauses: ast.Clauses, day: datetime.date | None) -> bool:
    if day is None:
        return True
    if clauses.effective is not None and day < clauses.effective:
        return False
    return not (clauses.until is not None and day > clauses.until)


def doc_in_force(policy: ast.Policy, day: datetime.date | None) -> bool:
    return in_force(ast.Clauses(None, policy.effective, policy.until), day)


def change_dates(chain: Sequence[ChainDoc]) -> list[datetime.date]:
    """Every date at which something in the chain starts or stops being in force."""
    dates: set[datetime.date] = set()
    for doc in chain:
        _collect_dates(doc.policy, dates)
    return sorted(dates)


def _collect_dates(node: object, dates: set[datetime.date]) -> None:
    if isinstance(node, ast.Clauses | ast.Policy):
        if node.effective:
            dates.add(node.effective)
        if node.until:
            dates.add(node.until + datetime.timedelta(days=1))
    if attrs.has(type(node)):
        for field in attrs.fields(type(node)):  # type: ignore[arg-type]
            if field.name != "span":
                _collect_dates(getattr(node, field.name), dates)
    elif isinstance(node, tuple):
        for item in node:
            _collect_dates(item, dates)


# ---- resolution ------------------------------------------------------------------------------------
def empty_resolved(name: str, title: str, day: datetime.date | None) -> Resolved:
    return Resolved(
        name=name, title=title, date=day, documents=[], schemes=(),
        identities=dict(vocabulary.IDENTITIES), regions=dict(vocabulary.REGIONS),
        diseases=dict(vocabulary.DISEASES),
        disease_tokens={**{k: k for k in vocabulary.DISEASES}, **{v: k for k, v in vocabulary.DISEASES.items()}},
        disease_lists={}, hospitals={}, columns={}, conditions={}, funds={
            k: (v, ()) for k, v in vocabulary.FUNDS.items()}, params={}, layers=[], shared_caps={},
        subsidies={}, alerts={}, requirements=[], targets=[], repealed=[])


MAX_LAYERS = 200  # far above any real schedule (the bundled ones have at most 7)


def resolve(chain: Sequence[ChainDoc], day: datetime.date | None, diags: list[Diagnostic]) -> Resolved:
    """Apply every document of `chain` (base first) in force on `day`; append problems to diags."""
    main = chain[-1].policy
    res = empty_resolved(main.name, main.title or main.name, day)
    repealed = _repeals(chain, day)
    for doc in chain:
        # `repeal NAME` names a policy; `repeal "文号"` names a document number.
        if not doc_in_force(doc.policy, day) or {doc.policy.name, doc.policy.document} & repealed:
            continue
        _Applier(res, doc, day, diags).apply()
    res.repealed = sorted(repealed)
    return res


def _repeals(chain: Sequence[ChainDoc], day: datetime.date | None) -> set[str]:
    out: set[str] = set()
    for doc in chain:
        if not doc_in_force(doc.policy, day):
            continue
        for item in doc.policy.items:
            if isinstance(item, ast.Repeal) and in_force(item.clauses, day):
                out.add(item.target)
    return out


class _Applier:
    """Applies one document's statements to the resolved policy being built."""

    def __init__(self, res: Resolved, doc: ChainDoc, day: datetime.date | None, diags: list[Diagnostic]):
        self.res, self.doc, self.day, self.diags = res, doc, day, diags
        self.policy = doc.policy
        self.document = self.policy.document or self.policy.source or self.policy.name
        self.seq = 0
        self.too_many_layers = False

    def cite(self, span: ast.Span, *sources: str | None) -> Cite:
        # Without a document number, the policy's own `source` (an assumed schedule) is the citation.
        article = next((s for s in sources if s), None)
        return Cite(self.document, article, span.path, span.line)

    def fail(self, message: str, span: ast.Span, hint: str | None = None) -> None:
        self.diags.append(error(message, span, hint))

    def apply(self) -> None:
        p = self.policy
        self.res.documents.append(DocInfo(p.name, p.document, p.title, p.dated, p.effective, p.until,
                                          self.doc.path))
        if p.schemes:
            self.res.schemes = tuple(dict.fromkeys((*self.res.schemes, *(canon(x) for x in p.schemes))))
        self.res.title = p.title or self.res.title
        self.res.name = p.name
        # Declarations first, so a layer may use a parameter or a list declared further down.
        declarations = (ast.IdentityDecl, ast.RegionDecl, ast.DiseaseList, ast.HospitalList, ast.ColumnDecl,
                        ast.FundDecl, ast.Param, ast.ConditionDef)
        ordered: list[ast.PolicyItem] = [i for i in p.items if isinstance(i, declarations)]
        ordered += [i for i in p.items if not isinstance(i, declarations)]
        for item in ordered:
            if in_force(item.clauses, self.day):
                self._item(item)

    def _item(self, item: ast.PolicyItem) -> None:
        match item:
            case ast.IdentityDecl(name, title):
                self.res.identities[name] = title or name
            case ast.RegionDecl(name, title):
                self.res.regions[name] = title or name
            case ast.DiseaseList():
                self._disease_list(item)
            case ast.HospitalList(name, _title, designation, hospitals):
                self.res.hospitals[name] = (designation, hospitals)
            case ast.ColumnDecl(name):
                self.res.columns[name] = item
            case ast.FundDecl(name, title):
                self.res.funds[name] = (title or name, (self.cite(item.span, item.clauses.source),))
            case ast.Param():
                self._param(item)
            case ast.ConditionDef(name):
                self.res.conditions[name] = item
            case ast.Layer():
                self._layer(item)
            case ast.RemoveLayer(name):
                if self.res.layer(name) is None:
                    self.fail(f"no layer `{name}` to remove", item.span)
                self.res.layers = [layer for layer in self.res.layers if layer.id != name]
            case ast.SharedCap(name, value, layers):
                low = self.lower(value, "money", Context(params=self.res.param_value), item.span)
                cites = (self.cite(item.span, item.clauses.source),)
                if low is not None:
                    self.res.shared_caps[name] = (low, layers, cites, item.span)
            case ast.Subsidy():
                self._subsidy(item)
            case ast.Alert():
                self._alert(item)
            case ast.Requirement():
                self.res.requirements.append((item, (self.cite(item.span, item.clauses.source),)))
            case ast.Target():
                if isinstance(item.minimum, ast.Percent):
                    try:  # compile converts it later: `at least 1E-301%` raised ValueError_ there (a traceback)
                        to_ppm(item.minimum.value, item.minimum.span)
                    except ValueError_ as exc:
                        self.diags.append(exc.diag)
                self.res.targets.append((item, (self.cite(item.span, item.clauses.source),)))
            case ast.Test() | ast.Repeal():
                pass

    # -- vocabulary and parameters ----------------------------------------------------------------------
    def _disease_list(self, item: ast.DiseaseList) -> None:
        members: set[str] = set()
        for entry in item.entries:
            if entry.is_name and entry.ref in self.res.disease_lists:
                members |= self.res.disease_lists[entry.ref]
                continue
            if entry.is_name and entry.ref not in self.res.diseases:
                self.fail(f"unknown disease or disease list `{entry.ref}`", entry.span,
                          _suggest(entry.ref, [*self.res.diseases, *self.res.disease_lists]))
                continue
            canonical = entry.ref
            self.res.diseases.setdefault(canonical, canonical)
            for token in (canonical, *entry.aliases):
                known = self.res.disease_tokens.get(token)
                if known is not None and known != canonical:
                    self.fail(f"`{token}` already names the disease `{known}`", entry.span)
                    continue
                self.res.disease_tokens[token] = canonical
            members.add(canonical)
        self.res.disease_lists[item.name] = frozenset(members)

    def _param(self, item: ast.Param) -> None:
        cites = (self.cite(item.span, item.clauses.source),)
        if item.value is None:
            kind = _PARAM_TYPES.get(item.type or "")
            if kind is None:
                self.fail(f"unknown parameter type `{item.type}`", item.span,
                          "types: money, rate, count, text, bool")
                return
            self.res.params[item.name] = (ParamValue(kind, None, True), cites, item.span)
            return
        value = _param_value(item, self.fail)
        if value is not None:
            self.res.params[item.name] = (value, cites, item.span)

    # -- layers ---------------------------------------------------------------------------------------
    def _layer(self, item: ast.Layer) -> None:
        layer = self.res.layer(item.name)
        cite = self.cite(item.span, item.clauses.source)
        if layer is None:
            layer = self._new_layer(item, cite)
            if layer is None:
                return
        else:
            if item.fund:
                layer.fund = item.fund
            if item.title:
                layer.title = item.title
            layer.cites = (*layer.cites, cite)
            if item.after or item.before:
                self.res.layers.remove(layer)
                self._place(layer, item)
        layer.exclusive = list(dict.fromkeys((*layer.exclusive, *item.exclusive)))
        self._block(layer, layer.default, item.items, (item.clauses.source,))

    def _new_layer(self, item: ast.Layer, cite: Cite) -> RLayer | None:
        if len(self.res.layers) >= MAX_LAYERS:
            # Robustness: layer look-ups here and settlement order in compile are quadratic to cubic
            # in the layers; 10,000 layers ran for hours. Refuse (once per document) past the bound.
            if not self.too_many_layers:
                self.fail(f"too many layers (more than {MAX_LAYERS})", item.span)
            self.too_many_layers = True
            return None
        default = RRule("default", "default", None, None, frozenset(), (), None, {}, (cite,), item.span, 0)
        layer = RLayer(item.name, item.title or item.name, item.fund, (cite,), item.span, [], None, (), None,
                       (), (), "order", [], {}, {"default": default})
        if item.fund is None:
            self.fail(f"new layer `{item.name}` needs a fund", item.span,
                      "write `layer NAME \"title\" fund FUND { … }`")
        self._place(layer, item)
        return layer

    def _place(self, layer: RLayer, item: ast.Layer) -> None:
        anchor = item.after or item.before
        if anchor is None:
            self.res.layers.append(layer)
            return
        idx = next((i for i, other in enumerate(self.res.layers) if other.id == anchor), None)
        if idx is None:
            self.fail(f"unknown layer `{anchor}`", item.span, _suggest(anchor, [x.id for x in self.res.layers]))
            self.res.layers.append(layer)
            return
        self.res.layers.insert(idx + 1 if item.after else idx, layer)

    def _block(self, layer: RLayer, rule: RRule, items: Iterable[ast.LayerItem],
               sources: tuple[str | None, ...]) -> None:
        for it in items:
            if not in_force(it.clauses, self.day):
                continue
            match it:
                case ast.RuleBlock():
                    self._rule_block(layer, rule, it, sources)
                case ast.IdentityBlock():
                    self._identity_block(layer, rule, it, sources)
                case ast.Treat(ids, target):
                    for raw in ids:
                        layer.treats[canon(raw)] = canon(target)
                case ast.RemoveRule(name):
                    self._remove_rule(layer, name, it.span)
                case ast.Scope(cond):
                    self._layer_only(rule, it)
                    layer.scope, layer.scope_cites = cond, (self.cite(it.span, it.clauses.source, *sources),)
                case ast.Base(after, plus):
                    self._layer_only(rule, it)
                    layer.base_after, layer.base_plus = after, plus
                    layer.base_cites = (self.cite(it.span, it.clauses.source, *sources),)
                case _:
                    self._setting(layer, rule, it, sources)

    def _layer_only(self, rule: RRule, it: ast.Scope | ast.Base) -> None:
        if rule.kind != "default":
            what = "scope" if isinstance(it, ast.Scope) else "base"
            self.fail(f"`{what}` belongs to the layer, not to a rule or identity", it.span)

    def _rule_block(self, layer: RLayer, parent: RRule, block: ast.RuleBlock,
                    sources: tuple[str | None, ...]) -> None:
        key = block.name or f"when@{block.span.path}:{block.span.line}:{block.span.column}"
        if parent.kind != "default" and block.name:
            key = f"{block.name}@{parent.key}"
        existing = layer.rules.get(key)
        cite = self.cite(block.span, block.clauses.source, *sources)
        if existing is None:
            self.seq += 1
            kind: RuleKind = "exception" if block.kind == "exception" else "when"
            existing = RRule(key, kind, block.name, block.cond, frozenset(), block.over,
                             None if parent.kind == "default" else parent.key, {}, (cite,), block.span,
                             self.seq * 1000 + len(layer.rules))
            layer.rules[key] = existing
        else:
            existing.cond, existing.over = block.cond, block.over or existing.over
            existing.cites = (*existing.cites, cite)
        self._block(layer, existing, block.items, (block.clauses.source, *sources))

    def _identity_block(self, layer: RLayer, parent: RRule, block: ast.IdentityBlock,
                        sources: tuple[str | None, ...]) -> None:
        if parent.kind != "default":
            self.fail("`by identity` belongs to the layer, not inside a rule", block.span)
            return
        if block.precedence:
            layer.precedence = block.precedence
        srcs = (block.clauses.source, *sources)
        for entry in block.entries:
            if not in_force(entry.clauses, self.day):
                continue
            for ident in entry.identities:
                self._identity_entry(layer, canon(ident), entry, (entry.clauses.source, *srcs))

    def _identity_entry(self, layer: RLayer, ident: str, entry: ast.IdentityEntry,
                        sources: tuple[str | None, ...]) -> None:
        key = f"identity:{ident}"
        rule = layer.rules.get(key)
        cite = self.cite(entry.span, *sources)
        if rule is None:
            self.seq += 1
            rule = RRule(key, "identity", ident, None, frozenset({ident}), (), None, {}, (cite,), entry.span,
                         self.seq * 1000 + len(layer.rules))
            layer.rules[key] = rule
            layer.identity_order.append(ident)
        else:
            rule.cites = (*rule.cites, cite)
        self._block(layer, rule, entry.items, sources)

    def _remove_rule(self, layer: RLayer, name: str, span: ast.Span) -> None:
        keys = [k for k, r in layer.rules.items() if r.name == name and r.kind != "default"]
        if not keys:
            self.fail(f"no rule `{name}` in layer `{layer.id}` to remove", span,
                      _suggest(name, [r.name for r in layer.rules.values() if r.name]))
        for key in keys:
            for child in [k for k, r in layer.rules.items() if r.parent == key]:
                del layer.rules[child]
            del layer.rules[key]
            if key.startswith("identity:"):
                layer.identity_order.remove(key.split(":", 1)[1])

    # -- settings -------------------------------------------------------------------------------------
    def _context(self, layer: RLayer, rule: RRule, slot: str, allow_previous: bool = False) -> Context:
        replaced = rule.settings.get(slot)
        general = layer.default.settings.get(slot) if rule.kind != "default" else None
        return Context(
            replaced=replaced.value if replaced and not isinstance(replaced.value, (Flat, Tiered, Unit))
            else None,
            general=general.value if general and not isinstance(general.value, (Flat, Tiered, Unit)) else None,
            in_rule=rule.kind != "default", allow_previous=allow_previous, params=self.res.param_value)

    def lower(self, value: ast.Value, want: Kind, ctx: Context, span: ast.Span) -> Lowered | None:
        try:
            low = lower(value, want, ctx)
        except ValueError_ as exc:
            self.diags.append(exc.diag)
            return None
        if _too_large(low):
            self.fail(_TOO_LARGE, span, _TOO_LARGE_HINT)
            return None
        return low

    def _put(self, rule: RRule, slot: str, value: Any, it: ast.Setting, sources: tuple[str | None, ...],
             keeps_old: bool) -> None:
        cite = self.cite(it.span, it.clauses.source, *sources)
        old = rule.settings.get(slot)
        cites = (*old.cites, cite) if old is not None and keeps_old else (cite,)
        rule.settings[slot] = RSetting(value, cites, it.span)

    def _setting(self, layer: RLayer, rule: RRule, it: ast.LayerItem, sources: tuple[str | None, ...]) -> None:
        match it:
            case ast.Deductible(value, period):
                low = self.lower(value, "money", self._context(layer, rule, "deductible", True), it.span)
                if low is not None:
                    self._put(rule, "deductible", low, it, sources, _is_relative(value))
                if period is not None:
                    self._put(rule, "period", period, it, sources, False)
            case ast.Rate(value):
                self._rate(layer, rule, it, value, sources)
            case ast.Tiers():
                tiered = self._tiers(it)
                if tiered is not None:
                    self._put(rule, "pricing", tiered, it, sources, False)
            case ast.UnitRate(value, column):
                low = self.lower(value, "money", self._context(layer, rule, "unit"), it.span)
                if low is not None and has_below(low):
                    self.fail("an amount per unit cannot change the one below it; write the amount", it.span)
                elif low is not None and not isinstance(low, NoneVal):
                    self._put(rule, "pricing", Unit(low, column), it, sources, False)
            case ast.Bonus(value, column):
                low = self.lower(value, "rate", self._context(layer, rule, "bonus"), it.span)
                if isinstance(low, NoneVal) or low is None:
                    if low is not None:
                        self._put(rule, "bonus", None, it, sources, False)
                elif has_below(low):
                    self.fail("a bonus rate cannot change the one below it; write the rate", it.span)
                elif column is None:
                    self.fail("a bonus rate needs the part it applies to: `bonus 10% on tcm_cost`", it.span)
                else:
                    self._put(rule, "bonus", BonusSpec(low, column), it, sources, False)
            case ast.Cap(value, period):
                slot = "cap_claim" if period in ("claim", "admission") else "cap_year"
                if period is None and not isinstance(value, ast.NoneValue):
                    self.fail("say whether the cap is `per claim` or `per year`", it.span)
                    return
                low = self.lower(value, "money", self._context(layer, rule, slot), it.span)
                if low is not None:
                    self._put(rule, slot, low, it, sources, _is_relative(value))
            case ast.Accumulate(name):
                self._put(rule, "accumulator", name, it, sources, False)

    def _rate(self, layer: RLayer, rule: RRule, it: ast.Rate, value: ast.Value,
              sources: tuple[str | None, ...]) -> None:
        old = rule.settings.get("pricing")
        ctx = self._context(layer, rule, "pricing")
        general = layer.default.settings.get("pricing")
        if general is not None and isinstance(general.value, Flat) and rule.kind != "default":
            ctx = attrs.evolve(ctx, general=general.value.rate)
        if old is not None and isinstance(old.value, Flat):
            ctx = attrs.evolve(ctx, replaced=old.value.rate)
        elif old is not None and isinstance(old.value, Tiered) and _is_relative(value):
            tiers = []
            for tier in old.value.tiers:
                low = self.lower(value, "rate", attrs.evolve(ctx, replaced=Lit(tier.rate)), it.span)
                if not isinstance(low, Lit):
                    if low is not None:
                        self.fail("a tier's rate must be a plain rate", it.span)
                    return
                tiers.append(attrs.evolve(tier, rate=low.value))
            self._put(rule, "pricing", Tiered(old.value.axis, tuple(tiers)), it, sources, True)
            return
        low = self.lower(value, "rate", ctx, it.span)
        if low is None:
            return
        if isinstance(low, NoneVal):
            self.fail("a rate cannot be none", it.span)
            return
        self._put(rule, "pricing", Flat(low), it, sources, _is_relative(value))

    def _tiers(self, it: ast.Tiers) -> Tiered | None:
        ctx = Context(params=self.res.param_value)
        out: list[Tier] = []
        for tier in it.tiers:
            low = self.lower(tier.low, "money", ctx, tier.span)
            high = self.lower(tier.high, "money", ctx, tier.span) if tier.high is not None else None
            rate = self.lower(tier.rate, "rate", ctx, tier.span)
            if not isinstance(low, Lit) or not isinstance(rate, Lit) or (
                    tier.high is not None and not isinstance(high, Lit)):
                if low is not None and rate is not None:
                    self.fail("tier bounds and rates must be plain amounts and rates", tier.span)
                return None
            out.append(Tier(low.value, high.value if isinstance(high, Lit) else None, rate.value))
        return Tiered(it.axis, tuple(out))

    # -- subsidies and alerts -----------------------------------------------------------------------------
    def _subsidy(self, item: ast.Subsidy) -> None:
        cite = self.cite(item.span, item.clauses.source)
        sub = self.res.subsidies.get(item.name)
        if sub is None:
            sub = RSubsidy(item.name, item.title or item.name, item.precedence or "best", None, None, {}, {},
                           (cite,), item.span)
            self.res.subsidies[item.name] = sub
        else:
            sub.cites = (*sub.cites, cite)
            sub.precedence = item.precedence or sub.precedence
        ctx = Context(params=self.res.param_value)
        for it in item.items:
            if not in_force(it.clauses, self.day):
                continue
            c = (self.cite(it.span, it.clauses.source, item.clauses.source),)
            match it:
                case ast.SubsidyAmount(value):
                    sub.amount = self.lower(value, "money", ctx, it.span)
                case ast.Scope(cond):
                    sub.scope = cond
                case ast.Share(ids, value):
                    low = self.lower(value, "rate", ctx, it.span)
                    if low is not None:
                        for ident in ids:
                            sub.shares[canon(ident)] = (low, c)
                case ast.Treat(ids, target):
                    for raw in ids:
                        sub.treats[canon(raw)] = canon(target)

    def _alert(self, item: ast.Alert) -> None:
        cite = self.cite(item.span, item.clauses.source)
        alert = RAlert(item.name, item.title or item.name, None, [], (cite,), item.span)
        ctx = Context(params=self.res.param_value)
        for it in item.items:
            if not in_force(it.clauses, self.day):
                continue
            if isinstance(it, ast.Measure):
                alert.measure = it
            else:
                low = self.lower(it.value, "money", ctx, it.span)
                if low is not None:
                    alert.thresholds.append((it.cond, low, (self.cite(it.span, it.clauses.source,
                                                                      item.clauses.source),), it.span))
        self.res.alerts[item.name] = alert


_PARAM_TYPES: dict[str, Kind] = {
    "money": "money", "rate": "rate", "count": "count", "text": "text", "bool": "bool",
    "金额": "money", "比例": "rate", "数量": "count", "文本": "text", "布尔": "bool",
}


def _param_value(item: ast.Param, fail: Callable[[str, ast.Span, str | None], None]) -> ParamValue | None:
    declared = _PARAM_TYPES.get(item.type or "") if item.type else None
    if item.type and declared is None:
        fail(f"unknown parameter type `{item.type}`", item.span, "types: money, rate, count, text, bool")
        return None
    value = item.value
    kind: Kind
    raw: Decimal | str | bool | None
    match value:
        case ast.Amount(v, is_int):
            kind, raw = ("number" if is_int else "money"), v
        case ast.Percent(v):
            kind, raw = "rate", v
        case ast.Text(v):
            kind, raw = "text", v
        case ast.Bool(v):
            kind, raw = "bool", v
        case ast.NoneValue():
            kind, raw = "none", None
        case _:
            fail("a parameter's value must be a plain amount, rate, text, true/false or none",
                 item.span, None)
            return None
    if declared is not None and kind != "none" and not (
            kind == declared or (kind == "number" and declared in ("money", "count"))):
        fail(f"parameter `{item.name}` is declared {declared} but its value is {kind}", item.span, None)
        return None
    if isinstance(raw, Decimal) and abs(raw) * (10_000 if kind == "rate" else 100) > MAX_MAGNITUDE:
        fail(_TOO_LARGE, item.span, _TOO_LARGE_HINT)
        return None
    return ParamValue(declared or kind, raw)


# Robustness: the vector engine computes in 64-bit integers; a huge literal or folded constant
# (`deductible 99999999999999999999999`, `param d = 1e30`, `× 1000% × 1000% × …`) crashed it with
# OverflowError. No real amount (in fen) or rate (in millionths) comes near this bound.
MAX_MAGNITUDE = 10**12
_TOO_LARGE = "value too large"
_TOO_LARGE_HINT = "amounts are at most 10,000,000,000 yuan and rates at most 100,000,000%"


def _too_large(value: object) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            if abs(v) > MAX_MAGNITUDE:
                return True
        elif isinstance(v, tuple):
            stack.extend(v)
        elif attrs.has(type(v)):
            stack.extend(getattr(v, f.name) for f in attrs.fields(type(v)))  # type: ignore[arg-type]
    return False


def _is_relative(value: ast.Value) -> bool:
    if isinstance(value, ast.Relative):
        return True
    if isinstance(value, ast.Ref) and value.which == "base_value":
        return True
    if isinstance(value, ast.BinOp):
        return _is_relative(value.left) or _is_relative(value.right)
    if isinstance(value, ast.Call):
        return any(_is_relative(a) for a in value.args)
    return False


def canon(name: str) -> str:
    """An id written in Chinese (低保对象, 居民) -> its id (dibao, resident)."""
    return vocabulary.VALUE_ALIASES.get(name, name)


def _suggest(name: str, known: Iterable[str]) -> str | None:
    from policy_lang.diagnostics import did_you_mean

    return did_you_mean(name, known)


def pricing_of(rule: RRule) -> Pricing | None:
    s = rule.settings.get("pricing")
    return s.value if s is not None else None


def is_none(value: object) -> bool:
    return value is None or isinstance(value, NoneVal) or value is NONE
