"""Parser: source text -> ast.File, or a PolicyError with one syntax diagnostic."""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import lark
from lark import Token, Transformer, v_args
from lark.tree import Meta

from policy_lang import ast
from policy_lang.diagnostics import PolicyError, error

# Terminals that carry a value; every other named terminal is a keyword and is dropped.
_VALUE_TERMINALS = frozenset(
    {"NAME", "STRING", "DATE", "MONEY", "PERCENT", "INT", "CMP", "EQUAL", "TIMES",
     "DESIGNATION", "REGION", "DISEASES", "IDENTITY", "PERSON", "CLAIM", "NONE", "TRUE", "FALSE"}
)

# Readable names for terminals in "expected one of" messages.
_TERMINAL_NAMES = {
    "NAME": "a name", "STRING": "a quoted string", "DATE": "a date (YYYY-MM-DD)",
    "MONEY": "an amount", "PERCENT": "a rate (75%)", "INT": "a number", "CMP": "a comparison",
    "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`", "COMMA": "`,`",
    "COLON": "`:`", "SEMICOLON": "`;`", "EQUAL": "`=`", "SLASH": "`/`", "PLUS": "`+`",
    "MINUS": "`-`", "LSQB": "`[`", "RSQB": "`]`", "VBAR": "`|`", "$END": "end of file",
}


def grammar_text() -> str:
    """The grammar shipped in the wheel (policy_lang.grammar), or the source tree's grammar/."""
    try:
        return resources.files("policy_lang.grammar").joinpath("policy.lark").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "grammar" / "policy.lark").read_text("utf-8")


@functools.cache
def _parser() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", lexer="basic", propagate_positions=True,
                     maybe_placeholders=False)


def keyword_spellings() -> dict[str, str]:
    """Terminal name -> its English spelling, for messages ("expected `rate`")."""
    out: dict[str, str] = {}
    for term in _parser().terminals:
        m = re.match(r"\(\?:([a-z_]+(?:\\s\+[a-z_]+)?)", term.pattern.value)
        if m:
            out[term.name] = m.group(1).replace("\\s+", " ")
    return out


# Largest policy source accepted. Parsing costs about 10-20 s and 500 MB of memory per MB of dense
# tokens (`0 to 1: 1% …`), so a 20 MB file could take minutes and gigabytes; the bundled policies are
# under 30 KB. load.py refuses larger files before reading them whole; parse() (also used by fmt)
# refuses larger texts.
MAX_SOURCE_BYTES = 2 * 2**20


def parse(text: str, path: str = "<string>") -> ast.File:
    comments: list[ast.Comment] = []
    if len(text) > MAX_SOURCE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise PolicyError([error(f"policy file is larger than {MAX_SOURCE_BYTES // 2**20} MB",
                                 ast.Span(path, 1, 1, 1, 2), "split it into files that import each other")])
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise PolicyError([_syntax_diagnostic(exc, text, path)]) from None
    # Robustness: the LALR parser is not recursive, but the Transformer below and every later pass
    # (conditions, DNF, values, check, resolve, fmt) are. Refuse deep nesting here, once, so none of
    # them can hit Python's recursion limit (a RecursionError traceback) on hostile input.
    _check_depth(tree, path)
    # The lexer, not a regex, finds comments: a `#` inside a string ("第#1条" or “…”) is not one.
    for tok in _parser().lex(text, dont_ignore=True):
        if tok.type == "COMMENT":
            comments.append(ast.Comment(str(tok), tok.line or 0, tok.column or 0))
    try:
        file = _Builder(path).transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, PolicyError):
            raise exc.orig_exc from None
        raise
    assert isinstance(file, ast.File)
    return ast.File(file.path, file.imports, file.policy, tuple(comments))


# Deepest nesting of the parse tree accepted. The bundled policies nest at most 10 levels; each
# nested `when`, `not`, `max(`/`min(`, `by level` and each `+`/`-`/`×` of a chain adds one.
MAX_DEPTH = 100


