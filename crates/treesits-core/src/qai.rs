//! FORCE's QAI (quality assurance information) bit field and the screen that decides which
//! observations are kept.
//!
//! | bits | meaning |
//! |---|---|
//! | 0 | nodata |
//! | 1–2 | cloud: 00 clear, 01 buffer (less confident), 10 opaque, 11 cirrus |
//! | 3 | cloud shadow |
//! | 4 | snow |
//! | 5 | water |
//! | 6–7 | aerosol: 00 estimated, 01 interpolated, 10 high, 11 fill |
//! | 8 | subzero reflectance |
//! | 9 | saturation |
//! | 10 | high sun zenith |
//! | 11–12 | illumination: 00 good, 01 low, 10 poor, 11 none (shadowed) |
//! | 13 | slope |
//! | 14 | water vapour fill |
//!
//! Two-bit fields are compared as fields: "cloud buffer" is `bits 1–2 == 01`, not "bit 1 set".

use std::fmt;
use std::str::FromStr;

/// The cloud state (bits 1–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudState {
    Clear = 0,
    Buffer = 1,
    Opaque = 2,
    Cirrus = 3,
}

/// The aerosol state (bits 6–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AerosolState {
    Estimated = 0,
    Interpolated = 1,
    High = 2,
    Fill = 3,
}

/// The illumination state (bits 11–12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Illumination {
    Good = 0,
    Low = 1,
    Poor = 2,
    None = 3,
}

/// One QAI value, decoded on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qai(pub u16);

impl Qai {
    fn bit(self, b: u32) -> bool {
        self.0 >> b & 1 == 1
    }
    fn field(self, b: u32) -> u16 {
        self.0 >> b & 0b11
    }
    pub fn nodata(self) -> bool {
        self.bit(0)
    }
    pub fn cloud(self) -> CloudState {
        [
            CloudState::Clear,
            CloudState::Buffer,
            CloudState::Opaque,
            CloudState::Cirrus,
        ][self.field(1) as usize]
    }
    pub fn shadow(self) -> bool {
        self.bit(3)
    }
    pub fn snow(self) -> bool {
        self.bit(4)
    }
    pub fn water(self) -> bool {
        self.bit(5)
    }
    pub fn aerosol(self) -> AerosolState {
        [
            AerosolState::Estimated,
            AerosolState::Interpolated,
            AerosolState::High,
            AerosolState::Fill,
        ][self.field(6) as usize]
    }
    pub fn subzero(self) -> bool {
        self.bit(8)
    }
    pub fn saturation(self) -> bool {
        self.bit(9)
    }
    pub fn high_sun_zenith(self) -> bool {
        self.bit(10)
    }
    pub fn illumination(self) -> Illumination {
        [
            Illumination::Good,
            Illumination::Low,
            Illumination::Poor,
            Illumination::None,
        ][self.field(11) as usize]
    }
    pub fn slope(self) -> bool {
        self.bit(13)
    }
    pub fn water_vapour_fill(self) -> bool {
        self.bit(14)
    }

    /// Builds a QAI value from its parts (used by the synthetic cube generator).
    pub fn with_cloud(self, c: CloudState) -> Qai {
        Qai(self.0 & !(0b11 << 1) | (c as u16) << 1)
    }
    pub fn with_aerosol(self, a: AerosolState) -> Qai {
        Qai(self.0 & !(0b11 << 6) | (a as u16) << 6)
    }
    pub fn with_illumination(self, i: Illumination) -> Qai {
        Qai(self.0 & !(0b11 << 11) | (i as u16) << 11)
    }
    pub fn with_flag(self, flag: QaiFlag, on: bool) -> Qai {
        let m = 1u16 << flag.bit();
        Qai(if on { self.0 | m } else { self.0 & !m })
    }
}

/// The one-bit QAI flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QaiFlag {
    Nodata,
    Shadow,
    Snow,
    Water,
    Subzero,
    Saturation,
    HighSunZenith,
    Slope,
    WaterVapourFill,
}

impl QaiFlag {
    pub fn bit(self) -> u32 {
        match self {
            QaiFlag::Nodata => 0,
            QaiFlag::Shadow => 3,
            QaiFlag::Snow => 4,
            QaiFlag::Water => 5,
            QaiFlag::Subzero => 8,
            QaiFlag::Saturation => 9,
            QaiFlag::HighSunZenith => 10,
            QaiFlag::Slope => 13,
            QaiFlag::WaterVapourFill => 14,
        }
    }
}

/// One screen condition: an observation fails when `qai & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Condition {
    name: &'static str,
    mask: u16,
    value: u16,
}

