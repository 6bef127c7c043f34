// --samples: the labelled samples' time series from the whole cube, one Parquet table per run (training data).
process SAMPLE_EXTRACT {
    tag "${meta.id}"
    label 'process_high'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"

    input:
    tuple val(meta), path(samples, stageAs: 'samples/*')
    path classes, stageAs: 'classes/*'
    val cube

    output:
    tuple val(meta), path('training/samples.parquet'), path('training/samples_report.csv'), emit: table
    path 'versions.yml'                                                                 , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // One sample vector; a Shapefile's side files are staged with it but not passed.
    def sidecar = ~/(?i).*\.(shx|dbf|prj|cpg|qix|sbn|sbx|aux\.xml)$/
    def vectors = (samples instanceof List ? samples : [samples]).findAll { !(it.toString() ==~ sidecar) }
    if (vectors.size() != 1) {
        error "SAMPLE_EXTRACT: --samples must name one vector (a Shapefile with its side files is fine), not ${vectors.size()}: ${vectors.join(', ')}"
    }
    def class_table = classes ? "--classes '${classes instanceof List ? classes[0] : classes}'" : ''
    """
    mkdir -p training
    sample-extract \\
        --cube '${cube}' \\
        --samples '${vectors[0]}' \\
        ${class_table} \\
        --threads ${task.cpus} \\
        --report training/samples_report.csv \\
        --out training/samples.parquet \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        sample-extract: \$(sample-extract --version | sed 's/^sample-extract //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p training
    touch training/samples.parquet
    printf 'sample_id,tile_id,row,col,reason\\n' > training/samples_report.csv
    printf '"%s":\\n    sample-extract: stub\\n' "${task.process}" > versions.yml
    """
}
