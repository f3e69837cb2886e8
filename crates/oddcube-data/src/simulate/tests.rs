//! Physics and format checks of simulated galaxies: BPT classes per kind, Balmer decrements,
//! exact fixed ratios, DAP mask rules, non-negative fluxes with exact zeros, determinism.

use super::galaxy::independent_channels;
use super::spectra::{CASE_B_HA_HB, FIXED_RATIOS, N_CHANNELS, ch};
use super::*;
use crate::bpt::{BptClass, BptLines, BptOptions, classify, kauffmann03_nii, kewley01_nii};
use crate::mask::{DONOTUSE, DONOTUSE_SOURCES, NOCOV};

/// Plans a survey with many anomalies and returns the first `per_kind` galaxies of `kind`.
fn galaxies_of(
    kind: GalaxyKind,
    per_kind: usize,
    seed: u64,
) -> Vec<(GalaxyPlan, GalaxyTruth, GalaxyMaps)> {
    // Held-out kinds are planned on their own; the default mix keeps its plans.
    let anomaly_kinds = if GalaxyKind::HELD_OUT.contains(&kind) {
        vec![kind]
    } else {
        GalaxyKind::ANOMALIES.to_vec()
    };
    let config = SurveyConfig {
        galaxies: 80,
        seed,
        anomaly_fraction: 0.5,
        anomaly_kinds,
        gzip_level: 1,
    };
    plan_survey(&config)
        .unwrap()
        .into_iter()
        .filter(|p| p.kind == kind)
        .take(per_kind)
        .map(|plan| {
            let (truth, maps) = simulate_planned(&plan, seed);
            (plan, truth, maps)
        })
        .collect()
}

/// BPT lines summed over a 3×3 box around (col, row): noise-free model (huge ivar) or the
/// observed fluxes with their combined inverse variance.
fn box_lines(maps: &GalaxyMaps, col: usize, row: usize, noisy: bool) -> BptLines {
    let plane = maps.grid.plane();
    BptLines::from_lookup(|name| {
        let c = crate::lines::DR17_CHANNELS
            .iter()
            .position(|(n, _)| *n == name)?;
        let (mut flux, mut variance) = (0.0, 0.0);
        for r in row.saturating_sub(1)..=(row + 1).min(maps.grid.size - 1) {
            for cc in col.saturating_sub(1)..=(col + 1).min(maps.grid.size - 1) {
                let i = c * plane + r * maps.grid.size + cc;
                if noisy {
                    if maps.mask[i] & DONOTUSE != 0 || maps.ivar[i] <= 0.0 {
                        continue;
                    }
                    flux += f64::from(maps.flux[i]);
                    variance += 1.0 / f64::from(maps.ivar[i]);
                } else {
                    flux += f64::from(maps.model[i]);
                    variance += 1e-12;
                }
            }
        }
        (variance > 0.0).then(|| (flux, 1.0 / variance))
    })
}

fn centre(maps: &GalaxyMaps) -> (usize, usize) {
    (maps.grid.size / 2, maps.grid.size / 2)
}

fn log_ratios(lines: &BptLines) -> (f64, f64) {
    (
        (lines.nii.flux / lines.ha.flux).log10(),
        (lines.oiii.flux / lines.hb.flux).log10(),
    )
}

#[test]
fn star_forming_centres_lie_below_kauffmann() {
    for seed in [1, 2] {
        for (plan, _, maps) in galaxies_of(GalaxyKind::StarForming, 8, seed) {
            let (col, row) = centre(&maps);
            let model = box_lines(&maps, col, row, false);
            assert_eq!(
                classify(&model, &BptOptions::default()),
                BptClass::StarForming,
                "{}",
                plan.plateifu()
            );
            let noisy = box_lines(&maps, col, row, true);
            let class = classify(
                &noisy,
                &BptOptions {
                    use_oi: false,
                    ..BptOptions::default()
                },
            );
            assert_eq!(class, BptClass::StarForming, "{} noisy", plan.plateifu());
        }
    }
}

