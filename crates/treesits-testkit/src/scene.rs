//! The synthetic world: which species grows where, how each species' reflectance changes through
//! the year, and what the atmosphere (clouds, shadows, snow, swath edges) does to each acquisition.
//!
//! Everything is a pure function of (seed, global pixel index, acquisition), so the generator can
//! stream any block in any order, and tests can ask what a pixel should be.

use treesits_core::level2::{BOA_NODATA, QAI_NODATA};
use treesits_core::qai::{AerosolState, CloudState, Illumination, Qai, QaiFlag};
use treesits_core::species::NON_FOREST;
use treesits_core::{Date, Sensor};

use crate::noise::{hash, mix, normalish, unit, value_noise};

/// Spectral archetypes: reflectance × 10000 for the ten Sentinel-2 bands, leaf-off (winter) and
/// full-leaf (summer).
const CONIFER: ([f64; 10], [f64; 10]) = (
    [180., 330., 190., 520., 1100., 1350., 1500., 1600., 900., 420.],
    [200., 420., 210., 650., 1600., 2000., 2250., 2350., 1050., 480.],
);
const BROADLEAF: ([f64; 10], [f64; 10]) = (
    [380., 560., 560., 820., 1150., 1300., 1450., 1550., 2000., 1300.],
    [250., 560., 260., 850., 2500., 3200., 3500., 3600., 1750., 850.],
);
const OPEN_LAND: ([f64; 10], [f64; 10]) = (
    [450., 650., 700., 950., 1300., 1450., 1600., 1650., 2300., 1600.],
    [300., 700., 300., 1000., 2800., 3600., 3900., 4000., 2100., 1000.],
);

/// How one class looks through the year.
#[derive(Debug, Clone, Copy)]
struct Phenology {
    archetype: ([f64; 10], [f64; 10]),
    /// Day of year of green-up and of senescence (mid-points of the logistic steps).
    sos: f64,
    eos: f64,
    /// Multipliers for visible (bands 0–2), red-edge/NIR (3–7) and SWIR (8–9).
    vis: f64,
    nir: f64,
    swir: f64,
    /// Scales the seasonal amplitude.
    amplitude: f64,
    /// Extra red/green reflectance around senescence (autumn colour).
    autumn: f64,
}

#[allow(clippy::too_many_arguments)]
const fn ph(
    archetype: ([f64; 10], [f64; 10]),
    sos: f64,
    eos: f64,
    vis: f64,
    nir: f64,
    swir: f64,
    amplitude: f64,
    autumn: f64,
) -> Phenology {
    Phenology {
        archetype,
        sos,
        eos,
        vis,
        nir,
        swir,
        amplitude,
        autumn,
    }
}

/// Classes 0–9 (species, as in `treesits_core::species`) and 10 (non-forest).
const PHENOLOGY: [Phenology; 11] = [
    ph(CONIFER, 140., 280., 0.90, 0.92, 0.95, 1.0, 0.0), // spruce
    ph(CONIFER, 135., 285., 0.97, 1.03, 0.88, 1.0, 0.0), // silver fir
    ph(CONIFER, 125., 290., 0.85, 1.12, 1.00, 1.2, 0.0), // Douglas fir
    ph(CONIFER, 130., 275., 1.28, 0.97, 1.22, 0.8, 0.0), // pine
    ph(BROADLEAF, 136., 292., 1.06, 0.94, 1.06, 1.0, 0.0), // oak
    ph(BROADLEAF, 127., 300., 1.00, 1.00, 0.98, 1.0, 700.), // red oak
    ph(BROADLEAF, 117., 290., 0.94, 1.10, 0.94, 1.1, 150.), // beech
    ph(BROADLEAF, 111., 279., 1.02, 1.04, 1.12, 0.9, 0.0), // sycamore
    ph(CONIFER, 118., 272., 1.12, 1.08, 1.10, 2.4, 250.), // other conifer (larch-like)
    ph(BROADLEAF, 104., 268., 1.12, 0.90, 1.16, 0.85, 0.0), // other broadleaf
    ph(OPEN_LAND, 100., 205., 1.00, 1.00, 1.00, 1.0, 0.0), // non-forest
];

/// Relative frequency of classes 0–10 (non-forest last), roughly as in a German forest.
const CLASS_WEIGHTS: [f64; 11] = [17., 6., 6., 14., 10., 5., 14., 5., 5., 6., 22.];

/// Forest stands are Voronoi cells of jittered points on a lattice this many pixels apart.
pub const STAND_SPACING: i64 = 14;
/// Lattice spacing of the cloud field, in pixels.
pub const CLOUD_SCALE: f64 = 36.0;

