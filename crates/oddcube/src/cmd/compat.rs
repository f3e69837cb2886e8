//! The old spellings of options that keep working for one release (docs/cli.md). Each is a
//! hidden clap argument that conflicts with its new spelling; using it prints a deprecation note
//! on stderr and the command goes on with the value.

use std::path::PathBuf;

/// Prints the deprecation note for `old` (replaced by `new`).
pub fn note(old: &str, new: &str) {
    tracing::warn!(
        "{old} is deprecated and will be removed in the next release; use {new} (docs/cli.md)"
    );
}

/// The value given under the new spelling, or — with a deprecation note — under the old one
/// (clap lets at most one of them through).
pub fn either<T>(new: Option<T>, old: Option<T>, old_name: &str, new_name: &str) -> Option<T> {
    match old {
        Some(value) => {
            note(old_name, new_name);
            Some(value)
        }
        None => new,
    }
}

/// The RESULTS directory, given as `--results DIR` or as the positional word the command has
/// always taken (both accepted, not both at once).
pub fn results(option: Option<PathBuf>, positional: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match (option, positional) {
        (Some(dir), None) | (None, Some(dir)) => Ok(dir),
        (Some(_), Some(_)) => anyhow::bail!(
            "RESULTS given twice: pass it as --results DIR or as the first word, not both"
        ),
        (None, None) => {
            anyhow::bail!("no RESULTS directory: pass --results DIR (the --out of `oddcube score`)")
        }
    }
}

/// RESULTS and the word after it (a galaxy) for commands that took both as positional words:
/// with `--results DIR`, a single word is the galaxy.
pub fn results_and_word(
    option: Option<PathBuf>,
    first: Option<String>,
    second: Option<String>,
) -> anyhow::Result<(PathBuf, Option<String>)> {
    match (option, first, second) {
        (Some(dir), word, None) => Ok((dir, word)),
        (Some(_), Some(_), Some(_)) => anyhow::bail!(
            "RESULTS given twice: pass it as --results DIR or as the first word, not both"
        ),
        (None, Some(dir), word) => Ok((PathBuf::from(dir), word)),
        (None, None, _) | (Some(_), None, Some(_)) => {
            anyhow::bail!("no RESULTS directory: pass --results DIR (the --out of `oddcube score`)")
        }
    }
}
