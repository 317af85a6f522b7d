"""Formatter: .pol source text -> the same tokens in the canonical layout, comments kept."""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterator
from typing import Literal, TypeAlias, TypeGuard

import attrs
import lark
from lark import Token, Tree

from policy_lang.parse import grammar_text, parse

INDENT = 2  # spaces per `{` level
CONTINUATION = 4  # extra indent of a statement's wrapped part (header clauses, lines split by comments)
SHORT_LIST = 3  # disease and hospital lists with at most this many entries stay on one line
LINE_LIMIT = 100  # a longer statement line is wrapped before the `and`/`or` of its condition

Blank: TypeAlias = Literal["none", "keep", "force"]  # blank line before: never, if written, always
Node: TypeAlias = "Tree[Token] | Token"

# Blocks whose items go one per line (each `{ … }` opens an indentation level).
_BLOCKS = frozenset({"layer_decl", "rule_block", "identity_block", "identity_entry", "test_decl",
                     "subsidy_decl", "alert_decl"})
# Top-level items set off by blank lines.
_SPACED_ITEMS = frozenset({"layer_decl", "test_decl", "alert_decl", "subsidy_decl", "target"})
_NO_SPACE_BEFORE = frozenset({",", ";", ":", ")", "]", "["})
_NO_SPACE_AFTER = frozenset({"(", "["})
_CALLS = frozenset({"MAX", "MIN"})  # `max(` without a space


@attrs.frozen
class _Break:
    """A line break before a token: the new line's indent and whether a blank line precedes it."""

    indent: int
    blank: Blank
    statement: bool = True  # False: a wrapped part, indented from the statement's line


@attrs.define
class _Tok:
    text: str
    type: str
    pos: int
    brk: _Break | None = None
    glue: bool = False  # no space after (a sign: `+10%`, `×50%`)
    soft: bool = False  # the line may be wrapped before this token (`and`/`or` of a condition)


@attrs.frozen
class _Comment:
    text: str
    pos: int
    trailing: bool  # written after a token on the same line


def format_source(text: str, path: str = "<string>") -> str:
    """Source text -> canonical text ending in one newline; raises PolicyError on a syntax error."""
    parse(text, path)
    tree = _parser().parse(text)
    emitter = _Emitter()
    emitter.start(tree)
    return _Renderer(text, _comments(text, list(_leaves(tree)))).render(_wrap_long(emitter.out))


@functools.cache
def _parser() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", lexer="basic", propagate_positions=True,
                     keep_all_tokens=True, maybe_placeholders=False)


# ---- comments ------------------------------------------------------------------------------------
def _leaves(node: Node) -> Iterator[Token]:
    if isinstance(node, Token):
        yield node
        return
    for child in node.children:
        yield from _leaves(child)


def _comments(text: str, tokens: list[Token]) -> list[_Comment]:
    """Comments in the gaps between tokens (a `#` inside a string is part of the string token)."""
    out: list[_Comment] = []
    bounds = [0, *(b for t in tokens for b in (_start(t), _end(t))), len(text)]
    for k in range(0, len(bounds), 2):
        lo, hi = bounds[k], bounds[k + 1]
        for n, m in enumerate(re.finditer(r"#[^\n]*", text[lo:hi])):
            trailing = n == 0 and k > 0 and "\n" not in text[lo:lo + m.start()]
            out.append(_Comment(m.group(0).rstrip(), lo + m.start(), trailing))
    return out


def _start(tok: Token) -> int:
    return tok.start_pos or 0


def _end(tok: Token) -> int:
    return tok.end_pos or 0


def _blank_before(text: str, pos: int) -> bool:
    """Whether the user left an empty line just before `pos`."""
    i = pos
    while i > 0 and text[i - 1].isspace():
        i -= 1
    return i > 0 and text.count("\n", i, pos) >= 2


