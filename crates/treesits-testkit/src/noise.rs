//! Deterministic, order-independent randomness: every value is a hash of (seed, what, where), so a
//! pixel gets the same value whichever thread, block or tile computes it.

/// SplitMix64's finaliser: a strong 64-bit mixer.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of a seed and three keys.
#[inline]
pub fn hash(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    mix(mix(mix(seed ^ a) ^ b) ^ c)
}

/// A uniform number in [0, 1) from a hash.
#[inline]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A roughly normal number (mean 0, standard deviation ≈ 1) from a hash: the sum of four uniforms.
#[inline]
pub fn normalish(h: u64) -> f64 {
    let s = (h & 0xffff) + (h >> 16 & 0xffff) + (h >> 32 & 0xffff) + (h >> 48);
    (s as f64 / 65_535.0 - 2.0) * 1.732
}

/// Smooth value noise in [0, 1] over the global pixel grid, with lattice spacing `scale` pixels and a
/// second octave at twice the frequency: spatially coherent fields for clouds and snow.
pub fn value_noise(seed: u64, gx: i64, gy: i64, scale: f64) -> f64 {
    let octave = |s: u64, scale: f64| {
        let fx = gx as f64 / scale;
        let fy = gy as f64 / scale;
        let (x0, y0) = (fx.floor(), fy.floor());
        let (tx, ty) = (smooth(fx - x0), smooth(fy - y0));
        let at = |i: f64, j: f64| unit(hash(s, i as i64 as u64, j as i64 as u64, 0x6e6f697365));
        let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1.0, y0) * tx;
        let bottom = at(x0, y0 + 1.0) * (1.0 - tx) + at(x0 + 1.0, y0 + 1.0) * tx;
        top * (1.0 - ty) + bottom * ty
    };
    (octave(seed, scale) * 2.0 + octave(mix(seed), scale / 2.0)) / 3.0
}

#[inline]
fn smooth(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_uniform_enough() {
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| unit(hash(7, i, 0, 0))).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let sd = ((0..n).map(|i| normalish(hash(7, i, 1, 0)).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!((sd - 1.0).abs() < 0.05, "{sd}");
    }

    #[test]
    fn value_noise_is_smooth_and_bounded() {
        let a = value_noise(3, 100, 100, 32.0);
        let b = value_noise(3, 101, 100, 32.0);
        assert!((a - b).abs() < 0.1);
        for i in 0..1000 {
            let v = value_noise(3, i * 7, -i * 3, 32.0);
            assert!((0.0..=1.0).contains(&v));
        }
    }
}
