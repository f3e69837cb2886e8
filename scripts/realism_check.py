#!/usr/bin/env python3
"""Simulator realism check (issue #13): real MaNGA MAPS files against a simulated survey, per line.

Every statistic is computed per galaxy, then the real galaxy's value is set against the spread
of the simulated galaxies of the same kind (default `star_forming`: the real 7815-3702 is an
ordinary star-forming disk). Printed as Markdown tables: real value, simulated median and 10–90 %
range over galaxies, and a mark — `✗` outside the simulated min–max, `~` outside the 10–90 %
range (blank: inside).

Statistics (usable = EMLINE_GFLUX_MASK's DONOTUSE clear and IVAR > 0; footprint = NOCOV clear;
scale = the galaxy's 99th percentile of usable Hα flux, so sizes and distances cancel):

- flux: 50th/90th percentile of F/scale over usable spaxels;
- S/N = F·sqrt(IVAR): median, fraction ≥ 3;
- zeros: fraction of usable values that are exactly 0; masked: fraction of footprint spaxels
  not usable;
- noise: median σ (σ = IVAR^-1/2, 1E-17 erg/s/cm²/spaxel) and σ/scale, σ spread p90/p10, σ(bright)/σ(faint) = median σ where
  F ≥ its 90th percentile over median σ where F ≤ its median (how much the error grows with the
  line's own flux), σ(cont ≥ 30)/σ(cont < 10) = median σ where the continuum S/N (SPX_SNR) is ≥ 30
  over where it is < 10 (how much the error grows with the stellar continuum);
- small-scale structure: r = F − G(F), G a normalised Gaussian smoothing over usable spaxels at
  the PSF (σ = FWHM/2.355, FWHM from the primary header's RFWHM, 2.5″ when absent). `hf` =
  Σr²/Σ(F−mean)² (share of the map's variance below the PSF scale), `z_hf` = std of r·sqrt(IVAR)
  (small-scale structure in noise units: ≈ 0.7–0.9 for pure noise), `ac1` = lag-1 autocorrelation
  of r·sqrt(IVAR) (for noise-dominated lines: the spatial correlation of the noise);
- line ratios ([NII]6585/Hα, [OIII]5008/Hβ, [SII]6718+6732/Hα, Hα/Hβ), over spaxels with S/N ≥ 3
  in every line of the ratio: median, robust spread (1.4826·MAD), gradient per R/Re (SPX_ELLCOO
  channel 1; least squares), scatter about that linear radial trend beyond what the noise gives
  (sqrt(max(0, s² − median noise²))), slope against log(Hα/scale) (diffuse-gas signature: ratios
  that rise where the surface brightness is low), and the correlation of log [OIII]/Hβ with log
  [NII]/Hα over spaxels.

Lines: the `dr15` preset (19 lines present in DR15 and DR17 files; see scripts/real_galaxy_check.py);
NeIII-3968, OIII-4960, OI-6365 and NII-6549 are fixed-ratio partners in DR17 and in the simulator
(the DR15 file fits NeIII-3968 freely). The real DR17 fixture `tiny-test-…` has 4×4 spaxels and
at most 8 usable per line: too few for any of these statistics; it is not used.

    python3 scripts/realism_check.py [--sim SURVEY_DIR | --oddcube BIN] [--real FILE ...]
        [--galaxies 60] [--seed 1] [--workdir realism-check] [--kind star_forming] [--json OUT]

Without --sim, runs `oddcube simulate --out WORKDIR/survey --galaxies 60 --seed 1` (reused when
WORKDIR/survey/truth.csv exists). Requires Python 3.9+, numpy, astropy (`pip install numpy
astropy`); ~1 min for 60 galaxies on one core, deterministic.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

NOCOV = 1 << 0
DONOTUSE = 1 << 30
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL = [ROOT / "tests/data/real/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"]
LINES = ["Heta-3836", "NeIII-3869", "Hzet-3890", "NeIII-3968", "Heps-3971", "Hdel-4102", "Hgam-4341",
         "HeII-4687", "Hb-4862", "OIII-4960", "OIII-5008", "HeI-5877", "OI-6302", "OI-6365", "NII-6549",
         "Ha-6564", "NII-6585", "SII-6718", "SII-6732"]
PARTNERS = {"NeIII-3968", "OIII-4960", "OI-6365", "NII-6549"}
RATIOS = {
    "N2Ha": (["NII-6585"], ["Ha-6564"]),
    "O3Hb": (["OIII-5008"], ["Hb-4862"]),
    "S2Ha": (["SII-6718", "SII-6732"], ["Ha-6564"]),
    "HaHb": (["Ha-6564"], ["Hb-4862"]),
}
SPAXEL = 0.5  # arcsec


def channels(hdu):
    n = hdu.header["NAXIS3"]
    width = 2 if n >= 10 else 1
    return [hdu.header[f"C{i + 1:0{width}d}"].strip() for i in range(n)]


def load(path):
    with fits.open(path) as h:
        names = channels(h["EMLINE_GFLUX"])
        idx = [names.index(n) for n in LINES]
        flux = h["EMLINE_GFLUX"].data[idx].astype(float)
        ivar = h["EMLINE_GFLUX_IVAR"].data[idx].astype(float)
        mask = h["EMLINE_GFLUX_MASK"].data[idx].astype(np.int64)
        rre = h["SPX_ELLCOO"].data[1].astype(float)
        snr = h["SPX_SNR"].data.astype(float)
        fwhm = h[0].header.get("RFWHM") or 2.5
    return {"flux": flux, "ivar": ivar, "mask": mask, "rre": rre, "snr": snr, "fwhm": float(fwhm)}


def gauss_kernel(sigma):
    half = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-half, half + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth(img, kernel):
    """Separable convolution with zero padding."""
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, img)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, out)


def small_scale(f, ivar, good, kernel):
    """(hf, z_hf, ac1) of one line's map over usable spaxels, or NaNs."""
    if good.sum() < 30:
        return (np.nan,) * 3
    w = good.astype(float)
    num = smooth(np.where(good, f, 0.0), kernel)
    den = smooth(w, kernel)
    inner = good & (den > 0.5)
    if inner.sum() < 30:
        return (np.nan,) * 3
    r = np.where(inner, f - num / np.where(den > 0, den, 1.0), 0.0)
    var = ((f[inner] - f[inner].mean()) ** 2).sum()
    hf = (r[inner] ** 2).sum() / var if var > 0 else np.nan
    z = np.where(inner, r * np.sqrt(ivar), 0.0)
    z_hf = float(z[inner].std())
    pairs = inner[:, :-1] & inner[:, 1:]
    a, b = z[:, :-1][pairs], z[:, 1:][pairs]
    ac1 = float(np.corrcoef(a, b)[0, 1]) if len(a) > 20 and a.std() > 0 and b.std() > 0 else np.nan
    return float(hf), z_hf, ac1


