"""Tokenizer and recursive-descent parser for trader rules.

Grammar, loosest binding first (every binary level is a loop, so chains do not recurse)::

    rule       := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := additive (CMP additive)?        CMP: < <= > >= == !=  (no chaining)
    additive   := term (("+" | "-") term)*
    term       := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | postfix
    postfix    := primary ("[" INTEGER "]")*
    primary    := NUMBER | "true" | "false" | NAME | NAME "(" [arg ("," arg)*] ")"
                | "(" or_expr ")"
    arg        := NAME "=" (STRING | or_expr) | or_expr

Strings exist only as keyword values. Identifiers are ASCII, must not start with "_".
Nesting (parentheses, call arguments, unary operators) is capped, so hostile input such
as ten thousand "(" ends in a RuleError rather than a RecursionError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from flows.rules.errors import RuleError, place

MAX_TEXT = 2000
MAX_DEPTH = 32
MAX_NODES = 200
MAX_NUMBER_CHARS = 32
MAX_NAME_CHARS = 64
MAX_STRING_CHARS = 16

KEYWORDS = frozenset({"and", "or", "not", "true", "false"})
COMPARE_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})
_TWO_CHAR_OPS = frozenset({"<=", ">=", "==", "!="})
_ONE_CHAR_OPS = frozenset("()[],=<>+-*/%")
_WHITESPACE = frozenset(" \t\r\n")
_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_CHARS = _NAME_START | _DIGITS | {"_"}

TokenKind = Literal["number", "string", "name", "keyword", "op", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    pos: int

    def describe(self) -> str:
        return "end of rule" if self.kind == "end" else repr(self.text)


# ---------------------------------------------------------------------------- AST nodes


@dataclass(frozen=True, slots=True)
class Number:
    value: int | float
    pos: int


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class String:
    value: str
    pos: int


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Keyword:
    name: str
    value: Expr
    pos: int  # offset of the keyword's name


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...]
    pos: int  # offset of the helper's name


@dataclass(frozen=True, slots=True)
class Index:
    target: Expr
    bars: int
    pos: int  # offset of "["


@dataclass(frozen=True, slots=True)
class Unary:
    op: Literal["-", "not"]
    operand: Expr
    pos: int  # offset of the operator


@dataclass(frozen=True, slots=True)
class Binary:
    op: Literal["+", "-", "*", "/", "%", "and", "or"]
    left: Expr
    right: Expr
    pos: int  # offset of the operator


@dataclass(frozen=True, slots=True)
class Compare:
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: Expr
    right: Expr
    pos: int  # offset of the operator


Expr = Number | Bool | String | Name | Call | Index | Unary | Binary | Compare


def children(node: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions of a node (keyword values included)."""
    if isinstance(node, Call):
        return node.args + tuple(k.value for k in node.kwargs)
    if isinstance(node, Index):
        return (node.target,)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary | Compare):
        return (node.left, node.right)
    return ()


def depth(node: Expr) -> int:
    """Height of the tree (a leaf is 1), computed without recursion."""
    best = 0
    stack: list[tuple[Expr, int]] = [(node, 1)]
    while stack:
        current, level = stack.pop()
        best = max(best, level)
        stack.extend((child, level + 1) for child in children(current))
    return best


# ---------------------------------------------------------------------------- tokenizer


