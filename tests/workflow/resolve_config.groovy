// Resolves the pipeline's configuration per process and per profile combination, the way Nextflow does,
// and prints it as JSON. Nextflow cannot be installed here; Groovy can, and Nextflow's config files are
// Groovy with a small DSL. tests/workflow/test_profiles.py asserts the values this prints.
//
// Usage: groovy tests/workflow/resolve_config.groovy REPO SPEC.json     (SPEC.json: a spec or a list of them)
//   spec: {"profiles": ["k8s", "s3"], "configs": ["kubernetes/base/cluster.config"],   // -c files
//          "params": {...},            // -params-file / --name value (CLI params win everywhere)
//          "parser": "v1" | "v2"}      // profile order: see below
//
// What it models, with the Nextflow source it follows (nextflow-io/nextflow):
// - Config evaluation (config/parser/v2/ConfigDsl.groovy): nested blocks and dotted assignments build
//   nested maps; `withLabel:`/`withName:` blocks become `withLabel:<pattern>` / `withName:<pattern>` keys
//   of the process scope (an AST pass turns the labelled statement into a selector call, as Nextflow's
//   own transform does); `includeConfig` is resolved against the including file and deep-merged at the
//   point of inclusion; an assignment to a param given on the command line is ignored, so every file
//   reads the CLI value; `2.GB`, `4.h` and `'64.GB' as nextflow.util.MemoryUnit` are memory and time
//   units; closures stay closures until a task evaluates them.
// - Profiles. v2 (strict parser; the default from Nextflow 26.04, NXF_SYNTAX_PARSER=v2 before):
//   the selected profiles are applied at the `profiles {}` block, in the order given on the command
//   line (ProfilesDsl.apply: "apply profiles in the order they were specified"). v1 (the legacy
//   parser: Nextflow 24.04 to 25.10, the submitter image's 25.10.4): in the order they are DEFINED in
//   the file, whatever the command-line order (config/parser/v1/ConfigParserV1.groovy; documented in
//   nextflow-io/nextflow PR #5747), and merged over the whole file after it has been read. The test
//   resolves every combination with both and requires the same result.
// - -c files are parsed the same way and deep-merged over nextflow.config, in order.
// - Per process (script/ProcessConfig.groovy applyConfig): the module's own directives, then every
//   matching `withLabel:` (pattern matched in full against each label, `!` negates, '' when a process
//   has no label), then `withName:` against the simple name and then the fully qualified name
//   (e.g. TREESITS:AOI_SELECT, Pattern.matches: the whole name, `|` alternatives, `!` negates), then
//   the generic `process.*` settings for directives still unset. A later setting replaces an earlier
//   one whole: `pod` lists are not concatenated across levels.
// - resourceLimits cap cpus, memory and time (TaskConfig); closures see task.attempt, task.exitStatus.
// - Kubernetes pod options (nf-k8s K8sConfig, PodOptions, K8sTaskHandler.getPodOptions): the k8s
//   scope's options (k8s.pod, the storage claim, k8s.securityContext / k8s.runAsUser) plus the task's
//   `pod` directive; the task's securityContext, nodeSelector and tolerations replace the scope's.
//   PodOptions.create's accepted entry forms are checked: anything else is "Unknown pod options" at run time.
//
// What it does not model: the process DSL beyond the directive lines before `input:` (dynamic
// directives that need task inputs are reported as '<dynamic>'); nested selectors (a withName inside a
// withLabel); ext.* merging (render_module.groovy renders ext.args); the `env` and `secrets`
// functions; plugins; the `nextflow.config` of the launch directory and $NXF_HOME/config; v1's
// ConfigObject quirk that an unset param reads as an empty (falsy) object rather than null.
import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import org.codehaus.groovy.ast.ASTNode
import org.codehaus.groovy.ast.ClassCodeVisitorSupport
import org.codehaus.groovy.ast.expr.ArgumentListExpression
import org.codehaus.groovy.ast.expr.ConstantExpression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.ast.stmt.BlockStatement
import org.codehaus.groovy.ast.stmt.ExpressionStatement
import org.codehaus.groovy.classgen.GeneratorContext
import org.codehaus.groovy.control.CompilationFailedException
import org.codehaus.groovy.control.CompilePhase
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.SourceUnit
import org.codehaus.groovy.control.customizers.CompilationCustomizer
import org.codehaus.groovy.control.customizers.ImportCustomizer
import org.codehaus.groovy.control.io.ReaderSource
import java.util.regex.Pattern

