"""Structural diff of two policy versions: every changed value of the resolved policies, with citations."""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import jinja2

from policy_lang import ast, vocabulary
from policy_lang.check import CheckedPolicy
from policy_lang.compile import SLOT_DEFAULTS
from policy_lang.graph import Below, BonusSpec, Cite, Flat, Lit, Op, Tiered, Unit
from policy_lang.resolve import SLOT_KINDS, DocInfo, RAlert, Resolved, RLayer, RRule, RSetting, RSubsidy
from policy_lang.values import Kind, Lowered, NoneVal, ParamValue, show

if TYPE_CHECKING:
    from policy_lang.diff_impact import Behaviour

FORMAT: Final = "polc-diff/1"
NOT_SET: Final = "(not set)"
SLOTS: Final = ("deductible", "period", "pricing", "bonus", "cap_claim", "cap_year", "accumulator")
SLOT_LABELS: Final = {
    "deductible": "deductible", "period": "deductible period", "pricing": "rate", "bonus": "bonus",
    "cap_claim": "cap per claim", "cap_year": "cap per year", "accumulator": "accumulator",
}
SET_FIELDS: Final = frozenset({"diseases", "chronic", "certified", "identities"})
DISEASE_FIELDS: Final = frozenset({"diseases", "chronic", "certified"})
_SYMBOLS: Final = {"add": "+", "sub": "-", "mul": "×"}
_NAME = re.compile(r"\w+")
K = TypeVar("K")
V = TypeVar("V")
C = TypeVar("C", RSubsidy, RAlert)