def tokenize(text: str) -> list[Token]:
    """Split rule text into tokens; the list always ends with an "end" token."""
    if len(text) > MAX_TEXT:
        raise RuleError(MAX_TEXT, f"rule is too long (max {MAX_TEXT} characters)")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
        elif ch in _DIGITS:
            i = _read_number(text, i, tokens)
        elif ch in _NAME_START:
            j = i
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            word = text[i:j]
            if len(word) > MAX_NAME_CHARS:
                raise RuleError(i, f"name is too long (max {MAX_NAME_CHARS} characters)")
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, i))
            i = j
        elif ch == "_":
            raise RuleError(i, "names cannot start with '_'")
        elif ch == '"':
            i = _read_string(text, i, tokens)
        elif text[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append(Token("op", text[i : i + 2], i))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            tokens.append(Token("op", ch, i))
            i += 1
        else:
            raise RuleError(i, f"unexpected character {ch!r}")
    tokens.append(Token("end", "", n))
    return tokens


def _read_number(text: str, start: int, out: list[Token]) -> int:
    n = len(text)
    i = start
    while i < n and text[i] in _DIGITS:
        i += 1
    if i < n and text[i] == ".":
        i += 1
        if i >= n or text[i] not in _DIGITS:
            raise RuleError(start, "malformed number: digits must follow '.'")
        while i < n and text[i] in _DIGITS:
            i += 1
    if i < n and text[i] in "eE":
        i += 1
        if i < n and text[i] in "+-":
            i += 1
        if i >= n or text[i] not in _DIGITS:
            raise RuleError(start, "malformed number: digits must follow the exponent")
        while i < n and text[i] in _DIGITS:
            i += 1
    if i < n and (text[i] in _NAME_CHARS or text[i] == "."):
        raise RuleError(start, "malformed number")
    literal = text[start:i]
    if len(literal) > MAX_NUMBER_CHARS:
        raise RuleError(start, f"number is too long (max {MAX_NUMBER_CHARS} characters)")
    out.append(Token("number", literal, start))
    return i


def _read_string(text: str, start: int, out: list[Token]) -> int:
    end = text.find('"', start + 1)
    if end < 0:
        raise RuleError(start, "unterminated string")
    body = text[start + 1 : end]
    if len(body) > MAX_STRING_CHARS:
        raise RuleError(start, f"string is too long (max {MAX_STRING_CHARS} characters)")
    for offset, ch in enumerate(body):
        if not (ch.isascii() and ch.isprintable()) or ch == "\\":
            raise RuleError(start + 1 + offset, f"character {ch!r} is not allowed in a string")
    out.append(Token("string", body, start))
    return end + 1


def number_value(token: Token) -> int | float:
    """Value of a number token: int when written without '.' or exponent."""
    literal = token.text
    if all(ch in _DIGITS for ch in literal):
        return int(literal)
    value = float(literal)
    if not math.isfinite(value):
        raise RuleError(token.pos, f"number {literal} is out of range")
    return value


# ---------------------------------------------------------------------------- parser


def parse(text: str) -> Expr:
    """Parse rule text into an AST (no name or type checks: see flows.rules.check)."""
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        raise RuleError(0, "empty rule")
    return _Parser(tokens, text).parse_rule()


class _Parser:
    def __init__(self, tokens: list[Token], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.at = 0
        self.nesting = 0
        self.nodes = 0

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.at]

    def advance(self) -> Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token

    def is_op(self, *texts: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in texts

    def is_keyword(self, word: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.text == word

    def expect_op(self, text: str, context: str) -> Token:
        if not self.is_op(text):
            raise RuleError(
                self.tok.pos, f"expected '{text}' {context}, found {self.tok.describe()}"
            )
        return self.advance()

    def unclosed(self, opener: Token, of: str = "") -> RuleError:
        """The rule ended with `opener` ("(" or "[") still open: which one, and where."""
        closer = "]" if opener.text == "[" else ")"
        where = place(self.text, opener.pos) + (f" (the call of {of})" if of else "")
        return RuleError(self.tok.pos, f"missing '{closer}' to close '{opener.text}' at {where}")

    def count(self, pos: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise RuleError(pos, f"rule is too large (max {MAX_NODES} nodes)")

    def enter(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise RuleError(pos, f"rule is nested too deeply (max depth {MAX_DEPTH})")

    def leave(self) -> None:
        self.nesting -= 1

    # -- grammar
    def parse_rule(self) -> Expr:
        node = self.or_expr()
        if self.is_op(")"):
            where = place(self.text, self.tok.pos)
            raise RuleError(self.tok.pos, f"unmatched ')' at {where}: no '(' is open there")
        if self.tok.kind != "end":
            hint = "; use '==' to compare" if self.is_op("=") else ""
            raise RuleError(
                self.tok.pos, f"expected end of rule, found {self.tok.describe()}{hint}"
            )
        if depth(node) > MAX_DEPTH:
            raise RuleError(node.pos, f"rule is nested too deeply (max depth {MAX_DEPTH})")
        return node

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.is_keyword("or"):
            op = self.advance()
            right = self.and_expr()
            self.count(op.pos)
            left = Binary("or", left, right, op.pos)
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.is_keyword("and"):
            op = self.advance()
            right = self.not_expr()
            self.count(op.pos)
            left = Binary("and", left, right, op.pos)
        return left

    def not_expr(self) -> Expr:
        if not self.is_keyword("not"):
            return self.comparison()
        op = self.advance()
        self.enter(op.pos)
        operand = self.not_expr()
        self.leave()
        self.count(op.pos)
        return Unary("not", operand, op.pos)

    def comparison(self) -> Expr:
        left = self.additive()
        if self.tok.kind != "op" or self.tok.text not in COMPARE_OPS:
            return left
        op = self.advance()
        right = self.additive()
        if self.tok.kind == "op" and self.tok.text in COMPARE_OPS:
            raise RuleError(self.tok.pos, "comparisons cannot be chained; combine them with 'and'")
        self.count(op.pos)
        return Compare(_compare_op(op.text), left, right, op.pos)

    def additive(self) -> Expr:
        left = self.term()
        while self.is_op("+", "-"):
            op = self.advance()
            right = self.term()
            self.count(op.pos)
            left = Binary("+" if op.text == "+" else "-", left, right, op.pos)
        return left

    def term(self) -> Expr:
        left = self.unary()
        while self.is_op("*", "/", "%"):
            op = self.advance()
            right = self.unary()
            self.count(op.pos)
            symbol: Literal["*", "/", "%"] = (
                "*" if op.text == "*" else "/" if op.text == "/" else "%"
            )
            left = Binary(symbol, left, right, op.pos)
        return left

    def unary(self) -> Expr:
        if not self.is_op("-"):
            return self.postfix()
        op = self.advance()
        self.enter(op.pos)
        operand = self.unary()
        self.leave()
        self.count(op.pos)
        return Unary("-", operand, op.pos)

    def postfix(self) -> Expr:
        node = self.primary()
        while self.is_op("["):
            bracket = self.advance()
            token = self.tok
            if token.kind != "number" or not token.text.isdigit():
                raise RuleError(
                    token.pos, "a bar index must be a non-negative integer literal, like close[1]"
                )
            self.advance()
            if self.tok.kind == "end":
                raise self.unclosed(bracket)
            self.expect_op("]", "after the bar index")
            self.count(bracket.pos)
            node = Index(node, int(token.text), bracket.pos)
        return node

    def primary(self) -> Expr:
        token = self.tok
        if token.kind == "number":
            self.advance()
            self.count(token.pos)
            return Number(number_value(token), token.pos)
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.advance()
            self.count(token.pos)
            return Bool(token.text == "true", token.pos)
        if token.kind == "name":
            self.advance()
            if self.is_op("("):
                return self.call(token)
            self.count(token.pos)
            return Name(token.text, token.pos)
        if self.is_op("("):
            self.advance()
            self.enter(token.pos)
            inner = self.or_expr()
            self.leave()
            if self.tok.kind == "end":
                raise self.unclosed(token)
            self.expect_op(")", "to close the parenthesis")
            return inner
        if token.kind == "string":
            raise RuleError(token.pos, 'strings are only allowed as keyword values, like tf="1h"')
        raise RuleError(token.pos, f"expected a value, found {token.describe()}")

    def call(self, name: Token) -> Call:
        paren = self.advance()  # "("
        self.enter(name.pos)
        args: list[Expr] = []
        kwargs: list[Keyword] = []
        while not self.is_op(")"):
            if self.tok.kind == "end":
                raise self.unclosed(paren, name.text)
            if args or kwargs:
                self.expect_op(",", "between arguments")
            start = self.tok
            if start.kind == "name" and self.tokens[self.at + 1].text == "=":
                self.advance()
                self.advance()
                if any(k.name == start.text for k in kwargs):
                    raise RuleError(start.pos, f"keyword '{start.text}' is given twice")
                value = self.keyword_value()
                self.count(start.pos)
                kwargs.append(Keyword(start.text, value, start.pos))
            else:
                if kwargs:
                    raise RuleError(start.pos, "positional argument after a keyword argument")
                args.append(self.or_expr())
        self.advance()  # ")"
        self.leave()
        self.count(name.pos)
        return Call(name.text, tuple(args), tuple(kwargs), name.pos)

    def keyword_value(self) -> Expr:
        token = self.tok
        if token.kind == "string":
            self.advance()
            self.count(token.pos)
            return String(token.text, token.pos)
        return self.or_expr()


def _compare_op(text: str) -> Literal["<", "<=", ">", ">=", "==", "!="]:
    if text == "<":
        return "<"
    if text == "<=":
        return "<="
    if text == ">":
        return ">"
    if text == ">=":
        return ">="
    if text == "==":
        return "=="
    return "!="
