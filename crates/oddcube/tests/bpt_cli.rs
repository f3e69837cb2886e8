//! `oddcube bpt` through the binary on a small simulated survey: one class per galaxy, mostly
//! star-forming for the simulated star-forming disks, and the table usable as evaluate labels.

mod common;

use common::{run_ok, s, scored_survey};

#[test]
fn bpt_classes_every_galaxy_and_serves_as_labels() {
    let survey = scored_survey();
    let (sim, data, res) = (&survey.sim, &survey.data, &survey.res);
    // bpt: one row per galaxy with a known class; usable as evaluate labels.
    run_ok(&["bpt", s(data)]);
    let bpt = std::fs::read_to_string(data.join("bpt.csv")).unwrap();
    assert_eq!(bpt.lines().count(), 41);
    let classes = [
        "sf",
        "composite",
        "seyfert",
        "liner",
        "ambiguous",
        "unclassified",
    ];
    assert!(
        bpt.lines()
            .skip(1)
            .all(|l| classes.contains(&l.split(',').nth(1).unwrap())),
        "{bpt}"
    );
    // The simulated star-forming disks are mostly classified star-forming.
    let truth = std::fs::read_to_string(sim.join("truth.csv")).unwrap();
    let sf: Vec<&str> = truth
        .lines()
        .filter(|l| l.split(',').nth(2) == Some("star_forming"))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let sf_as_sf = bpt
        .lines()
        .filter(|l| sf.contains(&l.split(',').next().unwrap()) && l.split(',').nth(1) == Some("sf"))
        .count();
    assert!(
        sf_as_sf * 4 >= sf.len() * 3,
        "{sf_as_sf} of {} star-forming galaxies classified sf",
        sf.len()
    );
    run_ok(&[
        "evaluate",
        s(res),
        "--labels",
        s(&data.join("bpt.csv")),
        "--label-column",
        "class",
        "--normal",
        "sf,composite",
        "--no-baseline",
    ]);
}
