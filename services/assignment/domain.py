"""Grading rules, without I/O: keyword score, late penalty, plagiarism."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

WORD = re.compile(r"\w+", re.UNICODE)
SHINGLE = 5
FLAG_AT = 0.8
LATE_PENALTY = 0.10


def words(text: str) -> list[str]:
    return [w.casefold() for w in WORD.findall(text)]


def keyword_score(content: str, keywords: list[str], max_score: int) -> float:
    """The share of keywords present as whole words (case-insensitive), times max_score.
    An assignment without keywords asks for nothing, so any submission gets full marks."""
    if not keywords:
        return float(max_score)
    present = set(words(content))
    found = sum(1 for k in keywords if k.casefold() in present)
    return max_score * found / len(keywords)


def is_late(received_at: datetime, due_at: datetime | None) -> bool:
    return due_at is not None and received_at > due_at


def final_score(content: str, keywords: list[str], max_score: int, received_at: datetime,
                due_at: datetime | None) -> float:
    score = keyword_score(content, keywords, max_score)
    if is_late(received_at, due_at):
        score *= 1 - LATE_PENALTY
    return round(score, 2)


def shingles(text: str, size: int = SHINGLE) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than n words is one shingle of all its words."""
    tokens = words(text)
    if len(tokens) < size:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def plagiarism_score(content: str, others: Iterable[str]) -> float:
    """The highest Jaccard similarity of word 5-shingles against the other texts."""
    mine = shingles(content)
    return round(max((jaccard(mine, shingles(other)) for other in others), default=0.0), 4)


def flagged(score: float) -> bool:
    return score >= FLAG_AT
