"""Checker: a loaded Program -> CheckedPolicy (its amendment chain resolved at every change date).

Collects every problem as a diagnostic and raises PolicyError once if any is an error: unknown
names (with a "did you mean"), wrong kinds of values, rates outside 0–100%, tiers out of order,
negative amounts, amendment cycles, rules that can apply together with different values (a conflict,
shown with both citations), caps shared by layers that are not adjacent or not disjoint, and numbers
without a citation (a warning).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import attrs

from policy_lang import ast, vocabulary
from policy_lang.conditions import and_, env_of, implies, lower_cond, overlap
from policy_lang.diagnostics import (
    Diagnostic,
    PolicyError,
    Related,
    SourceCache,
    did_you_mean,
    error,
    warning,
)
from policy_lang.graph import RATE_ONE, Flat, Lit, Lvl, POr, Pred, PSelected, PTrue, Tiered, Unit
from policy_lang.load import Program
from policy_lang.resolve import (
    LEVEL,
    MAX_MAGNITUDE,
    SLOT_KINDS,
    ChainDoc,
    Resolved,
    RLayer,
    RRule,
    canon,
    change_dates,
    resolve,
)
from policy_lang.values import NoneVal, has_below, show


@attrs.frozen
class Period:
    start: datetime.date | None
    end: datetime.date | None
    resolved: Resolved


@attrs.frozen
class CheckedPolicy:
    name: str
    chain: tuple[ChainDoc, ...]
    periods: tuple[Period, ...]  # contiguous, in time order
    tests: tuple[tuple[ast.Test, str], ...]  # in-file tests of the main file
    warnings: tuple[Diagnostic, ...]
    sources: SourceCache = attrs.field(eq=False)

    def at(self, day: datetime.date) -> Resolved:
        for p in self.periods:
            if (p.start is None or p.start <= day) and (p.end is None or day < p.end):
                return p.resolved
        return self.periods[-1].resolved  # pragma: no cover

    @property
    def latest(self) -> Resolved:
        return self.periods[-1].resolved


def check(program: Program) -> CheckedPolicy:
    diags: list[Diagnostic] = []
    policies = _index(program, diags)
    main = program.main
    chain = _chain(main.policy, policies, diags)
    if not chain:
        raise PolicyError(_dedupe(diags))
    for doc in chain:
        _static(doc, diags)
    dates = change_dates(chain)
    starts: list[datetime.date | None] = [None, *dates]
    _check_size(chain, len(starts))
    periods = []
    pairs = 0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        # The open-ended first period is what is in force the day before the first change.
        day = start if start is not None or not dates else dates[0] - datetime.timedelta(days=1)
        res = resolve(chain, day, diags)
        pairs += sum(len(layer.rules) ** 2 for layer in res.layers)
        if _too_many(res, pairs, diags):
            break
        _semantic(res, diags)
        periods.append(Period(start, end, res))
    _check_test_settings(main.policy, diags)
    found = _dedupe(diags)
    if any(d.severity == "error" for d in found):
        raise PolicyError(found)
    tests = tuple((t, main.path) for t in main.policy.items if isinstance(t, ast.Test))
    return CheckedPolicy(main.policy.name, tuple(chain), tuple(periods), tests, tuple(found), program.sources)


# ---- size limits --------------------------------------------------------------------------------------
# Robustness: the whole chain is resolved again at every change date, rule ordering and conflicts are
# quadratic in a layer's rules (the layer count is bounded in resolve); a generated or hostile policy
# (10,000 rules, a date on every statement) ran for hours. These bounds are far above any real
# schedule (the bundled ones: at most 9 rules in a layer, 4 periods) and end such a policy with one
# clear error instead.
MAX_RULE_PAIRS = 250_000  # sum over periods and layers of (rules in the layer)²
MAX_PERIOD_NODES = 20_000_000  # periods × syntax-tree nodes of the chain: the cost of resolving


def _check_size(chain: list[ChainDoc], periods: int) -> None:
    if periods <= 50:  # even the largest file accepted resolves 50 times in seconds: skip the count
        return
    nodes, stack, budget = 0, [doc.policy for doc in chain], MAX_PERIOD_NODES // periods
    while stack and nodes <= budget:  # iterative, and stops as soon as the budget is spent
        node = stack.pop()
        nodes += 1
        if isinstance(node, tuple):
            stack.extend(node)
        elif attrs.has(type(node)):
            stack.extend(getattr(node, f.name) for f in attrs.fields(type(node)) if f.name != "span")
    if nodes > budget:
        raise PolicyError([error(
            f"policy too large to check: {periods} periods (change dates) over {nodes:,}+ syntax nodes",
            chain[-1].policy.span, "fewer distinct `effective`/`until` dates, or split the policy")])


def _check_test_settings(policy: ast.Policy, diags: list[Diagnostic]) -> None:
    """`set NAME = VALUE` in a test is bounded as parameters are (resolve.MAX_MAGNITUDE): a huge one
    crashed the vector engine with OverflowError under `polc test`."""
    for test in (t for t in policy.items if isinstance(t, ast.Test)):
        for it in test.items:
            if isinstance(it, ast.TestSet) and isinstance(it.value, ast.Amount | ast.Percent) and \
                    abs(it.value.value) * (10_000 if isinstance(it.value, ast.Percent) else 100) > MAX_MAGNITUDE:
                diags.append(error("value too large", it.span, "amounts are at most 10,000,000,000 yuan"))


def _too_many(res: Resolved, pairs: int, diags: list[Diagnostic]) -> bool:
    if pairs > MAX_RULE_PAIRS:
        layer = max(res.layers, key=lambda x: len(x.rules))
        diags.append(error(f"too many rules to check: layer `{layer.id}` has {len(layer.rules)} rules and "
                           "identity entries", layer.span,
                           f"the limit is about {int(MAX_RULE_PAIRS ** 0.5)} in one layer, fewer when "
                           "the policy has many change dates"))
        return True
    return False


def _dedupe(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    seen: dict[tuple[str, int, int, str], Diagnostic] = {}
    for d in diags:
        seen.setdefault((d.span.path, d.span.line, d.span.column, d.message), d)
    return sorted(seen.values(), key=lambda d: (d.span.path, d.span.line, d.span.column))


# ---- policies and the amendment chain -------------------------------------------------------------------
def _index(program: Program, diags: list[Diagnostic]) -> dict[str, ChainDoc]:
    out: dict[str, ChainDoc] = {}
    for file in program.files:
        name = file.policy.name
        if name in out and out[name].path != file.path:
            diags.append(error(f"two policies are named `{name}`", file.policy.span,
                               related=[Related(out[name].policy.span, "the other one")]))
        out[name] = ChainDoc(file.policy, file.path)
    return out


def _chain(main: ast.Policy, policies: dict[str, ChainDoc], diags: list[Diagnostic]) -> list[ChainDoc]:
    chain: list[ChainDoc] = []
    current: ast.Policy | None = main
    seen: list[str] = []
    while current is not None:
        if current.name in seen:
            path = " -> ".join([*seen[seen.index(current.name):], current.name])
            diags.append(error(f"amendment cycle: {path}", current.span))
            return []
        seen.append(current.name)
        chain.append(policies[current.name])
        if current.amends is None:
            break
        nxt = policies.get(current.amends)
        if nxt is None:
            diags.append(error(f"`{current.name}` amends unknown policy `{current.amends}`", current.span,
                               did_you_mean(current.amends, policies) or
                               "import the file that defines it: import \"path/to/base.pol\""))
            return []
        current = nxt.policy
    return list(reversed(chain))


# ---- static checks: citations and schemes ---------------------------------------------------------------
def _static(doc: ChainDoc, diags: list[Diagnostic]) -> None:
    p = doc.policy
    for scheme in (canon(x) for x in p.schemes):
        if scheme not in vocabulary.SCHEMES:
            diags.append(error(f"unknown scheme `{scheme}`", p.span, did_you_mean(scheme, vocabulary.SCHEMES)))
    if p.effective and p.until and p.until < p.effective:
        diags.append(error("the document expires before it takes effect", p.span))
    cited_whole = p.document is None and bool(p.source)
    for item in p.items:
        _citations(item, cited_whole, diags)


_NUMBERED = (ast.Deductible, ast.Rate, ast.Tiers, ast.UnitRate, ast.Bonus, ast.Cap, ast.Param, ast.SharedCap,
             ast.Share, ast.SubsidyAmount, ast.Threshold)


def _citations(node: Any, cited: bool, diags: list[Diagnostic]) -> None:
    """Warn on numbers whose statement and enclosing blocks carry no `source`."""
    clauses = getattr(node, "clauses", None)
    here = cited or bool(clauses is not None and clauses.source)
    if isinstance(node, _NUMBERED) and not here and _has_number(node):
        diags.append(warning("this number has no citation", node.span,
                             "add `source \"<document> <article>\"` to the statement or its block"))
    for child in _children(node):
        _citations(child, here, diags)


def _children(node: Any) -> list[Any]:
    if isinstance(node, ast.Test):
        return []
    items = getattr(node, "items", None)
    if isinstance(items, tuple):
        return list(items)
    entries = getattr(node, "entries", None)
    return list(entries) if isinstance(entries, tuple) and not isinstance(node, ast.DiseaseList) else []


def _has_number(node: Any) -> bool:
    if isinstance(node, ast.Amount | ast.Percent):
        return True
    if attrs.has(type(node)):
        return any(_has_number(getattr(node, f.name)) for f in attrs.fields(type(node)) if f.name != "span")
    if isinstance(node, tuple):
        return any(_has_number(x) for x in node)
    return False


# ---- semantic checks on a resolved policy ----------------------------------------------------------------
def _semantic(res: Resolved, diags: list[Diagnostic]) -> None:
    layer_ids = [layer.id for layer in res.layers]
    for layer in res.layers:
        _check_layer(res, layer, layer_ids, diags)
    _check_pools(res, diags)
    _check_alerts(res, layer_ids, diags)
    _check_subsidies(res, diags)
    for target, _cites in res.targets:
        # A target names the layers of whichever policy is simulated, not necessarily this one's.
        lower_cond(target.where, env_of(res, in_layer=False), diags)


def _check_layer(res: Resolved, layer: RLayer, layer_ids: list[str], diags: list[Diagnostic]) -> None:
    if layer.fund is not None and layer.fund not in res.funds:
        diags.append(error(f"unknown fund `{layer.fund}`", layer.span, did_you_mean(layer.fund, res.funds)))
    for other in layer.exclusive:
        if other not in layer_ids:
            diags.append(error(f"unknown layer `{other}`", layer.span, did_you_mean(other, layer_ids)))
    earlier = layer_ids[: layer_ids.index(layer.id)]
    for lid in layer.base_after or ():
        if lid not in earlier:
            hint = "a layer's base can only subtract layers paid before it" if lid in layer_ids else \
                did_you_mean(lid, layer_ids)
            diags.append(error(f"`{lid}` is not a layer paid before `{layer.id}`", layer.span, hint))
    for col in layer.base_plus:
        _claim_column(res, col, ("money",), layer.span, diags)
    if layer.scope is not None:
        lower_cond(layer.scope, env_of(res, in_layer=False), diags)
    _check_identities(res, layer, diags)
    preds = rule_preds(res, layer, diags)
    for rule in layer.rules.values():
        _check_rule_values(res, layer, rule, diags)
        for name in rule.over:
            if not any(r.name == name for r in layer.rules.values() if r is not rule):
                diags.append(error(f"`over {name}`: no rule `{name}` in layer `{layer.id}`", rule.span,
                                   did_you_mean(name, [r.name for r in layer.rules.values() if r.name])))
    for slot in SLOT_KINDS:
        _check_conflicts(layer, slot, preds, diags)
    _check_below_pricing(layer, preds, diags)


def _check_identities(res: Resolved, layer: RLayer, diags: list[Diagnostic]) -> None:
    for ident in layer.identity_order:
        if ident not in res.identities:
            rule = layer.rules[f"identity:{ident}"]
            diags.append(error(f"unknown identity `{ident}`", rule.span, did_you_mean(ident, res.identities)))
    for raw, target in layer.treats.items():
        for ident in (raw, target):
            if ident not in res.identities:
                diags.append(error(f"unknown identity `{ident}`", layer.span, did_you_mean(ident, res.identities)))
        if target not in layer.identity_order and target in res.identities:
            diags.append(error(f"`treat {raw} as {target}`: layer `{layer.id}` has no schedule for `{target}`",
                               layer.span))


def _claim_column(res: Resolved, col: str, types: tuple[str, ...], span: ast.Span,
                  diags: list[Diagnostic]) -> None:
    builtin = vocabulary.SCALAR_FIELDS.get(col)
    if builtin is not None and builtin[0] == "claim" and builtin[1] in types:
        return
    decl = res.columns.get(col)
    if decl is not None and decl.entity == "claim" and decl.type in types:
        return
    known = [k for k, (e, t) in vocabulary.SCALAR_FIELDS.items() if e == "claim" and t in types]
    diags.append(error(f"`{col}` is not a claim {' or '.join(types)} column", span, did_you_mean(col, known)))


def _check_rule_values(res: Resolved, layer: RLayer, rule: RRule, diags: list[Diagnostic]) -> None:
    for slot, setting in rule.settings.items():
        value, span = setting.value, setting.span
        if slot in ("deductible", "cap_claim", "cap_year") and not isinstance(value, NoneVal):
            for v in _literals(value):
                if v < 0:
                    what = "cap" if slot.startswith("cap") else "deductible"
                    diags.append(error(f"negative {what}: {show(value, 'money')}", span))
        elif isinstance(value, Flat):
            _rate_range(value.rate, span, diags)
        elif isinstance(value, Tiered):
            _check_tiers(value, span, diags)
        elif isinstance(value, Unit):
            _claim_column(res, value.column, ("int", "money"), span, diags)
        elif slot == "bonus" and value is not None:
            _rate_range(value.rate, span, diags)
            _claim_column(res, value.column, ("money",), span, diags)


def _literals(value: Any) -> list[int]:
    if isinstance(value, Lit):
        return [value.value]
    if isinstance(value, Lvl):
        return list(value.values)
    return []


def _rate_range(value: Any, span: ast.Span, diags: list[Diagnostic]) -> None:
    for v in _literals(value):
        if not 0 <= v <= RATE_ONE:
            diags.append(error(f"rate {show(Lit(v), 'rate')} is outside 0–100%", span))


def _check_tiers(tiered: Tiered, span: ast.Span, diags: list[Diagnostic]) -> None:
    prev_high: int | None = 0
    for i, tier in enumerate(tiered.tiers):
        _rate_range(Lit(tier.rate), span, diags)
        if tier.high is not None and tier.high <= tier.low:
            diags.append(error(f"tier {i + 1} ends at or before it starts", span))
        if prev_high is None:
            diags.append(error(f"tier {i + 1} follows a tier with no upper bound", span))
        elif tier.low < prev_high:
            diags.append(error(f"tier {i + 1} starts below the end of the previous tier: tiers must be "
                               "ascending and must not overlap", span))
        prev_high = tier.high


# ---- rule order and conflicts ------------------------------------------------------------------------------
def rule_preds(res: Resolved, layer: RLayer, diags: list[Diagnostic]) -> dict[str, Pred]:
    """The full predicate of each rule: its own condition and its parents', identity selection included."""
    env = env_of(res)
    out: dict[str, Pred] = {}

    def pred(rule: RRule) -> Pred:
        if rule.key in out:
            return out[rule.key]
        own: Pred = PTrue()
        if rule.kind == "identity":
            own = PSelected(rule.identities)
        elif rule.cond is not None:
            own = lower_cond(rule.cond, env, diags)
        parent = layer.rules.get(rule.parent) if rule.parent else None
        out[rule.key] = and_(pred(parent), own) if parent else own
        return out[rule.key]

    for rule in layer.rules.values():
        pred(rule)
    return out


