"""Conditions: ast.Cond -> graph.Pred (names checked), and whether two predicates overlap or imply.

The analysis puts a predicate in disjunctive normal form over simple variables (a field's allowed
values or interval, a disease or identity held or not, the selected identity) and compares terms. It
is exact for the conditions policies write and conservative beyond a size limit: "may overlap" and
"no implication".
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import InvalidOperation
from itertools import product
from typing import Any

import attrs

from policy_lang import ast, vocabulary
from policy_lang.diagnostics import Diagnostic, did_you_mean, error
from policy_lang.graph import (
    PAdmission,
    PAnd,
    PCompare,
    PHas,
    PHolds,
    PIn,
    PNonEmpty,
    PNot,
    POr,
    Pred,
    PSelected,
    PTrue,
)
from policy_lang.parse import MAX_DEPTH

_FINITE: dict[str, frozenset[Any]] = {
    "kind": frozenset(vocabulary.KINDS), "level": frozenset({1, 2, 3}),
    "designation": frozenset(vocabulary.DESIGNATIONS), "scheme": frozenset(vocabulary.SCHEMES),
    "sex": frozenset({"F", "M", ""}),
}
_CATEGORICAL = {"kind": vocabulary.KINDS, "designation": vocabulary.DESIGNATIONS, "scheme": vocabulary.SCHEMES}
_ORDER_OPS = ("<", "<=", ">", ">=")


@attrs.frozen
class CondEnv:
    identities: Mapping[str, str]
    regions: Mapping[str, str]
    disease_tokens: Mapping[str, str]
    disease_lists: Mapping[str, frozenset[str]]
    conditions: Mapping[str, ast.ConditionDef]
    columns: Mapping[str, ast.ColumnDecl]
    in_layer: bool = True  # `admission` is meaningful
    person_only: bool = False  # alerts and subsidies: no claim fields


class _Bad(Exception):
    def __init__(self, diag: Diagnostic):
        super().__init__(diag.message)
        self.diag = diag


# Robustness limits on a condition expanded with the named conditions it uses. The parser bounds
# the nesting of one written condition, but `condition c2 = c1 and c1`, `condition c3 = c2 and c2`, …
# doubles at each step (2^n parts: a hang) and a chain c1000 = c999 = … = c0 recursed past Python's
# limit (a RecursionError traceback). Both now end in one diagnostic.
MAX_COND_DEPTH = MAX_DEPTH
MAX_COND_PARTS = 10_000


class _Limit(Exception):
    def __init__(self, diag: Diagnostic):
        super().__init__(diag.message)
        self.diag = diag


def lower_cond(cond: ast.Cond, env: CondEnv, diags: list[Diagnostic]) -> Pred:
    """Lower a condition; on a bad name append a diagnostic and return PTrue for that part."""
    try:
        return _Lowerer(env, diags).lower(cond, ())
    except _Limit as exc:
        diags.append(exc.diag)
        return PTrue()


class _Lowerer:
    def __init__(self, env: CondEnv, diags: list[Diagnostic]):
        self.env, self.diags = env, diags
        self.depth = self.parts = 0

    def lower(self, cond: ast.Cond, stack: tuple[str, ...]) -> Pred:
        self.parts += 1
        if self.parts > MAX_COND_PARTS:
            raise _Limit(error(f"condition too large: with the named conditions it uses it has more than "
                               f"{MAX_COND_PARTS} parts", cond.span,
                               "a named condition used twice in another is expanded twice; simplify them"))
        if self.depth >= MAX_COND_DEPTH:
            raise _Limit(error(f"condition nested too deeply (more than {MAX_COND_DEPTH} levels, counting "
                               "the named conditions it uses)", cond.span))
        self.depth += 1
        try:
            return self._lower(cond, stack)
        except _Bad as exc:
            self.diags.append(exc.diag)
            return PTrue()
        finally:
            self.depth -= 1

    def _lower(self, cond: ast.Cond, stack: tuple[str, ...]) -> Pred:
        match cond:
            case ast.Always():
                return PTrue()
            case ast.And(items):
                return PAnd(tuple(self.lower(c, stack) for c in items))
            case ast.Or(items):
                return POr(tuple(self.lower(c, stack) for c in items))
            case ast.Not(item):
                return PNot(self.lower(item, stack))
            case ast.Flag(name):
                return self._flag(name, cond.span, stack)
            case ast.Compare(field, op, value):
                return self._compare(field, op, value, cond.span)
            case ast.Member(field, values, negated):
                pred = self._member(field, values, cond.span)
                return PNot(pred) if negated else pred
            case ast.Has(field, values, all_):
                return self._has(field, values, all_, cond.span)
        raise AssertionError(cond)  # pragma: no cover

    def _field(self, name: str, span: ast.Span) -> tuple[str, str]:
        """Canonical field name and its type."""
        field = vocabulary.FIELD_ALIASES.get(name, name)
        if field == "hospital_level":
            field = "level"
        if field == "admission" and self.env.in_layer and not self.env.person_only:
            return field, "int"
        if field in vocabulary.SCALAR_FIELDS:
            entity, typ = vocabulary.SCALAR_FIELDS[field]
            if entity == "claim" and self.env.person_only:
                raise _Bad(error(f"`{name}` is a claim field; here only person fields can be used", span))
            return field, typ
        if field in vocabulary.SET_FIELDS or field == "certified":
            return field, "set"
        if field in self.env.columns:
            col = self.env.columns[field]
            if col.entity == "claim" and self.env.person_only:
                raise _Bad(error(f"`{name}` is a claim column; here only person fields can be used", span))
            return field, col.type
        known = [*vocabulary.SCALAR_FIELDS, *vocabulary.SET_FIELDS, "certified", *self.env.columns,
                 *self.env.conditions, *(["admission"] if self.env.in_layer else [])]
        raise _Bad(error(f"unknown field `{name}`", span, did_you_mean(name, known)))

    def _flag(self, name: str, span: ast.Span, stack: tuple[str, ...]) -> Pred:
        if name in self.env.conditions:
            if name in stack:
                raise _Bad(error(f"condition `{name}` refers to itself: {' -> '.join((*stack, name))}", span))
            return self.lower(self.env.conditions[name].cond, (*stack, name))
        field, typ = self._field(name, span)
        if typ == "set" and field != "identities":
            return PNonEmpty(field)  # type: ignore[arg-type]
        if typ != "bool":
            raise _Bad(error(f"`{name}` is not a true/false field; compare it with a value", span))
        return PCompare(field, "=", True)

    def _value(self, field: str, typ: str, lit: ast.Lit) -> int | str | bool:
        text = lit.text
        if typ == "bool":
            if text.lower() in ("true", "1", "是"):
                return True
            if text.lower() in ("false", "0", "否"):
                return False
            raise _Bad(error(f"`{field}` is true or false, not `{text}`", lit.span))
        if typ in ("int", "level"):
            if not text.isdigit():
                raise _Bad(error(f"`{field}` is a whole number, not `{text}`", lit.span))
            value = int(text)
            if value > _MAX_NUMBER:  # the vector engine compares in 64-bit integers: OverflowError
                raise _Bad(error(f"`{text}` is too large", lit.span))
            if typ == "level" and value not in (1, 2, 3):
                raise _Bad(error(f"hospital level is 1, 2 or 3, not {value}", lit.span))
            return value
        if typ == "money":
            return _fen(text, lit.span)
        return self._categorical(field, typ, text, lit)

    def _categorical(self, field: str, typ: str, text: str, lit: ast.Lit) -> str:
        value = vocabulary.VALUE_ALIASES.get(text, text)
        if field == "region":
            if value not in self.env.regions:
                raise _Bad(error(f"unknown region `{text}`", lit.span, did_you_mean(text, self.env.regions)))
            return value
        if field == "sex":
            if value not in ("F", "M"):
                raise _Bad(error(f"sex is F or M, not `{text}`", lit.span))
            return value
        domain = _CATEGORICAL.get(field)
        if domain is not None and value not in domain:
            raise _Bad(error(f"unknown {field} `{text}`", lit.span, did_you_mean(text, domain)))
        return value

    def _compare(self, name: str, op: str, lit: ast.Lit, span: ast.Span) -> Pred:
        field, typ = self._field(name, span)
        if typ == "set":
            raise _Bad(error(f"`{name}` holds several values: test it with `has`", span,
                             f"e.g. `{name} has {lit.text}`"))
        if op in _ORDER_OPS and typ not in ("int", "level", "money"):
            raise _Bad(error(f"`{name}` cannot be compared with {op}", span))
        value = self._value(field, typ, lit)
        if field == "admission":
            assert isinstance(value, int)
            return PAdmission(op, value)  # type: ignore[arg-type]
        return PCompare(field, op, value)  # type: ignore[arg-type]

    def _member(self, name: str, values: tuple[ast.Lit, ...], span: ast.Span) -> Pred:
        field, typ = self._field(name, span)
        if field == "identities":
            return PHolds(frozenset(self._identity(v) for v in values))
        if typ == "set":
            return self._has(name, values, False, span)
        return PIn(field, frozenset(self._value(field, typ, v) for v in values))

    def _identity(self, lit: ast.Lit) -> str:
        ident = vocabulary.VALUE_ALIASES.get(lit.text, lit.text)
        if ident not in self.env.identities:
            raise _Bad(error(f"unknown identity `{lit.text}`", lit.span,
                             did_you_mean(lit.text, self.env.identities)))
        return ident

    def _has(self, name: str, values: tuple[ast.Lit, ...], all_: bool, span: ast.Span) -> Pred:
        field, typ = self._field(name, span)
        if typ != "set":
            raise _Bad(error(f"`{name}` holds one value: compare it with `=` or `in`", span))
        if field == "identities":
            ids = [self._identity(v) for v in values]
            if all_:
                return PAnd(tuple(PHolds(frozenset({i})) for i in ids))
            return PHolds(frozenset(ids))
        diseases: set[str] = set()
        for v in values:
            diseases |= self._diseases(v)
        return PHas(field, frozenset(diseases), all_)  # type: ignore[arg-type]

    def _diseases(self, lit: ast.Lit) -> frozenset[str]:
        if lit.text in self.env.disease_lists:
            return self.env.disease_lists[lit.text]
        canonical = self.env.disease_tokens.get(lit.text)
        if canonical is None:
            known = [*self.env.disease_tokens, *self.env.disease_lists]
            raise _Bad(error(f"unknown disease or disease list `{lit.text}`", lit.span,
                             did_you_mean(lit.text, known)))
        return frozenset({canonical})


def _fen(text: str, span: ast.Span) -> int:
    from policy_lang.parse import parse_amount

    try:
        fen = parse_amount(text) * 100
    except (InvalidOperation, ValueError):
        raise _Bad(error(f"`{text}` is not an amount", span)) from None
    if fen != fen.to_integral_value():
        raise _Bad(error(f"`{text}` is not a whole number of fen", span))
    if abs(fen) > _MAX_NUMBER:  # as for counts above
        raise _Bad(error(f"`{text}` is too large", span))
    return int(fen)


_MAX_NUMBER = 10**12  # the bound resolve.MAX_MAGNITUDE puts on values (fen, millionths, counts)


# ---- analysis -----------------------------------------------------------------------------------------
MAX_TERMS = 512


class TooComplex(Exception):
    pass


@attrs.frozen
class Cat:
    """A categorical constraint: value in `values` (positive) or not in them."""

    positive: bool
    values: frozenset[Any]


@attrs.frozen
class Num:
    """A numeric constraint: a union of closed integer intervals (None = unbounded)."""

    intervals: tuple[tuple[int | None, int | None], ...]


Constraint = Cat | Num | bool
Term = dict[tuple[Any, ...], Constraint]


def _num_atom(op: str, v: int) -> Num:
    return Num({"=": ((v, v),), "<": ((None, v - 1),), "<=": ((None, v),), ">": ((v + 1, None),),
                ">=": ((v, None),), "!=": ((None, v - 1), (v + 1, None))}[op])


def _atom(pred: Pred) -> list[Term]:
    match pred:
        case PCompare(field, op, value):
            if isinstance(value, bool):
                return [{("f", field): value if op == "=" else not value}]
            if (isinstance(value, int) and field not in _FINITE) or (field == "level" and op in _ORDER_OPS):
                assert isinstance(value, int)
                return [{("f", field): _num_atom(op, value)}]
            return [{("f", field): Cat(op == "=", frozenset({value}))}]
        case PIn(field, values):
            return [{("f", field): Cat(True, frozenset(values))}]
        case PHas(field, values, all_):
            items: list[Term] = [{("has", field, v): True} for v in sorted(values)]
            return [{k: c for t in items for k, c in t.items()}] if all_ else items
        case PNonEmpty(field):
            return [{("nonempty", field): True}]
        case PHolds(ids):
            return [{("holds", i): True} for i in sorted(ids)]
        case PSelected(ids):
            return [{("selected",): Cat(True, frozenset(ids))}]
        case PAdmission(op, value):
            return [{("admission",): _num_atom(op, value)}]
    raise AssertionError(pred)  # pragma: no cover


def dnf(pred: Pred, negate: bool = False) -> list[Term]:
    match pred:
        case PTrue():
            return [] if negate else [{}]
        case PNot(item):
            return dnf(item, not negate)
        case PAnd(items) | POr(items):
            conj = isinstance(pred, PAnd) != negate
            parts = [dnf(i, negate) for i in items]
            return _and_all(parts) if conj else _or_all(parts)
    terms = _atom(pred)
    if not negate:
        return terms
    # not (t1 or t2 or …) = and of (not ti); each ti is one constraint (or a conjunction for has-all)
    negs = [[{k: _negate(c)} for k, c in t.items()] for t in terms]
    return _and_all(negs)


def _and_all(parts: list[list[Term]]) -> list[Term]:
    out: list[Term] = [{}]
    for part in parts:
        out = [m for a, b in product(out, part) if (m := _merge(a, b)) is not None]
        if len(out) > MAX_TERMS:
            raise TooComplex
    return out


def _or_all(parts: list[list[Term]]) -> list[Term]:
    out = [t for p in parts for t in p]
    if len(out) > MAX_TERMS:
        raise TooComplex
    return out


def _negate(c: Constraint) -> Constraint:
    if isinstance(c, bool):
        return not c
    if isinstance(c, Cat):
        return Cat(not c.positive, c.values)
    return Num(_complement(c.intervals))


_NEG, _POS = -(10**30), 10**30


def _complement(ivs: tuple[tuple[int | None, int | None], ...]) -> tuple[tuple[int | None, int | None], ...]:
    spans = sorted((_NEG if lo is None else lo, _POS if hi is None else hi) for lo, hi in ivs)
    out: list[tuple[int | None, int | None]] = []
    cursor = _NEG
    for lo, hi in spans:
        if lo > cursor:
            out.append((None if cursor == _NEG else cursor, lo - 1))
        cursor = max(cursor, hi + 1)
    if cursor <= _POS:
        out.append((None if cursor == _NEG else cursor, None))
    return tuple(out)


def _intersect(a: Constraint, b: Constraint) -> Constraint | None:
    if isinstance(a, bool) or isinstance(b, bool):
        return a if a == b else None
    if isinstance(a, Cat) and isinstance(b, Cat):
        if a.positive and b.positive:
            v = a.values & b.values
            return Cat(True, v) if v else None
        if a.positive or b.positive:
            pos, neg = (a, b) if a.positive else (b, a)
            v = pos.values - neg.values
            return Cat(True, v) if v else None
        return Cat(False, a.values | b.values)
    if isinstance(a, Num) and isinstance(b, Num):
        out = []
        for lo1, hi1 in a.intervals:
            for lo2, hi2 in b.intervals:
                lo = lo2 if lo1 is None else lo1 if lo2 is None else max(lo1, lo2)
                hi = hi2 if hi1 is None else hi1 if hi2 is None else min(hi1, hi2)
                if lo is None or hi is None or lo <= hi:
                    out.append((lo, hi))
        return Num(tuple(out)) if out else None
    return None  # mixed kinds never happen for one variable


def _merge(a: Term, b: Term) -> Term | None:
    out = dict(a)
    for k, c in b.items():
        if k in out:
            m = _intersect(out[k], c)
            if m is None:
                return None
            out[k] = m
        else:
            out[k] = c
    return {k: _normalise(k, c) for k, c in out.items()} if _satisfiable(out) else None


def _normalise(key: tuple[Any, ...], c: Constraint) -> Constraint:
    if isinstance(c, Cat) and not c.positive and key[0] == "f" and key[1] in _FINITE:
        return Cat(True, _FINITE[key[1]] - c.values)
    return c


def _satisfiable(term: Term) -> bool:
    for key, c in term.items():
        c = _normalise(key, c)
        if isinstance(c, Cat) and c.positive and not c.values:
            return False
    return True


def _subsumes(weak: Constraint, strong: Constraint, key: tuple[Any, ...]) -> bool:
    """Every value allowed by `strong` is allowed by `weak`."""
    weak, strong = _normalise(key, weak), _normalise(key, strong)
    if isinstance(weak, bool) or isinstance(strong, bool):
        return weak == strong
    inter = _intersect(weak, strong)
    return inter is not None and _same(inter, strong)


def _same(a: Constraint, b: Constraint) -> bool:
    if isinstance(a, Num) and isinstance(b, Num):
        return sorted(a.intervals, key=str) == sorted(b.intervals, key=str)
    return a == b


def overlap(p: Pred, q: Pred) -> bool:
    """Can p and q hold for the same claim? (True when unsure.)"""
    try:
        dp, dq = dnf(p), dnf(q)
    except TooComplex:
        return True
    return any(_merge(a, b) is not None for a in dp for b in dq)


def implies(p: Pred, q: Pred) -> bool:
    """Does p imply q? (False when unsure.)"""
    try:
        dp, dq = dnf(p), dnf(q)
    except TooComplex:
        return False
    return all(any(all(k in a and _subsumes(c, a[k], k) for k, c in b.items()) for b in dq) for a in dp)


def and_(*preds: Pred) -> Pred:
    items: list[Pred] = []
    for p in preds:
        if isinstance(p, PAnd):
            items.extend(p.items)
        elif not isinstance(p, PTrue):
            items.append(p)
    if not items:
        return PTrue()
    return items[0] if len(items) == 1 else PAnd(tuple(items))


def holds_on(grants: Iterable[tuple[str, datetime.date | None]], identity: str, day: datetime.date) -> bool:
    return any(i == identity and (since is None or since <= day) for i, since in grants)


def env_of(res: Any, in_layer: bool = True, person_only: bool = False) -> CondEnv:
    return CondEnv(res.identities, res.regions, res.disease_tokens, res.disease_lists, res.conditions,
                   res.columns, in_layer, person_only)