# ---- tree -> tokens with line breaks -------------------------------------------------------------
class _Emitter:
    """Walks the concrete tree and emits its tokens, each line start marked with a _Break."""

    def __init__(self) -> None:
        self.out: list[_Tok] = []
        self.pending: _Break | None = None
        self.wrap_header = False  # the policy header has several clauses: one per line
        self.in_cond = False  # inside the outermost condition of a statement

    def brk(self, depth: int, blank: Blank, statement: bool = True, extra: int = 0) -> None:
        self.pending = _Break(depth * INDENT + extra, blank, statement)

    def token(self, tok: Token, text: str | None = None, glue: bool = False) -> None:
        shown = text if text is not None else _spelling(tok)
        self.out.append(_Tok(shown, tok.type, _start(tok), self.pending, glue))
        self.pending = None

    def start(self, tree: Tree[Token]) -> None:
        for n, child in enumerate(tree.children):
            self.brk(0, "force" if n and _is(child, "policy") else "none")
            self.node(child, 0)

    def node(self, node: Node, depth: int) -> None:
        if isinstance(node, Token):
            self.token(node)
            return
        handler = _HANDLERS.get(str(node.data))
        if node.data in ("cond_or", "cond_and") and not self.in_cond:
            self.condition(node, depth)
        elif handler is not None:
            handler(self, node, depth)
        elif node.data in _BLOCKS:
            self.block(node, depth)
        else:
            self.inline(node.children, depth)

    def condition(self, tree: Tree[Token], depth: int) -> None:
        """The outermost `and`/`or` chain of a statement: its operators are soft line breaks."""
        self.in_cond = True
        for child in tree.children:
            self.node(child, depth)
            if isinstance(child, Token) and child.type in ("AND", "OR"):
                self.out[-1].soft = True
        self.in_cond = False

    def inline(self, children: list[Node], depth: int) -> None:
        for child in children:
            self.node(child, depth)

    def block(self, tree: Tree[Token], depth: int, top: bool = False) -> None:
        """Header tokens, `{`, one item per line one level deeper, `}` alone; `;` items are dropped."""
        opened, prev = False, None
        for child in tree.children:
            if _is_tok(child, "{") and not opened:
                opened = True
                self.token(child)
            elif _is_tok(child, "}"):
                self.brk(depth, "none")
                self.token(child)
            elif opened and _is_tok(child, ";"):
                continue
            elif opened:
                self.brk(depth + 1, _item_blank(prev, child, top, self.wrap_header))
                self.node(child, depth + 1)
                prev = child
            else:
                self.node(child, depth)

    def policy(self, tree: Tree[Token], depth: int) -> None:
        clauses = [c for c in tree.children if _is(c, "document", "dated", "effective", "schemes", "source")]
        self.wrap_header = len(clauses) > 1
        self.block(tree, depth, top=True)

    def header_clause(self, tree: Tree[Token], depth: int) -> None:
        if self.wrap_header:
            self.brk(depth, "none", statement=False, extra=CONTINUATION)
        self.inline(tree.children, depth)

    def body(self, tree: Tree[Token], depth: int) -> None:
        """A block holding one statement (a target, an alert threshold): the statement on its own line."""
        inside = False
        for child in tree.children:
            if _is_tok(child, "}"):
                self.brk(depth, "none")
            elif inside:
                self.brk(depth + 1, "none")
                inside = False
            self.node(child, depth)
            if _is_tok(child, "{"):
                inside = True

    def tiers(self, tree: Tree[Token], depth: int) -> None:
        """One tier per line, `;` between tiers (`,` and a trailing separator are normalised away)."""
        tiers = [c for c in tree.children if _is(c, "tier_range", "tier_above")]
        for child in tree.children:
            if _is(child, "tier_range", "tier_above"):
                self.brk(depth + 1, "none")
                self.node(child, depth + 1)
            elif _is_tok(child, ";") or _is_tok(child, ","):
                if _pos(child) < _pos(tiers[-1]):
                    self.token(child, ";")
            elif _is_tok(child, "}"):
                self.brk(depth, "none")
                self.token(child)
            else:
                self.node(child, depth)

    def entry_list(self, tree: Tree[Token], depth: int) -> None:
        """A disease or hospital list: short ones on one line, long ones one entry per line."""
        entries = _list_entries(tree)
        one_line = len(entries) <= SHORT_LIST
        entry_ids = {id(e) for e in entries}  # identity, not equality: a set keeps this linear in the list
        inside = False
        for child in tree.children:
            if inside and _is_tok(child, ",") and _pos(child) > _pos(entries[-1]):
                continue  # trailing comma
            if inside and not one_line and id(child) in entry_ids:
                self.brk(depth + 1, "keep" if child is not entries[0] else "none")
            if not one_line and _is_tok(child, "}"):
                self.brk(depth, "none")
            self.node(child, depth)
            inside = inside or _is_tok(child, "{")

    def fields(self, tree: Tree[Token], depth: int) -> None:
        children = tree.children
        if children and _is_tok(children[-1], ","):
            children = children[:-1]
        self.inline(children, depth)

    def signed(self, tree: Tree[Token], depth: int) -> None:
        sign, *rest = tree.children
        assert isinstance(sign, Token)
        self.token(sign, glue=True)
        self.inline(rest, depth)