def _ancestors(layer: RLayer, rule: RRule) -> set[str]:
    out: set[str] = set()
    key = rule.parent
    while key is not None and key in layer.rules:
        out.add(key)
        key = layer.rules[key].parent
    return out


def above(layer: RLayer, rule: RRule, other: RRule, preds: dict[str, Pred]) -> bool:
    """Is `rule` more specific than `other` (so it wins when both apply)? Not transitive-closed."""
    if rule is other:
        return False
    if _level(layer, rule) != _level(layer, other):
        return _level(layer, rule) > _level(layer, other)
    if other.key in _ancestors(layer, rule) or other.name in rule.over:
        return True
    if rule.key in _ancestors(layer, other) or rule.name in other.over:
        return False
    p, q = preds[rule.key], preds[other.key]
    return implies(p, q) and not implies(q, p)


def _level(layer: RLayer, rule: RRule) -> int:
    lvl = LEVEL[rule.kind]
    parent = layer.rules.get(rule.parent) if rule.parent else None
    return max(lvl, _level(layer, parent)) if parent else lvl


def ordered_rules(layer: RLayer, slot: str, preds: dict[str, Pred]) -> tuple[list[RRule], dict[str, set[str]]]:
    """Rules setting `slot`, least specific first (a linear extension), and who is below whom."""
    rules = sorted((r for r in layer.rules.values() if slot in r.settings), key=lambda r: r.seq)
    below: dict[str, set[str]] = {r.key: {o.key for o in rules if above(layer, r, o, preds)} for r in rules}
    changed = True
    while changed:  # transitive closure (rule counts are small); a rule below itself is a cycle
        changed = False
        for r in rules:
            extra = set().union(*(below[k] for k in below[r.key])) - below[r.key]
            if extra:
                below[r.key] |= extra
                changed = True
    order: list[RRule] = []
    remaining = list(rules)
    while remaining:
        nxt = next((r for r in remaining if not (below[r.key] - {o.key for o in order})), remaining[0])
        order.append(nxt)
        remaining.remove(nxt)
    return order, below


