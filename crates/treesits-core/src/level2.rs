//! FORCE Level-2 ARD file names: `YYYYMMDD_LEVEL2_<SENSOR>_<PRODUCT>.tif`.

use std::fmt;
use std::str::FromStr;

use crate::Date;

/// Sentinel-2 band names in FORCE's BOA band order: B02, B03, B04, B05, B06, B07, B08 (`BROADNIR`),
/// B8A (`NIR`), B11, B12. FORCE names the narrow NIR band B8A `NIR` because it matches Landsat's NIR
/// (0.865 µm), so the six names Landsat has mean the same wavelengths on both families.
pub const SENTINEL2_BANDS: [&str; 10] = [
    "BLUE", "GREEN", "RED", "REDEDGE1", "REDEDGE2", "REDEDGE3", "BROADNIR", "NIR", "SWIR1", "SWIR2",
];
/// Landsat band names in FORCE's BOA band order (Landsat 4–9); also the bands every sensor has.
pub const LANDSAT_BANDS: [&str; 6] = ["BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2"];
/// The bands Landsat and Sentinel-2 have in common (what a multi-sensor series can hold).
pub const COMMON_BANDS: [&str; 6] = LANDSAT_BANDS;

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

    /// The position (0-based) of band `name` in this sensor's BOA file, if it has that band.
    pub fn band_index(self, name: &str) -> Option<usize> {
        self.bands().iter().position(|b| *b == name)
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

/// Sensors are written by their FORCE names (`"SEN2A"`), e.g. in a model contract.
impl serde::Serialize for Sensor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Sensor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sensor, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a list of band names cannot be read from the given sensors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BandError {
    #[error("no band names given")]
    Empty,
    #[error("band '{0}' is listed twice")]
    Duplicate(String),
    #[error(
        "'{band}' is not a FORCE BOA band name: expected BLUE, GREEN, RED, REDEDGE1, REDEDGE2, REDEDGE3, \
         BROADNIR, NIR, SWIR1, SWIR2 (Landsat and Sentinel-2 share {common})",
        common = COMMON_BANDS.join(",")
    )]
    Unknown { band: String },
    #[error(
        "{sensor} has no band {band} (only {have} {verb} it): drop {sensor} from the sensors or {band} \
         from the bands (Landsat and Sentinel-2 share {common})",
        have = have.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        verb = if have.len() == 1 { "has" } else { "have" },
        common = COMMON_BANDS.join(",")
    )]
    Missing {
        sensor: Sensor,
        band: String,
        have: Vec<Sensor>,
    },
}

/// Parses a comma-separated band list (`BLUE,GREEN,NIR`; names as FORCE spells them, any case),
/// keeping the given order. Names are checked against the sensors by [`BandMap::new`].
pub fn parse_band_list(s: &str) -> Result<Vec<String>, BandError> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let name = part.to_ascii_uppercase();
        if out.contains(&name) {
            return Err(BandError::Duplicate(name));
        }
        out.push(name);
    }
    if out.is_empty() {
        return Err(BandError::Empty);
    }
    Ok(out)
}

/// Which band of each sensor's BOA file holds each requested band: the bands of a time series that
/// mixes sensors (Landsat and Sentinel-2 on their common bands), by FORCE's band names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandMap {
    names: Vec<String>,
    /// Per sensor: the 1-based band number in its BOA file of each requested band.
    numbers: Vec<(Sensor, Vec<usize>)>,
}

impl BandMap {
    /// Every band of one band set: what a series of sensors with the same bands holds when no bands
    /// are requested.
    pub fn all_bands(sensors: &[Sensor]) -> BandMap {
        let names: Vec<String> = sensors
            .first()
            .map(|s| s.bands().iter().map(|b| b.to_string()).collect())
            .unwrap_or_default();
        BandMap::new(sensors, &names).expect("every sensor has its own bands")
    }

