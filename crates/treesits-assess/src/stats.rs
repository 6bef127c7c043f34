//! Accuracy statistics of a confusion matrix, and the area-adjusted (stratified) estimators of
//! Olofsson et al. (2014), "Good practices for estimating area and assessing accuracy of land change",
//! Remote Sensing of Environment 148, 42–57 (equations cited by number below).
//!
//! No GDAL here: counts in, numbers out. Orientation everywhere in this module: **rows = reference
//! class, columns = map class** (`counts[r * k + m]`). The stratified estimators take the map classes
//! as strata (a stratified random sample by map class, or simple random / systematic samples treated
//! as post-stratified, as the paper does); every estimate that cannot be computed (a class without
//! samples, a stratum of one sample for a variance) is `None`.

/// z of the two-sided 95 % normal confidence interval, rounded to 1.96 as Olofsson et al. (2014)
/// (and sits, FORCE) use it.
pub const Z95: f64 = 1.96;

/// Sample counts of reference class × map class over `k` classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    k: usize,
    counts: Vec<u64>,
}

impl Confusion {
    pub fn new(k: usize) -> Confusion {
        Confusion {
            k,
            counts: vec![0; k * k],
        }
    }

    /// From rows (reference) of counts per map class; every row must have `rows.len()` entries.
    pub fn from_rows(rows: &[Vec<u64>]) -> Confusion {
        let k = rows.len();
        let mut c = Confusion::new(k);
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), k, "a confusion matrix is square");
            for (m, &n) in row.iter().enumerate() {
                c.counts[r * k + m] = n;
            }
        }
        c
    }

    pub fn classes(&self) -> usize {
        self.k
    }

    pub fn add(&mut self, reference: usize, map: usize, n: u64) {
        self.counts[reference * self.k + map] += n;
    }

    pub fn get(&self, reference: usize, map: usize) -> u64 {
        self.counts[reference * self.k + map]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Samples whose reference class is `r`.
    pub fn reference_total(&self, r: usize) -> u64 {
        (0..self.k).map(|m| self.get(r, m)).sum()
    }

    /// Samples whose map class is `m` (the sample size of stratum `m`).
    pub fn map_total(&self, m: usize) -> u64 {
        (0..self.k).map(|r| self.get(r, m)).sum()
    }

    pub fn rows(&self) -> Vec<Vec<u64>> {
        (0..self.k)
            .map(|r| (0..self.k).map(|m| self.get(r, m)).collect())
            .collect()
    }

    /// Adds another matrix of the same classes.
    pub fn merge(&mut self, other: &Confusion) {
        assert_eq!(self.k, other.k);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }
}

/// Precision, recall and F1 of one class, from the sample counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    /// Samples of this reference class.
    pub reference_samples: u64,
    /// Samples mapped as this class.
    pub map_samples: u64,
    /// Samples that are this class in both.
    pub correct: u64,
    /// correct / map_samples: user's accuracy (1 − commission error).
    pub precision: Option<f64>,
    /// correct / reference_samples: producer's accuracy (1 − omission error).
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall.
    pub f1: Option<f64>,
}

/// The unweighted ("sample") accuracy: every sample counts once.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleAccuracy {
    pub samples: u64,
    pub overall: Option<f64>,
    /// Cohen's kappa: (p_o − p_e) / (1 − p_e).
    pub kappa: Option<f64>,
    pub classes: Vec<ClassScores>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