// ---------------------------------------------------------------------------------------------------
// Units: nextflow.util.MemoryUnit and nextflow.util.Duration, enough for `2.GB * task.attempt`,
// comparisons against resourceLimits and `'64.GB' as nextflow.util.MemoryUnit`.
def loader = new GroovyClassLoader(this.class.classLoader)
def MemoryUnit = loader.parseClass('''
package nextflow.util
class MemoryUnit implements Comparable<MemoryUnit> {
    static final Map<String, Long> UNITS = [B: 1L, KB: 1L << 10, MB: 1L << 20, GB: 1L << 30, TB: 1L << 40]
    final long bytes
    MemoryUnit(long bytes) { this.bytes = bytes }
    MemoryUnit(String text) {
        def m = text.trim() =~ /^([0-9.]+)\\s*\\.?\\s*([KMGT]?B)$/
        if (!m.matches()) throw new IllegalArgumentException("not a memory unit: ${text}")
        bytes = (long) (new BigDecimal(m.group(1)) * UNITS[m.group(2)])
    }
    MemoryUnit multiply(Number n) { new MemoryUnit((long) (bytes * n)) }
    MemoryUnit plus(MemoryUnit o) { new MemoryUnit(bytes + o.bytes) }
    int compareTo(MemoryUnit o) { bytes <=> o.bytes }
    boolean equals(Object o) { o instanceof MemoryUnit && o.bytes == bytes }
    int hashCode() { Long.hashCode(bytes) }
    String toString() { "${bytes} B" }
}''')
def Duration = loader.parseClass('''
package nextflow.util
class Duration implements Comparable<Duration> {
    static final Map<String, Long> UNITS = [ms: 1L, s: 1000L, m: 60000L, min: 60000L, h: 3600000L, d: 86400000L]
    final long millis
    Duration(long millis) { this.millis = millis }
    Duration(String text) {
        def m = text.trim() =~ /^([0-9.]+)\\s*\\.?\\s*(ms|s|min|m|h|d)$/
        if (!m.matches()) throw new IllegalArgumentException("not a duration: ${text}")
        millis = (long) (new BigDecimal(m.group(1)) * UNITS[m.group(2)])
    }
    Duration multiply(Number n) { new Duration((long) (millis * n)) }
    int compareTo(Duration o) { millis <=> o.millis }
    boolean equals(Object o) { o instanceof Duration && o.millis == millis }
    int hashCode() { Long.hashCode(millis) }
    String toString() { "${millis} ms" }
}''')
[Integer, Long].each { cls ->
    ['B', 'KB', 'MB', 'GB', 'TB'].each { u ->
        cls.metaClass."get${u}" = { -> MemoryUnit.newInstance((long) (delegate * MemoryUnit.UNITS[u])) }
    }
    ['ms', 's', 'm', 'min', 'h', 'd'].each { u ->
        cls.metaClass."get${u.capitalize()}" = { -> Duration.newInstance((long) (delegate * Duration.UNITS[u])) }
        cls.metaClass."get${u}" = { -> Duration.newInstance((long) (delegate * Duration.UNITS[u])) }
    }
}
def stringAsType = String.metaClass.getMetaMethod('asType', [Class] as Class[])
String.metaClass.asType = { Class c ->
    if (c == MemoryUnit || c == Duration) return c.newInstance(delegate as String)
    return org.codehaus.groovy.runtime.DefaultGroovyMethods.asType((String) delegate, c)
}

// ---------------------------------------------------------------------------------------------------
// `withLabel: foo { … }` / `withName: 'A|B' { … }` are labelled method calls in Groovy; make them
// `withLabel('foo') { … }` calls, as Nextflow's config AST transform does.
class SelectorCustomizer extends CompilationCustomizer {
    SelectorCustomizer() { super(CompilePhase.CONVERSION) }