const fn bit(name: &'static str, b: u32) -> Condition {
    Condition {
        name,
        mask: 1 << b,
        value: 1 << b,
    }
}
const fn field(name: &'static str, b: u32, v: u16) -> Condition {
    Condition {
        name,
        mask: 0b11 << b,
        value: v << b,
    }
}

/// Every condition a screen can name. `cloud` is shorthand for the three cloud states.
const CONDITIONS: [Condition; 17] = [
    bit("nodata", 0),
    field("cloud_buffer", 1, 1),
    field("cloud_opaque", 1, 2),
    field("cloud_cirrus", 1, 3),
    bit("shadow", 3),
    bit("snow", 4),
    bit("water", 5),
    field("aerosol_interp", 6, 1),
    field("aerosol_high", 6, 2),
    field("aerosol_fill", 6, 3),
    bit("subzero", 8),
    bit("saturation", 9),
    bit("sun_low", 10),
    field("illumin_low", 11, 1),
    field("illumin_poor", 11, 2),
    field("illumin_none", 11, 3),
    bit("slope", 13),
];
const WVP_NONE: Condition = bit("wvp_none", 14);

/// Which observations are thrown away. Built from names such as FORCE's `SCREEN_QAI`:
/// `nodata,cloud,shadow,snow,subzero,saturation` (the default), or `none`.
#[derive(Clone, PartialEq, Eq)]
pub struct QaiScreen {
    conditions: Vec<Condition>,
    /// Bit set over all 65 536 QAI values: bit set = observation rejected.
    rejected: Box<[u64; 1024]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown QAI screen flag '{0}': expected none or a list of nodata, cloud, cloud_buffer, cloud_opaque, \
     cloud_cirrus, shadow, snow, water, aerosol_interp, aerosol_high, aerosol_fill, subzero, saturation, \
     sun_low, illumin_low, illumin_poor, illumin_none, slope, wvp_none"
)]
pub struct QaiScreenError(pub String);

fn lookup(name: &str) -> Option<Vec<Condition>> {
    // Accept FORCE's own spellings (CLOUD_SHADOW, SLOPED, …) as well as ours.
    let n = name.to_ascii_lowercase().replace('-', "_");
    let alias = match n.as_str() {
        "cloud" => return Some(CONDITIONS[1..4].to_vec()),
        "cirrus" => "cloud_cirrus",
        "cloud_shadow" => "shadow",
        "sloped" => "slope",
        "aerosol_interpolated" => "aerosol_interp",
        "high_sun_zenith" => "sun_low",
        other => other,
    };
    if alias == WVP_NONE.name || alias == "water_vapour_fill" {
        return Some(vec![WVP_NONE]);
    }
    CONDITIONS.iter().find(|c| c.name == alias).map(|c| vec![*c])
}

impl QaiScreen {
    /// FORCE's default: nodata, all cloud states, cloud shadow, snow, subzero, saturation.
    pub fn force_default() -> QaiScreen {
        "nodata,cloud,shadow,snow,subzero,saturation"
            .parse()
            .expect("default screen names are valid")
    }

    /// Keeps everything (not even nodata is screened).
    pub fn none() -> QaiScreen {
        QaiScreen::from_conditions(Vec::new())
    }

    fn from_conditions(mut conditions: Vec<Condition>) -> QaiScreen {
        conditions.dedup();
        let mut rejected = Box::new([0u64; 1024]);
        for q in 0..=u16::MAX {
            if conditions.iter().any(|c| q & c.mask == c.value) {
                rejected[usize::from(q) >> 6] |= 1 << (q & 63);
            }
        }
        QaiScreen { conditions, rejected }
    }

    /// True when an observation with this QAI value must be dropped.
    #[inline]
    pub fn rejects(&self, qai: i16) -> bool {
        let q = qai as u16;
        self.rejected[usize::from(q) >> 6] >> (q & 63) & 1 == 1
    }

    /// The condition names in canonical form, e.g. for chunk metadata.
    pub fn names(&self) -> Vec<&'static str> {
        self.conditions.iter().map(|c| c.name).collect()
    }
}

impl FromStr for QaiScreen {
    type Err = QaiScreenError;
    fn from_str(s: &str) -> Result<QaiScreen, QaiScreenError> {
        let parts: Vec<&str> = s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        if parts.len() == 1 && parts[0].eq_ignore_ascii_case("none") {
            return Ok(QaiScreen::none());
        }
        if parts.is_empty() {
            return Err(QaiScreenError(s.to_string()));
        }
        let mut conditions = Vec::new();
        for p in parts {
            for c in lookup(p).ok_or_else(|| QaiScreenError(p.to_string()))? {
                if !conditions.contains(&c) {
                    conditions.push(c);
                }
            }
        }
        // Keep a canonical order so equal screens compare and print equal.
        conditions.sort_by_key(|c| {
            CONDITIONS
                .iter()
                .chain([&WVP_NONE])
                .position(|k| k == c)
                .unwrap_or(usize::MAX)
        });
        Ok(QaiScreen::from_conditions(conditions))
    }
}

