process MOSAIC {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"

    input:
    tuple val(meta), path(predictions, stageAs: 'in/*')
    path clip, stageAs: 'clip/*'
    path inventory, stageAs: 'inventory/*'

    output:
    tuple val(meta), path('map/*'), emit: map
    path 'inventory.json'         , emit: inventory
    path 'versions.yml'           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def clip_arg = clip ? "--clip '${clip}'" : ''
    """
    mosaic \\
        --input in \\
        --out-dir map \\
        ${clip_arg} \\
        ${args}
    cp '${inventory}' inventory.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        mosaic: \$(mosaic --version | sed 's/^mosaic //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p map
    touch map/mosaic_class.tif map/mosaic_class.vrt map/quicklook.png inventory.json
    printf '"%s":\\n    mosaic: stub\\n' "${task.process}" > versions.yml
    """
}