    void call(SourceUnit source, GeneratorContext context, org.codehaus.groovy.ast.ClassNode classNode) {
        def visitor = new ClassCodeVisitorSupport() {
            protected SourceUnit getSourceUnit() { source }

            void visitBlockStatement(BlockStatement block) {
                block.statements.each { s ->
                    def label = s.statementLabels ? s.statementLabels[0] : null
                    if (label in ['withLabel', 'withName'] && s instanceof ExpressionStatement
                            && s.expression instanceof MethodCallExpression
                            && !(((MethodCallExpression) s.expression).methodAsString in ['withLabel', 'withName'])) {
                        def call = (MethodCallExpression) s.expression
                        def args = (call.arguments as ArgumentListExpression).expressions
                        def selector = new MethodCallExpression(VariableExpression.THIS_EXPRESSION, label,
                            new ArgumentListExpression([new ConstantExpression(call.methodAsString)] + args))
                        s.expression = selector
                    }
                }
                super.visitBlockStatement(block)
            }
        }
        source.AST.statementBlock.visit(visitor)
        source.AST.classes.each { visitor.visitClass(it) }
    }
}

// ---------------------------------------------------------------------------------------------------
// The config DSL.
class ConfigDsl {
    Map target = [params: [:]]
    Map cliParams
    List<String> profiles
    String parser
    Map vars
    GroovyShell shell
    List<String> declaredProfiles = []

    static Map deepMerge(Map left, Map right) {
        def result = new LinkedHashMap(left)
        right.each { k, v ->
            if (result[k] instanceof Map && v instanceof Map) result[k] = deepMerge(result[k] as Map, v as Map)
            else result[k] = v
        }
        return result
    }

    Map navigate(List<String> names) {
        Map ctx = target
        for (name in names) {
            if (!(ctx[name] instanceof Map)) ctx[name] = [:]
            ctx = ctx[name] as Map
        }
        return ctx
    }

    void assign(List<String> names, Object value) {
        if (names.size() == 2 && names[0] == 'params' && cliParams.containsKey(names[1])) return
        navigate(names.init()).put(names.last(), value)
    }

    Object read(List<String> names) {
        def ctx = target
        for (n in names) { if (!(ctx instanceof Map) || !ctx.containsKey(n)) return null; ctx = ctx[n] }
        return ctx
    }

    void block(List<String> names, Closure body) {
        def cl = (Closure) body.clone()
        cl.resolveStrategy = Closure.DELEGATE_FIRST
        cl.delegate = new Scope(this, names)
        cl.call()
    }

    void profilesBlock(Closure body) {
        def defined = new LinkedHashMap<String, Closure>()
        def collector = new ProfileCollector(defined: defined)
        def cl = (Closure) body.clone()
        cl.resolveStrategy = Closure.DELEGATE_ONLY
        cl.delegate = collector
        cl.call()
        declaredProfiles.addAll(defined.keySet())
        if (parser == 'v2') {
            for (p in profiles) if (defined[p]) block([], defined[p])
        } else {
            // v1: definition order; applied over the whole file once it has been read (see parse()).
            for (p in defined.keySet()) if (p in profiles) pendingProfiles << defined[p]
        }
    }
    List<Closure> pendingProfiles = []

    void include(List<String> names, File from, String path) {
        def file = new File(path).isAbsolute() ? new File(path) : new File(from.parentFile, path)
        def child = new ConfigDsl(cliParams: cliParams, profiles: profiles, parser: parser, vars: vars, shell: shell)
        child.target.params.putAll(target.params)
        child.parse(file)
        declaredProfiles.addAll(child.declaredProfiles)
        def ctx = navigate(names)
        def merged = deepMerge(ctx, child.target)
        ctx.clear(); ctx.putAll(merged)
    }

    File current

    ConfigDsl parse(File file) {
        current = file
        def closure = (Closure) shell.evaluate("{ ->\n" + file.text + "\n}", file.name.replaceAll(/\W/, '_'))
        closure.resolveStrategy = Closure.DELEGATE_FIRST
        closure.delegate = new Scope(this, [])
        closure.call()
        if (parser == 'v1' && pendingProfiles) {
            // The profiles' settings, evaluated against the finished file, merged over it.
            def base = target
            target = [params: new LinkedHashMap(base.params)]
            pendingProfiles.each { block([], it) }
            target = deepMerge(base, target)
            pendingProfiles = []
        }
        return this
    }
}

// What a directive closure sees: task and params; anything else (a task input such as meta) is
// missing here and the directive is reported as dynamic.
class TaskContext {
    Map task
    Map params
    def propertyMissing(String name) { throw new MissingPropertyException(name, TaskContext) }
}

class ProfileCollector {
    Map<String, Closure> defined