impl fmt::Display for QaiScreen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conditions.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for QaiScreen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QaiScreen({self})")
    }
}

impl Default for QaiScreen {
    fn default() -> Self {
        QaiScreen::force_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_bit_patterns() {
        // 0b0001_0110_0100_1010: opaque cloud? no: bits 1-2 = 01 (buffer), bit 3 shadow, bit 6 → aerosol 01,
        // bits 9 saturation, 10 sun, 12 → illumination 10 (poor).
        let q = Qai(0b0001_0110_0100_1010);
        assert!(!q.nodata());
        assert_eq!(q.cloud(), CloudState::Buffer);
        assert!(q.shadow());
        assert!(!q.snow());
        assert_eq!(q.aerosol(), AerosolState::Interpolated);
        assert!(q.saturation());
        assert!(q.high_sun_zenith());
        assert_eq!(q.illumination(), Illumination::Poor);
        assert!(!q.slope());
        assert_eq!(Qai(0b100).cloud(), CloudState::Opaque);
        assert_eq!(Qai(0b110).cloud(), CloudState::Cirrus);
        assert!(Qai(1).nodata());
        assert!(Qai(1 << 14).water_vapour_fill());
    }

    #[test]
    fn builders_set_fields_as_fields() {
        let q = Qai(0)
            .with_cloud(CloudState::Cirrus)
            .with_cloud(CloudState::Buffer);
        assert_eq!(q.0, 0b010);
        let q = q
            .with_flag(QaiFlag::Snow, true)
            .with_illumination(Illumination::None);
        assert_eq!(q.0, 0b11 << 11 | 1 << 4 | 0b010);
        assert_eq!(q.with_flag(QaiFlag::Snow, false).0, 0b11 << 11 | 0b010);
        assert_eq!(Qai(0).with_aerosol(AerosolState::Fill).0, 0b11 << 6);
    }

    #[test]
    fn default_screen_matches_force() {
        let s = QaiScreen::force_default();
        assert_eq!(
            s.to_string(),
            "nodata,cloud_buffer,cloud_opaque,cloud_cirrus,shadow,snow,subzero,saturation"
        );
        assert!(!s.rejects(0));
        for bad in [1, 0b010, 0b100, 0b110, 1 << 3, 1 << 4, 1 << 8, 1 << 9] {
            assert!(s.rejects(bad), "{bad:#b} must be rejected");
        }
        // Water, aerosol, sun zenith, illumination, slope and water vapour are kept by default.
        for ok in [1 << 5, 0b11 << 6, 1 << 10, 0b11 << 11, 1 << 13, 1 << 14] {
            assert!(!s.rejects(ok), "{ok:#b} must be kept");
        }
    }

    #[test]
    fn two_bit_fields_are_compared_as_fields() {
        let opaque_only: QaiScreen = "cloud_opaque".parse().unwrap();
        assert!(opaque_only.rejects(0b100));
        // Cirrus (11) has bit 2 set too, but is not opaque (10).
        assert!(!opaque_only.rejects(0b110));
        assert!(!opaque_only.rejects(0b010));
        let high: QaiScreen = "aerosol_high".parse().unwrap();
        assert!(high.rejects(0b10 << 6));
        assert!(!high.rejects(0b11 << 6));
    }

    #[test]
    fn none_keeps_everything_and_names_are_checked() {
        let none: QaiScreen = "none".parse().unwrap();
        assert!((i16::MIN..=i16::MAX).all(|q| !none.rejects(q)));
        assert_eq!(none.to_string(), "none");
        let e = "nodata,clouds".parse::<QaiScreen>().unwrap_err();
        assert!(e.to_string().starts_with("unknown QAI screen flag 'clouds'"));
        assert!("".parse::<QaiScreen>().is_err());
        // FORCE's spellings work too.
        let f: QaiScreen =
            "NODATA,CLOUD_OPAQUE,CLOUD_BUFFER,CLOUD_CIRRUS,CLOUD_SHADOW,SNOW,SUBZERO,SATURATION"
                .parse()
                .unwrap();
        assert_eq!(f, QaiScreen::force_default());
    }

    #[test]
    fn negative_i16_values_are_looked_up_by_bits() {
        let s: QaiScreen = "wvp_none".parse().unwrap();
        assert!(s.rejects(1 << 14));
        assert!(!s.rejects(i16::MIN)); // bit 15 only
    }
}
