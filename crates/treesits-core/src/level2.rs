//! FORCE Level-2 ARD file names: `YYYYMMDD_LEVEL2_<SENSOR>_<PRODUCT>.tif`.

use std::fmt;
use std::str::FromStr;

use crate::Date;

/// Sentinel-2 band names in FORCE's BOA band order.
pub const SENTINEL2_BANDS: [&str; 10] = [
    "BLUE", "GREEN", "RED", "REDEDGE1", "REDEDGE2", "REDEDGE3", "BROADNIR", "NIR", "SWIR1", "SWIR2",
];
/// Landsat band names in FORCE's BOA band order.
pub const LANDSAT_BANDS: [&str; 6] = ["BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2"];

/// Reflectance scale of BOA values: reflectance = value / 10000.
pub const BOA_SCALE: f64 = 10_000.0;
/// BOA nodata value.
pub const BOA_NODATA: i16 = -9999;
/// QAI nodata value (bit 0 set, nothing else).
pub const QAI_NODATA: i16 = 1;

/// A sensor as FORCE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sensor {
    Sen2a,
    Sen2b,
    Sen2c,
    Lnd04,
    Lnd05,
    Lnd07,
    Lnd08,
    Lnd09,
}

impl Sensor {
    pub const ALL: [Sensor; 8] = [
        Sensor::Sen2a,
        Sensor::Sen2b,
        Sensor::Sen2c,
        Sensor::Lnd04,
        Sensor::Lnd05,
        Sensor::Lnd07,
        Sensor::Lnd08,
        Sensor::Lnd09,
    ];
    /// The Sentinel-2 sensors (the default selection of the tools).
    pub const SENTINEL2: [Sensor; 3] = [Sensor::Sen2a, Sensor::Sen2b, Sensor::Sen2c];