/// The q-quantile of a cloud field, estimated from a fixed sample of points far apart.
fn field_quantile(key: u64, q: f64) -> f64 {
    let mut v: Vec<f64> = (0..4000i64)
        .map(|i| value_noise(key, (i % 64) * 23 + i / 64 * 7, (i / 64) * 29, CLOUD_SCALE))
        .collect();
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64) as usize).min(v.len() - 1)]
}

fn logistic(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

/// One acquisition (a date and a sensor) and its atmosphere.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Acquisition {
    pub date: Date,
    #[serde(serialize_with = "ser_sensor")]
    pub sensor: Sensor,
    /// Intended share of opaque cloud, 0–1.
    pub cloud_cover: f64,
    /// Whether thin cirrus is present.
    pub cirrus: bool,
    /// Whether snow can lie (winter dates).
    pub snow: bool,
    /// Whether the orbit's swath edge cuts the cube (pixels beyond it are nodata).
    pub swath_edge: bool,
    /// Aerosol state written for the whole scene (not screened by default).
    pub aerosol_interpolated: bool,
    #[serde(skip)]
    key: u64,
    /// Cloud-field value above which a pixel is opaque cloud (the field's (1 − cloud_cover) quantile).
    #[serde(skip)]
    cloud_threshold: f64,
}

fn ser_sensor<S: serde::Serializer>(s: &Sensor, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.name())
}

/// What one pixel of one acquisition looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub qai: i16,
    /// BOA values in the sensor's band order (only the first `sensor.bands().len()` are used).
    pub boa: [i16; 10],
}

/// The synthetic world for one seed.
#[derive(Debug, Clone)]
pub struct Scene {
    pub seed: u64,
    pub acquisitions: Vec<Acquisition>,
}

impl Scene {
    /// Plans `dates` acquisitions over `year`, sensors taking turns. Every seventh acquisition (with two
    /// or more sensors) shares its date with the one before, so ordering by (date, sensor) matters.
    pub fn new(seed: u64, year: i32, dates: usize, sensors: &[Sensor]) -> Scene {
        let start = Date::new(year, 1, 1).expect("1 January exists");
        let days = if Date::new(year, 2, 29).is_some() {
            366
        } else {
            365
        };
        let mut acquisitions: Vec<Acquisition> = Vec::with_capacity(dates);
        for i in 0..dates {
            let h = hash(seed, 0xacc, i as u64, 0);
            let sensor = sensors[i % sensors.len().max(1)];
            let same_day = sensors.len() > 1 && i % 7 == 3 && i > 0;
            let date = if same_day {
                acquisitions[i - 1].date
            } else {
                let base = ((i as f64 + 0.5) * days as f64 / dates as f64).floor() as i32;
                let jitter = (unit(h) * 5.0).floor() as i32 - 2;
                start.add_days((base + jitter).clamp(0, days - 1))
            };
            // A mix of clear, partly cloudy and mostly cloudy scenes, as in central Europe.
            let r = unit(mix(h));
            let cloud_cover = if r < 0.3 {
                unit(mix(h ^ 1)) * 0.05
            } else if r < 0.75 {
                0.1 + unit(mix(h ^ 2)) * 0.4
            } else {
                0.5 + unit(mix(h ^ 3)) * 0.35
            };
            let doy = date.day_of_year();
            acquisitions.push(Acquisition {
                date,
                sensor,
                cloud_cover,
                cirrus: unit(mix(h ^ 4)) < 0.2,
                snow: !(75..=330).contains(&doy),
                swath_edge: unit(mix(h ^ 5)) < 0.25,
                aerosol_interpolated: unit(mix(h ^ 6)) < 0.3,
                key: mix(h ^ 7),
                cloud_threshold: 0.0,
            });
        }
        // Unique (date, sensor) pairs, chronological.
        acquisitions.sort_by_key(|a| (a.date, a.sensor));
        acquisitions.dedup_by(|a, b| a.date == b.date && a.sensor == b.sensor);
        for a in &mut acquisitions {
            a.cloud_threshold = field_quantile(a.key, 1.0 - a.cloud_cover);
        }
        Scene { seed, acquisitions }
    }

