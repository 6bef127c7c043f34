//! Expanding input arguments into the streams a tool reads: `-` (stdin), files, directories (their
//! files with a given suffix, sorted by name, hidden files skipped) and `*`/`?` wildcards in the file
//! name (for shells that did not expand them), de-duplicated in order. Std only, so every tool uses it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One input stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Stdin => f.write_str("stdin"),
        }
    }
}

/// What a directory or a wildcard contributes.
#[derive(Debug, Clone, Default)]
pub struct InputFilter {
    /// Files of a directory must end with this (e.g. `.arrows`).
    pub suffix: String,
    /// … and must not end with any of these (e.g. `.pred.arrows` among time-series chunks).
    pub exclude_suffixes: Vec<String>,
    /// Named in the error for a directory without such files: what writes them.
    pub written_by: String,
}

impl InputFilter {
    pub fn new(suffix: &str) -> InputFilter {
        InputFilter {
            suffix: suffix.to_string(),
            ..InputFilter::default()
        }
    }

    pub fn excluding(mut self, suffix: &str) -> InputFilter {
        self.exclude_suffixes.push(suffix.to_string());
        self
    }

    pub fn written_by(mut self, tool: &str) -> InputFilter {
        self.written_by = tool.to_string();
        self
    }

    fn keeps(&self, name: &str) -> bool {
        name.ends_with(&self.suffix) && !self.exclude_suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }
}

/// Why an argument gave no input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{arg}: no such file or directory (give a file, a directory of them, or - for stdin)")]
    Missing { arg: String },
    #[error("{}: the directory holds no *{suffix} files{}", dir.display(), by_note(.written_by))]
    EmptyDir {
        dir: PathBuf,
        suffix: String,
        written_by: String,
    },
    #[error("{pattern}: matches no files")]
    NoMatch { pattern: String },
    #[error("-: stdin is given twice; give - once")]
    StdinTwice,
    #[error("{}: listing the directory failed", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn by_note(tool: &str) -> String {
    if tool.is_empty() {
        String::new()
    } else {
        format!(" ({tool} writes them)")
    }
}

/// Expands `args` in order; the same file named twice (directly, through a directory or a pattern)
/// is read once, where it first appears.
pub fn expand(args: &[String], filter: &InputFilter) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    let mut stdin = false;
    for a in args {
        if a == "-" {
            if stdin {
                return Err(InputError::StdinTwice);
            }
            stdin = true;
            out.push(Input::Stdin);
            continue;
        }
        let p = PathBuf::from(a);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains(['*', '?']) && !p.exists() {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let found = list_dir(&dir, |n| wildcard_match(name.as_bytes(), n.as_bytes()))?;
            if found.is_empty() {
                return Err(InputError::NoMatch { pattern: a.clone() });
            }
            out.extend(found.into_iter().map(Input::File));
        } else if p.is_dir() {
            let found = list_dir(&p, |n| filter.keeps(n))?;
            if found.is_empty() {
                return Err(InputError::EmptyDir {
                    dir: p,
                    suffix: filter.suffix.clone(),
                    written_by: filter.written_by.clone(),
                });
            }
            out.extend(found.into_iter().map(Input::File));
        } else if p.is_file() {
            out.push(Input::File(p));
        } else {
            return Err(InputError::Missing { arg: a.clone() });
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|i| match i {
        Input::File(p) => seen.insert(p.clone()),
        Input::Stdin => true,
    });
    Ok(out)
}

/// `*` matches any run of characters, `?` one character; everything else itself.
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], name) || (!name.is_empty() && wildcard_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// The plain files of `dir` whose names `keep` accepts, hidden ones skipped, sorted.
fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, InputError> {
    let list = |source| InputError::List {
        dir: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(list)? {
        let e = e.map_err(list)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && keep(&name) && e.path().is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(inputs: &[Input]) -> Vec<String> {
        inputs
            .iter()
            .map(|i| match i {
                Input::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                Input::Stdin => "-".into(),
            })
            .collect()
    }

    #[test]
    fn directories_files_patterns_and_stdin_expand_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "b_chunk0001.arrows",
            "a_chunk0000.arrows",
            "a_chunk0000.pred.arrows",
            "notes.txt",
            ".hidden.arrows",
        ] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.arrows")).unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let chunks = InputFilter::new(".arrows").excluding(".pred.arrows");
        let got = expand(std::slice::from_ref(&d), &chunks).unwrap();
        assert_eq!(names(&got), ["a_chunk0000.arrows", "b_chunk0001.arrows"]);
        // A pattern, a file again, stdin: the file is read once, where it first appears.
        let args = [
            format!("{d}/b_*.arrows"),
            "-".to_string(),
            format!("{d}/a_chunk000?.arrows"),
            d.clone(),
        ];
        let got = expand(&args, &chunks).unwrap();
        assert_eq!(names(&got), ["b_chunk0001.arrows", "-", "a_chunk0000.arrows"]);
        // Patterns match any name, filters apply to directories only.
        let got = expand(&[format!("{d}/*.pred.arrows")], &chunks).unwrap();
        assert_eq!(names(&got), ["a_chunk0000.pred.arrows"]);
        let preds = InputFilter::new(".pred.arrows");
        assert_eq!(
            names(&expand(std::slice::from_ref(&d), &preds).unwrap()),
            ["a_chunk0000.pred.arrows"]
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let f = InputFilter::new(".arrows").written_by("cube-extract --out-dir");
        let e = |args: &[String]| expand(args, &f).unwrap_err().to_string();
        assert_eq!(
            e(std::slice::from_ref(&d)),
            format!("{d}: the directory holds no *.arrows files (cube-extract --out-dir writes them)")
        );
        assert_eq!(
            e(&[format!("{d}/nothing")]),
            format!(
                "{d}/nothing: no such file or directory (give a file, a directory of them, or - for stdin)"
            )
        );
        assert_eq!(e(&[format!("{d}/*.x")]), format!("{d}/*.x: matches no files"));
        assert_eq!(
            e(&["-".into(), "-".into()]),
            "-: stdin is given twice; give - once"
        );
        assert!(wildcard_match(b"a*c?", b"abbbcd") && !wildcard_match(b"a*c", b"abd"));
    }
}