def _check_conflicts(layer: RLayer, slot: str, preds: dict[str, Pred], diags: list[Diagnostic]) -> None:
    rules, below = ordered_rules(layer, slot, preds)
    cyclic = [r for r in rules if r.key in below[r.key]]
    if cyclic:
        names = ", ".join(_rule_label(r) for r in cyclic)
        diags.append(error(f"in layer `{layer.id}`, {names} each end up more specific than another of them "
                           "(through `over`, nesting and conditions that imply each other)", cyclic[0].span,
                           "remove an `over` so that one rule clearly wins", [Related(r.span, _rule_label(r))
                                                                                for r in cyclic[1:]]))
        return
    for i, r in enumerate(rules):
        for s in rules[i + 1:]:
            if r.key in below[s.key] or s.key in below[r.key]:
                continue
            if not overlap(preds[r.key], preds[s.key]):
                continue
            rv, sv = r.settings[slot].value, s.settings[slot].value
            if rv == sv and (not _uses_below(rv) or below[r.key] == below[s.key]):
                continue
            diags.append(_conflict(layer, slot, r, s))


def _uses_below(value: Any) -> bool:
    if isinstance(value, Flat):
        return has_below(value.rate)
    return has_below(value)


def _conflict(layer: RLayer, slot: str, r: RRule, s: RRule) -> Diagnostic:
    what = {"pricing": "rate", "cap_claim": "cap per claim", "cap_year": "cap per year"}.get(slot, slot)
    rs, ss = r.settings[slot], s.settings[slot]
    cite_r = "; ".join(c.text() for c in rs.cites)
    cite_s = "; ".join(c.text() for c in ss.cites)
    return error(
        f"conflict in layer `{layer.id}`: {_rule_label(r)} and {_rule_label(s)} can both apply to a claim and "
        f"set different {what}", rs.span,
        "make one an exception to the other (`exception NAME when … over OTHER`) or make their conditions "
        "exclusive",
        [Related(rs.span, f"{_rule_label(r)}: {_show_setting(slot, rs.value)} ({cite_r})"),
         Related(ss.span, f"{_rule_label(s)}: {_show_setting(slot, ss.value)} ({cite_s})")])


