"""Results are kept bitwise across refactors: θ after seeded fits (n_threads=1)
for every optimizer, estimator solver and partial_fit equals the recorded digest."""

import json

import pytest
import theta_digests

STORED = json.load(open(theta_digests.STORE))


@pytest.fixture(scope="module")
def network_digests():
    return theta_digests.network_cases()


@pytest.fixture(scope="module")
def estimator_digests():
    pytest.importorskip("sklearn")
    return theta_digests.estimator_cases()


@pytest.mark.parametrize("case", sorted(k for k in STORED if k.startswith(("net/", "loss_"))))
def test_network_results_unchanged(case, network_digests):
    assert network_digests[case] == STORED[case]


@pytest.mark.parametrize("case", sorted(k for k in STORED
                                        if not k.startswith(("net/", "loss_"))))
def test_estimator_results_unchanged(case, estimator_digests):
    assert estimator_digests[case] == STORED[case]
