"""Compiler: CheckedPolicy -> Graph (one epoch per period between change dates)."""

from __future__ import annotations

from typing import Any, cast

from policy_lang import ast
from policy_lang.check import CheckedPolicy, ordered_rules, rule_preds
from policy_lang.conditions import and_, env_of, lower_cond
from policy_lang.diagnostics import Diagnostic, PolicyError, error
from policy_lang.graph import (
    AlertNode,
    ColumnInfo,
    Epoch,
    Graph,
    IdentitySpec,
    LayerInfo,
    LayerVersion,
    Lit,
    PIn,
    PNot,
    Pool,
    Pred,
    Program,
    PTrue,
    Rule,
    Share,
    SubsidyNode,
    TargetNode,
    Threshold,
    Val,
)
from policy_lang.resolve import Resolved, RLayer
from policy_lang.values import NoneVal, to_fen, to_ppm

# Value a parameter takes when no rule of the layer sets it.
SLOT_DEFAULTS: dict[str, Any] = {
    "deductible": None, "period": "claim", "pricing": None, "bonus": None,
    "cap_claim": None, "cap_year": None, "accumulator": "main",
}


def compile_policy(checked: CheckedPolicy) -> Graph:
    diags: list[Diagnostic] = []
    order = _layer_order(checked, diags)
    epochs = tuple(_epoch(p.resolved, p.start, p.end, order, diags) for p in checked.periods)
    if diags:
        raise PolicyError(diags)
    latest = checked.latest
    main = checked.chain[-1].policy  # the file's own policy, even when it has lapsed by the latest period
    infos = []
    for lid in order:
        layer = next(p.resolved.layer(lid) for p in reversed(checked.periods) if p.resolved.layer(lid))
        assert layer is not None
        infos.append(LayerInfo(lid, layer.title, layer.fund or "", layer.cites))
    funds = tuple((fid, title) for p in [latest] for fid, (title, _c) in p.funds.items())
    identities = sorted({i for p in checked.periods for i in p.resolved.identities})
    tokens = sorted({(t, c) for p in checked.periods for t, c in p.resolved.disease_tokens.items()})
    columns = sorted({(c.name, c.entity, c.type) for p in checked.periods for c in p.resolved.columns.values()})
    return Graph(
        policy=main.name, title=main.title or main.name,
        schemes=tuple(dict.fromkeys(s for p in checked.periods for s in p.resolved.schemes)),
        layers=tuple(infos), funds=funds, epochs=epochs, identities=tuple(identities), diseases=tuple(tokens),
        columns=tuple(ColumnInfo(n, cast(Any, e), cast(Any, t)) for n, e, t in columns))


def _layer_order(checked: CheckedPolicy, diags: list[Diagnostic]) -> list[str]:
    """One settlement order for every epoch: each epoch's layers, merged in first-seen order."""
    order: list[str] = []
    for period in checked.periods:
        ids = [layer.id for layer in period.resolved.layers]
        for i, lid in enumerate(ids):
            if lid in order:
                continue
            prev = next((ids[j] for j in range(i - 1, -1, -1) if ids[j] in order), None)
            order.insert(order.index(prev) + 1 if prev else 0, lid)
        present = [lid for lid in order if lid in ids]
        if present != ids:
            layer = period.resolved.layers[0]
            diags.append(error("layers change their settlement order between dates: "
                               f"{' -> '.join(ids)} vs {' -> '.join(present)}", layer.span))
    return order


def _epoch(res: Resolved, start: Any, end: Any, order: list[str], diags: list[Diagnostic]) -> Epoch:
    versions = tuple(_layer_version(res, res.layer(lid), order, diags) if res.layer(lid) else None
                     for lid in order)
    return Epoch(
        start=start, end=end, layers=versions, pools=_pools(res, order), alerts=_alerts(res, order),
        subsidies=_subsidies(res), targets=_targets(res, order), params=_params(res),
        documents=tuple(d.document or d.name for d in res.documents))


def _layer_version(res: Resolved, layer: RLayer | None, order: list[str], diags: list[Diagnostic]) -> LayerVersion:
    assert layer is not None
    env = env_of(res, in_layer=False)
    scope = _scope(res, layer, env, diags)
    preds = rule_preds(res, layer, diags)
    ids = [x.id for x in res.layers]
    base_from = layer.base_after if layer.base_after is not None else tuple(ids[: ids.index(layer.id)])
    identity = None
    if layer.identity_order:
        mapping = {i: i for i in layer.identity_order} | dict(layer.treats)
        identity = IdentitySpec(layer.precedence, tuple(layer.identity_order), tuple(sorted(mapping.items())))
    programs = {slot: _program(layer, slot, preds) for slot in SLOT_DEFAULTS}
    return LayerVersion(
        scope=scope, scope_cites=layer.scope_cites, base_from=tuple(order.index(x) for x in base_from),
        base_plus=layer.base_plus, base_cites=layer.base_cites, identity=identity,
        deductible=programs["deductible"], period=programs["period"], pricing=programs["pricing"],
        bonus=programs["bonus"], cap_claim=programs["cap_claim"], cap_year=programs["cap_year"],
        accumulator=programs["accumulator"])


def _scope(res: Resolved, layer: RLayer, env: Any, diags: list[Diagnostic]) -> Pred:
    scope = lower_cond(layer.scope, env, diags) if layer.scope is not None else PTrue()
    parts = [scope]
    if res.schemes:
        parts.append(PIn("scheme", frozenset(res.schemes)))
    for other in res.layers:
        if layer.id in other.exclusive and other.scope is not None:
            parts.append(PNot(lower_cond(other.scope, env, diags)))
    return and_(*parts)