def robust_sd(x):
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


def kauffmann03(x):
    x = np.minimum(x, -0.05)
    return 0.61 / (x - 0.05) + 1.30


def family_fit(flux, ivar, good, rre):
    """χ² of the best description of [NII]6585, [OIII]5008 and [SII] within the simulator's
    star-forming family: log [NII]/Hα = a + b·R/Re; log [OIII]/Hβ = Kauffmann+03(that [NII]/Hα) − c;
    log [SII]/Hα = d + 0.12·min(R/Re, 2.5) (galaxy.rs: Host::render). a, b, c, d are free (not
    limited to the simulator's ranges), fitted by weighted least squares in log space over spaxels
    with S/N ≥ 3 in every line; the line is predicted from the observed denominator, and χ² counts
    the denominator's noise too. Returns {line: (mean χ² per spaxel, rms residual in dex, n)}."""
    i = {n: LINES.index(n) for n in LINES}
    sn = {n: np.where(good[i[n]], flux[i[n]] * np.sqrt(ivar[i[n]]), 0) for n in LINES}
    sel = np.logical_and.reduce([sn[n] >= 3 for n in ("Ha-6564", "Hb-4862", "NII-6585", "OIII-5008",
                                                      "SII-6718", "SII-6732")])
    if sel.sum() < 30:
        return {}
    F = {n: flux[i[n]][sel] for n in LINES}
    V = {n: 1 / ivar[i[n]][sel] for n in LINES}
    r = rre[sel]
    out = {}

    def chi2(obs, var, pred, den_obs, den_var):
        var_eff = var + pred ** 2 * den_var / den_obs ** 2
        res = (obs - pred) ** 2 / var_eff
        return float(res.mean()), float(np.sqrt(np.mean(np.log10(obs / pred) ** 2))), int(len(obs))

    def wfit(design, y, w):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
        return coef

    def wlog(num_var, num, den_var, den):  # weights of a log ratio: 1 / its variance
        return 1 / (0.4343 ** 2 * (num_var / num ** 2 + den_var / den ** 2))

    n2 = np.log10(F["NII-6585"] / F["Ha-6564"])
    a, b = wfit(np.vstack([np.ones_like(r), r]).T, n2, wlog(V["NII-6585"], F["NII-6585"], V["Ha-6564"], F["Ha-6564"]))
    n2_model = a + b * r
    out["NII-6585"] = chi2(F["NII-6585"], V["NII-6585"], F["Ha-6564"] * 10 ** n2_model, F["Ha-6564"], V["Ha-6564"])
    o3 = np.log10(F["OIII-5008"] / F["Hb-4862"])
    base = kauffmann03(n2_model)
    (c,) = wfit(np.ones((len(r), 1)), o3 - base, wlog(V["OIII-5008"], F["OIII-5008"], V["Hb-4862"], F["Hb-4862"]))
    out["OIII-5008"] = chi2(F["OIII-5008"], V["OIII-5008"], F["Hb-4862"] * 10 ** (base + c), F["Hb-4862"], V["Hb-4862"])
    s2f = F["SII-6718"] + F["SII-6732"]
    s2v = V["SII-6718"] + V["SII-6732"]
    ramp = 0.12 * np.minimum(r, 2.5)
    (d,) = wfit(np.ones((len(r), 1)), np.log10(s2f / F["Ha-6564"]) - ramp, wlog(s2v, s2f, V["Ha-6564"], F["Ha-6564"]))
    out["SII"] = chi2(s2f, s2v, F["Ha-6564"] * 10 ** (d + ramp), F["Ha-6564"], V["Ha-6564"])
    out["params"] = {"nii_ha": float(a), "nii_grad": float(b), "o3_offset": float(c), "sii_ha": float(d)}
    return out


