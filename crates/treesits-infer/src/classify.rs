//! Model outputs → prediction columns: softmax (for logits), the most probable class, its
//! probability, every class's probability and the uncertainty, stored as prediction chunks store them.

use treesits_core::chunk::ChunkColumns;
use treesits_core::contract::{ModelContract, OutputKind};
use treesits_core::prediction::{scale_prob, PredictionColumns, Uncertainty, PROB_NODATA};
use treesits_core::species::CLASS_NODATA;

/// What to compute from each pixel's class probabilities.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Output column `i` → class code.
    codes: Vec<u8>,
    kind: OutputKind,
    probabilities: bool,
    uncertainty: Option<Uncertainty>,
}

impl Classifier {
    pub fn new(
        contract: &ModelContract,
        probabilities: bool,
        uncertainty: Option<Uncertainty>,
    ) -> Classifier {
        Classifier {
            codes: contract.classes.iter().map(|c| c.code).collect(),
            kind: contract.output.kind,
            probabilities,
            uncertainty,
        }
    }

    pub fn classes(&self) -> usize {
        self.codes.len()
    }

    /// Columns for every pixel of `chunk`, all nodata until [`Classifier::fill`] sets them; pixels
    /// without observations stay nodata (class 255, probabilities 65535).
    pub fn empty_columns(&self, chunk: &ChunkColumns) -> PredictionColumns {
        let n = chunk.pixels();
        PredictionColumns {
            row: chunk.row.clone(),
            col: chunk.col.clone(),
            class: vec![CLASS_NODATA; n],
            prob: vec![PROB_NODATA; n],
            probabilities: self
                .probabilities
                .then(|| vec![PROB_NODATA; n * self.codes.len()]),
            uncertainty: self.uncertainty.map(|_| vec![PROB_NODATA; n]),
        }
    }

    /// Turns one model output row per pixel (`outputs`: `pixels.len() × classes`) into the columns
    /// of those pixels.
    pub fn fill(&self, out: &mut PredictionColumns, pixels: &[u32], outputs: &[f32]) {
        let k = self.codes.len();
        debug_assert_eq!(outputs.len(), pixels.len() * k);
        let mut p = vec![0f32; k];
        for (&pixel, row) in pixels.iter().zip(outputs.chunks_exact(k)) {
            let i = pixel as usize;
            match self.kind {
                OutputKind::Probabilities => p.copy_from_slice(row),
                OutputKind::Logits => softmax(row, &mut p),
            }
            // The first of equally probable classes wins (class-table order), as argmax does.
            let best = (0..k).fold(0, |best, j| if p[j] > p[best] { j } else { best });
            out.class[i] = self.codes[best];
            out.prob[i] = scale_prob(p[best]);
            if let Some(all) = &mut out.probabilities {
                for (dst, &v) in all[i * k..(i + 1) * k].iter_mut().zip(&p) {
                    *dst = scale_prob(v);
                }
            }
            if let (Some(u), Some(measure)) = (&mut out.uncertainty, self.uncertainty) {
                u[i] = scale_prob(measure.of(&p));
            }
        }
    }
}

/// Numerically stable softmax (in f64, so large logits neither overflow nor lose the small classes).
pub fn softmax(logits: &[f32], out: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    for (o, e) in out.iter_mut().zip(exp) {
        *o = (e / sum) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::contract::Output;
    use treesits_core::species::tree_species;

    fn contract(kind: OutputKind) -> ModelContract {
        let json = r#"{"contract_version":1,"model_id":"m","bands":["RED"],"inputs":{"values":"x"},
            "scaling":{"scale":1},"sequence":{"padding":"left"},"doy":{"encoding":"none"},
            "classes":[],"output":{"name":"y","kind":"logits"}}"#;
        let mut c: ModelContract = serde_json::from_str(json).unwrap();
        c.classes = vec![
            tree_species()[4].clone(),
            tree_species()[0].clone(),
            tree_species()[7].clone(),
        ];
        c.output = Output {
            name: "y".into(),
            kind,
        };
        c
    }

    fn chunk(pixels: usize) -> ChunkColumns {
        ChunkColumns {
            row: vec![5; pixels],
            col: (0..pixels as u32).collect(),
            offsets: vec![0; pixels + 1],
            ..Default::default()
        }
    }

    #[test]
    fn probabilities_map_to_class_codes_in_input_order() {
        let c = Classifier::new(
            &contract(OutputKind::Probabilities),
            true,
            Some(Uncertainty::Margin),
        );
        let ch = chunk(3);
        let mut out = c.empty_columns(&ch);
        // Pixel 2 gets row 0, pixel 0 gets row 1; pixel 1 has no observations.
        c.fill(&mut out, &[2, 0], &[0.1, 0.2, 0.7, 0.5, 0.25, 0.25]);
        assert_eq!(out.class, vec![4, CLASS_NODATA, 7]);
        assert_eq!(out.prob, vec![5000, PROB_NODATA, 7000]);
        assert_eq!(
            out.probabilities.unwrap(),
            vec![
                5000,
                2500,
                2500,
                PROB_NODATA,
                PROB_NODATA,
                PROB_NODATA,
                1000,
                2000,
                7000
            ]
        );
        // 1 − (0.5 − 0.25) and 1 − (0.7 − 0.2)
        assert_eq!(out.uncertainty.unwrap(), vec![7500, PROB_NODATA, 5000]);
        assert_eq!(out.col, vec![0, 1, 2]);
    }

    #[test]
    fn logits_go_through_softmax_and_ties_take_the_first_class() {
        let c = Classifier::new(&contract(OutputKind::Logits), false, Some(Uncertainty::Entropy));
        let mut out = c.empty_columns(&chunk(2));
        c.fill(
            &mut out,
            &[0, 1],
            &[1000.0, 1000.0, 1000.0, 0.0, (2f32).ln(), 0.0],
        );
        assert_eq!(out.class, vec![4, 0]);
        assert_eq!(out.prob, vec![3333, 5000]);
        assert_eq!(out.uncertainty.as_ref().unwrap()[0], 10_000);
        // p = (0.25, 0.5, 0.25): H / ln 3 = 1.5 ln 2 / ln 3
        let h = 1.5 * 2f64.ln() / 3f64.ln();
        assert_eq!(out.uncertainty.unwrap()[1], (h * 10_000.0).round() as u16);
        assert!(out.probabilities.is_none());
    }
}