def _list_entries(tree: Tree[Token]) -> list[Node]:
    if tree.data == "disease_list":
        return [c for c in tree.children if _is(c, "disease_entry")]
    brace = next(i for i, c in enumerate(tree.children) if _is_tok(c, "{"))
    return [c for c in tree.children[brace:] if isinstance(c, Token) and c.type == "STRING"]


def _item_blank(prev: Node | None, item: Node, top: bool, wrapped: bool) -> Blank:
    """Blank line before a block item: never first (but after a wrapped policy header), always
    around layers, tests, alerts, subsidies, targets and long lists, else as the user wrote it."""
    if prev is None:
        return "force" if top and wrapped else "none"
    if top and (_is_spaced(prev) or _is_spaced(item)):
        return "force"
    return "keep"


def _is_spaced(node: Node) -> bool:
    if _is(node, "disease_list", "hospital_list"):
        return len(_list_entries(node)) > SHORT_LIST
    return _is(node, *_SPACED_ITEMS)


def _pos(node: Node) -> int:
    return _start(node) if isinstance(node, Token) else node.meta.start_pos


def _is(node: Node, *names: str) -> TypeGuard[Tree[Token]]:
    return isinstance(node, Tree) and node.data in names


def _is_tok(node: Node, value: str) -> TypeGuard[Token]:
    return isinstance(node, Token) and node.value == value


def _spelling(tok: Token) -> str:
    """The token as written; whitespace inside a multi-word keyword or `75 %` becomes one space."""
    if tok.type == "STRING":
        return str(tok.value)
    return re.sub(r"\s+", " ", str(tok.value))


_HANDLERS = {
    "policy": _Emitter.policy,
    **dict.fromkeys(("document", "dated", "effective", "schemes", "source"), _Emitter.header_clause),
    "alert_threshold": _Emitter.body,
    "target": _Emitter.body,
    "tiers": _Emitter.tiers,
    "disease_list": _Emitter.entry_list,
    "hospital_list": _Emitter.entry_list,
    "fields": _Emitter.fields,
    **dict.fromkeys(("rel_add", "rel_sub", "rel_mul"), _Emitter.signed),
}


# ---- long lines -----------------------------------------------------------------------------------
def _wrap_long(toks: list[_Tok]) -> list[_Tok]:
    """Break an over-long line before each soft token, indented as a continuation of the line."""
    start = 0
    for end in [*(i for i, t in enumerate(toks) if t.brk is not None and i), len(toks)]:
        line = toks[start:end]
        brk = line[0].brk
        indent = brk.indent if brk is not None else 0
        if indent + _width(line) > LINE_LIMIT:
            for tok in line:
                if tok.soft:
                    tok.brk = _Break(indent + CONTINUATION, "none", statement=False)
        start = end
    return toks


