/*
 * aoi-select → cube-extract (one task per tile) → predict (one task per group of chunks) → mosaic.
 * The tile id travels in meta; channels are sorted before grouping so -resume sees the same tasks.
 */

include { AOI_SELECT   } from '../modules/local/aoi_select/main'
include { CUBE_EXTRACT } from '../modules/local/cube_extract/main'
include { PREDICT      } from '../modules/local/predict/main'
include { MOSAIC       } from '../modules/local/mosaic/main'

workflow TREESITS {
    take:
    cube    // value: cube root (local path, mount path or s3:// URI)
    aoi     // value: AOI vector file
    masks   // value: list of value-mask rasters (may be empty)
    model   // path: ONNX model

    main:
    ch_versions = Channel.empty()

    AOI_SELECT ( aoi.combine(masks.map { [it] }).map { a, m -> [ [ id: 'aoi' ], a, m ] }, cube, params.forest_mask_values )
    ch_versions = ch_versions.mix(AOI_SELECT.out.versions)

    // One (meta, mask) per tile listed in tiles.csv, in tile-id order.
    ch_tiles = AOI_SELECT.out.selection
        .flatMap { meta, csv, mask_files ->
            def by_name = (mask_files instanceof List ? mask_files : [ mask_files ]).collectEntries { [ (it.name): it ] }
            csv.splitCsv(header: true).collect { row ->
                [ [ id: row.tile_id, tile: row.tile_id, pixels: row.pixels as long ], by_name[row.mask] ]
            }
        }
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .flatMap()

    CUBE_EXTRACT ( ch_tiles, cube )
    ch_versions = ch_versions.mix(CUBE_EXTRACT.out.versions)

    // Groups of params.chunks_per_task chunks per tile, in chunk order: one predict task each.
    ch_groups = CUBE_EXTRACT.out.chunks
        .flatMap { meta, chunks ->
            def files = (chunks instanceof List ? chunks : [ chunks ]).sort { it.name }
            def groups = files.collate(params.chunks_per_task as int)
            (0..<groups.size()).collect { i ->
                [ meta + [ id: "${meta.tile}_g${i}".toString(), group: i ], groups[i] ]
            }
        }

    PREDICT ( ch_groups, model )
    ch_versions = ch_versions.mix(PREDICT.out.versions)

    ch_predictions = PREDICT.out.predictions
        .flatMap { meta, files -> files instanceof List ? files : [ files ] }
        .toSortedList { a, b -> a.name <=> b.name }
        .map { files -> [ [ id: 'mosaic' ], files ] }

    MOSAIC ( ch_predictions, params.clip ? aoi : [] )
    ch_versions = ch_versions.mix(MOSAIC.out.versions)

    emit:
    map      = MOSAIC.out.map
    versions = ch_versions
}
