process CUBE_INVENTORY {
    tag "${meta.id}"
    label 'process_single'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"
    // The cube changes under the same path: list it again on every run, -resume or not.
    cache false

    input:
    tuple val(meta), path(tiles_csv, stageAs: 'selection/*'), path(masks, stageAs: 'selection/*')
    val cube
    path model, stageAs: 'model/*'
    val previous    // '' (first or non-incremental run) or the last published inventory.json
    val reuse       // '' or where per-tile predictions are published (<reuse>/<tile>/<product key>/)

    output:
    tuple val(meta), path('inventory.json'), path('plan.csv'), emit: inventory
    path 'versions.yml'                                      , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def command = previous ? "check --previous '${previous}'" : 'scan'
    def reuse_arg = reuse ? "--reuse '${reuse}'" : ''
    """
    status=0
    cube-inventory ${command} \\
        --cube '${cube}' \\
        --tiles '${tiles_csv}' \\
        --model '${model}' \\
        ${reuse_arg} \\
        --out inventory.json \\
        --plan plan.csv \\
        ${args} || status=\$?
    # 3: no tile changed. plan.csv says so, and the workflow runs nothing after this.
    [ "\$status" -eq 0 ] || [ "\$status" -eq 3 ]

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cube-inventory: \$(cube-inventory --version | sed 's/^cube-inventory //')
    END_VERSIONS
    """

    stub:
    """
    printf '{"format": "treesits-inventory", "version": 1, "tiles": []}\\n' > inventory.json
    printf 'tile_id,status,fingerprint,product_key,acquisitions,first_date,last_date,reason\\n' > plan.csv
    printf '"%s":\\n    cube-inventory: stub\\n' "${task.process}" > versions.yml
    """
}