#[test]
fn seyfert_nuclei_lie_above_kewley01() {
    for (plan, _, maps) in galaxies_of(GalaxyKind::Seyfert, 8, 3) {
        let (col, row) = centre(&maps);
        for noisy in [false, true] {
            let lines = box_lines(&maps, col, row, noisy);
            let (x, y) = log_ratios(&lines);
            assert!(
                kewley01_nii(x).is_none_or(|limit| y > limit),
                "{}: ({x}, {y})",
                plan.plateifu()
            );
            assert_eq!(
                classify(&lines, &BptOptions::default()),
                BptClass::Seyfert,
                "{} noisy={noisy}",
                plan.plateifu()
            );
        }
        // Strong HeII, as in real Seyfert 2 nuclei.
        let i = ch::HEII_4687 * maps.grid.plane() + row * maps.grid.size + col;
        let hb = maps.model[ch::HB * maps.grid.plane() + row * maps.grid.size + col];
        assert!(maps.model[i] > 0.1 * hb, "{}", plan.plateifu());
    }
}

#[test]
fn retired_gas_is_liner_like() {
    for (plan, _, maps) in galaxies_of(GalaxyKind::Retired, 6, 4) {
        let (col, row) = centre(&maps);
        let model = box_lines(&maps, col, row, false);
        assert_eq!(
            classify(&model, &BptOptions::default()),
            BptClass::Liner,
            "{}",
            plan.plateifu()
        );
        // Faint: many lines are not detected at all.
        let zeros = maps
            .flux
            .iter()
            .zip(&maps.mask)
            .filter(|(f, m)| **m == 0 && **f == 0.0)
            .count();
        assert!(zeros > 0, "{}", plan.plateifu());
    }
}

#[test]
fn blueberries_are_metal_poor_extreme_starbursts() {
    for (plan, _, maps) in galaxies_of(GalaxyKind::Blueberry, 6, 5) {
        let (col, row) = centre(&maps);
        let (x, y) = log_ratios(&box_lines(&maps, col, row, false));
        assert!(x < -1.3 && y > 0.7, "{}: ({x}, {y})", plan.plateifu());
        assert!(
            kauffmann03_nii(x).is_some_and(|limit| y < limit),
            "{}: ({x}, {y})",
            plan.plateifu()
        );
        let plane = maps.grid.plane();
        let p = row * maps.grid.size + col;
        let oiii_oii = maps.model[ch::OIII_5008 * plane + p]
            / (maps.model[ch::OII_3727 * plane + p] + maps.model[ch::OII_3729 * plane + p]);
        assert!(
            oiii_oii > 5.0,
            "{}: [OIII]/[OII] = {oiii_oii}",
            plan.plateifu()
        );
    }
}

#[test]
fn eelr_clouds_are_agn_ionised_and_off_nucleus() {
    for (plan, truth, maps) in galaxies_of(GalaxyKind::Eelr, 6, 6) {
        let (col, row) = (
            truth.anomaly_col.round() as usize,
            truth.anomaly_row.round() as usize,
        );
        let offset =
            (truth.anomaly_col - maps.grid.centre()).hypot(truth.anomaly_row - maps.grid.centre());
        assert!(
            offset > 2.0,
            "{}: cloud {offset} spaxels from the centre",
            plan.plateifu()
        );
        let (x, y) = log_ratios(&box_lines(&maps, col, row, false));
        assert!(
            kewley01_nii(x).is_none_or(|limit| y > limit),
            "{}: ({x}, {y})",
            plan.plateifu()
        );
    }
}

#[test]
fn dual_nuclei_are_two_dusty_peaks() {
    for (plan, truth, maps) in galaxies_of(GalaxyKind::DualNucleus, 6, 7) {
        let plane = maps.grid.plane();
        let ha = &maps.model[ch::HA * plane..(ch::HA + 1) * plane];
        let hb = &maps.model[ch::HB * plane..(ch::HB + 1) * plane];
        let peak = (0..plane).max_by(|&a, &b| ha[a].total_cmp(&ha[b])).unwrap();
        let decrement = ha[peak] / hb[peak];
        assert!(
            decrement > 4.0,
            "{}: Hα/Hβ {decrement} at the brighter nucleus",
            plan.plateifu()
        );
        assert!(truth.anomaly_radius > 2.0);
    }
}