def galaxy_stats(g):
    flux, ivar, mask = g["flux"], g["ivar"], g["mask"]
    good = ((mask & DONOTUSE) == 0) & (ivar > 0)
    foot = (mask[LINES.index("Ha-6564")] & NOCOV) == 0
    ha = LINES.index("Ha-6564")
    scale = float(np.percentile(flux[ha][good[ha]], 99)) if good[ha].sum() > 10 else np.nan
    kernel = gauss_kernel(g["fwhm"] / 2.3548 / SPAXEL)
    out = {"lines": {}, "ratios": {}, "scale": scale, "n_usable_ha": int(good[ha].sum())}
    for i, name in enumerate(LINES):
        gi = good[i]
        f, iv = flux[i][gi], ivar[i][gi]
        s = {}
        s["masked"] = float(1 - (gi & foot).sum() / foot.sum()) if foot.sum() else np.nan
        if gi.sum() < 10 or not np.isfinite(scale):
            out["lines"][name] = s
            continue
        sig = 1 / np.sqrt(iv)
        sn = f * np.sqrt(iv)
        s["zeros"] = float((f == 0).mean())
        s["q50"] = float(np.percentile(f, 50) / scale)
        s["q90"] = float(np.percentile(f, 90) / scale)
        s["sn_med"] = float(np.median(sn))
        s["sn_ge3"] = float((sn >= 3).mean())
        s["sig_abs"] = float(np.median(sig))
        s["sig_med"] = float(np.median(sig) / scale)
        cont = g["snr"][gi]
        hi, lo = cont >= 30, cont < 10
        s["sig_cont"] = (float(np.median(sig[hi]) / np.median(sig[lo]))
                         if hi.sum() >= 10 and lo.sum() >= 10 else np.nan)
        s["sig_p90_p10"] = float(np.percentile(sig, 90) / np.percentile(sig, 10))
        bright, faint = f >= np.percentile(f, 90), f <= np.percentile(f, 50)
        s["sig_bright_faint"] = float(np.median(sig[bright]) / np.median(sig[faint]))
        s["hf"], s["z_hf"], s["ac1"] = small_scale(flux[i], ivar[i], gi, kernel)
        out["lines"][name] = s
    # Line ratios.
    sn_ok = {}
    for name in {n for num, den in RATIOS.values() for n in num + den}:
        i = LINES.index(name)
        sn_ok[name] = good[i] & (flux[i] * np.sqrt(ivar[i]) >= 3)
    logs = {}
    ha_sb = np.log10(np.where(good[ha] & (flux[ha] > 0), flux[ha], np.nan) / scale)
    for key, (num, den) in RATIOS.items():
        sel = np.logical_and.reduce([sn_ok[n] for n in num + den])
        r = {"n": int(sel.sum())}
        if sel.sum() >= 20:
            top = sum(flux[LINES.index(n)] for n in num)
            bot = sum(flux[LINES.index(n)] for n in den)
            var_top = sum(1 / np.where(ivar[LINES.index(n)] > 0, ivar[LINES.index(n)], np.inf) for n in num)
            var_bot = sum(1 / np.where(ivar[LINES.index(n)] > 0, ivar[LINES.index(n)], np.inf) for n in den)
            lr = np.log10(top[sel] / bot[sel])
            noise = 0.4343 * np.sqrt(var_top[sel] / top[sel] ** 2 + var_bot[sel] / bot[sel] ** 2)
            x = g["rre"][sel]
            slope, icpt = np.polyfit(x, lr, 1) if np.ptp(x) > 0 else (np.nan, np.nan)
            resid = lr - (slope * x + icpt)
            s_res = robust_sd(resid)
            n_med = float(np.median(noise))
            sb = ha_sb[sel]
            fin = np.isfinite(sb)
            r.update({
                "median": float(np.median(lr)),
                "spread": robust_sd(lr),
                "grad": float(slope),
                "local_excess": float(np.sqrt(max(0.0, s_res ** 2 - n_med ** 2))),
                "noise": n_med,
                "sb_slope": float(np.polyfit(sb[fin], lr[fin], 1)[0]) if fin.sum() >= 20 else np.nan,
            })
            logs[key] = np.full(sel.shape, np.nan)
            logs[key][sel] = lr
        out["ratios"][key] = r
    if "O3Hb" in logs and "N2Ha" in logs:
        both = np.isfinite(logs["O3Hb"]) & np.isfinite(logs["N2Ha"])
        if both.sum() >= 20:
            out["ratios"]["O3Hb"]["corr_N2Ha"] = float(np.corrcoef(logs["O3Hb"][both], logs["N2Ha"][both])[0, 1])
        # [OIII]/Hβ radial profile (median per R/Re bin).
        o3 = logs["O3Hb"]
        prof = {}
        for lo, hi in [(0, 0.5), (0.5, 1), (1, 1.5), (1.5, 2), (2, 3)]:
            s = np.isfinite(o3) & (g["rre"] >= lo) & (g["rre"] < hi)
            prof[f"{lo}-{hi}"] = float(np.median(o3[s])) - 0 if s.sum() >= 5 else np.nan
        out["o3hb_profile"] = prof
    out["family"] = with_quiet(family_fit, flux, ivar, good, g["rre"])
    # Galaxy-integrated ratios (Σ numerator / Σ denominator over spaxels usable in both).
    tot = {}
    for key, (num, den) in list(RATIOS.items()) + [("O3Ha", (["OIII-5008"], ["Ha-6564"]))]:
        both = np.logical_and.reduce([good[LINES.index(n)] for n in num + den])
        top = sum(flux[LINES.index(n)][both].sum() for n in num)
        bot = sum(flux[LINES.index(n)][both].sum() for n in den)
        tot[key] = float(np.log10(top / bot)) if top > 0 and bot > 0 else np.nan
    out["total"] = tot
    return out


