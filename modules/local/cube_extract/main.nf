process CUBE_EXTRACT {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container_registry}/treesits-gdal-tools:${params.image_tag}"

    input:
    tuple val(meta), path(mask, stageAs: 'mask/*')
    val cube

    output:
    tuple val(meta), path('chunks/*.arrows'), emit: chunks
    path 'versions.yml'                     , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // The tile's first and last acquisition in the window (from CUBE_INVENTORY's plan): the task
    // changes exactly when the tile's inputs do, not whenever a rolling window moves.
    def window = [ meta.start ? "--start ${meta.start}" : '', meta.end ? "--end ${meta.end}" : '' ].findAll { it }.join(' ')
    // Three quarters of the task's memory for the chunks (the rest is GDAL and the process): what
    // cube-extract would take from a pod's cgroup limit, stated for executors without one.
    def memory = task.memory ? "--memory ${(task.memory.toMega() * 3).intdiv(4)}M" : ''
    """
    cube-extract \\
        --tile '${cube}/${meta.id}' \\
        --mask '${mask}' \\
        --out-dir chunks \\
        --threads ${task.cpus} \\
        ${memory} \\
        ${window} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cube-extract: \$(cube-extract --version | sed 's/^cube-extract //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p chunks
    touch chunks/${meta.id}_chunk0000.arrows
    printf '"%s":\\n    cube-extract: stub\\n' "${task.process}" > versions.yml
    """
}