#[test]
fn balmer_decrement_never_below_case_b() {
    for kind in GalaxyKind::ALL {
        for (plan, _, maps) in galaxies_of(kind, 2, 8) {
            let plane = maps.grid.plane();
            for p in 0..plane {
                let (ha, hb) = (
                    maps.model[ch::HA * plane + p],
                    maps.model[ch::HB * plane + p],
                );
                if hb > 1e-6 {
                    assert!(
                        f64::from(ha / hb) >= CASE_B_HA_HB * (1.0 - 1e-5),
                        "{} spaxel {p}: {}",
                        plan.plateifu(),
                        ha / hb
                    );
                }
            }
        }
    }
}

#[test]
fn fixed_ratio_partners_are_exact() {
    for (plan, _, maps) in galaxies_of(GalaxyKind::Seyfert, 2, 9)
        .into_iter()
        .chain(galaxies_of(GalaxyKind::StarForming, 2, 9))
    {
        let plane = maps.grid.plane();
        for (dependent, main, ratio) in FIXED_RATIOS {
            for p in 0..plane {
                let (d, m) = (dependent * plane + p, main * plane + p);
                assert_eq!(
                    maps.flux[d],
                    (ratio * f64::from(maps.flux[m])) as f32,
                    "{}",
                    plan.plateifu()
                );
                assert_eq!(
                    maps.model[d],
                    (ratio * f64::from(maps.model[m])) as f32,
                    "{}",
                    plan.plateifu()
                );
                assert_eq!(maps.mask[d], maps.mask[m]);
                if maps.ivar[m] > 0.0 {
                    let expected = f64::from(maps.ivar[m]) / (ratio * ratio);
                    assert!((f64::from(maps.ivar[d]) / expected - 1.0).abs() < 1e-6);
                }
            }
        }
    }
}

#[test]
fn masks_follow_dap_rules() {
    for kind in [
        GalaxyKind::StarForming,
        GalaxyKind::Retired,
        GalaxyKind::Blueberry,
    ] {
        for (plan, truth, maps) in galaxies_of(kind, 3, 10) {
            let plane = maps.grid.plane();
            let cover = catalogue::coverage_radius_for(truth.geometry.ifu_size);
            for c in 0..N_CHANNELS {
                for p in 0..plane {
                    let i = c * plane + p;
                    let (f, v, m) = (maps.flux[i], maps.ivar[i], maps.mask[i]);
                    assert_eq!(
                        m & DONOTUSE != 0,
                        m & DONOTUSE_SOURCES != 0,
                        "{} {c} {p}: {m:#x}",
                        plan.plateifu()
                    );
                    assert!(
                        f >= 0.0 && f.is_finite() && v >= 0.0 && v.is_finite(),
                        "{}",
                        plan.plateifu()
                    );
                    let (x, y) = maps.grid.sky(p % maps.grid.size, p / maps.grid.size);
                    let outside = render::hex_radius(x, y) > cover;
                    assert_eq!(m & NOCOV != 0, outside, "{} {p}", plan.plateifu());
                    if m & NOCOV != 0 {
                        assert_eq!((f, v), (0.0, 0.0));
                        assert_eq!(maps.sflux[i], 0.0);
                    }
                    let sm = maps.sflux_mask[i];
                    assert_eq!(sm & DONOTUSE != 0, sm & DONOTUSE_SOURCES != 0);
                }
            }
            // Usable spaxels exist and every usable spaxel has a positive IVAR.
            let ha = ch::HA * plane;
            let usable = (0..plane).filter(|&p| maps.mask[ha + p] == 0).count();
            assert!(
                usable > 50,
                "{}: {usable} usable Hα spaxels",
                plan.plateifu()
            );
            assert!((0..plane).all(|p| maps.mask[ha + p] != 0 || maps.ivar[ha + p] > 0.0));
        }
    }
}

