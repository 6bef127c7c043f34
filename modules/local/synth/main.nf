// Test profile only: a small synthetic FORCE cube with AOI, land cover and species truth.
process SYNTH {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"

    input:
    val meta

    output:
    tuple val(meta), path('synth/cube')                  , emit: cube
    tuple val(meta), path('synth/aoi_laea.gpkg')         , emit: aoi
    tuple val(meta), path('synth/landcover/*.tif')       , emit: landcover
    tuple val(meta), path('synth/truth')                 , emit: truth
    path 'synth/manifest.json'                           , emit: manifest
    path 'versions.yml'                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    treesits-synth \\
        --out synth \\
        --threads ${task.cpus} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        treesits-synth: \$(treesits-synth --version | sed 's/^treesits-synth //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p synth/cube synth/landcover synth/truth
    touch synth/aoi_laea.gpkg synth/landcover/worldcover_part1.tif synth/manifest.json
    printf '"%s":\\n    treesits-synth: stub\\n' "${task.process}" > versions.yml
    """
}
