/*
 * --samples: the training table for a region, from the same cube and with the same selection (window,
 * sensors, bands, QAI screen) as the map. One sample-extract task for the whole cube (it runs the tiles in
 * parallel itself); the table and its report are published under <outdir>/training.
 */

include { SAMPLE_EXTRACT } from '../modules/local/sample_extract/main'

workflow TRAINING_DATA {
    take:
    cube     // value: cube root (local path, mount path or s3:// URI)
    samples  // value: list of sample vector files (one vector; a Shapefile with its side files)
    classes  // value: list holding the class table JSON, or empty

    main:
    SAMPLE_EXTRACT ( samples.map { files -> [ [ id: 'samples' ], files ] }, classes, cube )

    emit:
    table    = SAMPLE_EXTRACT.out.table
    versions = SAMPLE_EXTRACT.out.versions
}