    pub fn name(self) -> &'static str {
        match self {
            Sensor::Sen2a => "SEN2A",
            Sensor::Sen2b => "SEN2B",
            Sensor::Sen2c => "SEN2C",
            Sensor::Lnd04 => "LND04",
            Sensor::Lnd05 => "LND05",
            Sensor::Lnd07 => "LND07",
            Sensor::Lnd08 => "LND08",
            Sensor::Lnd09 => "LND09",
        }
    }

    pub fn is_sentinel2(self) -> bool {
        matches!(self, Sensor::Sen2a | Sensor::Sen2b | Sensor::Sen2c)
    }

    /// BOA band names in file order.
    pub fn bands(self) -> &'static [&'static str] {
        if self.is_sentinel2() {
            &SENTINEL2_BANDS
        } else {
            &LANDSAT_BANDS
        }
    }

    /// Central wavelengths in micrometres, band by band (as FORCE writes them in band metadata).
    pub fn wavelengths(self) -> &'static [f64] {
        if self.is_sentinel2() {
            &[
                0.492, 0.560, 0.665, 0.704, 0.740, 0.783, 0.833, 0.865, 1.614, 2.202,
            ]
        } else {
            &[0.482, 0.562, 0.655, 0.865, 1.609, 2.201]
        }
    }

    /// A small stable code for the sensor (its position in [`Sensor::ALL`]), used in chunk files.
    pub fn code(self) -> u8 {
        Sensor::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }

    pub fn from_code(code: u8) -> Option<Sensor> {
        Sensor::ALL.get(usize::from(code)).copied()
    }

    /// Parses a comma-separated list (`SEN2A,SEN2B`), keeping the given order and dropping repeats.
    pub fn parse_list(s: &str) -> Result<Vec<Sensor>, SensorError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let sensor: Sensor = part.parse()?;
            if !out.contains(&sensor) {
                out.push(sensor);
            }
        }
        if out.is_empty() {
            return Err(SensorError(s.to_string()));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sensor '{0}': expected one of SEN2A, SEN2B, SEN2C, LND04, LND05, LND07, LND08, LND09")]
pub struct SensorError(pub String);

impl FromStr for Sensor {
    type Err = SensorError;
    fn from_str(s: &str) -> Result<Sensor, SensorError> {
        Sensor::ALL
            .iter()
            .copied()
            .find(|x| x.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| SensorError(s.to_string()))
    }
}

impl fmt::Display for Sensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Level-2 product as FORCE names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Product {
    /// Bottom-of-atmosphere reflectance.
    Boa,
    /// Top-of-atmosphere reflectance.
    Toa,
    /// Quality assurance information (bit field).
    Qai,
    /// Cloud / cloud-shadow distance.
    Cld,
    /// Haze-optimised transformation.
    Hot,
    /// View zenith.
    Vzn,
    /// Aerosol optical depth.
    Aod,
    /// Water vapour.
    Wvp,
    /// Distance to cloud (older name).
    Dst,
}

impl Product {
    pub const ALL: [Product; 9] = [
        Product::Boa,
        Product::Toa,
        Product::Qai,
        Product::Cld,
        Product::Hot,
        Product::Vzn,
        Product::Aod,
        Product::Wvp,
        Product::Dst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Product::Boa => "BOA",
            Product::Toa => "TOA",
            Product::Qai => "QAI",
            Product::Cld => "CLD",
            Product::Hot => "HOT",
            Product::Vzn => "VZN",
            Product::Aod => "AOD",
            Product::Wvp => "WVP",
            Product::Dst => "DST",
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed Level-2 file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level2Name {
    pub date: Date,
    pub sensor: Sensor,
    pub product: Product,
}

/// Why a file name is not a FORCE Level-2 name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a FORCE Level-2 file name (YYYYMMDD_LEVEL2_<SENSOR>_<PRODUCT>.tif): {reason}")]
pub struct Level2NameError {
    pub name: String,
    pub reason: String,
}

impl Level2Name {
    pub fn new(date: Date, sensor: Sensor, product: Product) -> Level2Name {
        Level2Name {
            date,
            sensor,
            product,
        }
    }

    /// Parses a file name (no directories). Anything unexpected is an error, never a guess.
    pub fn parse(name: &str) -> Result<Level2Name, Level2NameError> {
        let err = |reason: String| Level2NameError {
            name: name.to_string(),
            reason,
        };
        let stem = name
            .strip_suffix(".tif")
            .or_else(|| name.strip_suffix(".TIF"))
            .ok_or_else(|| err("no .tif extension".into()))?;
        let parts: Vec<&str> = stem.split('_').collect();
        if parts.len() != 4 {
            return Err(err(format!(
                "expected 4 '_'-separated fields, found {}",
                parts.len()
            )));
        }
        let date = Date::parse_compact(parts[0]).map_err(|e| err(e.to_string()))?;
        if parts[1] != "LEVEL2" {
            return Err(err(format!("level '{}' is not LEVEL2", parts[1])));
        }
        let sensor = Sensor::ALL
            .iter()
            .copied()
            .find(|s| s.name() == parts[2])
            .ok_or_else(|| err(format!("unknown sensor '{}'", parts[2])))?;
        let product = Product::ALL
            .iter()
            .copied()
            .find(|p| p.name() == parts[3])
            .ok_or_else(|| err(format!("unknown product '{}'", parts[3])))?;
        Ok(Level2Name {
            date,
            sensor,
            product,
        })
    }

    /// The same acquisition with another product (e.g. the QAI beside a BOA).
    pub fn with_product(self, product: Product) -> Level2Name {
        Level2Name { product, ..self }
    }
}

impl fmt::Display for Level2Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_LEVEL2_{}_{}.tif",
            self.date.compact(),
            self.sensor,
            self.product
        )
    }
}

