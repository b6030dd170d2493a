"""Grading rules: keywords as whole words, the late penalty, 5-shingle Jaccard plagiarism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.assignment import domain

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def test_keywords_count_as_whole_words_in_any_case() -> None:
    keywords = ["queue", "FIFO", "group", "order"]
    assert domain.keyword_score("A Queue keeps fifo order", keywords, 100) == 75
    assert domain.keyword_score("queues are disordered", keywords, 100) == 0
    assert domain.keyword_score("anything", [], 10) == 10


def test_late_submissions_lose_ten_percent() -> None:
    keywords, text = ["queue"], "a queue"
    assert domain.final_score(text, keywords, 50, NOW, NOW + timedelta(hours=1)) == 50
    assert domain.final_score(text, keywords, 50, NOW, NOW - timedelta(seconds=1)) == 45
    assert domain.final_score(text, keywords, 50, NOW, None) == 50


def test_plagiarism_is_the_highest_jaccard_of_five_shingles() -> None:
    essay = "the quick brown fox jumps over the lazy dog every single day"
    assert domain.plagiarism_score(essay, [essay.upper()]) == 1.0
    assert domain.plagiarism_score(essay, []) == 0.0
    half = "the quick brown fox jumps over a sleepy cat"
    score = domain.plagiarism_score(essay, ["nothing alike at all here", half])
    assert 0 < score < domain.FLAG_AT
    assert domain.flagged(domain.FLAG_AT) and not domain.flagged(0.79)


def test_short_texts_are_one_shingle() -> None:
    assert domain.shingles("Hello there") == {("hello", "there")}
    assert domain.shingles("") == set()
    assert domain.plagiarism_score("hello there", ["Hello, there!"]) == 1.0
