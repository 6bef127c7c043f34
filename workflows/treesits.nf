/*
 * aoi-select → cube-inventory → cube-extract (one task per tile) → predict (one task per group of
 * chunks) → mosaic → assess (when there is reference data). The tile id travels in meta; channels are sorted before grouping so -resume sees
 * the same tasks.
 *
 * cube-inventory lists the cube on every run and puts each tile's input fingerprint, product key and
 * first/last acquisition date into meta: a new, removed or replaced file changes exactly that tile's
 * tasks, so -resume stays correct on a cube that grows. With --incremental it also compares with the
 * inventory published with the last map: unchanged tiles are not extracted or predicted again (their
 * published predictions are reused), and when no tile changed nothing runs at all.
 */

include { AOI_SELECT     } from '../modules/local/aoi_select/main'
include { CUBE_INVENTORY } from '../modules/local/cube_inventory/main'
include { CUBE_EXTRACT } from '../modules/local/cube_extract/main'
include { PREDICT      } from '../modules/local/predict/main'
include { MOSAIC       } from '../modules/local/mosaic/main'
include { ASSESS       } from '../modules/local/assess/main'

workflow TREESITS {
    take:
    cube    // value: cube root (local path, mount path or s3:// URI)
    aoi     // value: AOI vector file
    masks     // value: list of value-mask rasters (may be empty)
    model     // path: ONNX model
    reference // value: list of reference files, points or class rasters (empty: no assessment)

    main:
    ch_versions = Channel.empty()

    AOI_SELECT ( aoi.combine(masks.map { [it] }).map { a, m -> [ [ id: 'aoi' ], a, m ] }, cube, params.forest_mask_values )
    ch_versions = ch_versions.mix(AOI_SELECT.out.versions)

    def previous = params.incremental ? "${params.outdir}/inventory.json" : ''
    def reuse    = params.incremental ? "${params.outdir}/predictions" : ''
    CUBE_INVENTORY ( AOI_SELECT.out.selection, cube, model, previous, reuse )
    ch_versions = ch_versions.mix(CUBE_INVENTORY.out.versions)

    // The plan: one row per tile (new, changed, unchanged or removed), keyed by tile id.
    ch_plan = CUBE_INVENTORY.out.inventory
        .flatMap { meta, inventory, plan -> plan.splitCsv(header: true) }
    ch_plan_rows = ch_plan.map { row -> [ row.tile_id, row ] }

    // One (meta, mask, status) per tile listed in tiles.csv, in tile-id order; meta carries the
    // tile's inputs (fingerprint, product key, first and last date).
    ch_tiles = AOI_SELECT.out.selection
        .flatMap { meta, csv, mask_files ->
            def by_name = (mask_files instanceof List ? mask_files : [ mask_files ]).collectEntries { [ (it.name): it ] }
            csv.splitCsv(header: true).collect { row -> [ row.tile_id, row.pixels as long, by_name[row.mask] ] }
        }
        .join(ch_plan_rows)
        .map { tile, pixels, mask, plan ->
            if ((plan.acquisitions as int) == 0) {
                error "treesits: tile ${tile} has no acquisitions of ${params.sensors} in the window: widen the window or drop the tile from the AOI"
            }
            [ [ id: tile, tile: tile, pixels: pixels, fingerprint: plan.fingerprint, product_key: plan.product_key,
                start: plan.first_date, end: plan.last_date ], mask, plan.status ]
        }
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .flatMap()
        .branch { meta, mask, status ->
            reuse:   params.incremental && status == 'unchanged'
            todo:    true
        }

    CUBE_EXTRACT ( ch_tiles.todo.map { meta, mask, status -> [ meta, mask ] }, cube )
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

    // Unchanged tiles (--incremental): their predictions as published by the run that made them.
    ch_reused = ch_tiles.reuse
        .flatMap { meta, mask, status ->
            def files = file("${reuse}/${meta.tile}/${meta.product_key}/*.pred.arrows")
            files instanceof List ? files : [ files ]
        }

    // The mosaic is rebuilt when any tile is new, changed or removed (always without --incremental).
    ch_changed = ch_plan.filter { row -> row.status != 'unchanged' }.count()
        .map { n -> !params.incremental || n > 0 }

    ch_predictions = PREDICT.out.predictions
        .flatMap { meta, files -> files instanceof List ? files : [ files ] }
        .mix(ch_reused)
        .toSortedList { a, b -> a.name <=> b.name }
        .map { files -> [ [ id: 'mosaic' ], files ] }
        .combine(ch_changed)
        .filter { meta, files, changed -> changed }
        .map { meta, files, changed -> [ meta, files ] }

    ch_inventory = CUBE_INVENTORY.out.inventory.map { meta, inventory, plan -> inventory }
    MOSAIC ( ch_predictions, params.clip ? aoi : [], ch_inventory )
    ch_versions = ch_versions.mix(MOSAIC.out.versions)

    // The map against the reference data; the reports are published beside the map.
    ch_assess = MOSAIC.out.map
        .combine(reference.map { [ it ] })
        .filter { meta, files, refs -> refs }
    ASSESS ( ch_assess.map { meta, files, refs -> [ meta, files ] }, ch_assess.map { meta, files, refs -> refs } )
    ch_versions = ch_versions.mix(ASSESS.out.versions)

    emit:
    map      = MOSAIC.out.map
    accuracy = ASSESS.out.report
    versions = ch_versions
}