/// For a name shaped like a Level-2 file name (`dddddddd_LEVEL2_<SENSOR>_<PRODUCT>.tif`) whose date is
/// not a day of the calendar (`20210230_…`): why. Such a file is skipped like any other stranger, but
/// it is most likely a misnamed acquisition, so its skipping deserves a warning.
pub fn invalid_date(name: &str) -> Option<String> {
    let Err(e) = Level2Name::parse(name) else {
        return None;
    };
    let stem = name.strip_suffix(".tif").or_else(|| name.strip_suffix(".TIF"))?;
    let parts: Vec<&str> = stem.split('_').collect();
    let shaped = parts.len() == 4
        && parts[0].len() == 8
        && parts[0].bytes().all(|b| b.is_ascii_digit())
        && parts[1] == "LEVEL2"
        && Sensor::ALL.iter().any(|s| s.name() == parts[2])
        && Product::ALL.iter().any(|p| p.name() == parts[3]);
    (shaped && Date::parse_compact(parts[0]).is_err()).then_some(e.reason)
}

/// The BOA and QAI files of one acquisition (date, sensor) found in a tile directory; either may be
/// missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level2Pair {
    pub date: Date,
    pub sensor: Sensor,
    pub boa: Option<Level2Name>,
    pub qai: Option<Level2Name>,
}

