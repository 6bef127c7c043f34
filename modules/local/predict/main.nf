process PREDICT {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container_registry}/treesits-predict${params.device == 'cpu' ? '-cpu' : '-cuda'}:${params.image_tag}"

    input:
    tuple val(meta), path(chunks, stageAs: 'in/*')
    path model, stageAs: 'model/*'

    output:
    tuple val(meta), path('pred/*.pred.arrows'), emit: predictions
    path 'versions.yml'                        , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // Three quarters of the task's memory for batches (the rest is ONNX Runtime and the process).
    def memory = task.memory ? "--memory ${(task.memory.toMega() * 3).intdiv(4)}M" : ''
    """
    predict \\
        --model '${model}' \\
        --input in \\
        --out-dir pred \\
        --threads ${task.cpus} \\
        ${memory} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        predict: \$(predict --version | sed 's/^predict //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p pred
    for f in in/*.arrows; do touch "pred/\$(basename "\$f" .arrows).pred.arrows"; done
    printf '"%s":\\n    predict: stub\\n' "${task.process}" > versions.yml
    """
}