def _rule_label(rule: RRule) -> str:
    if rule.kind == "identity":
        return f"the schedule for `{rule.name}`"
    if rule.kind == "default":
        return "the layer default"
    return f"rule `{rule.name}`" if rule.name else f"the rule at line {rule.span.line}"


def _show_setting(slot: str, value: Any) -> str:
    if isinstance(value, Flat):
        return show(value.rate, "rate")
    if isinstance(value, Tiered):
        return "tiers " + ", ".join(f"{show(Lit(t.low), 'money')}–{show(Lit(t.high), 'money') if t.high else '∞'}"
                                    f" {show(Lit(t.rate), 'rate')}" for t in value.tiers)
    if isinstance(value, Unit):
        return f"{show(value.amount, 'money')} per {value.column}"
    if slot in ("deductible", "cap_claim", "cap_year"):
        return show(value, "money") if value is not None else "none"
    return str(value)


def _check_below_pricing(layer: RLayer, preds: dict[str, Pred], diags: list[Diagnostic]) -> None:
    """A relative rate in a rule (`rate +10%`) changes the flat rate below it; tiers below cannot be raised."""
    rules, below = ordered_rules(layer, "pricing", preds)
    for rule in rules:
        value = rule.settings["pricing"].value
        if not (isinstance(value, Flat) and has_below(value.rate)):
            continue
        under = [layer.rules[k] for k in below[rule.key]]
        span = rule.settings["pricing"].span
        if not under or any(not isinstance(u.settings["pricing"].value, Flat) for u in under):
            diags.append(error(f"{_rule_label(rule)} changes the rate below it, but what is below is not a "
                               "single flat rate", span, "write the rate itself (e.g. `rate 90%`)"))
        elif not implies(preds[rule.key], POr(tuple(preds[u.key] for u in under))):
            diags.append(error(f"{_rule_label(rule)} changes the rate below it, but some claims it applies to "
                               "have no rate below it", span,
                               "give the layer a general rate, or write the rate itself (e.g. `rate 90%`)"))