    def methodMissing(String name, Object args) {
        def a = args as Object[]
        if (a.length == 1 && a[0] instanceof Closure) { defined[name] = (Closure) a[0]; return null }
        throw new IllegalArgumentException("only profile blocks are allowed in `profiles`: ${name}")
    }
}

class Scope extends GroovyObjectSupport {
    private final ConfigDsl dsl
    private final List<String> path

    Scope(ConfigDsl dsl, List<String> path) { this.dsl = dsl; this.path = path }

    Object getProperty(String name) {
        if (name == 'params') return dsl.target.params
        if (dsl.vars.containsKey(name)) return dsl.vars[name]
        def value = dsl.read(path + [name])
        if (value != null && !(value instanceof Map)) return value
        return new Scope(dsl, path + [name])
    }

    void setProperty(String name, Object value) { dsl.assign(path + [name], value) }

    def methodMissing(String name, Object args) {
        def a = args as Object[]
        if (name == 'includeConfig') { dsl.include(path, dsl.current, a[0].toString()); return null }
        if (name in ['withLabel', 'withName'] && a.length == 2 && a[1] instanceof Closure) {
            if (path != ['process']) throw new IllegalArgumentException("process selectors are only allowed in the process scope: ${path}")
            dsl.block(path + ["${name}:${a[0]}".toString()], (Closure) a[1]); return null
        }
        if (name == 'profiles' && path == [] && a.length == 1 && a[0] instanceof Closure) { dsl.profilesBlock((Closure) a[0]); return null }
        if (name == 'id' && path == ['plugins']) { (dsl.target.plugins = (dsl.target.plugins ?: []) as List) << a[0]; return null }
        if (a.length == 1 && a[0] instanceof Closure) { dsl.block(path + [name], (Closure) a[0]); return null }
        throw new MissingMethodException(name, Scope, a)
    }
}

// ---------------------------------------------------------------------------------------------------
// The run: nextflow.config with the profiles, then the -c files; CLI params over everything.
def repo = new File(args[0]).canonicalFile
def specs = new JsonSlurper().parse(new File(args[1]))
def cc = new CompilerConfiguration()
def imports = new ImportCustomizer()
imports.addImports('nextflow.util.MemoryUnit', 'nextflow.util.Duration')
cc.addCompilationCustomizers(imports, new SelectorCustomizer())
def shell = new GroovyShell(loader, new Binding(), cc)