pub fn sample_accuracy(c: &Confusion) -> SampleAccuracy {
    let n = c.total();
    let correct: u64 = (0..c.k).map(|i| c.get(i, i)).sum();
    let overall = ratio(correct, n);
    let kappa = overall.and_then(|po| {
        let nf = n as f64;
        let pe: f64 = (0..c.k)
            .map(|i| (c.reference_total(i) as f64 / nf) * (c.map_total(i) as f64 / nf))
            .sum();
        (pe < 1.0).then(|| (po - pe) / (1.0 - pe))
    });
    let classes = (0..c.k)
        .map(|i| {
            let reference_samples = c.reference_total(i);
            let map_samples = c.map_total(i);
            let correct = c.get(i, i);
            let precision = ratio(correct, map_samples);
            let recall = ratio(correct, reference_samples);
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                (Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            ClassScores {
                reference_samples,
                map_samples,
                correct,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    SampleAccuracy {
        samples: n,
        overall,
        kappa,
        classes,
    }
}

/// An estimate with its standard error and the half-width of its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    /// `None` when a stratum holds a single sample (its variance has no estimate).
    pub se: Option<f64>,
}

impl Estimate {
    /// Half-width of the 95 % confidence interval: 1.96 · SE.
    pub fn ci95(&self) -> Option<f64> {
        self.se.map(|s| Z95 * s)
    }
}

/// Area-adjusted estimates for one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassArea {
    /// Pixels mapped as this class.
    pub mapped_pixels: u64,
    /// W_i: the share of the mapped area in this class.
    pub mapped_proportion: f64,
    /// User's accuracy U_i = n_ii / n_i· (eq. 2), SE from eq. 6.
    pub users_accuracy: Option<Estimate>,
    /// Producer's accuracy P_j = p̂_jj / p̂_·j (eq. 3), SE from eq. 7.
    pub producers_accuracy: Option<Estimate>,
    /// p̂_·k: the estimated share of the area that truly is this class (eq. 9), SE from eq. 10.
    pub proportion: Estimate,
    /// Â_k = A · p̂_·k in pixels (eq. 11), SE = A · SE(p̂_·k) (eq. 12).
    pub area_pixels: Estimate,
}

/// The stratified estimates of Olofsson et al. (2014) §5 for a sample stratified by map class.
#[derive(Debug, Clone, PartialEq)]
pub struct AreaAdjusted {
    /// A: the whole mapped area, in pixels.
    pub total_pixels: u64,
    /// Overall accuracy Ô = Σ p̂_jj (eq. 1), SE from eq. 5.
    pub overall: Option<Estimate>,
    pub classes: Vec<ClassArea>,
    /// p̂_ij = W_i · n_ij / n_i· (eq. 4 with the strata as map classes), rows = reference, cols = map.
    pub proportions: Vec<Vec<f64>>,
    /// Map classes with mapped pixels but no sample: their area cannot be distributed over
    /// reference classes, so the estimates leave it out (they are biased by it).
    pub strata_without_samples: Vec<usize>,
}

/// The strata of the sample (the map classes): their sizes, weights and sample counts.
struct Strata<'a> {
    c: &'a Confusion,
    /// N_i·: mapped pixels per stratum.
    mapped_pixels: &'a [u64],
    /// W_i: the share of the mapped area in stratum i.
    w: Vec<f64>,
    /// n_i·: samples per stratum.
    n: Vec<u64>,
    /// Variance contribution is undefined when a sampled stratum holds one sample.
    variance_defined: bool,
}

impl Strata<'_> {
    fn new<'a>(c: &'a Confusion, mapped_pixels: &'a [u64]) -> Strata<'a> {
        let total: u64 = mapped_pixels.iter().sum();
        let w = mapped_pixels
            .iter()
            .map(|&n| if total > 0 { n as f64 / total as f64 } else { 0.0 })
            .collect();
        let n: Vec<u64> = (0..c.k).map(|m| c.map_total(m)).collect();
        Strata {
            c,
            mapped_pixels,
            w,
            variance_defined: n.iter().all(|&n| n != 1),
            n,
        }
    }

    fn k(&self) -> usize {
        self.c.k
    }

    /// n_ij / n_i· of map class (stratum) i and reference class j.
    fn share(&self, i: usize, j: usize) -> f64 {
        if self.n[i] == 0 {
            0.0
        } else {
            self.c.get(j, i) as f64 / self.n[i] as f64
        }
    }

    fn dof(&self, i: usize) -> f64 {
        (self.n[i] as f64 - 1.0).max(1.0)
    }

    fn sampled(&self, i: usize) -> bool {
        self.n[i] > 0
    }

    /// weight² · s(1 − s) / (n_i· − 1) with s = n_ij / n_i·: stratum i's term of eqs. 5, 7 and 10.
    fn variance_term(&self, i: usize, j: usize, weight: f64) -> f64 {
        let s = self.share(i, j);
        weight * weight * s * (1.0 - s) / self.dof(i)
    }

    /// An estimate whose variance is `var`, when the variance is defined.
    fn estimate(&self, value: f64, var: f64) -> Estimate {
        Estimate {
            value,
            se: self.variance_defined.then(|| var.sqrt()),
        }
    }

    /// p̂_ij = W_i · n_ij / n_i· (eq. 4), rows = reference j, columns = map i.
    fn proportions(&self) -> Vec<Vec<f64>> {
        let k = self.k();
        let mut proportions = vec![vec![0.0; k]; k];
        for (j, row) in proportions.iter_mut().enumerate() {
            for (i, p) in row.iter_mut().enumerate() {
                *p = self.w[i] * self.share(i, j);
            }
        }
        proportions
    }

    /// Ô = Σ p̂_jj (eq. 1), variance from eq. 5; `None` without samples.
    fn overall(&self, proportions: &[Vec<f64>]) -> Option<Estimate> {
        (self.c.total() > 0).then(|| {
            let value: f64 = (0..self.k()).map(|j| proportions[j][j]).sum();
            let var: f64 = (0..self.k())
                .filter(|&i| self.sampled(i))
                .map(|i| self.variance_term(i, i, self.w[i]))
                .sum();
            self.estimate(value, var)
        })
    }

    /// U_j = n_jj / n_j· (eq. 2), SE from eq. 6; `None` for a stratum without samples.
    fn users_accuracy(&self, j: usize) -> Option<Estimate> {
        self.sampled(j).then(|| {
            let u = self.share(j, j);
            Estimate {
                value: u,
                se: (self.n[j] > 1).then(|| (u * (1.0 - u) / self.dof(j)).sqrt()),
            }
        })
    }

    /// P_j = p̂_jj / p̂_·j (eq. 3), variance from eq. 7; `None` when class j is estimated absent.
    fn producers_accuracy(&self, j: usize, p_jj: f64, p_ref_j: f64) -> Option<Estimate> {
        (p_ref_j > 0.0).then(|| {
            let p = p_jj / p_ref_j;
            let pixels = |i: usize| self.mapped_pixels[i] as f64;
            // Eq. 7, with N_i· the mapped pixels of stratum i and N̂_·j = Σ_i N_i·/n_i· · n_ij.
            let nhat_j: f64 = (0..self.k())
                .filter(|&i| self.sampled(i))
                .map(|i| pixels(i) * self.share(i, j))
                .sum();
            let u = self.share(j, j);
            let nj = pixels(j);
            let first = if self.sampled(j) {
                nj * nj * (1.0 - p) * (1.0 - p) * u * (1.0 - u) / self.dof(j)
            } else {
                0.0
            };
            let second: f64 = (0..self.k())
                .filter(|&i| i != j && self.sampled(i))
                .map(|i| self.variance_term(i, j, pixels(i)))
                .sum();
            self.estimate(p, (first + p * p * second) / (nhat_j * nhat_j))
        })
    }

    /// SE(p̂_·j) = sqrt(Σ_i W_i² · (n_ij/n_i·)(1 − n_ij/n_i·) / (n_i· − 1)) (eq. 10).
    fn proportion_se(&self, j: usize) -> Option<f64> {
        let var: f64 = (0..self.k())
            .filter(|&i| self.sampled(i))
            .map(|i| self.variance_term(i, j, self.w[i]))
            .sum();
        self.variance_defined.then(|| var.sqrt())
    }

    /// Every estimate of class j; `p_ref_j` = p̂_·j, `a` = the mapped area in pixels.
    fn class_area(&self, j: usize, proportions: &[Vec<f64>], p_ref_j: f64, a: f64) -> ClassArea {
        let se_p = self.proportion_se(j);
        ClassArea {
            mapped_pixels: self.mapped_pixels[j],
            mapped_proportion: self.w[j],
            users_accuracy: self.users_accuracy(j),
            producers_accuracy: self.producers_accuracy(j, proportions[j][j], p_ref_j),
            proportion: Estimate {
                value: p_ref_j,
                se: se_p,
            },
            // Eqs. 11 and 12: Â = A · p̂_·j, SE(Â) = A · SE(p̂_·j).
            area_pixels: Estimate {
                value: p_ref_j * a,
                se: se_p.map(|s| s * a),
            },
        }
    }
}