# ---- pools, alerts, subsidies ---------------------------------------------------------------------------
def _check_pools(res: Resolved, diags: list[Diagnostic]) -> None:
    ids = [layer.id for layer in res.layers]
    for name, (_cap, layers, _cites, span) in res.shared_caps.items():
        idx = []
        for lid in layers:
            if lid not in ids:
                diags.append(error(f"unknown layer `{lid}` in shared cap `{name}`", span, did_you_mean(lid, ids)))
            else:
                idx.append(ids.index(lid))
        if len(idx) != len(layers):
            continue
        if sorted(idx) != list(range(min(idx), min(idx) + len(idx))):
            diags.append(error(f"shared cap `{name}`: its layers must be next to each other in settlement "
                               "order", span, "put them one after the other with `after`"))
        scopes = [lower_cond(res.layers[i].scope or ast.Always(), env_of(res, in_layer=False), diags)
                  for i in idx]
        for a in range(len(scopes)):
            for b in range(a + 1, len(scopes)):
                if overlap(scopes[a], scopes[b]):
                    diags.append(error(f"shared cap `{name}`: the scopes of `{layers[a]}` and `{layers[b]}` can "
                                       "hold for the same claim", span,
                                       "layers sharing a cap must cover different claims (e.g. by kind)"))
        for i in idx:
            if res.layers[i].precedence == "best" and res.layers[i].identity_order:
                diags.append(error(f"shared cap `{name}`: layer `{res.layers[i].id}` uses `best` identity "
                                   "precedence, which a shared cap does not support", span))