def _check_depth(tree: lark.Tree[Token], path: str) -> None:
    """Report the first node (in source order) deeper than MAX_DEPTH; iterative, so it cannot recurse."""
    stack: list[tuple[lark.Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            line, col = getattr(meta, "line", 1), getattr(meta, "column", 1)
            raise PolicyError([error(
                f"nested too deeply (more than {MAX_DEPTH} levels)", ast.Span(path, line, col, line, col + 1),
                "split it up: name parts with `condition` or `param`, or combine nested `when` blocks"
                " with `and` (a long chain of `+`, `-` or `×` also counts one level per operator)")])
        stack.extend((c, depth + 1) for c in reversed(node.children) if isinstance(c, lark.Tree))


def parse_file(path: str | Path) -> ast.File:
    p = Path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        span = ast.Span(str(path), line, col, line, col + 1)
        raise PolicyError([error("the file is not UTF-8 text", span,
                                 "save it as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)")]) from None
    return parse(text, str(path))


def _syntax_diagnostic(exc: lark.exceptions.UnexpectedInput, text: str, path: str) -> Any:
    line, col = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        span = ast.Span(path, line, col, line, col + 1)
        hint = None
        if "\u4e00" <= ch <= "\u9fff" or ch.isalnum():
            hint = "put a space between a keyword and the word next to it"
        return error(f"unexpected character {ch!r}", span, hint)
    if isinstance(exc, lark.exceptions.UnexpectedEOF):
        last = text.rstrip().splitlines() or [""]
        n = len(last)
        span = ast.Span(path, n, len(last[-1]) + 1, n, len(last[-1]) + 2)
        return error("unexpected end of file", span, _expected_hint({str(t) for t in exc.expected}))
    assert isinstance(exc, lark.exceptions.UnexpectedToken)
    tok = exc.token
    shown = "end of file" if tok.type == "$END" else f"`{tok.value}`"
    end = col + max(len(str(tok.value)), 1)
    span = ast.Span(path, line, col, line, end)
    return error(f"unexpected {shown}", span, _expected_hint(exc.expected))


def _expected_hint(expected: Iterable[str]) -> str | None:
    words = keyword_spellings()
    names = sorted({_TERMINAL_NAMES.get(t) or (f"`{words[t]}`" if t in words else t.lower())
                    for t in expected if not t.startswith("__")})
    if not names:
        return None
    if len(names) > 12:
        names = [*names[:12], "…"]
    return "expected " + ", ".join(names)


# ---- tree -> AST ---------------------------------------------------------------------------------
def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the lexer only admits digits
        raise ValueError(text) from None


def parse_amount(text: str) -> Decimal:
    """`12,000元` -> 12000; `1.2万元` -> 12000; `0.5` -> 0.5 (yuan)."""
    t = text.replace(",", "").replace(" ", "")
    factor = Decimal(1)
    for unit, f in (("万元", 10000), ("万", 10000), ("元", 1)):
        if t.endswith(unit):
            t, factor = t[: -len(unit)], Decimal(f)
            break
    return _decimal(t) * factor


def parse_date(text: str) -> datetime.date:
    m = re.fullmatch(r"(\d{4})年(\d{1,2})月(\d{1,2})日", text)
    y, mo, d = (int(g) for g in m.groups()) if m else (int(x) for x in text.split("-"))
    return datetime.date(y, mo, d)


def _unquote(tok: str) -> str:
    if tok.startswith("“"):
        return tok[1:-1]
    return re.sub(r"\\(.)", r"\1", tok[1:-1])


def _kids(children: list[Any]) -> list[Any]:
    return [c for c in children if not (isinstance(c, Token) and c.type not in _VALUE_TERMINALS)]


def _of(children: list[Any], cls: type) -> list[Any]:
    return [c for c in children if isinstance(c, cls)]


def _strings(children: list[Any]) -> list[str]:
    return [_unquote(c) for c in children if isinstance(c, Token) and c.type == "STRING"]


def _first_string(children: list[Any]) -> str | None:
    s = _strings(children)
    return s[0] if s else None


@v_args(meta=True)
class _Builder(Transformer[Token, Any]):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _span(self, meta: Meta) -> ast.Span:
        if getattr(meta, "empty", True):
            return ast.NO_SPAN
        return ast.Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> ast.Span:
        return ast.Span(self.path, tok.line or 0, tok.column or 0,
                        tok.end_line or 0, tok.end_column or 0)

    def _date(self, tok: Token) -> datetime.date:
        try:
            return parse_date(str(tok))
        except ValueError:
            raise PolicyError([error(f"`{tok}` is not a calendar date", self._tok_span(tok))]) from None

    # -- file & policy ------------------------------------------------------------------------------
    def start(self, meta: Meta, ch: list[Any]) -> ast.File:
        imports = tuple(_of(ch, ast.Import))
        policy = _of(ch, ast.Policy)[0]
        return ast.File(self.path, imports, policy)

    def import_decl(self, meta: Meta, ch: list[Any]) -> ast.Import:
        names = _of(ch, str)
        alias = next((n for n in names if not isinstance(n, Token)), None)
        return ast.Import(_first_string(ch) or "", alias, self._span(meta))

    def policy(self, meta: Meta, ch: list[Any]) -> ast.Policy:
        names = [c for c in ch if isinstance(c, _Name)]
        head = {k: v for c in ch if isinstance(c, _Header) for k, v in c.items.items()}
        amends = names[1] if len(names) > 1 else None
        items = tuple(c for c in ch if isinstance(c, _POLICY_ITEMS))
        title = _first_string([c for c in ch if isinstance(c, Token)])
        return ast.Policy(
            str(names[0]), title, str(amends) if amends else None, head.get("document"),
            head.get("dated"), head.get("effective"), head.get("until"),
            tuple(head.get("schemes", ())), head.get("source"), items, self._span(meta))

    def document(self, meta: Meta, ch: list[Any]) -> _Header:
        return _Header({"document": _first_string(ch)})

    def dated(self, meta: Meta, ch: list[Any]) -> _Header:
        return _Header({"dated": self._date(_dates(ch)[0])})

    def effective(self, meta: Meta, ch: list[Any]) -> _Header:
        d = _dates(ch)
        return _Header({"effective": self._date(d[0]), "until": self._date(d[1]) if len(d) > 1 else None})

    def schemes(self, meta: Meta, ch: list[Any]) -> _Header:
        return _Header({"schemes": ch[-1]})

    def source(self, meta: Meta, ch: list[Any]) -> _Header:
        return _Header({"source": _first_string(ch)})

    # -- names, clauses -----------------------------------------------------------------------------
    def name(self, meta: Meta, ch: list[Any]) -> _Name:
        return _Name(str(ch[0]), self._span(meta))

    def name_list(self, meta: Meta, ch: list[Any]) -> tuple[str, ...]:
        return tuple(str(c) for c in ch if isinstance(c, _Name))

    def clauses(self, meta: Meta, ch: list[Any]) -> ast.Clauses:
        source, eff, until, span = None, None, None, ast.NO_SPAN
        for c in ch:
            if c[0] == "source":
                source, span = c[1], c[2]
            else:
                eff, until = c[1], c[2]
        return ast.Clauses(source, eff, until, span)

    def clause_source(self, meta: Meta, ch: list[Any]) -> tuple[Any, ...]:
        return ("source", _first_string(ch), self._span(meta))

    def clause_effective(self, meta: Meta, ch: list[Any]) -> tuple[Any, ...]:
        d = _dates(ch)
        return ("effective", self._date(d[0]), self._date(d[1]) if len(d) > 1 else None)

    # -- declarations -------------------------------------------------------------------------------
    def identity_decl(self, meta: Meta, ch: list[Any]) -> ast.IdentityDecl:
        return ast.IdentityDecl(str(_names(ch)[0]), _first_string(ch), _clauses(ch), self._span(meta))

    def region_decl(self, meta: Meta, ch: list[Any]) -> ast.RegionDecl:
        return ast.RegionDecl(str(_names(ch)[0]), _first_string(ch), _clauses(ch), self._span(meta))

    def disease_list(self, meta: Meta, ch: list[Any]) -> ast.DiseaseList:
        head = [c for c in ch if not isinstance(c, ast.DiseaseEntry)]
        return ast.DiseaseList(str(_names(ch)[0]), _first_string(head), tuple(_of(ch, ast.DiseaseEntry)),
                               _clauses(ch), self._span(meta))

    def disease_entry(self, meta: Meta, ch: list[Any]) -> ast.DiseaseEntry:
        strings = _strings(ch)
        names = _names(ch)
        if names:
            return ast.DiseaseEntry(str(names[0]), True, tuple(strings), self._span(meta))
        return ast.DiseaseEntry(strings[0], False, tuple(strings[1:]), self._span(meta))

    def hospital_list(self, meta: Meta, ch: list[Any]) -> ast.HospitalList:
        names = _names(ch)
        strings = _strings(ch)
        title_given = len(strings) > 0 and isinstance(ch[2], Token) and ch[2].type == "STRING"
        title = strings[0] if title_given else None
        hospitals = tuple(strings[1:] if title_given else strings)
        return ast.HospitalList(str(names[0]), title, str(names[1]), hospitals, _clauses(ch),
                                self._span(meta))

    def column_decl(self, meta: Meta, ch: list[Any]) -> ast.ColumnDecl:
        names = _names(ch)
        entity: Literal["person", "claim"] = (
            "person" if any(isinstance(c, Token) and c.type == "PERSON" for c in ch) else "claim")
        return ast.ColumnDecl(str(names[0]), entity, str(names[1]), _clauses(ch), self._span(meta))

    def fund(self, meta: Meta, ch: list[Any]) -> ast.FundDecl:
        return ast.FundDecl(str(_names(ch)[0]), _first_string(ch), _clauses(ch), self._span(meta))

    def param(self, meta: Meta, ch: list[Any]) -> ast.Param:
        names = _names(ch)
        typ = str(names[1]) if len(names) > 1 else None
        return ast.Param(str(names[0]), typ, _values(ch)[0], _clauses(ch), self._span(meta))

    def param_unspecified(self, meta: Meta, ch: list[Any]) -> ast.Param:
        names = _names(ch)
        return ast.Param(str(names[0]), str(names[1]), None, _clauses(ch), self._span(meta))

    def param_type(self, meta: Meta, ch: list[Any]) -> _Name:
        return _Name(str(ch[0]), self._span(meta))

    def condition_def(self, meta: Meta, ch: list[Any]) -> ast.ConditionDef:
        cond = _conds(ch)[0]
        return ast.ConditionDef(str(_names(ch)[0]), _first_string(ch), cond, _clauses(ch), self._span(meta))

    def repeal(self, meta: Meta, ch: list[Any]) -> ast.Repeal:
        names = _names(ch)
        if names:
            return ast.Repeal(str(names[0]), True, _clauses(ch), self._span(meta))
        return ast.Repeal(_first_string(ch) or "", False, _clauses(ch), self._span(meta))

    # -- layers -------------------------------------------------------------------------------------
    def layer_decl(self, meta: Meta, ch: list[Any]) -> ast.Layer:
        opts: dict[str, Any] = {}
        for c in ch:
            if isinstance(c, _LayerClause):
                opts[c.key] = c.value
        items = tuple(c for c in ch if isinstance(c, _LAYER_ITEMS))
        head = [c for c in ch if isinstance(c, Token)]
        return ast.Layer(str(_names(ch)[0]), _first_string(head), opts.get("fund"), opts.get("after"),
                         opts.get("before"), opts.get("exclusive", ()), items, _clauses(ch),
                         self._span(meta))

    def layer_fund(self, meta: Meta, ch: list[Any]) -> _LayerClause:
        return _LayerClause("fund", str(_names(ch)[0]))

    def layer_after(self, meta: Meta, ch: list[Any]) -> _LayerClause:
        return _LayerClause("after", str(_names(ch)[0]))

    def layer_before(self, meta: Meta, ch: list[Any]) -> _LayerClause:
        return _LayerClause("before", str(_names(ch)[0]))

    def layer_exclusive(self, meta: Meta, ch: list[Any]) -> _LayerClause:
        return _LayerClause("exclusive", ch[-1])

    def remove_layer(self, meta: Meta, ch: list[Any]) -> ast.RemoveLayer:
        return ast.RemoveLayer(str(_names(ch)[0]), _clauses(ch), self._span(meta))

    def remove_rule(self, meta: Meta, ch: list[Any]) -> ast.RemoveRule:
        return ast.RemoveRule(str(_names(ch)[0]), _clauses(ch), self._span(meta))

    def scope(self, meta: Meta, ch: list[Any]) -> ast.Scope:
        return ast.Scope(_conds(ch)[0], _clauses(ch), self._span(meta))

    def base(self, meta: Meta, ch: list[Any]) -> ast.Base:
        after = next((c[1] for c in ch if isinstance(c, tuple) and c and c[0] == "after"), None)
        plus = next((c[1] for c in ch if isinstance(c, tuple) and c and c[0] == "plus"), ())
        return ast.Base(after, plus, _clauses(ch), self._span(meta))

    def base_from(self, meta: Meta, ch: list[Any]) -> tuple[str, tuple[str, ...]]:
        return ("after", ch[-1])

    def base_plus(self, meta: Meta, ch: list[Any]) -> tuple[str, tuple[str, ...]]:
        return ("plus", ch[-1])

    def deductible(self, meta: Meta, ch: list[Any]) -> ast.Deductible:
        return ast.Deductible(_values(ch)[0], _period(ch), _clauses(ch), self._span(meta))

    def rate(self, meta: Meta, ch: list[Any]) -> ast.Rate:
        return ast.Rate(_values(ch)[0], _clauses(ch), self._span(meta))

    def tiers(self, meta: Meta, ch: list[Any]) -> ast.Tiers:
        axis = cast(Literal["payable", "base"], next((c.axis for c in ch if isinstance(c, _Axis)), "payable"))
        return ast.Tiers(axis, tuple(_of(ch, ast.Tier)), _clauses(ch), self._span(meta))

    def axis_base(self, meta: Meta, ch: list[Any]) -> _Axis:
        return _Axis("base")

    def axis_payable(self, meta: Meta, ch: list[Any]) -> _Axis:
        return _Axis("payable")

    def tier_range(self, meta: Meta, ch: list[Any]) -> ast.Tier:
        v = _values(ch)
        return ast.Tier(v[0], v[1], v[2], self._span(meta))

    def tier_above(self, meta: Meta, ch: list[Any]) -> ast.Tier:
        v = _values(ch)
        return ast.Tier(v[0], None, v[1], self._span(meta))

    def unit_rate(self, meta: Meta, ch: list[Any]) -> ast.UnitRate:
        return ast.UnitRate(_values(ch)[0], str(_names(ch)[-1]), _clauses(ch), self._span(meta))

    def bonus(self, meta: Meta, ch: list[Any]) -> ast.Bonus:
        names = [c for c in ch if isinstance(c, _Name)]
        return ast.Bonus(_values(ch)[0], str(names[0]) if names else None, _clauses(ch), self._span(meta))

    def cap(self, meta: Meta, ch: list[Any]) -> ast.Cap:
        return ast.Cap(_values(ch)[0], _period(ch), _clauses(ch), self._span(meta))

    def accumulate(self, meta: Meta, ch: list[Any]) -> ast.Accumulate:
        return ast.Accumulate(str(_names(ch)[0]), _clauses(ch), self._span(meta))

    def per_claim(self, meta: Meta, ch: list[Any]) -> _Period:
        return _Period("claim")

    def per_admission(self, meta: Meta, ch: list[Any]) -> _Period:
        return _Period("admission")

    def per_year(self, meta: Meta, ch: list[Any]) -> _Period:
        return _Period("year")

    def rule_block(self, meta: Meta, ch: list[Any]) -> ast.RuleBlock:
        toks = {c.type for c in ch if isinstance(c, Token)}
        kind: Literal["when", "rule", "exception"] = (
            "exception" if "EXCEPTION" in toks else "rule" if "RULE" in toks else "when")
        names = [c for c in ch if isinstance(c, _Name)]
        over = next((c.names for c in ch if isinstance(c, _Over)), ())
        items = tuple(c for c in ch if isinstance(c, _LAYER_ITEMS))
        return ast.RuleBlock(kind, str(names[0]) if names else None, _conds(ch)[0], over, items,
                             _clauses(ch), self._span(meta))

    def over(self, meta: Meta, ch: list[Any]) -> _Over:
        return _Over(ch[-1])

    def identity_block(self, meta: Meta, ch: list[Any]) -> ast.IdentityBlock:
        prec = next((c.value for c in ch if isinstance(c, _Precedence)), None)
        return ast.IdentityBlock(prec, tuple(_of(ch, ast.IdentityEntry)), _clauses(ch), self._span(meta))

    def best(self, meta: Meta, ch: list[Any]) -> _Precedence:
        return _Precedence("best")

    def order(self, meta: Meta, ch: list[Any]) -> _Precedence:
        return _Precedence("order")

    def identity_entry(self, meta: Meta, ch: list[Any]) -> ast.IdentityEntry:
        items = tuple(c for c in ch if isinstance(c, _LAYER_ITEMS))
        return ast.IdentityEntry(ch[0], items, _clauses(ch), self._span(meta))

    def treat(self, meta: Meta, ch: list[Any]) -> ast.Treat:
        return ast.Treat(ch[_first_tuple(ch)], str(_names(ch)[-1]), _clauses(ch), self._span(meta))

    # -- shared caps, subsidies, alerts, requirements, targets ----------------------------------------
    def shared_cap(self, meta: Meta, ch: list[Any]) -> ast.SharedCap:
        return ast.SharedCap(str(_names(ch)[0]), _values(ch)[0], ch[_first_tuple(ch)], _clauses(ch),
                             self._span(meta))

    def subsidy_decl(self, meta: Meta, ch: list[Any]) -> ast.Subsidy:
        prec = next((c.value for c in ch if isinstance(c, _Precedence)), None)
        items = tuple(c for c in ch if isinstance(c, (ast.SubsidyAmount, ast.Scope, ast.Share, ast.Treat)))
        head = [c for c in ch if isinstance(c, Token)]
        return ast.Subsidy(str(_names(ch)[0]), _first_string(head), prec, items, _clauses(ch),
                           self._span(meta))

    def subsidy_amount(self, meta: Meta, ch: list[Any]) -> ast.SubsidyAmount:
        return ast.SubsidyAmount(_values(ch)[0], _clauses(ch), self._span(meta))

    def subsidy_share(self, meta: Meta, ch: list[Any]) -> ast.Share:
        return ast.Share(ch[0], _values(ch)[0], _clauses(ch), self._span(meta))

    def alert_decl(self, meta: Meta, ch: list[Any]) -> ast.Alert:
        items = tuple(c for c in ch if isinstance(c, (ast.Measure, ast.Threshold)))
        head = [c for c in ch if isinstance(c, Token)]
        return ast.Alert(str(_names(ch)[0]), _first_string(head), items, _clauses(ch), self._span(meta))

    def alert_measure(self, meta: Meta, ch: list[Any]) -> ast.Measure:
        return ast.Measure(ch[_first_tuple(ch)], _conds(ch)[0], _clauses(ch), self._span(meta))

    def alert_threshold(self, meta: Meta, ch: list[Any]) -> ast.Threshold:
        return ast.Threshold(_conds(ch)[0], _values(ch)[0], _clauses(ch), self._span(meta))

    def requirement(self, meta: Meta, ch: list[Any]) -> ast.Requirement:
        prop = next(c for c in ch if isinstance(c, _REQ_PROPS))
        schemes = next((c.names for c in ch if isinstance(c, _Applies)), ())
        return ast.Requirement(str(_names(ch)[0]), prop, schemes, _clauses(ch), self._span(meta))

    def applies(self, meta: Meta, ch: list[Any]) -> _Applies:
        return _Applies(ch[-1])

    def req_exists(self, meta: Meta, ch: list[Any]) -> ast.ReqExists:
        return ast.ReqExists(self._span(meta))

    def req_tiered(self, meta: Meta, ch: list[Any]) -> ast.ReqTiered:
        return ast.ReqTiered(self._span(meta))

    def req_rate(self, meta: Meta, ch: list[Any]) -> ast.ReqRate:
        return ast.ReqRate(_cmp(ch), _values(ch)[0], self._span(meta))

    def req_cap(self, meta: Meta, ch: list[Any]) -> ast.ReqCap:
        or_none = any(isinstance(c, Token) and c.type == "NONE" for c in ch)
        return ast.ReqCap(_cmp(ch), _values(ch)[0], or_none, self._span(meta))

    def req_no_cap(self, meta: Meta, ch: list[Any]) -> ast.ReqNoCap:
        return ast.ReqNoCap(self._span(meta))

    def req_rate_relation(self, meta: Meta, ch: list[Any]) -> ast.ReqRateRelation:
        conds = _conds(ch)
        return ast.ReqRateRelation(conds[0], _cmp(ch), conds[1], self._span(meta))

    def target(self, meta: Meta, ch: list[Any]) -> ast.Target:
        head = [c for c in ch if isinstance(c, Token)]
        return ast.Target(str(_names(ch)[0]), _first_string(head), ch[_first_tuple(ch)], _conds(ch)[0],
                          _values(ch)[0], self._date(_dates(ch)[-1]), _clauses(ch), self._span(meta))

    # -- tests --------------------------------------------------------------------------------------
    def test_decl(self, meta: Meta, ch: list[Any]) -> ast.Test:
        items = tuple(c for c in ch if isinstance(c, _TEST_ITEMS))
        return ast.Test(_first_string(ch) or "", items, _clauses(ch), self._span(meta))

    def test_as_of(self, meta: Meta, ch: list[Any]) -> ast.TestAsOf:
        return ast.TestAsOf(self._date(_dates(ch)[0]), self._span(meta))

    def test_set(self, meta: Meta, ch: list[Any]) -> ast.TestSet:
        return ast.TestSet(str(_names(ch)[0]), _values(ch)[0], self._span(meta))

    def test_person(self, meta: Meta, ch: list[Any]) -> ast.TestRecord:
        return ast.TestRecord("person", str(_names(ch)[0]), _fields(ch), self._span(meta))

    def test_claim(self, meta: Meta, ch: list[Any]) -> ast.TestRecord:
        return ast.TestRecord("claim", str(_names(ch)[0]), _fields(ch), self._span(meta))

    def expect_claim(self, meta: Meta, ch: list[Any]) -> ast.Expect:
        return ast.Expect("claim", str(_names(ch)[0]), None, _fields(ch), self._span(meta))

    def expect_person(self, meta: Meta, ch: list[Any]) -> ast.Expect:
        year = next(int(c) for c in ch if isinstance(c, Token) and c.type == "INT")
        return ast.Expect("person", str(_names(ch)[0]), year, _fields(ch), self._span(meta))

    def expect_error(self, meta: Meta, ch: list[Any]) -> ast.ExpectError:
        return ast.ExpectError(_first_string(ch) or "", self._span(meta))

    def fields(self, meta: Meta, ch: list[Any]) -> tuple[ast.Field, ...]:
        return tuple(_of(ch, ast.Field))

    def field(self, meta: Meta, ch: list[Any]) -> ast.Field:
        return ast.Field(str(ch[0]), _field_text(ch[-1]), self._span(meta))

    def field_list(self, meta: Meta, ch: list[Any]) -> _FieldList:
        return _FieldList([_field_text(c) for c in _kids(ch)])

    # -- conditions ---------------------------------------------------------------------------------
    def cond_or(self, meta: Meta, ch: list[Any]) -> ast.Or:
        return ast.Or(tuple(_conds(ch)), self._span(meta))

    def cond_and(self, meta: Meta, ch: list[Any]) -> ast.And:
        return ast.And(tuple(_conds(ch)), self._span(meta))

    def cond_not(self, meta: Meta, ch: list[Any]) -> ast.Not:
        return ast.Not(_conds(ch)[0], self._span(meta))

    def compare(self, meta: Meta, ch: list[Any]) -> ast.Compare:
        return ast.Compare(str(ch[0]), _cmp(ch), self._lit(ch[-1]), self._span(meta))

    def member(self, meta: Meta, ch: list[Any]) -> ast.Member:
        return ast.Member(str(ch[0]), tuple(self._lit(v) for v in ch[_first_list(ch)]), False,
                          self._span(meta))

    def not_member(self, meta: Meta, ch: list[Any]) -> ast.Member:
        return ast.Member(str(ch[0]), tuple(self._lit(v) for v in ch[_first_list(ch)]), True,
                          self._span(meta))

    def has_any(self, meta: Meta, ch: list[Any]) -> ast.Has:
        return ast.Has(str(ch[0]), tuple(self._lit(v) for v in ch[-1]), False, self._span(meta))

    def has_all(self, meta: Meta, ch: list[Any]) -> ast.Has:
        return ast.Has(str(ch[0]), tuple(self._lit(v) for v in ch[-1]), True, self._span(meta))

    def flag(self, meta: Meta, ch: list[Any]) -> ast.Flag:
        return ast.Flag(str(ch[0]), self._span(meta))

    def always(self, meta: Meta, ch: list[Any]) -> ast.Always:
        return ast.Always(self._span(meta))

    def set_ref(self, meta: Meta, ch: list[Any]) -> _FieldList:
        items = _kids(ch)
        if len(items) == 1 and isinstance(items[0], _FieldList):
            return items[0]
        return _FieldList(items)

    def atom_list(self, meta: Meta, ch: list[Any]) -> _FieldList:
        return _FieldList(_kids(ch))

    def _lit(self, v: Any) -> ast.Lit:
        if isinstance(v, _Name):
            return ast.Lit("name", str(v), v.span)
        assert isinstance(v, Token)
        kind = {"STRING": "string", "INT": "int", "MONEY": "money", "PERCENT": "percent",
                "NONE": "none", "TRUE": "bool", "FALSE": "bool"}[v.type]
        text = _unquote(v) if v.type == "STRING" else ("true" if v.type == "TRUE" else
                                                        "false" if v.type == "FALSE" else str(v))
        return ast.Lit(kind, text, self._tok_span(v))  # type: ignore[arg-type]

    # -- values -------------------------------------------------------------------------------------
    def rel_add(self, meta: Meta, ch: list[Any]) -> ast.Relative:
        return ast.Relative("+", _values(ch)[0], self._span(meta))

    def rel_sub(self, meta: Meta, ch: list[Any]) -> ast.Relative:
        return ast.Relative("-", _values(ch)[0], self._span(meta))

    def rel_mul(self, meta: Meta, ch: list[Any]) -> ast.Relative:
        return ast.Relative("×", _values(ch)[0], self._span(meta))

    def add(self, meta: Meta, ch: list[Any]) -> ast.BinOp:
        v = _values(ch)
        return ast.BinOp("+", v[0], v[1], self._span(meta))

    def sub(self, meta: Meta, ch: list[Any]) -> ast.BinOp:
        v = _values(ch)
        return ast.BinOp("-", v[0], v[1], self._span(meta))

    def mul(self, meta: Meta, ch: list[Any]) -> ast.BinOp:
        v = _values(ch)
        return ast.BinOp("×", v[0], v[1], self._span(meta))

    def amount(self, meta: Meta, ch: list[Any]) -> ast.Amount:
        tok = ch[0]
        return ast.Amount(parse_amount(str(tok)), tok.type == "INT", self._span(meta))

    def percent(self, meta: Meta, ch: list[Any]) -> ast.Percent:
        return ast.Percent(_decimal(str(ch[0]).replace("%", "").strip()), self._span(meta))

    def by_level(self, meta: Meta, ch: list[Any]) -> ast.ByLevel:
        v = _values(ch)
        return ast.ByLevel((v[0], v[1], v[2]), self._span(meta))

    def none(self, meta: Meta, ch: list[Any]) -> ast.NoneValue:
        return ast.NoneValue(self._span(meta))

    def text(self, meta: Meta, ch: list[Any]) -> ast.Text:
        return ast.Text(_unquote(ch[0]), self._span(meta))

    def true(self, meta: Meta, ch: list[Any]) -> ast.Bool:
        return ast.Bool(True, self._span(meta))

    def false(self, meta: Meta, ch: list[Any]) -> ast.Bool:
        return ast.Bool(False, self._span(meta))

    def base_ref(self, meta: Meta, ch: list[Any]) -> ast.Ref:
        return ast.Ref("base_value", self._span(meta))

    def general_ref(self, meta: Meta, ch: list[Any]) -> ast.Ref:
        return ast.Ref("general", self._span(meta))

    def previous_ref(self, meta: Meta, ch: list[Any]) -> ast.Ref:
        return ast.Ref("previous_deductible", self._span(meta))

    def max(self, meta: Meta, ch: list[Any]) -> ast.Call:
        v = _values(ch)
        return ast.Call("max", (v[0], v[1]), self._span(meta))

    def min(self, meta: Meta, ch: list[Any]) -> ast.Call:
        v = _values(ch)
        return ast.Call("min", (v[0], v[1]), self._span(meta))

    def param_ref(self, meta: Meta, ch: list[Any]) -> ast.ParamRef:
        return ast.ParamRef(str(ch[0]), self._span(meta))


class _Name(str):
    span: ast.Span

    def __new__(cls, value: str, span: ast.Span) -> _Name:
        obj = super().__new__(cls, value)
        obj.span = span
        return obj


class _FieldList(list[Any]):
    pass


class _Header:
    def __init__(self, items: dict[str, Any]):
        self.items = items


class _LayerClause:
    def __init__(self, key: str, value: Any):
        self.key, self.value = key, value


class _Axis:
    def __init__(self, axis: str):
        self.axis = axis


class _Period:
    def __init__(self, period: str):
        self.period = period


class _Over:
    def __init__(self, names: tuple[str, ...]):
        self.names = names


class _Precedence:
    def __init__(self, value: Literal["best", "order"]):
        self.value = value


class _Applies:
    def __init__(self, names: tuple[str, ...]):
        self.names = names


_POLICY_ITEMS = (ast.IdentityDecl, ast.RegionDecl, ast.DiseaseList, ast.HospitalList, ast.ColumnDecl,
                 ast.FundDecl, ast.Param, ast.ConditionDef, ast.Layer, ast.RemoveLayer, ast.SharedCap,
                 ast.Subsidy, ast.Alert, ast.Requirement, ast.Target, ast.Test, ast.Repeal)
_LAYER_ITEMS = (ast.Scope, ast.Base, ast.Deductible, ast.Rate, ast.Tiers, ast.UnitRate, ast.Bonus,
                ast.Cap, ast.Accumulate, ast.RuleBlock, ast.IdentityBlock, ast.Treat, ast.RemoveRule)
_TEST_ITEMS = (ast.TestRecord, ast.Expect, ast.ExpectError, ast.TestAsOf, ast.TestSet)
_REQ_PROPS = (ast.ReqExists, ast.ReqTiered, ast.ReqRate, ast.ReqCap, ast.ReqNoCap, ast.ReqRateRelation)
_VALUE_NODES = (ast.Amount, ast.Percent, ast.ByLevel, ast.NoneValue, ast.Text, ast.Bool, ast.Ref,
                ast.ParamRef, ast.BinOp, ast.Call, ast.Relative)
_COND_NODES = (ast.Compare, ast.Member, ast.Has, ast.Flag, ast.Always, ast.And, ast.Or, ast.Not)


def _names(ch: list[Any]) -> list[_Name]:
    return [c for c in ch if isinstance(c, _Name)]


def _values(ch: list[Any]) -> list[Any]:
    return [c for c in ch if isinstance(c, _VALUE_NODES)]


def _conds(ch: list[Any]) -> list[Any]:
    return [c for c in ch if isinstance(c, _COND_NODES)]


def _dates(ch: list[Any]) -> list[Token]:
    return [c for c in ch if isinstance(c, Token) and c.type == "DATE"]


def _clauses(ch: list[Any]) -> ast.Clauses:
    return next((c for c in ch if isinstance(c, ast.Clauses)), ast.NO_CLAUSES)


def _period(ch: list[Any]) -> Any:
    return next((c.period for c in ch if isinstance(c, _Period)), None)


def _cmp(ch: list[Any]) -> str:
    # `=` is an anonymous token that Lark drops: no CMP token means equality.
    return _norm_cmp(next((str(c) for c in ch if isinstance(c, Token) and c.type == "CMP"), "="))


def _norm_cmp(op: str) -> str:
    return {"≥": ">=", "≤": "<=", "≠": "!=", "==": "="}.get(op, op)


def _first_tuple(ch: list[Any]) -> int:
    return next(i for i, c in enumerate(ch) if isinstance(c, tuple) and not isinstance(c, _FieldList))


def _first_list(ch: list[Any]) -> int:
    return next(i for i, c in enumerate(ch) if isinstance(c, _FieldList))


def _field_text(v: Any) -> str:
    if isinstance(v, _FieldList):
        return ";".join(str(x) for x in v)
    if isinstance(v, Token):
        if v.type == "STRING":
            return _unquote(v)
        if v.type == "MONEY":
            return str(parse_amount(str(v)))
        if v.type in ("TRUE", "FALSE"):
            return "true" if v.type == "TRUE" else "false"
        if v.type == "NONE":
            return "none"
    return str(v)


def _fields(ch: list[Any]) -> tuple[ast.Field, ...]:
    for c in ch:
        if isinstance(c, tuple) and all(isinstance(x, ast.Field) for x in c):
            return c
    return ()