// SPEC may be a list of specs: one JVM for many resolutions.
def resolveOne = { Map spec ->
    def profiles = (spec.profiles ?: []) as List<String>
    def cli = (spec.params ?: [:]) as Map
    def vars = [projectDir: repo.path, baseDir: repo.path, launchDir: '/launch', workDir: '/launch/work']

    def parseFile = { File f ->
        def dsl = new ConfigDsl(cliParams: cli, profiles: profiles, parser: spec.parser ?: 'v2', vars: vars, shell: shell)
        dsl.target.params.putAll(cli)
        dsl.parse(f)
    }
    def main = parseFile(new File(repo, 'nextflow.config'))
    def unknown = profiles - main.declaredProfiles
    if (unknown) throw new IllegalArgumentException("Unknown configuration profile: ${unknown}")
    Map config = main.target
    for (c in (spec.configs ?: [])) {
        def dsl = new ConfigDsl(cliParams: cli, profiles: profiles, parser: spec.parser ?: 'v2', vars: vars, shell: shell)
        dsl.target.params.putAll(config.params)
        dsl.target.params.putAll(cli)
        config = ConfigDsl.deepMerge(config, dsl.parse(new File(repo, c as String)).target)
    }
    config.params = ConfigDsl.deepMerge(config.params as Map, cli)
    Map params = config.params as Map

    // ---------------------------------------------------------------------------------------------------
    // Processes: the directive lines of each module (before `input:`), and where each module is included.
    def processes = [:]   // simple name -> [module, directives (name -> closure), labels]
    new File(repo, 'modules/local').eachDir { dir ->
        def text = new File(dir, 'main.nf').text
        def m = text =~ /(?s)process\s+(\w+)\s*\{(.*?)\n\s*(input|output|when|script):/
        if (!m.find()) return
        def name = m.group(1)
        def directives = [:], labels = []
        m.group(2).readLines().each { line ->
            def d = line.trim() =~ /^(\w+)\s+(.+)$/
            if (!d.matches() || line.trim().startsWith('//')) return
            def (key, expr) = [d.group(1), d.group(2)]
            if (key == 'label') labels << shell.evaluate(expr)
            else directives[key] = expr
        }
        processes[name] = [module: "modules/local/${dir.name}", directives: directives, labels: labels]
    }
    def fqn = [:]
    def nfFiles = [new File(repo, 'main.nf')] + ((new File(repo, 'workflows').listFiles() ?: []) as List).findAll { it.name.endsWith('.nf') }
    for (f in nfFiles) {
        def text = f.text
        def wf = (text =~ /(?m)^workflow\s+(\w+)\s*\{/)
        def scope = wf.find() ? wf.group(1) : null
        (text =~ /include\s*\{([^}]*)\}\s*from\s*'([^']+)'/).each { all, names, from ->
            names.split(';').each { n ->
                def parts = n.trim().split(/\s+as\s+/)
                def simple = parts[-1].trim()
                if (processes.containsKey(parts[0].trim()))
                    fqn[simple] = [base: parts[0].trim(), fqn: scope ? "${scope}:${simple}".toString() : simple]
            }
        }
    }

    // ProcessConfig.applyConfig
    def processScope = (config.process ?: [:]) as Map
    def matchesLabels = { List labels, String pattern ->
        def neg = pattern.startsWith('!'); if (neg) pattern = pattern.substring(1).trim()
        def re = Pattern.compile(pattern)
        for (l in labels) if (re.matcher(l).matches()) return !neg
        return neg
    }
    def matchesName = { String name, String pattern ->
        def neg = pattern.startsWith('!'); if (neg) pattern = pattern.substring(1).trim()
        Pattern.compile(pattern).matcher(name).matches() ^ neg
    }
    def evalIn = { value, Map task ->
        if (!(value instanceof Closure)) return value
        def cl = ((Closure) value).clone()
        cl.resolveStrategy = Closure.DELEGATE_FIRST
        cl.delegate = new TaskContext(task: task, params: params)
        return cl.call()
    }
    def jsonable
    jsonable = { v ->
        if (v instanceof Closure) return '<closure>'
        if (v instanceof GString) return v.toString()
        if (v instanceof Map) return v.collectEntries { k, x -> [(k.toString()): jsonable(x)] }
        if (v instanceof Collection) return v.collect { jsonable(it) }
        if (v instanceof Scope) return null
        if (v != null && v.class == MemoryUnit) return [bytes: v.bytes]
        if (v != null && v.class == Duration) return [millis: v.millis]
        return v
    }
    // PodOptions.create: the entry forms Nextflow accepts (any other is an error at submission).
    def podEntryKind = { Map e ->
        if (e.env && (e.value || e.fieldPath || e.secret || e.config)) return 'env'
        if (e.mountPath && (e.secret || e.config || e.csi || e.emptyDir != null || e.volumeClaim || e.hostPath)) return 'mount'
        if (e.pullPolicy || e.imagePullPolicy || e.imagePullSecret || e.imagePullSecrets) return 'image'
        if ((e.label || e.annotation) && e.value) return 'meta'
        if (e.runAsUser != null || e.securityContext instanceof Map) return 'securityContext'
        if (e.nodeSelector) return 'nodeSelector'
        if (e.affinity instanceof Map) return 'affinity'
        if (e.automountServiceAccountToken instanceof Boolean || e.priorityClassName || e.schedulerName) return 'pod'
        if (e.toleration instanceof Map) return 'toleration'
        if (e.privileged instanceof Boolean) return 'privileged'
        if (e.ttlSecondsAfterFinished instanceof Integer) return 'job'
        return null
    }
    def k8s = (config.k8s ?: [:]) as Map
    def limits = [:]
    def result = [:]
    processes.each { String name, Map p ->
        def where = fqn[name] ?: [base: name, fqn: name]
        def settings = [:]
        p.directives.each { k, expr -> settings[k] = shell.evaluate("{ -> ${expr} }") }
        def apply = { Map s -> s.each { k, v -> if (!k.startsWith('withLabel:') && !k.startsWith('withName:') && k != 'ext' && k != 'params') settings[k] = v } }
        def labels = p.labels ?: ['']
        processScope.each { k, v -> if (k.startsWith('withLabel:') && matchesLabels(labels, k.substring(10).trim())) apply(v as Map) }
        [where.base, name, where.fqn].unique().each { n ->
            processScope.each { k, v -> if (k.startsWith('withName:') && matchesName(n, k.substring(9).trim())) apply(v as Map) }
        }
        processScope.each { k, v ->
            if (!(k.startsWith('withLabel:') || k.startsWith('withName:') || k in ['ext', 'params']) && !settings.containsKey(k)) settings[k] = v
        }
        def resourceLimits = evalIn(settings.resourceLimits, [attempt: 1]) ?: [:]
        def maxRetries = evalIn(settings.maxRetries, [attempt: 1]) ?: 0
        def resources = { int attempt ->
            def task = [attempt: attempt, process: name, exitStatus: 137]
            def out = [:]
            ['cpus', 'memory', 'time'].each { key ->
                def v = null
                try { v = evalIn(settings[key], task) } catch (MissingPropertyException e) { v = '<dynamic>' }
                if (v != null && v != '<dynamic>' && resourceLimits[key] != null && v > resourceLimits[key]) v = resourceLimits[key]
                out[key] = jsonable(v)
            }
            out
        }
        def dynamic = { key, task ->
            try { jsonable(evalIn(settings[key], task)) } catch (MissingPropertyException e) { '<dynamic>' }
        }
        def pod = evalIn(settings.pod, [attempt: 1])
        pod = pod instanceof Map ? [pod] : (pod ?: [])
        // K8sConfig + K8sTaskHandler.getPodOptions: the k8s scope's options, then the task's.
        def scopePod = k8s.pod instanceof Map ? [k8s.pod] : (k8s.pod ?: [])
        def claims = (scopePod + pod).findAll { it.volumeClaim }.collect { [claim: it.volumeClaim, mountPath: it.mountPath, readOnly: it.readOnly ?: false] }
        if (k8s.storageClaimName) claims = [[claim: k8s.storageClaimName, mountPath: k8s.storageMountPath ?: '/workspace', readOnly: false]] + claims
        def scopeContext = k8s.runAsUser ? [runAsUser: k8s.runAsUser] : (k8s.securityContext ?: scopePod.find { it.securityContext }?.securityContext)
        def taskContext = pod.find { it.runAsUser != null } ? [runAsUser: pod.find { it.runAsUser != null }.runAsUser] : pod.find { it.securityContext instanceof Map }?.securityContext
        def tolerations = pod.findAll { it.toleration }.collect { it.toleration } ?: scopePod.findAll { it.toleration }.collect { it.toleration }
        result[name] = [
            module       : p.module,
            labels       : p.labels,
            fqn          : where.fqn,
            executor     : evalIn(settings.executor, [attempt: 1]) ?: 'local',
            container    : dynamic('container', [attempt: 1]),
            attempt1     : resources(1),
            last_attempt : resources(maxRetries + 1),
            accelerator  : jsonable(evalIn(settings.accelerator, [attempt: 1])),
            errorStrategy: [exit137: dynamic('errorStrategy', [attempt: 1, exitStatus: 137]),
                            exit143: dynamic('errorStrategy', [attempt: 1, exitStatus: 143]),
                            exit1  : dynamic('errorStrategy', [attempt: 1, exitStatus: 1])],
            maxRetries   : maxRetries,
            resourceLimits: jsonable(resourceLimits),
            pod          : jsonable(pod),
            pod_unknown  : jsonable((scopePod + pod).findAll { podEntryKind(it as Map) == null }),
            k8s_pod      : [securityContext: jsonable(taskContext ?: scopeContext),
                            volumeClaims   : claims,
                            nodeSelector   : jsonable((pod.find { it.nodeSelector } ?: scopePod.find { it.nodeSelector })?.nodeSelector),
                            tolerations    : jsonable(tolerations),
                            privileged     : (pod.find { it.privileged instanceof Boolean } ?: scopePod.find { it.privileged instanceof Boolean })?.privileged ?: false],
            cache        : jsonable(evalIn(settings.cache, [attempt: 1])),
        ]
    }

    def scopes = config.findAll { k, v -> k != 'process' && k != 'params' }
    return [params: jsonable(params), processes: result, scopes: jsonable(scopes),
            generic: jsonable(processScope.findAll { k, v -> !k.startsWith('with') }),
            selectors: processScope.findAll { k, v -> k.startsWith('with') }.collectEntries { k, v ->
                [(k): (v instanceof Map ? v.keySet().sort() : [])] }]
}
print JsonOutput.toJson(specs instanceof List ? specs.collect { resolveOne(it as Map) } : resolveOne(specs as Map))
