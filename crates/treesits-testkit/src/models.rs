//! The small test models of `models/testdata` (made by `make_test_models.py`), for the tests that
//! recompute what a model must give.

use std::path::{Path, PathBuf};

/// A file of `models/testdata`.
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/testdata")
        .join(name)
}

/// The test models' weight formula (`weight` in models/testdata/make_test_models.py).
pub fn weight(seed: usize, i: usize, j: usize, scale: f64) -> f64 {
    (((i * 31 + j * 17 + seed * 7) % 13) as f64 - 6.0) * scale
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_weights_are_those_of_the_model_maker() {
        // make_test_models.py: ((i * 31 + j * 17 + seed * 7) % 13 - 6) * scale
        assert_eq!(super::weight(0, 0, 0, 1.0), -6.0);
        assert_eq!(
            super::weight(1, 2, 3, 0.5),
            (((2 * 31 + 3 * 17 + 7) % 13) as f64 - 6.0) * 0.5
        );
        assert!(super::testdata("linear_left.onnx").exists());
    }
}
