"""Behavioural diff: OLD and NEW on one population — fund impact, winners and losers, each change's part."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import Any, Final, cast

import attrs
import numpy as np

from policy_lang import diff
from policy_lang.columns import Columns
from policy_lang.compile import compile_resolved
from policy_lang.data import format_money
from policy_lang.diagnostics import PolicyError
from policy_lang.diff import Change, StructuralDiff
from policy_lang.graph import Graph, TargetNode
from policy_lang.interp import Options
from policy_lang.resolve import Resolved, RLayer, RRule, canon
from policy_lang.vector import VectorResult
from simulator import compare, metrics, summary
from simulator.engines import evaluate
from simulator.job import Job
from simulator.run import Source, Stored, Synthetic, all_targets

Doc = dict[str, Any]
Progress = Callable[[int], None]

# Changes of these kinds cannot change a payment: listed with zero impact, never simulated.
# Declarations added (a list, a condition, a parameter, a fund, an identity, a region) have no effect
# alone: nothing in OLD refers to them; they are applied with the parts that use them.
_NO_EFFECT_BASES: Final = frozenset({"document", "fund", "identity", "region", "alert", "requirement", "target"})
_NO_EFFECT_PARAMETERS: Final = {"layer": frozenset({"title"}), "subsidy": frozenset({"title", "precedence"})}
_USED_DECLARATIONS: Final = frozenset({"list", "condition", "param"})  # effect only when OLD's values use them
# (Resolved table, kind of the change that adds one, the Change field naming it)
_DECLARATIONS: Final = (("conditions", "condition_added", "item"), ("disease_lists", "list_added", "item"),
                        ("params", "param_added", "parameter"), ("funds", "fund_added", "item"),
                        ("identities", "identity_added", "item"), ("regions", "region_added", "item"))
# Declarations the structural diff does not list, and what to call them.
_UNRECORDED: Final = {"columns": "column", "disease_tokens": "disease"}
_NESTING: Final = frozenset({"conditions", "disease_lists"})  # declarations that name other declarations
_SKIP_FIELDS: Final = frozenset({"span", "cites", "scope_cites", "base_cites", "title", "seq"})


class CannotApply(ValueError):
    """A change that cannot be applied to this policy alone (the message says why)."""


# ---- parts: the changes applied together -------------------------------------------------------------------
@attrs.frozen
class Part:
    """Changes applied together to OLD (indices into the diff's changes; the first is the head).

    `brings` are declarations added by NEW that the part uses (applied with it; no effect alone);
    `extras` are names copied from NEW that the structural diff does not list (columns, disease names).
    `effect` is False for a part that cannot change a payment: it is not simulated.
    """

    changes: tuple[int, ...]
    brings: tuple[int, ...] = ()
    extras: tuple[str, ...] = ()
    effect: bool = True


def plan_parts(changes: Sequence[Change], old: Resolved, new: Resolved) -> list[Part]:
    """Group the changes into parts (see docs/diff-schema.md, Attribution) in the order of the diff."""
    groups = _groups(changes, old, new)
    used = _used_names(old)
    out = []
    for members in sorted(groups, key=min):
        effect = any(may_pay(changes[i], used) for i in members)
        brings, extras = _declarations_needed(changes, members, old, new) if effect else ((), ())
        out.append(Part(members, brings, extras, effect))
    return out


def may_pay(change: Change, used: set[str]) -> bool:
    """Can this change alone change a payment or a premium subsidy? (`used`: names OLD's values use.)"""
    base, verb = split_kind(change.kind)
    if base in _NO_EFFECT_BASES or change.parameter in _NO_EFFECT_PARAMETERS.get(base, ()):
        return False
    if base in _USED_DECLARATIONS:
        name = change.parameter if base == "param" else change.item
        return verb == "changed" and change.parameter != "hospitals" and name in used
    return True


def split_kind(kind: str) -> tuple[str, str]:
    base, _, verb = kind.rpartition("_")
    return base, verb


def _groups(changes: Sequence[Change], old: Resolved, new: Resolved) -> list[tuple[int, ...]]:
    """Connected changes: a rule with the rules nested in it (added or removed together), a
    deductible with its period, a change with the layer NEW adds that it refers to."""
    parent = list(range(len(changes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _links(changes, old, new):
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(changes)):
        groups.setdefault(find(i), []).append(i)
    return [tuple(sorted(members, key=lambda i: _anchor(changes[i], i))) for members in groups.values()]


def _anchor(change: Change, index: int) -> tuple[int, int, int]:
    """A group's head first: a layer added or removed, then the outermost rule, then diff order."""
    layer = change.kind in ("layer_added", "layer_removed")
    return (0 if layer else 1, (change.rule or "").count("/") if change.kind.startswith("rule_") else 99, index)


def _links(changes: Sequence[Change], old: Resolved, new: Resolved) -> Iterator[tuple[int, int]]:
    rules = {(c.kind, c.layer, c.rule): i for i, c in enumerate(changes) if c.kind in ("rule_added", "rule_removed")}
    slots: dict[tuple[str | None, str | None], int] = {}
    added_layers = {c.layer: i for i, c in enumerate(changes) if c.kind == "layer_added"}
    for i, change in enumerate(changes):
        if change.kind in ("rule_added", "rule_removed"):
            for ancestor in _ancestor_keys(change.rule or ""):
                if (change.kind, change.layer, ancestor) in rules:
                    yield rules[(change.kind, change.layer, ancestor)], i
        if change.kind.startswith("parameter_") and change.parameter in ("deductible", "period"):
            key = (change.layer, change.rule)
            if key in slots:
                yield slots[key], i
            slots.setdefault(key, i)
        for layer_id in _layer_refs(change, new):
            if layer_id in added_layers and added_layers[layer_id] != i:
                yield added_layers[layer_id], i


def _ancestor_keys(key: str) -> list[str]:
    """`identity tekun/bed_day/x` -> [`identity tekun`, `identity tekun/bed_day`]."""
    parts = key.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def _layer_refs(change: Change, new: Resolved) -> tuple[str, ...]:
    """Layers a change's new value settles after (a base, a shared cap, a new layer's base)."""
    value = change.new_value
    if change.kind in ("shared_cap_added", "shared_cap_changed"):
        return tuple(value[1])
    if change.kind == "layer_changed" and change.parameter == "base" and value is not None:
        return tuple(value[0] or ())
    if change.kind == "layer_added" and isinstance(value, RLayer):
        return tuple(value.base_after or ())
    return ()


def _declarations_needed(changes: Sequence[Change], members: Sequence[int], old: Resolved,
                         new: Resolved) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The declaration changes (and unlisted names) the part's new values use that OLD lacks."""
    names: set[str] = set()
    for i in members:
        names |= _names(_installed(changes[i], new))
    needed = needed_declarations(names, old, new)
    by_name = {(kind, getattr(c, field)): i for i, c in enumerate(changes)
               for _table, kind, field in _DECLARATIONS if c.kind == kind and c.parameter != "hospitals"}
    brings = sorted({by_name[(kind, name)] for table, kind, _f in _DECLARATIONS for name in needed.get(table, ())
                     if (kind, name) in by_name and by_name[(kind, name)] not in members})
    extras = sorted(f"{noun} {name}" for table, noun in _UNRECORDED.items() for name in needed.get(table, ()))
    return tuple(brings), tuple(extras)


def needed_declarations(names: set[str], old: Resolved, new: Resolved) -> dict[str, set[str]]:
    """Declarations of NEW that `names` (and the conditions and lists they name) use and OLD lacks."""
    out: dict[str, set[str]] = {}
    pending = set(names)
    seen: set[str] = set()
    tables = [t for t, _k, _f in _DECLARATIONS] + list(_UNRECORDED)
    while pending:
        name = pending.pop()
        seen.add(name)
        for table in tables:
            if name in getattr(new, table) and name not in getattr(old, table):
                out.setdefault(table, set()).add(name)
                if table in _NESTING:
                    pending |= _names(getattr(new, table)[name]) - seen
    return out


def _installed(change: Change, new: Resolved) -> object:
    """What applying the change puts into OLD (for the names it uses)."""
    if change.kind == "layer_changed" and change.parameter in ("fund", "exclusive"):
        return getattr(new.layer(change.layer or ""), change.parameter)
    if change.kind == "subsidy_changed" and change.parameter == "scope":
        return new.subsidies[change.item or ""].scope
    if change.kind == "schemes_changed":
        return new.schemes
    return change.new_value


# ---- names a value uses -----------------------------------------------------------------------------------
def _nodes(obj: object) -> Iterator[object]:
    """Every value inside obj (attrs objects, containers), citations and source positions left out."""
    stack = [obj]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, str | int | Decimal | bool) or item is None:
            continue
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, tuple | list | set | frozenset):
            stack.extend(item)
        elif attrs.has(type(item)):
            fields = attrs.fields(cast(Any, type(item)))
            stack.extend(getattr(item, f.name) for f in fields if f.name not in _SKIP_FIELDS)


def _names(obj: object) -> set[str]:
    out: set[str] = set()
    for node in _nodes(obj):
        if isinstance(node, str):
            out |= {node, canon(node)}
    return out


def _used_names(res: Resolved, skip: str | None = None) -> set[str]:
    """Names the payment-relevant parts of a policy use (layers, caps, subsidies), through conditions."""
    names = _names((res.layers, res.shared_caps, res.subsidies))
    conditions = {k: v for k, v in res.conditions.items() if k != skip}
    pending = names & set(conditions)
    while pending:
        found = _names(conditions[pending.pop()])
        pending |= (found - names) & set(conditions)
        names |= found
    return names


# ---- applying changes ---------------------------------------------------------------------------------------
def apply_change(old: Resolved, change: Change, new: Resolved) -> Resolved:
    """A copy of OLD with exactly this one change of the diff OLD → NEW applied (NEW supplies its context:
    the position of an added layer or rule, an added rule's parent). Raises CannotApply."""
    res = copy.deepcopy(old)
    _apply(res, change, new)
    return res


def apply_part(old: Resolved, part: Part, changes: Sequence[Change], new: Resolved) -> Resolved:
    """A copy of OLD with the part's declarations, then its changes, applied."""
    res = copy.deepcopy(old)
    for i in part.brings:
        _apply(res, changes[i], new)
    for name in part.extras:
        _copy_unrecorded(res, new, name)
    for i in part.changes:
        _apply(res, changes[i], new)
    _drop_missing_layers(res)
    return res


def _apply(res: Resolved, change: Change, new: Resolved) -> None:
    base, verb = split_kind(change.kind)
    handler = _HANDLERS.get(base)
    try:
        if handler is not None:
            handler(res, change, new, verb)
    except KeyError as exc:
        raise CannotApply(f"{exc.args[0]} is missing here") from None


def _copy_unrecorded(res: Resolved, new: Resolved, extra: str) -> None:
    what, _, name = extra.partition(" ")
    if what == "column":
        res.columns[name] = new.columns[name]
    else:
        _add_disease_names(res, new, {new.disease_tokens[name]})


def _add_disease_names(res: Resolved, new: Resolved, diseases: Iterable[str]) -> None:
    wanted = set(diseases)
    for token, disease in new.disease_tokens.items():
        if disease in wanted:
            res.disease_tokens.setdefault(token, disease)
    for disease in wanted:
        res.diseases.setdefault(disease, new.diseases.get(disease, disease))


def _referenced(res: Resolved, name: str) -> bool:
    return name in _used_names(res, skip=name) | _names((res.alerts, res.targets))


def _declaration(table: str) -> Callable[[Resolved, Change, Resolved, str], None]:
    """Add or change a declaration as NEW has it; remove it only when nothing in the policy uses it
    (its effect is that of the rules that used it, removed by their own changes)."""
    def handler(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
        name = (change.parameter if table == "params" else change.item) or ""
        items: dict[str, Any] = getattr(res, table)
        if verb == "removed":
            if not _referenced(res, name):
                items.pop(name, None)
            return
        items[name] = copy.deepcopy(getattr(new, table)[name])
    return handler


def _lists(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    name = (change.item or "").removesuffix(" designation")
    table = "hospitals" if change.parameter == "hospitals" else "disease_lists"
    _declaration(table)(res, attrs.evolve(change, item=name), new, verb)
    if table == "disease_lists" and verb != "removed":
        _add_disease_names(res, new, new.disease_lists[name])


def _documents(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    res.documents = [d for d in res.documents if d.name != change.item]
    if verb != "removed":
        res.documents.append(change.new_value)


def _schemes(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    res.schemes = new.schemes


def _settlement_order(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    res.layers = _reordered(res.layers, [x.id for x in new.layers], lambda x: x.id)


def _reordered(items: list[Any], order: Sequence[str], key: Callable[[Any], str]) -> list[Any]:
    """The items NEW orders, in NEW's order, in the places they hold; the others stay where they are."""
    by_key = {key(x): x for x in items}
    common = [k for k in order if k in by_key]
    shared, slots = set(common), iter(common)
    return [by_key[next(slots)] if key(x) in shared else x for x in items]


# -- layers ----------------------------------------------------------------------------------------------
def _layer(res: Resolved, layer_id: str | None) -> RLayer:
    layer = res.layer(layer_id or "")
    if layer is None:
        raise CannotApply(f"OLD has no layer `{layer_id}` here")
    return layer


def _layers(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    if verb == "added":
        _insert_layer(res, copy.deepcopy(change.new_value), [x.id for x in new.layers])
    elif verb == "removed":
        _remove_layer(res, change.layer or "")
    else:
        _change_layer(_layer(res, change.layer), change, _layer(new, change.layer))


def _insert_layer(res: Resolved, layer: RLayer, order: Sequence[str]) -> None:
    """After its nearest predecessor in NEW's order that the policy has; first when there is none."""
    ids = [x.id for x in res.layers]
    before = [lid for lid in order[: order.index(layer.id)] if lid in ids]
    at = ids.index(before[-1]) + 1 if before else 0
    res.layers.insert(at, layer)


def _remove_layer(res: Resolved, layer_id: str) -> None:
    res.layers = [x for x in res.layers if x.id != layer_id]
    _drop_missing_layers(res)


def _drop_missing_layers(res: Resolved) -> None:
    """Other items' references to layers the policy no longer has (bases, shared caps, alerts)."""
    ids = {x.id for x in res.layers}
    for layer in res.layers:
        if layer.base_after is not None:
            layer.base_after = tuple(x for x in layer.base_after if x in ids)
        layer.exclusive = [x for x in layer.exclusive if x in ids]
    for name, (cap, layers, cites, span) in list(res.shared_caps.items()):
        res.shared_caps[name] = (cap, tuple(x for x in layers if x in ids), cites, span)
    for alert in res.alerts.values():
        if alert.measure is not None:
            alert.measure = attrs.evolve(alert.measure, after=tuple(x for x in alert.measure.after if x in ids))


def _change_layer(layer: RLayer, change: Change, target: RLayer) -> None:
    parameter = change.parameter or ""
    if parameter.startswith("treat:"):
        ident = parameter.partition(":")[2]
        if change.new_value is None:
            layer.treats.pop(ident, None)
        else:
            layer.treats[ident] = change.new_value
    elif parameter == "identity_order":
        layer.identity_order = _reordered(layer.identity_order, target.identity_order, str)
    elif parameter == "scope":
        layer.scope, layer.scope_cites = target.scope, target.scope_cites
    elif parameter == "base":
        layer.base_after, layer.base_plus, layer.base_cites = target.base_after, target.base_plus, target.base_cites
    elif parameter in ("title", "fund", "precedence", "exclusive"):
        setattr(layer, parameter, copy.deepcopy(getattr(target, parameter)))
    else:
        raise CannotApply(f"unknown layer attribute `{parameter}`")


# -- rules -----------------------------------------------------------------------------------------------------
def find_rule(res: Resolved, layer: RLayer, key: str | None) -> RRule:
    """The rule with this semantic key (diff.rule_key) in the layer."""
    rule = diff.rule_keys(layer, res.disease_tokens).get(key or "")
    if rule is None:
        raise CannotApply(f"layer `{layer.id}` has no rule `{key}` here")
    return rule


def _rules(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    layer = _layer(res, change.layer)
    if verb == "added":
        _insert_rule(res, layer, copy.deepcopy(change.new_value), new)
        return
    if verb == "removed":
        if change.rule in diff.rule_keys(layer, res.disease_tokens):  # else gone with its parent
            _remove_rule(layer, find_rule(res, layer, change.rule).key)
        return
    rule = find_rule(res, layer, change.rule)
    if change.parameter == "condition":
        rule.cond = change.new_value
    elif change.parameter == "level":
        rule.kind = find_rule(new, _layer(new, change.layer), change.rule).kind
    elif change.parameter == "over":
        rule.over = tuple(change.new_value)


def _insert_rule(res: Resolved, layer: RLayer, rule: RRule, new: Resolved) -> None:
    """NEW's rule under the same parent (found by its semantic key), after the layer's rules."""
    source = _layer(new, layer.id)
    if rule.parent is not None:
        parent = source.rules[rule.parent]
        rule.parent = find_rule(res, layer, diff.rule_key(parent, source, new.disease_tokens)).key
    while rule.key in layer.rules:
        rule.key += "'"
    rule.seq = max((r.seq for r in layer.rules.values()), default=0) + 1
    layer.rules[rule.key] = rule
    if rule.kind == "identity" and rule.name not in layer.identity_order:
        order = source.identity_order
        before = [i for i in order[: order.index(rule.name)] if i in layer.identity_order] if rule.name in order else []
        at = layer.identity_order.index(before[-1]) + 1 if before else 0
        layer.identity_order.insert(at, rule.name or "")


def _remove_rule(layer: RLayer, key: str) -> None:
    """The rule and every rule nested in it."""
    for child in [k for k, r in layer.rules.items() if r.parent == key]:
        _remove_rule(layer, child)
    rule = layer.rules.pop(key)
    if rule.kind == "identity" and rule.name in layer.identity_order:
        layer.identity_order.remove(rule.name)


def _slots(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    layer = _layer(res, change.layer)
    rule = find_rule(res, layer, change.rule)
    slot = change.parameter or ""
    if verb == "removed":
        rule.settings.pop(slot, None)
    else:
        rule.settings[slot] = copy.deepcopy(change.new_value)


# -- policy-level items ------------------------------------------------------------------------------------------
def _shared_caps(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    if verb == "removed":
        res.shared_caps.pop(change.item or "", None)
    else:
        res.shared_caps[change.item or ""] = copy.deepcopy(change.new_value)


def _added_or_removed(items: MutableMapping[str, Any], change: Change, verb: str) -> bool:
    """An item added or removed as a whole: drop it (and put in a copy of the new one); False for "changed"."""
    if verb == "changed":
        return False
    name = change.item or ""
    items.pop(name, None)
    if verb == "added":
        items[name] = copy.deepcopy(change.new_value)
    return True


def _subsidies(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    if _added_or_removed(res.subsidies, change, verb):
        return
    name = change.item or ""
    sub, target = res.subsidies[name], new.subsidies[name]
    what, _, ident = (change.parameter or "").partition(":")
    if what in ("share", "treat"):
        table = sub.shares if what == "share" else sub.treats
        if change.new_value is None:
            table.pop(ident, None)
        else:
            table[ident] = copy.deepcopy(change.new_value)
    else:
        setattr(sub, what, copy.deepcopy(getattr(target, what)))


def _alerts(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    if _added_or_removed(res.alerts, change, verb):
        return
    name = change.item or ""
    alert, target = res.alerts[name], new.alerts[name]
    what, _, cond = (change.parameter or "").partition(":")
    if what in ("title", "measure"):
        setattr(alert, what, getattr(target, what))
        return

    def key(entry: Any) -> str:
        return diff.cond_text(entry[0], res.disease_tokens, canonical=True)

    wanted = {diff.cond_text(t[0], new.disease_tokens, canonical=True): t for t in target.thresholds}
    if what == "threshold":
        kept = [t for t in alert.thresholds if key(t) != cond]
        alert.thresholds = kept + ([wanted[cond]] if cond in wanted else [])
    else:
        alert.thresholds = _reordered(alert.thresholds, list(wanted), key)


def _requirements(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    res.requirements = [(r, c) for r, c in res.requirements
                        if diff.requirement_text(r, res.disease_tokens) != change.item]
    if verb == "added":
        res.requirements.append((change.new_value, change.new_cites))


def _targets(res: Resolved, change: Change, new: Resolved, verb: str) -> None:
    res.targets = [(t, c) for t, c in res.targets if t.name != change.item]
    if verb != "removed":
        res.targets.append((change.new_value, change.new_cites))


_HANDLERS: Final[dict[str, Callable[[Resolved, Change, Resolved, str], None]]] = {
    "document": _documents, "schemes": _schemes, "fund": _declaration("funds"),
    "identity": _declaration("identities"), "region": _declaration("regions"), "list": _lists,
    "condition": _declaration("conditions"), "param": _declaration("params"),
    "settlement_order": _settlement_order, "layer": _layers, "rule": _rules, "parameter": _slots,
    "shared_cap": _shared_caps, "subsidy": _subsidies, "alert": _alerts, "requirement": _requirements,
    "target": _targets,
}


# ---- measuring --------------------------------------------------------------------------------------------------
@attrs.frozen
class Totals:
    """Payments of one policy (or a difference of two) by layer and by fund, and premium subsidies; fen."""

    layers: Mapping[str, int]
    funds: Mapping[str, int]
    subsidies: int = 0

    @property
    def total(self) -> int:
        return sum(self.layers.values())

    def __sub__(self, other: Totals) -> Totals:
        return Totals(_minus(self.layers, other.layers), _minus(self.funds, other.funds),
                      self.subsidies - other.subsidies)

    def __add__(self, other: Totals) -> Totals:
        return Totals(_plus(self.layers, other.layers), _plus(self.funds, other.funds),
                      self.subsidies + other.subsidies)


ZERO: Final = Totals({}, {})


def _plus(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in dict.fromkeys([*a, *b])}


def _minus(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) - b.get(k, 0) for k in dict.fromkeys([*b, *a])}


@attrs.frozen
class Measured:
    """One part and its effect alone on OLD (zero when not simulated or not applicable alone)."""

    part: Part
    delta: Totals
    simulated: bool
    note: str | None = None


@attrs.frozen
class Attribution:
    """OLD, NEW, the effect of each part alone, and the interaction remainder: parts + remainder = total."""

    parts: tuple[Measured, ...]
    old: metrics.Stats
    new: metrics.Stats
    comparison: compare.Comparison
    year: int

    @property
    def total(self) -> Totals:
        return totals_of(self.new) - totals_of(self.old)

    @property
    def remainder(self) -> Totals:
        out = self.total
        for measured in self.parts:
            out = out - measured.delta
        return out


def totals_of(stats: metrics.Stats) -> Totals:
    return Totals(dict(stats.layer_totals), stats.fund_totals(), sum(a for _n, a in stats.subsidies.values()))


def attribute(old_res: Resolved, new_res: Resolved, changes: Sequence[Change], population_source: Source,
              year: int, settings: Mapping[str, int], progress: Progress | None = None,
              workers: int = 1) -> Attribution:
    """Simulate OLD, NEW and OLD + each part alone on the same population (each block made once)."""
    parts = plan_parts(changes, old_res, new_res)
    variants: list[Graph] = []
    slots: list[int | None] = []
    notes: list[str | None] = []
    for part in parts:
        graph, note = _variant(old_res, part, changes, new_res) if part.effect else (None, None)
        slots.append(len(variants) if graph is not None else None)
        notes.append(note)
        if graph is not None:
            variants.append(graph)
    graphs = _Graphs(compile_resolved(old_res), compile_resolved(new_res), tuple(variants), year,
                     Options(settings=dict(settings)))
    replay = _replay(graphs, population_source, progress, workers)
    base = totals_of(replay.old)
    measured = tuple(
        Measured(part, replay.variants[slot] - base if slot is not None else ZERO, slot is not None, note)
        for part, slot, note in zip(parts, slots, notes, strict=True))
    return Attribution(measured, replay.old, replay.new, replay.comparison, year)


def _variant(old: Resolved, part: Part, changes: Sequence[Change], new: Resolved) -> tuple[Graph | None, str | None]:
    try:
        return compile_resolved(apply_part(old, part, changes, new)), None
    except CannotApply as exc:
        return None, f"cannot be applied alone: {exc}"
    except PolicyError as exc:
        return None, "cannot be applied alone: " + "; ".join(d.message for d in exc.diagnostics)


@attrs.frozen
class _Graphs:
    """What every chunk is evaluated under: OLD, NEW and the variants, in one year, with the settings."""

    old: Graph
    new: Graph
    variants: tuple[Graph, ...]
    year: int
    options: Options


@attrs.define
class _Replay:
    old: metrics.Stats
    new: metrics.Stats
    comparison: compare.Comparison
    variants: list[Totals]


def _replay(graphs: _Graphs, source: Source, progress: Progress | None, workers: int) -> _Replay:
    """Chunks in a fixed order, merged in that order (exact sums: any worker count, the same result)."""
    if workers <= 1:
        results: Iterable[_Replay] = (_replay_chunk(graphs, cols, progress) for cols in chunks(source, graphs.year))
        return _merged_all(results)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        done = pool.map(_run_task, _tasks(graphs, source))
        return _merged_all(_counted(done, len(graphs.variants), progress))


def _counted(results: Iterable[_Replay], per_chunk: int, progress: Progress | None) -> Iterator[_Replay]:
    for result in results:
        if progress:
            progress(per_chunk)
        yield result


def _merged_all(results: Iterable[_Replay]) -> _Replay:
    out: _Replay | None = None
    for one in results:
        out = one if out is None else _merged(out, one)
    assert out is not None
    return out


def _tasks(graphs: _Graphs, source: Source) -> Iterator[tuple[_Graphs, Source, int, Columns | None]]:
    """A synthetic block is made by the worker; a stored chunk is read here and sent."""
    if isinstance(source, Synthetic):
        from simulator.population import block_count

        for block in range(block_count(source.size)):
            yield graphs, source, block, None
        return
    for block, cols in enumerate(chunks(source, graphs.year)):
        yield graphs, source, block, cols


def _run_task(task: tuple[_Graphs, Source, int, Columns | None]) -> _Replay:
    graphs, source, block, cols = task
    if cols is None:
        assert isinstance(source, Synthetic)
        cols = _block(source, graphs.year, block)
    return _replay_chunk(graphs, cols, None)


def chunks(source: Source, year: int) -> Iterator[Columns]:
    """The population chunk by chunk: a synthetic block is generated once for every variant."""
    if isinstance(source, Stored):
        from simulator.parquet_io import iter_population

        yield from iter_population(source.directory)
        return
    from simulator.population import block_count

    for block in range(block_count(source.size)):
        yield _block(source, year, block)


def _block(source: Synthetic, year: int, block: int) -> Columns:
    from simulator.population import generate_block
    from simulator.profile import load_profile

    return generate_block(load_profile(source.profile), source.size, source.seed, year, block)


def _replay_chunk(graphs: _Graphs, cols: Columns, progress: Progress | None) -> _Replay:
    year, options = graphs.year, graphs.options
    a, b = evaluate(graphs.old, cols, options, "vector"), evaluate(graphs.new, cols, options, "vector")
    out = _Replay(metrics.chunk_stats(graphs.old, cols, a, year), metrics.chunk_stats(graphs.new, cols, b, year),
                  compare.compare_chunk(cols, b, a, year, options), [])
    for graph in graphs.variants:
        out.variants.append(result_totals(graph, evaluate(graph, cols, options, "vector"), year))
        if progress:
            progress(1)
    return out


def result_totals(graph: Graph, result: VectorResult, year: int) -> Totals:
    """A result's payments of `year` by layer and fund (the graph's funds), and its premium subsidies."""
    rows = result.py_year == year
    paid = result.py_payments[rows]
    layers = {layer: int(paid[:, i].sum()) for i, layer in enumerate(result.layers)}
    fund_of = {x.id: x.fund for x in graph.layers}
    funds: dict[str, int] = {}
    for layer, amount in layers.items():
        funds[fund_of.get(layer, "")] = funds.get(fund_of.get(layer, ""), 0) + amount
    return Totals(layers, funds, int(np.asarray(result.subsidies[rows]).sum()))


def _merged(a: _Replay, b: _Replay) -> _Replay:
    a.old.merge(b.old)
    a.new.merge(b.new)
    a.comparison.merge(b.comparison)
    a.variants = [x + y for x, y in zip(a.variants, b.variants, strict=True)]
    return a


# ---- the behavioural diff: a job on a population ------------------------------------------------------------------
@attrs.frozen
class Behaviour:
    """The attribution with what the reader needs to read it: the population and the assumed values."""

    attribution: Attribution
    population: Doc
    assumptions: tuple[tuple[str, str, str], ...]
    targets: tuple[TargetNode, ...]


def measure(structural: StructuralDiff, job: Job, progress: Progress | None = None) -> Behaviour:
    """Run the behavioural diff of a structural diff on the job's population, year, settings and workers."""
    result = attribute(structural.old.resolved, structural.new.resolved, structural.changes, job.source, job.year,
                       dict(job.settings), progress, job.workers)
    graphs = [t.graph for t in job.targets]
    return Behaviour(result, _population(job.source, result), job.assumptions, tuple(all_targets(graphs)))


def variant_count(structural: StructuralDiff) -> int:
    """How many variants `measure` simulates (for a progress bar)."""
    parts = plan_parts(structural.changes, structural.old.resolved, structural.new.resolved)
    return sum(1 for p in parts if p.effect)


def _population(source: Source, result: Attribution) -> Doc:
    stats = result.new
    base: Doc = {"year": result.year, "persons": stats.persons, "claims": stats.claims,
                 "claimants": stats.claimants}
    if isinstance(source, Synthetic):
        return {"source": "synthetic", "profile": source.profile, "size": source.size, "seed": source.seed, **base}
    return {"source": "stored", "directory": str(source.directory), **base}


# ---- records (JSON, HTML) ------------------------------------------------------------------------------------------
def impact_record(b: Behaviour) -> Doc:
    """Fund impact as `polc simulate --baseline` reports it: OLD, NEW, their difference, winners and losers."""
    old = summary.figures(b.attribution.old, b.targets)
    new = summary.figures(b.attribution.new, b.targets)
    return {"population": b.population,
            "assumptions": [{"parameter": n, "value": v, "source": why} for n, v, why in b.assumptions],
            "old": old, "new": new, "changes": summary.changes(new, old),
            "winners_losers": summary.movers(b.attribution.comparison)}


def totals_record(t: Totals) -> Doc:
    return {"layers": {k: format_money(v) for k, v in t.layers.items()},
            "funds": {k: format_money(v) for k, v in t.funds.items()},
            "premium_subsidies": format_money(t.subsidies), "total": format_money(t.total)}


def attribution_record(b: Behaviour, d: StructuralDiff) -> Doc:
    a = b.attribution
    return {"method": "each part applied alone to OLD; remainder = (NEW - OLD) - sum of parts",
            "funds": fund_columns(a), "parts": [_part_record(m, d) for m in a.parts],
            "remainder": totals_record(a.remainder), "total": totals_record(a.total)}


def _part_record(m: Measured, d: StructuralDiff) -> Doc:
    return {"changes": list(m.part.changes), "brings": list(m.part.brings), "extras": list(m.part.extras),
            "description": describe_part(m.part, d), "simulated": m.simulated, "note": m.note,
            **totals_record(m.delta)}


def fund_columns(a: Attribution) -> list[str]:
    """The funds that pay under OLD or NEW, in settlement order."""
    return list(dict.fromkeys([*a.old.funds.values(), *a.new.funds.values()]))


def describe_part(part: Part, d: StructuralDiff) -> str:
    """The head change in one line, after its layer or section: `critical_illness: identity tekun: rate …`."""
    head = d.changes[part.changes[0]]
    return f"{head.layer or diff.section(head, d)}: {diff.describe(head)}"


def detail_lines(part: Part, d: StructuralDiff) -> list[str]:
    """The part's other changes and the declarations it brings, one line each."""
    lines = [f"and {diff.describe(d.changes[i])}" for i in part.changes[1:]]
    lines += [f"with {diff.describe(d.changes[i])}" for i in part.brings]
    return lines + [f"with {name} (from NEW)" for name in part.extras]


# ---- text -----------------------------------------------------------------------------------------------------------
def to_text(b: Behaviour, d: StructuralDiff) -> str:
    """The behavioural sections appended to the structural diff's text."""
    dates = (d.old.as_of.isoformat() if d.old.as_of else "latest", d.new.as_of.isoformat() if d.new.as_of else "latest")
    lines = ["", *_impact_lines(b, *dates), "", *_movers_lines(b), "", *_attribution_lines(b, d)]
    return "\n".join(lines) + "\n"


def _money(fen: int, signed: bool = False) -> str:
    text = format_money(fen)
    return ("+" + text) if signed and fen > 0 else text


def _impact_lines(b: Behaviour, old_as_of: str, new_as_of: str) -> list[str]:
    p = b.population
    where = (f"synthetic, profile {p['profile']}, seed {p['seed']}" if p["source"] == "synthetic"
             else f"population {p['directory']}")
    lines = [f"fund impact — {p['persons']:,} persons, {p['claims']:,} claims ({where}, year {p['year']})",
             f"OLD as of {old_as_of} and NEW as of {new_as_of}, each applied to every claim of {p['year']}"]
    a = b.attribution
    old, new = totals_of(a.old), totals_of(a.new)
    rows: list[tuple[str, int, int]] = [(k, old.layers.get(k, 0), new.layers.get(k, 0))
                                        for k in dict.fromkeys([*old.layers, *new.layers])]
    width = max(len(k) for k in [*old.layers, *new.layers, *old.funds, *new.funds, "out of pocket", "paid"]) + 2
    lines.append(f"  {'payments by layer'.ljust(width)}  {'OLD':>16}  {'NEW':>16}  {'change':>14}")
    lines += [_row(k, o, n, width) for k, o, n in rows]
    lines.append("  payments by fund")
    lines += [_row(k, old.funds.get(k, 0), new.funds.get(k, 0), width) for k in fund_columns(a)]
    lines.append(_row("paid", old.total, new.total, width))
    lines.append(_row("out of pocket", a.old.total_cost - old.total, a.new.total_cost - new.total, width))
    if old.subsidies or new.subsidies:
        lines.append(_row("premium subsidies", old.subsidies, new.subsidies, width))
    lines += [f"  assumption: {n} = {v} ({why})" for n, v, why in b.assumptions]
    return lines


def _row(label: str, old: int, new: int, width: int) -> str:
    return f"    {label.ljust(width - 2)}  {_money(old):>16}  {_money(new):>16}  {_money(new - old, True):>14}"


def _movers_lines(b: Behaviour) -> list[str]:
    doc = summary.movers(b.attribution.comparison)
    rows = [("all", doc["total"]), *doc["by_group"].items()]
    lines = ["winners and losers — out of pocket under NEW against OLD, by group (the most protected status held)",
             f"  {'group':<20} {'winners':>9} {'pay less':>14} {'losers':>9} {'pay more':>14}"]
    lines += [f"  {g:<20} {m['winners']:>9,} {m['gained']:>14} {m['losers']:>9,} {m['lost']:>14}" for g, m in rows]
    return lines


def _attribution_lines(b: Behaviour, d: StructuralDiff) -> list[str]:
    a = b.attribution
    funds = fund_columns(a)
    subsidies = any(m.delta.subsidies for m in a.parts) or a.total.subsidies != 0
    heads = [*funds, "total", *(["subsidies"] if subsidies else [])]
    widths = [max(len(h), 13) for h in heads]

    def numbers(t: Totals) -> str:
        values = [*(t.funds.get(f, 0) for f in funds), t.total, *([t.subsidies] if subsidies else [])]
        return "  ".join(_money(v, True).rjust(w) for v, w in zip(values, widths, strict=True))

    blank = "  ".join(" " * w for w in widths)
    lines = ["attribution — each change applied alone to OLD; parts + interaction remainder = total (fen-exact)",
             "  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)) + "  change"]
    for m in (m for m in a.parts if m.part.effect):
        lines.append(f"  {numbers(m.delta)}  {describe_part(m.part, d)}")
        lines += [f"  {blank}    {x}" for x in detail_lines(m.part, d) + ([m.note] if m.note else [])]
    lines.append(f"  {numbers(a.remainder)}  interaction remainder")
    lines.append(f"  {numbers(a.total)}  total (NEW − OLD)")
    if subsidies:
        lines.append("  subsidies: premium subsidies (参保资助), not payments for claims: not in total")
    zero = [m for m in a.parts if not m.part.effect]
    if zero:
        lines += ["", f"no fund effect possible — not simulated, 0.00 each ({len(zero)})"]
        lines += [f"  {describe_part(m.part, d)}" for m in zero]
    return lines


# ---- HTML ------------------------------------------------------------------------------------------------------------
def html_context(b: Behaviour, d: StructuralDiff) -> Doc:
    """Plain records for the template's behavioural sections."""
    a = b.attribution
    movers = summary.movers(a.comparison)
    return {"population": b.population, **_impact_rows(a),
            "assumptions": [f"{n} = {v} ({why})" for n, v, why in b.assumptions],
            "movers": [{"group": "all", **movers["total"]}, *({"group": g, **m} for g, m in movers["by_group"].items())],
            "columns": [*fund_columns(a), "total", "premium subsidies"],
            "parts": [{"text": describe_part(m.part, d), "amounts": _amounts(m.delta, a),
                       "details": detail_lines(m.part, d) + ([m.note] if m.note else [])}
                      for m in a.parts if m.part.effect],
            "remainder": _amounts(a.remainder, a), "total": _amounts(a.total, a),
            "zero": [describe_part(m.part, d) for m in a.parts if not m.part.effect]}


def _impact_rows(a: Attribution) -> Doc:
    """OLD, NEW and the change of each layer, fund and total."""
    old, new = totals_of(a.old), totals_of(a.new)

    def rows(o: Mapping[str, int], n: Mapping[str, int]) -> list[Doc]:
        return [{"name": k, "old": _money(o.get(k, 0)), "new": _money(n.get(k, 0)),
                 "change": _money(n.get(k, 0) - o.get(k, 0), True)} for k in dict.fromkeys([*o, *n])]

    def overall(t: Totals, stats: metrics.Stats) -> dict[str, int]:
        return {"paid": t.total, "out of pocket": stats.total_cost - t.total, "premium subsidies": t.subsidies}

    return {"layers": rows(old.layers, new.layers), "funds": rows(old.funds, new.funds),
            "totals": rows(overall(old, a.old), overall(new, a.new))}


def _amounts(t: Totals, a: Attribution) -> list[str]:
    """A row of the attribution table: each fund, the total, the premium subsidies."""
    return [*(_money(t.funds.get(f, 0), True) for f in fund_columns(a)), _money(t.total, True),
            _money(t.subsidies, True)]
