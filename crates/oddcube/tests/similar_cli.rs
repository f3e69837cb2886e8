//! `oddcube similar` through the binary on a small scored survey: a catalogue galaxy's neighbours
//! equal a naive scan of the latents; a latent vector file and the galaxy's own MAPS file find
//! the same; unknown galaxies and non-RESULTS directories are clear errors.

mod common;

use common::{SURVEY_GALAXIES, SURVEY_LATENT, run_err, run_ok, s, scored_survey};
use oddcube_score::results::Results;

#[test]
fn similar_matches_a_naive_scan_for_every_kind_of_query() {
    let survey = scored_survey();
    let (tmp, sim, data, res) = (&survey.tmp, &survey.sim, &survey.data, &survey.res);
    let results = Results::open(res).unwrap();
    let catalog = &results.catalog;
    assert_eq!(
        (catalog.len(), results.latent_dim),
        (SURVEY_GALAXIES, SURVEY_LATENT)
    );
    // similar = a naive scan over the latents.
    let query = catalog.str("plateifu").unwrap()[7].clone();
    let csv = run_ok(&["similar", s(res), &query, "-k", "6", "--format", "csv"]);
    let q = &results.latents[7 * 8..8 * 8];
    let mut naive: Vec<(f64, usize)> = (0..40)
        .filter(|&j| j != 7)
        .map(|j| {
            let d: f64 = results.latents[j * 8..(j + 1) * 8]
                .iter()
                .zip(q)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum();
            (d.sqrt(), j)
        })
        .collect();
    naive.sort_by(|a, b| a.0.total_cmp(&b.0));
    let got: Vec<(String, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(got.len(), 6);
    for ((name, d), (nd, j)) in got.iter().zip(&naive) {
        assert!((d - nd).abs() <= 1e-4 * nd.max(1e-6), "{d} vs {nd}");
        assert_eq!(*name, catalog.str("plateifu").unwrap()[*j]);
    }
    // The same query as a vector file finds the galaxy itself first, at distance 0.
    let vector = tmp.path().join("q.txt");
    std::fs::write(
        &vector,
        q.iter()
            .map(|v| format!("{v:e}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let csv = run_ok(&[
        "similar",
        s(res),
        "--vector",
        s(&vector),
        "-k",
        "2",
        "--format",
        "csv",
    ]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("1,{query},0,")),
        "{csv}"
    );
    // A MAPS file is preprocessed and encoded like the dataset: the query galaxy's own file
    // finds the same neighbours as its plate-ifu (itself excluded).
    let maps = sim.join(format!(
        "manga-{query}-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"
    ));
    let by_maps = run_ok(&[
        "similar",
        s(res),
        "--maps",
        s(&maps),
        "-k",
        "6",
        "--format",
        "csv",
    ]);
    let by_name = run_ok(&["similar", s(res), &query, "-k", "6", "--format", "csv"]);
    // Encoding one galaxy alone may round differently from a batch: compare names, and
    // distances to a tolerance.
    let parse = |csv: &str| -> Vec<(String, f64)> {
        csv.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f[2].parse().unwrap())
            })
            .collect()
    };
    let (a, b) = (parse(&by_maps), parse(&by_name));
    assert_eq!(
        a.iter().map(|r| &r.0).collect::<Vec<_>>(),
        b.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    assert!(
        a.iter()
            .zip(&b)
            .all(|(x, y)| (x.1 - y.1).abs() <= 1e-3 * y.1 + 1e-6),
        "{by_maps}\n{by_name}"
    );
    // An unknown plate-ifu is an error that suggests the close ones.
    let err = run_err(&["similar", s(res), &query[..query.len() - 1]]);
    assert!(
        err.contains("did you mean") && err.contains(&query),
        "{err}"
    );
    // A directory that is not a RESULTS directory names the missing manifest.
    assert!(run_err(&["similar", s(data), &query]).contains("manifest.json"));
}
