// Syntax check for Nextflow scripts and configs with plain Groovy (Nextflow itself is not installable
// here): every file must get through the parser (Phases.CONVERSION builds the AST; nothing runs).
// Usage: groovy tests/workflow/parse.groovy FILE...
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.CompilationFailedException

int failed = 0
for (String name : args) {
    def text = new File(name).text
    // DSL2 include statements: `include { A; B as C } from './x'` is Groovy already; the only
    // Nextflow-only token is the `nextflow.enable.dsl = 2` property chain, which is valid Groovy too.
    def unit = new CompilationUnit()
    unit.addSource(name, text)
    try {
        unit.compile(Phases.CONVERSION)
        println "ok      ${name}"
    } catch (CompilationFailedException e) {
        failed++
        System.err.println "FAILED  ${name}\n${e.message}"
    }
}
if (failed) {
    System.err.println "${failed} file(s) failed to parse"
    System.exit(1)
}