/// Area-adjusted accuracy and area estimates. `mapped_pixels[m]` is the number of map pixels of class
/// `m` (the stratum sizes N_i); `c` holds the sample counts.
pub fn area_adjusted(c: &Confusion, mapped_pixels: &[u64]) -> AreaAdjusted {
    let k = c.k;
    assert_eq!(mapped_pixels.len(), k);
    let total: u64 = mapped_pixels.iter().sum();
    let strata = Strata::new(c, mapped_pixels);
    let proportions = strata.proportions();
    // p̂_·j: estimated reference-class proportions (column sums in the paper's map-rows orientation).
    let p_ref: Vec<f64> = (0..k).map(|j| proportions[j].iter().sum()).collect();
    let classes = (0..k)
        .map(|j| strata.class_area(j, &proportions, p_ref[j], total as f64))
        .collect();
    AreaAdjusted {
        total_pixels: total,
        overall: strata.overall(&proportions),
        classes,
        strata_without_samples: (0..k)
            .filter(|&i| mapped_pixels[i] > 0 && !strata.sampled(i))
            .collect(),
        proportions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Olofsson et al. (2014), Table 8 (§5.1 example): deforestation, forest gain, stable forest,
    /// stable non-forest; the paper's rows are map classes, ours are reference classes, so this is
    /// the transpose of its table.
    fn olofsson_table8() -> (Confusion, Vec<u64>) {
        let map_rows = [[66u64, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]];
        let mut c = Confusion::new(4);
        for (m, row) in map_rows.iter().enumerate() {
            for (r, &n) in row.iter().enumerate() {
                c.add(r, m, n);
            }
        }
        // Mapped area in 30 m Landsat pixels.
        (c, vec![200_000, 150_000, 3_200_000, 6_450_000])
    }

    fn round(x: f64, digits: i32) -> f64 {
        let f = 10f64.powi(digits);
        (x * f).round() / f
    }

    #[test]
    fn olofsson_2014_accuracies_are_reproduced() {
        let (c, mapped) = olofsson_table8();
        assert_eq!(c.total(), 640);
        let e = area_adjusted(&c, &mapped);
        // Published (p. 54): user's 0.88 ± 0.07, 0.73 ± 0.10, 0.93 ± 0.04, 0.96 ± 0.02.
        let ua: Vec<(f64, f64)> = e
            .classes
            .iter()
            .map(|x| {
                let u = x.users_accuracy.unwrap();
                (round(u.value, 2), round(u.ci95().unwrap(), 2))
            })
            .collect();
        assert_eq!(ua, vec![(0.88, 0.07), (0.73, 0.10), (0.93, 0.04), (0.96, 0.02)]);
        // Producer's 0.75 ± 0.21, 0.85 ± 0.25, 0.93 ± 0.03, 0.96 ± 0.02.
        let pa: Vec<(f64, f64)> = e
            .classes
            .iter()
            .map(|x| {
                let p = x.producers_accuracy.unwrap();
                (round(p.value, 2), round(p.ci95().unwrap(), 2))
            })
            .collect();
        assert_eq!(pa, vec![(0.75, 0.21), (0.85, 0.25), (0.93, 0.03), (0.96, 0.02)]);
        // Overall 0.95 ± 0.02.
        let o = e.overall.unwrap();
        assert_eq!((round(o.value, 2), round(o.ci95().unwrap(), 2)), (0.95, 0.02));
        assert!(e.strata_without_samples.is_empty());
    }

    #[test]
    fn olofsson_2014_area_estimates_are_reproduced() {
        let (c, mapped) = olofsson_table8();
        let e = area_adjusted(&c, &mapped);
        // Published: deforestation 21,158 ± 6,158 ha, gain 11,686 ± 3,756 ha, stable forest
        // 285,770 ± 15,510 ha, stable non-forest 581,386 ± 16,282 ha (1 pixel = 0.09 ha).
        let ha: Vec<(f64, f64)> = e
            .classes
            .iter()
            .map(|x| {
                (
                    (x.area_pixels.value * 0.09).round(),
                    (x.area_pixels.ci95().unwrap() * 0.09).round(),
                )
            })
            .collect();
        assert_eq!(
            ha,
            vec![
                (21_158.0, 6_158.0),
                (11_686.0, 3_756.0),
                (285_770.0, 15_510.0),
                (581_386.0, 16_282.0)
            ]
        );
        // The estimated proportions sum to one, and eq. 9 for deforestation by hand:
        // 0.02·66/75 + 0.32·1/165 + 0.645·2/325.
        let sum: f64 = e.classes.iter().map(|x| x.proportion.value).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let by_hand = 0.02 * 66.0 / 75.0 + 0.32 / 165.0 + 0.645 * 2.0 / 325.0;
        assert!((e.classes[0].proportion.value - by_hand).abs() < 1e-15);
        assert_eq!(e.total_pixels, 10_000_000);
        assert!((e.classes[2].mapped_proportion - 0.32).abs() < 1e-15);
    }

    #[test]
    fn sample_accuracy_by_hand() {
        // reference rows, map columns: 2 classes, 10 samples.
        let c = Confusion::from_rows(&[vec![4, 1], vec![2, 3]]);
        let s = sample_accuracy(&c);
        assert_eq!(s.samples, 10);
        assert_eq!(s.overall, Some(0.7));
        // p_e = 0.5·0.6 + 0.5·0.4 = 0.5 → kappa = (0.7 − 0.5) / 0.5 = 0.4.
        assert!((s.kappa.unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(s.classes[0].precision, Some(4.0 / 6.0));
        assert_eq!(s.classes[0].recall, Some(0.8));
        let f1 = 2.0 * (4.0 / 6.0) * 0.8 / (4.0 / 6.0 + 0.8);
        assert!((s.classes[0].f1.unwrap() - f1).abs() < 1e-12);
        assert_eq!(s.classes[1].precision, Some(0.75));
        assert_eq!(s.classes[1].recall, Some(0.6));
        assert_eq!((s.classes[1].reference_samples, s.classes[1].map_samples), (5, 4));
    }

    #[test]
    fn undefined_values_are_none() {
        // Class 1 is never mapped and never in the reference; class 2 only in the reference.
        let c = Confusion::from_rows(&[vec![5, 0, 0], vec![0, 0, 0], vec![1, 0, 0]]);
        let s = sample_accuracy(&c);
        assert_eq!(s.classes[1].precision, None);
        assert_eq!(s.classes[1].recall, None);
        assert_eq!(s.classes[1].f1, None);
        assert_eq!(s.classes[2].precision, None);
        assert_eq!(s.classes[2].recall, Some(0.0));
        // Every sample mapped as class 0: p_e = (5/6)·1 + (1/6)·0 → kappa 0.
        assert!(s.kappa.unwrap().abs() < 1e-12);
        // A perfect single-class map has no defined kappa (p_e = 1).
        assert_eq!(sample_accuracy(&Confusion::from_rows(&[vec![3]])).kappa, None);
        assert_eq!(sample_accuracy(&Confusion::new(2)).overall, None);
    }

    #[test]
    fn census_of_every_pixel_gives_the_true_areas() {
        // Every mapped pixel is a sample: the stratified estimate of each class's area is its
        // reference pixel count exactly.
        let c = Confusion::from_rows(&[vec![90, 10], vec![5, 45]]);
        let e = area_adjusted(&c, &[95, 55]);
        assert!((e.classes[0].area_pixels.value - 100.0).abs() < 1e-9);
        assert!((e.classes[1].area_pixels.value - 50.0).abs() < 1e-9);
        assert!((e.overall.unwrap().value - 135.0 / 150.0).abs() < 1e-12);
        assert!((e.classes[0].users_accuracy.unwrap().value - 90.0 / 95.0).abs() < 1e-12);
        assert!((e.classes[0].producers_accuracy.unwrap().value - 0.9).abs() < 1e-12);
    }

    #[test]
    fn strata_without_samples_are_reported_and_single_samples_have_no_variance() {
        let c = Confusion::from_rows(&[vec![3, 0, 0], vec![0, 1, 0], vec![0, 0, 0]]);
        let e = area_adjusted(&c, &[50, 30, 20]);
        assert_eq!(e.strata_without_samples, vec![2]);
        assert!(e.classes[2].users_accuracy.is_none());
        assert_eq!(e.classes[1].users_accuracy.unwrap().se, None);
        assert_eq!(e.overall.unwrap().se, None);
        // The unsampled stratum's 20 % are nowhere.
        let sum: f64 = e.classes.iter().map(|x| x.proportion.value).sum();
        assert!((sum - 0.8).abs() < 1e-12);
    }
}
