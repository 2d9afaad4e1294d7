"""The search query language, parsed once and compiled per index backend.

    error timeout                 both words (AND is implied between terms)
    "connection reset"            a phrase
    error AND (db OR redis)       AND, OR, NOT in capitals; parentheses group
    error NOT debug  /  -debug    exclusion

Parse errors carry the 1-based character position so the API can say where a query is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD_CHARS = re.compile(r"\w", re.UNICODE)
MAX_QUERY_LENGTH = 2000
MAX_TERMS = 64
MAX_DEPTH = 16  # parentheses and NOTs inside one another: the parser and compilers recurse


class QuerySyntaxError(ValueError):
    def __init__(self, message: str, position: int):
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position


@dataclass(frozen=True)
class Term:
    text: str  # a word or a phrase: both match their words in sequence


@dataclass(frozen=True)
class And:
    children: tuple


@dataclass(frozen=True)
class Or:
    children: tuple


@dataclass(frozen=True)
class Not:
    child: object


@dataclass
class _Token:
    kind: str  # WORD PHRASE AND OR NOT LPAREN RPAREN MINUS
    text: str
    position: int  # 1-based


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            tokens.append(_Token("LPAREN", ch, i + 1))
            i += 1
        elif ch == ")":
            tokens.append(_Token("RPAREN", ch, i + 1))
            i += 1
        elif ch == '"':
            start = i
            i += 1
            buf = []
            while i < n and query[i] != '"':
                if query[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(query[i])
                i += 1
            if i >= n:
                raise QuerySyntaxError("unterminated phrase (missing closing \")", start + 1)
            i += 1
            tokens.append(_Token("PHRASE", "".join(buf), start + 1))
        elif ch == "-" and (i + 1 < n and not query[i + 1].isspace()) and (not tokens or tokens[-1].kind != "WORD" or query[i - 1].isspace()):
            tokens.append(_Token("MINUS", ch, i + 1))
            i += 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '()"':
                i += 1
            word = query[start:i]
            kind = word if word in ("AND", "OR", "NOT") else "WORD"
            tokens.append(_Token(kind, word, start + 1))
    return tokens


class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.tokens = _tokenize(query)
        self.pos = 0
        self.terms = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def end_position(self) -> int:
        return len(self.query) + 1

    def parse(self):
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:
            if tok.kind == "RPAREN":
                raise QuerySyntaxError("unbalanced ')'", tok.position)
            raise QuerySyntaxError(f"unexpected {tok.text!r}", tok.position)
        return node

    def parse_or(self):
        children = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.pos += 1
            children.append(self.parse_and(after=tok))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self, after: _Token | None = None):
        children = [self.parse_unary(after)]
        while (tok := self.peek()) is not None and tok.kind not in ("OR", "RPAREN"):
            if tok.kind == "AND":
                self.pos += 1
                children.append(self.parse_unary(after=tok))
            else:
                children.append(self.parse_unary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_unary(self, after: _Token | None = None):
        tok = self.peek()
        if tok is None:
            if after is not None:
                raise QuerySyntaxError(f"expected a term after {after.text!r}", self.end_position())
            raise QuerySyntaxError("expected a term", self.end_position())
        if tok.kind in ("NOT", "MINUS", "LPAREN"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QuerySyntaxError(f"more than {MAX_DEPTH} levels of parentheses and NOT", tok.position)
            try:
                return self._nested(tok)
            finally:
                self.depth -= 1
        if tok.kind in ("WORD", "PHRASE"):
            self.pos += 1
            if not _WORD_CHARS.search(tok.text):
                what = "phrase" if tok.kind == "PHRASE" else "term"
                raise QuerySyntaxError(f"{what} {tok.text!r} has no letters or digits to search for", tok.position)
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise QuerySyntaxError(f"more than {MAX_TERMS} terms", tok.position)
            return Term(tok.text)
        if tok.kind in ("AND", "OR"):
            if after is not None:
                raise QuerySyntaxError(f"expected a term after {after.text!r}, found {tok.text!r}", tok.position)
            raise QuerySyntaxError(f"{tok.text!r} needs a term before it", tok.position)
        raise QuerySyntaxError(f"unexpected {tok.text!r}", tok.position)

    def _nested(self, tok: _Token):
        self.pos += 1
        if tok.kind in ("NOT", "MINUS"):
            return Not(self.parse_unary(after=tok))
        if (inner := self.peek()) is not None and inner.kind == "RPAREN":
            raise QuerySyntaxError("empty parentheses", inner.position)
        node = self.parse_or()
        close = self.peek()
        if close is None or close.kind != "RPAREN":
            raise QuerySyntaxError("missing ')' for '(' opened", tok.position)
        self.pos += 1
        return node


def parse(query: str):
    """Parse a query; an empty query returns None (match everything)."""
    if len(query) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"query longer than {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH + 1)
    if not query.strip():
        return None
    return _Parser(query).parse()


# --- SQLite FTS5 -------------------------------------------------------------------------
# FTS5's NOT is binary ("a NOT b"), so a node compiles to (expression, negated): negated means
# "every line except those matching expression". De Morgan keeps every query expressible.

def _fts5_quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def to_fts5(node) -> tuple[str, bool]:
    if isinstance(node, Term):
        return _fts5_quote(node.text), False
    if isinstance(node, Not):
        expr, negated = to_fts5(node.child)
        return expr, not negated
    parts = [to_fts5(child) for child in node.children]
    positives = [expr for expr, neg in parts if not neg]
    negatives = [expr for expr, neg in parts if neg]
    if isinstance(node, And):
        # P1 AND P2 AND NOT N1 AND NOT N2  ==  (P1 AND P2) NOT (N1 OR N2)
        if not positives:
            return "(" + " OR ".join(negatives) + ")", True
        expr = "(" + " AND ".join(positives) + ")"
        if negatives:
            expr = f"({expr} NOT ({' OR '.join(negatives)}))"
        return expr, False
    # P1 OR P2 OR NOT N1 OR NOT N2  ==  NOT ((N1 AND N2) NOT (P1 OR P2))
    if not negatives:
        return "(" + " OR ".join(positives) + ")", False
    expr = "(" + " AND ".join(negatives) + ")"
    if positives:
        expr = f"({expr} NOT ({' OR '.join(positives)}))"
    return expr, True


# --- PostgreSQL --------------------------------------------------------------------------

def to_tsquery_sql(node) -> tuple[str, list[str]]:
    """SQL for a tsquery (the 'simple' configuration, as the GIN index uses) and its params."""
    if isinstance(node, Term):
        return "phraseto_tsquery('simple', %s)", [node.text]
    if isinstance(node, Not):
        sql, params = to_tsquery_sql(node.child)
        return f"(!! {sql})", params
    op = " && " if isinstance(node, And) else " || "
    sqls, params = [], []
    for child in node.children:
        sql, child_params = to_tsquery_sql(child)
        sqls.append(sql)
        params.extend(child_params)
    return "(" + op.join(sqls) + ")", params
