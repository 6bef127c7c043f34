//! The tree-species classes of the SITS-NN scheme used throughout treesits.
//!
//! Class codes start at 0 (spruce); 255 is the class rasters' nodata, so no species shares a value with
//! "no data" (a defect of the predecessor, where spruce = 0 = nodata).

/// One class: code, name, and display colour (RGB).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpeciesClass {
    pub code: u8,
    pub name: String,
    pub colour: [u8; 3],
}

/// Nodata value of class rasters.
pub const CLASS_NODATA: u8 = 255;
/// Code of "not forest" in the synthetic truth rasters.
pub const NON_FOREST: u8 = 10;

/// The ten species of the SITS-NN scheme, codes 0–9.
pub fn tree_species() -> Vec<SpeciesClass> {
    let table: [(&str, [u8; 3]); 10] = [
        ("spruce", [31, 94, 49]),
        ("silver fir", [62, 140, 80]),
        ("Douglas fir", [20, 60, 110]),
        ("pine", [178, 140, 60]),
        ("oak", [200, 80, 40]),
        ("red oak", [230, 30, 60]),
        ("beech", [120, 200, 60]),
        ("sycamore", [240, 210, 50]),
        ("other conifer", [90, 120, 140]),
        ("other broadleaf", [170, 220, 160]),
    ];
    table
        .iter()
        .enumerate()
        .map(|(i, (name, colour))| SpeciesClass {
            code: i as u8,
            name: (*name).to_string(),
            colour: *colour,
        })
        .collect()
}

/// The ten species plus "non-forest" (code [`NON_FOREST`]), as in the synthetic truth.
pub fn truth_classes() -> Vec<SpeciesClass> {
    let mut v = tree_species();
    v.push(SpeciesClass {
        code: NON_FOREST,
        name: "non-forest".into(),
        colour: [220, 220, 220],
    });
    v
}

/// Category names indexed by value (up to the highest class code; gaps are empty strings), as GDAL's
/// raster category names want them.
pub fn category_names(classes: &[SpeciesClass]) -> Vec<String> {
    let n = classes.iter().map(|c| usize::from(c.code) + 1).max().unwrap_or(0);
    let mut names = vec![String::new(); n];
    for c in classes {
        names[usize::from(c.code)] = c.name.clone();
    }
    names
}

/// The class table as stored in [`crate::names::CLASSES_METADATA_KEY`].
pub fn classes_json(classes: &[SpeciesClass]) -> String {
    serde_json::to_string(classes).expect("a class table serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn class_table_json_reads_back_as_the_table() {
        let t = tree_species();
        let json = classes_json(&t);
        assert!(
            json.starts_with(r#"[{"code":0,"name":"spruce","colour":[31,94,49]}"#),
            "{json}"
        );
        assert_eq!(json.matches("\"code\"").count(), 10);
        let names = category_names(&t);
        assert_eq!(names.len(), 10);
        assert_eq!(names[6], "beech");
    }

    #[test]
    fn codes_are_dense_and_never_nodata() {
        let t = truth_classes();
        assert_eq!(t.len(), 11);
        for (i, c) in t.iter().enumerate() {
            assert_eq!(usize::from(c.code), i);
            assert_ne!(c.code, CLASS_NODATA);
        }
        assert_eq!(t[0].name, "spruce");
    }
}
