"""Graph files: load (positions, aliases, env), model, registry, validation, wiring.

Entry points: `validate.load_and_validate(path)` (all errors) and `validate.compile_graph(path)`
(a ValidatedGraph or GraphInvalid); `wiring.load_requests(graph)` for what each node is loaded with.
"""
