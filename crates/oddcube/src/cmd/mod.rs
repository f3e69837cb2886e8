//! One module per subcommand: its clap arguments and the glue that calls the libraries.

pub mod bench;
pub mod bpt;
pub mod calibrate;
pub mod choices;
pub mod compat;
pub mod demo;
pub mod evaluate;
pub mod fetch;
pub mod ingest;
pub mod inspect;
pub mod merge;
pub mod plot;
pub mod project;
pub mod score;
pub mod serve;
pub mod similar;
pub mod simulate;
pub mod train;

/// The command line as typed (program name and arguments), for artifact provenance.
pub fn command_line() -> String {
    // `args_os`: a path that is not UTF-8 is recorded lossily, where `args` would panic.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut words = vec!["oddcube".to_string()];
    words.extend(args.into_iter().skip(1).map(|a| {
        if a.is_empty() || a.contains(char::is_whitespace) {
            format!("{a:?}")
        } else {
            a
        }
    }));
    words.join(" ")
}