    /// The true class (0–9 species, 10 non-forest) at a global pixel index.
    pub fn truth(&self, gx: i64, gy: i64) -> u8 {
        let s = STAND_SPACING;
        let (cx, cy) = (gx.div_euclid(s), gy.div_euclid(s));
        let mut best = (f64::MAX, 0u64);
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (nx, ny) = (cx + dx, cy + dy);
                let h = hash(self.seed, 0x57a4d, nx as u64, ny as u64);
                let px = (nx * s) as f64 + unit(h) * s as f64;
                let py = (ny * s) as f64 + unit(mix(h)) * s as f64;
                let d = (px - gx as f64 - 0.5).powi(2) + (py - gy as f64 - 0.5).powi(2);
                if d < best.0 {
                    best = (d, h);
                }
            }
        }
        let total: f64 = CLASS_WEIGHTS.iter().sum();
        let mut r = unit(mix(best.1 ^ 0xc1a55)) * total;
        for (class, w) in CLASS_WEIGHTS.iter().enumerate() {
            if r < *w {
                return class as u8;
            }
            r -= w;
        }
        NON_FOREST
    }

    /// The surface reflectance (× 10000, Sentinel-2 band order) of a class on a day of year, before
    /// per-pixel and per-observation variation.
    pub fn class_spectrum(class: u8, doy: f64) -> [f64; 10] {
        let p = PHENOLOGY[usize::from(class.min(NON_FOREST))];
        let rate = 7.0;
        let green = logistic((doy - p.sos) / rate) - logistic((doy - p.eos) / rate);
        let autumn = (-((doy - p.eos + 10.0) / 18.0).powi(2)).exp() * p.autumn;
        let mut out = [0.0; 10];
        for b in 0..10 {
            let mult = match b {
                0..=2 => p.vis,
                3..=7 => p.nir,
                _ => p.swir,
            };
            let (w, s) = (p.archetype.0[b], p.archetype.1[b]);
            let v = (w + (s - w) * p.amplitude * green) * mult;
            let colour = match b {
                1 => 0.5 * autumn,
                2 => autumn,
                _ => 0.0,
            };
            out[b] = v + colour;
        }
        out
    }

    /// What acquisition `acq` recorded at global pixel (gx, gy).
    pub fn observe(&self, acq: &Acquisition, gx: i64, gy: i64, class: u8) -> Observation {
        let k = acq.key;
        // Swath edge: a straight line across the cube; beyond it there is no data.
        if acq.swath_edge {
            let a = unit(mix(k ^ 0x5a));
            let c = (gx as f64) * (0.6 + a * 0.3) + (gy as f64) * (0.4 - a * 0.3);
            let cut = (unit(mix(k ^ 0x5b)) * 0.6 + 0.3) * 1000.0 + (a - 0.5) * 200.0;
            if c.rem_euclid(2000.0) > 1000.0 + cut {
                return Observation {
                    qai: QAI_NODATA,
                    boa: [BOA_NODATA; 10],
                };
            }
        }

        // Surface: class spectrum at this pixel's own phenology, brightness, noise.
        let ph = hash(self.seed, 0x919e1, gx as u64, gy as u64);
        let shift = (unit(ph) - 0.5) * 14.0;
        let bright = 0.88 + unit(mix(ph)) * 0.24;
        let doy = f64::from(acq.date.day_of_year()) + shift;
        let spectrum = Scene::class_spectrum(class, doy);
        let mut refl = [0.0f64; 10];
        for b in 0..10 {
            let n = hash(k, gx as u64, gy as u64, b as u64);
            refl[b] = spectrum[b] * bright * (1.0 + 0.045 * normalish(n)) + 25.0 * normalish(mix(n));
        }

        let mut q = Qai(0);
        if acq.aerosol_interpolated {
            q = q.with_aerosol(AerosolState::Interpolated);
        }
        if acq.snow {
            q = q.with_flag(QaiFlag::HighSunZenith, true);
        }
        // Terrain illumination (not screened by default): a patchy low-illumination field.
        if value_noise(self.seed ^ 0x111, gx, gy, 20.0) > 0.78 {
            q = q.with_illumination(Illumination::Low);
        }

        // Clouds: threshold a smooth field so that roughly `cloud_cover` of the scene is opaque.
        let cloud_field = |x: i64, y: i64| value_noise(k, x, y, CLOUD_SCALE);
        let threshold = acq.cloud_threshold;
        let field = cloud_field(gx, gy);
        // Shadows fall a fixed offset away from the cloud that casts them.
        let shadow_field = cloud_field(gx - 9, gy - 6);
        if field > threshold {
            q = q.with_cloud(CloudState::Opaque);
            let c = 3000.0 + (field - threshold) * 9000.0;
            for (b, r) in refl.iter_mut().enumerate() {
                *r = c * (1.0 - 0.04 * b as f64)
                    + 150.0 * normalish(hash(k, gx as u64, gy as u64, 40 + b as u64));
            }
        } else if field > threshold - 0.06 {
            q = q.with_cloud(CloudState::Buffer);
            for r in refl.iter_mut() {
                *r = *r * 0.8 + 700.0;
            }
        } else if shadow_field > threshold {
            q = q.with_flag(QaiFlag::Shadow, true);
            for r in refl.iter_mut() {
                *r *= 0.35;
            }
        } else if acq.cirrus && value_noise(k ^ 0xc1, gx, gy, CLOUD_SCALE * 2.0) > 0.62 {
            q = q.with_cloud(CloudState::Cirrus);
            for (b, r) in refl.iter_mut().enumerate() {
                *r += if b < 3 { 550.0 } else { 250.0 };
            }
        } else if acq.snow && value_noise(k ^ 0x5e, gx, gy, 24.0) > 0.45 {
            q = q.with_flag(QaiFlag::Snow, true);
            let snow = [7200., 7000., 6800., 6500., 6200., 6000., 5800., 5600., 600., 450.];
            for (r, s) in refl.iter_mut().zip(snow) {
                *r = *r * 0.2 + s * 0.8;
            }
        }

        // Rare radiometric defects, flagged as FORCE flags them.
        let d = unit(hash(k, gx as u64, gy as u64, 0xdef));
        if d < 0.002 {
            refl[0] = -40.0 - 200.0 * d / 0.002;
        } else if d > 0.999 {
            refl[7] = 16_000.0;
            q = q.with_flag(QaiFlag::Saturation, true);
        }
        if refl.iter().any(|r| *r < 0.0) {
            q = q.with_flag(QaiFlag::Subzero, true);
        }

        let mut boa = [BOA_NODATA; 10];
        if acq.sensor.is_sentinel2() {
            for b in 0..10 {
                boa[b] = refl[b].round().clamp(-9000.0, 16_000.0) as i16;
            }
        } else {
            for (i, b) in [0usize, 1, 2, 7, 8, 9].into_iter().enumerate() {
                boa[i] = refl[b].round().clamp(-9000.0, 16_000.0) as i16;
            }
        }
        Observation { qai: q.0 as i16, boa }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquisitions_are_sorted_unique_and_share_some_dates() {
        let s = Scene::new(1, 2021, 30, &[Sensor::Sen2a, Sensor::Sen2b]);
        assert_eq!(s.acquisitions.len(), 30);
        for w in s.acquisitions.windows(2) {
            assert!((w[0].date, w[0].sensor) < (w[1].date, w[1].sensor));
        }
        assert!(s.acquisitions.windows(2).any(|w| w[0].date == w[1].date));
        assert!(s.acquisitions.iter().all(|a| a.date.year() == 2021));
    }

    #[test]
    fn truth_forms_stands_with_every_class() {
        let s = Scene::new(5, 2021, 1, &[Sensor::Sen2a]);
        let mut counts = [0usize; 11];
        let mut same_as_right = 0;
        for y in 0..200 {
            for x in 0..200 {
                let c = s.truth(x, y);
                counts[usize::from(c)] += 1;
                same_as_right += usize::from(c == s.truth(x + 1, y));
            }
        }
        assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
        // Stands are patches: most neighbours share their class.
        assert!(same_as_right > 200 * 200 * 8 / 10, "{same_as_right}");
    }

    #[test]
    fn broadleaf_greens_up_and_conifers_stay() {
        let nir = |class, doy| Scene::class_spectrum(class, doy)[7];
        assert!(nir(6, 200.0) > 1.8 * nir(6, 20.0)); // beech
        assert!(nir(0, 200.0) < 1.6 * nir(0, 20.0)); // spruce
                                                     // Red oak turns red in autumn, oak does not.
        assert!(Scene::class_spectrum(5, 290.0)[2] > Scene::class_spectrum(4, 290.0)[2] + 300.0);
    }

    #[test]
    fn clouds_are_bright_and_flagged() {
        let s = Scene::new(9, 2021, 40, &[Sensor::Sen2a, Sensor::Sen2b]);
        let acq = s
            .acquisitions
            .iter()
            .max_by(|a, b| a.cloud_cover.total_cmp(&b.cloud_cover))
            .unwrap();
        let (mut cloudy, mut clear) = (vec![], vec![]);
        for y in 0..100 {
            for x in 0..100 {
                let o = s.observe(acq, x, y, s.truth(x, y));
                match Qai(o.qai as u16).cloud() {
                    CloudState::Opaque => cloudy.push(f64::from(o.boa[0])),
                    CloudState::Clear if o.qai & 0b1_1001 == 0 => clear.push(f64::from(o.boa[0])),
                    _ => {}
                }
            }
        }
        assert!(!cloudy.is_empty() && !clear.is_empty());
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(&cloudy) > 2500.0 && mean(&clear) < 800.0,
            "{} {}",
            mean(&cloudy),
            mean(&clear)
        );
    }
}
