// Renders the command a module would run, the way Nextflow does: params from nextflow.config's
// `params { }` block (plus overrides), task.ext.args from conf/modules.config evaluated with those
// params, then the module's `script:` block evaluated with the given inputs. Prints the command.
//
// Usage: groovy tests/workflow/render_module.groovy REPO JOBS.json
//   JOBS.json: {"module": "modules/local/cube_extract", "process": "CUBE_EXTRACT",
//               "configs": ["conf/test.config"], "params": {...overrides}, "task": {"cpus": 2},
//               "jobs": [{"meta": {...}, "mask": "mask/X.mask.tif", ...}, ...]}
//   prints a JSON list with one rendered command per job (one JVM start for many tasks).
import groovy.json.JsonOutput
import groovy.json.JsonSlurper

def repo = new File(args[0])
def spec = new JsonSlurper().parse(new File(args[1]))

// The body of the first top-level block `name { … }` in text (brace matching outside strings is not
// needed: our config blocks hold no braces inside strings before their end).
String block(String text, String name) {
    def m = (text =~ /(?m)^\s*${name}\s*\{/)
    if (!m.find()) throw new IllegalStateException("no '${name} {' block")
    int depth = 1, i = m.end()
    int start = i
    while (depth > 0) {
        char c = text.charAt(i++)
        if (c == '{') depth++
        if (c == '}') depth--
    }
    return text.substring(start, i - 1)
}

// params: the defaults of nextflow.config, then each profile config's params, then the overrides
// (as `--name value` would).
ConfigObject paramsOf(File file, File repo) {
    def slurper = new ConfigSlurper()
    slurper.setBinding([projectDir: repo.canonicalPath])
    return slurper.parse("params {" + block(file.text, 'params') + "}").params
}
def params = paramsOf(new File(repo, 'nextflow.config'), repo)
for (String c : (spec.configs ?: [])) {
    params.putAll(paramsOf(new File(repo, c), repo))
}
params.putAll(spec.params ?: [:])
if (spec.params_only) {
    // {"params_only": true}: print the resolved params (the schema test compares them with the schema).
    print JsonOutput.toJson(params.collectEntries { k, v -> [(k): v instanceof GString ? v.toString() : v] })
    return
}
def module = new File(new File(repo, spec.module), 'main.nf')

// task.ext.args from conf/modules.config.
def modulesSlurper = new ConfigSlurper()
modulesSlurper.setBinding([params: params])
def modulesConfig = modulesSlurper.parse(new File(repo, 'conf/modules.config').text)
def extArgs = modulesConfig.process[spec.process]?.ext?.args
def args = extArgs instanceof Closure ? extArgs.call() : (extArgs ?: null)

def task = [
    ext    : [args: args],
    cpus   : spec.task?.cpus ?: 1,
    // Nextflow's MemoryUnit, as far as modules use it (`task.memory.toMega()`); null without one.
    memory : spec.task?.memory_mb ? [toMega: { -> spec.task.memory_mb as long }] : null,
    process: spec.process,
    attempt: 1,
]

// The script: block runs as a closure body; its last expression is the command (a GString).
def text = module.text
def m = (text =~ /(?s)\n\s*script:\s*\n(.*?)\n\s*stub:\s*\n/)
if (!m.find()) throw new IllegalStateException("${module}: no script: … stub: section")
def commands = spec.jobs.collect { inputs ->
    // error(): Nextflow's, which stops the task with its message (printed on stderr here, exit 1).
    def error = { String message -> System.err.println(message); System.exit(1) }
    def shellBinding = new Binding([task: task, params: params, error: error] + inputs)
    // Nextflow strips the common indentation of a script before running it.
    new GroovyShell(shellBinding).evaluate(m.group(1)).toString().stripIndent().trim() + '\n'
}
print JsonOutput.toJson(commands)