    /// The map for `names` read from every one of `sensors`; each sensor must have each band.
    pub fn new(sensors: &[Sensor], names: &[String]) -> Result<BandMap, BandError> {
        if names.is_empty() {
            return Err(BandError::Empty);
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(BandError::Duplicate(n.clone()));
            }
            if Sensor::ALL.iter().all(|s| s.band_index(n).is_none()) {
                return Err(BandError::Unknown { band: n.clone() });
            }
        }
        let mut numbers = Vec::with_capacity(sensors.len());
        for &sensor in sensors {
            let mut bands = Vec::with_capacity(names.len());
            for n in names {
                let Some(i) = sensor.band_index(n) else {
                    return Err(BandError::Missing {
                        sensor,
                        band: n.clone(),
                        have: {
                            let has = |s: &&Sensor| s.band_index(n).is_some();
                            let among: Vec<Sensor> = sensors.iter().filter(has).copied().collect();
                            if among.is_empty() {
                                Sensor::ALL.iter().filter(has).copied().collect()
                            } else {
                                among
                            }
                        },
                    });
                };
                bands.push(i + 1);
            }
            numbers.push((sensor, bands));
        }
        Ok(BandMap {
            names: names.to_vec(),
            numbers,
        })
    }

    /// The requested band names, in output order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The 1-based band numbers in `sensor`'s BOA file of the requested bands, in output order;
    /// `None` for a sensor the map was not made for.
    pub fn numbers(&self, sensor: Sensor) -> Option<&[usize]> {
        self.numbers
            .iter()
            .find(|(s, _)| *s == sensor)
            .map(|(_, n)| n.as_slice())
    }
}

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
    fn common_bands_map_to_each_sensors_own_band_numbers() {
        let names = parse_band_list("blue, GREEN,RED,NIR,SWIR1,SWIR2").unwrap();
        assert_eq!(names, COMMON_BANDS);
        let sensors = [Sensor::Sen2a, Sensor::Lnd08, Sensor::Sen2b, Sensor::Lnd09];
        let m = BandMap::new(&sensors, &names).unwrap();
        assert_eq!(m.names(), COMMON_BANDS);
        // Sentinel-2's NIR is B8A, the 8th band of its BOA file (B08 is BROADNIR, the 7th).
        assert_eq!(m.numbers(Sensor::Sen2a), Some(&[1, 2, 3, 8, 9, 10][..]));
        assert_eq!(m.numbers(Sensor::Sen2b), Some(&[1, 2, 3, 8, 9, 10][..]));
        assert_eq!(m.numbers(Sensor::Lnd08), Some(&[1, 2, 3, 4, 5, 6][..]));
        assert_eq!(m.numbers(Sensor::Lnd05), None);
        let m = BandMap::new(&sensors, &["SWIR2".into(), "BLUE".into()]).unwrap();
        assert_eq!(m.numbers(Sensor::Sen2a), Some(&[10, 1][..]));
        assert_eq!(m.numbers(Sensor::Lnd09), Some(&[6, 1][..]));
        let all = BandMap::all_bands(&[Sensor::Sen2a, Sensor::Sen2c]);
        assert_eq!(all.names(), SENTINEL2_BANDS);
        assert_eq!(
            all.numbers(Sensor::Sen2c),
            Some(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10][..])
        );
        // Sentinel-2's NIR and Landsat's NIR are the same wavelength.
        assert_eq!(
            Sensor::Sen2a.wavelengths()[Sensor::Sen2a.band_index("NIR").unwrap()],
            Sensor::Lnd08.wavelengths()[Sensor::Lnd08.band_index("NIR").unwrap()]
        );
    }

    #[test]
    fn bands_a_sensor_lacks_are_refused_naming_the_sensors_that_have_them() {
        let e = BandMap::new(
            &[Sensor::Sen2a, Sensor::Lnd08, Sensor::Sen2b],
            &["BLUE".into(), "REDEDGE1".into()],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "LND08 has no band REDEDGE1 (only SEN2A,SEN2B have it): drop LND08 from the sensors or \
             REDEDGE1 from the bands (Landsat and Sentinel-2 share BLUE,GREEN,RED,NIR,SWIR1,SWIR2)"
        );
        let e = BandMap::new(&[Sensor::Lnd08], &["REDEDGE2".into()]).unwrap_err();
        assert!(e.to_string().contains("(only SEN2A,SEN2B,SEN2C have it)"), "{e}");
        let e = BandMap::new(&[Sensor::Sen2c, Sensor::Lnd04], &["BROADNIR".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("LND04 has no band BROADNIR (only SEN2C has it)"),
            "{e}"
        );
        let e = BandMap::new(&[Sensor::Lnd08], &["NIR".into(), "B8A".into()]).unwrap_err();
        assert!(
            e.to_string().starts_with("'B8A' is not a FORCE BOA band name"),
            "{e}"
        );
        assert_eq!(
            parse_band_list("NIR,nir").unwrap_err(),
            BandError::Duplicate("NIR".into())
        );
        assert_eq!(parse_band_list(" , ").unwrap_err(), BandError::Empty);
    }

    #[test]
    fn sensors_serialise_by_name() {
        let v: Vec<Sensor> = serde_json::from_str(r#"["SEN2A", "lnd09"]"#).unwrap();
        assert_eq!(v, [Sensor::Sen2a, Sensor::Lnd09]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["SEN2A","LND09"]"#);
        let e = serde_json::from_str::<Vec<Sensor>>(r#"["LND06"]"#).unwrap_err();
        assert!(e.to_string().contains("unknown sensor 'LND06'"), "{e}");
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
