"""How much would averaging the model over each data bin change crnet's predictions and chi^2?

crnet's likelihood (crnet.likelihood.prediction.BlockPrediction) evaluates the model at each point's representative
energy x_rep (log-log interpolation of the model grid), never as the bin average (1/(x_high - x_low)) * integral of
m(x) dx over [x_low, x_high]. A measured flux is a bin average (events / bin width / exposure), so this script
measures the difference for a realistic model:

* model: GALPROP v54 ``--run`` (default crml_base, the CR-ML galdef of the paper) from ../shared/reference/galprop,
  its LIS read by crprop.galprop.compare.load_run; top-of-atmosphere blocks are modulated with crnet's force field
  (Spectra.modulate = crprop.spectra.ForceField) at the data set's reference phi (``Modulation.phi_mv``; 650 MV for
  AMS-02 2011-18) unless ``--phi`` is given; interstellar blocks (Voyager 1) are not modulated.
* model in the data's own variable: through crnet's own prediction path. A probe DataBlock of the block's species,
  x variable and A_eff is built at the quadrature nodes and BlockPrediction evaluates it (for rigidity blocks: the
  isotope-by-isotope sum  f(R) sum_i J_i(E_i(R)) dE_i/dR); dividing by the data's factor f = 1/(dE_kn/dR) at A_eff
  gives the flux per GV. The probe is checked to reproduce BlockPrediction of the real block at x_rep (rel. 1e-12).
* bin average: Gauss-Legendre in log x with ``--nodes`` nodes per bin (integral of m(x) x dln x / (x_high - x_low)),
  convergence checked against twice the nodes.
* ratios (``--ratios``; crnet's data sets hold none, so AMS-02 B/C of ../shared/data is added for scale): the
  bin-averaged ratio is bin-average(numerator flux) / bin-average(denominator flux), each per GV.
* chi^2 = sum ((D - M) / sigma)^2 with the data's own values and sigma = stat (+) sys (symmetrised, in quadrature),
  the model as given (no normalisation or phi profiling), point M = m(x_rep) vs averaged M = <m>_bin;
  Delta chi^2 = chi^2(avg) - chi^2(point). sum pull^2 = sum ((<m> - m(x_rep)) / sigma)^2 is the Delta chi^2 a model
  that fitted the data exactly at x_rep would get (independent of how well crml_base fits).

Blocks whose table has no bin edges (the CR-ML 'paper' arrays, ACE-CRIS) are listed as "no edges".

    python benchmarks/bin_average_effect.py
Writes benchmarks/results/bin_average_effect.{json,md} (``--stem``, ``--out-dir``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from common import galprop_reference_dir, save_results, shared_dir

from crnet.data import DataBlock, Dataset, get_dataset, read_table
from crnet.data.kinematics import convert_x_to_ekn, effective_mass_number
from crnet.data.registry import DATASETS
from crnet.likelihood import chi2
from crnet.likelihood.prediction import BlockPrediction
from crprop.galprop.compare import load_run
from crprop.spectra import Spectra

RATIO_FILES: tuple[str, ...] = ("ams02/AMS02_PhysRep2021_BoverC_R.csv",)
"""Ratio tables of ../shared/data added for comparison (not in a crnet data set)."""
RATIO_PHI_MV: float = 650.0
"""phi (MV) for the AMS-02 2011-18 ratio tables: the ams02-2021 data set's reference value."""
CHECK_RTOL: float = 1e-12
POWER_LAW_INDEX: float = -2.7


def log_gauss_legendre(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, n) nodes x and weights w with sum_k w_k m(x_k) = (1/(hi-lo)) integral_lo^hi m(x) dx, Gauss-Legendre in
    u = ln x (dx = x du)."""
    t, w = np.polynomial.legendre.leggauss(n)
    a, b = np.log(lo)[:, None], np.log(hi)[:, None]
    x = np.exp(0.5 * (b - a) * t[None] + 0.5 * (b + a))
    return x, 0.5 * (b - a) * w[None] * x / (hi - lo)[:, None]


def probe_block(species: str, kind: str, a_eff: float | None, x: np.ndarray) -> DataBlock:
    """A DataBlock of ``species`` 'measured' at x (kind 'R' / 'Ek' / 'Ekn'), for crnet's BlockPrediction."""
    ekn, _ = convert_x_to_ekn(x, kind, species, a_eff or 1.0)
    one = np.ones(x.size)
    return DataBlock(label=f"{species} probe", species=species, experiment="probe", ekin_gev_per_n=ekn, flux=one,
                     stat_lo=one, stat_hi=one, sys_lo=one, sys_hi=one, lis=True, x_native=x.copy(),
                     x_native_kind=kind, a_eff=a_eff)


