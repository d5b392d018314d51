"""The result files' contract and what reads them: names, record format, documents, metrics.

Reading is at the edges (`reader`: run.json, result.json, summary.json into typed documents;
`collect`: the generator processes' own files); the metric modules are pure: record → merge →
summarise.
"""