# ---- records ---------------------------------------------------------------------------------------
@attrs.frozen
class Change:
    """One change, self-contained: which slot of which rule (or which policy item) and its two values.

    `layer`, `rule` (a semantic rule key: "default", "identity tekun", "employee/retired",
    "when admission >= 2"), `parameter` (a slot such as "cap_year", or a sub-item such as
    "share:tekun") and `item` (a policy-level id: fund, list, document, subsidy …) locate it; `old` and
    `new` are the values as a policy writer writes them (None: absent). `old_value` / `new_value` keep
    the resolved objects (RSetting, RRule, RLayer, …) so that a later step can apply this change alone.
    """

    kind: str
    layer: str | None = None
    rule: str | None = None
    parameter: str | None = None
    item: str | None = None
    old: str | None = None
    new: str | None = None
    old_cites: tuple[Cite, ...] = ()
    new_cites: tuple[Cite, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    old_value: Any = attrs.field(default=None, eq=False, repr=False)
    new_value: Any = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Side:
    """One of the two versions compared: the policy resolved at `as_of`."""

    policy: str
    title: str
    path: str
    as_of: datetime.date | None
    documents: tuple[DocInfo, ...]
    resolved: Resolved = attrs.field(eq=False, repr=False)


@attrs.frozen
class StructuralDiff:
    old: Side
    new: Side
    changes: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        return not self.changes


# ---- entry point -------------------------------------------------------------------------------------
def default_as_of(checked: CheckedPolicy) -> datetime.date | None:
    """The effective date of the policy's own document, else the start of its latest period."""
    return checked.chain[-1].policy.effective or checked.periods[-1].start


def side(checked: CheckedPolicy, as_of: datetime.date | None) -> Side:
    day = as_of if as_of is not None else default_as_of(checked)
    res = checked.at(day) if day is not None else checked.latest
    return Side(res.name, res.title, checked.chain[-1].path, day, tuple(res.documents), res)


def structural_diff(old: CheckedPolicy, new: CheckedPolicy, old_as_of: datetime.date | None = None,
                    new_as_of: datetime.date | None = None) -> StructuralDiff:
    """Compare OLD resolved at old_as_of with NEW at new_as_of (None: each one's own effective date)."""
    a, b = side(old, old_as_of), side(new, new_as_of)
    return StructuralDiff(a, b, tuple(compare(a.resolved, b.resolved)))


def compare(old: Resolved, new: Resolved) -> list[Change]:
    """Every change from OLD to NEW, in a stable order: policy items, layers, then per-person items."""
    sections: tuple[Callable[[Resolved, Resolved], list[Change]], ...] = (
        _documents, _schemes, _funds, _vocabulary, _lists, _conditions, _params, _settlement_order,
        _layers, _shared_caps, _subsidies, _alerts, _requirements, _targets)
    return [change for section in sections for change in section(old, new)]


# ---- helpers -------------------------------------------------------------------------------------------
def _matched(old: Mapping[K, V], new: Mapping[K, V]) -> Iterator[tuple[K, V | None, V | None]]:
    """Keys of NEW in its order with both values, then keys only OLD has."""
    for key, value in new.items():
        yield key, old.get(key), value
    for key, value in old.items():
        if key not in new:
            yield key, value, None


def _differ(kind: str, old: str | None, new: str | None, **fields: Any) -> list[Change]:
    """One change when the two renderings differ (renderings are canonical), else none."""
    return [] if old == new else [Change(kind, old=old, new=new, **fields)]


def _triple(base: str, old: V | None, new: V | None, render: Callable[[V], str],
            **fields: Any) -> list[Change]:
    """added / removed / changed for one keyed item, compared by rendering."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [Change(f"{base}_added", new=render(new), new_value=new, **fields)]
    if new is None:
        return [Change(f"{base}_removed", old=render(old), old_value=old, **fields)]
    return _differ(f"{base}_changed", render(old), render(new), old_value=old, new_value=new, **fields)


def _verb(base: str, old: object, new: object) -> str:
    return f"{base}_added" if old is None else f"{base}_removed" if new is None else f"{base}_changed"


def _number(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text if "." not in text else text.rstrip("0").rstrip(".")


def _amount(text: str) -> str:
    from policy_lang.parse import parse_amount

    try:
        return _number(parse_amount(text))
    except (InvalidOperation, ValueError):
        return text


def _names(items: Iterable[str]) -> str:
    return ", ".join(items) if items else "(none)"


def _date(day: datetime.date | None) -> str:
    return day.isoformat() if day else ""


# ---- conditions --------------------------------------------------------------------------------------
def cond_text(cond: ast.Cond | None, tokens: Mapping[str, str] | None = None, canonical: bool = False) -> str:
    """A condition with Chinese field and value names normalised to ids (`险种 = 居民` -> `scheme = resident`).

    `tokens` maps disease tokens to disease ids. With `canonical`, the parts of `and` / `or` and the
    values of `in` / `has` are sorted, so that conditions that differ only in order compare equal.
    """
    if cond is None:
        return "(every claim)"
    return _Conds(tokens or {}, canonical).text(cond)


@attrs.frozen
class _Conds:
    tokens: Mapping[str, str]
    canonical: bool

    def text(self, cond: ast.Cond) -> str:
        match cond:
            case ast.Always():
                return "true"
            case ast.And(items):
                return self._join(" and ", [self._part(c, ast.Or) for c in items])
            case ast.Or(items):
                return self._join(" or ", [self._part(c, ast.Or) for c in items])
            case ast.Not(item):
                return f"not {self._part(item, ast.And | ast.Or)}"
            case ast.Flag(name):
                return _field(name)
            case ast.Compare(field, op, value):
                return f"{_field(field)} {op} {self._lit(_field(field), value)}"
            case ast.Member(field, values, negated):
                return self._member(_field(field), values, negated)
            case ast.Has(field, values, all_):
                return self._has(_field(field), values, all_)
        raise AssertionError(cond)  # pragma: no cover

    def _part(self, cond: ast.Cond, wrap: Any) -> str:
        text = self.text(cond)
        return f"({text})" if isinstance(cond, wrap) else text

    def _join(self, sep: str, parts: list[str]) -> str:
        return sep.join(sorted(parts) if self.canonical else parts)

    def _values(self, field: str, values: Iterable[ast.Lit]) -> list[str]:
        out = list(dict.fromkeys(self._lit(field, v) for v in values))
        return sorted(out) if self.canonical else out

    def _member(self, field: str, values: tuple[ast.Lit, ...], negated: bool) -> str:
        if field in SET_FIELDS:
            text = self._has(field, values, False)
            return f"not {text}" if negated else text
        return f"{field} {'not in' if negated else 'in'} ({', '.join(self._values(field, values))})"

    def _has(self, field: str, values: tuple[ast.Lit, ...], all_: bool) -> str:
        names = self._values(field, values)
        if len(names) == 1:
            return f"{field} has {names[0]}"
        return f"{field} has {'all' if all_ else 'any'} ({', '.join(names)})"

    def _lit(self, field: str, lit: ast.Lit) -> str:
        if lit.kind in ("int", "money"):
            return _amount(lit.text)
        if lit.kind == "percent":
            return _amount(lit.text.rstrip("%")) + "%"
        if lit.kind in ("bool", "none"):
            return lit.text.lower()
        text = vocabulary.VALUE_ALIASES.get(lit.text, lit.text)
        if field in DISEASE_FIELDS:
            text = self.tokens.get(text, text)
        return text if _NAME.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def _field(name: str) -> str:
    field = vocabulary.FIELD_ALIASES.get(name, name)
    return "level" if field == "hospital_level" else field


# ---- values --------------------------------------------------------------------------------------------
def show_value(val: Lowered, kind: Kind) -> str:
    """A resolved value as written: 12000, 62.5%, by level …, -100 (a change to the value below)."""
    if isinstance(val, Op) and isinstance(val.left, Below) and val.op in _SYMBOLS:
        return _SYMBOLS[val.op] + _show(val.right, "rate" if val.op == "mul" else kind)
    return _show(val, kind)


def _show(val: Lowered, kind: Kind) -> str:
    match val:
        case Below():
            return "base_value"
        case Op(op, left, right) if op in _SYMBOLS:
            return f"{_show(left, kind)} {_SYMBOLS[op]} {_show(right, 'rate' if op == 'mul' else kind)}"
        case Op(op, left, right):
            return f"{op}({_show(left, kind)}, {_show(right, kind)})"
    return show(val, kind)


def slot_text(slot: str, value: Any) -> str:
    """A rule's setting for `slot` as a policy writer writes it."""
    match value:
        case None | NoneVal():
            return "none"
        case str():
            return value
        case Flat(rate):
            return show_value(rate, "rate")
        case Tiered(axis, tiers):
            parts = [f"{show(Lit(t.low), 'money')} to {show(Lit(t.high), 'money')}: {show(Lit(t.rate), 'rate')}"
                     if t.high is not None else f"above {show(Lit(t.low), 'money')}: {show(Lit(t.rate), 'rate')}"
                     for t in tiers]
            return f"tiers on {axis} {{ {'; '.join(parts)} }}"
        case Unit(amount, column):
            return f"unit_rate {show_value(amount, 'money')} per {column}"
        case BonusSpec(rate, column):
            return f"{show_value(rate, 'rate')} on {column}"
    return show_value(value, SLOT_KINDS.get(slot, "money"))


def param_text(p: ParamValue) -> str:
    """A named parameter's value: 5%, 12000, "3:7", true, none, unspecified."""
    if p.kind == "none":
        return "none"
    if p.value is None:
        return f"unspecified {p.kind}"
    if isinstance(p.value, bool):
        return "true" if p.value else "false"
    if isinstance(p.value, Decimal):
        return _number(p.value) + ("%" if p.kind == "rate" else "")
    return json.dumps(p.value, ensure_ascii=False)


def ast_value_text(value: ast.Value) -> str:
    """A literal value of a requirement or target (they are not lowered at resolution)."""
    match value:
        case ast.Amount(v):
            return _number(v)
        case ast.Percent(v):
            return _number(v) + "%"
        case ast.NoneValue():
            return "none"
        case ast.ParamRef(name):
            return name
        case ast.ByLevel(items):
            return "by level " + " / ".join(ast_value_text(v) for v in items)
    return type(value).__name__


# ---- documents and the policy's vocabulary -------------------------------------------------------------
def doc_text(doc: DocInfo) -> str:
    until = f" – {doc.until.isoformat()}" if doc.until else " –"
    period = f"in force {_date(doc.effective) or '(always)'}{until if doc.effective else ''}"
    number = f"{doc.document} " if doc.document else ""
    return f"{number}{doc.title or doc.name}, {period}"


def _documents(old: Resolved, new: Resolved) -> list[Change]:
    a = {d.name: d for d in old.documents}
    b = {d.name: d for d in new.documents}
    return [c for name, o, n in _matched(a, b) for c in _triple("document", o, n, doc_text, item=name)]


def _schemes(old: Resolved, new: Resolved) -> list[Change]:
    return _differ("schemes_changed", _names(sorted(old.schemes)), _names(sorted(new.schemes)),
                   added=tuple(sorted(set(new.schemes) - set(old.schemes))),
                   removed=tuple(sorted(set(old.schemes) - set(new.schemes))))


def _funds(old: Resolved, new: Resolved) -> list[Change]:
    out: list[Change] = []
    for fund, o, n in _matched(old.funds, new.funds):
        for change in _triple("fund", o, n, lambda f: f[0], item=fund):
            out.append(attrs.evolve(change, old_cites=o[1] if o else (), new_cites=n[1] if n else ()))
    return out


def _vocabulary(old: Resolved, new: Resolved) -> list[Change]:
    out: list[Change] = []
    for base, a, b in (("identity", old.identities, new.identities), ("region", old.regions, new.regions)):
        for key, o, n in _matched(a, b):
            out += _triple(base, o, n, str, item=key)
    return out


def _lists(old: Resolved, new: Resolved) -> list[Change]:
    out: list[Change] = []
    for name, o, n in _matched(old.disease_lists, new.disease_lists):
        out += _members("diseases", name, o, n, "disease")
    hospitals_old = {k: frozenset(v[1]) for k, v in old.hospitals.items()}
    hospitals_new = {k: frozenset(v[1]) for k, v in new.hospitals.items()}
    for name, o, n in _matched(hospitals_old, hospitals_new):
        out += _members("hospitals", name, o, n, "hospital")
        if o is not None and n is not None:
            out += _differ("list_changed", old.hospitals[name][0], new.hospitals[name][0], parameter="hospitals",
                           item=f"{name} designation")
    return out


def _members(what: str, name: str, old: frozenset[str] | None, new: frozenset[str] | None,
             noun: str) -> list[Change]:
    def count(members: frozenset[str]) -> str:
        return f"{len(members)} {noun}{'s' if len(members) != 1 else ''}"

    a, b = old or frozenset(), new or frozenset()
    if old is not None and new is not None and a == b:
        return []
    return [Change(_verb("list", old, new), parameter=what, item=name, old=count(a) if old is not None else None,
                   new=count(b) if new is not None else None, added=tuple(sorted(b - a)),
                   removed=tuple(sorted(a - b)), old_value=old, new_value=new)]


def _conditions(old: Resolved, new: Resolved) -> list[Change]:
    out: list[Change] = []
    for name, o, n in _matched(old.conditions, new.conditions):
        if o is not None and n is not None and (
                cond_text(o.cond, old.disease_tokens, True) == cond_text(n.cond, new.disease_tokens, True)):
            continue
        out.append(Change(_verb("condition", o, n), item=name, old=cond_text(o.cond, old.disease_tokens) if o else None,
                          new=cond_text(n.cond, new.disease_tokens) if n else None, old_value=o, new_value=n))
    return out


def _params(old: Resolved, new: Resolved) -> list[Change]:
    out: list[Change] = []
    for name, o, n in _matched(old.params, new.params):
        for change in _triple("param", o, n, lambda p: param_text(p[0]), parameter=name):
            out.append(attrs.evolve(change, old_cites=o[1] if o else (), new_cites=n[1] if n else ()))
    return out


# ---- layers ----------------------------------------------------------------------------------------------
def _settlement_order(old: Resolved, new: Resolved) -> list[Change]:
    common = {layer.id for layer in old.layers} & {layer.id for layer in new.layers}
    a = [layer.id for layer in old.layers if layer.id in common]
    b = [layer.id for layer in new.layers if layer.id in common]
    return _differ("settlement_order_changed", " → ".join(a), " → ".join(b))


def _layers(old: Resolved, new: Resolved) -> list[Change]:
    a = {layer.id: layer for layer in old.layers}
    b = {layer.id: layer for layer in new.layers}
    out: list[Change] = []
    for layer_id, o, n in _matched(a, b):
        if o is None and n is not None:
            out.append(Change("layer_added", layer=layer_id, new=layer_text(n, new), new_cites=n.cites,
                              new_value=n))
        elif n is None and o is not None:
            out.append(Change("layer_removed", layer=layer_id, old=layer_text(o, old), old_cites=o.cites,
                              old_value=o))
        elif o is not None and n is not None:
            out += _layer_changes(o, n, old, new)
    return out


def layer_text(layer: RLayer, res: Resolved) -> str:
    """An added or removed layer in one line: title, fund, position."""
    ids = [x.id for x in res.layers]
    at = ids.index(layer.id)
    where = f", after {ids[at - 1]}" if at > 0 else ", first"
    return f"{layer.title} (fund {layer.fund}{where})"


def _layer_changes(o: RLayer, n: RLayer, old: Resolved, new: Resolved) -> list[Change]:
    # Title, fund, precedence, exclusivity and `treat` keep no citation of their own: cite the layer
    # block of the latest document that touched the layer.
    ca, cb = o.cites[-1:], n.cites[-1:]

    def field(parameter: str, a: str | None, b: str | None, va: Any = None, vb: Any = None) -> list[Change]:
        return _differ("layer_changed", a, b, layer=n.id, parameter=parameter, old_cites=ca if a else (),
                       new_cites=cb if b else (), old_value=va, new_value=vb)

    out = field("title", o.title, n.title)
    out += field("fund", str(o.fund), str(n.fund))
    out += _scope(o, n, old, new)
    out += _differ("layer_changed", base_text(o), base_text(n), layer=n.id, parameter="base",
                   old_cites=o.base_cites, new_cites=n.base_cites, old_value=(o.base_after, o.base_plus),
                   new_value=(n.base_after, n.base_plus))
    out += field("precedence", _precedence(o), _precedence(n))
    out += field("identity_order", *_identity_order(o, n))
    out += field("exclusive", _names(sorted(o.exclusive)), _names(sorted(n.exclusive)))
    for ident, a, b in _matched(o.treats, n.treats):
        out += field(f"treat:{ident}", f"as {a}" if a else None, f"as {b}" if b else None, a, b)
    return out + _rules(n.id, o, n, old, new)


def _scope(o: RLayer, n: RLayer, old: Resolved, new: Resolved) -> list[Change]:
    if cond_text(o.scope, old.disease_tokens, True) == cond_text(n.scope, new.disease_tokens, True):
        return []
    return [Change("layer_changed", layer=n.id, parameter="scope", old=cond_text(o.scope, old.disease_tokens),
                   new=cond_text(n.scope, new.disease_tokens), old_cites=o.scope_cites, new_cites=n.scope_cites,
                   old_value=o.scope, new_value=n.scope)]


def base_text(layer: RLayer) -> str:
    after = ("after " + ", ".join(layer.base_after) if layer.base_after is not None
             else "after every earlier layer")
    return after + (" plus " + ", ".join(layer.base_plus) if layer.base_plus else "")


def _precedence(layer: RLayer) -> str:
    return layer.precedence if layer.identity_order else "(no identity schedules)"


def _identity_order(o: RLayer, n: RLayer) -> tuple[str, str]:
    """The order of the identity schedules both versions have (additions are rule changes)."""
    common = set(o.identity_order) & set(n.identity_order)
    return (", ".join(i for i in o.identity_order if i in common),
            ", ".join(i for i in n.identity_order if i in common))


# ---- rules --------------------------------------------------------------------------------------------------
def rule_keys(layer: RLayer, tokens: Mapping[str, str]) -> dict[str, RRule]:
    """The layer's rules by semantic key, in the layer's order (the same rule in two versions, same key)."""
    out: dict[str, RRule] = {}
    for rule in layer.rules.values():
        key = rule_key(rule, layer, tokens)
        n = 2
        while key in out:  # two unnamed rules with one condition: keep both
            key, n = f"{rule_key(rule, layer, tokens)} #{n}", n + 1
        out[key] = rule
    return out


def rule_key(rule: RRule, layer: RLayer, tokens: Mapping[str, str]) -> str:
    if rule.kind == "default":
        return "default"
    if rule.kind == "identity":
        own = f"identity {rule.name}"
    elif rule.name:
        own = rule.name
    else:
        own = f"when {cond_text(rule.cond, tokens, canonical=True)}"
    parent = layer.rules.get(rule.parent) if rule.parent else None
    return f"{rule_key(parent, layer, tokens)}/{own}" if parent is not None else own


def rule_text(key: str, rule: RRule, tokens: Mapping[str, str]) -> str:
    """A rule in one line: what it is, when it applies, and its settings."""
    head = {"default": "general values", "identity": key,
            "exception": f"exception {key} when {cond_text(rule.cond, tokens)}"}.get(rule.kind)
    if head is None:
        head = f"rule {key} when {cond_text(rule.cond, tokens)}" if rule.name else key
    if rule.over:
        head += " over " + ", ".join(rule.over)
    settings = "; ".join(setting_text(s, rule.settings) for s in SLOTS if s in rule.settings and s != "period")
    return f"{head}: {settings}" if settings else head


def setting_text(slot: str, settings: Mapping[str, RSetting]) -> str:
    """One setting as a statement: `deductible 0 per claim`, `rate 70%`, `tiers on payable { … }`."""
    text = slot_text(slot, settings[slot].value)
    if slot == "deductible" and "period" in settings:
        return f"deductible {text} per {settings['period'].value}"
    if slot == "pricing" and not isinstance(settings[slot].value, Flat):
        return text
    return f"{SLOT_LABELS[slot]} {text}"


def _rules(layer_id: str, o: RLayer, n: RLayer, old: Resolved, new: Resolved) -> list[Change]:
    out: list[Change] = []
    for key, a, b in _matched(rule_keys(o, old.disease_tokens), rule_keys(n, new.disease_tokens)):
        if a is None and b is not None:
            out.append(Change("rule_added", layer=layer_id, rule=key, new=rule_text(key, b, new.disease_tokens),
                              new_cites=b.cites, new_value=b))
        elif b is None and a is not None:
            out.append(Change("rule_removed", layer=layer_id, rule=key, old=rule_text(key, a, old.disease_tokens),
                              old_cites=a.cites, old_value=a))
        elif a is not None and b is not None:
            out += _rule_changes(layer_id, key, a, b, old, new) + _slots(layer_id, key, a, b, o, n)
    return out


def _rule_changes(layer_id: str, key: str, a: RRule, b: RRule, old: Resolved, new: Resolved) -> list[Change]:
    where: dict[str, Any] = {"layer": layer_id, "rule": key, "old_cites": a.cites, "new_cites": b.cites}
    out: list[Change] = []
    if (a.kind, b.kind) != ("identity", "identity") and (
            cond_text(a.cond, old.disease_tokens, True) != cond_text(b.cond, new.disease_tokens, True)):
        out.append(Change("rule_changed", parameter="condition", old=cond_text(a.cond, old.disease_tokens),
                          new=cond_text(b.cond, new.disease_tokens), old_value=a.cond, new_value=b.cond, **where))
    out += _differ("rule_changed", a.kind, b.kind, parameter="level", **where)
    out += _differ("rule_changed", _names(sorted(a.over)), _names(sorted(b.over)), parameter="over",
                   old_value=a.over, new_value=b.over, **where)
    return out


def _slots(layer_id: str, key: str, a: RRule, b: RRule, o: RLayer, n: RLayer) -> list[Change]:
    out: list[Change] = []
    for slot in SLOTS:
        if _same_effect(slot, a, b, o, n):
            continue
        sa, sb = a.settings.get(slot), b.settings.get(slot)
        out.append(Change(_verb("parameter", sa, sb), layer=layer_id, rule=key, parameter=slot, old=_setting(slot, sa),
                          new=_setting(slot, sb), old_cites=sa.cites if sa else (),
                          new_cites=sb.cites if sb else (), old_value=sa, new_value=sb))
    return out


def _same_effect(slot: str, a: RRule, b: RRule, o: RLayer, n: RLayer) -> bool:
    """Whether rule `a` of OLD's layer `o` and rule `b` of NEW's layer `n` give `slot` the same effective
    value: the same setting, or `none` written out in one version (`cap none`) where the other leaves the
    slot unset and the rule's claims get none anyway."""
    sa, sb = a.settings.get(slot), b.settings.get(slot)
    if sa is None and sb is None:
        return True
    if sa is not None and sb is not None:
        return bool(_plain(sa.value) == _plain(sb.value))
    if sb is None:
        assert sa is not None
        return _plain(sa.value) is None and _none_unless_set(n, b, slot)
    return _plain(sb.value) is None and _none_unless_set(o, a, slot)


def _plain(value: Any) -> Any:
    """A setting's value with `none` spelled one way (None, as compile.py lowers NoneVal)."""
    return None if isinstance(value, NoneVal) else value


def _none_unless_set(layer: RLayer, rule: RRule, slot: str) -> bool:
    """Whether the claims of `rule` get none for `slot` when `rule` leaves it unset in `layer`.

    Nothing is below the general rule: its claims get the built-in default (compile.SLOT_DEFAULTS).
    Another rule's claims get what the rules below it give: certainly none when every rule of the layer
    that sets the slot sets none, and so does the built-in default if the general rule leaves it unset."""
    if rule.kind == "default":
        return SLOT_DEFAULTS[slot] is None
    default = layer.rules.get("default")
    if (default is None or slot not in default.settings) and SLOT_DEFAULTS[slot] is not None:
        return False
    return all(_plain(r.settings[slot].value) is None for r in layer.rules.values() if slot in r.settings)


def _setting(slot: str, setting: RSetting | None) -> str | None:
    return slot_text(slot, setting.value) if setting is not None else None


# ---- shared caps, subsidies, alerts, requirements, targets ----------------------------------------------
def _shared_caps(old: Resolved, new: Resolved) -> list[Change]:
    def render(entry: tuple[Lowered, tuple[str, ...], tuple[Cite, ...], ast.Span]) -> str:
        return f"{show_value(entry[0], 'money')} per year for {', '.join(entry[1])}"

    out: list[Change] = []
    for name, o, n in _matched(old.shared_caps, new.shared_caps):
        for change in _triple("shared_cap", o, n, render, item=name):
            out.append(attrs.evolve(change, old_cites=o[2] if o else (), new_cites=n[2] if n else ()))
    return out


def subsidy_text(sub: RSubsidy) -> str:
    shares = "; ".join(f"{i}: {show_value(v, 'rate')}" for i, (v, _) in sub.shares.items())
    amount = show_value(sub.amount, "money") if sub.amount is not None else NOT_SET
    return f"{sub.title}, {sub.precedence}, amount {amount}, shares {shares or '(none)'}"


def _cited_items(base: str, old: Mapping[str, C], new: Mapping[str, C], render: Callable[[C], str],
                 changes: Callable[[str, C, C], list[Change]]) -> list[Change]:
    """Subsidies or alerts by id: one added or removed is rendered in one line with its citations; one in
    both versions gives the changes `changes` finds."""
    out: list[Change] = []
    for name, o, n in _matched(old, new):
        if o is None or n is None:
            for change in _triple(base, o, n, render, item=name):
                out.append(attrs.evolve(change, old_cites=o.cites if o else (), new_cites=n.cites if n else ()))
        else:
            out += changes(name, o, n)
    return out


def _subsidies(old: Resolved, new: Resolved) -> list[Change]:
    return _cited_items("subsidy", old.subsidies, new.subsidies, subsidy_text,
                        lambda name, o, n: _subsidy_changes(name, o, n, old, new))


def _subsidy_changes(name: str, o: RSubsidy, n: RSubsidy, old: Resolved, new: Resolved) -> list[Change]:
    where: dict[str, Any] = {"item": name, "old_cites": o.cites[-1:], "new_cites": n.cites[-1:]}
    amount_old = show_value(o.amount, "money") if o.amount is not None else None
    amount_new = show_value(n.amount, "money") if n.amount is not None else None
    out = _differ("subsidy_changed", o.title, n.title, parameter="title", **where)
    out += _differ("subsidy_changed", o.precedence, n.precedence, parameter="precedence", **where)
    out += _differ("subsidy_changed", amount_old, amount_new, parameter="amount", old_value=o.amount,
                   new_value=n.amount, **where)
    if cond_text(o.scope, old.disease_tokens, True) != cond_text(n.scope, new.disease_tokens, True):
        out.append(Change("subsidy_changed", parameter="scope", old=cond_text(o.scope, old.disease_tokens),
                          new=cond_text(n.scope, new.disease_tokens), **where))
    for ident, a, b in _matched(o.shares, n.shares):
        out += _differ("subsidy_changed", show_value(a[0], "rate") if a else None,
                       show_value(b[0], "rate") if b else None, item=name, parameter=f"share:{ident}",
                       old_cites=a[1] if a else (), new_cites=b[1] if b else (), old_value=a, new_value=b)
    for ident, ta, tb in _matched(o.treats, n.treats):
        out += _differ("subsidy_changed", f"as {ta}" if ta else None, f"as {tb}" if tb else None, item=name,
                       parameter=f"treat:{ident}", old_cites=o.cites[-1:] if ta else (),
                       new_cites=n.cites[-1:] if tb else (), old_value=ta, new_value=tb)
    return out


def measure_text(measure: ast.Measure | None, tokens: Mapping[str, str]) -> str:
    if measure is None:
        return NOT_SET
    return f"burden after {', '.join(measure.after)} where {cond_text(measure.where, tokens)}"


def _thresholds(alert: RAlert, tokens: Mapping[str, str]) -> dict[str, tuple[Lowered, tuple[Cite, ...]]]:
    return {cond_text(c, tokens, canonical=True): (v, cites) for c, v, cites, _ in alert.thresholds}


def alert_text(alert: RAlert) -> str:
    values = ", ".join(show_value(v, "money") for _, v, _, _ in alert.thresholds)
    return f"{alert.title}, thresholds {values or '(none)'}"


def _alerts(old: Resolved, new: Resolved) -> list[Change]:
    return _cited_items("alert", old.alerts, new.alerts, alert_text,
                        lambda name, o, n: _alert_changes(name, o, n, old, new))


def _alert_changes(name: str, o: RAlert, n: RAlert, old: Resolved, new: Resolved) -> list[Change]:
    where: dict[str, Any] = {"item": name, "old_cites": o.cites[-1:], "new_cites": n.cites[-1:]}
    out = _differ("alert_changed", o.title, n.title, parameter="title", **where)
    measure_old, measure_new = measure_text(o.measure, old.disease_tokens), measure_text(n.measure, new.disease_tokens)
    if _measure_key(o.measure, old) != _measure_key(n.measure, new):
        out.append(Change("alert_changed", parameter="measure", old=measure_old, new=measure_new, **where))
    ta, tb = _thresholds(o, old.disease_tokens), _thresholds(n, new.disease_tokens)
    for cond, a, b in _matched(ta, tb):
        out += _differ("alert_changed", show_value(a[0], "money") if a else None,
                       show_value(b[0], "money") if b else None, item=name, parameter=f"threshold:{cond}",
                       old_cites=a[1] if a else (), new_cites=b[1] if b else (), old_value=a, new_value=b)
    common = [c for c in ta if c in tb]
    out += _differ("alert_changed", " ; ".join(common), " ; ".join(c for c in tb if c in ta),
                   parameter="threshold_order", **where)
    return out


def _measure_key(measure: ast.Measure | None, res: Resolved) -> tuple[tuple[str, ...], str] | None:
    return None if measure is None else (measure.after, cond_text(measure.where, res.disease_tokens, True))


def requirement_text(req: ast.Requirement, tokens: Mapping[str, str] | None = None) -> str:
    prop: str
    match req.prop:
        case ast.ReqExists():
            prop = "exists"
        case ast.ReqTiered():
            prop = "tiered"
        case ast.ReqNoCap():
            prop = "cap none"
        case ast.ReqRate(op, value):
            prop = f"rate {op} {ast_value_text(value)}"
        case ast.ReqCap(op, value, or_none):
            prop = f"cap {op} {ast_value_text(value)}" + (" or none" if or_none else "")
        case ast.ReqRateRelation(left, op, right):
            prop = f"rate[{cond_text(left, tokens, True)}] {op} rate[{cond_text(right, tokens, True)}]"
    schemes = f" for schemes {', '.join(sorted(req.schemes))}" if req.schemes else ""
    return f"{req.layer} {prop}{schemes}"


def _requirements(old: Resolved, new: Resolved) -> list[Change]:
    a = {requirement_text(r, old.disease_tokens): (r, c) for r, c in old.requirements}
    b = {requirement_text(r, new.disease_tokens): (r, c) for r, c in new.requirements}
    out: list[Change] = []
    for text, o, n in _matched(a, b):
        if o is None and n is not None:
            out.append(Change("requirement_added", item=text, new=text, new_cites=n[1], new_value=n[0]))
        elif n is None and o is not None:
            out.append(Change("requirement_removed", item=text, old=text, old_cites=o[1], old_value=o[0]))
    return out


def target_text(target: ast.Target, tokens: Mapping[str, str]) -> str:
    return (f"{target.title or target.name}: payout of {', '.join(target.layers)} where "
            f"{cond_text(target.where, tokens, True)} at least {ast_value_text(target.minimum)} "
            f"by {target.by.isoformat()}")


def _targets(old: Resolved, new: Resolved) -> list[Change]:
    a = {t.name: (t, c) for t, c in old.targets}
    b = {t.name: (t, c) for t, c in new.targets}
    out: list[Change] = []
    for name, o, n in _matched(a, b):
        for change in _triple("target", o[0] if o else None, n[0] if n else None,
                              lambda t: target_text(t, new.disease_tokens), item=name):
            out.append(attrs.evolve(change, old_cites=o[1] if o else (), new_cites=n[1] if n else ()))
    return out


# ---- presentation ---------------------------------------------------------------------------------------------
_SECTIONS: Final = {
    "document": "documents in force", "schemes": "policy", "fund": "funds", "identity": "vocabulary",
    "region": "vocabulary", "list": "lists", "condition": "named conditions", "param": "parameters",
    "settlement_order": "layers", "shared_cap": "shared caps", "subsidy": "subsidies", "alert": "alerts",
    "requirement": "requirements", "target": "targets",
}
_NOUNS: Final = {
    "document": "document", "fund": "fund", "identity": "identity", "region": "region",
    "condition": "condition", "param": "param", "shared_cap": "shared cap", "subsidy": "subsidy",
    "alert": "alert", "requirement": "requirement", "target": "target", "layer": "layer",
}


def _split(kind: str) -> tuple[str, str]:
    base, _, verb = kind.rpartition("_")
    return base, verb


def section(change: Change, diff: StructuralDiff) -> str:
    """The heading a change is listed under: its layer (id and title) or a section of the policy."""
    if change.layer is not None:
        layer = diff.new.resolved.layer(change.layer) or diff.old.resolved.layer(change.layer)
        return f"{change.layer} {layer.title}" if layer is not None else change.layer
    return _SECTIONS.get(_split(change.kind)[0], "policy")


def describe(change: Change) -> str:
    """A change in one line, without its citations: `identity tekun: rate 70% → 75%`."""
    base, verb = _split(change.kind)
    old, new = change.old or NOT_SET, change.new or NOT_SET
    if base == "parameter":
        prefix = "" if change.rule == "default" else f"{change.rule}: "
        return f"{prefix}{_slot_label(change)} {old} → {new}"
    if base == "rule" and verb != "changed":
        return f"+ {change.new}" if verb == "added" else f"- {change.old}"
    if base == "rule":
        return f"{change.rule}: {change.parameter} {old} → {new}"
    if base == "layer" and verb == "changed":
        return f"{_param_label(change.parameter)} {old} → {new}"
    subject = _subject(base, change)
    if verb == "added":
        return f"+ {subject}: {change.new}" + _member_suffix(change)
    if verb == "removed":
        return f"- {subject}: {change.old}" + _member_suffix(change)
    return f"{subject}: {old} → {new}" + _member_suffix(change)


def _subject(base: str, change: Change) -> str:
    if base == "list":
        subject = f"{change.parameter} list {change.item}"
    elif base == "param":
        subject = f"param {change.parameter}"
    elif base == "settlement_order":
        return "settlement order"
    elif base == "schemes":
        return "schemes"
    elif base == "requirement":
        return "requirement"
    else:
        subject = " ".join(x for x in (_NOUNS.get(base, base), change.item or change.layer) if x)
    if change.parameter and base not in ("list", "param"):
        subject += f" {_param_label(change.parameter)}"
    return subject


def _param_label(parameter: str | None) -> str:
    if parameter is None:
        return ""
    head, _, rest = parameter.partition(":")
    return f"{head} {rest}" if rest else head


def _slot_label(change: Change) -> str:
    label = SLOT_LABELS.get(change.parameter or "", change.parameter or "")
    if change.parameter == "pricing":
        values = (change.old_value, change.new_value)
        if any(v is not None and not isinstance(v.value, Flat) for v in values):
            return "pricing"
    return label


def _member_suffix(change: Change, limit: int = 8) -> str:
    def names(items: tuple[str, ...]) -> str:
        shown = ", ".join(items[:limit])
        return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")

    parts = ([f"+{len(change.added)}: {names(change.added)}"] if change.added else []) + (
        [f"−{len(change.removed)}: {names(change.removed)}"] if change.removed else [])
    return f"  [{'; '.join(parts)}]" if parts and change.kind.endswith("_changed") else (
        f"  [{names(change.added or change.removed)}]" if parts else "")


def cites_text(change: Change) -> str:
    """`(old citation → new citation)`; one side only when the other has none."""
    a, b = _cite_list(change.old_cites), _cite_list(change.new_cites)
    if a and b:
        return f"({a} → {b})" if a != b else f"({a})"
    return f"({a or b})" if a or b else ""


def _cite_list(cites: Sequence[Cite]) -> str:
    return "; ".join(dict.fromkeys(c.text() for c in cites))


def _count(n: int) -> str:
    return f"{n} change{'s' if n != 1 else ''}"


def _side_line(label: str, s: Side) -> list[str]:
    docs = [f"    {d.name}: {doc_text(d)}" for d in s.documents]
    return [f"{label}: {s.policy} {s.title} ({s.path}), as of {_date(s.as_of) or 'latest'}", *docs]


def to_text(diff: StructuralDiff, behaviour: Behaviour | None = None) -> str:
    """Readable on a terminal: the two versions, the changes grouped by layer or section, a count; then,
    with a behavioural diff, the fund impact, winners and losers, and the attribution."""
    lines = [*_side_line("old", diff.old), *_side_line("new", diff.new)]
    current = None
    for change in diff.changes:
        heading = section(change, diff)
        if heading != current:
            lines += ["", heading]
            current = heading
        cite = cites_text(change)
        lines.append(f"  {describe(change)}" + (f"  {cite}" if cite else ""))
    lines += ["", _count(len(diff.changes))]
    text = "\n".join(lines) + "\n"
    if behaviour is not None:
        from policy_lang import diff_impact

        text += diff_impact.to_text(behaviour, diff)
    return text


# ---- JSON ------------------------------------------------------------------------------------------------
def cite_record(cite: Cite) -> dict[str, Any]:
    return {"document": cite.document, "article": cite.article, "path": cite.path, "line": cite.line,
            "text": cite.text(), "location": cite.location()}


def change_record(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, "layer": change.layer, "rule": change.rule, "parameter": change.parameter,
            "item": change.item, "old": change.old, "new": change.new,
            "old_cites": [cite_record(c) for c in change.old_cites],
            "new_cites": [cite_record(c) for c in change.new_cites],
            "added": list(change.added), "removed": list(change.removed)}


def side_record(s: Side) -> dict[str, Any]:
    return {"policy": s.policy, "title": s.title, "path": s.path, "as_of": _date(s.as_of) or None,
            "documents": [{"name": d.name, "document": d.document, "title": d.title,
                           "dated": _date(d.dated) or None, "effective": _date(d.effective) or None,
                           "until": _date(d.until) or None, "path": d.path} for d in s.documents]}


def summary_record(diff: StructuralDiff) -> dict[str, Any]:
    return {"total": len(diff.changes), "by_kind": dict(Counter(c.kind for c in diff.changes)),
            "layers": sorted({c.layer for c in diff.changes if c.layer is not None})}


def to_json(diff: StructuralDiff, behaviour: Behaviour | None = None) -> str:
    """The diff as JSON (schema: docs/diff-schema.md); keys sorted, changes in diff order. A behavioural
    diff adds `impact` and `attribution`."""
    doc = {"format": FORMAT, "old": side_record(diff.old), "new": side_record(diff.new),
           "changes": [change_record(c) for c in diff.changes], "summary": summary_record(diff)}
    if behaviour is not None:
        from policy_lang import diff_impact

        doc |= {"impact": diff_impact.impact_record(behaviour),
                "attribution": diff_impact.attribution_record(behaviour, diff)}
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


# ---- HTML ------------------------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("policy_lang", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def html_context(diff: StructuralDiff, behaviour: Behaviour | None = None) -> dict[str, Any]:
    """Plain records for the template: strings, lists and dicts only."""
    groups: list[dict[str, Any]] = []
    for change in diff.changes:
        heading = section(change, diff)
        if not groups or groups[-1]["heading"] != heading:
            groups.append({"heading": heading, "rows": []})
        groups[-1]["rows"].append({
            "kind": change.kind, "text": describe(change), "old": change.old or "", "new": change.new or "",
            "old_cites": [{"text": c.text(), "location": c.location()} for c in change.old_cites],
            "new_cites": [{"text": c.text(), "location": c.location()} for c in change.new_cites]})
    impact = None
    if behaviour is not None:
        from policy_lang import diff_impact

        impact = diff_impact.html_context(behaviour, diff)
    return {"old": side_record(diff.old), "new": side_record(diff.new), "groups": groups,
            "summary": _count(len(diff.changes)), "format": FORMAT, "impact": impact}


def to_html(diff: StructuralDiff, behaviour: Behaviour | None = None) -> str:
    """A self-contained HTML page (no network), every policy-supplied string escaped."""
    return _environment().get_template("diff.html.j2").render(**html_context(diff, behaviour))
