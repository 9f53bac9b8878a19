"""QRS filter language: tokenizer, recursive-descent parser and evaluator.

    expr       := and_expr ("or" and_expr)*
    and_expr   := primary ("and" primary)*
    primary    := "(" expr ")" | comparison
    comparison := PATH OP value
    value      := 'quoted string' ('' escapes a quote) | true | false | null | number | bare word

Property paths are dotted and case-insensitive. String comparisons ignore case.
A path that runs through null (stream.name of an unpublished app) is null:
`eq` is false, `ne` is true, every other operator false.
A list on the path (tags.name) matches when any element matches.
"""
import re

OPS = ("eq", "ne", "gt", "ge", "lt", "le", "sw", "ew", "so")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class FilterError(ValueError):
    pass


def tokenize(text):
    """Tokens: ("(",), (")",), ("str", s), ("word", w)."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append((ch, ch))
            i += 1
        elif ch == "'":
            i, value = _read_quoted(text, i + 1)
            tokens.append(("str", value))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "()'":
                i += 1
            tokens.append(("word", text[start:i]))
    return tokens


def _read_quoted(text, i):
    out = []
    while i < len(text):
        if text[i] == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return i + 1, "".join(out)
        out.append(text[i])
        i += 1
    raise FilterError("unterminated string literal")


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        if tok[0] is None:
            raise FilterError("unexpected end of filter")
        self.pos += 1
        return tok

    def keyword(self, word):
        kind, value = self.peek()
        if kind == "word" and value.lower() == word:
            self.pos += 1
            return True
        return False

    def expr(self):
        node = self.and_expr()
        while self.keyword("or"):
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self):
        node = self.primary()
        while self.keyword("and"):
            node = ("and", node, self.primary())
        return node

    def primary(self):
        kind, value = self.take()
        if kind == "(":
            node = self.expr()
            if self.take()[0] != ")":
                raise FilterError("expected ')'")
            return node
        if kind != "word" or not _PATH.match(value):
            raise FilterError(f"expected a property name, got {value!r}")
        op_kind, op = self.take()
        if op_kind != "word" or op.lower() not in OPS:
            raise FilterError(f"unknown operator {op!r}")
        return ("cmp", value.lower().split("."), op.lower(), self.value())

    def value(self):
        kind, value = self.take()
        if kind == "str":
            return value
        if kind != "word":
            raise FilterError(f"expected a value, got {value!r}")
        low = value.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        if _NUMBER.match(value):
            return float(value)
        return value


def parse(text):
    """Parse a filter into a tree; FilterError on malformed input."""
    tokens = tokenize(text)
    if not tokens:
        raise FilterError("empty filter")
    parser = _Parser(tokens)
    tree = parser.expr()
    if parser.pos != len(tokens):
        raise FilterError(f"unexpected token {tokens[parser.pos][1]!r}")
    return tree


def first_segments(tree):
    """Every top-level property name used by the filter (for validation)."""
    if tree[0] == "cmp":
        return {tree[1][0]}
    return first_segments(tree[1]) | first_segments(tree[2])


def lookup(obj, segments):
    """Values at a dotted path (several when the path crosses lists)."""
    values = [obj]
    for seg in segments:
        nxt = []
        for value in values:
            if isinstance(value, list):
                value_items = value
            else:
                value_items = [value]
            for item in value_items:
                if isinstance(item, dict):
                    key = next((k for k in item if k.lower() == seg), None)
                    nxt.append(item[key] if key is not None else None)
                else:
                    nxt.append(None)
        values = nxt
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return flat or [None]


def _compare(actual, op, want):
    if want is None or actual is None:
        same = actual is None and want is None
        return same if op == "eq" else (not same if op == "ne" else False)
    if isinstance(actual, bool) or isinstance(want, bool):
        a, w = str(actual).lower(), str(want).lower()
    elif isinstance(actual, (int, float)) and isinstance(want, float):
        a, w = float(actual), want
    else:
        a, w = _text(actual), _text(want)
    return {"eq": a == w, "ne": a != w, "gt": a > w, "ge": a >= w, "lt": a < w, "le": a <= w,
            "sw": str(a).startswith(str(w)), "ew": str(a).endswith(str(w)),
            "so": str(w) in str(a)}[op]


def _text(value):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).lower()


def evaluate(tree, obj):
    kind = tree[0]
    if kind == "and":
        return evaluate(tree[1], obj) and evaluate(tree[2], obj)
    if kind == "or":
        return evaluate(tree[1], obj) or evaluate(tree[2], obj)
    _, path, op, want = tree
    values = lookup(obj, path)
    if op == "ne":
        return all(_compare(v, "ne", want) for v in values)
    return any(_compare(v, op, want) for v in values)
