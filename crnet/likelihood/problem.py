"""One data set's geometry, and the normalised residuals of models at given force-field potentials."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from crnet.data import Dataset
from crnet.likelihood.interpolation import subset_species
from crnet.likelihood.normalisation import RATIO_PARAMETERS, profile_normalisations
from crnet.likelihood.prediction import BlockPrediction
from crprop.spectra import ForceField, Spectra


class Problem:
    """Data-set geometry shared by all phi values: per-block targets and the species grouping."""

    def __init__(
        self,
        spectra: Spectra,
        dataset: Dataset,
        bounds: Mapping[str, tuple[float, float]],
        profile: bool,
        interpolation: str,
    ) -> None:
        self.dataset, self.profile = dataset, profile
        self.spectra = subset_species(spectra, dataset.species)
        # normalisations act per element: an isotope block ('10Be') shares its element's scale
        self.element = {sp: sp.lstrip("0123456789") for sp in dataset.species}
        self.groups = list(dict.fromkeys(self.element.values()))
        self.ratio_species = [el for el in RATIO_PARAMETERS if el in self.groups]
        self.lo = np.array([bounds[RATIO_PARAMETERS[sp]][0] for sp in self.ratio_species])
        self.hi = np.array([bounds[RATIO_PARAMETERS[sp]][1] for sp in self.ratio_species])
        self.period = [dataset.period_of(b) for b in dataset.blocks]
        # Per-block constants, computed once: solve() runs ~10^2 times per model while phi is profiled. The weights
        # are the same 1 / sigma^2 arrays solve() used to build per call, so its sums are bit for bit the same; the
        # product flux * w is not cached, as m * (flux * w) rounds differently from the (m * flux) * w summed there.
        self.sigma = [b.sigma for b in dataset.blocks]
        self.weight = [1.0 / sigma**2 for sigma in self.sigma]
        self.block_element = [self.element[b.species] for b in dataset.blocks]
        self.free_species = [el for el in self.groups if el not in self.ratio_species]
        self.block_starts = np.cumsum([0] + [b.flux.size for b in dataset.blocks[:-1]])
        # each period modulates only the species it measures (ACE-CRIS C, O need not drag Li-Be-B along)
        self.period_spectra = {
            key: subset_species(self.spectra, list(dict.fromkeys(b.species for b, k in zip(dataset.blocks, self.period,
                                                                                     strict=True) if k == key)))
            for key in dataset.periods
        }
        # each block's prediction, for the isotope layout of the spectra it reads (LIS or its period's)
        self.predictions = []
        for i, b in enumerate(dataset.blocks):
            sp = self.spectra if b.lis else self.period_spectra[self.period[i]]
            self.predictions.append(BlockPrediction(b, sp.ekin_gev_per_n, sp.iso_z, sp.iso_a, interpolation))
        self.lis_model = {i: self.predictions[i](self.spectra) for i, b in enumerate(dataset.blocks) if b.lis}
        # per period: the force field of its LIS (log E^2 J taken once), its top-of-atmosphere blocks, and a cache of
        # those blocks' predictions per model at the phi (MV) each model was last evaluated at (NaN: never). A search
        # over one period's phi reuses the other periods' predictions; models stay in the cache when the batch of
        # still-active models shrinks.
        self.force_field = {key: ForceField(sp.ekin_gev_per_n, sp.iso_z, sp.iso_a, sp.iso_flux)
                            for key, sp in self.period_spectra.items()}
        self.toa_blocks = {key: [i for i, b in enumerate(dataset.blocks) if not b.lis and self.period[i] == key]
                           for key in dataset.periods}
        # each period is modulated only on the energies its blocks interpolate between (log-log: the nodes either
        # side of each data energy; ACE-CRIS 2009 needs 7 of 84, AMS-02 39; 'cubic': all), and its blocks predict
        # from that sub-grid: same nodes and weights, so the same numbers, at a fraction of the force-field cost
        self.toa_energies: dict[str, slice] = {}
        for key, blocks in self.toa_blocks.items():
            nodes = np.concatenate([self.predictions[i].nodes for i in blocks])  # every period has a block (Dataset)
            cols = slice(int(nodes.min()), int(nodes.max()) + 1)
            self.toa_energies[key] = cols
            sp = self.period_spectra[key]
            for i in blocks:
                self.predictions[i] = BlockPrediction(dataset.blocks[i], sp.ekin_gev_per_n[cols], sp.iso_z, sp.iso_a,
                                                      interpolation)
        n_all = self.spectra.n_models
        self._cached_phi = {key: np.full(n_all, np.nan) for key in dataset.periods}
        self._cached_pred = {key: [np.empty((n_all, dataset.blocks[i].flux.size)) for i in blocks]
                             for key, blocks in self.toa_blocks.items()}

    def solve(
        self, models: np.ndarray, phi_mv: Mapping[str, float | np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(normalised residuals (n, n_points), q (n,), ratios (n, K)) for the given models (indices into the
        spectra) at their force-field potentials: {period: MV}, a float for all the models or an (n,) array with
        one phi per model; None for LIS-only data sets. :meth:`per_block` turns the residuals into chi2 per
        block."""
        models = np.asarray(models)
        n = models.size
        preds: list[np.ndarray | None] = [self.lis_model[i][models] if b.lis else None
                                          for i, b in enumerate(self.dataset.blocks)]
        if self.dataset.needs_modulation:
            for key, phi in (phi_mv or {}).items():
                each = np.broadcast_to(np.asarray(phi, dtype=np.float64), (n,))
                for i, pred in zip(self.toa_blocks[key], self._toa_predictions(key, models, each), strict=True):
                    preds[i] = pred
        unset = [b.label for b, pred in zip(self.dataset.blocks, preds, strict=True) if pred is None]
        if unset:
            raise ValueError(f"no phi given for the period of the top-of-atmosphere block(s) {unset}")
        a = {el: np.zeros(n) for el in self.groups}
        b = {el: np.zeros(n) for el in self.groups}
        for block, el, w, m in zip(self.dataset.blocks, self.block_element, self.weight, preds, strict=True):
            a[el] += (m * m * w).sum(axis=1)
            b[el] += (m * block.flux * w).sum(axis=1)
        if self.profile:
            a_free = sum((a[sp] for sp in self.free_species), np.zeros(n))
            b_free = sum((b[sp] for sp in self.free_species), np.zeros(n))
            a_r = (
                np.stack([a[sp] for sp in self.ratio_species], axis=1)
                if self.ratio_species
                else np.zeros((n, 0))
            )
            b_r = (
                np.stack([b[sp] for sp in self.ratio_species], axis=1)
                if self.ratio_species
                else np.zeros((n, 0))
            )
            # A model with no flux where a bounded species has data (a_k = 0), or a non-finite flux, cannot be
            # normalised: its chi^2 is +inf (below), without failing the other models of the batch.
            ok = np.all(a_r > 0, axis=1) & np.isfinite(a_free) & np.isfinite(b_free)
            ok &= np.all(np.isfinite(a_r) & np.isfinite(b_r), axis=1)
            q, r = np.zeros(n), np.ones((n, len(self.ratio_species)))
            if ok.any():
                q[ok], r[ok] = profile_normalisations(a_free[ok], b_free[ok], a_r[ok], b_r[ok], self.lo, self.hi)
        else:
            q, r = np.ones(n), np.ones((n, len(self.ratio_species)))
        scale = {el: q for el in self.groups}
        scale.update({el: q * r[:, j] for j, el in enumerate(self.ratio_species)})
        res = [(scale[el][:, None] * m - blk.flux) / sigma
               for blk, el, sigma, m in zip(self.dataset.blocks, self.block_element, self.sigma, preds, strict=True)]
        res = np.concatenate(res, axis=1)
        bad = ~np.all(np.isfinite(res), axis=1)
        if self.profile:
            bad |= ~ok
        res[bad] = np.inf  # chi^2 = inf for a model that cannot be compared (see above), never NaN
        return res, q, r

    def _toa_predictions(self, key: str, models: np.ndarray, phi_mv: np.ndarray) -> list[np.ndarray]:
        """(n, n_points) prediction of each top-of-atmosphere block of period ``key`` (``toa_blocks[key]``) for
        ``models`` at phi ``phi_mv`` ((n,) MV); a model is modulated anew only if its phi differs from its cached
        one."""
        cached = self._cached_pred[key]
        new = self._cached_phi[key][models] != phi_mv  # NaN (never evaluated) differs from every phi
        if not new.any():
            return [c[models] for c in cached]
        out = [c[models] for c in cached]  # copies; a repeated model index is computed per occurrence
        flux = self.force_field[key](phi_mv[new], models[new], self.toa_energies[key])
        for c, o, i in zip(cached, out, self.toa_blocks[key], strict=True):
            o[new] = c[models[new]] = self.predictions[i].predict(flux)
        self._cached_phi[key][models[new]] = phi_mv[new]
        return out

    def total(self, models: np.ndarray, phi_mv: Mapping[str, float | np.ndarray] | None) -> np.ndarray:
        """(n,) chi2_tot of the given models at their phi per period (as :meth:`solve`; profiled
        normalisations)."""
        return np.square(self.solve(models, phi_mv)[0]).sum(axis=1)

    def per_block(self, residuals: np.ndarray) -> np.ndarray:
        """(n, n_blocks) chi2 of each data block from (n, n_points) residuals."""
        return np.add.reduceat(residuals * residuals, self.block_starts, axis=1)