#[test]
fn undetected_lines_are_exact_zeros() {
    let mut zeros = 0usize;
    let mut usable = 0usize;
    for (_, _, maps) in galaxies_of(GalaxyKind::StarForming, 4, 11) {
        let plane = maps.grid.plane();
        for c in independent_channels() {
            for p in 0..plane {
                let i = c * plane + p;
                if maps.mask[i] == 0 {
                    usable += 1;
                    zeros += usize::from(maps.flux[i] == 0.0);
                }
            }
        }
    }
    let fraction = zeros as f64 / usable as f64;
    assert!(
        fraction > 0.02 && fraction < 0.6,
        "zero fraction {fraction}"
    );
}

#[test]
fn surveys_are_deterministic_and_seed_dependent() {
    let config = SurveyConfig {
        galaxies: 40,
        seed: 42,
        anomaly_fraction: 0.1,
        ..SurveyConfig::default()
    };
    let a = plan_survey(&config).unwrap();
    assert_eq!(a, plan_survey(&config).unwrap());
    assert_eq!(a.iter().filter(|p| p.kind.is_anomaly()).count(), 4);
    let names: std::collections::HashSet<String> = a.iter().map(GalaxyPlan::plateifu).collect();
    assert_eq!(names.len(), a.len(), "plate-IFU names are unique");
    let other = plan_survey(&SurveyConfig {
        seed: 43,
        ..config.clone()
    })
    .unwrap();
    assert_ne!(a, other);
    // Rendering does not depend on the thread that runs it.
    let render = |threads: usize| -> Vec<Vec<f32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            a[..6]
                .par_iter()
                .map(|plan| simulate_planned(plan, 42).1.flux)
                .collect()
        })
    };
    assert_eq!(render(1), render(2));
}

#[test]
fn bad_settings_are_errors() {
    let bad_fraction = SurveyConfig {
        anomaly_fraction: 1.5,
        ..SurveyConfig::default()
    };
    assert!(matches!(
        plan_survey(&bad_fraction),
        Err(DataError::Invalid(_))
    ));
    let none = SurveyConfig {
        galaxies: 0,
        ..SurveyConfig::default()
    };
    assert!(matches!(plan_survey(&none), Err(DataError::Invalid(_))));
}

#[test]
fn written_files_read_back_with_the_maps_reader() {
    let dir = tempfile::tempdir().unwrap();
    let config = SurveyConfig {
        galaxies: 3,
        seed: 5,
        anomaly_fraction: 0.34,
        ..SurveyConfig::default()
    };
    let summary = simulate_survey(dir.path(), &config, &crate::NoProgress).unwrap();
    let plans = plan_survey(&config).unwrap();
    assert_eq!(summary.files.len(), 3);
    for (plan, path) in plans.iter().zip(&summary.files) {
        let file = crate::maps::MapsFile::read(path).unwrap();
        let (truth, maps) = simulate_planned(plan, config.seed);
        assert_eq!(file.meta.plateifu, plan.plateifu());
        assert!(!file.meta.plateifu_from_filename);
        assert_eq!(file.meta.mangaid.as_deref(), Some(plan.mangaid.as_str()));
        assert_eq!(file.meta.ifu_size, Some(truth.geometry.ifu_size));
        assert!((file.meta.z.unwrap() - truth.geometry.z).abs() < 1e-6);
        assert_eq!(file.channels.len(), 35);
        assert_eq!((file.ny, file.nx), (truth.grid, truth.grid));
        assert_eq!(file.flux, maps.flux);
        assert_eq!(file.ivar, maps.ivar);
        assert_eq!(file.mask, maps.mask);
        assert_eq!(file.hdus.len(), 64);
    }
    let truth_csv = std::fs::read_to_string(&summary.truth_path).unwrap();
    assert_eq!(truth_csv.lines().count(), 4);
    assert!(truth_csv.starts_with(TRUTH_COLUMNS));
}

