"""Service account ids stay within GCP's limit (6-30 characters) for every name a stack file may
give: each role's, and each variant's worker account, however long the variant's name."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.naming import CLOUD_BASE_MAX, SERVICE_ACCOUNT_ROLES, Names
from infra.policy.rules import service_account_ids_fit

# The patterns app/settings.py accepts (name_prefix, stack, variant name).
prefixes = st.from_regex(r"^[a-z][a-z0-9]{1,9}$", fullmatch=True)
stacks = st.from_regex(r"^[a-z][a-z0-9-]{0,19}$", fullmatch=True)
variants = st.from_regex(r"^[a-z][a-z0-9-]{0,19}$", fullmatch=True)


def _fits(account_id: str) -> bool:
    return service_account_ids_fit("gcp:serviceaccount/account:Account", {"accountId": account_id}) == []


@settings(max_examples=60, deadline=None)
@given(prefixes, stacks, st.lists(variants, min_size=1, max_size=4, unique=True))
def test_every_account_id_a_valid_stack_can_name_fits(prefix: str, stack: str, names: list[str]) -> None:
    n = Names(prefix, stack)
    if len(n.base) > CLOUD_BASE_MAX:  # app.settings.cloud_problems refuses such a stack
        return
    ids = [n.service_account_id(r) for r in SERVICE_ACCOUNT_ROLES] + [n.worker_service_account_id(v) for v in names]
    assert all(_fits(i) for i in ids), ids
    # No worker account can be a role's, and a name that fits is kept as it is.
    assert not set(ids[: len(SERVICE_ACCOUNT_ROLES)]) & set(ids[len(SERVICE_ACCOUNT_ROLES) :])
    for v in names:
        if len(n.base) + 3 + len(v) <= 30 and not v.endswith("-"):
            assert n.worker_service_account_id(v) == f"{n.base}-w-{v}"


def test_a_long_variant_name_keeps_its_start_and_two_that_share_it_stay_apart() -> None:
    n = Names("rerank", "staging-euw1")
    a, b = n.worker_service_account_id("ranker-2026-long-a"), n.worker_service_account_id("ranker-2026-long-b")
    assert a != b and a.startswith("rerank-staging-euw1-w-r") and _fits(a) and _fits(b)
    assert Names("rerank", "dev").worker_service_account_id("primary") == "rerank-dev-w-primary"
    # A name ending in a hyphen (the variant pattern allows it; an id may not end so).
    assert _fits(Names("a0", "a").worker_service_account_id("a-"))


def test_the_rule_refuses_an_id_beyond_the_limit() -> None:
    assert not _fits("rerank-staging-euw1-w-ranker-2026-long-a")
    assert not _fits("ab")
