//! Spatial references in the order our coordinates are in.

use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};

/// A spatial reference whose coordinates are (x, y) = (east, north) / (lon, lat), whatever the axis
/// order of its definition (GDAL ≥ 3 follows the authority: EPSG:4326 is (lat, lon)).
pub fn gis_order(mut srs: SpatialRef) -> SpatialRef {
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    srs
}

#[cfg(test)]
mod tests {
    use super::*;
    use gdal::spatial_ref::CoordTransform;

    #[test]
    fn lon_lat_comes_first() {
        let wgs84 = gis_order(SpatialRef::from_epsg(4326).unwrap());
        let laea = gis_order(SpatialRef::from_epsg(3035).unwrap());
        let t = CoordTransform::new(&wgs84, &laea).unwrap();
        let (mut x, mut y) = ([10.0], [52.0]);
        t.transform_coords(&mut x, &mut y, &mut []).unwrap();
        // EPSG:3035's false origin is (4321000, 3210000) at (10 E, 52 N).
        assert!((x[0] - 4_321_000.0).abs() < 1.0, "{x:?}");
        assert!((y[0] - 3_210_000.0).abs() < 1.0, "{y:?}");
    }
}