def _width(line: list[_Tok]) -> int:
    """Display width of tokens laid out on one line (CJK characters count two columns)."""
    spaces = sum(_spaced(a, b) for a, b in itertools.pairwise(line))
    return spaces + sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for t in line for ch in t.text)


# ---- tokens + comments -> text -------------------------------------------------------------------
@attrs.define
class _Line:
    indent: int
    blank: bool
    parts: list[str] = attrs.field(factory=list)

    def text(self) -> str:
        return (" " * self.indent + "".join(self.parts)).rstrip()


class _Renderer:
    """Lays tokens out in lines and puts each comment back before the token it preceded."""

    def __init__(self, text: str, comments: list[_Comment]):
        self.text = text
        self.comments = comments
        self.next_comment = 0
        self.lines: list[_Line] = []
        self.prev: _Tok | None = None
        self.statement_indent = 0

    def render(self, toks: list[_Tok]) -> str:
        for tok in toks:
            self.place(tok)
        self.place_comments(None, None)
        texts = [("\n" if line.blank and n else "") + line.text() for n, line in enumerate(self.lines)]
        return "\n".join(texts).strip("\n") + "\n"

    def place(self, tok: _Tok) -> None:
        brk = self.place_comments(tok, tok.brk)
        if brk is None:
            self.append(tok)
            return
        blank = self.wants_blank(brk.blank, tok.pos)
        if brk.statement:
            self.statement_indent = brk.indent
        self.lines.append(_Line(brk.indent, blank))
        self.prev = None
        self.append(tok)

    def append(self, tok: _Tok) -> None:
        line = self.lines[-1]
        if self.prev is not None and _spaced(self.prev, tok):
            line.parts.append(" ")
        line.parts.append(tok.text)
        self.prev = tok

    def place_comments(self, tok: _Tok | None, brk: _Break | None) -> _Break | None:
        """Emit the comments before `tok`; returns the break `tok` needs (comments may force one)."""
        own: list[_Comment] = []
        for comment in self.comments_before(tok):
            if comment.trailing and self.lines:
                self.lines[-1].parts.append(" " + comment.text)
                brk = brk or self.continuation()
            else:
                own.append(comment)
        if not own:
            return brk
        brk = brk or (_Break(0, "keep") if tok is None else self.continuation())
        self.own_line(own, brk, tok)
        return attrs.evolve(brk, blank="none" if tok is None or tok.text == "}" else "keep")

    def comments_before(self, tok: _Tok | None) -> Iterator[_Comment]:
        """The comments not yet placed that precede `tok` (all of them at the end of the file)."""
        while self.next_comment < len(self.comments):
            comment = self.comments[self.next_comment]
            if tok is not None and comment.pos > tok.pos:
                return
            self.next_comment += 1
            yield comment

    def own_line(self, comments: list[_Comment], brk: _Break, tok: _Tok | None) -> None:
        closing = tok is not None and tok.text == "}" and brk.statement
        indent = brk.indent + INDENT if closing else brk.indent
        first: Blank = "keep" if closing or tok is None else brk.blank
        for n, comment in enumerate(comments):
            blank = self.wants_blank(first if n == 0 else "keep", comment.pos)
            self.lines.append(_Line(indent, blank, [comment.text]))
        self.prev = None

    def continuation(self) -> _Break:
        return _Break(self.statement_indent + CONTINUATION, "none", statement=False)

    def wants_blank(self, blank: Blank, pos: int) -> bool:
        return blank == "force" or (blank == "keep" and _blank_before(self.text, pos))


def _spaced(prev: _Tok, tok: _Tok) -> bool:
    if prev.glue or prev.text in _NO_SPACE_AFTER or tok.text in _NO_SPACE_BEFORE:
        return False
    return not (tok.text == "(" and prev.type in _CALLS)
