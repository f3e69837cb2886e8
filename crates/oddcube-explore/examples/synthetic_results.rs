//! Writes a synthetic RESULTS directory (and `kinds.csv` beside it) for trying `oddcube serve`
//! and for the end-to-end browser test: `cargo run --release -p oddcube-explore --example
//! synthetic_results -- DIR [N] [SEED]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic_results DIR [GALAXIES=200] [SEED=1]");
        return ExitCode::FAILURE;
    };
    let parse =
        |v: Option<String>, default: u64| v.map(|s| s.parse::<u64>()).unwrap_or(Ok(default));
    let (Ok(n), Ok(seed)) = (parse(args.next(), 200), parse(args.next(), 1)) else {
        eprintln!("GALAXIES and SEED must be non-negative integers");
        return ExitCode::FAILURE;
    };
    match oddcube_explore::serve::synthetic::write_synthetic_results(&dir, n as usize, seed) {
        Ok(kinds) => {
            let mut csv = oddcube_data::csv::record(["plateifu", "kind"]);
            for (plateifu, kind) in &kinds {
                csv.push_str(&oddcube_data::csv::record([plateifu, kind]));
            }
            let path = dir.join("kinds.csv");
            if let Err(e) = std::fs::write(&path, csv) {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {n} synthetic galaxies to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