def model_per_x(sp: Spectra, species: str, kind: str, a_eff: float | None, x: np.ndarray) -> np.ndarray:
    """Model flux of ``species`` per unit of the data's x (per GV for 'R', per GeV/n for 'Ekn') at x (any shape),
    via crnet's BlockPrediction (flux per GeV/n times the data's factor f) divided by f."""
    flat = np.asarray(x, dtype=float).ravel()
    pred = BlockPrediction(probe_block(species, kind, a_eff, flat), sp.ekin_gev_per_n, sp.iso_z, sp.iso_a,
                           "loglog")(sp)[0]
    _, f = convert_x_to_ekn(flat, kind, species, a_eff or 1.0)
    return (pred / f).reshape(np.shape(x))


def point_and_average(fn, table, mask: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fn(x) -> model per unit x. Returns (m(x_rep), <m> with ``nodes``, <m> with 2*nodes) at the masked rows."""
    lo, hi, rep = table.x_low[mask], table.x_high[mask], table.x_rep[mask]
    point = fn(rep)
    avgs = []
    for n in (nodes, 2 * nodes):
        x, w = log_gauss_legendre(lo, hi, n)
        avgs.append((fn(x) * w).sum(axis=1))
    return point, avgs[0], avgs[1]


def block_point_avg(b: DataBlock, table, mask: np.ndarray, sp: Spectra, nodes: int):
    """(m(x_rep), <m> with ``nodes``, <m> with 2*nodes) per unit of the table's x at the block's rows with edges,
    after checking that the probe reproduces crnet's BlockPrediction of the real block at x_rep."""
    kind, a_eff = table.x_kind, b.a_eff
    ref = BlockPrediction(b, sp.ekin_gev_per_n, sp.iso_z, sp.iso_a, "loglog")(sp)[0]
    _, f_rep = convert_x_to_ekn(b.x_native, kind, b.species, a_eff or 1.0)
    mine = model_per_x(sp, b.species, kind, a_eff, b.x_native) * f_rep
    if not np.allclose(mine, ref, rtol=CHECK_RTOL, atol=0.0):
        raise SystemExit(f"{b.label}: probe differs from BlockPrediction by {np.max(np.abs(mine / ref - 1)):.2e}")
    if not np.array_equal(b.x_native, table.x_rep):
        raise SystemExit(f"{b.label}: block x differs from its table's x_rep")

    def fn(x):
        return model_per_x(sp, b.species, kind, a_eff, x)

    return point_and_average(fn, table, mask, nodes)


def power_law_floor(table, mask: np.ndarray, nodes: int) -> dict:
    """max |<m>/m(x_rep) - 1| for m = x^POWER_LAW_INDEX: zero for an exact Lafferty-Wyatt x_rep of that spectrum
    (AMS-02 fluxes), so for AMS-02 it measures the rounding of x_rep (4 digits) and the reconstructed edges."""
    point, avg, _ = point_and_average(lambda x: x**POWER_LAW_INDEX, table, mask, nodes)
    return {"power_law_max_abs_rel": float(np.max(np.abs(avg / point - 1.0)))}


def profiled_delta_chi2(name: str, lis: Spectra, spectra_at, nodes: int) -> dict:
    """crnet's own chi2 (normalisations profiled) with the point model vs the bin-averaged one, both at the phi that
    crnet profiles for the point model. The bin average is put in by rescaling each point's datum and errors by
    k = m(x_rep) / <m> (the normalisations scale the model, so ((kD - s m)/(k sigma))^2 = ((D - s <m>)/sigma)^2)."""
    ds = get_dataset(name)
    best = chi2(lis, ds)
    phis = {key: float(v[0]) for key, v in best.phi_by_period.items()}
    blocks = []
    for b in ds.blocks:
        k = np.ones(b.n_points)
        if b.source.endswith(".csv"):
            table = read_table(b.source)
            mask = np.isfinite(table.x_low) & np.isfinite(table.x_high)
            if mask.any():
                point, avg, _ = block_point_avg(b, table, mask, spectra_at(None if b.lis else phis[ds.period_of(b)]),
                                                nodes)
                k[mask] = point / avg
        blocks.append(dataclasses.replace(b, flux=b.flux * k, stat_lo=b.stat_lo * k, stat_hi=b.stat_hi * k,
                                          sys_lo=b.sys_lo * k, sys_hi=b.sys_hi * k))
    avg_ds = Dataset(name=f"{name} (bin-averaged model)", description=ds.description, blocks=tuple(blocks),
                     modulation=ds.modulation)
    fixed = phis or None
    c_point, c_avg = chi2(lis, ds, phi_mv=fixed), chi2(lis, avg_ds, phi_mv=fixed)
    by_block = {lab: float(a - p) for lab, p, a in zip(c_point.block_labels, c_point.chi2_by_block[0],
                                                       c_avg.chi2_by_block[0], strict=True)}
    return {"phi_mv": phis, "chi2_point": float(c_point.chi2_tot[0]), "chi2_avg": float(c_avg.chi2_tot[0]),
            "delta_chi2": float(c_avg.chi2_tot[0] - c_point.chi2_tot[0]), "delta_chi2_by_block": by_block,
            "q_c_point": float(c_point.q_c[0]), "q_c_avg": float(c_avg.q_c[0])}


def summarise(label: str, table, mask: np.ndarray, point: np.ndarray, avg: np.ndarray, avg2: np.ndarray,
              phi: float | None, datasets: list[str]) -> dict:
    d = table.value[mask]
    sig = table.total_err()[mask]
    rep, lo, hi = table.x_rep[mask], table.x_low[mask], table.x_high[mask]
    rel = avg / point - 1.0
    pull = (avg - point) / sig
    chi_p, chi_a = ((d - point) / sig) ** 2, ((d - avg) / sig) ** 2
    i_rel, i_pull = int(np.argmax(np.abs(rel))), int(np.argmax(np.abs(pull)))
    big = np.abs(pull) >= 0.5 * np.abs(pull[i_pull])
    return {
        "label": label, "datasets": datasets, "source": table.path, "x_kind": table.x_kind, "x_unit": table.x_unit,
        "quantity": table.quantity, "phi_mv": phi, "n_points": int(table.n_points), "n_edges": int(mask.sum()),
        "max_abs_rel": float(np.abs(rel[i_rel])), "median_abs_rel": float(np.median(np.abs(rel))),
        "x_rep_max_rel": float(rep[i_rel]), "bin_max_rel": [float(lo[i_rel]), float(hi[i_rel])],
        "max_abs_pull": float(np.abs(pull[i_pull])), "median_abs_pull": float(np.median(np.abs(pull))),
        "x_rep_max_pull": float(rep[i_pull]), "bin_max_pull": [float(lo[i_pull]), float(hi[i_pull])],
        "x_range_pull_ge_half_max": [float(rep[big].min()), float(rep[big].max())],
        "sum_pull2": float((pull**2).sum()),
        "chi2_point": float(chi_p.sum()), "chi2_avg": float(chi_a.sum()), "delta_chi2": float((chi_a - chi_p).sum()),
        "quadrature_max_rel_change_on_doubling": float(np.max(np.abs(avg2 / avg - 1.0))),
        "points": {"x_rep": rep.tolist(), "x_low": lo.tolist(), "x_high": hi.tolist(), "data": d.tolist(),
                   "sigma": sig.tolist(), "model_point": point.tolist(), "model_avg": avg.tolist(),
                   "rel": rel.tolist(), "pull": pull.tolist()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="crml_base", help="GALPROP reference run (../shared/reference/galprop/<run>)")
    ap.add_argument("--nodes", type=int, default=16, help="Gauss-Legendre nodes per bin (checked against twice)")
    ap.add_argument("--phi", type=float, default=None,
                    help="force-field phi (MV) for every top-of-atmosphere block (default: the data set's reference)")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--ratios", nargs="*", default=list(RATIO_FILES),
                    help="ratio tables under ../shared/data to add (not in crnet's data sets)")
    ap.add_argument("--stem", default="bin_average_effect")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    if args.nodes < 8:
        raise SystemExit("--nodes must be >= 8")
    lis = load_run(galprop_reference_dir() / args.run).spectra()
    modulated: dict[float, Spectra] = {}

    def spectra_at(phi: float | None) -> Spectra:
        if phi is None:
            return lis
        if phi not in modulated:
            modulated[phi] = lis.modulate(phi)
        return modulated[phi]

    # unique blocks (by source file) over the named data sets
    blocks: dict[str, tuple[DataBlock, float | None, list[str]]] = {}
    for name in args.datasets:
        ds = get_dataset(name)
        for b in ds.blocks:
            phi = None if b.lis else (args.phi if args.phi is not None else ds.periods[ds.period_of(b)].phi_mv)
            key = b.source
            if key in blocks:
                if blocks[key][1] != phi:
                    raise SystemExit(f"{b.label}: phi differs between data sets ({blocks[key][1]} vs {phi})")
                blocks[key][2].append(name)
            else:
                blocks[key] = (b, phi, [name])

    rows, no_edges = [], []
    for source, (b, phi, names) in blocks.items():
        table = read_table(source) if source.endswith(".csv") else None
        mask = np.isfinite(table.x_low) & np.isfinite(table.x_high) if table is not None else None
        if table is None or not mask.any():
            no_edges.append({"label": b.label, "datasets": names, "source": source, "n_points": b.n_points,
                             "why": "CR-ML (3, N) array: E, flux, sigma only" if table is None
                             else "table has no bin edges (point energies)"})
            continue
        point, avg, avg2 = block_point_avg(b, table, mask, spectra_at(phi), args.nodes)
        floor = power_law_floor(table, mask, args.nodes)
        rows.append(summarise(b.label, table, mask, point, avg, avg2, phi, names) | floor)

    root = shared_dir()
    for rel_path in args.ratios:
        if root is None:
            raise SystemExit("../shared (or $CRNET_SHARED) is needed for --ratios")
        table = read_table(root / "data" / rel_path)
        num, den = table.species.split("/")
        mask = np.isfinite(table.x_low) & np.isfinite(table.x_high)
        phi = args.phi if args.phi is not None else RATIO_PHI_MV
        sp = spectra_at(phi)
        parts = []
        for species in (num, den):
            a_eff = None if table.x_kind == "Ekn" else effective_mass_number(species)

            def fn(x, sp=sp, species=species, kind=table.x_kind, a_eff=a_eff):
                return model_per_x(sp, species, kind, a_eff, x)

            parts.append(point_and_average(fn, table, mask, args.nodes))
        (pn, an, an2), (pd, ad, ad2) = parts
        label = f"{table.species} {table.experiment.split(' ')[0]} (shared data; in no crnet data set)"
        rows.append(summarise(label, table, mask, pn / pd, an / ad, an2 / ad2, phi, [])
                    | {"power_law_max_abs_rel": None})

    totals = []
    for name in args.datasets:
        mine = [r for r in rows if name in r["datasets"]]
        skipped = [r for r in no_edges if name in r["datasets"]]
        totals.append({"dataset": name, "n_points": get_dataset(name).n_points,
                       "n_edges": sum(r["n_edges"] for r in mine),
                       "n_no_edges": sum(r["n_points"] for r in skipped),
                       "max_abs_rel": max((r["max_abs_rel"] for r in mine), default=None),
                       "max_abs_pull": max((r["max_abs_pull"] for r in mine), default=None),
                       "sum_pull2": sum(r["sum_pull2"] for r in mine),
                       "chi2_point": sum(r["chi2_point"] for r in mine),
                       "delta_chi2": sum(r["delta_chi2"] for r in mine),
                       "profiled": profiled_delta_chi2(name, lis, spectra_at, args.nodes) if mine else None})

    def fmt(v: float | None, spec: str = ".3g") -> str:
        return "–" if v is None else format(v, spec)

    lines = [f"# Bin average vs point evaluation at x_rep (GALPROP {args.run}, {args.nodes} Gauss-Legendre nodes "
             "in log x per bin)", "",
             "rel = <m>_bin / m(x_rep) - 1; pull = (<m>_bin - m(x_rep)) / sigma_total (stat (+) sys, symmetrised); "
             "chi^2 with the data's own values and errors, model as given (no normalisation or phi profiling); "
             "Delta chi^2 = chi^2(avg) - chi^2(point); sum pull^2 = the Delta chi^2 of a model that fits exactly at "
             "x_rep. AMS-02 in rigidity (model per GV via crnet's isotope-by-isotope prediction), Voyager 1 in E_kn. "
             "phi: force field at the data set's reference (AMS-02 650 MV) unless --phi; Voyager 1 unmodulated. "
             "Ratio: <num>_bin / <den>_bin. quad: largest relative change of <m> on doubling the nodes.", "",
             "| block | data sets | x | phi MV | n edges | max \\|rel\\| | med \\|rel\\| | max \\|pull\\| "
             "| med \\|pull\\| | x_rep at max \\|pull\\| (bin) | x_rep range pull >= max/2 "
             "| chi2 point | Delta chi2 | sum pull^2 | quad | x^-2.7: max \\|rel\\| |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["bin_max_pull"]
        lines.append(
            f"| {r['label']} | {', '.join(r['datasets']) or '–'} | {r['x_kind']} [{r['x_unit']}] | "
            f"{fmt(r['phi_mv'], '.0f')} | {r['n_edges']}/{r['n_points']} | {r['max_abs_rel']:.2e} | "
            f"{r['median_abs_rel']:.2e} | {r['max_abs_pull']:.3f} | {r['median_abs_pull']:.3f} | "
            f"{r['x_rep_max_pull']:.4g} ({lo:.4g}–{hi:.4g}) | {r['x_range_pull_ge_half_max'][0]:.4g}–"
            f"{r['x_range_pull_ge_half_max'][1]:.4g} | {r['chi2_point']:.1f} | {r['delta_chi2']:+.3f} | "
            f"{r['sum_pull2']:.3f} | {r['quadrature_max_rel_change_on_doubling']:.1e} | "
            f"{fmt(r['power_law_max_abs_rel'], '.1e')} |")
    lines += ["", "No bin edges (point evaluation is all that can be done):", "",
              "| block | data sets | points | why |", "|---|---|---|---|"]
    lines += [f"| {r['label']} | {', '.join(r['datasets'])} | {r['n_points']} | {r['why']} |" for r in no_edges]
    lines += ["", "Per named data set (blocks with edges only; 'profiled': crnet.likelihood.chi2 over the whole data "
              "set with q_C and the ratios profiled, phi fixed at crnet's profiled best phi of the point model, the "
              "bin average put in as a rescaling of data and errors by m(x_rep)/<m>):", "",
              "| data set | points | with edges | no edges | max \\|rel\\| | max \\|pull\\| | chi2 point | Delta chi2 "
              "| sum pull^2 | profiled: phi MV | profiled: chi2 point | profiled: Delta chi2 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in totals:
        prof = t["profiled"]
        extra = ("– | – | –" if prof is None else
                 f"{', '.join(f'{v:.1f}' for v in prof['phi_mv'].values())} | {prof['chi2_point']:.1f} | "
                 f"{prof['delta_chi2']:+.3f}")
        lines.append(f"| {t['dataset']} | {t['n_points']} | {t['n_edges']} | {t['n_no_edges']} | "
                     f"{fmt(t['max_abs_rel'])} | {fmt(t['max_abs_pull'])} | {t['chi2_point']:.1f} | "
                     f"{t['delta_chi2']:+.3f} | {t['sum_pull2']:.3f} | {extra} |")
    save_results(args.stem, "\n".join(lines) + "\n",
                 {"run": args.run, "nodes": args.nodes, "phi_override_mv": args.phi, "rows": rows,
                  "no_edges": no_edges, "totals": totals}, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