#[test]
fn kind_names_round_trip() {
    for kind in GalaxyKind::ALL {
        assert_eq!(GalaxyKind::parse(kind.name()), Some(kind));
    }
    assert_eq!(GalaxyKind::parse("quasar"), None);
    assert_eq!(
        GalaxyKind::ALL.iter().filter(|k| k.is_anomaly()).count(),
        GalaxyKind::ANOMALIES.len() + GalaxyKind::HELD_OUT.len()
    );
    assert!(
        GalaxyKind::HELD_OUT
            .iter()
            .all(|k| k.is_anomaly() && !GalaxyKind::ANOMALIES.contains(k))
    );
}

/// Galaxies of a held-out `kind` with the noise-free model of the same galaxy drawn as
/// `host_kind`: both share the random stream up to the host's rendering, so the difference is
/// the anomaly alone.
fn with_host(
    kind: GalaxyKind,
    host_kind: GalaxyKind,
    per_kind: usize,
    seed: u64,
) -> Vec<(GalaxyPlan, GalaxyTruth, GalaxyMaps, GalaxyMaps)> {
    galaxies_of(kind, per_kind, seed)
        .into_iter()
        .map(|(plan, truth, maps)| {
            let mut rng = galaxy_rng(seed, plan.index);
            let (_, host) = galaxy::simulate_galaxy(host_kind, plan.geometry, &mut rng);
            (plan, truth, maps, host)
        })
        .collect()
}

fn model_at(maps: &GalaxyMaps, channel: usize, p: usize) -> f64 {
    f64::from(maps.model[channel * maps.grid.plane() + p])
}

#[test]
fn outflows_are_shock_excited_cones_on_star_forming_hosts() {
    let galaxies = with_host(GalaxyKind::Outflow, GalaxyKind::StarForming, 6, 12);
    assert_eq!(galaxies.len(), 6);
    for (plan, truth, maps, host) in galaxies {
        // Halfway up one cone, where the wind was normalised to 1–3 times the host's Hα.
        let reach = (catalogue::coverage_radius_for(truth.geometry.ifu_size) - 1.5).max(2.0);
        let pa = truth.geometry.pa_deg.to_radians();
        let (col, row) = maps
            .grid
            .pixel(-0.5 * reach * pa.cos(), 0.5 * reach * pa.sin());
        let (col, row) = (col.round() as usize, row.round() as usize);
        let p = row * maps.grid.size + col;
        let (ha, host_ha) = (model_at(&maps, ch::HA, p), model_at(&host, ch::HA, p));
        assert!(
            ha >= 2.0 * host_ha * (1.0 - 1e-4),
            "{}: Hα {ha} against the host's {host_ha}",
            plan.plateifu()
        );
        let (x, y) = log_ratios(&box_lines(&maps, col, row, false));
        assert!(
            kauffmann03_nii(x).is_none_or(|limit| y > limit),
            "{}: ({x}, {y}) is star-forming",
            plan.plateifu()
        );
        assert!(truth.anomaly_contrast >= 1.0 && truth.anomaly_radius > 2.0);
        // A cone along the minor axis: the same distance along the major axis gains far less.
        let (mcol, mrow) = maps
            .grid
            .pixel(0.5 * reach * pa.sin(), 0.5 * reach * pa.cos());
        let q = mrow.round() as usize * maps.grid.size + mcol.round() as usize;
        let excess = |p: usize| model_at(&maps, ch::HA, p) - model_at(&host, ch::HA, p);
        assert!(
            excess(p) > 3.0 * excess(q).max(0.0),
            "{}: wind Hα {} on the minor axis, {} on the major",
            plan.plateifu(),
            excess(p),
            excess(q)
        );
    }
}

