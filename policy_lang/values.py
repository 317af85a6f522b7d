"""Values: typing and lowering of ast values to graph values (fen / ppm / count), with folding."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Literal, TypeAlias

import attrs

from policy_lang import ast
from policy_lang.diagnostics import Diagnostic, error
from policy_lang.graph import RATE_ONE, Below, Lit, Lvl, Op, Param, Prev, Val

Kind: TypeAlias = Literal["money", "rate", "count", "number", "text", "bool", "none", "date"]


@attrs.frozen
class NoneVal:
    """`none` (不设): no deductible, no cap, no bonus."""


NONE = NoneVal()
Lowered: TypeAlias = Val | NoneVal


@attrs.frozen
class ParamValue:
    """A named parameter as resolved at a date: its kind and value (None = unspecified)."""

    kind: Kind
    value: Decimal | str | bool | None
    declared_unspecified: bool = False


@attrs.frozen
class Context:
    """What a value may refer to where it is written."""

    replaced: Lowered | None = None  # the value this one replaces (amendments)
    general: Lowered | None = None  # the layer default of the same parameter
    in_rule: bool = False  # a claim-time relative value refers to the value below
    allow_previous: bool = False  # previous_deductible is allowed (deductibles only)
    params: Callable[[str], ParamValue | None] = lambda _name: None


class ValueError_(Exception):
    def __init__(self, diag: Diagnostic):
        super().__init__(diag.message)
        self.diag = diag


def _fail(message: str, span: ast.Span, hint: str | None = None) -> ValueError_:
    return ValueError_(error(message, span, hint))


def to_fen(yuan: Decimal, span: ast.Span) -> int:
    fen = yuan * 100
    if fen != fen.to_integral_value():
        raise _fail(f"{yuan} yuan is not a whole number of fen", span)
    return int(fen)


def to_ppm(percent: Decimal, span: ast.Span) -> int:
    ppm = percent * 10_000
    if ppm != ppm.to_integral_value():
        raise _fail(f"{percent}% is more precise than 0.0001%", span)
    return int(ppm)


def lower(value: ast.Value, want: Kind, ctx: Context) -> Lowered:
    """Lower `value` to a graph value of kind `want` ("money", "rate" or "count"); raise ValueError_."""
    val, kind = _lower(value, want, ctx)
    if kind == "none":
        return NONE
    if not _compatible(kind, want):
        raise _fail(f"expected {_describe(want)}, found {_describe(kind)}", _span(value), _hint(want, kind))
    assert not isinstance(val, NoneVal)
    return val


def _span(value: ast.Value) -> ast.Span:
    return value.span


def _compatible(kind: Kind, want: Kind) -> bool:
    return kind == want or (kind in ("number", "count") and want in ("money", "count"))


def _describe(kind: Kind) -> str:
    return {"money": "an amount of money", "rate": "a rate (like 75%)", "count": "a count",
            "number": "a number", "text": "text", "bool": "true/false", "none": "none",
            "date": "a date"}[kind]


def _hint(want: Kind, kind: Kind) -> str | None:
    if want == "rate" and kind in ("money", "number", "count"):
        return "write rates with a percent sign, e.g. 75%"
    if want == "money" and kind == "rate":
        return "amounts are yuan without a percent sign, e.g. 12000 or 1.2万元"
    return None


def _lower(value: ast.Value, want: Kind, ctx: Context) -> tuple[Lowered, Kind]:
    match value:
        case ast.Amount(v, is_int):
            if want == "money":
                return Lit(to_fen(v, value.span)), "money"
            if want == "count":
                if v != v.to_integral_value():
                    raise _fail(f"{v} is not a whole number", value.span)
                return Lit(int(v)), "count"
            return Lit(to_fen(v, value.span)), ("number" if is_int else "money")
        case ast.Percent(v):
            return Lit(to_ppm(v, value.span)), "rate"
        case ast.ByLevel(items):
            parts = [_lower(item, want, ctx) for item in items]
            kinds = {k for _, k in parts}
            if not all(isinstance(p, Lit) for p, _ in parts):
                raise _fail("a by-level table needs three plain values", value.span)
            kind = want if kinds <= {want, "number", "count"} else next(iter(kinds))
            lits = tuple(p.value for p, _ in parts if isinstance(p, Lit))
            return Lvl((lits[0], lits[1], lits[2])), kind
        case ast.NoneValue():
            return NONE, "none"
        case ast.Text() | ast.Bool():
            raise _fail(f"expected {_describe(want)}, found {'text' if isinstance(value, ast.Text) else 'true/false'}",
                        value.span)
        case ast.Ref(which):
            return _lower_ref(which, value.span, want, ctx)
        case ast.ParamRef(name):
            return _lower_param(name, value.span, want, ctx)
        case ast.BinOp(op, left, right):
            return _lower_binop(op, left, right, want, ctx, value.span)
        case ast.Call(fn, (a, b)):
            la, ka = _lower(a, want, ctx)
            lb, kb = _lower(b, want, ctx)
            if isinstance(la, NoneVal) or isinstance(lb, NoneVal):
                raise _fail(f"{fn}() of none", value.span)
            kind = _unify(ka, kb, value.span)
            return fold(Op(fn, la, lb)), kind
        case ast.Relative(op, operand):
            return _lower_relative(op, operand, want, ctx, value.span)
    raise AssertionError(value)  # pragma: no cover


def _unify(a: Kind, b: Kind, span: ast.Span) -> Kind:
    if a == b:
        return a
    for pair, result in (({"number", "money"}, "money"), ({"number", "count"}, "count"),
                         ({"count", "money"}, "money")):
        if {a, b} == pair:
            return result  # type: ignore[return-value]
    raise _fail(f"cannot combine {_describe(a)} with {_describe(b)}", span)


def _lower_ref(which: str, span: ast.Span, want: Kind, ctx: Context) -> tuple[Lowered, Kind]:
    if which == "previous_deductible":
        if not ctx.allow_previous:
            raise _fail("previous_deductible is only meaningful in a deductible", span)
        return Prev(), "money"
    target = ctx.replaced if which == "base_value" else ctx.general
    if target is None:
        if which == "base_value" and ctx.in_rule:
            return Below(), want
        what = "no earlier value to refer to" if which == "base_value" else "the layer sets no general value"
        raise _fail(f"`{which}`: {what}", span)
    return target, ("none" if isinstance(target, NoneVal) else want)


def _lower_param(name: str, span: ast.Span, want: Kind, ctx: Context) -> tuple[Lowered, Kind]:
    p = ctx.params(name)
    if p is None:
        raise _fail(f"unknown parameter `{name}`", span)
    if p.declared_unspecified:
        return Param(name), p.kind
    if p.kind in ("number", "money") and isinstance(p.value, Decimal):
        if want == "count":
            return Lit(int(p.value)), "count"
        return Lit(to_fen(p.value, span)), ("money" if p.kind == "money" else "number")
    if p.kind == "count" and isinstance(p.value, Decimal):
        return Lit(int(p.value)), "count"
    if p.kind == "rate" and isinstance(p.value, Decimal):
        return Lit(to_ppm(p.value, span)), "rate"
    if p.kind == "none":
        return NONE, "none"
    raise _fail(f"parameter `{name}` is {_describe(p.kind)}, not {_describe(want)}", span)


def _lower_binop(op: str, left: ast.Value, right: ast.Value, want: Kind, ctx: Context,
                 span: ast.Span) -> tuple[Lowered, Kind]:
    if op == "×":
        la, ka = _lower(left, "rate" if want == "rate" else want, ctx)
        lb, kb = _lower(right, "rate", ctx)
        if isinstance(la, NoneVal) or isinstance(lb, NoneVal):
            raise _fail("cannot multiply none", span)
        kinds = {ka, kb}
        if "rate" not in kinds:
            raise _fail("one side of × must be a rate", span)
        kind: Kind = "rate" if kinds == {"rate"} else (ka if kb == "rate" else kb)
        return fold(Op("mul", la, lb) if kb == "rate" else Op("mul", lb, la)), kind
    la, ka = _lower(left, want, ctx)
    lb, kb = _lower(right, want, ctx)
    if isinstance(la, NoneVal) or isinstance(lb, NoneVal):
        raise _fail(f"cannot {'add' if op == '+' else 'subtract'} none", span)
    return fold(Op("add" if op == "+" else "sub", la, lb)), _unify(ka, kb, span)


def _lower_relative(op: str, operand: ast.Value, want: Kind, ctx: Context,
                    span: ast.Span) -> tuple[Lowered, Kind]:
    if ctx.replaced is not None and not isinstance(ctx.replaced, NoneVal):
        base: Val = ctx.replaced
    elif ctx.in_rule:
        base = Below()
    else:
        verb = {"+": "raise", "-": "lower", "×": "scale"}[op]
        raise _fail(f"nothing to {verb}: no earlier value of this parameter", span,
                    "a relative value (+, -, ×) changes a value set earlier; write the value itself")
    if op == "×":
        factor, kind = _lower(operand, "rate", ctx)
        if kind != "rate" or isinstance(factor, NoneVal):
            raise _fail("× needs a rate, e.g. ×50%", span)
        return fold(Op("mul", base, factor)), want
    delta, kind = _lower(operand, want, ctx)
    if isinstance(delta, NoneVal) or not _compatible(kind, want):
        raise _fail(f"expected {_describe(want)} after `{op}`", span, _hint(want, kind))
    return fold(Op("add" if op == "+" else "sub", base, delta)), want


# ---- folding ---------------------------------------------------------------------------------------
def half_up_div(numerator: int, denominator: int) -> int:
    """Round numerator/denominator half-up (towards +inf on .5): floor(x + 1/2)."""
    return (2 * numerator + denominator) // (2 * denominator)


def apply_op(op: str, a: int, b: int) -> int:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return half_up_div(a * b, RATE_ONE)
    if op == "max":
        return max(a, b)
    return min(a, b)


def fold(val: Val) -> Val:
    """Compute an Op whose operands are literals (elementwise over by-level tables)."""
    if not isinstance(val, Op):
        return val
    a, b = fold(val.left), fold(val.right)
    if isinstance(a, Lit) and isinstance(b, Lit):
        return Lit(apply_op(val.op, a.value, b.value))
    if isinstance(a, (Lit, Lvl)) and isinstance(b, (Lit, Lvl)):
        av = a.values if isinstance(a, Lvl) else (a.value,) * 3
        bv = b.values if isinstance(b, Lvl) else (b.value,) * 3
        out = tuple(apply_op(val.op, x, y) for x, y in zip(av, bv, strict=True))
        return Lvl((out[0], out[1], out[2]))
    return Op(val.op, a, b)


def has_below(val: object) -> bool:
    if isinstance(val, Below):
        return True
    if isinstance(val, Op):
        return has_below(val.left) or has_below(val.right)
    return False


def show(val: Lowered, kind: Kind) -> str:
    """A value as a policy writer would write it: 12000, 62.5%, by level 200/500/800."""
    match val:
        case NoneVal():
            return "none"
        case Lit(v):
            return show_int(v, kind)
        case Lvl(vs):
            return "by level " + " / ".join(show_int(v, kind) for v in vs)
        case Below():
            return "(value below)"
        case Prev():
            return "previous_deductible"
        case Param(name):
            return name
        case Op(op, left, right):
            sym = {"add": "+", "sub": "-", "mul": "×"}.get(op)
            rkind: Kind = "rate" if op == "mul" else kind
            if sym:
                return f"{show(left, kind)} {sym} {show(right, rkind)}"
            return f"{op}({show(left, kind)}, {show(right, kind)})"
    return str(val)  # pragma: no cover


def show_int(v: int, kind: Kind) -> str:
    if kind == "rate":
        d = Decimal(v) / 10_000
        return f"{d.normalize():f}%"
    if kind in ("money", "number"):
        d = Decimal(v) / 100
        return f"{d.normalize():f}" if d == d.to_integral_value() else f"{d:.2f}"
    return str(v)
