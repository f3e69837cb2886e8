#!/usr/bin/env python3
"""Why do runs that rank alike flag so differently? (docs/model.md, "Why the flags move").

For each RESULTS directory of one simulated survey (scored by different model runs), prints a
Markdown row: `score` AUROC overall and for dual nuclei, flags at the catalogue's FDR with how
many are ordinary and the recall, then — in units of the stored `score`, whose scale
`tail_sigma` is 1 by construction — the three estimates `tail_sigma` takes the largest of
(upper-half σ, the 90th and the 95th percentile's, after the 4σ clip; crates/oddcube-score/src/
robust.rs) over all calibration galaxies, the 95th percentile's estimate over the ordinary
galaxies alone (the truth, which the null never sees), the highest ordinary `score` and the
anomalies' median `score`. The calibration galaxies are taken to be the scored ones, which holds
when the survey scored is the dataset the model was trained on (`n_calibration` equals the row
count; the script checks).

With `--latent` (needs numpy) it also refits the fused score offline with the latent term
replaced — none, or the distance to the k-th nearest reference galaxy for several k, from
`latents.npy` and `reference_latents.npy` — after checking that it reproduces the catalogue's
`knn_dist` and `score` to 10⁻³ from `calibration.json`.

    python3 scripts/flag_spread.py --truth survey/truth.csv results1 results2 results3 [--latent]

The component refit for `--latent` uses ordinary least squares then Huber reweighting on the
same covariates, which matches the stored fit closely but not to the digit; compare its rows
with each other, not with the stored null's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import restart_ensemble as ens  # noqa: E402  (the mimicry of the stored null lives there)

KINDS = ("blueberry", "dual_nucleus", "eelr", "seyfert")


def load(results: str, truth_path: str):
    rows = ens.read_csv(os.path.join(results, "catalog.csv"))
    truth = {r["plateifu"]: r for r in ens.read_csv(truth_path)}
    missing = [r["plateifu"] for r in rows if r["plateifu"] not in truth]
    if missing:
        raise SystemExit(f"{results}: {len(missing)} galaxies not in {truth_path}")
    anomalous = [truth[r["plateifu"]]["is_anomaly"].strip().lower() in ("1", "true") for r in rows]
    kinds = [truth[r["plateifu"]]["kind"] for r in rows]
    return rows, anomalous, kinds


def row_of(results: str, truth_path: str) -> str:
    rows, anomalous, kinds = load(results, truth_path)
    calibration = json.load(open(os.path.join(results, "calibration.json")))
    if calibration.get("n_calibration") != len(rows):
        raise SystemExit(f"{results}: scored {len(rows)} galaxies, the null rests on "
                         f"{calibration.get('n_calibration')}: not the model's own dataset")
    score = [ens.as_float(r["score"]) for r in rows]
    ordinary = [s for s, a in zip(score, anomalous) if not a]
    anomalies = sorted(s for s, a in zip(score, anomalous) if a)
    duals = [s for s, k in zip(score, kinds) if k == "dual_nucleus"]
    flags = [r["fdr_flag"].strip().lower() == "true" for r in rows]
    n_flags = sum(flags)
    false_flags = sum(f and not a for f, a in zip(flags, anomalous))
    recall = sum(f and a for f, a in zip(flags, anomalous)) / max(1, len(anomalies))
    _, upper, q90, q95 = ens.tail_sigma_terms(score)
    _, _, _, q95_ordinary = ens.tail_sigma_terms(ordinary)
    return (f"| {results} | {ens.auroc(anomalies, ordinary):.3f} | {ens.auroc(duals, ordinary):.3f} "
            f"| {n_flags} ({false_flags}), {recall:.2f} | {upper:.2f}, {q90:.2f}, {q95:.2f} "
            f"| {q95_ordinary:.2f} | {max(ordinary):.2f} | {ens.median(anomalies):.2f} |")


def latent_variants(results: str, truth_path: str, ks: list[int]) -> None:
    import numpy as np

    rows, anomalous, kinds = load(results, truth_path)
    calibration = json.load(open(os.path.join(results, "calibration.json")))
    column = lambda name: np.array([ens.as_float(r[name]) for r in rows])  # noqa: E731
    raw = {name: column(name) for name in ("pooled", "chi2", "local", "knn_dist")}
    ifu = column("ifu_size")
    covariates = {"ifu_size": np.log(np.where(ifu > 0, ifu, np.nan)), "depth": np.log(column("depth"))}
    design = [np.ones(len(rows))] + [
        np.nan_to_num(covariates[name] - mean, nan=0.0)
        for name, mean in zip(calibration["covariates"], calibration["covariate_means"])
    ]
    z = {}
    for component in calibration["components"]:
        coef = component["coef"]
        centre = sum(c * d for c, d in zip(coef, design))
        z[component["name"]] = (np.log(np.maximum(raw[component["name"]], 1e-300)) - centre) / component["scale"]
    fused = np.mean([z[k] for k in ("pooled", "chi2", "local", "knn_dist")], axis=0)
    fused = (fused - calibration["combined_centre"]) / calibration["combined_scale"]
    if np.nanmax(np.abs(fused - column("score"))) > 1e-3:
        raise SystemExit(f"{results}: calibration.json does not reproduce the catalogue's score")
    latents = np.load(os.path.join(results, "latents.npy")).astype(np.float64)
    index = {r["plateifu"]: i for i, r in enumerate(rows)}
    reference = np.array([index[p] for p in calibration["reference_plateifus"]])
    ref = latents[reference]
    d2 = (latents ** 2).sum(1)[:, None] + (ref ** 2).sum(1)[None, :] - 2 * latents @ ref.T
    distances = np.sqrt(np.maximum(d2, 0.0))
    distances[reference, np.arange(len(reference))] = np.inf  # never its own neighbour
    distances.sort(axis=1)
    if not np.allclose(distances[:, calibration["knn_k"] - 1], raw["knn_dist"], rtol=1e-3):
        raise SystemExit(f"{results}: latents.npy does not reproduce the catalogue's knn_dist")
    x = np.stack(design, 1)

    def robust_z(values):
        y = np.log(np.maximum(values, 1e-300))
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        for _ in range(20):  # Huber IRLS, tuning 1.345 σ
            r = y - x @ beta
            s = ens.MAD_TO_SIGMA * np.median(np.abs(r - np.median(r)))
            w = np.sqrt(np.minimum(1.0, 1.345 * s / np.maximum(np.abs(r), 1e-12)))
            beta = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]
        r = y - x @ beta
        centre = np.median(r)
        return (r - centre) / (ens.MAD_TO_SIGMA * np.median(r[r >= centre] - centre))

    anomalous_mask = np.array(anomalous)

    def report(label, fused_variant):
        s = ens.restandardised(list(fused_variant))
        flags = ens.benjamini_hochberg(ens.pvalues(s), 0.05)
        negatives = [v for v, a in zip(s, anomalous) if not a]
        per_kind = " ".join(
            f"{k} {ens.auroc([v for v, kk in zip(s, kinds) if kk == k], negatives):.3f}" for k in KINDS
        )
        n_flags = sum(flags)
        false_flags = sum(f and not a for f, a in zip(flags, anomalous))
        recall = sum(f and a for f, a in zip(flags, anomalous)) / max(1, int(anomalous_mask.sum()))
        overall = ens.auroc([v for v, a in zip(s, anomalous) if a], negatives)
        print(f"  {label:26s} AUROC {overall:.3f}  {per_kind}  flags {n_flags} ({false_flags}) recall {recall:.2f}")

    print(results)
    reconstruction = [z["pooled"], z["chi2"], z["local"]]
    report("stored (knn k = %d)" % calibration["knn_k"], np.mean(reconstruction + [z["knn_dist"]], 0))
    report("no latent term", np.mean(reconstruction, 0))
    for k in ks:
        zk = robust_z(distances[:, k - 1])
        alone = ens.auroc(list(zk[anomalous_mask]), list(zk[~anomalous_mask]))
        report(f"knn k = {k} (alone {alone:.3f})", np.mean(reconstruction + [zk], 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, help="the survey's truth.csv")
    ap.add_argument("--latent", action="store_true", help="also refit the latent term (numpy)")
    ap.add_argument("--k", default="10,25,50,100,200", help="neighbour ranks for --latent")
    ap.add_argument("results", nargs="+", help="RESULTS directories of runs on that survey")
    args = ap.parse_args()
    print("| results | AUROC | dual nucleus | flags (ordinary), recall | upper half, q90, q95 "
          "| q95, ordinary only | top ordinary | median anomaly |")
    print("|---|---|---|---|---|---|---|---|")
    for results in args.results:
        print(row_of(results, args.truth))
    if args.latent:
        ks = [int(k) for k in args.k.split(",")]
        for results in args.results:
            latent_variants(results, args.truth, ks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