def _check_alerts(res: Resolved, layer_ids: list[str], diags: list[Diagnostic]) -> None:
    for alert in res.alerts.values():
        if alert.measure is None:
            diags.append(error(f"alert `{alert.id}` has no `measure`", alert.span))
            continue
        for lid in alert.measure.after:
            if lid not in layer_ids:
                diags.append(error(f"unknown layer `{lid}`", alert.measure.span, did_you_mean(lid, layer_ids)))
        lower_cond(alert.measure.where, env_of(res, in_layer=False), diags)
        for cond, _value, _cites, _span in alert.thresholds:
            lower_cond(cond, env_of(res, in_layer=False, person_only=True), diags)


def _check_subsidies(res: Resolved, diags: list[Diagnostic]) -> None:
    for sub in res.subsidies.values():
        if sub.amount is None:
            diags.append(error(f"subsidy `{sub.id}` has no `amount`", sub.span))
        for ident in [*sub.shares, *sub.treats, *sub.treats.values()]:
            if ident not in res.identities:
                diags.append(error(f"unknown identity `{ident}`", sub.span, did_you_mean(ident, res.identities)))
        for _ident, (value, _c) in sub.shares.items():
            _rate_range(value, sub.span, diags)
        if sub.scope is not None:
            lower_cond(sub.scope, env_of(res, in_layer=False, person_only=True), diags)
