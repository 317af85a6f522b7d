"""Requirements (compliance floors): does a policy meet the `require` statements of another?

The target is resolved at the date the floors take effect (or its latest rules if it starts later).
Rates are read from the layer's general rules (identity schedules are tilts above the floor); a
relation between rates (`rate[retired] > rate[not retired]`) is tested on probe claims at each
hospital level, for every claim kind the layer covers.
"""

from __future__ import annotations

import datetime
import itertools
from typing import Any

from policy_lang import ast, vocabulary
from policy_lang.check import rule_preds
from policy_lang.conditions import env_of, lower_cond
from policy_lang.data import Claim, Person
from policy_lang.diagnostics import Diagnostic, Related, error
from policy_lang.graph import COMPARISONS, Flat, Lit, Lvl, Pred, Tiered
from policy_lang.interp import _Ctx, test_pred
from policy_lang.pipeline import Built
from policy_lang.resolve import Resolved, RLayer, canon
from policy_lang.values import NoneVal, show


def check_against(floors: Built, target: Built) -> list[Diagnostic]:
    floor_res = floors.checked.latest
    day = next((d.effective for d in floor_res.documents if d.effective), None)
    res = target.checked.at(day) if day else target.checked.latest
    if not res.layers:
        res = target.checked.latest
    out: list[Diagnostic] = []
    for req, cites in floor_res.requirements:
        if req.schemes and res.schemes and not {canon(x) for x in req.schemes} & set(res.schemes):
            continue
        problem = _evaluate(req, res)
        if problem is None:
            continue
        layer = res.layer(req.layer)
        span = layer.span if layer else res_span(target)
        floor_cite = "; ".join(c.text() for c in cites)
        here = "; ".join(c.text() for c in layer.cites) if layer else res.title
        out.append(error(f"`{req.layer}` {problem} — required by {floor_cite}", span,
                         f"this policy: {here}", [Related(req.span, f"the requirement ({floor_cite})")]))
    return out


def res_span(target: Built) -> ast.Span:
    return target.checked.chain[-1].policy.span


def _evaluate(req: ast.Requirement, res: Resolved) -> str | None:
    layer = res.layer(req.layer)
    prop = req.prop
    if layer is None:
        return "does not exist" if isinstance(prop, ast.ReqExists) else "does not exist, so it cannot meet the floor"
    match prop:
        case ast.ReqExists():
            return None
        case ast.ReqTiered():
            pricing = _default_pricing(layer)
            return None if isinstance(pricing, Tiered) and len(pricing.tiers) > 1 else "is not paid in tiers (分段)"
        case ast.ReqRate(op, value):
            return _rate_floor(layer, op, value)
        case ast.ReqCap(op, value, or_none):
            return _cap_floor(layer, op, value, or_none)
        case ast.ReqNoCap():
            cap = _general_caps(layer)
            return None if not cap else f"has a cap of {', '.join(cap)}"
        case ast.ReqRateRelation(left, op, right):
            return _relation(res, layer, left, op, right)
    raise AssertionError(prop)  # pragma: no cover


def _default_pricing(layer: RLayer) -> Any:
    setting = layer.default.settings.get("pricing")
    return setting.value if setting else None


def _general_rates(layer: RLayer) -> list[int]:
    rates: list[int] = []
    for rule in layer.rules.values():
        if rule.kind == "identity" or rule.parent:
            continue
        pricing = rule.settings.get("pricing")
        value = pricing.value if pricing else None
        if isinstance(value, Flat):
            rates.extend(_ints(value.rate))
        elif isinstance(value, Tiered):
            rates.extend(t.rate for t in value.tiers if t.rate > 0)
    return rates


def _ints(value: Any) -> list[int]:
    if isinstance(value, Lit):
        return [value.value]
    if isinstance(value, Lvl):
        return list(value.values)
    return []


def _want(value: ast.Value, kind: str) -> int:
    if isinstance(value, ast.Percent):
        return int(value.value * 10_000)
    if isinstance(value, ast.Amount):
        return int(value.value * 100)
    raise ValueError(kind)


