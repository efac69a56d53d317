"""Table 4's MCMC row counts the weight of chain states without a converged solve as > 6 sigma (review by
helper-83, session 21: they were dropped and the row renormalised over the rest, so a chain that sat 10 of its 11
steps on such a state read 100 % within 4 sigma)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_store import SPECIES, synthetic_flux

from crnet.evaluate.mocks import load_mocks
from crnet.features import paper_energy_grid
from crnet.store import NORM_NAMES, MockStore, RecordBatch, StoreMeta

CHI2_MIN = 350.0


def _chain_store(path, converged_start: bool) -> None:
    """One chain, steps 0..10: the start (chi2 350), step 1 accepted (chi2 360, within 4 sigma) and every later
    proposal rejected (chi2 2000), so the chain holds the step-1 state for 10 of its 11 steps."""
    e = paper_energy_grid()
    p = np.tile([5.0, 0.5, 1.0, 20.0, 5.0, 1.0, 2.3, 2.3, 1e3, 1e6], (11, 1))
    accepted = np.zeros(11, dtype=bool)
    accepted[[0, 1]] = True
    converged = np.ones(11, dtype=bool)
    converged[1] = False  # the state the chain holds did not converge
    converged[0] = converged_start
    chi2 = np.full(11, 2000.0)
    chi2[[0, 1]] = [CHI2_MIN, 360.0]
    meta = StoreMeta(species=list(SPECIES), ekin_gev_per_n=e, grid={"synthetic": True}, cross_sections="none",
                     solver_mode="analytic", backend="numpy", design="mcmc", dataset="paper", temperature=10.0,
                     seed=0)
    with MockStore.create(path, meta, capacity=11) as st:
        st.append_batch(RecordBatch(params=p, norms=np.ones((11, len(NORM_NAMES))),
                                    flux=synthetic_flux(p, e).astype(np.float32), chi2=chi2,
                                    chain=np.zeros(11, dtype=int), step=np.arange(11), accepted=accepted,
                                    converged=converged, residual=np.zeros(11)))


def test_the_weight_of_an_unconverged_chain_state_counts_beyond_6_sigma(tmp_path) -> None:
    path = tmp_path / "chain.h5"
    _chain_store(path, converged_start=True)
    mocks = load_mocks([str(path)])
    assert mocks.chi2.size == 10 and mocks.weights.sum() == 1.0  # the converged records: only the start has weight
    np.testing.assert_array_equal(mocks.unconverged_weights, [10.0])
    row = mocks.mcmc_row(CHI2_MIN)
    assert row["le_4sigma"] == pytest.approx(1 / 11) and row["gt_6sigma"] == pytest.approx(10 / 11)
    assert row["n"] == 2 and row["weight_sum"] == 11.0


def test_a_chain_of_unconverged_states_alone_still_gives_a_row(tmp_path) -> None:
    path = tmp_path / "chain.h5"
    _chain_store(path, converged_start=False)
    row = load_mocks([str(path)]).mcmc_row(CHI2_MIN)
    assert row["gt_6sigma"] == 1.0 and row["weight_sum"] == 11.0


def test_unconverged_design_points_count_beyond_6_sigma_in_the_design_row(tmp_path) -> None:
    from helpers_store import write_synthetic_store

    path = tmp_path / "design.h5"
    write_synthetic_store(path, 10, seed=1, n_unconverged=5)
    mocks = load_mocks([str(path)])
    assert not mocks.from_chains and mocks.chi2.size == 5
    np.testing.assert_array_equal(mocks.unconverged_weights, np.ones(5))
    row = mocks.mcmc_row(float(mocks.chi2.min()))
    assert row["gt_6sigma"] >= 0.5 and row["weight_sum"] == 10.0 and row["n"] == 10
