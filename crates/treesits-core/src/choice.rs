//! The error of a word that is not one of the accepted choices (`--layout`, `--uncertainty`, …).

/// A value that is not one of the accepted words; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}': expected {expected}")]
pub struct UnknownChoice {
    /// What the value was meant to be (`.prj form`, `uncertainty`, …).
    pub what: &'static str,
    pub value: String,
    /// The accepted words, as a phrase (`margin or entropy`).
    pub expected: &'static str,
}

impl UnknownChoice {
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> UnknownChoice {
        UnknownChoice {
            what,
            value: value.to_string(),
            expected,
        }
    }
}
