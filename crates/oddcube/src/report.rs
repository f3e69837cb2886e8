//! How the binary words an error: the chain of causes, each said once.
//!
//! Many error types print their cause inside their own message (`path: reason`) and also hand
//! it on as `source()`, so printing the chain naively (`{:#}`) repeats it
//! (`manifest.json: No such file … : No such file …`). [`error_message`] keeps a cause only
//! when its text is not already in what has been said.

/// `err` and its causes as one line, outermost first, separated by `: `, each cause's text
/// appearing once.
pub fn error_message(err: &anyhow::Error) -> String {
    join_causes(err.chain().map(ToString::to_string))
}

/// Joins messages, outermost first, with `: `, skipping any message (trimmed) that is empty or
/// already contained in the text so far.
pub fn join_causes(messages: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for message in messages {
        let message = message.trim();
        if message.is_empty() || out.contains(message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped {
        path: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2) (is this a RESULTS directory?)",
        );
        let err = anyhow::Error::new(Wrapped {
            path: "res/manifest.json",
            source: io,
        })
        .context("in res");
        let naive = format!("{err:#}");
        assert_eq!(naive.matches("No such file").count(), 2, "{naive}");
        let said = error_message(&err);
        assert_eq!(
            said,
            "in res: res/manifest.json: No such file or directory (os error 2) (is this a RESULTS directory?)"
        );
        // Causes that add something are kept.
        assert_eq!(
            join_causes(["a".to_string(), "b: c".to_string(), "c".to_string()]),
            "a: b: c"
        );
        assert_eq!(join_causes(["x".to_string(), " ".to_string()]), "x");
    }
}
