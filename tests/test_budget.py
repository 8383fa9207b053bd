from __future__ import annotations

import pytest

from ghostsearch import ConfigError, parse_budget
from ghostsearch.arch.budget import format_flops


@pytest.mark.parametrize(
    "text, flops",
    [
        ("200MFLOPs", 200_000_000),
        ("200M", 200_000_000),
        ("200 MFLOPs", 200_000_000),
        ("0.2GFLOPs", 200_000_000),
        ("200e6", 200_000_000),
        ("150MMACs", 150_000_000),
        ("1.5GFLOPs", 1_500_000_000),
        ("600k", 600_000),
        ("42.3mflops", 42_300_000),
        (141150512, 141_150_512),
    ],
)
def test_parse_budget_accepts(text, flops):
    assert parse_budget(text) == flops


@pytest.mark.parametrize(
    "text, message",
    [
        ("abc", "budget 'abc': not a number of FLOPs"),
        ("0", "budget '0': must be a positive number of FLOPs"),
        ("-5M", "budget '-5M': must be a positive number of FLOPs"),
        ("200MB", "budget '200MB': unit 'MB' is not FLOPs or MACs"),
        ("", "budget '': not a number of FLOPs"),
        ("0.1", "budget '0.1': under one FLOP"),
        ("inf", "budget 'inf': not a number of FLOPs"),
    ],
)
def test_parse_budget_refuses(text, message):
    with pytest.raises(ConfigError) as e:
        parse_budget(text)
    assert str(e.value).startswith(message)
    assert "e.g. 200MFLOPs" in str(e.value) and "\n" not in str(e.value)


def test_format_flops():
    assert format_flops(141_150_512) == "141.15M"
    assert format_flops(1_500_000_000) == "1.50G"


@pytest.mark.parametrize("text, value", [("200MFLOP", 200_000_000), ("150MMAC", 150_000_000),
                                         ("0.2GFLOP", 200_000_000), ("1MMAdd", 1_000_000)])
def test_singular_units_are_accepted(text, value):
    assert parse_budget(text) == value
