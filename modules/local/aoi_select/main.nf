process AOI_SELECT {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"

    input:
    tuple val(meta), path(aoi, stageAs: 'aoi/*'), path(masks, stageAs: 'masks/*')
    val cube
    val mask_values

    output:
    tuple val(meta), path('selection/tiles.csv'), path('selection/*.mask.tif'), emit: selection
    path 'versions.yml'                                                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def mask_args = masks ? (masks instanceof List ? masks : [masks]).collect { "--mask '${it}'" }.join(' ') + " --mask-values ${mask_values}" : ''
    // --existing-only: an AOI may reach beyond the cube; the tiles the cube lacks have no data and are
    // left out (cube-inventory would stop on them).
    """
    aoi-select \\
        --cube '${cube}' \\
        --aoi '${aoi}' \\
        --existing-only \\
        --out-dir selection \\
        --threads ${task.cpus} \\
        ${mask_args} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        aoi-select: \$(aoi-select --version | sed 's/^aoi-select //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p selection
    printf 'tile_id,tile_x,tile_y,xmin,ymin,xmax,ymax,pixels,mask\\nX0001_Y0001,1,1,0,0,1,1,1,X0001_Y0001.mask.tif\\n' > selection/tiles.csv
    touch selection/X0001_Y0001.mask.tif
    printf '"%s":\\n    aoi-select: stub\\n' "${task.process}" > versions.yml
    """
}
