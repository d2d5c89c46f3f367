"""The pure rules that hold delayed messages on Pub/Sub (no emulator needed)."""

from __future__ import annotations

import pytest
from cloudq_gcp import deferral
from cloudq_gcp.deferral import Early


def test_hide_rounds_up_and_caps_at_one_ack_deadline() -> None:
    assert deferral.hide_for(0.2) == 1
    assert deferral.hide_for(2.01) == 3
    assert deferral.hide_for(10_000) == 600


def test_early_copy_is_refreshed_before_the_dead_letter_policy_could_take_it() -> None:
    assert deferral.early(attempt=1, age_s=0, max_attempts=5) is Early.HIDE
    assert deferral.early(attempt=3, age_s=0, max_attempts=5) is Early.HIDE
    assert deferral.early(attempt=4, age_s=0, max_attempts=5) is Early.REFRESH  # the 5th return would be dead


def test_early_copy_without_a_policy_is_refreshed_by_age() -> None:
    assert deferral.early(attempt=0, age_s=3600, max_attempts=0) is Early.HIDE
    assert deferral.early(attempt=0, age_s=deferral.REFRESH_AGE_S, max_attempts=0) is Early.REFRESH


def test_attribute_parsing_is_strict() -> None:
    assert deferral.not_before({deferral.NOT_BEFORE: "12.5"}) == 12.5
    assert deferral.not_before({}) is None
    assert deferral.prior({deferral.PRIOR: "3"}) == 3
    assert deferral.prior({}) == 0
    for forged in ("soon", "inf", "-inf", "nan", "1e300", "-5", ""):
        with pytest.raises(deferral.BadAttribute, match="cloudq-not-before"):
            deferral.not_before({deferral.NOT_BEFORE: forged})
    for forged in ("abc", "-1", "1.5", str(10**40), "", "\u0663"):  # the last: an Arabic-Indic digit
        with pytest.raises(deferral.BadAttribute, match="cloudq-prior"):
            deferral.prior({deferral.PRIOR: forged})
    assert deferral.timing({deferral.NOT_BEFORE: "12", deferral.PRIOR: "2"}) == (12.0, 2)
    assert (
        deferral.timing({deferral.NOT_BEFORE: "inf"}) == "cloudq-not-before 'inf' is not a time between 1970 and 9999"
    )
