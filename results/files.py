"""The names of the files a run leaves behind: the one list every writer and reader imports.

A run folder (reports/<run-id>/) holds run.json, the fixtures it ran with, the report and one
folder per scenario; a scenario folder holds result.json and the files beside it.
"""

from __future__ import annotations

# -- in a scenario's folder ------------------------------------------------------------------
RESULT_FILE = "result.json"  # load_runner: totals, latency, breakdowns (results.documents)
OPERATIONS_FILE = "operations.csv"  # load_runner: the acknowledged reservations, for integrity
UNANSWERED_FILE = "unanswered.csv"  # load_runner: requests with no response (may have committed)
HISTORY_FILE = "history.jsonl"  # load_runner: one line per invoke/ok/fail/info event
RAW_DIR = "raw"  # load_runner: per-process records, self-watch and Molotov's own output
# In raw/, one of each per generator process (molotov_scenarios.recorder writes them,
# results.collect reads them back):
RECORDS_PREFIX = "records-"  # records-<pid>.csv: one row per request
PROCESS_PREFIX = "process-"  # process-<pid>.json: counts and self-watch, written with records
PROGRESS_PREFIX = "progress-"  # progress-<pid>.json: rewritten about every second
# In raw/: txns-<pid>.jsonl, a list-append transaction a line (molotov_scenarios.transactions)
TRANSACTIONS_PREFIX = "txns-"
TRANSACTIONS_SUFFIX = ".jsonl"
INTEGRITY_FILE = "integrity.json"  # integrity: every check's outcome
SERVICE_FILE = "service.json"  # watch.service_watch: the service's health during the run
FAULTS_FILE = "faults.json"  # faults.nemesis: only under a profile with a fault schedule
SAMPLES_FILE = "samples.json"  # watch.attribution_sampler: database and host every 100 ms
COST_FILE = "cost.json"  # pipeline.run: CPU, retries and committed operations of a scenario
MEASURED_FILE = "measured.json"  # pipeline.capacity_run: a step over its measured window
ANOMALIES_FILE = "anomalies.json"  # pipeline.isolation_check: the history's isolation check

# -- in a run's folder ------------------------------------------------------------------------
RUN_FILE = "run.json"  # pipeline.run: the steps, their outcomes and the facts
FIXTURES_FILE = "test-data.json"  # pipeline.setup: the fixtures (tokens, pools) the run used
SERVICE_LOG = "service.log"  # the service's own output
ERRORS_LOG = "errors.log"  # the traceback of every failed step
REMOTE_WRITE_FILE = "remote_write.json"  # pipeline.metrics_stream: the live feed's writes
SUMMARY_FILE = "summary.json"  # reporting: every figure of the report (results.documents)
HTML_FILE = "report.html"
MARKDOWN_FILE = "PERFORMANCE_TEST_RESULTS.md"
CAPACITY_FILE = "capacity.json"  # pipeline.capacity_run: the capacity search
CAPACITY_STEPS_DIR = "capacity"  # pipeline.capacity_run: one folder per step
COMPARISON_DIR = "comparison"  # the comparison with a baseline: compare.json, .html, .md
COMPARE_FILE = "compare.json"
COMPARE_HTML_FILE = "compare.html"
COMPARE_MARKDOWN_FILE = "compare.md"
MATRIX_FILE = "matrix.json"  # load-test.matrix: every strategy's pooled figures

# -- in the reports folder --------------------------------------------------------------------
INDEX_FILE = "index.jsonl"  # reporting.run_index: one line per run