def _rate_floor(layer: RLayer, op: str, value: ast.Value) -> str | None:
    rates = _general_rates(layer)
    if not rates:
        return "has no rate"
    want = _want(value, "rate")
    bad = [r for r in rates if not COMPARISONS[op](r, want)]
    if not bad:
        return None
    return f"pays {show(Lit(min(bad)), 'rate')}, which is not {op} {show(Lit(want), 'rate')}"


def _general_caps(layer: RLayer) -> list[str]:
    caps = []
    for rule in layer.rules.values():
        if rule.kind == "identity" or rule.parent:
            continue
        cap = rule.settings.get("cap_year")
        if cap is not None and not isinstance(cap.value, NoneVal):
            caps.append(show(cap.value, "money"))
    return caps


def _cap_floor(layer: RLayer, op: str, value: ast.Value, or_none: bool) -> str | None:
    setting = layer.default.settings.get("cap_year")
    if setting is None or isinstance(setting.value, NoneVal):
        return None if or_none else "has no cap"
    want = _want(value, "money")
    bad = [v for v in _ints(setting.value) if not COMPARISONS[op](v, want)]
    if not bad:
        return None
    return f"cap {show(Lit(min(bad)), 'money')} is not {op} the floor {show(Lit(want), 'money')}"


def _relation(res: Resolved, layer: RLayer, left: ast.Cond, op: str, right: ast.Cond) -> str | None:
    diags: list[Diagnostic] = []
    env = env_of(res, in_layer=False)
    lp, rp = lower_cond(left, env, diags), lower_cond(right, env, diags)
    scope = lower_cond(layer.scope, env, diags) if layer.scope is not None else None
    preds = rule_preds(res, layer, diags)
    for level in (1, 2, 3):
        lr = _probe_rates(layer, preds, scope, lp, level, res)
        rr = _probe_rates(layer, preds, scope, rp, level, res)
        if lr and rr and not COMPARISONS[op](min(lr), max(rr)):
            return (f"at level {level} pays {show(Lit(min(lr)), 'rate')} where the requirement wants more than "
                    f"{show(Lit(max(rr)), 'rate')}" if op in (">", ">=") else
                    f"at level {level}: {show(Lit(min(lr)), 'rate')} is not {op} {show(Lit(max(rr)), 'rate')}")
    return None


def _probe_rates(layer: RLayer, preds: dict[str, Pred], scope: Pred | None, who: Pred, level: int,
                 res: Resolved) -> list[int]:
    day = res.date or datetime.date(2000, 1, 1)
    schemes = res.schemes or tuple(vocabulary.SCHEMES)
    rates = []
    for kind, scheme, retired, grassroots in itertools.product(vocabulary.KINDS, schemes, (False, True),
                                                               (False, True)):
        person = Person(person_id="probe", scheme=scheme, retired=retired)
        claim = Claim(claim_id="probe", person_id="probe", date=day, kind=kind, hospital_level=level,
                      total_cost=100_000, eligible_cost=100_000, grassroots=grassroots)
        ctx = _Ctx(person, claim, day)
        if (scope is not None and not test_pred(scope, ctx)) or not test_pred(who, ctx):
            continue
        rate = _rate_for(layer, preds, ctx, level)
        if rate is not None:
            rates.append(rate)
    return rates


def _rate_for(layer: RLayer, preds: dict[str, Pred], ctx: _Ctx, level: int) -> int | None:
    applicable = [r for r in layer.rules.values() if "pricing" in r.settings and r.kind != "identity"
                  and test_pred(preds[r.key], ctx)]
    if not applicable:
        return None
    rule = max(applicable, key=lambda r: (_level(r.kind), r.seq))
    value = rule.settings["pricing"].value
    if isinstance(value, Flat):
        ints = _ints(value.rate)
        return ints[level - 1] if len(ints) == 3 else (ints[0] if ints else None)
    if isinstance(value, Tiered):
        return min(t.rate for t in value.tiers)
    return None


def _level(kind: str) -> int:
    return {"default": 0, "identity": 1, "when": 1, "exception": 2}[kind]
