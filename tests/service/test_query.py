"""The query language: parse trees, error positions, and the FTS5 compilation's negation handling."""

import pytest

from bklog.logs.query import And, Not, Or, QuerySyntaxError, Term, parse, to_fts5, to_tsquery_sql


def test_words_are_anded_and_keywords_bind():
    assert parse("error timeout") == And((Term("error"), Term("timeout")))
    assert parse("a OR b c") == Or((Term("a"), And((Term("b"), Term("c")))))
    assert parse('"connection reset" AND NOT debug') == And((Term("connection reset"), Not(Term("debug"))))
    assert parse("-debug error") == And((Not(Term("debug")), Term("error")))
    assert parse("(a OR b) c") == And((Or((Term("a"), Term("b"))), Term("c")))
    assert parse("") is None and parse("   ") is None


def test_lowercase_keywords_and_hyphenated_words_are_plain_terms():
    assert parse("and or not") == And((Term("and"), Term("or"), Term("not")))
    assert parse("x-ray") == Term("x-ray")


@pytest.mark.parametrize("query, position, reason", [
    ("(db OR", 7, "expected a term after 'OR'"),
    ("error)", 6, "unbalanced ')'"),
    ('say "hello', 5, "unterminated phrase"),
    ("(a b", 1, "missing ')'"),
    ("OR a", 1, "'OR' needs a term before it"),
    ("a AND", 6, "expected a term after 'AND'"),
    ("a NOT", 6, "expected a term after 'NOT'"),
    ("()", 2, "empty parentheses"),
    ("a ::", 3, "has no letters or digits"),
])
def test_errors_say_where(query, position, reason):
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    assert info.value.position == position
    assert reason in info.value.reason
    assert f"at position {position}" in str(info.value)


def test_fts5_negation_is_rewritten():
    assert to_fts5(parse("a")) == ('"a"', False)
    assert to_fts5(parse("NOT a")) == ('"a"', True)
    assert to_fts5(parse("a NOT b")) == ('(("a") NOT ("b"))', False)
    assert to_fts5(parse("NOT a NOT b")) == ('("a" OR "b")', True)
    assert to_fts5(parse("a OR NOT b")) == ('(("b") NOT ("a"))', True)


def test_fts5_quotes_are_escaped():
    expr, _ = to_fts5(parse('"a \\"b\\" c"'))
    assert expr == '"a ""b"" c"'


def test_tsquery_sql_is_parameterised():
    sql, params = to_tsquery_sql(parse("a OR NOT 'b"))
    assert params == ["a", "'b"]
    assert "'b" not in sql