def _program(layer: RLayer, slot: str, preds: dict[str, Pred]) -> Program[Any]:
    rules, below = ordered_rules(layer, slot, preds)
    built: dict[str, Rule[Any]] = {}
    out = []
    for r in rules:
        setting = r.settings[slot]
        under = Program(tuple(built[o.key] for o in rules if o.key in below[r.key]))
        value = None if isinstance(setting.value, NoneVal) else setting.value
        name = r.name or ("default" if r.kind == "default" else f"line {r.span.line}")
        rule = Rule(name, preds[r.key], value, under if under.rules else None, setting.cites)
        built[r.key] = rule
        out.append(rule)
    return Program(tuple(out))


def _pools(res: Resolved, order: list[str]) -> tuple[Pool, ...]:
    out = []
    for name, (cap, layers, cites, _span) in res.shared_caps.items():
        if isinstance(cap, NoneVal):
            continue
        out.append(Pool(name, cap, tuple(sorted(order.index(lid) for lid in layers)), cites))
    return tuple(out)


def _alerts(res: Resolved, order: list[str]) -> tuple[AlertNode, ...]:
    out = []
    diags: list[Diagnostic] = []
    for alert in res.alerts.values():
        assert alert.measure is not None
        where = lower_cond(alert.measure.where, env_of(res, in_layer=False), diags)
        thresholds = tuple(
            Threshold(lower_cond(cond, env_of(res, in_layer=False, person_only=True), diags), value, cites)
            for cond, value, cites, _span in alert.thresholds if not isinstance(value, NoneVal))
        out.append(AlertNode(alert.id, alert.title, tuple(order.index(x) for x in alert.measure.after), where,
                             thresholds, alert.cites))
    return tuple(out)


def _subsidies(res: Resolved) -> tuple[SubsidyNode, ...]:
    out = []
    diags: list[Diagnostic] = []
    for sub in res.subsidies.values():
        if sub.amount is None or isinstance(sub.amount, NoneVal):
            continue
        groups: dict[tuple[Any, ...], list[str]] = {}
        cites_of: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for ident, (rate, cites) in sub.shares.items():
            key = (rate,)
            groups.setdefault(key, []).append(ident)
            cites_of[key] = cites
        for raw, target in sub.treats.items():
            if target in sub.shares:
                key = (sub.shares[target][0],)
                groups[key].append(raw)
        shares = tuple(Share(frozenset(ids), cast(Val, key[0]), cites_of[key]) for key, ids in groups.items())
        scope = lower_cond(sub.scope, env_of(res, in_layer=False, person_only=True), diags) \
            if sub.scope is not None else PTrue()
        if res.schemes:
            scope = and_(scope, PIn("scheme", frozenset(res.schemes)))
        out.append(SubsidyNode(sub.id, sub.title, sub.amount, scope, shares, sub.cites))
    return tuple(out)


def _targets(res: Resolved, order: list[str]) -> tuple[TargetNode, ...]:
    out = []
    diags: list[Diagnostic] = []
    for target, cites in res.targets:
        minimum = target.minimum
        ppm = to_ppm(minimum.value, minimum.span) if isinstance(minimum, ast.Percent) else 0
        out.append(TargetNode(target.name, target.title or target.name, target.layers,
                              lower_cond(target.where, env_of(res, in_layer=False), diags), ppm, target.by, cites))
    return tuple(out)


def _params(res: Resolved) -> tuple[tuple[str, int | None], ...]:
    out: list[tuple[str, int | None]] = []
    for name, (pv, _cites, span) in sorted(res.params.items()):
        if pv.declared_unspecified:
            out.append((name, None))
            continue
        if pv.value is None or isinstance(pv.value, (str, bool)):
            continue
        if pv.kind == "rate":
            out.append((name, to_ppm(pv.value, span)))
        elif pv.kind == "count":
            out.append((name, int(pv.value)))
        else:
            out.append((name, to_fen(pv.value, span)))
    return tuple(out)


def param_kinds(checked: CheckedPolicy) -> dict[str, str]:
    """Each named parameter's kind (money, rate, count, …), for `--set NAME=VALUE`."""
    out: dict[str, str] = {}
    for period in checked.periods:
        for name, (pv, _c, _s) in period.resolved.params.items():
            out[name] = pv.kind
    return out


def constant(value: Val) -> int | None:
    return value.value if isinstance(value, Lit) else None


def compile_resolved(res: Resolved) -> Graph:
    """One resolved policy (valid at every date) as a graph: for what-if variants built from a Resolved."""
    diags: list[Diagnostic] = []
    order = [layer.id for layer in res.layers]
    epoch = _epoch(res, None, None, order, diags)
    if diags:
        raise PolicyError(diags)
    infos = tuple(LayerInfo(layer.id, layer.title, layer.fund or "", layer.cites) for layer in res.layers)
    columns = sorted({(c.name, c.entity, c.type) for c in res.columns.values()})
    return Graph(
        policy=res.name, title=res.title, schemes=res.schemes, layers=infos,
        funds=tuple((fid, title) for fid, (title, _c) in res.funds.items()), epochs=(epoch,),
        identities=tuple(sorted(res.identities)), diseases=tuple(sorted(res.disease_tokens.items())),
        columns=tuple(ColumnInfo(n, cast(Any, e), cast(Any, t)) for n, e, t in columns))