def with_quiet(fn, *a):
    with np.errstate(divide="ignore", invalid="ignore"):
        return fn(*a)


def simulate(binary, workdir, galaxies, seed):
    survey = workdir / "survey"
    if (survey / "truth.csv").exists():
        return survey
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "simulate", "--out", str(survey), "--galaxies", str(galaxies), "--seed", str(seed)]
    print("running: " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return survey


def fmt(v, digits=2):
    if v is None or not np.isfinite(v):
        return "–"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if v != 0 and abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


def compare(real_value, sims):
    sims = np.array([s for s in sims if s is not None and np.isfinite(s)])
    if len(sims) == 0 or real_value is None or not np.isfinite(real_value):
        return f"{fmt(real_value)} · –"
    p10, p50, p90 = np.percentile(sims, [10, 50, 90])
    mark = "✗" if real_value < sims.min() or real_value > sims.max() else (
        "~" if real_value < p10 or real_value > p90 else "")
    return f"{fmt(real_value)} · {fmt(p50)} ({fmt(p10)}–{fmt(p90)}) {mark}".rstrip()


def table(title, rows, cols, real, sims, getter):
    print(f"\n### {title}\n")
    print("| line | " + " | ".join(c for c, _ in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for row in rows:
        cells = []
        for _, key in cols:
            rv = getter(real, row, key)
            sv = [getter(s, row, key) for s in sims]
            cells.append(compare(rv, sv))
        label = row + (" (tied)" if row in PARTNERS else "")
        print(f"| {label} | " + " | ".join(cells) + " |")


def line_get(st, line, key):
    return st["lines"].get(line, {}).get(key)


def ratio_get(st, ratio, key):
    return st["ratios"].get(ratio, {}).get(key)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", type=Path, help="an existing simulated survey (with truth.csv)")
    ap.add_argument("--oddcube", type=Path,
                    default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "oddcube")
    ap.add_argument("--real", type=Path, nargs="+", default=DEFAULT_REAL)
    ap.add_argument("--galaxies", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("realism-check"))
    ap.add_argument("--kind", default="star_forming", help="simulated kind to compare with")
    ap.add_argument("--json", type=Path, help="write all per-galaxy statistics here")
    args = ap.parse_args()

    survey = args.sim or simulate(args.oddcube, args.workdir, args.galaxies, args.seed)
    with open(survey / "truth.csv", newline="") as f:
        truth = [r for r in csv.DictReader(f)]
    chosen = sorted((r for r in truth if r["kind"] == args.kind), key=lambda r: r["plateifu"])
    if not chosen:
        sys.exit(f"no simulated galaxy of kind {args.kind} in {survey}")
    every = {r["plateifu"]: galaxy_stats(load(survey / r["file"])) for r in truth}
    sims = [every[r["plateifu"]] for r in chosen]
    reals = {p.name: galaxy_stats(load(p)) for p in args.real}

    print(f"# Simulator realism: real MAPS vs {len(sims)} simulated `{args.kind}` galaxies "
          f"({survey.name}, {len(truth)} galaxies)\n")
    print("Cells: `real · simulated median (10–90 % over galaxies)`, `✗` = real outside the simulated "
          "min–max, `~` = outside 10–90 %. Fluxes and σ in units of the galaxy's Hα 99th percentile.")
    for name, real in reals.items():
        print(f"\n## {name} (Hα scale {fmt(real['scale'])}, {real['n_usable_ha']} usable Hα spaxels)")
        table("Flux, S/N, zeros and masks", LINES,
              [("masked", "masked"), ("zeros", "zeros"), ("F/scale p50", "q50"), ("F/scale p90", "q90"),
               ("S/N median", "sn_med"), ("S/N ≥ 3", "sn_ge3")], real, sims, line_get)
        table("Noise and small-scale structure", LINES,
              [("σ", "sig_abs"), ("σ/scale", "sig_med"), ("σ p90/p10", "sig_p90_p10"),
               ("σ bright/faint", "sig_bright_faint"), ("σ cont≥30/cont<10", "sig_cont"),
               ("hf", "hf"), ("z_hf", "z_hf"), ("ac1", "ac1")], real, sims, line_get)
        print("\n### Line ratios (log10, spaxels with S/N ≥ 3 in each line)\n")
        keys = [("n", "n"), ("median", "median"), ("spread", "spread"), ("grad /Re", "grad"),
                ("local excess", "local_excess"), ("slope vs log SB", "sb_slope")]
        print("| ratio | " + " | ".join(k for k, _ in keys) + " |")
        print("|---|" + "---|" * len(keys))
        for key in RATIOS:
            cells = [compare(ratio_get(real, key, k), [ratio_get(s, key, k) for s in sims]) for _, k in keys]
            print(f"| {key} | " + " | ".join(cells) + " |")
        print(f"\nGalaxy-integrated log ratios (Σ flux over usable spaxels); last column against all "
              f"{len(every)} simulated galaxies, every kind:\n")
        print(f"| ratio | vs `{args.kind}` | vs all simulated |")
        print("|---|---|---|")
        for key in real["total"]:
            print(f"| {key} | {compare(real['total'][key], [s['total'][key] for s in sims])} | "
                  f"{compare(real['total'][key], [s['total'][key] for s in every.values()])} |")
        print(f"\ncorr(log O3Hb, log N2Ha) over spaxels: "
              f"{compare(ratio_get(real, 'O3Hb', 'corr_N2Ha'), [ratio_get(s, 'O3Hb', 'corr_N2Ha') for s in sims])}")
        prof = real.get("o3hb_profile", {})
        print("\nlog [OIII]/Hβ by R/Re: " + ", ".join(
            f"{b}: {compare(v, [s.get('o3hb_profile', {}).get(b) for s in sims])}" for b, v in prof.items()))
        print("\n### How well the simulator's star-forming family can describe the ratios\n")
        print("Best fit within the family (free parameters), spaxels with S/N ≥ 3 in all six lines: "
              "mean χ² per spaxel, rms residual (dex) and share of the three lines' χ².\n")
        print("| line | mean χ² | rms (dex) | share of χ² |")
        print("|---|---|---|---|")
        fam_lines = ["OIII-5008", "NII-6585", "SII"]

        def share(st, ln):
            fam = st.get("family") or {}
            tot = sum(fam[x][0] for x in fam_lines if x in fam)
            return fam[ln][0] / tot if ln in fam and tot > 0 else None

        for ln in fam_lines:
            cells = [compare((real.get("family") or {}).get(ln, (None,) * 3)[k],
                             [(s.get("family") or {}).get(ln, (None,) * 3)[k] for s in sims]) for k in (0, 1)]
            cells.append(compare(share(real, ln), [share(s, ln) for s in sims]))
            print(f"| {ln} | " + " | ".join(cells) + " |")
        params = (real.get("family") or {}).get("params")
        if params:
            print("\nReal galaxy's fitted family parameters: " + ", ".join(
                f"{k} {compare(v, [(s.get('family') or {}).get('params', {}).get(k) for s in sims])}"
                for k, v in params.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"survey": str(survey), "kind": args.kind,
                       "simulated": {r["plateifu"]: s for r, s in zip(chosen, sims)},
                       "real": reals}, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
