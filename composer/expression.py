"""Task-arithmetic expressions such as "0.7*ns/a:3 + 0.5*ns/b - 0.3*./local/c", parsed without eval.

Grammar (a linear combination; products of two adapters or constant terms are errors):

    expression := term (("+" | "-") term)*
    term       := factor ("*" factor)*
    factor     := ("+" | "-") factor | NUMBER | REFERENCE | "(" expression ")"

A REFERENCE is any run of characters other than whitespace, "*", "+", "(", ")" and ",", that is
not a number and does not start with "-": `ns/name`, `ns/name:3`, `ns/name:v1.2`, `my-lora`,
`/abs/path`, `./rel/path`. Because "-" and "/" may appear inside references, write the binary
minus with spaces ("a - b"), and there is no division: "a/2" is the reference "a/2".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from composer.errors import CompositionError

_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_REFERENCE_CHAR = re.compile(r"[^\s*+(),]")
_MAX_LENGTH = 10_000
# Parentheses and unary signs nest this deep at most: deeper ones would exhaust Python's stack.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "reference", or the operator character itself
    text: str
    position: int


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(expression):
        char = expression[i]
        if char.isspace():
            i += 1
        elif char in "*+()-":
            tokens.append(_Token(char, char, i))
            i += 1
        elif char == ",":
            raise _error(expression, i, "unexpected ','")
        else:
            start = i
            while i < len(expression) and _REFERENCE_CHAR.match(expression[i]):
                i += 1
            word = expression[start:i]
            kind = "number" if _NUMBER.fullmatch(word) else "reference"
            tokens.append(_Token(kind, word, start))
    return tokens


# A parsed sub-expression is a linear combination: {reference: weight} plus a constant.
_Combination = tuple[dict[str, float], float]


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.index = 0
        self.depth = 0  # of nested factors: parentheses and signs recurse

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _error(self.expression, len(self.expression), "expression ends too early")
        self.index += 1
        return token

    def parse(self) -> dict[str, float]:
        if not self.tokens:
            raise CompositionError("bad_expression", "the expression is empty")
        terms, constant = self.expression_()
        leftover = self.peek()
        if leftover is not None:
            raise _error(self.expression, leftover.position, f"unexpected {leftover.text!r}")
        if constant != 0.0:
            raise CompositionError("bad_expression", f"the expression adds a constant ({constant:g}) to adapters")
        if not terms:
            raise CompositionError("bad_expression", "the expression names no adapter")
        return terms

    def expression_(self) -> _Combination:
        terms, constant = self.term()
        while (token := self.peek()) is not None and token.kind in "+-":
            self.take()
            sign = 1.0 if token.kind == "+" else -1.0
            other_terms, other_constant = self.term()
            for reference, weight in other_terms.items():
                terms[reference] = terms.get(reference, 0.0) + sign * weight
            constant += sign * other_constant
        return terms, constant

    def term(self) -> _Combination:
        terms, constant = self.factor()
        while (token := self.peek()) is not None and token.kind == "*":
            self.take()
            other_terms, other_constant = self.factor()
            if terms and other_terms:
                raise _error(self.expression, token.position, "two adapters cannot be multiplied")
            if other_terms:
                terms, constant, other_constant = other_terms, other_constant, constant
            terms = {reference: weight * other_constant for reference, weight in terms.items()}
            constant *= other_constant
        return terms, constant

    def factor(self) -> _Combination:
        token = self.take()
        self.depth += 1
        try:
            return self._factor(token)
        finally:
            self.depth -= 1

    def _factor(self, token: _Token) -> _Combination:
        if self.depth > _MAX_DEPTH:
            raise _error(self.expression, token.position, f"the expression nests more than {_MAX_DEPTH} levels deep")
        if token.kind in "+-":
            terms, constant = self.factor()
            sign = 1.0 if token.kind == "+" else -1.0
            return {reference: sign * weight for reference, weight in terms.items()}, sign * constant
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise _error(self.expression, token.position, f"{token.text} is not a finite number")
            return {}, value
        if token.kind == "reference":
            return {token.text: 1.0}, 0.0
        if token.kind == "(":
            inner = self.expression_()
            closing = self.take()
            if closing.kind != ")":
                raise _error(self.expression, closing.position, "expected ')'")
            return inner
        raise _error(self.expression, token.position, f"unexpected {token.text!r}")


def _error(expression: str, position: int, message: str) -> CompositionError:
    return CompositionError("bad_expression", f"{message} at character {position + 1} of {expression!r}")


def parse_expression(expression: str) -> list[tuple[str, float]]:
    """The (reference, weight) pairs of an arithmetic expression, without resolving any reference.

    Repeated references are summed ("a - a" gives [("a", 0.0)]); the order is that of first
    appearance. Raises `CompositionError("bad_expression")` with the position of the problem.

    >>> parse_expression("0.7*ns/a:3 + 0.5*(b - 0.6*c)")
    [('ns/a:3', 0.7), ('b', 0.5), ('c', -0.3)]
    """
    if not isinstance(expression, str):
        raise CompositionError("bad_expression", "the expression must be a string")
    if len(expression) > _MAX_LENGTH:
        raise CompositionError("bad_expression", f"the expression is longer than {_MAX_LENGTH} characters")
    terms = _Parser(expression).parse()
    return [(reference, round(weight, 12)) for reference, weight in terms.items()]
