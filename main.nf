#!/usr/bin/env nextflow
/*
 * treesits: AOI polygons + FORCE data cube + ONNX model → tree-species map.
 *
 *   nextflow run . -profile test                      # synthetic cube, runs anywhere with the binaries on PATH
 *   nextflow run . --cube /data/cube --aoi aoi.gpkg --model lstm.onnx --outdir results
 *   nextflow run . --cube /data/cube --samples plots.gpkg --samples_label species --samples_only --outdir results
 *
 * Parameters: README.md ("Run at scale") and nextflow_schema.json.
 */
nextflow.enable.dsl = 2

include { validateParameters; paramsSummaryLog } from 'plugin/nf-schema'
include { TREESITS      } from './workflows/treesits'
include { TRAINING_DATA } from './workflows/training_data'
include { SYNTH         } from './modules/local/synth/main'

workflow {
    if (params.validate_params) {
        validateParameters()
    }
    log.info paramsSummaryLog(workflow)

    if (!params.outdir) {
        error "treesits: --outdir is required (a local directory or s3://bucket/prefix)"
    }
    // --samples_only: the training table without a map (e.g. for a first model), so no model and no AOI.
    def mapping = !params.samples_only
    if (params.samples_only && !params.samples) {
        error "treesits: --samples_only needs --samples (the labelled sample vector to make the training table from)"
    }
    if (params.samples && !params.samples_label) {
        error "treesits: --samples_label is required with --samples (the attribute holding each sample's class)"
    }
    if (params.samples && params.window) {
        error "treesits: --samples needs a fixed window: give --start/--end instead of --window (a rolling window is resolved per tile, the training table spans the cube)"
    }
    if (mapping && !params.model) {
        error "treesits: --model is required (an ONNX model carrying its contract; see docs/model-contract.md), or --samples_only for the training table alone"
    }
    model = mapping ? file(params.model, checkIfExists: true) : null
    if (params.window && (params.start || params.end)) {
        error "treesits: --window is a rolling window; it cannot be combined with --start/--end (a fixed window)"
    }

    def files_of = { list -> list.toString().tokenize(',').collect { file(it.trim(), checkIfExists: true) } }

    if (params.cube) {
        if (mapping && !params.aoi) {
            error "treesits: --aoi is required with --cube (AOI polygons, e.g. a GeoPackage)"
        }
        cube        = Channel.value(params.cube.toString().replaceAll('/+$', ''))
        aoi         = mapping ? Channel.value(file(params.aoi, checkIfExists: true)) : Channel.empty()
        masks       = Channel.value(params.forest_mask ? files_of(params.forest_mask) : [])
        ch_versions = Channel.empty()
        reference   = Channel.value(params.reference ? files_of(params.reference) : [])
    } else {
        // No cube given: the test profile makes a synthetic one (cube, AOI, land cover, truth), and
        // assesses its map against the synthetic truth unless --reference says otherwise.
        SYNTH ( [ id: 'synthetic' ] )
        cube        = SYNTH.out.cube.map { meta, dir -> dir.toString() }.first()
        aoi         = SYNTH.out.aoi.map { meta, f -> f }.first()
        masks       = SYNTH.out.landcover.map { meta, files -> files }.first()
        ch_versions = SYNTH.out.versions
        reference   = params.reference
            ? Channel.value(files_of(params.reference))
            : SYNTH.out.truth.map { meta, dir -> files("${dir}/*_truth.tif").sort { it.name } }.first()
    }

    if (params.samples) {
        TRAINING_DATA ( cube, Channel.value(files_of(params.samples)),
                        Channel.value(params.samples_classes ? [ file(params.samples_classes, checkIfExists: true) ] : []) )
        ch_versions = ch_versions.mix(TRAINING_DATA.out.versions)
    }

    if (mapping) {
        TREESITS ( cube, aoi, masks, model, reference )
        ch_versions = ch_versions.mix(TREESITS.out.versions)
    }

    ch_versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
