"""Results are kept bitwise across refactors: θ after seeded fits (n_threads=1)
for every optimizer, estimator solver and partial_fit equals the digest
recorded for this BLAS kernel and kernel level (see theta_digests.py)."""

import pytest
import theta_digests

CONFIG = theta_digests.configuration()
STORE = theta_digests.stored()
# Every case has a digest in every configuration: the names come from any one.
CASES = sorted(next(iter(STORE.values())))
if CONFIG not in STORE:
    pytest.skip(f"no θ digests recorded for the kernels {CONFIG} (recorded: "
                f"{', '.join(sorted(STORE))}); record them from a known-good tree with "
                "`python tests/theta_digests.py --write`", allow_module_level=True)
STORED = STORE[CONFIG]


@pytest.fixture(scope="module")
def network_digests():
    return theta_digests.network_cases()


@pytest.fixture(scope="module")
def estimator_digests():
    pytest.importorskip("sklearn")
    return theta_digests.estimator_cases()


def test_every_configuration_has_every_case():
    for config, digests in STORE.items():
        assert sorted(digests) == CASES, config


@pytest.mark.parametrize("case", [k for k in CASES if k.startswith(("net/", "loss_"))])
def test_network_results_unchanged(case, network_digests):
    assert network_digests[case] == STORED[case]


@pytest.mark.parametrize("case", [k for k in CASES if not k.startswith(("net/", "loss_"))])
def test_estimator_results_unchanged(case, estimator_digests):
    assert estimator_digests[case] == STORED[case]
