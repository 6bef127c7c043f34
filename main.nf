#!/usr/bin/env nextflow
/*
 * treesits: AOI polygons + FORCE data cube + ONNX model → tree-species map.
 *
 *   nextflow run . -profile test                      # synthetic cube, runs anywhere with the binaries on PATH
 *   nextflow run . --cube /data/cube --aoi aoi.gpkg --model lstm.onnx --outdir results
 *
 * Parameters: README.md ("Run at scale") and nextflow_schema.json.
 */
nextflow.enable.dsl = 2

include { validateParameters; paramsSummaryLog } from 'plugin/nf-schema'
include { TREESITS } from './workflows/treesits'
include { SYNTH    } from './modules/local/synth/main'

workflow {
    if (params.validate_params) {
        validateParameters()
    }
    log.info paramsSummaryLog(workflow)

    if (!params.outdir) {
        error "treesits: --outdir is required (a local directory or s3://bucket/prefix)"
    }
    if (!params.model) {
        error "treesits: --model is required (an ONNX model carrying its contract; see docs/model-contract.md)"
    }
    model = file(params.model, checkIfExists: true)
    if (params.window && (params.start || params.end)) {
        error "treesits: --window is a rolling window; it cannot be combined with --start/--end (a fixed window)"
    }

    def files_of = { list -> list.toString().tokenize(',').collect { file(it.trim(), checkIfExists: true) } }

    if (params.cube) {
        if (!params.aoi) {
            error "treesits: --aoi is required with --cube (AOI polygons, e.g. a GeoPackage)"
        }
        cube        = Channel.value(params.cube.toString().replaceAll('/+$', ''))
        aoi         = Channel.value(file(params.aoi, checkIfExists: true))
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

    TREESITS ( cube, aoi, masks, model, reference )

    TREESITS.out.versions
        .mix(ch_versions)
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