/// Pairs the BOA and QAI names among a tile directory's file names, for the given sensors, sorted by
/// (date, sensor code): the order of a pixel's observations. Names that are not Level-2 names, other
/// products and other sensors are skipped (returned second, for logging).
pub fn pair_level2_files<'a>(
    names: impl IntoIterator<Item = &'a str>,
    sensors: &[Sensor],
) -> (Vec<Level2Pair>, Vec<&'a str>) {
    let mut found: std::collections::BTreeMap<(Date, u8), Level2Pair> = Default::default();
    let mut skipped = Vec::new();
    for name in names {
        let Ok(l2) = Level2Name::parse(name) else {
            if name.ends_with(".tif") {
                skipped.push(name);
            }
            continue;
        };
        if !sensors.contains(&l2.sensor) {
            continue;
        }
        let slot = found.entry((l2.date, l2.sensor.code())).or_insert(Level2Pair {
            date: l2.date,
            sensor: l2.sensor,
            boa: None,
            qai: None,
        });
        match l2.product {
            Product::Boa => slot.boa = Some(l2),
            Product::Qai => slot.qai = Some(l2),
            _ => {}
        }
    }
    (
        found
            .into_values()
            .filter(|p| p.boa.is_some() || p.qai.is_some())
            .collect(),
        skipped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_boa_and_qai_by_date_and_sensor_in_observation_order() {
        let names = [
            "20210702_LEVEL2_SEN2B_QAI.tif",
            "20210615_LEVEL2_SEN2B_BOA.tif",
            "20210615_LEVEL2_SEN2A_QAI.tif",
            "20210615_LEVEL2_SEN2A_BOA.tif",
            "20210615_LEVEL2_SEN2B_QAI.tif",
            "20210615_LEVEL2_SEN2A_CLD.tif",
            "20210620_LEVEL2_LND08_BOA.tif",
            "notes.txt",
            "mosaic.tif",
        ];
        let (pairs, skipped) = pair_level2_files(names, &[Sensor::Sen2a, Sensor::Sen2b]);
        let got: Vec<(String, &str, bool, bool)> = pairs
            .iter()
            .map(|p| {
                (
                    p.date.compact(),
                    p.sensor.name(),
                    p.boa.is_some(),
                    p.qai.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("20210615".to_string(), "SEN2A", true, true),
                ("20210615".to_string(), "SEN2B", true, true),
                ("20210702".to_string(), "SEN2B", false, true),
            ]
        );
        assert_eq!(skipped, ["mosaic.tif"]);
    }

    #[test]
    fn level2_names_with_impossible_dates_are_told_apart() {
        assert!(invalid_date("20210230_LEVEL2_SEN2A_BOA.tif").is_some_and(|r| r.contains("no such day")));
        assert!(invalid_date("20211301_LEVEL2_LND08_QAI.tif").is_some());
        for fine_or_stranger in [
            "20210228_LEVEL2_SEN2A_BOA.tif",
            "mosaic.tif",
            "20210230_LEVEL3_SEN2A_BOA.tif",
            "2021023_LEVEL2_SEN2A_BOA.tif",
            "20210230_LEVEL2_SEN2A_BOA.vrt",
        ] {
            assert_eq!(invalid_date(fine_or_stranger), None, "{fine_or_stranger}");
        }
    }

    #[test]
    fn parses_and_formats_names() {
        let n = Level2Name::parse("20210615_LEVEL2_SEN2A_BOA.tif").unwrap();
        assert_eq!(n.date, Date::new(2021, 6, 15).unwrap());
        assert_eq!(n.sensor, Sensor::Sen2a);
        assert_eq!(n.product, Product::Boa);
        assert_eq!(n.to_string(), "20210615_LEVEL2_SEN2A_BOA.tif");
        assert_eq!(
            n.with_product(Product::Qai).to_string(),
            "20210615_LEVEL2_SEN2A_QAI.tif"
        );
        let l = Level2Name::parse("19990101_LEVEL2_LND07_QAI.tif").unwrap();
        assert_eq!((l.sensor, l.product), (Sensor::Lnd07, Product::Qai));
    }

    #[test]
    fn unknown_names_are_reported_not_guessed() {
        let cases = [
            ("20210615_LEVEL2_SEN2X_BOA.tif", "unknown sensor 'SEN2X'"),
            ("20210615_LEVEL2_SEN2A_XYZ.tif", "unknown product 'XYZ'"),
            ("20210615_LEVEL3_SEN2A_BOA.tif", "level 'LEVEL3' is not LEVEL2"),
            (
                "20211315_LEVEL2_SEN2A_BOA.tif",
                "invalid date '20211315': no such day in the calendar",
            ),
            ("20210615_LEVEL2_SEN2A_BOA.jpg", "no .tif extension"),
            (
                "20210615_SEN2A_BOA.tif",
                "expected 4 '_'-separated fields, found 3",
            ),
            (
                "20210615_LEVEL2_SEN2A_BOA_OVV.tif",
                "expected 4 '_'-separated fields, found 5",
            ),
        ];
        for (name, reason) in cases {
            let e = Level2Name::parse(name).unwrap_err();
            assert_eq!(e.reason, reason, "{name}");
            assert!(e
                .to_string()
                .starts_with(&format!("'{name}' is not a FORCE Level-2 file name")));
        }
    }

    #[test]
    fn sensors_know_their_bands() {
        assert_eq!(Sensor::Sen2b.bands().len(), 10);
        assert_eq!(Sensor::Sen2b.bands()[6], "BROADNIR");
        assert_eq!(Sensor::Lnd08.bands(), &LANDSAT_BANDS);
        assert_eq!(Sensor::Lnd08.wavelengths().len(), 6);
        for s in Sensor::ALL {
            assert_eq!(Sensor::from_code(s.code()), Some(s));
        }
        assert_eq!(
            Sensor::parse_list("SEN2A, sen2b,SEN2A").unwrap(),
            vec![Sensor::Sen2a, Sensor::Sen2b]
        );
        assert!(Sensor::parse_list("SEN2A,LND06")
            .unwrap_err()
            .to_string()
            .contains("'LND06'"));
    }

    #[test]
    fn names_order_by_date_then_sensor() {
        let mut v = [
            Level2Name::parse("20210615_LEVEL2_SEN2B_BOA.tif").unwrap(),
            Level2Name::parse("20210615_LEVEL2_SEN2A_BOA.tif").unwrap(),
            Level2Name::parse("20210101_LEVEL2_SEN2B_BOA.tif").unwrap(),
        ];
        v.sort();
        let names: Vec<String> = v.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "20210101_LEVEL2_SEN2B_BOA.tif",
                "20210615_LEVEL2_SEN2A_BOA.tif",
                "20210615_LEVEL2_SEN2B_BOA.tif"
            ]
        );
    }
}