#[test]
fn rings_form_stars_around_a_faint_retired_interior() {
    let galaxies = with_host(GalaxyKind::Ring, GalaxyKind::Retired, 6, 13);
    assert_eq!(galaxies.len(), 6);
    for (plan, _, maps, host) in galaxies {
        let plane = maps.grid.plane();
        let excess = |p: usize| model_at(&maps, ch::HA, p) - model_at(&host, ch::HA, p);
        let peak = (0..plane)
            .max_by(|&a, &b| excess(a).total_cmp(&excess(b)))
            .unwrap();
        let (x, y) = maps.grid.sky(peak % maps.grid.size, peak / maps.grid.size);
        assert!(
            x.hypot(y) > 1.5,
            "{}: the ring peaks {:.1}″ from the centre",
            plan.plateifu(),
            x.hypot(y)
        );
        let (c, _) = centre(&maps);
        let centre_ha = model_at(&maps, ch::HA, c * maps.grid.size + c);
        assert!(
            centre_ha < 0.5 * excess(peak),
            "{}: centre Hα {centre_ha}, ring {}",
            plan.plateifu(),
            excess(peak)
        );
        let (nii, oiii) = log_ratios(&box_lines(
            &maps,
            peak % maps.grid.size,
            peak / maps.grid.size,
            false,
        ));
        assert!(
            kauffmann03_nii(nii).is_some_and(|limit| oiii < limit),
            "{}: ring ({nii}, {oiii}) is not star-forming",
            plan.plateifu()
        );
    }
}

#[test]
fn dust_lanes_only_dim_and_redden() {
    let galaxies = with_host(GalaxyKind::DustLane, GalaxyKind::StarForming, 6, 14);
    assert_eq!(galaxies.len(), 6);
    for (plan, truth, maps, host) in galaxies {
        // Extinction removes light: no line anywhere gets brighter than the host.
        for (i, (&lane, &clear)) in maps.model.iter().zip(&host.model).enumerate() {
            assert!(
                f64::from(lane) <= f64::from(clear) * (1.0 + 1e-5) + 1e-9,
                "{}: value {i} rose from {clear} to {lane}",
                plan.plateifu()
            );
        }
        let p = truth.anomaly_row.round() as usize * maps.grid.size
            + truth.anomaly_col.round() as usize;
        let dimming = model_at(&maps, ch::HA, p) / model_at(&host, ch::HA, p);
        let decrement = |m: &GalaxyMaps| model_at(m, ch::HA, p) / model_at(m, ch::HB, p);
        assert!(
            dimming < 0.6,
            "{}: Hα at the lane's core {dimming} of the host's",
            plan.plateifu()
        );
        assert!(
            decrement(&maps) > 1.3 * decrement(&host),
            "{}: Hα/Hβ {} against {}",
            plan.plateifu(),
            decrement(&maps),
            decrement(&host)
        );
    }
}

#[test]
fn held_out_kinds_are_injected_only_when_asked() {
    let default = plan_survey(&SurveyConfig {
        galaxies: 60,
        seed: 3,
        anomaly_fraction: 0.5,
        ..SurveyConfig::default()
    })
    .unwrap();
    assert!(
        default
            .iter()
            .all(|p| !GalaxyKind::HELD_OUT.contains(&p.kind))
    );
    let held_out = plan_survey(&SurveyConfig {
        galaxies: 60,
        seed: 3,
        anomaly_fraction: 0.5,
        anomaly_kinds: GalaxyKind::HELD_OUT.to_vec(),
        ..SurveyConfig::default()
    })
    .unwrap();
    for kind in GalaxyKind::HELD_OUT {
        assert_eq!(held_out.iter().filter(|p| p.kind == kind).count(), 10);
    }
    // The same positions are anomalous whichever kinds fill them.
    let anomalous = |plans: &[GalaxyPlan]| -> Vec<usize> {
        plans
            .iter()
            .filter(|p| p.kind.is_anomaly())
            .map(|p| p.index)
            .collect()
    };
    assert_eq!(anomalous(&default), anomalous(&held_out));
    for kinds in [vec![], vec![GalaxyKind::Retired]] {
        let bad = SurveyConfig {
            anomaly_kinds: kinds,
            ..SurveyConfig::default()
        };
        assert!(matches!(plan_survey(&bad), Err(DataError::Invalid(_))));
    }
}
