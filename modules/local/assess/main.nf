process ASSESS {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"

    input:
    tuple val(meta), path(map, stageAs: 'map/*')
    path reference, stageAs: 'reference/*'

    output:
    tuple val(meta), path('accuracy/accuracy.json'), path('accuracy/accuracy.md'), emit: report
    path 'versions.yml'                                                        , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // Point vectors or class rasters; a Shapefile's side files are staged with it but not passed.
    def sidecar = ~/(?i).*\.(shx|dbf|prj|cpg|qix|sbn|sbx|aux\.xml|ovr)$/
    def refs = (reference instanceof List ? reference : [reference])
        .findAll { !(it.toString() ==~ sidecar) }
        .collect { "'${it}'" }.join(' ')
    """
    assess \\
        --map map/mosaic_class.tif \\
        --reference ${refs} \\
        --out-dir accuracy \\
        --threads ${task.cpus} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        assess: \$(assess --version | sed 's/^assess //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p accuracy
    printf '{"overall_accuracy": 0}\\n' > accuracy/accuracy.json
    touch accuracy/accuracy.md
    printf '"%s":\\n    assess: stub\\n' "${task.process}" > versions.yml
    """
}
